/*
 * arena.h -- the working memory of a translation, owned by an execution
 * context (fanyi_context) and reused from call to call.
 *
 * A call takes its buffers from the arena and gives them back all at once:
 * fy_arena_restore() to a saved mark (after each batch), fy_arena_reset() at
 * the end of the call. Buffers that do not fit the arena's block are
 * malloc'd and freed at the restore or reset; the reset then grows the block
 * to the most the call needed at once, so a warm context translates without
 * allocating anything but its results.
 */
#ifndef FANYI_ARENA_H
#define FANYI_ARENA_H

#include "common.h"

typedef struct {
    char *block;
    size_t cap, used;
    struct fy_spill { void *p; size_t bytes; } *spills; /* buffers beyond the block, freed at restore/reset */
    size_t n_spills, cap_spills, spilled;              /* spilled: bytes in spills now */
    size_t peak;                          /* the most bytes live at once since the last reset */
} fy_arena;

typedef struct {
    size_t used, n_spills;
} fy_arena_mark;

/* n elements of size bytes, 64-byte aligned; zeroed when zero is set.
 * NULL (with err filled, naming what) when memory runs out. */
void *fy_arena_alloc(fy_arena *a, size_t n, size_t size, int zero, fanyi_error *err, const char *what);
fy_arena_mark fy_arena_save(const fy_arena *a);
void fy_arena_restore(fy_arena *a, fy_arena_mark mark);
/* Ends a call: frees the spills and grows the block to the peak (if it can). */
void fy_arena_reset(fy_arena *a);
void fy_arena_free(fy_arena *a);

#endif
