/*
 * batch.c -- fanyi_translate_ids: a request sorted by length into batches of
 * FY_BATCH_SENTENCES, each encoded and searched, results in the caller's order.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Sorting indices by length: a context-free comparator on (length, index) pairs. */
typedef struct { int len, index; } by_len_item;
static int by_length(const void *a, const void *b) {
    const by_len_item *x = a, *y = b;
    return x->len != y->len ? x->len - y->len : x->index - y->index;
}

/* Translates items[0..n) (sentences of src, sorted by length) as one batch. */
static int translate_batch(const fanyi_model *fm, const int *const *src, const int *src_len, const by_len_item *items,
                           int n, const fy_search_opts *o, fy_pool *pool, fanyi_result *results, fanyi_error *err) {
    const fy_config *c = &fm->model.cfg;
    int cap = c->max_positions - (c->source_eos ? 1 : 0);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)(items[i].len < cap ? items[i].len : cap) + 1;
    int *ids = fy_calloc(total, sizeof(int), err, "batch ids");
    int *offset = fy_calloc((size_t)n, sizeof(int), err, "batch offsets");
    int *len = fy_calloc((size_t)n, sizeof(int), err, "batch lengths");
    int *n_hyps = fy_calloc((size_t)n, sizeof(int), err, "batch results");
    fy_hyp *hyps = fy_calloc((size_t)n * (size_t)o->nbest, sizeof(fy_hyp), err, "batch results");
    int rc = ids && offset && len && n_hyps && hyps ? FANYI_OK : FANYI_ERR_MEMORY;
    int at = 0;
    for (int i = 0; !rc && i < n; i++) {
        int k = items[i].index, l = src_len[k] < cap ? src_len[k] : cap;
        offset[i] = at;
        memcpy(ids + at, src[k], sizeof(int) * (size_t)l);
        if (c->source_eos) ids[at + l++] = c->eos_id;
        len[i] = l;
        at += l;
        if (src_len[k] > cap) results[k].warnings |= FANYI_WARN_TRUNCATED;
    }
    if (!rc) rc = fy_search(&fm->model, ids, offset, len, n, o, hyps, n_hyps, pool, err);
    for (int i = 0; i < n; i++) {
        fanyi_result *r = &results[items[i].index];
        r->hyps = rc ? NULL : calloc((size_t)(n_hyps[i] ? n_hyps[i] : 1), sizeof *r->hyps);
        if (!rc && !r->hyps) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        for (int j = 0; j < (n_hyps ? n_hyps[i] : 0); j++) {
            fy_hyp *h = &hyps[(size_t)i * o->nbest + j];
            if (!rc) {
                r->hyps[j] = (fanyi_hypothesis){h->ids, h->n_ids, h->score, h->logprob, NULL};
                r->n_hyps = j + 1;
            } else free(h->ids);
        }
    }
    free(ids), free(offset), free(len), free(n_hyps), free(hyps);
    return rc;
}

int fanyi_translate_ids(const fanyi_model *fm, const int *const *src, const int *src_len, int n,
                        const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    const fy_config *c = &fm->model.cfg;
    fy_search_opts o;
    *out = NULL;
    int rc = fy_resolve_options(c, opts, &o, err);
    if (rc) return rc;
    if (n < 0) return fy_fail(err, FANYI_ERR_USAGE, "negative sentence count %d", n);
    for (int i = 0; i < n; i++)
        if (src_len[i] < 0 || (src_len[i] > 0 && !src[i]))
            return fy_fail(err, FANYI_ERR_USAGE, "sentence %d: length %d without ids", i + 1, src_len[i]);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < src_len[i]; j++)
            if (src[i][j] < 0 || src[i][j] >= c->src_vocab_size)
                return fy_fail(err, FANYI_ERR_INPUT, "sentence %d: token id %d is outside the source vocabulary (0..%d)",
                               i + 1, src[i][j], c->src_vocab_size - 1);
    fanyi_result *results = fy_calloc((size_t)n, sizeof *results, err, "results");
    by_len_item *items = fy_calloc((size_t)n, sizeof *items, err, "batch order");
    if (!results || !items) {
        free(results), free(items);
        return FANYI_ERR_MEMORY;
    }
    /* Empty sentences are translated to nothing without running the model. */
    int m = 0;
    for (int i = 0; i < n; i++)
        if (src_len[i] > 0) items[m++] = (by_len_item){src_len[i], i};
    qsort(items, (size_t)m, sizeof *items, by_length);
    fy_pool *pool = m > 0 ? fy_pool_create(o.threads) : NULL;
    if (m > 0 && !pool) rc = fy_fail(err, FANYI_ERR_MEMORY, "cannot start %d threads", o.threads);
    for (int first = 0; !rc && first < m; first += FY_BATCH_SENTENCES) {
        int count = m - first < FY_BATCH_SENTENCES ? m - first : FY_BATCH_SENTENCES;
        rc = translate_batch(fm, src, src_len, items + first, count, &o, pool, results, err);
    }
    fy_pool_free(pool);
    free(items);
    if (rc) {
        fanyi_results_free(results, n);
        return rc;
    }
    *out = results;
    return FANYI_OK;
}
