#include "gemm.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define FY_X86 1
#endif

enum { MR = 6, M_BLOCK = 96 };

/* What happens to a result after its sum: + bias (when not NULL), then ReLU
 * (when relu). Applied while the result is still in cache. */
typedef struct {
    const float *bias;
    int relu;
} epilogue;

/* Applies ep to columns [c0, c1) of rows [0, rows). */
static void apply_epilogue(const epilogue *ep, float *y, int ldy, int rows, int c0, int c1) {
    if (!ep->bias && !ep->relu) return;
    for (int m = 0; m < rows; m++) {
        float *row = y + (size_t)m * ldy;
        if (ep->bias)
            for (int c = c0; c < c1; c++) row[c] += ep->bias[c];
        if (ep->relu)
            for (int c = c0; c < c1; c++) row[c] = row[c] > 0.0f ? row[c] : 0.0f;
    }
}

int fy_pack(const float *w, int n, int k, fy_packed *out) {
    size_t panels = (size_t)(n + FY_PANEL - 1) / FY_PANEL;
    memset(out, 0, sizeof *out);
    out->n = n;
    out->k = k;
    if (fy_gemm_openblas()) {
        size_t bytes = (size_t)n * (size_t)k * sizeof(float);
        out->data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!out->data) return 0;
        memcpy(out->data, w, bytes);
        out->rowmajor = 1;
        return 1;
    }
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

int fy_pack_q8(const int8_t *q, const void *scale_le, int n, int k, fy_packed *out) {
    size_t panels = (size_t)(n + FY_PANEL - 1) / FY_PANEL;
    memset(out, 0, sizeof *out);
    if (k > FY_MAX_K) return 0;
    out->n = n;
    out->k = k;
    out->k4 = (k + 3) & ~3;
    size_t bytes = panels * (size_t)out->k4 * FY_PANEL;
    out->q = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    out->scale = malloc(sizeof(float) * (size_t)(n ? n : 1));
    out->colsum = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!out->q || !out->scale || !out->colsum) {
        fy_packed_free(out);
        return 0;
    }
    for (size_t p = 0; p < panels; p++)
        for (int kq = 0; kq < out->k4 / 4; kq++)
            for (int c = 0; c < FY_PANEL; c++)
                for (int j = 0; j < 4; j++) {
                    size_t col = p * FY_PANEL + (size_t)c;
                    int kk = kq * 4 + j;
                    out->q[((p * (size_t)(out->k4 / 4) + (size_t)kq) * FY_PANEL + (size_t)c) * 4 + (size_t)j] =
                        col < (size_t)n && kk < k ? q[col * (size_t)k + (size_t)kk] : 0;
                }
    for (int c = 0; c < n; c++) {
        int32_t sum = 0;
        for (int kk = 0; kk < k; kk++) sum += q[(size_t)c * k + kk];
        out->colsum[c] = 64 * sum;
        memcpy(&out->scale[c], (const char *)scale_le + 4 * (size_t)c, 4);
    }
    return 1;
}

void fy_packed_free(fy_packed *p) {
    free(p->data);
    free(p->q);
    free(p->scale);
    free(p->colsum);
    p->data = NULL;
    p->q = NULL;
    p->scale = NULL;
    p->colsum = NULL;
}

/* ---- int8: activations quantized per row, offset by 64 to unsigned ---- */

enum { Q_BLOCK = 48 }; /* rows quantized at a time (on the stack) */

/* x_q = round-half-even(x * (63 / max|x|)), clamped to [-63, 63], stored + 64.
 * The vector twin below does exactly the same float operations. */
static void quantize_tail(const float *x, int from, int k, float inv, uint8_t *xu) {
    for (int i = from; i < k; i++) {
        float v = nearbyintf(x[i] * inv);
        v = v > 63.0f ? 63.0f : v < -63.0f ? -63.0f : v;
        xu[i] = (uint8_t)((int)v + 64);
    }
}

