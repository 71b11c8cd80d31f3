#include "spm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- growable buffers ------------------------------------------------------ */

int fy_ids_push(fy_ids *v, int id) {
    if (!fy_grow(&v->ids, &v->cap, v->n + 1, sizeof *v->ids)) return 0;
    v->ids[v->n++] = id;
    return 1;
}

int fy_text_append(fy_text *t, const char *s, size_t n) {
    if (!fy_grow(&t->s, &t->cap, t->n + n + 1, 1)) return 0;
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = '\0';
    return 1;
}

/* Normalizes and segments text; segments index into norm. */
static int segment_text(const fy_tokenizer *t, const char *text, size_t len, fy_text *norm, segments *segs,
                        int *warnings, fanyi_error *err) {
    const char *src = text;
    size_t n = len;
    /* Invalid bytes become U+FFFD inside the normalizer, one per byte and after
     * the character map has had its chance, as SentencePiece does; here they
     * are only reported. */
    for (size_t i = 0; i < len;) {
        size_t k = fy_utf8_char_len(text + i, len - i);
        if (!k) {
            *warnings |= FY_TOK_INVALID_UTF8;
            break;
        }
        i += k;
    }
    utf8proc_uint8_t *folded = NULL;
    if (t->nfkc && !t->charsmap_trie && n > 0) {
        /* No compiled map in the model: apply the named normalization with utf8proc. */
        utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        if (t->casefold) opt |= UTF8PROC_CASEFOLD;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)n, &folded, opt);
        if (r >= 0) {
            src = (const char *)folded;
            n = (size_t)r;
        }
    }
    int ok = fy_spm_normalize(t, src, n, norm);
    free(folded);
    if (!ok) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory normalizing a line");
    if (norm->n == 0) return FANYI_OK;
    ok = t->model_type == M_BPE ? fy_spm_bpe(t, norm->s, norm->n, segs) : fy_spm_unigram(t, norm->s, norm->n, segs);
    return ok ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory segmenting a line");
}

/* Calls emit(piece text, spm id) for each output piece: byte fallback expanded, unknown runs merged. */
typedef int (*piece_sink)(void *ctx, const fy_tokenizer *t, const char *s, size_t n, int spm_id);

static int emit_pieces(const fy_tokenizer *t, const fy_text *norm, const segments *segs, piece_sink sink, void *ctx) {
    for (size_t i = 0; i < segs->n; i++) {
        const segment *sg = &segs->v[i];
        int is_unk = t->pieces[sg->id].type == P_UNKNOWN;
        if (is_unk && t->byte_fallback) {
            for (uint32_t j = 0; j < sg->len; j++) {
                char byte_piece[8];
                snprintf(byte_piece, sizeof byte_piece, "<0x%02X>", (uint8_t)norm->s[sg->begin + j]);
                if (!sink(ctx, t, byte_piece, 6, fy_spm_piece_id(t, byte_piece, 6))) return 0;
            }
            continue;
        }
        uint32_t len = sg->len;
        while (is_unk && i + 1 < segs->n && t->pieces[segs->v[i + 1].id].type == P_UNKNOWN) len += segs->v[++i].len;
        if (!sink(ctx, t, norm->s + sg->begin, len, sg->id)) return 0;
    }
    return 1;
}

static int sink_ids(void *ctx, const fy_tokenizer *t, const char *s, size_t n, int spm_id) {
    int id = spm_id;
    if (t->has_vocab) {
        /* Marian maps the piece string through vocab.json; unknown pieces become <unk>. */
        id = fy_strmap_get(&t->model_ids, s, n);
        if (id < 0) id = t->model_unk;
    }
    return fy_ids_push(ctx, id);
}

static int sink_pieces(void *ctx, const fy_tokenizer *t, const char *s, size_t n, int spm_id) {
    fy_text *out = ctx;
    (void)t, (void)spm_id;
    return (out->n == 0 || fy_text_append(out, " ", 1)) && fy_text_append(out, s, n);
}

