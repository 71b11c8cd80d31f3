#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

void fy_linear(const float *x, int rows, const fy_packed *w, const float *b, float *y, fy_pool *pool) {
    if (rows > 0) fy_gemm(x, rows, w, b, y, w->n, pool);
}

void fy_linear_act(const float *x, int rows, const fy_packed *w, const float *b, enum fy_activation act, float *y,
                   fy_pool *pool) {
    if (rows <= 0) return;
    if (act == FY_ACT_RELU) {
        fy_gemm_relu(x, rows, w, b, y, w->n, pool);
        return;
    }
    fy_gemm(x, rows, w, b, y, w->n, pool);
    fy_activate(y, (size_t)rows * (size_t)w->n, act);
}

/* Sum of (x[i] - shift)^power (power 1 or 2) in eight partial sums combined in a
 * fixed order, as fy_dot: the compiler may vectorize it, the bits stay the same. */
static float lane_sum(const float *x, int n, float shift, int power) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float v = x[i + j] - shift;
            s[j] += power == 2 ? v * v : v;
        }
    float tail = 0;
    for (; i < n; i++) tail += power == 2 ? (x[i] - shift) * (x[i] - shift) : x[i] - shift;
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

void fy_layernorm(const float *x, int rows, int d, const float *gamma, const float *beta, float eps, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        float mean = lane_sum(xr, d, 0.0f, 1) / (float)d;
        float var = lane_sum(xr, d, mean, 2) / (float)d;
        float inv = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < d; i++) yr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
    }
}

void fy_activate(float *x, size_t n, enum fy_activation act) {
    switch (act) {
    case FY_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case FY_ACT_GELU: /* exact, erf-based, as torch's default */
        for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    case FY_ACT_SWISH:
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    }
}

void fy_add(float *restrict x, const float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/*
 * exp for (log-)softmax: a Cephes-style polynomial, written twice -- AVX2 and
 * scalar -- with the same sequence of roundings (fma where the vector code
 * fuses), so both give the same bits. Sums run over 8 lanes in a fixed order.
 */
#define EXP_HI 88.3762626647949f
#define EXP_LO (-87.3365447504019f)
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
static const float EXP_P[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

static float exp_scalar(float x) {
    x = x > EXP_HI ? EXP_HI : x < EXP_LO ? EXP_LO : x;
    float fx = floorf(fmaf(x, LOG2E, 0.5f));
    x = fmaf(fx, -LN2_HI, x);
    x = fmaf(fx, -LN2_LO, x);
    float z = x * x, y = EXP_P[0];
    for (int i = 1; i < 6; i++) y = fmaf(y, x, EXP_P[i]);
    y = fmaf(y, z, x) + 1.0f;
    uint32_t bits; /* add fx to the exponent field; unsigned arithmetic wraps as the vector code does */
    memcpy(&bits, &y, 4);
    bits += (uint32_t)(int32_t)fx << 23;
    memcpy(&y, &bits, 4);
    return y;
}

/* Sum of exp(x[i] - shift) over 8 lanes, lane j taking i = j mod 8, plus the tail in order. */
static float sum_exp_scalar(const float *x, int n, float shift, float *out) {
    float lane[8] = {0}, tail = 0;
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8)
        for (int j = 0; j < 8; j++) {
            float e = exp_scalar(x[i + j] - shift);
            if (out) out[i + j] = e;
            lane[j] += e;
        }
    for (int i = n8; i < n; i++) {
        float e = exp_scalar(x[i] - shift);
        if (out) out[i] = e;
        tail += e;
    }
    return (((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]))) + tail;
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5f)));
    x = _mm256_fmadd_ps(fx, _mm256_set1_ps(-LN2_HI), x);
    x = _mm256_fmadd_ps(fx, _mm256_set1_ps(-LN2_LO), x);
    __m256 z = _mm256_mul_ps(x, x), y = _mm256_set1_ps(EXP_P[0]);
    for (int i = 1; i < 6; i++) y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(EXP_P[i]));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, z, x), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(fx), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e));
}

