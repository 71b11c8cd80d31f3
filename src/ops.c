#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void fy_linear(const float *x, int rows, const fy_packed *w, const float *b, float *y, fy_pool *pool) {
    if (rows <= 0) return;
    fy_gemm(x, rows, w, y, w->n, pool);
    if (b)
        for (int r = 0; r < rows; r++) fy_add(y + (size_t)r * w->n, b, (size_t)w->n);
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

void fy_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void fy_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void fy_log_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += expf(x[i] - mx);
    float lse = mx + (float)log(sum);
    for (int i = 0; i < n; i++) x[i] -= lse;
}

float fy_dot(const float *a, const float *b, int n) {
    /* Eight partial sums in a fixed order: vectorizable, and deterministic. */
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float tail = 0;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}

void fy_axpy(float a, const float *x, float *y, int n) {
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

void fy_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}
