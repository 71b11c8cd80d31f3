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

/* Translates items[0..n) (sentences of src, sorted by length) as one batch;
 * its buffers come from the context's arena and go back to it afterwards. */
static int translate_batch(fanyi_context *ctx, const fanyi_model *fm, const int *const *src, const int *src_len,
                           const by_len_item *items, int n, const fy_search_opts *o, fanyi_result *results,
                           fanyi_error *err) {
    const fy_config *c = &fm->model.cfg;
    fy_arena *arena = &ctx->arena;
    fy_arena_mark mark = fy_arena_save(arena);
    int cap = c->max_positions - (c->source_eos ? 1 : 0);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)(items[i].len < cap ? items[i].len : cap) + 1;
    int *ids = fy_arena_alloc(arena, total, sizeof(int), 0, err, "batch ids");
    int *offset = ids ? fy_arena_alloc(arena, (size_t)n, sizeof(int), 0, err, "batch offsets") : NULL;
    int *len = offset ? fy_arena_alloc(arena, (size_t)n, sizeof(int), 0, err, "batch lengths") : NULL;
    int *n_hyps = len ? fy_arena_alloc(arena, (size_t)n, sizeof(int), 1, err, "batch results") : NULL;
    fy_hyp *hyps = n_hyps ? fy_arena_alloc(arena, (size_t)n * (size_t)o->nbest, sizeof(fy_hyp), 1, err,
                                           "batch results") : NULL;
    int rc = hyps ? FANYI_OK : FANYI_ERR_MEMORY;
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
    if (!rc) rc = fy_search(&fm->model, ids, offset, len, n, o, hyps, n_hyps, ctx->pool, arena, err);
    for (int i = 0; n_hyps && i < n; i++) {
        fanyi_result *r = &results[items[i].index];
        r->hyps = rc ? NULL : calloc((size_t)(n_hyps[i] ? n_hyps[i] : 1), sizeof *r->hyps);
        if (!rc && !r->hyps) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        for (int j = 0; j < n_hyps[i]; j++) {
            fy_hyp *h = &hyps[(size_t)i * o->nbest + j];
            if (!rc) {
                r->hyps[j] = (fanyi_hypothesis){h->ids, h->n_ids, h->score, h->logprob, NULL};
                r->n_hyps = j + 1;
            } else free(h->ids);
        }
    }
    fy_arena_restore(arena, mark);
    return rc;
}

int fy_translate_ids_in(fanyi_context *ctx, const fanyi_model *fm, const int *const *src, const int *src_len, int n,
                        const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    const fy_config *c = &fm->model.cfg;
    fy_search_opts o;
    *out = NULL;
    int rc = fy_resolve_options(c, opts, &o, err);
    if (rc) return rc;
    if (opts && opts->threads > 0 && opts->threads != ctx->threads)
        return fy_fail(err, FANYI_ERR_USAGE, "%d threads asked for, but the context has %d", opts->threads,
                       ctx->threads);
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
    if (!results) return FANYI_ERR_MEMORY;
    fy_arena_mark mark = fy_arena_save(&ctx->arena);
    by_len_item *items = fy_arena_alloc(&ctx->arena, (size_t)n, sizeof *items, 0, err, "batch order");
    rc = items ? FANYI_OK : FANYI_ERR_MEMORY;
    /* Empty sentences are translated to nothing without running the model. */
    int m = 0;
    for (int i = 0; !rc && i < n; i++)
        if (src_len[i] > 0) items[m++] = (by_len_item){src_len[i], i};
    if (!rc) qsort(items, (size_t)m, sizeof *items, by_length);
    if (!rc && m > 0) rc = fy_context_start(ctx, err);
    for (int first = 0; !rc && first < m; first += FY_BATCH_SENTENCES) {
        int count = m - first < FY_BATCH_SENTENCES ? m - first : FY_BATCH_SENTENCES;
        rc = translate_batch(ctx, fm, src, src_len, items + first, count, &o, results, err);
    }
    fy_arena_restore(&ctx->arena, mark);
    if (rc) {
        fanyi_results_free(results, n);
        return rc;
    }
    *out = results;
    return FANYI_OK;
}

int fanyi_context_translate_ids(fanyi_context *ctx, const fanyi_model *fm, const int *const *src, const int *src_len,
                                int n, const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    int rc = fy_translate_ids_in(ctx, fm, src, src_len, n, opts, out, err);
    fy_arena_reset(&ctx->arena);
    return rc;
}

int fanyi_translate_ids(const fanyi_model *fm, const int *const *src, const int *src_len, int n,
                        const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    fanyi_context *ctx = NULL;
    *out = NULL;
    int rc = fy_context_temporary(opts, &ctx, err);
    if (!rc) rc = fy_translate_ids_in(ctx, fm, src, src_len, n, opts, out, err);
    fanyi_context_free(ctx);
    return rc;
}