static void quantize_scales(float mx, float *inv, float *sx) {
    *inv = mx > 0.0f ? 63.0f / mx : 0.0f;
    *sx = mx > 0.0f ? mx / 63.0f : 1.0f;
}

static void quantize_row_portable(const float *x, int k, uint8_t *xu, float *sx) {
    float mx = 0.0f, inv;
    for (int i = 0; i < k; i++) mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
    quantize_scales(mx, &inv, sx);
    quantize_tail(x, 0, k, inv, xu);
}

#ifdef FY_X86
__attribute__((target("avx2"))) static void quantize_row_avx2(const float *x, int k, uint8_t *xu, float *sx) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    int k8 = k & ~7;
    for (int i = 0; i < k8; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    float lanes[8], mx = 0.0f, inv;
    _mm256_storeu_ps(lanes, vmax);
    for (int j = 0; j < 8; j++) mx = lanes[j] > mx ? lanes[j] : mx;
    for (int i = k8; i < k; i++) mx = fabsf(x[i]) > mx ? fabsf(x[i]) : mx;
    quantize_scales(mx, &inv, sx);
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-63), hi = _mm256_set1_epi32(63), off = _mm256_set1_epi32(64);
    /* packs interleave 128-bit lanes; this permutation puts the 32 bytes back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int k32 = k & ~31;
    for (int i = 0; i < k32; i += 32) {
        __m256i v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), vinv)); /* nearest-even */
            v[j] = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v[j], lo), hi), off);
        }
        __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(xu + i), _mm256_permutevar8x32_epi32(bytes, order));
    }
    quantize_tail(x, k32, k, inv, xu);
}
#endif

static void quantize_row(const float *x, int k, int k4, uint8_t *xu, float *sx) {
#ifdef FY_X86
    if (fy_simd_enabled()) quantize_row_avx2(x, k, xu, sx);
    else
#endif
        quantize_row_portable(x, k, xu, sx);
    for (int i = k; i < k4; i++) xu[i] = 64; /* zero after the offset; the padded weights are 0 too */
}

/* One row x panel: the exact integer sum, then the two scale multiplications,
 * then the epilogue, while the row is in registers. */
static void q8_finish(const int32_t *acc, const fy_packed *w, int col0, int cols, float sx, const epilogue *ep,
                      float *y) {
    /* apply_epilogue's arithmetic inline: a call per 16 results costs int8 about 6%. */
    for (int c = 0; c < cols; c++) {
        float v = ((float)(acc[c] - w->colsum[col0 + c]) * sx) * w->scale[col0 + c];
        if (ep->bias) v += ep->bias[col0 + c];
        y[c] = ep->relu && !(v > 0.0f) ? 0.0f : v;
    }
}

static void q8_rows_portable(const uint8_t *xu, const float *sx, int rows, const fy_packed *w, int p0, int p1,
                             const epilogue *ep, float *y, int ldy) {
    int kq4 = w->k4 / 4;
    for (int r = 0; r < rows; r++)
        for (int p = p0; p < p1; p++) {
            const int8_t *panel = w->q + (size_t)p * kq4 * FY_PANEL * 4;
            int col0 = p * FY_PANEL, cols = w->n - col0 < FY_PANEL ? w->n - col0 : FY_PANEL;
            int32_t acc[FY_PANEL] = {0};
            for (int kq = 0; kq < kq4; kq++)
                for (int c = 0; c < FY_PANEL; c++)
                    for (int j = 0; j < 4; j++)
                        acc[c] += (int32_t)xu[(size_t)r * w->k4 + kq * 4 + j] * panel[((size_t)kq * FY_PANEL + c) * 4 + j];
            q8_finish(acc, w, col0, cols, sx[r], ep, y + (size_t)r * ldy + col0);
        }
}

