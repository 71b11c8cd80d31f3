/*
 * model.h -- the Transformer encoder-decoder forward pass.
 *
 * fy_model_load() maps the weights a parsed config.json names and binds every
 * tensor the config implies (checking dtype and shape); a tensor the config
 * does not use is an error. On success the model owns the config (its
 * strings are freed by fy_model_free); on failure the caller still does.
 *
 * The encoder works on a packed batch: the tokens of all sentences stacked
 * without padding, attention restricted to each sentence's own rows. That is
 * the padding mask, with no work spent on pads and no dependence on the rest
 * of the batch.
 *
 * The decoder is incremental. fy_decoder_start() computes the cross-attention
 * keys/values of every sentence once and sizes all buffers for the batch;
 * fy_decoder_step() then runs one position for all live rows (hypotheses)
 * without allocating; it returns each row's logits, with pad's set to -inf
 * (pad is never produced), and their log-sum-exp. Self-attention keys/values are stored per step and
 * row; each row keeps the row index of its ancestor at every step, so
 * fy_decoder_reorder() (beam search keeping some rows, dropping others,
 * duplicating some) copies indices, not key/value vectors.
 */
#ifndef FANYI_MODEL_H
#define FANYI_MODEL_H

#include "arena.h"
#include "config.h"
#include "gemm.h"
#include "weights.h"

typedef struct {
    fy_packed w; /* [out, in], packed for fy_gemm */
    const float *b;
    float *owned_b; /* fused layers: their biases laid end to end (b points here) */
} fy_lin;
typedef struct { const float *gamma, *beta; } fy_ln;
/* Self-attention uses qkv (q, k, v stacked: [3d, d]) and o; cross-attention
 * uses q, kv (k, v stacked: [2d, d]) and o. */
typedef struct { fy_lin qkv, q, kv, o; } fy_attn;

typedef struct {
    fy_attn self_attn, cross_attn;
    fy_ln self_norm, cross_norm, ffn_norm;
    fy_lin fc1, fc2;
} fy_layer;

typedef struct fy_model {
    fy_config cfg;
    fy_weights *weights;
    const float *src_embed, *tgt_embed; /* [V, d] */
    fy_packed out_proj;                 /* [Vt, d], packed */
    const float *logits_bias;           /* [Vt] */
    const float *enc_pos, *dec_pos;     /* [max_positions, d] */
    float *pos_table;                   /* owned sinusoid table */
    fy_layer *enc, *dec;
    fy_ln enc_final, dec_final;
} fy_model;

int fy_model_load(fy_model *m, const char *dir, const fy_config *cfg, fanyi_error *err);
void fy_model_free(fy_model *m);

/* Encodes n sentences packed in `ids` (sentence i at offset[i], length len[i],
 * each at most max_positions) into memory [sum(len), d]; its buffers come from the arena. */
int fy_encode(const fy_model *m, const int *ids, const int *offset, const int *len, int n, float **memory,
              fy_pool *pool, fy_arena *arena, fanyi_error *err);

typedef struct fy_decoder {
    const fy_model *m;
    fy_pool *pool; /* may be NULL */
    int max_rows, max_steps, n_src;
    const int *src_offset, *src_len;
    float *cross_kv;            /* [layers][n_src tokens][k | v: 2d] */
    float *self_k, *self_v;     /* [layers][max_steps][max_rows][d] */
    int *hist, *hist_next;      /* [max_rows][max_steps] ancestor row at each step */
    float *x, *h, *q, *qkv, *attn, *o, *ff, *scores; /* qkv: [rows][q | k | v: 3d] */
    const float **keys, **vals; /* per-key pointers for one row's attention, `span` per thread */
    int span;
    int step, n_rows;
} fy_decoder;

/* Sizes every buffer of the decoder (from the arena) and projects the cross-attention keys and values. */
int fy_decoder_start(fy_decoder *dec, const fy_model *m, const float *memory, const int *src_offset,
                     const int *src_len, int n_sent, int max_rows, int max_steps, fy_pool *pool, fy_arena *arena,
                     fanyi_error *err);
/* One position for rows 0..n_rows-1: row r continues token tokens[r] of a
 * hypothesis of sentence row_sent[r]. Writes the logits [n_rows, Vt] and each
 * row's log-sum-exp: log p(v) = logits[r][v] - lse[r], computed only where
 * search looks (greedy needs no full softmax). */
void fy_decoder_step(fy_decoder *dec, const int *tokens, const int *row_sent, int n_rows, float *logits, float *lse);
/* After a step: new row i continues old row parent[i]. */
void fy_decoder_reorder(fy_decoder *dec, const int *parent, int n_rows);

#endif
