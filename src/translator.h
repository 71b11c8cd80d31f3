/*
 * translator.h -- internal layout of fanyi_model and batching limits.
 *
 * The translator owns a model and its tokenizers, turns public options into
 * search options (model defaults filled in, values checked), sorts a request
 * by length into batches and returns results in the caller's order.
 */
#ifndef FANYI_TRANSLATOR_H
#define FANYI_TRANSLATOR_H

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

#endif