#ifdef FY_X86
#define Q8_STEP(r)                                                                                                     \
    do {                                                                                                               \
        int32_t word;                                                                                                  \
        memcpy(&word, xu + (size_t)(r) * k4 + kq * 4, 4);                                                              \
        __m256i xb = _mm256_set1_epi32(word);                                                                          \
        a##r##0 = _mm256_add_epi32(a##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w0), ones));                    \
        a##r##1 = _mm256_add_epi32(a##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w1), ones));                    \
    } while (0)

/* 6 rows x 16 columns: u8 (7-bit + 64) x s8 pairs never exceed 2 * 127 * 127, so no saturation. */
__attribute__((target("avx2"))) static void q8_tile6_avx2(const uint8_t *xu, int k4, const int8_t *panel,
                                                          int32_t (*acc_out)[FY_PANEL]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256i a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int kq = 0; kq < k4 / 4; kq++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(panel + (size_t)kq * 64));
        __m256i w1 = _mm256_load_si256((const __m256i *)(panel + (size_t)kq * 64 + 32));
        Q8_STEP(0);
        Q8_STEP(1);
        Q8_STEP(2);
        Q8_STEP(3);
        Q8_STEP(4);
        Q8_STEP(5);
    }
    __m256i *out = (__m256i *)acc_out;
    _mm256_storeu_si256(out + 0, a00), _mm256_storeu_si256(out + 1, a01);
    _mm256_storeu_si256(out + 2, a10), _mm256_storeu_si256(out + 3, a11);
    _mm256_storeu_si256(out + 4, a20), _mm256_storeu_si256(out + 5, a21);
    _mm256_storeu_si256(out + 6, a30), _mm256_storeu_si256(out + 7, a31);
    _mm256_storeu_si256(out + 8, a40), _mm256_storeu_si256(out + 9, a41);
    _mm256_storeu_si256(out + 10, a50), _mm256_storeu_si256(out + 11, a51);
}

/* 1 row x up to 4 panels: eight accumulators keep the units busy for a lone row. */
__attribute__((target("avx2"))) static void q8_row_avx2(const uint8_t *xu, int k4, const int8_t *panel0,
                                                        size_t stride, int n_panels, int32_t acc_out[4][FY_PANEL]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4][2];
    for (int p = 0; p < 4; p++) acc[p][0] = acc[p][1] = _mm256_setzero_si256();
    for (int kq = 0; kq < k4 / 4; kq++) {
        int32_t word;
        memcpy(&word, xu + kq * 4, 4);
        __m256i xb = _mm256_set1_epi32(word);
        for (int p = 0; p < n_panels; p++) {
            const int8_t *pp = panel0 + p * stride + (size_t)kq * 64;
            __m256i w0 = _mm256_load_si256((const __m256i *)pp), w1 = _mm256_load_si256((const __m256i *)(pp + 32));
            acc[p][0] = _mm256_add_epi32(acc[p][0], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w0), ones));
            acc[p][1] = _mm256_add_epi32(acc[p][1], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w1), ones));
        }
    }
    for (int p = 0; p < n_panels; p++) {
        _mm256_storeu_si256((__m256i *)acc_out[p], acc[p][0]);
        _mm256_storeu_si256((__m256i *)(acc_out[p] + 8), acc[p][1]);
    }
}

/* Blocks of M_BLOCK rows, and within a block one panel at a time over all its
 * rows: the panel stays in L1 and the block's quantized rows in L2, rather than
 * every panel of a wide product (the output layer) streaming from L3 for each
 * tile of rows. tile computes tile_rows rows x one panel; row, a lone row. */
typedef void (*q8_tile_fn)(const uint8_t *xu, int k4, const int8_t *panel, int32_t (*acc)[FY_PANEL]);
typedef void (*q8_row_fn)(const uint8_t *xu, int k4, const int8_t *panel0, size_t stride, int n_panels,
                          int32_t acc[4][FY_PANEL]);

