/* unary.c: CPU kernels for the unary functions (neg, exp, ..., gelu, affine, pow) and their
 * derivatives, as float maps over the shared strided loop (ew_loop.h). f32 and the narrower
 * floats compute in f32 with the float libm functions, f64 in double. */
#include <math.h>
#include "cpu_kernels.h"
#include "ew_loop.h"

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

/* ---------------------------------------------------------------- forward */

static void unary_f32(const dp_ew_map *m, float *o, const float *const *in, int64_t n) {
    const float *x = in[0];
    float alpha = (float)m->alpha, beta = (float)m->beta;
    switch ((dp_unop)m->op) {
    case DP_UN_NEG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = -x[i]; break;
    case DP_UN_EXP: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = expf(x[i]); break;
    case DP_UN_LOG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = logf(x[i]); break;
    case DP_UN_SQRT: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = sqrtf(x[i]); break;
    case DP_UN_ABS: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = fabsf(x[i]); break;
    case DP_UN_TANH: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = tanhf(x[i]); break;
    case DP_UN_SIGMOID: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = 1.0f / (1.0f + expf(-x[i])); break;
    /* NaN fails both comparisons and is kept, so it propagates. */
    case DP_UN_RELU:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f;
        break;
    case DP_UN_GELU:
        for (int64_t i = 0; i < n; i++)
            o[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)INV_SQRT2));
        break;
    case DP_UN_AFFINE: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = x[i] * alpha + beta; break;
    case DP_UN_POW:
        if (m->alpha == 1.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = x[i];
        else if (m->alpha == 2.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = x[i] * x[i];
        else DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = powf(x[i], alpha);
        break;
    }
}

