#include "index.h"

#include <stdlib.h>
#include <string.h>

uint64_t fy_hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

int fy_strmap_init(strmap *m, size_t n) {
    m->cap = 16;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->lens = calloc(m->cap, sizeof *m->lens);
    m->vals = calloc(m->cap, sizeof *m->vals);
    return m->keys && m->lens && m->vals;
}

void fy_strmap_free(strmap *m) { free(m->keys), free(m->lens), free(m->vals); }

int fy_strmap_put(strmap *m, const char *k, size_t n, int v) {
    size_t i = fy_hash_bytes(k, n) & (m->cap - 1);
    for (; m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->lens[i] == n && !memcmp(m->keys[i], k, n)) return 0;
    m->keys[i] = k;
    m->lens[i] = (uint32_t)n;
    m->vals[i] = v;
    return 1;
}

int fy_strmap_get(const strmap *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    for (size_t i = fy_hash_bytes(k, n) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->lens[i] == n && !memcmp(m->keys[i], k, n)) return m->vals[i];
    return -1;
}

int fy_trie_init(trie *t, size_t total_bytes) {
    memset(t, 0, sizeof *t);
    t->cap = 16;
    while (t->cap < 2 * total_bytes + 16) t->cap *= 2;
    t->cap_nodes = (int)total_bytes + 1;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->child = calloc(t->cap, sizeof *t->child);
    t->value = malloc(sizeof *t->value * (size_t)t->cap_nodes);
    if (!t->keys || !t->child || !t->value) return 0;
    t->value[0] = -1;
    t->n_nodes = 1;
    return 1;
}

void fy_trie_free(trie *t) { free(t->keys), free(t->child), free(t->value); }

void fy_trie_insert(trie *t, const char *s, size_t n, int id) {
    int node = 0;
    for (size_t j = 0; j < n; j++) {
        int next = fy_trie_step(t, node, (uint8_t)s[j]);
        if (next < 0) {
            uint64_t key = ((uint64_t)node << 8 | (uint8_t)s[j]) + 1;
            size_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & (t->cap - 1);
            while (t->keys[i]) i = (i + 1) & (t->cap - 1);
            next = t->n_nodes++;
            t->value[next] = -1;
            t->keys[i] = key;
            t->child[i] = next;
        }
        node = next;
    }
    if (t->value[node] < 0) t->value[node] = id;
}
