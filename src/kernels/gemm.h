/*
 * gemm.h -- the matrix product of linear layers, with every result element
 * computed in one fixed order whatever the shape of the call.
 *
 * Weights W [N, K] (PyTorch's Linear layout) are packed once at load into
 * panels of FY_PANEL columns, k-major. fy_gemm() computes
 * y[m][n] = sum_k x[m][k] * W[n][k] as a chain of fused multiply-adds in
 * increasing k. So y[m][n] depends only on row m of x and row n of W: not on
 * M, on m's position in the batch, on the tiling, or on how the work is split
 * between threads. BLAS libraries promise none of this (OpenBLAS's edge
 * kernels round differently from its main kernel), and it is what makes
 * fanyi's output batch-invariant.
 *
 * An AVX2+FMA micro-kernel (6 rows x 16 columns) is chosen at run time when
 * the CPU has it; the portable kernel computes the same chain in C (fmaf), so
 * both give identical bits.
 */
#ifndef FANYI_GEMM_H
#define FANYI_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"

#define FY_PANEL 16
/* The most inputs (K) a product may have; config.json's d_model and d_ff are held to it. */
#define FY_MAX_K 65536

typedef struct fy_packed {
    float *data;    /* f32: ceil(n / FY_PANEL) panels of [k][FY_PANEL], or [n][k] when rowmajor */
    int rowmajor;   /* f32 kept for OpenBLAS (fy_gemm_openblas) */
    int8_t *q;      /* int8: panels of [k4 / 4][FY_PANEL][4], k padded to k4 with zeros */
    float *scale;   /* int8: per output column */
    int32_t *colsum; /* int8: 64 * sum_k q[n][k], the correction for offset activations */
    int n, k, k4;
} fy_packed;

/* Packs w [n, k]; returns 0 on allocation failure. With the OpenBLAS backend
 * the matrix is kept as it is. */
int fy_pack(const float *w, int n, int k, fy_packed *out);

/*
 * Packs int8 weights q [n, k] with per-row (output column) scales. fy_gemm
 * then computes, for each row of x: s_x = max|x| / 63 (1 if x is all zeros),
 * x_q = round-half-even(x / s_x) in [-63, 63], and
 * y[n] = ((float)sum_k x_q[k] q[n][k] * s_x) * scale[n] -- integer sums are
 * exact, so this too depends on nothing but the row and the weights.
 * Activations use 7 bits so that AVX2's u8 x s8 pair products never saturate.
 */
int fy_pack_q8(const int8_t *q, const void *scale_le, int n, int k, fy_packed *out); /* scales: n little-endian f32, any alignment */
void fy_packed_free(fy_packed *p);

/* y[m][0..n) = x[m][0..k) . W^T (+ bias[n] when bias is not NULL) for m < M;
 * rows of y are ldy floats apart. With a pool, the weight panels are shared
 * out between its threads. */
void fy_gemm(const float *x, int M, const fy_packed *w, const float *bias, float *y, int ldy, fy_pool *pool);
/* fy_gemm, then ReLU on each result (max(y, 0)) while it is in cache. */
void fy_gemm_relu(const float *x, int M, const fy_packed *w, const float *bias, float *y, int ldy, fy_pool *pool);

/* 1 if the AVX2+FMA kernels are in use (CPU support, and FANYI_GEMM is not
 * "portable"); every vector kernel has a scalar twin giving the same bits. */
int fy_simd_enabled(void);
/* 1 if f32 products go through OpenBLAS: where fanyi has no SIMD kernel of its
 * own (no AVX2), or with FANYI_GEMM=openblas. Every sgemm call then has
 * exactly 8 rows (zero rows pad the last), which keeps each row's bits
 * independent of its batch (make blas-probe shows the conditions); the bits
 * differ from fanyi's own kernels. */
int fy_gemm_openblas(void);
/* The int8 kernel in use: the AVX-512 VNNI one where the CPU has it. */
enum { FY_INT8_PORTABLE, FY_INT8_AVX2, FY_INT8_VNNI };
int fy_int8_kind(void);

/* The kernel in use: "avx2" or "portable". */
const char *fy_gemm_kernel(void);

#endif
