#include "translator.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

void fanyi_options_default(fanyi_options *o) {
    memset(o, 0, sizeof *o);
    o->max_length_ratio = -1.0f;
    o->length_penalty = -1.0f;
}

int fy_resolve_options(const fy_config *cfg, const fanyi_options *in, fy_search_opts *out, fanyi_error *err) {
    fanyi_options def;
    if (!in) {
        fanyi_options_default(&def);
        in = &def;
    }
    out->beam_size = in->beam_size > 0 ? in->beam_size : cfg->beam_size;
    out->nbest = in->nbest > 0 ? in->nbest : 1;
    out->max_length = in->max_length > 0 ? in->max_length : cfg->max_length;
    out->max_length_ratio = in->max_length_ratio >= 0 ? in->max_length_ratio : cfg->max_length_ratio;
    out->length_penalty = in->length_penalty >= 0 ? in->length_penalty : cfg->length_penalty;
    if (in->beam_size < 0 || in->beam_size > 1024)
        return fy_fail(err, FANYI_ERR_USAGE, "beam size %d is out of range [1, 1024]", in->beam_size);
    if (out->nbest > out->beam_size)
        return fy_fail(err, FANYI_ERR_USAGE, "n-best %d is larger than the beam size %d", out->nbest, out->beam_size);
    if (in->max_length < 0) return fy_fail(err, FANYI_ERR_USAGE, "max length %d is negative", in->max_length);
    if (in->threads < 0) return fy_fail(err, FANYI_ERR_USAGE, "thread count %d is negative", in->threads);
    fy_set_threads(in->threads);
    return FANYI_OK;
}

fanyi_model *fanyi_load(const char *dir, fanyi_error *err) {
    fanyi_model *fm = fy_calloc(1, sizeof *fm, err, "model");
    if (!fm) return NULL;
    int rc = fy_model_load(&fm->model, dir, err);
    const fy_config *c = &fm->model.cfg;
    if (!rc && c->source_spm[0]) rc = fy_tokenizer_load(&fm->source, dir, c->source_spm, c->vocab, c->src_vocab_size, err);
    if (!rc && c->target_spm[0]) rc = fy_tokenizer_load(&fm->target, dir, c->target_spm, c->vocab, c->tgt_vocab_size, err);
    if (!rc && (!fm->source) != (!fm->target))
        rc = fy_fail(err, FANYI_ERR_MODEL, "%s/config.json: source_spm and target_spm must be given together", dir);
    if (rc) {
        fanyi_free(fm);
        return NULL;
    }
    return fm;
}

void fanyi_free(fanyi_model *fm) {
    if (!fm) return;
    fy_tokenizer_free(fm->source);
    fy_tokenizer_free(fm->target);
    if (fm->model.weights) fy_model_free(&fm->model);
    else fy_config_free(&fm->model.cfg);
    free(fm);
}

int fanyi_src_vocab_size(const fanyi_model *fm) { return fm->model.cfg.src_vocab_size; }
int fanyi_tgt_vocab_size(const fanyi_model *fm) { return fm->model.cfg.tgt_vocab_size; }
int fanyi_has_tokenizer(const fanyi_model *fm) { return fm->source != NULL; }

void fanyi_results_free(fanyi_result *results, int n) {
    if (!results) return;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < results[i].n_hyps; j++) {
            free(results[i].hyps[j].ids);
            free(results[i].hyps[j].text);
        }
        free(results[i].hyps);
    }
    free(results);
}

/* Sorting indices by length: a context-free comparator on (length, index) pairs. */
typedef struct { int len, index; } by_len_item;
static int by_length(const void *a, const void *b) {
    const by_len_item *x = a, *y = b;
    return x->len != y->len ? x->len - y->len : x->index - y->index;
}

/* Translates sentences order[0..n) (indices into src) as one batch. */
static int translate_batch(const fanyi_model *fm, const int *const *src, const int *src_len, const by_len_item *items,
                           int n, const fy_search_opts *o, fanyi_result *results, fanyi_error *err) {
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
    if (!rc) rc = fy_search(&fm->model, ids, offset, len, n, o, hyps, n_hyps, err);
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
    for (int first = 0; !rc && first < m; first += FY_BATCH_SENTENCES) {
        int count = m - first < FY_BATCH_SENTENCES ? m - first : FY_BATCH_SENTENCES;
        rc = translate_batch(fm, src, src_len, items + first, count, &o, results, err);
    }
    free(items);
    if (rc) {
        fanyi_results_free(results, n);
        return rc;
    }
    *out = results;
    return FANYI_OK;
}

/* Detokenizes every hypothesis of every result. */
static int detokenize(const fanyi_model *fm, fanyi_result *results, int n, fanyi_error *err) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < results[i].n_hyps; j++) {
            fanyi_hypothesis *h = &results[i].hyps[j];
            fy_text text = {0};
            int rc = fy_text_append(&text, "", 0) ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
            if (!rc) rc = fy_tokenizer_decode(fm->target, h->ids, (size_t)h->n_ids, &text, err);
            if (rc) {
                free(text.s);
                return rc;
            }
            h->text = text.s;
        }
    return FANYI_OK;
}

int fanyi_translate_text(const fanyi_model *fm, const char *const *lines, const size_t *line_len, int n,
                         const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    *out = NULL;
    if (!fm->source)
        return fy_fail(err, FANYI_ERR_USAGE, "this model has no tokenizer files (source_spm/target_spm): use --input ids");
    fy_ids *ids = fy_calloc((size_t)n, sizeof *ids, err, "token ids");
    const int **src = fy_calloc((size_t)n, sizeof *src, err, "token ids");
    int *len = fy_calloc((size_t)n, sizeof *len, err, "token ids");
    int *warnings = fy_calloc((size_t)n, sizeof *warnings, err, "warnings");
    int rc = ids && src && len && warnings ? FANYI_OK : FANYI_ERR_MEMORY;
    for (int i = 0; !rc && i < n; i++) {
        rc = fy_tokenizer_encode(fm->source, lines[i], line_len[i], &ids[i], &warnings[i], err);
        src[i] = ids[i].ids;
        len[i] = (int)ids[i].n;
    }
    if (!rc) rc = fanyi_translate_ids(fm, src, len, n, opts, out, err);
    if (!rc) rc = detokenize(fm, *out, n, err);
    for (int i = 0; !rc && i < n; i++)
        if (warnings[i] & FY_TOK_INVALID_UTF8) (*out)[i].warnings |= FANYI_WARN_INVALID_UTF8;
    if (rc && *out) {
        fanyi_results_free(*out, n);
        *out = NULL;
    }
    for (int i = 0; ids && i < n; i++) free(ids[i].ids);
    free(ids), free(src), free(len), free(warnings);
    return rc;
}