static int encode_with(const fy_tokenizer *t, const char *text, size_t len, piece_sink sink, void *ctx, int *warnings,
                       fanyi_error *err) {
    fy_text norm = {0};
    segments segs = {0};
    int rc = segment_text(t, text, len, &norm, &segs, warnings, err);
    if (!rc && !emit_pieces(t, &norm, &segs, sink, ctx)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(norm.s);
    free(segs.v);
    return rc;
}

/* ---- Marian's text conventions --------------------------------------------------- */

/* MarianTokenizer's special tokens: written literally in the text, each becomes its id. */
static const char *const kMarianSpecials[] = {"</s>", "<unk>", "<pad>"};

/* The special token of the vocabulary that starts at text[0], or -1; *n gets its length. */
static int special_at(const fy_tokenizer *t, const char *text, size_t len, size_t *n) {
    for (size_t k = 0; k < sizeof kMarianSpecials / sizeof *kMarianSpecials; k++) {
        size_t sn = strlen(kMarianSpecials[k]);
        int id = sn <= len && !memcmp(text, kMarianSpecials[k], sn) ? fy_strmap_get(&t->model_ids, text, sn) : -1;
        if (id >= 0) {
            *n = sn;
            return id;
        }
    }
    return -1;
}

/* The span of a language code ">>xx<<" as Python's re ">>.+<<" finds it:
 * from the first ">>" to the last "<<" at least one character later.
 * Returns 0 if there is none. */
static int language_code_span(const char *text, size_t len, size_t *begin, size_t *end) {
    const char *open = len >= 5 ? memmem(text, len, ">>", 2) : NULL;
    if (!open) return 0;
    size_t from = (size_t)(open - text) + 3;
    for (size_t q = len - 2; q >= from; q--) /* from >= 3: q cannot wrap */
        if (text[q] == '<' && text[q + 1] == '<') {
            *begin = (size_t)(open - text);
            *end = q + 2;
            return 1;
        }
    return 0;
}

/* One stretch of text between special tokens, as MarianTokenizer._tokenize
 * does it: a language code at its start becomes one id (<unk> if the
 * vocabulary lacks it), a code anywhere is cut out, the rest is SentencePiece's. */
static int encode_marian_segment(const fy_tokenizer *t, const char *text, size_t len, fy_ids *out, int *warnings,
                                 fanyi_error *err) {
    size_t begin, end;
    if (!language_code_span(text, len, &begin, &end)) return encode_with(t, text, len, sink_ids, out, warnings, err);
    if (begin == 0) {
        int id = fy_strmap_get(&t->model_ids, text, end);
        if (!fy_ids_push(out, id >= 0 ? id : t->model_unk)) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    fy_text rest = {0};
    int rc = fy_text_append(&rest, text, begin) && fy_text_append(&rest, text + end, len - end)
                 ? encode_with(t, rest.s, rest.n, sink_ids, out, warnings, err)
                 : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(rest.s);
    return rc;
}

int fy_tokenizer_encode(const fy_tokenizer *t, const char *text, size_t len, fy_ids *out, int *warnings,
                        fanyi_error *err) {
    if (!t->has_vocab) return encode_with(t, text, len, sink_ids, out, warnings, err);
    size_t from = 0;
    for (size_t i = 0; i <= len;) {
        size_t n = 0;
        int special = i < len ? special_at(t, text + i, len - i, &n) : -1;
        if (special < 0 && i < len) {
            i++;
            continue;
        }
        int rc = i > from ? encode_marian_segment(t, text + from, i - from, out, warnings, err) : FANYI_OK;
        if (!rc && special >= 0 && !fy_ids_push(out, special)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        if (rc) return rc;
        if (special < 0) break;
        i += n;
        from = i;
    }
    return FANYI_OK;
}

int fy_tokenizer_model_id(const fy_tokenizer *t, const char *entry, size_t n) {
    return t->has_vocab ? fy_strmap_get(&t->model_ids, entry, n) : -1;
}

int fy_tokenizer_language_codes(const fy_tokenizer *t, const char **codes, int cap) {
    int n = 0;
    for (int id = 0; t->has_vocab && id < t->n_model; id++) {
        const char *p = t->model_pieces[id];
        size_t len = p ? strlen(p) : 0, begin, end;
        if (len >= 5 && language_code_span(p, len, &begin, &end) && begin == 0 && end == len) {
            if (n < cap) codes[n] = p;
            n++;
        }
    }
    return n;
}

int fy_tokenizer_encode_pieces(const fy_tokenizer *t, const char *text, size_t len, fy_text *out, int *warnings,
                               fanyi_error *err) {
    fy_text line = {0};
    int rc = encode_with(t, text, len, sink_pieces, &line, warnings, err);
    if (!rc && line.n && !fy_text_append(out, line.s, line.n)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(line.s);
    return rc;
}
