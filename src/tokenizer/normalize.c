#include "spm.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- normalizer -------------------------------------------------------------- */

/* darts-clone double array: longest prefix of s[0..n) with a value. */
static size_t charsmap_longest(const fy_tokenizer *t, const char *s, size_t n, uint32_t *value) {
    const uint8_t *u = t->charsmap_trie;
#define UNIT(i) ((uint32_t)u[4 * (i)] | (uint32_t)u[4 * (i) + 1] << 8 | (uint32_t)u[4 * (i) + 2] << 16 | (uint32_t)u[4 * (i) + 3] << 24)
#define OFFSET(x) (((x) >> 10) << (((x) & (1u << 9)) >> 6))
    size_t best = 0, pos = 0;
    uint32_t unit = UNIT(0);
    pos ^= OFFSET(unit);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        pos ^= c;
        if (pos >= t->charsmap_units) break;
        unit = UNIT(pos);
        if ((unit & ((1u << 31) | 0xFF)) != c) break;
        pos ^= OFFSET(unit);
        if (pos >= t->charsmap_units) break;
        if ((unit >> 8) & 1) {
            best = i + 1;
            *value = UNIT(pos) & ((1u << 31) - 1);
        }
    }
#undef UNIT
#undef OFFSET
    return best;
}

size_t fy_spm_user_longest(const fy_tokenizer *t, const char *s, size_t n) {
    if (!t->has_user) return 0;
    size_t best = 0;
    int node = 0;
    for (size_t i = 0; i < n && node >= 0; i++) {
        node = fy_trie_step(&t->user_trie, node, (uint8_t)s[i]);
        if (node >= 0 && t->user_trie.value[node] >= 0) best = i + 1;
    }
    return best;
}

/* Length of the valid UTF-8 character at s, or 0 if the bytes are invalid. */
size_t fy_utf8_char_len(const char *s, size_t n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    return k > 0 ? (size_t)k : 0;
}

/* One step of normalization at s: sets the replacement (out, out_len); returns bytes consumed. */
static size_t normalize_prefix(const fy_tokenizer *t, const char *s, size_t n, const char **out, size_t *out_len) {
    size_t k = fy_spm_user_longest(t, s, n);
    if (k) {
        *out = s;
        *out_len = k;
        return k;
    }
    uint32_t value = 0;
    k = t->charsmap_trie ? charsmap_longest(t, s, n, &value) : 0;
    if (k && value < t->charsmap_norm_size) {
        *out = t->charsmap_norm + value;
        *out_len = strnlen(*out, t->charsmap_norm_size - value);
        return k;
    }
    k = fy_utf8_char_len(s, n);
    if (!k) {
        *out = kReplacement;
        *out_len = 3;
        return 1;
    }
    *out = s;
    *out_len = k;
    return k;
}

static int ends_with_space(const fy_text *o, const char *sp, size_t sl) {
    return o->n >= sl && !memcmp(o->s + o->n - sl, sp, sl);
}

/* SentencePiece's Normalizer::Normalize. */
int fy_spm_normalize(const fy_tokenizer *t, const char *s, size_t n, fy_text *o) {
    o->n = 0;
    if (o->s) o->s[0] = '\0';
    const char *rep;
    size_t rep_len, k;
    if (t->remove_extra_ws)
        while (n > 0 && (k = normalize_prefix(t, s, n, &rep, &rep_len)) && rep_len == 1 && rep[0] == ' ') {
            s += k;
            n -= k;
        }
    if (n == 0) return 1;
    const char *space = t->escape_ws ? kSpace : " ";
    size_t space_len = t->escape_ws ? 3 : 1;
    if (!t->treat_ws_as_suffix && t->add_dummy_prefix && !fy_text_append(o, space, space_len)) return 0;
    int prev_space = t->remove_extra_ws;
    while (n > 0) {
        k = normalize_prefix(t, s, n, &rep, &rep_len);
        while (prev_space && rep_len > 0 && rep[0] == ' ') rep++, rep_len--;
        if (rep_len > 0) {
            for (size_t i = 0; i < rep_len; i++) {
                int ok = (t->escape_ws && rep[i] == ' ') ? fy_text_append(o, kSpace, 3) : fy_text_append(o, rep + i, 1);
                if (!ok) return 0;
            }
            prev_space = rep[rep_len - 1] == ' ';
        }
        s += k;
        n -= k;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws)
        while (ends_with_space(o, space, space_len)) o->n -= space_len, o->s[o->n] = '\0';
    if (t->treat_ws_as_suffix && t->add_dummy_prefix && !fy_text_append(o, space, space_len)) return 0;
    return 1;
}
