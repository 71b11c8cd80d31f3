#include "translator.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "ops.h"
#include "sentences.h"

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
    if (in->beam_size < 0 || in->beam_size > FANYI_MAX_BEAM)
        return fy_fail(err, FANYI_ERR_USAGE, "beam size %d is out of range [1, %d]", in->beam_size, FANYI_MAX_BEAM);
    if (in->nbest < 0) return fy_fail(err, FANYI_ERR_USAGE, "n-best %d is negative", in->nbest);
    if (out->nbest > out->beam_size)
        return fy_fail(err, FANYI_ERR_USAGE, "n-best %d is larger than the beam size %d", out->nbest, out->beam_size);
    if (in->max_length < 0) return fy_fail(err, FANYI_ERR_USAGE, "max length %d is negative", in->max_length);
    if (!isfinite(in->length_penalty))
        return fy_fail(err, FANYI_ERR_USAGE, "length penalty %g is not a finite number", in->length_penalty);
    if (!isfinite(in->max_length_ratio))
        return fy_fail(err, FANYI_ERR_USAGE, "max length ratio %g is not a finite number", in->max_length_ratio);
    out->no_repeat_ngram = in->no_repeat_ngram > 0 ? in->no_repeat_ngram : in->no_repeat_ngram < 0 ? 0 : cfg->no_repeat_ngram;
    out->repetition_penalty = in->repetition_penalty > 0 ? in->repetition_penalty : cfg->repetition_penalty;
    if (in->no_repeat_ngram > FANYI_MAX_NGRAM)
        return fy_fail(err, FANYI_ERR_USAGE, "no-repeat n-gram size %d is out of range [1, %d]", in->no_repeat_ngram,
                       FANYI_MAX_NGRAM);
    if (!isfinite(in->repetition_penalty) || in->repetition_penalty < 0 || in->repetition_penalty > 100)
        return fy_fail(err, FANYI_ERR_USAGE, "repetition penalty %g is out of range (0, 100]", in->repetition_penalty);
    if (in->threads < 0 || in->threads > FANYI_MAX_THREADS)
        return fy_fail(err, FANYI_ERR_USAGE, "thread count %d is out of range [1, %d]", in->threads,
                       FANYI_MAX_THREADS);
    out->threads = in->threads > 0 ? in->threads : fy_default_threads();
    return FANYI_OK;
}

/* The tokenizers load on their own thread while the weights are checked and packed. */
typedef struct {
    const char *dir;
    fy_config cfg; /* a copy parsed for the file names */
    fy_tokenizer *source, *target;
    int rc;
    fanyi_error err;
} tokenizer_load;

static void *load_tokenizers(void *p) {
    tokenizer_load *t = p;
    const fy_config *c = &t->cfg;
    const char *target_vocab = c->target_vocab[0] ? c->target_vocab : c->vocab;
    if (c->source_spm[0]) t->rc = fy_tokenizer_load(&t->source, t->dir, c->source_spm, c->vocab, c->src_vocab_size, &t->err);
    if (!t->rc && c->target_spm[0]) {
        /* One tokenizer serves both sides when they use the same files (a joint vocabulary). */
        if (t->source && !strcmp(c->source_spm, c->target_spm) && !strcmp(c->vocab, target_vocab) &&
            c->src_vocab_size == c->tgt_vocab_size)
            t->target = t->source;
        else
            t->rc = fy_tokenizer_load(&t->target, t->dir, c->target_spm, target_vocab, c->tgt_vocab_size, &t->err);
    }
    return NULL;
}

fanyi_model *fanyi_load(const char *dir, fanyi_error *err) {
    fanyi_model *fm = fy_calloc(1, sizeof *fm, err, "model");
    if (!fm) return NULL;
    tokenizer_load tl = {dir, {0}, NULL, NULL, FANYI_OK, {0}};
    char *config_path = fy_path_join(dir, "config.json");
    int rc = config_path ? fy_config_load(&tl.cfg, config_path, err) : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(config_path);
    pthread_t thread;
    int threaded = !rc && pthread_create(&thread, NULL, load_tokenizers, &tl) == 0;
    if (!rc && !threaded) load_tokenizers(&tl);
    if (!rc) rc = fy_model_load(&fm->model, dir, err);
    if (threaded) pthread_join(thread, NULL);
    fm->source = tl.source;
    fm->target = tl.target;
    if (!rc && tl.rc) {
        *err = tl.err;
        rc = tl.rc;
    }
    if (!rc && (!fm->source) != (!fm->target))
        rc = fy_fail(err, FANYI_ERR_MODEL, "%s/config.json: source_spm and target_spm must be given together", dir);
    if (tl.cfg.weights) fy_config_free(&tl.cfg);
    if (rc) {
        fanyi_free(fm);
        return NULL;
    }
    return fm;
}

void fanyi_free(fanyi_model *fm) {
    if (!fm) return;
    if (fm->target != fm->source) fy_tokenizer_free(fm->target);
    fy_tokenizer_free(fm->source);
    if (fm->model.weights) fy_model_free(&fm->model);
    else fy_config_free(&fm->model.cfg);
    free(fm);
}