__attribute__((target("avx2,fma"))) static float sum_exp_avx2(const float *x, int n, float shift, float *out) {
    __m256 acc = _mm256_setzero_ps(), s = _mm256_set1_ps(shift);
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        if (out) _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float lane[8], tail = 0;
    _mm256_storeu_ps(lane, acc);
    if (n8 < n) { /* the last n - n8 exps in one vector (same bits as exp_scalar), summed in order */
        float rest[8] = {0}, e[8];
        memcpy(rest, x + n8, sizeof(float) * (size_t)(n - n8));
        _mm256_storeu_ps(e, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(rest), s)));
        for (int i = n8; i < n; i++) {
            if (out) out[i] = e[i - n8];
            tail += e[i - n8];
        }
    }
    return (((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]))) + tail;
}
#endif

static float sum_exp(const float *x, int n, float shift, float *out) {
#if defined(__x86_64__)
    if (fy_simd_enabled()) return sum_exp_avx2(x, n, shift, out);
#endif
    return sum_exp_scalar(x, n, shift, out);
}

static float max_scalar(const float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static float max_avx2(const float *x, int n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float lane[8];
    _mm256_storeu_ps(lane, m);
    float mx = max_scalar(lane, 8), rest = max_scalar(x + n8, n - n8);
    return rest > mx ? rest : mx;
}

#endif

/* The maximum is exact in any order; no NaN reaches here (finite logits). */
static float max_of(const float *x, int n) {
#if defined(__x86_64__)
    if (fy_simd_enabled()) return max_avx2(x, n);
#endif
    return max_scalar(x, n);
}

void fy_softmax(float *x, int n) {
    float mx = max_of(x, n), inv = 1.0f / sum_exp(x, n, mx, x);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

float fy_logsumexp(const float *x, int n) {
    float mx = max_of(x, n);
    return mx + logf(sum_exp(x, n, mx, NULL));
}

float fy_dot(const float *restrict a, const float *restrict b, int n) {
    /* Eight partial sums in a fixed order: vectorizable, and deterministic. */
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float tail = 0;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

void fy_axpy(float a, const float *restrict x, float *restrict y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---- attention of one query row ---- */

static void attend_portable(const float *q, const float *const *keys, const float *const *vals, int n, int d,
                            int heads, float *scores, float *out) {
    int dh = d / heads;
    float scale = 1.0f / sqrtf((float)dh);
    memset(out, 0, sizeof(float) * (size_t)d);
    for (int h = 0; h < heads; h++) {
        for (int j = 0; j < n; j++) scores[j] = fy_dot(q + h * dh, keys[j] + h * dh, dh) * scale;
        fy_softmax(scores, n);
        for (int j = 0; j < n; j++) fy_axpy(scores[j], vals[j] + h * dh, out + h * dh, dh);
    }
}

#if defined(__x86_64__)
/* fy_dot with the same eight lanes and the same final additions. */
__attribute__((target("avx2"))) static float dot_avx2(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    float tail = 0;
    for (int i = n8; i < n; i++) tail += a[i] * b[i];
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)); /* s0+s4, s1+s5, ... */
    t = _mm_hadd_ps(t, t);
    t = _mm_hadd_ps(t, t);
    return _mm_cvtss_f32(t) + tail;
}

/* Four dot_avx2 at once (n a multiple of 8), each scaled: the horizontal adds of
 * four keys share instructions, and each still follows fy_dot's order. */
__attribute__((target("avx2"))) static void dot4_avx2(const float *a, const float *const *keys, int offset, int n,
                                                      float scale, float *out) {
    __m256 acc[4];
    for (int k = 0; k < 4; k++) acc[k] = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256 x = _mm256_loadu_ps(a + i);
        for (int k = 0; k < 4; k++) acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(x, _mm256_loadu_ps(keys[k] + offset + i)));
    }
    __m128 t[4];
    for (int k = 0; k < 4; k++) t[k] = _mm_add_ps(_mm256_castps256_ps128(acc[k]), _mm256_extractf128_ps(acc[k], 1));
    __m128 sums = _mm_hadd_ps(_mm_hadd_ps(t[0], t[1]), _mm_hadd_ps(t[2], t[3]));
    sums = _mm_add_ps(sums, _mm_setzero_ps()); /* fy_dot's "+ tail", an empty tail */
    _mm_storeu_ps(out, _mm_mul_ps(sums, _mm_set1_ps(scale)));
}

