/*
 * search.h -- greedy and beam search over the model.
 *
 * Semantics: Hugging Face's generate() with num_beams = beam_size (shared
 * with tools/fanyi_ref/search.py, the test oracle). Each sentence starts
 * from one hypothesis. At every step the 2 * beam best (hypothesis, token)
 * extensions by cumulative log-probability are ranked (ties to the lower
 * (row, token) index); in rank order, an EOS among the first `beam` enters
 * the sentence's finished list (at most `beam`, the worst replaced by a
 * better one), any other token continues, until `beam` hypotheses continue.
 * A sentence stops when its list is full and its worst finished score is at
 * least the best candidate's log-probability normalized at the current
 * length (or at once when the model sets early_stopping). At the length
 * limit a model with forced_eos must end with EOS, which then costs nothing;
 * otherwise the live hypotheses are finished as they are. A finished
 * hypothesis scores logprob / length^length_penalty, length counting EOS.
 * Log-probabilities are normalized over every id but pad; pad and the
 * config's forbidden ids are never produced. Greedy search is beam_size 1.
 * The repetition guards act as Hugging Face's RepetitionPenaltyLogitsProcessor
 * and NoRepeatNGramLogitsProcessor do in its beam search: on the
 * log-probabilities, before the ranking, without renormalizing.
 *
 * All buffers are sized once per batch by fy_search(), from the caller's
 * arena; the step loop does not allocate.
 */
#ifndef FANYI_SEARCH_H
#define FANYI_SEARCH_H

#include "model.h"

typedef struct fy_search_opts {
    int beam_size, nbest, max_length, threads;
    float max_length_ratio, length_penalty;
    int no_repeat_ngram;      /* 0: off; n: no n-gram occurs twice in a hypothesis */
    float repetition_penalty; /* 1: off; else the log-probability of every token already in the
                                 hypothesis is multiplied by it (> 1 discourages repeats) */
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
              fy_hyp *hyps, int *n_hyps, fy_pool *pool, fy_arena *arena, fanyi_error *err);

#endif
