/* cuda_test.h: what the CUDA kernel tests share: the skip check and the CUDA op table, copies of
 * tensors between the CPU and the CUDA backend through that table, seeded random CPU inputs, the
 * comparisons of a CUDA result with the CPU's (bytes, worst relative difference, every element
 * within a tolerance), and for the GEMM tests operand views and a float64 reference. Header-only;
 * include after dp_test.h and internal.h. The helpers that make a tensor print a FAIL line and end
 * the test (exit 1) when they cannot: no test here can go on without its operands. */
#ifndef DP_CUDA_TEST_H
#define DP_CUDA_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dp_ops *cuda_ops;

/* Prints the skip line and returns 1 when there is no CUDA device; else sets cuda_ops. */
static inline int cuda_skip(void) {
    if (dp_device_available(DP_CUDA)) {
        cuda_ops = dp_ops_for(DP_CUDA);
        return cuda_ops == NULL;
    }
    (void)dp_ops_for(DP_CUDA);   /* sets the reason */
    printf("SKIP: no CUDA device (%s)\n", dp_last_error());
    return 1;
}

static inline size_t nbytes(const dp_tensor *t) {
    return (size_t)dp_tensor_numel(t) * (size_t)dp_dtype_size(t->dtype);
}

/* A new uninitialised contiguous tensor. */
static inline dp_tensor *empty(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape) {
    dp_tensor *t = dp_tensor_empty(dtype, device, ndim, shape);
    CHECK(t != NULL, "empty %s: %s", dp_dtype_name(dtype), dp_last_error());
    if (!t) exit(1);
    return t;
}

/* A CUDA tensor holding h's elements (h contiguous, on the CPU). */
static inline dp_tensor *to_cuda(const dp_tensor *h) {
    dp_tensor *d = empty(h->dtype, DP_CUDA, h->ndim, h->shape);
    if (nbytes(h)) CHECK_OK(cuda_ops->memcpy_h2d(d->data, h->data, nbytes(h)));
    return d;
}

/* A CPU copy of CUDA tensor d (d contiguous). */
static inline dp_tensor *to_cpu(const dp_tensor *d) {
    dp_tensor *h = empty(d->dtype, DP_CPU, d->ndim, d->shape);
    if (nbytes(d)) CHECK_OK(cuda_ops->memcpy_d2h(h->data, d->data, nbytes(d)));
    return h;
}

/* CPU tensor of values scale * [-1, 1) rounded into dtype, drawn by dp_test_uniform from the raw
 * LCG state `state` (tests keep their own seed formulas: each value set is part of the test). */
static inline dp_tensor *rnd_state(dp_dtype dtype, int32_t ndim, const int64_t *shape, uint64_t state,
                                   double scale) {
    dp_tensor *t = empty(dtype, DP_CPU, ndim, shape);
    for (int64_t i = 0; i < dp_tensor_numel(t); i++)
        dp_store_f64(t->data, dtype, i, scale * dp_test_uniform(&state));
    return t;
}

/* rnd_state seeded with seed * 7919 + 3. */
static inline dp_tensor *rnd(dp_dtype dtype, int32_t ndim, const int64_t *shape, uint64_t seed, double scale) {
    return rnd_state(dtype, ndim, shape, seed * 7919 + 3, scale);
}

/* Bytes of a and b equal, each on the CPU or CUDA (contiguous), same dtype and size; NULL equals
 * only NULL. */
static inline int same_bytes(const dp_tensor *a, const dp_tensor *b) {
    if (!a || !b) return a == b;
    dp_tensor *ha = a->device == DP_CUDA ? to_cpu(a) : NULL, *hb = b->device == DP_CUDA ? to_cpu(b) : NULL;
    const dp_tensor *x = ha ? ha : a, *y = hb ? hb : b;
    int same = x->dtype == y->dtype && dp_tensor_numel(x) == dp_tensor_numel(y) &&
               memcmp(x->data, y->data, nbytes(x)) == 0;
    dp_tensor_release(ha);
    dp_tensor_release(hb);
    return same;
}

/* Largest |g - w| / (floor_abs + |w|) over the elements g of got (CUDA) and w of want (CPU), same
 * dtype and shape. Equal values (NaN with NaN too) count 0, NaN against a number counts Inf. */