static void q8_rows_blocked(q8_tile_fn tile, int tile_rows, q8_row_fn row, const uint8_t *xu, const float *sx,
                            int rows, const fy_packed *w, int p0, int p1, const epilogue *ep, float *y, int ldy) {
    int k4 = w->k4;
    size_t stride = (size_t)k4 * FY_PANEL;
    for (int m0 = 0; m0 < rows; m0 += M_BLOCK) {
        int m1 = m0 + M_BLOCK < rows ? m0 + M_BLOCK : rows, full_end = m0 + (m1 - m0) / tile_rows * tile_rows;
        for (int p = p0; p < p1; p++) {
            const int8_t *panel = w->q + (size_t)p * stride;
            int col0 = p * FY_PANEL, cols = w->n - col0 < FY_PANEL ? w->n - col0 : FY_PANEL;
            int r = m0;
            for (; r < full_end; r += tile_rows) {
                int32_t acc[16][FY_PANEL];
                tile(xu + (size_t)r * k4, k4, panel, acc);
                for (int i = 0; i < tile_rows; i++)
                    q8_finish(acc[i], w, col0, cols, sx[r + i], ep, y + (size_t)(r + i) * ldy + col0);
            }
            for (; r < m1; r++) {
                int32_t acc[4][FY_PANEL];
                row(xu + (size_t)r * k4, k4, panel, stride, 1, acc);
                q8_finish(acc[0], w, col0, cols, sx[r], ep, y + (size_t)r * ldy + col0);
            }
        }
    }
}
#endif

#ifdef FY_X86
/* AVX-512 VNNI: one vpdpbusd adds the four u8 x s8 products of 16 columns to
 * their int32 sums, exactly the sums above (integers, no saturation), so the
 * bits are those of the portable kernel. 12 rows x 16 columns per tile. */
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
enum { VNNI_ROWS = 12 };

VNNI static void q8_tile_vnni(const uint8_t *xu, int k4, const int8_t *panel, int32_t (*acc_out)[FY_PANEL]) {
    __m512i a[VNNI_ROWS];
    for (int r = 0; r < VNNI_ROWS; r++) a[r] = _mm512_setzero_si512();
    for (int kq = 0; kq < k4 / 4; kq++) {
        __m512i w = _mm512_load_si512((const void *)(panel + (size_t)kq * 64));
        for (int r = 0; r < VNNI_ROWS; r++) {
            int32_t word;
            memcpy(&word, xu + (size_t)r * k4 + kq * 4, 4);
            a[r] = _mm512_dpbusd_epi32(a[r], _mm512_set1_epi32(word), w);
        }
    }
    for (int r = 0; r < VNNI_ROWS; r++) _mm512_storeu_si512((void *)acc_out[r], a[r]);
}

/* 1 row x up to 4 panels, for the rows a tile leaves over. */
VNNI static void q8_row_vnni(const uint8_t *xu, int k4, const int8_t *panel0, size_t stride, int n_panels,
                             int32_t acc_out[4][FY_PANEL]) {
    __m512i a[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int kq = 0; kq < k4 / 4; kq++) {
        int32_t word;
        memcpy(&word, xu + kq * 4, 4);
        __m512i xb = _mm512_set1_epi32(word);
        for (int p = 0; p < n_panels; p++)
            a[p] = _mm512_dpbusd_epi32(a[p], xb, _mm512_load_si512((const void *)(panel0 + p * stride + (size_t)kq * 64)));
    }
    for (int p = 0; p < n_panels; p++) _mm512_storeu_si512((void *)acc_out[p], a[p]);
}

#endif

/* Panels [p0, p1) of an int8 product over rows already quantized (xu: M rows of k4). */
static void q8_rows(const uint8_t *xu, const float *sx, int M, const fy_packed *w, int p0, int p1, const epilogue *ep,
                    float *y, int ldy) {
#ifdef FY_X86
    if (fy_int8_kind() == FY_INT8_VNNI) {
        q8_rows_blocked(q8_tile_vnni, VNNI_ROWS, q8_row_vnni, xu, sx, M, w, p0, p1, ep, y, ldy);
        return;
    }
    if (fy_simd_enabled()) {
        q8_rows_blocked(q8_tile6_avx2, 6, q8_row_avx2, xu, sx, M, w, p0, p1, ep, y, ldy);
        return;
    }
#endif
    q8_rows_portable(xu, sx, M, w, p0, p1, ep, y, ldy);
}