__attribute__((target("avx2,fma"))) static void attend_avx2(const float *q, const float *const *keys,
                                                            const float *const *vals, int n, int d, int heads,
                                                            float *scores, float *out) {
    int dh = d / heads, dh8 = dh & ~7;
    float scale = 1.0f / sqrtf((float)dh);
    memset(out, 0, sizeof(float) * (size_t)d);
    for (int h = 0; h < heads; h++) {
        const float *qh = q + h * dh;
        int done = 0;
        if (dh8 == dh)
            for (; done + 4 <= n; done += 4) dot4_avx2(qh, keys + done, h * dh, dh, scale, scores + done);
        for (int j = done; j < n; j++) scores[j] = dot_avx2(qh, keys[j] + h * dh, dh) * scale;
        fy_softmax(scores, n);
        float *oh = out + h * dh;
        for (int j = 0; j < n; j++) {
            const float *v = vals[j] + h * dh;
            __m256 sj = _mm256_set1_ps(scores[j]);
            for (int i = 0; i < dh8; i += 8) /* y += a * x: multiply, then add, as the scalar code */
                _mm256_storeu_ps(oh + i, _mm256_add_ps(_mm256_loadu_ps(oh + i), _mm256_mul_ps(sj, _mm256_loadu_ps(v + i))));
            for (int i = dh8; i < dh; i++) oh[i] += scores[j] * v[i];
        }
    }
}
#endif

void fy_attend(const float *q, const float *const *keys, const float *const *vals, int n, int d, int heads,
               float *scores, float *out) {
#if defined(__x86_64__)
    if (fy_simd_enabled()) {
        attend_avx2(q, keys, vals, n, d, heads, scores, out);
        return;
    }
#endif
    attend_portable(q, keys, vals, n, d, heads, scores, out);
}

/* ---- beam search's scan of a row of logits ---- */

static int first_above_scalar(const float *logits, int from, int n, float lse, float base, float threshold) {
    for (int v = from; v < n; v++)
        if (base + (logits[v] - lse) > threshold) return v;
    return n;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static int first_above_avx2(const float *logits, int from, int n, float lse,
                                                            float base, float threshold) {
    const __m256 vl = _mm256_set1_ps(lse), vb = _mm256_set1_ps(base), vt = _mm256_set1_ps(threshold);
    int v = from;
    for (; v + 8 <= n; v += 8) {
        __m256 total = _mm256_add_ps(vb, _mm256_sub_ps(_mm256_loadu_ps(logits + v), vl));
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(total, vt, _CMP_GT_OQ));
        if (mask) return v + __builtin_ctz((unsigned)mask);
    }
    return first_above_scalar(logits, v, n, lse, base, threshold);
}
#endif

int fy_first_above(const float *logits, int from, int n, float lse, float base, float threshold) {
#if defined(__x86_64__)
    if (fy_simd_enabled()) return first_above_avx2(logits, from, n, lse, base, threshold);
#endif
    return first_above_scalar(logits, from, n, lse, base, threshold);
}

void fy_sinusoid_table(float *out, int n_pos, int d, enum fy_positions layout) {
    int half = d / 2;
    for (int p = 0; p < n_pos; p++) {
        float *row = out + (size_t)p * d;
        memset(row, 0, sizeof(float) * (size_t)d);
        for (int j = 0; j < half; j++) {
            double angle = p / pow(10000.0, 2.0 * j / d);
            if (layout == FY_POS_SIN_INTERLEAVED) {
                row[2 * j] = (float)sin(angle);
                row[2 * j + 1] = (float)cos(angle);
            } else {
                row[j] = (float)sin(angle);
                row[half + j] = (float)cos(angle);
            }
        }
    }
}