static inline double worst_rel_diff(const dp_tensor *got_dev, const dp_tensor *want, double floor_abs) {
    dp_tensor *got = to_cpu(got_dev);
    double worst = 0;
    for (int64_t i = 0; i < dp_tensor_numel(want); i++) {
        double x = dp_load_f64(got->data, got->dtype, i), y = dp_load_f64(want->data, want->dtype, i);
        double d = (isnan(x) && isnan(y)) || x == y ? 0 : fabs(x - y) / (floor_abs + fabs(y));
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    dp_tensor_release(got);
    return worst;
}

/* Every element of got (CUDA) within tol * (1 + |want|) of want (CPU); tol 0 asks for equality.
 * Counts one check; prints the first mismatch. */
static inline void compare(const char *what, const dp_tensor *got_dev, const dp_tensor *want, double tol) {
    dp_tensor *got = to_cpu(got_dev);
    int64_t n = dp_tensor_numel(want);
    double *g = malloc(sizeof(double) * (size_t)(n ? n : 1)), *w = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int64_t bad = -1;
    if (g && w && !dp_tensor_to_f64(got, g) && !dp_tensor_to_f64(want, w)) {
        for (int64_t i = 0; i < n && bad < 0; i++) {
            int same = (isnan(g[i]) && isnan(w[i])) || g[i] == w[i];
            if (!same && !(fabs(g[i] - w[i]) <= tol * (1.0 + fabs(w[i])))) bad = i;
        }
        CHECK(bad < 0, "%s: element %lld is %.9g on cuda, %.9g on the cpu (tol %g)", what,
              (long long)bad, bad >= 0 ? g[bad] : 0.0, bad >= 0 ? w[bad] : 0.0, tol);
    } else {
        CHECK(0, "%s: could not read the results: %s", what, dp_last_error());
    }
    free(g);
    free(w);
    dp_tensor_release(got);
}

/* Tolerance for results of dtype computed in f32 on the GPU and in f64 on the CPU: a few units
 * of f32 rounding for f32, one unit in the last place (plus the f32 difference) for the 16-bit
 * formats, where the two roundings into the format may land on neighbours. */
static inline double tol_for(dp_dtype dtype) {
    switch (dtype) {
    case DP_F64: return 1e-12;
    case DP_F32: return 1e-5;
    case DP_F16: return 2e-3;
    default: return 1e-2;   /* bf16: 2^-7 */
    }
}

/* Relative tolerance of a parameter updated by a CUDA optimizer step against the CPU's: about one
 * rounding step of its dtype (f32: gcc and nvcc contract different multiply-adds). */
static inline double step_tol(dp_dtype dtype) {
    switch (dtype) {
    case DP_F32: return 1e-6;
    case DP_F64: return 1e-13;
    case DP_BF16: return 0x1p-7;
    case DP_F16: return 0x1p-10;
    default: return 0x1p-3;
    }
}

/* ---------------------------------------------------------------- GEMM tests */

/* Views on the CPU (*host_view) and on CUDA (*dev_view) of a logical (count, r, c) matrix operand
 * (count 0: 2-D (r, c)) whose storage, h on the CPU and d on CUDA, holds it row-major or (with
 * colmajor) as its transpose, so that unit stride runs down the columns. */
static inline void operand_views(const dp_tensor *h, const dp_tensor *d, int64_t count, int64_t r, int64_t c,
                                 int colmajor, dp_tensor **host_view, dp_tensor **dev_view) {
    int32_t nd = count ? 3 : 2;
    int64_t shape[3] = {count ? count : 1, r, c}, stride[3] = {r * c, colmajor ? 1 : c, colmajor ? r : 1};
    *host_view = dp_tensor_view_of(h, nd, count ? shape : shape + 1, count ? stride : stride + 1, 0);
    *dev_view = dp_tensor_view_of(d, nd, count ? shape : shape + 1, count ? stride : stride + 1, 0);
}

/* Element (i, j) of op(A) op(B) in float64 (*s), and the sum of its terms' magnitudes (*sa): A is
 * (M, K), stored (K, M) when ta; B is (K, N), stored (N, K) when tb; both row-major. */
static inline void ref_dot(const double *A, const double *B, int64_t M, int64_t N, int64_t K, int ta, int tb,
                           int64_t i, int64_t j, double *s, double *sa) {
    double sum = 0, abs_sum = 0;
    for (int64_t k = 0; k < K; k++) {
        double x = ta ? A[k * M + i] : A[i * K + k], y = tb ? B[j * K + k] : B[k * N + j];
        sum += x * y;
        abs_sum += fabs(x * y);
    }
    *s = sum;
    *sa = abs_sum;
}

#endif
