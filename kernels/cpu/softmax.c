/* softmax.c: CPU softmax and log-softmax along any dim of a contiguous tensor, and their
 * backward. x is viewed as (outer, D, inner); each of the outer*inner slices of D elements
 * (contiguous when dim is last, inner apart otherwise) is loaded into a double row, computed
 * there with the maximum subtracted first (so large logits stay finite), and stored back. */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "internal.h"
#include "cpu_kernels.h"

enum { PAR_MIN = 32768 };

static void split_at(const dp_tensor *x, int32_t dim, int64_t *outer, int64_t *D, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    *D = x->ndim ? x->shape[dim] : 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < dim) *outer *= x->shape[i];
        if (i > dim) *inner *= x->shape[i];
    }
}

/* In place: v = softmax(v) or log_softmax(v). */
static void softmax_row(double *v, int64_t D, int use_log) {
    double m = -INFINITY, s = 0;
    for (int64_t d = 0; d < D; d++)
        if (v[d] > m) m = v[d];
    if (use_log) {
        for (int64_t d = 0; d < D; d++) s += exp(v[d] - m);
        double c = m + log(s);
        for (int64_t d = 0; d < D; d++) v[d] -= c;
    } else {
        for (int64_t d = 0; d < D; d++) { v[d] = exp(v[d] - m); s += v[d]; }
        double inv = 1.0 / s;
        for (int64_t d = 0; d < D; d++) v[d] *= inv;
    }
}

/* In place: g = the gradient wrt the input, from g (wrt the output) and y (the output).
 * softmax: gx = y * (gy - sum(gy * y)); log-softmax: gx = gy - exp(y) * sum(gy). */
static void softmax_row_backward(double *g, const double *y, int64_t D, int use_log) {
    double s = 0;
    if (use_log) {
        for (int64_t d = 0; d < D; d++) s += g[d];
        for (int64_t d = 0; d < D; d++) g[d] -= exp(y[d]) * s;
    } else {
        for (int64_t d = 0; d < D; d++) s += g[d] * y[d];
        for (int64_t d = 0; d < D; d++) g[d] = y[d] * (g[d] - s);
    }
}

int dp_cpu_softmax(dp_tensor *y, const dp_tensor *x, int32_t dim, int32_t use_log) {
    int64_t outer, D, inner;
    split_at(x, dim, &outer, &D, &inner);
    int64_t rows = outer * inner;
    int failed = 0;
    if (rows == 0 || D == 0) return 0;
    #pragma omp parallel if (rows * D > PAR_MIN)
    {
        double *v = malloc(sizeof(double) * (size_t)D);
        if (!v) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!v) continue;
            int64_t off = (r / inner) * D * inner + r % inner;
            dp_cpu_row_load(v, x->data, x->dtype, off, inner, D);
            softmax_row(v, D, use_log);
            dp_cpu_row_store(y->data, y->dtype, off, inner, v, D);
        }
        free(v);
    }
    if (failed) return dp_fail(DP_ENOMEM, "softmax: out of memory for a row of %lld doubles", (long long)D);
    return 0;
}

int dp_cpu_softmax_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *y, int32_t dim,
                            int32_t use_log) {
    int64_t outer, D, inner;
    split_at(y, dim, &outer, &D, &inner);
    int64_t rows = outer * inner;
    int failed = 0;
    if (rows == 0 || D == 0) return 0;
    #pragma omp parallel if (rows * D > PAR_MIN)
    {
        double *g = malloc(sizeof(double) * 2 * (size_t)D), *v = g ? g + D : NULL;
        if (!g) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!g) continue;
            int64_t off = (r / inner) * D * inner + r % inner;
            dp_cpu_row_load(g, gy->data, gy->dtype, off, inner, D);
            dp_cpu_row_load(v, y->data, y->dtype, off, inner, D);
            softmax_row_backward(g, v, D, use_log);
            dp_cpu_row_store(gx->data, gx->dtype, off, inner, g, D);
        }
        free(g);
    }
    if (failed)
        return dp_fail(DP_ENOMEM, "softmax_backward: out of memory for two rows of %lld doubles", (long long)D);
    return 0;
}
