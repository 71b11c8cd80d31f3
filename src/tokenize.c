/*
 * tokenize.c -- the tokenizers in the public API: SentencePiece files on
 * their own, a model's own tokenizers, and text <-> ids or pieces, with
 * results the caller releases with free().
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

fanyi_tokenizer *fanyi_tokenizer_load(const char *path, fanyi_error *err) {
    fy_tokenizer *tok = NULL;
    return fy_spm_load_file(&tok, path, err) ? NULL : tok;
}

void fanyi_tokenizer_free(fanyi_tokenizer *tok) { fy_tokenizer_free(tok); }

const fanyi_tokenizer *fanyi_source_tokenizer(const fanyi_model *fm) { return fm->source; }
const fanyi_tokenizer *fanyi_target_tokenizer(const fanyi_model *fm) { return fm->target; }

/* Hands a growable string to the caller, NUL-terminated (an empty one too). */
static int give_text(fy_text *t, char **out, size_t *out_len, fanyi_error *err) {
    size_t n = t->n;
    if (!fy_text_append(t, "", 1)) {
        free(t->s);
        return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    *out = t->s;
    if (out_len) *out_len = n;
    return FANYI_OK;
}

int fanyi_tokenize(const fanyi_tokenizer *tok, const char *text, size_t len, int **ids, int *n_ids, int *warnings,
                   fanyi_error *err) {
    fy_ids v = {0};
    int w = 0, rc = fy_tokenizer_encode(tok, text, len, &v, &w, err);
    if (!rc && !v.ids && !(v.ids = malloc(sizeof(int)))) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    if (rc) {
        free(v.ids);
        return rc;
    }
    *ids = v.ids;
    *n_ids = (int)v.n;
    if (warnings) *warnings = w & FY_TOK_INVALID_UTF8 ? FANYI_WARN_INVALID_UTF8 : 0;
    return FANYI_OK;
}

int fanyi_tokenize_pieces(const fanyi_tokenizer *tok, const char *text, size_t len, char **pieces, size_t *out_len,
                          int *warnings, fanyi_error *err) {
    fy_text t = {0};
    int w = 0, rc = fy_tokenizer_encode_pieces(tok, text, len, &t, &w, err);
    if (rc) {
        free(t.s);
        return rc;
    }
    if (warnings) *warnings = w & FY_TOK_INVALID_UTF8 ? FANYI_WARN_INVALID_UTF8 : 0;
    return give_text(&t, pieces, out_len, err);
}

int fanyi_detokenize(const fanyi_tokenizer *tok, const int *ids, int n_ids, char **text, size_t *out_len,
                     fanyi_error *err) {
    if (n_ids < 0) return fy_fail(err, FANYI_ERR_USAGE, "negative id count %d", n_ids);
    fy_text t = {0};
    int rc = fy_tokenizer_decode(tok, ids, (size_t)n_ids, &t, err);
    if (rc) {
        free(t.s);
        return rc;
    }
    return give_text(&t, text, out_len, err);
}

int fanyi_detokenize_pieces(const fanyi_tokenizer *tok, const char *const *pieces, const size_t *lens, int n,
                            char **text, size_t *out_len, fanyi_error *err) {
    if (n < 0) return fy_fail(err, FANYI_ERR_USAGE, "negative piece count %d", n);
    fy_text t = {0};
    int rc = fy_tokenizer_decode_pieces(tok, pieces, lens, (size_t)n, &t, err);
    if (rc) {
        free(t.s);
        return rc;
    }
    return give_text(&t, text, out_len, err);
}
