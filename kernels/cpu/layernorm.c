/* layernorm.c: CPU layer norm over the last dim and its backward. Each row is loaded into
 * doubles; the variance is the two-pass population variance (divide by D, as BERT and PyTorch
 * do). Per-row mean and rstd = 1/sqrt(var + eps) are written in the dtype of the mean and rstd
 * tensors the caller passes (f32, or f64 for f64 inputs). */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "internal.h"
#include "cpu_kernels.h"

enum { PAR_MIN = 32768 };

/* weight or bias (1-D, any stride) as D doubles; fill when t is NULL. */
static void load_param(double *dst, const dp_tensor *t, int64_t D, double fill) {
    if (t) {
        dp_cpu_row_load(dst, t->data, t->dtype, 0, t->ndim ? t->stride[0] : 1, D);
    } else {
        for (int64_t d = 0; d < D; d++) dst[d] = fill;
    }
}

int dp_cpu_layer_norm(dp_tensor *y, dp_tensor *mean, dp_tensor *rstd, const dp_tensor *x,
                      const dp_tensor *weight, const dp_tensor *bias, double eps) {
    int64_t D = x->ndim ? x->shape[x->ndim - 1] : 1, R = dp_tensor_numel(mean);
    double *wb = malloc(sizeof(double) * 2 * (size_t)(D ? D : 1));
    if (!wb) return dp_fail(DP_ENOMEM, "layer_norm: out of memory for %lld parameters", (long long)D);
    double *w = wb, *b = wb + D;
    load_param(w, weight, D, 1.0);
    load_param(b, bias, D, 0.0);
    int failed = 0;
    #pragma omp parallel if (R * D > PAR_MIN)
    {
        double *v = malloc(sizeof(double) * (size_t)(D ? D : 1));
        if (!v) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            if (!v) continue;
            dp_cpu_row_load(v, x->data, x->dtype, r * D, 1, D);
            double mu = 0, var = 0;
            for (int64_t d = 0; d < D; d++) mu += v[d];
            mu /= (double)D;
            for (int64_t d = 0; d < D; d++) var += (v[d] - mu) * (v[d] - mu);
            var /= (double)D;
            double rs = 1.0 / sqrt(var + eps);
            for (int64_t d = 0; d < D; d++) v[d] = (v[d] - mu) * rs * w[d] + b[d];
            dp_cpu_row_store(y->data, y->dtype, r * D, 1, v, D);
            dp_store_f64(mean->data, mean->dtype, r, mu);
            dp_store_f64(rstd->data, rstd->dtype, r, rs);
        }
        free(v);
    }
    free(wb);
    if (failed) return dp_fail(DP_ENOMEM, "layer_norm: out of memory for a row of %lld doubles", (long long)D);
    return 0;
}

/* With xhat = (x - mean) * rstd and g = gy * weight:
 *   gx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *   gweight = sum over rows of gy * xhat, gbias = sum over rows of gy.
 * Rows are split into one contiguous block per thread; each thread sums its block's gweight and
 * gbias into its own buffer, and the buffers are added in thread order, so the result does not
 * depend on scheduling. */
int dp_cpu_layer_norm_backward(dp_tensor *gx, dp_tensor *gweight, dp_tensor *gbias,
                               const dp_tensor *gy, const dp_tensor *x, const dp_tensor *mean,
                               const dp_tensor *rstd, const dp_tensor *weight) {
    int64_t D = x->ndim ? x->shape[x->ndim - 1] : 1, R = dp_tensor_numel(mean);
    size_t Dn = (size_t)(D ? D : 1);
    int nt = R * D > PAR_MIN ? omp_get_max_threads() : 1;
    int want_params = gweight || gbias;
    double *w = malloc(sizeof(double) * Dn);
    double *part = want_params ? calloc((size_t)nt * 2 * Dn, sizeof(double)) : NULL;
    if (!w || (want_params && !part)) {
        free(w);
        free(part);
        return dp_fail(DP_ENOMEM, "layer_norm_backward: out of memory for %d buffers of %lld doubles", 2 * nt,
                       (long long)D);
    }
    load_param(w, weight, D, 1.0);
    int failed = 0;
    #pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int64_t r0 = R * tid / nth, r1 = R * (tid + 1) / nth;
        double *xh = malloc(sizeof(double) * 2 * Dn), *g = xh ? xh + Dn : NULL;
        double *pw = part ? part + (size_t)tid * 2 * Dn : NULL, *pb = pw ? pw + Dn : NULL;
        if (!xh) {
            #pragma omp atomic write
            failed = 1;
            r1 = r0;
        }
        for (int64_t r = r0; r < r1; r++) {
            double mu = dp_load_f64(mean->data, mean->dtype, r);
            double rs = dp_load_f64(rstd->data, rstd->dtype, r);
            dp_cpu_row_load(xh, x->data, x->dtype, r * D, 1, D);
            dp_cpu_row_load(g, gy->data, gy->dtype, r * D, 1, D);
            for (int64_t d = 0; d < D; d++) xh[d] = (xh[d] - mu) * rs;
            if (pw) {
                for (int64_t d = 0; d < D; d++) {
                    pw[d] += g[d] * xh[d];
                    pb[d] += g[d];
                }
            }
            if (!gx) continue;
            double a = 0, c = 0;
            for (int64_t d = 0; d < D; d++) {
                g[d] *= w[d];
                a += g[d];
                c += g[d] * xh[d];
            }
            a /= (double)D;
            c /= (double)D;
            for (int64_t d = 0; d < D; d++) g[d] = rs * (g[d] - a - xh[d] * c);
            dp_cpu_row_store(gx->data, gx->dtype, r * D, 1, g, D);
        }
        free(xh);
    }
    if (!failed && want_params) {
        /* Thread 0's buffers collect the sums. */
        for (int t = 1; t < nt; t++) {
            const double *q = part + (size_t)t * 2 * Dn;
            for (int64_t d = 0; d < 2 * D; d++) part[d] += q[d];
        }
        if (gweight) dp_cpu_row_store(gweight->data, gweight->dtype, 0, 1, part, D);
        if (gbias) dp_cpu_row_store(gbias->data, gbias->dtype, 0, 1, part + Dn, D);
    }
    free(w);
    free(part);
    if (failed)
        return dp_fail(DP_ENOMEM, "layer_norm_backward: out of memory for two rows of %lld doubles", (long long)D);
    return 0;
}
