#include "gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define FY_X86 1
#endif

enum { MR = 6, M_BLOCK = 96 };

int fy_pack(const float *w, int n, int k, fy_packed *out) {
    size_t panels = (size_t)(n + FY_PANEL - 1) / FY_PANEL;
    out->n = n;
    out->k = k;
    out->data = aligned_alloc(64, ((panels * (size_t)k * FY_PANEL * sizeof(float)) + 63) & ~(size_t)63);
    if (!out->data) return 0;
    for (size_t p = 0; p < panels; p++) {
        float *dst = out->data + p * (size_t)k * FY_PANEL;
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < FY_PANEL; j++) {
                size_t col = p * FY_PANEL + (size_t)j;
                dst[(size_t)kk * FY_PANEL + j] = col < (size_t)n ? w[col * (size_t)k + (size_t)kk] : 0.0f;
            }
    }
    return 1;
}

void fy_packed_free(fy_packed *p) {
    free(p->data);
    p->data = NULL;
}

size_t fy_packed_bytes(const fy_packed *p) {
    return (size_t)(p->n + FY_PANEL - 1) / FY_PANEL * (size_t)p->k * FY_PANEL * sizeof(float);
}

/* ---- portable: the same fma chain per element ---- */

static void tile_portable(const float *x, int rows, int K, const float *panel, int cols, float *y, int ldy) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc = fmaf(x[(size_t)r * K + k], panel[(size_t)k * FY_PANEL + c], acc);
            y[(size_t)r * ldy + c] = acc;
        }
}

#ifdef FY_X86
/* A full 6x16 tile with its twelve accumulators in registers. */
__attribute__((target("avx2,fma"))) static void full_tile_avx2(const float *x, int K, const float *panel, float *y,
                                                               int ldy) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const float *x0 = x, *x1 = x + K, *x2 = x + 2 * (size_t)K, *x3 = x + 3 * (size_t)K, *x4 = x + 4 * (size_t)K,
                *x5 = x + 5 * (size_t)K;
    for (int k = 0; k < K; k++) {
        __m256 w0 = _mm256_load_ps(panel + (size_t)k * FY_PANEL), w1 = _mm256_load_ps(panel + (size_t)k * FY_PANEL + 8);
        __m256 v;
        v = _mm256_broadcast_ss(x0 + k), a00 = _mm256_fmadd_ps(v, w0, a00), a01 = _mm256_fmadd_ps(v, w1, a01);
        v = _mm256_broadcast_ss(x1 + k), a10 = _mm256_fmadd_ps(v, w0, a10), a11 = _mm256_fmadd_ps(v, w1, a11);
        v = _mm256_broadcast_ss(x2 + k), a20 = _mm256_fmadd_ps(v, w0, a20), a21 = _mm256_fmadd_ps(v, w1, a21);
        v = _mm256_broadcast_ss(x3 + k), a30 = _mm256_fmadd_ps(v, w0, a30), a31 = _mm256_fmadd_ps(v, w1, a31);
        v = _mm256_broadcast_ss(x4 + k), a40 = _mm256_fmadd_ps(v, w0, a40), a41 = _mm256_fmadd_ps(v, w1, a41);
        v = _mm256_broadcast_ss(x5 + k), a50 = _mm256_fmadd_ps(v, w0, a50), a51 = _mm256_fmadd_ps(v, w1, a51);
    }
    _mm256_storeu_ps(y, a00), _mm256_storeu_ps(y + 8, a01);
    _mm256_storeu_ps(y + (size_t)ldy, a10), _mm256_storeu_ps(y + (size_t)ldy + 8, a11);
    _mm256_storeu_ps(y + 2 * (size_t)ldy, a20), _mm256_storeu_ps(y + 2 * (size_t)ldy + 8, a21);
    _mm256_storeu_ps(y + 3 * (size_t)ldy, a30), _mm256_storeu_ps(y + 3 * (size_t)ldy + 8, a31);
    _mm256_storeu_ps(y + 4 * (size_t)ldy, a40), _mm256_storeu_ps(y + 4 * (size_t)ldy + 8, a41);
    _mm256_storeu_ps(y + 5 * (size_t)ldy, a50), _mm256_storeu_ps(y + 5 * (size_t)ldy + 8, a51);
}

