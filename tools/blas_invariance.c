/*
 * blas_invariance -- does this machine's OpenBLAS give each row of
 * y = x W^T the same bits whatever the rest of its batch? (issue 15, item 4)
 *
 * For several shapes and thread counts it computes every row alone and in
 * batches of 1..100 rows, three ways: one call for the batch; the batch
 * zero-padded to a multiple of U rows; calls of exactly U rows each (the last
 * zero-padded). A row is invariant when its bits never change. Prints one
 * line per way, U and thread count: the batches that differ, of 500.
 * `make blas-probe` builds and runs it.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void openblas_set_num_threads(int n);

static float next_random(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

enum { WHOLE, PADDED, CHUNKED };

/* y[M, N] = x[M, K] W[N, K]^T the given way, with calls of U rows where it applies. */
static void product(int way, const float *x, int M, int N, int K, const float *w, float *y, int U) {
    if (way == WHOLE) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
        return;
    }
    int rows = way == PADDED ? (M + U - 1) / U * U : U;
    float *xp = calloc((size_t)rows * K, sizeof(float)), *yp = malloc(sizeof(float) * (size_t)rows * N);
    for (int m0 = 0; m0 < M; m0 += rows) {
        int n = M - m0 < rows ? M - m0 : rows;
        memset(xp, 0, sizeof(float) * (size_t)rows * K);
        memcpy(xp, x + (size_t)m0 * K, sizeof(float) * (size_t)n * K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, N, K, 1.0f, xp, K, w, K, 0.0f, yp, N);
        memcpy(y + (size_t)m0 * N, yp, sizeof(float) * (size_t)n * N);
    }
    free(xp), free(yp);
}

int main(void) {
    static const int shapes[][2] = {{512, 512}, {2048, 512}, {512, 1536}, {256, 8000}, {512, 1000}};
    static const char *const names[] = {"one call", "padded to a multiple of", "calls of exactly"};
    enum { MMAX = 100 };
    for (int threads = 1; threads <= 2; threads++) {
        openblas_set_num_threads(threads);
        for (int way = WHOLE; way <= CHUNKED; way++)
            for (int U = 4; U <= (way == WHOLE ? 4 : 32); U *= 2) {
                unsigned seed = 1;
                int differ = 0;
                for (int s = 0; s < 5; s++) {
                    int K = shapes[s][0], N = shapes[s][1];
                    float *x = malloc(sizeof(float) * MMAX * K), *w = malloc(sizeof(float) * (size_t)N * K);
                    float *alone = malloc(sizeof(float) * MMAX * N), *y = malloc(sizeof(float) * MMAX * N);
                    for (int i = 0; i < MMAX * K; i++) x[i] = next_random(&seed);
                    for (int i = 0; i < N * K; i++) w[i] = next_random(&seed);
                    for (int r = 0; r < MMAX; r++)
                        product(way == WHOLE ? PADDED : way, x + (size_t)r * K, 1, N, K, w, alone + (size_t)r * N,
                                way == WHOLE ? 2 : U);
                    for (int M = 1; M <= MMAX; M++) {
                        product(way, x, M, N, K, w, y, U);
                        differ += memcmp(y, alone, sizeof(float) * (size_t)M * N) != 0;
                    }
                    free(x), free(w), free(alone), free(y);
                }
                if (way == WHOLE) printf("threads %d, %s: %d of 500 batches differ\n", threads, names[way], differ);
                else printf("threads %d, %s %d rows: %d of 500 batches differ\n", threads, names[way], U, differ);
            }
    }
    return 0;
}
