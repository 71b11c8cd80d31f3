#include "gemm.h"

#include <math.h>
#include <pthread.h>
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

/* R rows x P panels (2P accumulators per row) for the rows a 6-row tile leaves
 * over: enough independent FMA chains to hide the FMA latency even for one
 * row. Each element is still the same chain of fmas in increasing k. */
#define EDGE_KERNEL(R, P)                                                                                              \
    __attribute__((target("avx2,fma"))) static void edge_##R##x##P(const float *x, int K, const float *panel0,       \
                                                                   size_t panel_stride, float *y, int ldy) {        \
        __m256 acc[R][P][2];                                                                                           \
        for (int r = 0; r < R; r++)                                                                                    \
            for (int p = 0; p < P; p++) acc[r][p][0] = acc[r][p][1] = _mm256_setzero_ps();                             \
        for (int k = 0; k < K; k++) {                                                                                  \
            __m256 w[P][2];                                                                                            \
            for (int p = 0; p < P; p++) {                                                                              \
                w[p][0] = _mm256_load_ps(panel0 + p * panel_stride + (size_t)k * FY_PANEL);                            \
                w[p][1] = _mm256_load_ps(panel0 + p * panel_stride + (size_t)k * FY_PANEL + 8);                        \
            }                                                                                                          \
            for (int r = 0; r < R; r++) {                                                                              \
                __m256 v = _mm256_broadcast_ss(x + (size_t)r * K + k);                                                 \
                for (int p = 0; p < P; p++) {                                                                          \
                    acc[r][p][0] = _mm256_fmadd_ps(v, w[p][0], acc[r][p][0]);                                          \
                    acc[r][p][1] = _mm256_fmadd_ps(v, w[p][1], acc[r][p][1]);                                          \
                }                                                                                                      \
            }                                                                                                          \
        }                                                                                                              \
        for (int r = 0; r < R; r++)                                                                                    \
            for (int p = 0; p < P; p++) {                                                                              \
                _mm256_storeu_ps(y + (size_t)r * ldy + p * FY_PANEL, acc[r][p][0]);                                    \
                _mm256_storeu_ps(y + (size_t)r * ldy + p * FY_PANEL + 8, acc[r][p][1]);                                \
            }                                                                                                          \
    }
EDGE_KERNEL(1, 6)
EDGE_KERNEL(2, 3)
EDGE_KERNEL(3, 2)
EDGE_KERNEL(4, 1)
EDGE_KERNEL(5, 1)
EDGE_KERNEL(1, 1)
EDGE_KERNEL(2, 1)
EDGE_KERNEL(3, 1)

typedef void (*edge_fn)(const float *, int, const float *, size_t, float *, int);

/* The rows (1-5) a 6-row tile leaves over, over panels [p0, p1): groups of P
 * panels at once, then single panels; results go through a scratch block
 * because the last panel may be narrower than FY_PANEL. */
__attribute__((target("avx2,fma"))) static void edge_rows_avx2(const float *x, int rows, int K, const fy_packed *w,
                                                               int p0, int p1, float *y, int ldy) {
    static const edge_fn group_fn[6] = {NULL, edge_1x6, edge_2x3, edge_3x2, edge_4x1, edge_5x1};
    static const edge_fn single_fn[6] = {NULL, edge_1x1, edge_2x1, edge_3x1, edge_4x1, edge_5x1};
    static const int group[6] = {0, 6, 3, 2, 1, 1};
    enum { LD = 6 * FY_PANEL };
    size_t stride = (size_t)K * FY_PANEL;
    float scratch[5 * LD];
    for (int p = p0; p < p1;) {
        int P = p1 - p >= group[rows] ? group[rows] : 1;
        (P > 1 ? group_fn : single_fn)[rows](x, K, w->data + (size_t)p * stride, stride, scratch, LD);
        for (int r = 0; r < rows; r++)
            for (int q = 0; q < P; q++) {
                int col = (p + q) * FY_PANEL, cols = w->n - col < FY_PANEL ? w->n - col : FY_PANEL;
                memcpy(y + (size_t)r * ldy + col, scratch + r * LD + q * FY_PANEL, sizeof(float) * (size_t)cols);
            }
        p += P;
    }
}

/* Full 6-row tiles only; edge rows go through edge_rows_avx2. */
__attribute__((target("avx2,fma"))) static void tile_avx2(const float *x, int rows, int K, const float *panel,
                                                          int cols, float *y, int ldy) {
    if (cols == FY_PANEL) {
        full_tile_avx2(x, K, panel, y, ldy);
        return;
    }
    float out[MR * FY_PANEL];
    full_tile_avx2(x, K, panel, out, FY_PANEL);
    for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * ldy, out + r * FY_PANEL, sizeof(float) * (size_t)cols);
}

static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

typedef void (*tile_fn)(const float *, int, int, const float *, int, float *, int);

/* The kernel is chosen once per process: a property of the CPU, like an ifunc.
 * FANYI_GEMM=portable forces the C kernels (tests check both give the same bits). */
static tile_fn chosen_tile = tile_portable;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static void choose_tile(void) {
    const char *force = getenv("FANYI_GEMM");
    if (force && !strcmp(force, "portable")) return;
#ifdef FY_X86
    if (have_avx2()) chosen_tile = tile_avx2;
#endif
}

static tile_fn pick_tile(void) {
    pthread_once(&choose_once, choose_tile);
    return chosen_tile;
}

/* Panels [p0, p1) for all M rows. */
static void gemm_panels(tile_fn tile, const float *x, int M, const fy_packed *w, float *y, int ldy, int p0, int p1) {
    int K = w->k;
    for (int m0 = 0; m0 < M; m0 += M_BLOCK) {
        int m1 = m0 + M_BLOCK < M ? m0 + M_BLOCK : M;
        int full_end = tile == tile_portable ? m1 : m0 + (m1 - m0) / MR * MR;
        for (int p = p0; p < p1; p++) {
            const float *panel = w->data + (size_t)p * K * FY_PANEL;
            int cols = w->n - p * FY_PANEL < FY_PANEL ? w->n - p * FY_PANEL : FY_PANEL;
            for (int m = m0; m < full_end; m += MR) {
                int rows = full_end - m < MR ? full_end - m : MR;
                tile(x + (size_t)m * K, rows, K, panel, cols, y + (size_t)m * ldy + (size_t)p * FY_PANEL, ldy);
            }
        }
#ifdef FY_X86
        if (full_end < m1) edge_rows_avx2(x + (size_t)full_end * K, m1 - full_end, K, w, p0, p1, y + (size_t)full_end * ldy, ldy);
#endif
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

int fy_simd_enabled(void) { return pick_tile() != tile_portable; }

const char *fy_gemm_kernel(void) { return fy_simd_enabled() ? "avx2" : "portable"; }