/* Edge tiles: one row at a time, the same chain per element. */
__attribute__((target("avx2,fma"))) static void tile_avx2(const float *x, int rows, int K, const float *panel,
                                                          int cols, float *y, int ldy) {
    if (rows == MR && cols == FY_PANEL) {
        full_tile_avx2(x, K, panel, y, ldy);
        return;
    }
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int k = 0; k < K; k++) {
            __m256 v = _mm256_broadcast_ss(xr + k);
            a0 = _mm256_fmadd_ps(v, _mm256_load_ps(panel + (size_t)k * FY_PANEL), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_load_ps(panel + (size_t)k * FY_PANEL + 8), a1);
        }
        float out[FY_PANEL];
        _mm256_storeu_ps(out, a0);
        _mm256_storeu_ps(out + 8, a1);
        memcpy(y + (size_t)r * ldy, out, sizeof(float) * (size_t)cols);
    }
}

static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

typedef void (*tile_fn)(const float *, int, int, const float *, int, float *, int);

/* FANYI_GEMM=portable forces the C kernel (tests check that both give the same bits). */
static tile_fn pick_tile(void) {
    const char *force = getenv("FANYI_GEMM");
    if (force && !strcmp(force, "portable")) return tile_portable;
#ifdef FY_X86
    if (have_avx2()) return tile_avx2;
#endif
    return tile_portable;
}

/* Panels [p0, p1) for all M rows. */
static void gemm_panels(tile_fn tile, const float *x, int M, const fy_packed *w, float *y, int ldy, int p0, int p1) {
    int K = w->k;
    for (int m0 = 0; m0 < M; m0 += M_BLOCK) {
        int m1 = m0 + M_BLOCK < M ? m0 + M_BLOCK : M;
        for (int p = p0; p < p1; p++) {
            const float *panel = w->data + (size_t)p * K * FY_PANEL;
            int cols = w->n - p * FY_PANEL < FY_PANEL ? w->n - p * FY_PANEL : FY_PANEL;
            for (int m = m0; m < m1; m += MR) {
                int rows = m1 - m < MR ? m1 - m : MR;
                tile(x + (size_t)m * K, rows, K, panel, cols, y + (size_t)m * ldy + (size_t)p * FY_PANEL, ldy);
            }
        }
    }
}

typedef struct {
    tile_fn tile;
    const float *x;
    int M, ldy, panels, per_task;
    const fy_packed *w;
    float *y;
} gemm_job;

static void gemm_task(void *ctx, int task) {
    const gemm_job *j = ctx;
    int p0 = task * j->per_task, p1 = p0 + j->per_task < j->panels ? p0 + j->per_task : j->panels;
    gemm_panels(j->tile, j->x, j->M, j->w, j->y, j->ldy, p0, p1);
}

/* Below this many multiply-adds, waking threads costs more than it saves. */
enum { PARALLEL_MIN_WORK = 1 << 20 };

void fy_gemm(const float *x, int M, const fy_packed *w, float *y, int ldy, fy_pool *pool) {
    int panels = (w->n + FY_PANEL - 1) / FY_PANEL, threads = fy_pool_threads(pool);
    tile_fn tile = pick_tile();
    if (threads <= 1 || (double)M * w->n * w->k < PARALLEL_MIN_WORK || panels < 2) {
        gemm_panels(tile, x, M, w, y, ldy, 0, panels);
        return;
    }
    int tasks = threads * 4 < panels ? threads * 4 : panels;
    gemm_job job = {tile, x, M, ldy, panels, (panels + tasks - 1) / tasks, w, y};
    fy_pool_run(pool, gemm_task, &job, (panels + job.per_task - 1) / job.per_task);
}

const char *fy_gemm_kernel(void) { return pick_tile() == tile_portable ? "portable" : "avx2"; }
