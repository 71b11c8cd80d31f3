#include "spm.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

int fy_seg_push(segments *s, uint32_t begin, uint32_t len, int id) {
    if (!fy_grow(&s->v, &s->cap, s->n + 1, sizeof *s->v)) return 0;
    s->v[s->n++] = (segment){begin, len, id};
    return 1;
}

size_t fy_one_char_len(const char *s) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[(uint8_t)*s >> 4];
}

/* Unigram: SentencePiece's EncodeOptimized, same arithmetic (double candidates, float storage). */
int fy_spm_unigram(const fy_tokenizer *t, const char *s, size_t n, segments *out) {
    typedef struct {
        int id;
        float score;
        int starts_at;
    } best_node;
    best_node *best = malloc((n + 1) * sizeof *best);
    if (!best) return 0;
    for (size_t i = 0; i <= n; i++) best[i] = (best_node){-1, 0.0f, -1};
    const float unk_score = t->min_score - 10.0f;
    for (size_t start = 0; start < n;) {
        float till_here = best[start].score;
        int has_single = 0;
        size_t mblen = fy_one_char_len(s + start);
        if (mblen > n - start) mblen = n - start;
        int node = 0;
        for (size_t pos = start; pos < n;) {
            node = fy_trie_step(&t->pieces_trie, node, (uint8_t)s[pos++]);
            if (node < 0) break;
            int id = t->pieces_trie.value[node];
            if (id < 0 || t->pieces[id].type == P_UNUSED) continue;
            size_t length = pos - start;
            double score = t->pieces[id].type == P_USER ? (double)((float)length * t->max_score) - 0.1
                                                          : (double)t->pieces[id].score;
            double cand = score + (double)till_here;
            best_node *b = &best[pos];
            if (b->starts_at == -1 || cand > (double)b->score) *b = (best_node){id, (float)cand, (int)start};
            if (length == mblen) has_single = 1;
        }
        if (!has_single) {
            best_node *b = &best[start + mblen];
            float cand = unk_score + till_here;
            if (b->starts_at == -1 || cand > b->score) *b = (best_node){t->unk_id, cand, (int)start};
        }
        start += mblen;
    }
    size_t first = out->n, count = 0;
    for (size_t end = n; end > 0; end = (size_t)best[end].starts_at) count++;
    for (size_t i = 0; i < count; i++)
        if (!fy_seg_push(out, 0, 0, 0)) {
            free(best);
            return 0;
        }
    size_t i = first + count;
    for (size_t end = n; end > 0; end = (size_t)best[end].starts_at) {
        const best_node *b = &best[end];
        out->v[--i] = (segment){(uint32_t)b->starts_at, (uint32_t)(end - (size_t)b->starts_at), b->id};
    }
    free(best);
    return 1;
}
