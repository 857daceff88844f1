/* cuda_nn_compare.h: what the CUDA kernel tests share: moving CPU tensors to the CUDA backend and
 * back through its op table, random inputs, and an element-by-element comparison that names the
 * first mismatch. Header-only; include after dp_test.h and internal.h. */
#ifndef DP_CUDA_NN_COMPARE_H
#define DP_CUDA_NN_COMPARE_H

static const dp_ops *cuda_ops;

/* A CUDA tensor holding h's elements (h contiguous, on the CPU). */
static dp_tensor *to_cuda(const dp_tensor *h) {
    dp_tensor *d = dp_tensor_empty(h->dtype, DP_CUDA, h->ndim, h->shape);
    CHECK(d != NULL, "to_cuda: %s", dp_last_error());
    if (!d) return NULL;
    size_t bytes = (size_t)dp_tensor_numel(h) * (size_t)dp_dtype_size(h->dtype);
    if (bytes) CHECK_OK(cuda_ops->memcpy_h2d(d->data, h->data, bytes));
    return d;
}

/* A CPU copy of CUDA tensor d. */
static dp_tensor *to_cpu(const dp_tensor *d) {
    dp_tensor *h = dp_tensor_empty(d->dtype, DP_CPU, d->ndim, d->shape);
    CHECK(h != NULL, "to_cpu: %s", dp_last_error());
    if (!h) return NULL;
    size_t bytes = (size_t)dp_tensor_numel(d) * (size_t)dp_dtype_size(d->dtype);
    if (bytes) CHECK_OK(cuda_ops->memcpy_d2h(h->data, d->data, bytes));
    return h;
}

/* CPU tensor of values scale * [-1, 1) rounded into dtype. */
static dp_tensor *rnd(dp_dtype dtype, int32_t ndim, const int64_t *shape, uint64_t seed, double scale) {
    int64_t n = dp_shape_numel(ndim, shape);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) return NULL;
    uint64_t s = seed * 7919 + 3;
    for (int64_t i = 0; i < n; i++) v[i] = scale * dp_test_uniform(&s);
    dp_tensor *t = dp_tensor_from_f64(dtype, ndim, shape, v);
    free(v);
    CHECK(t != NULL, "rnd: %s", dp_last_error());
    return t;
}

/* Every element of got (CUDA) within tol * (1 + |want|) of want (CPU); tol 0 asks for equality.
 * Counts one check; prints the first mismatch. */
__attribute__((unused)) static void compare(const char *what, const dp_tensor *got_dev, const dp_tensor *want, double tol) {
    dp_tensor *got = to_cpu(got_dev);
    int64_t n = dp_tensor_numel(want);
    double *g = malloc(sizeof(double) * (size_t)(n ? n : 1)), *w = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int64_t bad = -1;
    if (got && g && w && !dp_tensor_to_f64(got, g) && !dp_tensor_to_f64(want, w)) {
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
__attribute__((unused)) static double tol_for(dp_dtype dtype) {
    switch (dtype) {
    case DP_F64: return 1e-12;
    case DP_F32: return 1e-5;
    case DP_F16: return 2e-3;
    default: return 1e-2;   /* bf16: 2^-7 */
    }
}

/* Prints the skip line and returns 1 when there is no CUDA device. */
static int cuda_skip(void) {
    if (dp_device_available(DP_CUDA)) {
        cuda_ops = dp_ops_for(DP_CUDA);
        return cuda_ops == NULL;
    }
    (void)dp_ops_for(DP_CUDA);   /* sets the reason */
    printf("SKIP: no CUDA device (%s)\n", dp_last_error());
    return 1;
}

#endif
