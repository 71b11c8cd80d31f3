/*
 * search.h -- greedy and beam search over the model.
 *
 * Semantics (shared with tools/fanyi_ref/search.py, the test oracle): each
 * sentence starts with one hypothesis and a beam of beam_size. Every step
 * keeps the `beam` best (hypothesis, token) extensions by cumulative
 * log-probability, ties to the lower (row, token) index. An extension ending
 * in EOS is finished and shrinks the beam by one; a sentence is done when its
 * beam is empty. Hypotheses still alive at the length limit are finished as
 * they are. A finished hypothesis scores logprob / length^length_penalty
 * (length counts EOS). Pad and the config's forbidden ids are never produced.
 * Greedy search is beam_size 1.
 *
 * All buffers are sized once per batch by fy_search(); the step loop does
 * not allocate.
 */
#ifndef FANYI_SEARCH_H
#define FANYI_SEARCH_H

#include "model.h"

typedef struct fy_search_opts {
    int beam_size, nbest, max_length, threads;
    float max_length_ratio, length_penalty;
} fy_search_opts;

typedef struct fy_hyp {
    int *ids; /* owned by the caller after fy_search */
    int n_ids;
    float score, logprob;
} fy_hyp;

/* Translates n packed sentences (ids already end with EOS where the model
 * wants it). hyps[i*nbest .. ] receives up to nbest hypotheses of sentence i,
 * best first; n_hyps[i] says how many. */
int fy_search(const fy_model *m, const int *ids, const int *offset, const int *len, int n, const fy_search_opts *o,
              fy_hyp *hyps, int *n_hyps, fy_pool *pool, fanyi_error *err);

#endif