/* Panels [p0, p1) of an int8 product, rows quantized Q_BLOCK at a time (used when the
 * quantized rows would not fit the caller's stack buffer). */
static void gemm_q8_panels(const float *x, int M, const fy_packed *w, const epilogue *ep, float *y, int ldy, int p0,
                           int p1) {
    /* All the scratch is here before the work starts: K <= FY_MAX_K keeps at least three rows in it. */
    uint8_t xu[Q_BLOCK * 4096];
    float sx[Q_BLOCK];
    int block = (int)(sizeof xu / (size_t)w->k4);
    if (block > Q_BLOCK) block = Q_BLOCK;
    for (int m0 = 0; m0 < M; m0 += block) {
        int rows = M - m0 < block ? M - m0 : block;
        for (int r = 0; r < rows; r++) quantize_row(x + (size_t)(m0 + r) * w->k, w->k, w->k4, xu + (size_t)r * w->k4, &sx[r]);
        q8_rows(xu, sx, rows, w, p0, p1, ep, y + (size_t)m0 * ldy, ldy);
    }
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

typedef void (*full_tile_fn)(const float *x, int K, const float *panel, float *y, int ldy);

/* A full 6-row tile into y, through a scratch tile when the panel is narrower than FY_PANEL. */
static void tile_with(full_tile_fn full, const float *x, int rows, int K, const float *panel, int cols, float *y,
                      int ldy) {
    if (cols == FY_PANEL) {
        full(x, K, panel, y, ldy);
        return;
    }
    float out[MR * FY_PANEL];
    full(x, K, panel, out, FY_PANEL);
    for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * ldy, out + r * FY_PANEL, sizeof(float) * (size_t)cols);
}

/* Full 6-row tiles only; edge rows go through edge_rows_avx2. */
static void tile_avx2(const float *x, int rows, int K, const float *panel, int cols, float *y, int ldy) {
    tile_with(full_tile_avx2, x, rows, K, panel, cols, y, ldy);
}

/* AVX-512: the same 6 x 16 tile, a row's 16 columns in one register, so
 * each k takes one load and six broadcast FMAs; every column is still one
 * FMA chain over k, so the bits are those of the kernels above. */
__attribute__((target("avx512f"))) static void full_tile_avx512(const float *x, int K, const float *panel, float *y,
                                                                int ldy) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    const float *x0 = x, *x1 = x + K, *x2 = x + 2 * (size_t)K, *x3 = x + 3 * (size_t)K, *x4 = x + 4 * (size_t)K,
                *x5 = x + 5 * (size_t)K;
    for (int k = 0; k < K; k++) {
        __m512 w = _mm512_load_ps(panel + (size_t)k * FY_PANEL);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[k]), w, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[k]), w, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[k]), w, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[k]), w, a3);
        a4 = _mm512_fmadd_ps(_mm512_set1_ps(x4[k]), w, a4);
        a5 = _mm512_fmadd_ps(_mm512_set1_ps(x5[k]), w, a5);
    }
    _mm512_storeu_ps(y, a0), _mm512_storeu_ps(y + (size_t)ldy, a1), _mm512_storeu_ps(y + 2 * (size_t)ldy, a2);
    _mm512_storeu_ps(y + 3 * (size_t)ldy, a3), _mm512_storeu_ps(y + 4 * (size_t)ldy, a4);
    _mm512_storeu_ps(y + 5 * (size_t)ldy, a5);
}

static void tile_avx512(const float *x, int rows, int K, const float *panel, int cols, float *y, int ldy) {
    tile_with(full_tile_avx512, x, rows, K, panel, cols, y, ldy);
}

