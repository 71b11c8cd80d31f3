/*
 * engine.h -- what api.c, batch.c and text.c share: the inside of
 * fanyi_model (a model and its tokenizers), the batch size, and the turning
 * of public options into search options (model defaults filled in, values
 * checked).
 */
#ifndef FANYI_ENGINE_H
#define FANYI_ENGINE_H

#include "arena.h"
#include "model.h"
#include "pool.h"
#include "search.h"
#include "tokenizer.h"

/* Sentences per batch; beam search multiplies the decoder rows by beam. */
#define FY_BATCH_SENTENCES 32

struct fanyi_model {
    fy_model model;
    fy_tokenizer *source; /* NULL when the model has no tokenizer files */
    fy_tokenizer *target;
};

/* An execution context: the worker threads and the working memory of
 * translations, reused from call to call by one caller at a time. */
struct fanyi_context {
    int threads;
    fy_pool *pool; /* started by fy_context_start, when there is work */
    fy_arena arena;
};

/* A context for a single call (the calls without one): opts->threads threads, started when needed. */
int fy_context_temporary(const fanyi_options *opts, fanyi_context **ctx, fanyi_error *err);
/* Starts the context's threads if they are not running yet. */
int fy_context_start(fanyi_context *ctx, fanyi_error *err);
/* fanyi_context_translate_ids without resetting the arena (fanyi_translate_text calls it). */
int fy_translate_ids_in(fanyi_context *ctx, const fanyi_model *fm, const int *const *src, const int *src_len, int n,
                        const fanyi_options *opts, fanyi_result **out, fanyi_error *err);

int fy_resolve_options(const fy_config *cfg, const fanyi_options *in, fy_search_opts *out, fanyi_error *err);

/* The source id of opts->target_lang ("fra" or ">>fra<<"), or -1 when none is asked for. */
int fy_target_lang_id(const fanyi_model *fm, const fanyi_options *opts, int *id, fanyi_error *err);

#endif
