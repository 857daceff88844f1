/* softmax.c: CPU softmax and log-softmax along any dim of a contiguous tensor, their backward,
 * and the masked softmax softmax(x + mask) over the last dim. x is viewed as (outer, D, inner);
 * each of the outer*inner slices of D elements (contiguous when dim is last, inner apart
 * otherwise) is loaded into a double row, computed there with the maximum subtracted first (so
 * large logits stay finite), and stored back. */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "internal.h"
#include "cpu_kernels.h"
#include "ew_loop.h"

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

/* v[D] = row r of x + mask, each sum as dp_cpu_binary's add computes it (elementwise.c: f64 in
 * double; every other dtype through the same block loads to f32, an f32 add and the same store
 * into the dtype), then read back as the softmax kernel reads its input. fbuf holds 3*D floats,
 * cell D elements of x's dtype (at most 4 bytes: f64 never uses it). */
static void masked_row_load(double *v, float *fbuf, void *cell, const dp_tensor *x,
                            const dp_tensor *mask, int64_t r, int64_t D) {
    int last = x->ndim - 1;
    int64_t moff = 0, rem = r;
    for (int d = last - 1; d >= 0; d--) {
        moff += (rem % x->shape[d]) * mask->stride[d];
        rem /= x->shape[d];
    }
    dp_dtype dt = x->dtype;
    int64_t esize = dp_dtype_size(dt), ms = mask->stride[last];
    const char *xp = (const char *)x->data + r * D * esize;
    const char *mp = (const char *)mask->data + moff * esize;
    if (dt == DP_F64) {
        const double *a = dp_ew_load_f64(v, xp, dt, 1, D);   /* contiguous f64: no copy */
        const double *b = (const double *)mp;
        for (int64_t k = 0; k < D; k++) v[k] = a[k] + b[k * ms];
        return;
    }
    float *xb = fbuf, *mb = fbuf + D, *sum = fbuf + 2 * D;
    const float *a = dp_ew_load_f32(xb, xp, dt, 1, D);
    const float *b = dp_ew_load_f32(mb, mp, dt, ms, D);
    for (int64_t k = 0; k < D; k++) sum[k] = a[k] + b[k];
    if (dt == DP_F32) {
        for (int64_t k = 0; k < D; k++) v[k] = sum[k];
        return;
    }
    /* Rounded into the dtype, as binary stores its output, and read back (exactly, through
     * f32) as the softmax kernel reads its input. */
    dp_ew_store_f32((char *)cell, dt, 1, sum, D);
    const float *back = dp_ew_load_f32(sum, (const char *)cell, dt, 1, D);
    for (int64_t k = 0; k < D; k++) v[k] = back[k];
}

int dp_cpu_softmax_masked(dp_tensor *y, const dp_tensor *x, const dp_tensor *mask) {
    if (dp_ew_check_float("softmax_masked", x)) return DP_EDTYPE;
    if (y->dtype != x->dtype || mask->dtype != x->dtype || mask->ndim != x->ndim || x->ndim < 1)
        return dp_fail(DP_EDTYPE, "cpu softmax_masked: x, y and mask must share a dtype and ndim "
                       "(x is %s, y is %s, mask is %s)", dp_tensor_desc(x), dp_tensor_desc(y),
                       dp_tensor_desc(mask));
    int64_t D = x->shape[x->ndim - 1], numel = dp_tensor_numel(x);
    if (numel == 0 || D == 0) return 0;
    int64_t rows = numel / D;
    int failed = 0;
    #pragma omp parallel if (numel > PAR_MIN)
    {
        /* D doubles, then 3*D floats, then D cells of at most 4 bytes. */
        double *v = malloc((sizeof(double) + 4 * sizeof(float)) * (size_t)D);
        if (!v) {
            #pragma omp atomic write
            failed = 1;
        }
        float *fbuf = v ? (float *)(v + D) : NULL;
        void *cell = v ? (void *)(fbuf + 3 * D) : NULL;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!v) continue;
            masked_row_load(v, fbuf, cell, x, mask, r, D);
            softmax_row(v, D, 0);
            dp_cpu_row_store(y->data, y->dtype, r * D, 1, v, D);
        }
        free(v);
    }
    if (failed)
        return dp_fail(DP_ENOMEM, "softmax_masked: out of memory for a row of %lld elements", (long long)D);
    return 0;
}