static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* AVX-512 F, and BW and VNNI for int8, from CPUID leaf 7, with an OS that
 * saves the ZMM registers (XCR0 bits 1, 2, 5, 6, 7); by CPUID, as clang's
 * builtin lacks some of the names. Returns 0, 1 (F) or 2 (F, BW, VNNI). */
static int avx512_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16))) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6) != 0xe6) return 0;
    return (b & (1u << 30)) && (c & (1u << 11)) ? 2 : 1;
}
#endif

typedef void (*tile_fn)(const float *, int, int, const float *, int, float *, int);

/* The kernel is chosen once per process: a property of the CPU, like an ifunc.
 * FANYI_GEMM=portable forces the C kernels (tests check both give the same bits). */
static tile_fn chosen_tile = tile_portable;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static int chosen_int8 = FY_INT8_PORTABLE, chosen_blas;

void openblas_set_num_threads(int n);

/* Whether this OpenBLAS gives a row the same bits at every position of an
 * 8-row call (the condition the backend relies on; other OpenBLAS kernels may
 * differ): one row at each position, the others zero, against position 0. */
static int blas_rows_invariant(void) {
    enum { K = 70, N = 40 };
    static float x[8 * K], w[N * K], y[8 * N], first[N];
    unsigned seed = 12345;
    for (int i = 0; i < N * K; i++) w[i] = (float)((seed = seed * 1103515245u + 12345u) >> 9 & 0xffff) / 65536.0f - 0.5f;
    for (int pos = 0; pos < 8; pos++) {
        memset(x, 0, sizeof x);
        unsigned row_seed = 777;
        for (int k = 0; k < K; k++)
            x[pos * K + k] = (float)((row_seed = row_seed * 1103515245u + 12345u) >> 9 & 0xffff) / 65536.0f - 0.5f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 8, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
        if (pos == 0) memcpy(first, y, sizeof first);
        else if (memcmp(first, y + pos * N, sizeof first)) return 0;
    }
    return 1;
}

/* OpenBLAS single-threaded (fanyi's pool shares out the blocks), if it keeps rows invariant. */
static int use_blas(void) {
    openblas_set_num_threads(1);
    return blas_rows_invariant();
}

/* FANYI_GEMM=portable forces the C kernels, FANYI_GEMM=avx2 the AVX2 ones
 * where AVX-512 would be used: tests check that all give the same bits. */
static void choose_tile(void) {
    const char *force = getenv("FANYI_GEMM");
    if (force && !strcmp(force, "openblas")) chosen_blas = use_blas();
    if (force && !strcmp(force, "portable")) return;
#ifdef FY_X86
    if (have_avx2()) {
        chosen_tile = tile_avx2;
        chosen_int8 = FY_INT8_AVX2;
        int level = force && !strcmp(force, "avx2") ? 0 : avx512_level();
        if (level >= 1) chosen_tile = tile_avx512;
        if (level >= 2) chosen_int8 = FY_INT8_VNNI;
    }
#endif
    if (chosen_tile == tile_portable && !chosen_blas) /* no SIMD kernel of our own: OpenBLAS for f32 */
        chosen_blas = use_blas();
}

int fy_gemm_openblas(void) {
    pthread_once(&choose_once, choose_tile);
    return chosen_blas;
}

int fy_int8_kind(void) {
    pthread_once(&choose_once, choose_tile);
    return chosen_int8;
}

static tile_fn pick_tile(void) {
    pthread_once(&choose_once, choose_tile);
    return chosen_tile;
}

/* Panels [p0, p1) for all M rows, each result finished by ep while in cache. */
static void gemm_panels(tile_fn tile, const float *x, int M, const fy_packed *w, const epilogue *ep, float *y, int ldy,
                        int p0, int p1) {
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
            apply_epilogue(ep, y + (size_t)m0 * ldy, ldy, full_end - m0, p * FY_PANEL, p * FY_PANEL + cols);
        }
