#include "arena.h"

#include <stdlib.h>
#include <string.h>

enum { ALIGN = 64 };

static size_t round_up(size_t n) { return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

static void *spill(fy_arena *a, size_t bytes) {
    if (!fy_grow(&a->spills, &a->cap_spills, a->n_spills + 1, sizeof *a->spills)) return NULL;
    void *p = aligned_alloc(ALIGN, bytes);
    if (!p) return NULL;
    a->spills[a->n_spills++] = (struct fy_spill){p, bytes};
    a->spilled += bytes;
    return p;
}

void *fy_arena_alloc(fy_arena *a, size_t n, size_t size, int zero, fanyi_error *err, const char *what) {
    size_t bytes;
    if (!fy_mul_size(n ? n : 1, size ? size : 1, &bytes) || bytes > SIZE_MAX - ALIGN) {
        fy_fail(err, FANYI_ERR_MEMORY, "%s: %zu x %zu bytes is too large", what, n, size);
        return NULL;
    }
    bytes = round_up(bytes);
    void *p;
    if (a->cap - a->used >= bytes) {
        p = a->block + a->used;
        a->used += bytes;
    } else if (!(p = spill(a, bytes))) {
        fy_fail(err, FANYI_ERR_MEMORY, "out of memory for %s (%zu bytes)", what, bytes);
        return NULL;
    }
    if (a->used + a->spilled > a->peak) a->peak = a->used + a->spilled;
    if (zero) memset(p, 0, bytes);
    return p;
}

fy_arena_mark fy_arena_save(const fy_arena *a) { return (fy_arena_mark){a->used, a->n_spills}; }

void fy_arena_restore(fy_arena *a, fy_arena_mark mark) {
    while (a->n_spills > mark.n_spills) {
        a->n_spills--;
        a->spilled -= a->spills[a->n_spills].bytes;
        free(a->spills[a->n_spills].p);
    }
    a->used = mark.used;
}

void fy_arena_reset(fy_arena *a) {
    fy_arena_restore(a, (fy_arena_mark){0, 0});
    if (a->peak > a->cap) {
        /* One block for what the call needed at once; pages are committed as they are used. */
        void *bigger = aligned_alloc(ALIGN, round_up(a->peak));
        if (bigger) {
            free(a->block);
            a->block = bigger;
            a->cap = round_up(a->peak);
        }
    }
    a->peak = 0;
}

void fy_arena_free(fy_arena *a) {
    fy_arena_restore(a, (fy_arena_mark){0, 0});
    free(a->block);
    free(a->spills);
    memset(a, 0, sizeof *a);
}
