/*
 * pool.h -- a small fixed pool of worker threads for data-parallel loops.
 *
 * fy_pool_run(pool, fn, ctx, n) calls fn(ctx, i) once for every i < n,
 * spread over the workers and the calling thread, and returns when all are
 * done. Tasks must write disjoint outputs; which thread runs a task never
 * changes its result, so output does not depend on the thread count.
 * A pool belongs to one caller at a time (a translation call creates its own).
 */
#ifndef FANYI_POOL_H
#define FANYI_POOL_H

typedef struct fy_pool fy_pool;
typedef void (*fy_task_fn)(void *ctx, int task);

/* One thread per online CPU, at most 8: the default when no count is given. */
int fy_default_threads(void);

/* threads counts the caller: 1 means no workers. NULL on failure. */
fy_pool *fy_pool_create(int threads);
void fy_pool_free(fy_pool *pool);
int fy_pool_threads(const fy_pool *pool);
void fy_pool_run(fy_pool *pool, fy_task_fn fn, void *ctx, int n_tasks);

#endif