int fanyi_src_vocab_size(const fanyi_model *fm) { return fm->model.cfg.src_vocab_size; }
int fanyi_tgt_vocab_size(const fanyi_model *fm) { return fm->model.cfg.tgt_vocab_size; }
int fanyi_has_tokenizer(const fanyi_model *fm) { return fm->source != NULL; }

int fanyi_target_langs(const fanyi_model *fm, const char **langs, int cap) {
    return fm->source ? fy_tokenizer_language_codes(fm->source, langs, cap) : 0;
}

/* The source id of opts->target_lang ("fra" or ">>fra<<"), or -1 when none is asked for. */
static int target_lang_id(const fanyi_model *fm, const fanyi_options *opts, int *id, fanyi_error *err) {
    *id = -1;
    if (!opts || !opts->target_lang) return FANYI_OK;
    const char *lang = opts->target_lang;
    size_t n = strlen(lang);
    int bare = !(n >= 5 && !strncmp(lang, ">>", 2) && !strcmp(lang + n - 2, "<<"));
    char *code = malloc(n + 5);
    if (!code) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    snprintf(code, n + 5, bare ? ">>%s<<" : "%s", lang);
    const char *codes[8];
    int n_codes = fanyi_target_langs(fm, codes, 8);
    *id = n_codes && n > 0 ? fy_tokenizer_model_id(fm->source, code, strlen(code)) : -1;
    int rc = FANYI_OK;
    if (*id < 0 && !n_codes)
        rc = fy_fail(err, FANYI_ERR_USAGE, "target language '%s': this model has a single target language", lang);
    else if (*id < 0)
        rc = fy_fail(err, FANYI_ERR_USAGE, "unknown target language '%s' (the model has %d, such as %s%s%s%s%s; "
                     "see --list-models)", lang, n_codes, codes[0], n_codes > 1 ? ", " : "", n_codes > 1 ? codes[1] : "",
                     n_codes > 2 ? ", " : "", n_codes > 2 ? codes[2] : "");
    free(code);
    return rc;
}

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

