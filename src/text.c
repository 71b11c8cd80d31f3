/*
 * text.c -- fanyi_translate_text: lines tokenized (with a target-language
 * code when asked), too-long lines cut at sentence ends, pieces translated
 * as ids, detokenized and rejoined one result per line.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#include "sentences.h"

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

static int translate_text_in(fanyi_context *ctx, const fanyi_model *fm, const char *const *lines,
                             const size_t *line_len, int n, const fanyi_options *opts, fanyi_result **out,
                             fanyi_error *err) {
    *out = NULL;
    if (n < 0) return fy_fail(err, FANYI_ERR_USAGE, "negative sentence count %d", n);
    if (!fm->source)
        return fy_fail(err, FANYI_ERR_USAGE, "this model has no tokenizer files (source_spm/target_spm): use --input ids");
    segments sg = {0};
    int *warnings = fy_arena_alloc(&ctx->arena, (size_t)n, sizeof *warnings, 1, err, "warnings");
    int rc = warnings ? FANYI_OK : FANYI_ERR_MEMORY;
    int split = opts && opts->split_sentences, lang_id = -1;
    if (!rc) rc = fy_target_lang_id(fm, opts, &lang_id, err);
    for (int i = 0; !rc && i < n; i++) {
        size_t before = sg.n;
        rc = segment_line(fm, lines[i], line_len[i], i, split, lang_id, &sg, &warnings[i], err);
        if (!rc && sg.n == before && !segment_add(&sg, i)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    int n_seg = (int)sg.n;
    const int **src = rc ? NULL : fy_arena_alloc(&ctx->arena, sg.n + 1, sizeof *src, 0, err, "segments");
    int *len = src ? fy_arena_alloc(&ctx->arena, sg.n + 1, sizeof *len, 0, err, "segments") : NULL;
    if (!rc && !len) rc = FANYI_ERR_MEMORY;
    for (int k = 0; !rc && k < n_seg; k++) {
        src[k] = sg.v[k].ids.ids;
        len[k] = (int)sg.v[k].ids.n;
    }
    fanyi_result *pieces = NULL, *results = NULL;
    if (!rc) rc = fy_translate_ids_in(ctx, fm, src, len, n_seg, opts, &pieces, err);
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
    return rc;
}

int fanyi_context_translate_text(fanyi_context *ctx, const fanyi_model *fm, const char *const *lines,
                                 const size_t *line_len, int n, const fanyi_options *opts, fanyi_result **out,
                                 fanyi_error *err) {
    int rc = translate_text_in(ctx, fm, lines, line_len, n, opts, out, err);
    fy_arena_reset(&ctx->arena);
    return rc;
}

int fanyi_translate_text(const fanyi_model *fm, const char *const *lines, const size_t *line_len, int n,
                         const fanyi_options *opts, fanyi_result **out, fanyi_error *err) {
    fanyi_context *ctx = NULL;
    *out = NULL;
    int rc = fy_context_temporary(opts, &ctx, err);
    if (!rc) rc = translate_text_in(ctx, fm, lines, line_len, n, opts, out, err);
    fanyi_context_free(ctx);
    return rc;
}
