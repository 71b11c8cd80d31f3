/*
 * index.h -- the tokenizer's lookup structures: a string -> int hash map and
 * a byte trie, both filled once when a model loads and read-only afterwards.
 */
#ifndef FANYI_TOKENIZER_INDEX_H
#define FANYI_TOKENIZER_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* String -> int, open addressing; keys point into memory the owner keeps. */
typedef struct {
    const char **keys;
    uint32_t *lens;
    int *vals;
    size_t cap;
} strmap;

/* A byte trie: (node, byte) -> child in one hash table; each node may end a piece. */
typedef struct {
    uint64_t *keys; /* node << 8 | byte, plus 1 so that 0 means empty */
    int32_t *child;
    size_t cap;
    int32_t *value; /* piece id ending at node, or -1 */
    int n_nodes, cap_nodes;
} trie;

uint64_t fy_hash_bytes(const char *s, size_t n);
int fy_strmap_init(strmap *m, size_t n);
void fy_strmap_free(strmap *m);
/* Returns 0 if the key was already present (value unchanged). */
int fy_strmap_put(strmap *m, const char *k, size_t n, int v);
/* The value of key k, or -1. */
int fy_strmap_get(const strmap *m, const char *k, size_t n);

int fy_trie_init(trie *t, size_t total_bytes);
void fy_trie_free(trie *t);
void fy_trie_insert(trie *t, const char *s, size_t n, int id);

/* The child of node by byte, or -1. */
static inline int fy_trie_step(const trie *t, int node, uint8_t byte) {
    uint64_t key = ((uint64_t)node << 8 | byte) + 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & (t->cap - 1); t->keys[i]; i = (i + 1) & (t->cap - 1))
        if (t->keys[i] == key) return t->child[i];
    return -1;
}

#endif
