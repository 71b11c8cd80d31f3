/*
 * gemm_rate -- this machine's matrix-product rates, for `make bench`:
 * OpenBLAS sgemm (the hardware's practical f32 limit) beside fanyi's
 * deterministic kernel, one thread, on a shape typical of a batch through a
 * feed-forward layer. Prints a JSON object (GFLOP/s).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gemm.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Best of several timed rounds, in GFLOP/s. */
#define RATE(stmt)                                                                                                     \
    ({                                                                                                                 \
        double best = 1e30;                                                                                            \
        for (int round = 0; round < 5; round++) {                                                                      \
            double t = now();                                                                                          \
            for (int rep = 0; rep < 10; rep++) stmt;                                                                   \
            double dt = (now() - t) / 10;                                                                              \
            best = dt < best ? dt : best;                                                                              \
        }                                                                                                              \
        2.0 * M * N * K / best / 1e9;                                                                                  \
    })

int main(void) {
    enum { M = 256, N = 1024, K = 256 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < N * K; i++) b[i] = (float)rand() / RAND_MAX - 0.5f;
    openblas_set_num_threads(1);
    fy_packed p;
    if (!fy_pack(b, N, K, &p)) return 1;
    double blas = RATE(cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N));
    double ours = RATE(fy_gemm(a, M, &p, NULL, c, N, NULL));
    /* int8: the same shape, weights quantized per row (int8 semantics, see gemm.h). */
    int8_t *q = malloc((size_t)N * K);
    float *scales = malloc(sizeof(float) * N);
    for (int n = 0; n < N; n++) {
        scales[n] = 1.0f / 127;
        for (int k = 0; k < K; k++) q[(size_t)n * K + k] = (int8_t)(b[(size_t)n * K + k] * 254);
    }
    fy_packed pq;
    if (!fy_pack_q8(q, scales, N, K, &pq)) return 1;
    double int8 = RATE(fy_gemm(a, M, &pq, NULL, c, N, NULL));
    printf("{\"openblas\": %.2f, \"fanyi_f32\": %.2f, \"fanyi_int8\": %.2f, \"kernel\": \"%s\"}\n", blas, ours,
           int8, fy_gemm_kernel());
    fy_packed_free(&p);
    fy_packed_free(&pq);
    free(q), free(scales);
    free(a), free(b), free(c);
    return 0;
}