#ifdef FY_X86
        if (full_end < m1) {
            edge_rows_avx2(x + (size_t)full_end * K, m1 - full_end, K, w, p0, p1, y + (size_t)full_end * ldy, ldy);
            int c1 = p1 * FY_PANEL < w->n ? p1 * FY_PANEL : w->n;
            apply_epilogue(ep, y + (size_t)full_end * ldy, ldy, m1 - full_end, p0 * FY_PANEL, c1);
        }
#endif
    }
}

typedef struct {
    tile_fn tile;
    const float *x;
    int M, ldy, panels, per_task;
    const fy_packed *w;
    epilogue ep;
    float *y;
    const uint8_t *xu; /* int8: rows quantized once for all tasks, or NULL */
    const float *sx;
} gemm_job;

static void run_panels(const gemm_job *j, int p0, int p1) {
    if (!j->w->q) gemm_panels(j->tile, j->x, j->M, j->w, &j->ep, j->y, j->ldy, p0, p1);
    else if (j->xu) q8_rows(j->xu, j->sx, j->M, j->w, p0, p1, &j->ep, j->y, j->ldy);
    else gemm_q8_panels(j->x, j->M, j->w, &j->ep, j->y, j->ldy, p0, p1);
}

static void gemm_task(void *ctx, int task) {
    const gemm_job *j = ctx;
    int p0 = task * j->per_task, p1 = p0 + j->per_task < j->panels ? p0 + j->per_task : j->panels;
    run_panels(j, p0, p1);
}

/* Rows of an int8 product quantized on all threads, before the product itself. */
typedef struct {
    const float *x;
    int k, k4, M, per_task;
    uint8_t *xu;
    float *sx;
} quantize_job;

static void quantize_task(void *ctx, int task) {
    const quantize_job *j = ctx;
    int r1 = (task + 1) * j->per_task < j->M ? (task + 1) * j->per_task : j->M;
    for (int r = task * j->per_task; r < r1; r++)
        quantize_row(j->x + (size_t)r * j->k, j->k, j->k4, j->xu + (size_t)r * j->k4, &j->sx[r]);
}

/* Below this many multiply-adds, waking threads costs more than it saves
 * (int8 products run twice as fast, so they need twice the work). */
enum { PARALLEL_MIN_WORK = 1 << 20, QUANTIZE_ONCE_BYTES = 192 * 1024 };

/* ---- OpenBLAS: every call exactly BLAS_ROWS rows ----
 * Column blocks of BLAS_NB and inner blocks of BLAS_KB are fixed by the
 * matrix, and every sgemm call has exactly BLAS_ROWS rows (the last block of
 * rows padded with zeros): under these conditions OpenBLAS gives each row the
 * same bits whatever else is in the batch (make blas-probe). The scratch is on
 * the stack. */
enum { BLAS_ROWS = 8, BLAS_NB = 512, BLAS_KB = 2048 };

typedef struct {
    const float *x;
    int M, ldy, per_task, n_blocks;
    const fy_packed *w;
    epilogue ep;
    float *y;
} blas_job;

static void blas_block(const blas_job *j, int b) {
    const fy_packed *w = j->w;
    int K = w->k, n0 = b * BLAS_NB, nb = w->n - n0 < BLAS_NB ? w->n - n0 : BLAS_NB;
    float xp[BLAS_ROWS * BLAS_KB], yt[BLAS_ROWS * BLAS_NB];
    for (int m0 = 0; m0 < j->M; m0 += BLAS_ROWS) {
        int rows = j->M - m0 < BLAS_ROWS ? j->M - m0 : BLAS_ROWS;
        for (int k0 = 0; k0 < K; k0 += BLAS_KB) {
            int kb = K - k0 < BLAS_KB ? K - k0 : BLAS_KB;
            memset(xp, 0, sizeof(float) * BLAS_ROWS * (size_t)kb);
            for (int r = 0; r < rows; r++)
                memcpy(xp + (size_t)r * kb, j->x + (size_t)(m0 + r) * K + k0, sizeof(float) * (size_t)kb);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BLAS_ROWS, nb, kb, 1.0f, xp, kb,
                        w->data + (size_t)n0 * K + k0, K, k0 ? 1.0f : 0.0f, yt, nb);
        }
        for (int r = 0; r < rows; r++)
            memcpy(j->y + (size_t)(m0 + r) * j->ldy + n0, yt + (size_t)r * nb, sizeof(float) * (size_t)nb);
        apply_epilogue(&j->ep, j->y + (size_t)m0 * j->ldy, j->ldy, rows, n0, n0 + nb);
    }
}