static void unary_f64(const dp_ew_map *m, double *o, const double *const *in, int64_t n) {
    const double *x = in[0];
    double alpha = m->alpha, beta = m->beta;
    switch ((dp_unop)m->op) {
    case DP_UN_NEG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = -x[i]; break;
    case DP_UN_EXP: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = exp(x[i]); break;
    case DP_UN_LOG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = log(x[i]); break;
    case DP_UN_SQRT: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = sqrt(x[i]); break;
    case DP_UN_ABS: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = fabs(x[i]); break;
    case DP_UN_TANH: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = tanh(x[i]); break;
    case DP_UN_SIGMOID: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = 1.0 / (1.0 + exp(-x[i])); break;
    case DP_UN_RELU:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = (x[i] > 0.0 || x[i] != x[i]) ? x[i] : 0.0;
        break;
    case DP_UN_GELU:
        DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = 0.5 * x[i] * (1.0 + erf(x[i] * INV_SQRT2));
        break;
    case DP_UN_AFFINE: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = x[i] * alpha + beta; break;
    case DP_UN_POW:
        if (alpha == 1.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = x[i];
        else if (alpha == 2.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = x[i] * x[i];
        else DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = pow(x[i], alpha);
        break;
    }
}

int dp_cpu_unary(dp_tensor *out, const dp_tensor *x, dp_unop op, double alpha, double beta) {
    if (dp_ew_check_float("unary", out) || dp_ew_check_float("unary", x)) return DP_EDTYPE;
    if ((unsigned)op > DP_UN_POW) return dp_fail(DP_EARG, "cpu unary: unknown op %d", (int)op);
    dp_ew_map m = { .op = op, .alpha = alpha, .beta = beta, .f32 = unary_f32, .f64 = unary_f64 };
    const dp_tensor *ts[2] = { out, x };
    dp_ew_map_run(&m, 2, ts);
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* in[0] is gy; in[1] is y for exp, tanh, sigmoid and sqrt, x for the rest (absent for neg and
 * affine, whose derivative is a constant). */
static void unary_backward_f32(const dp_ew_map *m, float *o, const float *const *in, int64_t n) {
    const float *g = in[0], *v = in[1];
    float alpha = (float)m->alpha;
    switch ((dp_unop)m->op) {
    case DP_UN_NEG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = -g[i]; break;
    case DP_UN_EXP: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * v[i]; break;
    case DP_UN_LOG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] / v[i]; break;
    case DP_UN_SQRT: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * 0.5f / v[i]; break;
    /* sign(x), 0 at 0; a NaN x passes its NaN on. */
    case DP_UN_ABS:
        for (int64_t i = 0; i < n; i++)
            o[i] = v[i] > 0.0f ? g[i] : v[i] < 0.0f ? -g[i] : v[i] == 0.0f ? 0.0f : v[i];
        break;
    case DP_UN_TANH: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * (1.0f - v[i] * v[i]); break;
    case DP_UN_SIGMOID: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * v[i] * (1.0f - v[i]); break;
    case DP_UN_RELU: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = v[i] > 0.0f ? g[i] : 0.0f; break;
    /* d/dx x Phi(x) = Phi(x) + x phi(x). */
    case DP_UN_GELU:
        for (int64_t i = 0; i < n; i++) {
            float x = v[i];
            float cdf = 0.5f * (1.0f + erff(x * (float)INV_SQRT2));
            float pdf = expf(-0.5f * x * x) * (float)INV_SQRT_2PI;
            o[i] = g[i] * (cdf + x * pdf);
        }
        break;
    case DP_UN_AFFINE: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * alpha; break;
    case DP_UN_POW:
        if (m->alpha == 1.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i];
        else if (m->alpha == 2.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * 2.0f * v[i];
        else DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * alpha * powf(v[i], alpha - 1.0f);
        break;
    }
}

static void unary_backward_f64(const dp_ew_map *m, double *o, const double *const *in, int64_t n) {
    const double *g = in[0], *v = in[1];
    double alpha = m->alpha;
    switch ((dp_unop)m->op) {
    case DP_UN_NEG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = -g[i]; break;
    case DP_UN_EXP: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * v[i]; break;
    case DP_UN_LOG: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] / v[i]; break;
    case DP_UN_SQRT: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * 0.5 / v[i]; break;
    case DP_UN_ABS:
        for (int64_t i = 0; i < n; i++)
            o[i] = v[i] > 0.0 ? g[i] : v[i] < 0.0 ? -g[i] : v[i] == 0.0 ? 0.0 : v[i];
        break;
    case DP_UN_TANH: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * (1.0 - v[i] * v[i]); break;
    case DP_UN_SIGMOID: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * v[i] * (1.0 - v[i]); break;
    case DP_UN_RELU: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = v[i] > 0.0 ? g[i] : 0.0; break;
    case DP_UN_GELU:
        for (int64_t i = 0; i < n; i++) {
            double x = v[i];
            double cdf = 0.5 * (1.0 + erf(x * INV_SQRT2));
            double pdf = exp(-0.5 * x * x) * INV_SQRT_2PI;
            o[i] = g[i] * (cdf + x * pdf);
        }
        break;
    case DP_UN_AFFINE: DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * alpha; break;
    case DP_UN_POW:
        if (alpha == 1.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i];
        else if (alpha == 2.0) DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * 2.0 * v[i];
        else DP_SIMD for (int64_t i = 0; i < n; i++) o[i] = g[i] * alpha * pow(v[i], alpha - 1.0);
        break;
    }
}

static int uses_output(dp_unop op) {
    return op == DP_UN_EXP || op == DP_UN_TANH || op == DP_UN_SIGMOID || op == DP_UN_SQRT;
}

int dp_cpu_unary_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *x,
                          const dp_tensor *y, dp_unop op, double alpha, double beta) {
    if ((unsigned)op > DP_UN_POW) return dp_fail(DP_EARG, "cpu unary_backward: unknown op %d", (int)op);
    const dp_tensor *v = uses_output(op) ? y : x;
    int constant = op == DP_UN_NEG || op == DP_UN_AFFINE;
    if (!constant && !v)
        return dp_fail(DP_EARG, "cpu unary_backward: op %d needs its %s", (int)op,
                       uses_output(op) ? "output y" : "input x");
    if (dp_ew_check_float("unary_backward", gx) || dp_ew_check_float("unary_backward", gy) ||
        (!constant && dp_ew_check_float("unary_backward", v)))
        return DP_EDTYPE;
    dp_ew_map m = { .op = op, .alpha = alpha, .beta = beta, .f32 = unary_backward_f32,
                    .f64 = unary_backward_f64 };
    const dp_tensor *ts[3] = { gx, gy, v };
    dp_ew_map_run(&m, constant ? 2 : 3, ts);
    return 0;
}
