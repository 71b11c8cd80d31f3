/*
 * ops.h -- numeric kernels: linear layers (through gemm.h) and the row-wise operations
 * of a Transformer (LayerNorm, activations, softmax).
 *
 * Matrices are row-major f32. Weight matrices are stored [out, in] as in
 * PyTorch, so a linear layer is y = x W^T + b; they are packed for fy_gemm. Each row of a result depends
 * only on the same row of the input: this is what makes a sentence's
 * translation independent of its batch.
 */
#ifndef FANYI_OPS_H
#define FANYI_OPS_H

#include "config.h"
#include "gemm.h"

/* y[rows, W.n] = x[rows, W.k] W^T (+ b[W.n] if b), deterministic per row (see gemm.h). */
void fy_linear(const float *x, int rows, const fy_packed *w, const float *b, float *y, fy_pool *pool);

/* fy_linear followed by the activation (ReLU fused into the product). */
void fy_linear_act(const float *x, int rows, const fy_packed *w, const float *b, enum fy_activation act, float *y,
                   fy_pool *pool);

/* y = LayerNorm(x) per row of d (y may equal x). */
void fy_layernorm(const float *x, int rows, int d, const float *gamma, const float *beta, float eps, float *y);

void fy_activate(float *x, size_t n, enum fy_activation act);
void fy_add(float *restrict x, const float *restrict y, size_t n);

/* In place: softmax of one row of n. */
void fy_softmax(float *x, int n);
/* log(sum(exp(x))) of one row of n: x[i] - fy_logsumexp(x, n) is its log-softmax. */
float fy_logsumexp(const float *x, int n);

/* Multi-head attention of one query row q [d] over n keys and values (key j of
 * head h at keys[j] + h * d / heads): out [d]; scores has room for n. */
void fy_attend(const float *q, const float *const *keys, const float *const *vals, int n, int d, int heads,
               float *scores, float *out);

/* The first v in [from, n) with base + (logits[v] - lse) > threshold, computed
 * in exactly that order of float operations; n if there is none. */
int fy_first_above(const float *logits, int from, int n, float lse, float base, float threshold);

float fy_dot(const float *restrict a, const float *restrict b, int n);
void fy_axpy(float a, const float *restrict x, float *restrict y, int n);

/* Sinusoidal position table [n_pos, d] in the given layout. */
void fy_sinusoid_table(float *out, int n_pos, int d, enum fy_positions layout);


#endif
