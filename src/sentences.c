#include "sentences.h"

#include <utf8proc.h>

static int decode(const char *s, size_t n, utf8proc_int32_t *cp) {
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, cp);
    if (k <= 0) {
        *cp = -1;
        return 1;
    }
    return (int)k;
}

static int is_space(utf8proc_int32_t c) {
    return c == ' ' || c == '\t' || c == 0x3000 || c == 0xA0 || (c > 0 && utf8proc_category(c) == UTF8PROC_CATEGORY_ZS);
}

static int is_closing(utf8proc_int32_t c) { /* quotes and brackets that end with the sentence */
    return c == '"' || c == '\'' || c == ')' || c == ']' || c == 0x201D || c == 0x2019 || c == 0x00BB ||
           c == 0x300D || c == 0x300F || c == 0xFF09;
}

size_t fy_sentence_ends(const char *text, size_t len, size_t *cuts, size_t cap) {
    size_t n = 0, i = 0;
    while (i < len && n < cap) {
        utf8proc_int32_t c;
        int k = decode(text + i, len - i, &c);
        i += (size_t)k;
        int cjk_stop = c == 0x3002 || c == 0xFF01 || c == 0xFF1F;
        int latin_stop = c == '.' || c == '!' || c == '?' || c == 0x2026 || c == ';';
        if (!cjk_stop && !latin_stop) continue;
        /* Runs of terminators and closing quotes stay with the sentence. */
        while (i < len) {
            utf8proc_int32_t d;
            int kd = decode(text + i, len - i, &d);
            if (d == '.' || d == '!' || d == '?' || d == 0x3002 || d == 0xFF01 || d == 0xFF1F || is_closing(d))
                i += (size_t)kd;
            else
                break;
        }
        size_t end = i;
        if (!cjk_stop) {
            /* Latin: needs whitespace, then a word that is not in lower case. */
            size_t j = i;
            utf8proc_int32_t d = -1;
            int spaces = 0;
            while (j < len) {
                int kd = decode(text + j, len - j, &d);
                if (!is_space(d)) break;
                j += (size_t)kd;
                spaces = 1;
            }
            if (!spaces || j >= len || utf8proc_category(d) == UTF8PROC_CATEGORY_LL) continue;
            end = j; /* the spaces go with the sentence before */
        }
        if (end > 0 && end < len) cuts[n++] = end;
    }
    return n;
}