int fanyi_check_options(const fanyi_model *fm, const fanyi_options *opts, fanyi_error *err) {
    fy_search_opts resolved;
    int lang_id;
    int rc = fy_resolve_options(&fm->model.cfg, opts, &resolved, err);
    return rc ? rc : target_lang_id(fm, opts, &lang_id, err);
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

/* The pieces a line is translated in: token ids and the line they belong to. */
typedef struct {
    fy_ids ids;
    int line;
} segment;

typedef struct {
    segment *v;
    size_t n, cap;
} segments;

static fy_ids *segment_add(segments *sg, int line) {
    if (!fy_grow(&sg->v, &sg->cap, sg->n + 1, sizeof *sg->v)) return NULL;
    sg->v[sg->n] = (segment){{0}, line};
    return &sg->v[sg->n++].ids;
}

static void segments_free(segments *sg) {
    for (size_t i = 0; i < sg->n; i++) free(sg->v[i].ids.ids);
    free(sg->v);
}

/* Adds ids as pieces of at most cap tokens, each after the language code when there is one. */
static int add_chunks(segments *sg, int line, const fy_ids *ids, int cap, int lang_id) {
    size_t at = 0;
    if (lang_id >= 0) cap--;
    do {
        size_t n = ids->n - at < (size_t)cap ? ids->n - at : (size_t)cap;
        fy_ids *seg = segment_add(sg, line);
        if (!seg || (lang_id >= 0 && !fy_ids_push(seg, lang_id))) return 0;
        for (size_t k = 0; k < n; k++)
            if (!fy_ids_push(seg, ids->ids[at + k])) return 0;
        at += n;
    } while (at < ids->n);
    return 1;
}

/* Tokenizes one line into one or more segments; sets *warnings. */
/* Encodes text; a target-language code (lang_id >= 0) goes first unless the text is empty. */
static int encode_for(const fanyi_model *fm, const char *text, size_t len, int lang_id, fy_ids *out, int *warnings,
                      fanyi_error *err) {
    int rc = fy_tokenizer_encode(fm->source, text, len, out, warnings, err);
    if (rc || lang_id < 0 || out->n == 0) return rc;
    if (!fy_ids_push(out, 0)) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    memmove(out->ids + 1, out->ids, (out->n - 1) * sizeof *out->ids);
    out->ids[0] = lang_id;
    return FANYI_OK;
}

static int segment_line(const fanyi_model *fm, const char *text, size_t len, int line, int split, int lang_id,
                        segments *sg, int *warnings, fanyi_error *err) {
    const fy_config *c = &fm->model.cfg;
    int cap = c->max_positions - (c->source_eos ? 1 : 0);
    fy_ids whole = {0};
    int rc = encode_for(fm, text, len, lang_id, &whole, warnings, err);
    if (!rc && whole.n <= (size_t)cap && !split) {
        fy_ids *seg = segment_add(sg, line);
        if (!seg) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        else *seg = whole, whole = (fy_ids){0};
    } else if (!rc) {
        if (whole.n > (size_t)cap) *warnings |= FANYI_WARN_SPLIT << 8;
        size_t ncuts_cap = len / 2 + 1, *cuts = malloc(sizeof *cuts * ncuts_cap);
        if (!cuts) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        size_t ncuts = cuts ? fy_sentence_ends(text, len, cuts, ncuts_cap) : 0, begin = 0;
        for (size_t k = 0; !rc && k <= ncuts; k++) {
            size_t end = k < ncuts ? cuts[k] : len;
            fy_ids piece = {0};
            int w = 0;
            rc = fy_tokenizer_encode(fm->source, text + begin, end - begin, &piece, &w, err);
            if (!rc && piece.n && !add_chunks(sg, line, &piece, cap, lang_id))
                rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
            free(piece.ids);
            begin = end;
        }
        free(cuts);
    }
    free(whole.ids);
    return rc;
}

/* Joins the best translations of a line's segments into its single result. */
static int join_segments(fanyi_result *pieces, int n, fanyi_result *out, fanyi_error *err) {
    fy_text text = {0};
    fy_ids ids = {0};
    float score = 0, logprob = 0;
    int ok = fy_text_append(&text, "", 0);
    for (int i = 0; ok && i < n; i++) {
        if (!pieces[i].n_hyps) continue;
        const fanyi_hypothesis *h = &pieces[i].hyps[0];
        score += h->score;
        logprob += h->logprob;
        for (int k = 0; ok && k < h->n_ids; k++) ok = fy_ids_push(&ids, h->ids[k]);
        if (ok && h->text && h->text[0]) ok = (text.n == 0 || fy_text_append(&text, " ", 1)) && fy_text_append(&text, h->text, strlen(h->text));
    }
    out->hyps = ok ? calloc(1, sizeof *out->hyps) : NULL;
    if (!out->hyps) {
        free(text.s), free(ids.ids);
        return fy_fail(err, FANYI_ERR_MEMORY, "out of memory joining a split line");
    }
    out->hyps[0] = (fanyi_hypothesis){ids.ids, (int)ids.n, score, logprob, text.s};
    out->n_hyps = 1;
    return FANYI_OK;
}

int fanyi_translate_text(const fanyi_model *fm, const char *const *lines, const size_t *line_len, int n,
                         const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    *out = NULL;
    if (n < 0) return fy_fail(err, FANYI_ERR_USAGE, "negative sentence count %d", n);
    if (!fm->source)
        return fy_fail(err, FANYI_ERR_USAGE, "this model has no tokenizer files (source_spm/target_spm): use --input ids");
    segments sg = {0};
    int *warnings = fy_calloc((size_t)n, sizeof *warnings, err, "warnings");
    int rc = warnings ? FANYI_OK : FANYI_ERR_MEMORY;
    int split = opts && opts->split_sentences, lang_id = -1;
    if (!rc) rc = target_lang_id(fm, opts, &lang_id, err);
    for (int i = 0; !rc && i < n; i++) {
        size_t before = sg.n;
        rc = segment_line(fm, lines[i], line_len[i], i, split, lang_id, &sg, &warnings[i], err);
        if (!rc && sg.n == before && !segment_add(&sg, i)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    int n_seg = (int)sg.n;
    const int **src = rc ? NULL : fy_calloc(sg.n + 1, sizeof *src, err, "segments");
    int *len = rc ? NULL : fy_calloc(sg.n + 1, sizeof *len, err, "segments");
    if (!rc && (!src || !len)) rc = FANYI_ERR_MEMORY;
    for (int k = 0; !rc && k < n_seg; k++) {
        src[k] = sg.v[k].ids.ids;
        len[k] = (int)sg.v[k].ids.n;
    }
    fanyi_result *pieces = NULL, *results = NULL;
    if (!rc) rc = fanyi_translate_ids(fm, src, len, n_seg, opts, &pieces, err);
    if (!rc) rc = detokenize(fm, pieces, n_seg, err);
    if (!rc && !(results = fy_calloc((size_t)n, sizeof *results, err, "results"))) rc = FANYI_ERR_MEMORY;
    for (int k = 0, i = 0; !rc && i < n; i++) {
        int first = k;
        while (k < n_seg && sg.v[k].line == i) k++;
        if (k - first == 1 && !(warnings[i] >> 8)) {
            results[i] = pieces[first]; /* take over the single segment's result */
            pieces[first] = (fanyi_result){0};
        } else
            rc = join_segments(pieces + first, k - first, &results[i], err);
        results[i].warnings |= (warnings[i] & FY_TOK_INVALID_UTF8 ? FANYI_WARN_INVALID_UTF8 : 0) | (warnings[i] >> 8);
    }
    fanyi_results_free(pieces, pieces ? n_seg : 0);
    if (rc) fanyi_results_free(results, results ? n : 0);
    else *out = results;
    segments_free(&sg);
    free(src), free(len), free(warnings);
    return rc;
}
