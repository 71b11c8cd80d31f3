#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

void fy_linear(const float *x, int rows, const fy_packed *w, const float *b, float *y, fy_pool *pool) {
    if (rows > 0) fy_gemm(x, rows, w, b, y, w->n, pool);
}

void fy_layernorm(const float *x, int rows, int d, const float *gamma, const float *beta, float eps, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        double mean = 0, var = 0;
        for (int i = 0; i < d; i++) mean += xr[i];
        mean /= d;
        for (int i = 0; i < d; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= d;
        float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
        for (int i = 0; i < d; i++) yr[i] = (xr[i] - m) * inv * gamma[i] + beta[i];
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
    for (int i = n8; i < n; i++) {
        float e = exp_scalar(x[i] - shift);
        if (out) out[i] = e;
        tail += e;
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


