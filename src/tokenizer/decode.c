#include "spm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- decoding ---------------------------------------------------------------- */

/* Appends bytes collected from byte pieces; invalid sequences become U+FFFD per byte. */
static int flush_bytes(fy_text *out, fy_text *bytes) {
    for (size_t i = 0; i < bytes->n;) {
        size_t k = fy_utf8_char_len(bytes->s + i, bytes->n - i);
        if (!(k ? fy_text_append(out, bytes->s + i, k) : fy_text_append(out, kReplacement, 3))) return 0;
        i += k ? k : 1;
    }
    bytes->n = 0;
    return 1;
}

/* SentencePiece 0.1.97's Decode: the leading U+2581 is dropped while the text is still empty. */
static int decode_piece(const fy_tokenizer *t, const char *s, size_t n, fy_text *out, fy_text *bytes) {
    int id = fy_spm_piece_id(t, s, n);
    const piece *p = &t->pieces[id];
    if (p->type == P_BYTE) {
        unsigned v = 0;
        sscanf(p->s + 3, "%2X", &v);
        char c = (char)v;
        return fy_text_append(bytes, &c, 1);
    }
    if (!flush_bytes(out, bytes)) return 0;
    if (p->type == P_CONTROL) return 1;
    if (p->type == P_UNKNOWN) {
        if (p->len == n && !memcmp(p->s, s, n)) return fy_text_append(out, t->unk_surface, t->unk_surface_len);
        return fy_text_append(out, s, n);
    }
    size_t i = 0;
    if (out->n == 0 && (t->add_dummy_prefix || t->remove_extra_ws) && n >= 3 && !memcmp(s, kSpace, 3)) i = 3;
    while (i < n) {
        if (n - i >= 3 && !memcmp(s + i, kSpace, 3)) {
            if (!fy_text_append(out, " ", 1)) return 0;
            i += 3;
        } else {
            if (!fy_text_append(out, s + i, 1)) return 0;
            i++;
        }
    }
    return 1;
}

int fy_tokenizer_decode_pieces(const fy_tokenizer *t, const char *const *pieces, const size_t *lens, size_t n,
                               fy_text *out, fanyi_error *err) {
    fy_text line = {0}, bytes = {0};
    int ok = fy_text_append(&line, "", 0);
    for (size_t i = 0; ok && i < n; i++) ok = decode_piece(t, pieces[i], lens[i], &line, &bytes);
    ok = ok && flush_bytes(&line, &bytes) && fy_text_append(out, line.s, line.n);
    free(line.s);
    free(bytes.s);
    return ok ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory decoding");
}

int fy_tokenizer_decode(const fy_tokenizer *t, const int *ids, size_t n, fy_text *out, fanyi_error *err) {
    fy_text line = {0}, bytes = {0};
    int ok = fy_text_append(&line, "", 0), limit = fy_tokenizer_size(t);
    for (size_t i = 0; ok && i < n; i++) {
        if (ids[i] < 0 || ids[i] >= limit) {
            free(line.s), free(bytes.s);
            return fy_fail(err, FANYI_ERR_INPUT, "%s: id %d is outside the vocabulary (0..%d)", t->name, ids[i], limit - 1);
        }
        if (t->has_vocab) {
            const char *p = t->model_pieces[ids[i]];
            ok = p ? decode_piece(t, p, strlen(p), &line, &bytes) : 1;
        } else
            ok = decode_piece(t, t->pieces[ids[i]].s, t->pieces[ids[i]].len, &line, &bytes);
    }
    ok = ok && flush_bytes(&line, &bytes) && fy_text_append(out, line.s, line.n);
    free(line.s);
    free(bytes.s);
    return ok ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory decoding");
}
