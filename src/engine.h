/*
 * engine.h -- what api.c, batch.c and text.c share: the inside of
 * fanyi_model (a model and its tokenizers), the batch size, and the turning
 * of public options into search options (model defaults filled in, values
 * checked).
 */
#ifndef FANYI_ENGINE_H
#define FANYI_ENGINE_H

#include "model.h"
#include "search.h"
#include "tokenizer.h"

/* Sentences per batch; beam search multiplies the decoder rows by beam. */
#define FY_BATCH_SENTENCES 32

struct fanyi_model {
    fy_model model;
    fy_tokenizer *source; /* NULL when the model has no tokenizer files */
    fy_tokenizer *target;
};

int fy_resolve_options(const fy_config *cfg, const fanyi_options *in, fy_search_opts *out, fanyi_error *err);

/* The source id of opts->target_lang ("fra" or ">>fra<<"), or -1 when none is asked for. */
int fy_target_lang_id(const fanyi_model *fm, const fanyi_options *opts, int *id, fanyi_error *err);

#endif