static void blas_task(void *p, int task) {
    const blas_job *j = p;
    int b1 = (task + 1) * j->per_task < j->n_blocks ? (task + 1) * j->per_task : j->n_blocks;
    for (int b = task * j->per_task; b < b1; b++) blas_block(j, b);
}

static void gemm_blas(const float *x, int M, const fy_packed *w, epilogue ep, float *y, int ldy, fy_pool *pool) {
    int n_blocks = (w->n + BLAS_NB - 1) / BLAS_NB, threads = fy_pool_threads(pool);
    int tasks = threads < n_blocks ? threads : n_blocks;
    blas_job job = {x, M, ldy, (n_blocks + tasks - 1) / tasks, n_blocks, w, ep, y};
    fy_pool_run(pool, blas_task, &job, (n_blocks + job.per_task - 1) / job.per_task);
}

static void gemm(const float *x, int M, const fy_packed *w, epilogue ep, float *y, int ldy, fy_pool *pool) {
    if (w->rowmajor) {
        gemm_blas(x, M, w, ep, y, ldy, pool);
        return;
    }
    int panels = (w->n + FY_PANEL - 1) / FY_PANEL, threads = fy_pool_threads(pool);
    gemm_job job = {pick_tile(), x, M, ldy, panels, panels, w, ep, y, NULL, NULL};
    double work = (double)M * w->n * w->k * (w->q ? 0.5 : 1.0);
    if (threads <= 1 || work < PARALLEL_MIN_WORK || panels < 2) {
        run_panels(&job, 0, panels);
        return;
    }
    /* int8: quantize the rows once, not once per task. */
    uint8_t xu[QUANTIZE_ONCE_BYTES];
    float sx[QUANTIZE_ONCE_BYTES / 64];
    if (w->q && (size_t)M * (size_t)w->k4 <= sizeof xu && (size_t)M <= sizeof sx / sizeof sx[0]) {
        quantize_job qj = {x, w->k, w->k4, M, (M + threads - 1) / threads, xu, sx};
        fy_pool_run(pool, quantize_task, &qj, (M + qj.per_task - 1) / qj.per_task);
        job.xu = xu;
        job.sx = sx;
    }
    int tasks = threads * 4 < panels ? threads * 4 : panels;
    job.per_task = (panels + tasks - 1) / tasks;
    fy_pool_run(pool, gemm_task, &job, (panels + job.per_task - 1) / job.per_task);
}

void fy_gemm(const float *x, int M, const fy_packed *w, const float *bias, float *y, int ldy, fy_pool *pool) {
    gemm(x, M, w, (epilogue){bias, 0}, y, ldy, pool);
}

void fy_gemm_relu(const float *x, int M, const fy_packed *w, const float *bias, float *y, int ldy, fy_pool *pool) {
    gemm(x, M, w, (epilogue){bias, 1}, y, ldy, pool);
}

int fy_simd_enabled(void) { return pick_tile() != tile_portable; }

const char *fy_gemm_kernel(void) {
    static const char *const names[] = {"portable", "avx2", "avx512, int8 avx512-vnni"};
    static const char *const blas_names[] = {"openblas, int8 portable", "openblas, int8 avx2", "openblas, int8 avx512-vnni"};
    if (fy_gemm_openblas()) return blas_names[fy_int8_kind()];
#ifdef FY_X86
    if (pick_tile() == tile_avx512 && fy_int8_kind() != FY_INT8_VNNI) return "avx512, int8 avx2";
#endif
    return names[fy_int8_kind()];
}
