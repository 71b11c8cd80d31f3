/*
 * context.c -- execution contexts: a caller's worker threads and working
 * memory, so that repeated translations start no threads and allocate
 * nothing but their results.
 */
#include "engine.h"

#include <stdlib.h>

static int new_context(int threads, int start, fanyi_context **out, fanyi_error *err) {
    if (threads < 0 || threads > FANYI_MAX_THREADS)
        return fy_fail(err, FANYI_ERR_USAGE, "thread count %d is out of range [1, %d]", threads, FANYI_MAX_THREADS);
    fanyi_context *ctx = fy_calloc(1, sizeof *ctx, err, "context");
    if (!ctx) return FANYI_ERR_MEMORY;
    ctx->threads = threads > 0 ? threads : fy_default_threads();
    int rc = start ? fy_context_start(ctx, err) : FANYI_OK;
    if (rc) {
        fanyi_context_free(ctx);
        return rc;
    }
    *out = ctx;
    return FANYI_OK;
}

fanyi_context *fanyi_context_new(int threads, fanyi_error *err) {
    fanyi_context *ctx = NULL;
    return new_context(threads, 1, &ctx, err) ? NULL : ctx;
}

int fy_context_temporary(const fanyi_options *opts, fanyi_context **ctx, fanyi_error *err) {
    return new_context(opts ? opts->threads : 0, 0, ctx, err);
}

int fy_context_start(fanyi_context *ctx, fanyi_error *err) {
    if (ctx->pool) return FANYI_OK;
    ctx->pool = fy_pool_create(ctx->threads);
    return ctx->pool ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "cannot start %d threads", ctx->threads);
}

int fanyi_context_threads(const fanyi_context *ctx) { return ctx->threads; }

void fanyi_context_free(fanyi_context *ctx) {
    if (!ctx) return;
    fy_pool_free(ctx->pool);
    fy_arena_free(&ctx->arena);
    free(ctx);
}
