#include "spm.h"

#include <stdlib.h>
#include <string.h>

int fy_spm_piece_id(const fy_tokenizer *t, const char *s, size_t n) {
    int id = fy_strmap_get(&t->reserved, s, n);
    if (id < 0) id = fy_strmap_get(&t->normal, s, n);
    return id < 0 ? t->unk_id : id;
}

typedef struct {
    int left, right;
    float score;
    uint32_t size;
} bpe_pair;

typedef struct {
    int prev, next, freeze;
    uint32_t begin, len;
} bpe_symbol;

/* Max-heap on (score, then lower left). */
static int pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bpe_pair *v;
    size_t n, cap;
} pair_heap;

static int heap_push(pair_heap *h, bpe_pair p) {
    if (!fy_grow(&h->v, &h->cap, h->n + 1, sizeof *h->v)) return 0;
    size_t i = h->n++;
    while (i > 0 && pair_before(&p, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = p;
    return 1;
}

static bpe_pair heap_pop(pair_heap *h) {
    bpe_pair top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c])) c++;
        if (!pair_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* Merges that produced unused pieces, for resegmentation (SentencePiece's rev_merge). */
typedef struct {
    uint32_t begin, size, left_len; /* the merged piece at norm[begin..+size), split at left_len */
} bpe_merge;

typedef struct {
    bpe_merge *v;
    size_t n, cap;
} merge_log;

static int bpe_add_pair(const fy_tokenizer *t, const char *s, const bpe_symbol *sym, int left, int right, pair_heap *h,
                        merge_log *log) {
    if (left < 0 || right < 0 || sym[left].freeze || sym[right].freeze) return 1;
    uint32_t size = sym[left].len + sym[right].len;
    int id = fy_strmap_get(&t->normal, s + sym[left].begin, size);
    if (id < 0) return 1;
    if (t->pieces[id].type == P_UNUSED) {
        if (!fy_grow(&log->v, &log->cap, log->n + 1, sizeof *log->v)) return 0;
        log->v[log->n++] = (bpe_merge){sym[left].begin, size, sym[left].len};
    }
    return heap_push(h, (bpe_pair){left, right, t->pieces[id].score, size});
}

/* Splits an unused piece back into the two pieces it was last recorded as merged from. */
static int bpe_resegment(const fy_tokenizer *t, const char *s, uint32_t begin, uint32_t len, const merge_log *log,
                         segments *out) {
    int id = fy_spm_piece_id(t, s + begin, len);
    if (t->pieces[id].type == P_UNUSED)
        for (size_t i = log->n; i-- > 0;) {
            const bpe_merge *m = &log->v[i];
            if (m->size == len && !memcmp(s + m->begin, s + begin, len))
                return bpe_resegment(t, s, begin, m->left_len, log, out) &&
                       bpe_resegment(t, s, begin + m->left_len, len - m->left_len, log, out);
        }
    return fy_seg_push(out, begin, len, id);
}

int fy_spm_bpe(const fy_tokenizer *t, const char *s, size_t n, segments *out) {
    size_t count = 0;
    for (size_t i = 0; i < n; count++) {
        size_t k = fy_spm_user_longest(t, s + i, n - i);
        i += k ? k : (fy_one_char_len(s + i) < n - i ? fy_one_char_len(s + i) : n - i);
    }
    bpe_symbol *sym = malloc((count ? count : 1) * sizeof *sym);
    pair_heap heap = {0};
    merge_log log = {0};
    if (!sym) return 0;
    size_t idx = 0;
    for (size_t i = 0; i < n; idx++) {
        size_t k = fy_spm_user_longest(t, s + i, n - i);
        int freeze = k > 0;
        if (!k) k = fy_one_char_len(s + i) < n - i ? fy_one_char_len(s + i) : n - i;
        sym[idx] = (bpe_symbol){(int)idx - 1, idx + 1 < count ? (int)idx + 1 : -1, freeze, (uint32_t)i, (uint32_t)k};
        i += k;
    }
    int ok = 1;
    for (size_t i = 1; ok && i < count; i++) ok = bpe_add_pair(t, s, sym, (int)i - 1, (int)i, &heap, &log);
    while (ok && heap.n) {
        bpe_pair top = heap_pop(&heap);
        bpe_symbol *l = &sym[top.left], *r = &sym[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = top.left;
        r->len = 0;
        ok = bpe_add_pair(t, s, sym, l->prev, top.left, &heap, &log) && bpe_add_pair(t, s, sym, top.left, l->next, &heap, &log);
    }
    for (int i = count ? 0 : -1; ok && i != -1; i = sym[i].next) ok = bpe_resegment(t, s, sym[i].begin, sym[i].len, &log, out);
    free(sym);
    free(heap.v);
    free(log.v);
    return ok;
}
