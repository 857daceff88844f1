/* test_cuda_softmax_masked.c: the CUDA softmax_masked kernel (kernels/cuda/softmax.cu).
 *  - its contract on the device: byte for byte equal to CUDA binary add followed by CUDA softmax
 *    (NaN for NaN), for f32, f64, bf16 and f16 with masks (B,1,1,T), (1,1,1,T), a full mask with
 *    one row of only -inf, and a mask with a strided last dim, all broadcast-strided to x;
 *  - against the CPU kernel (the reference, checked against a float64 loop in
 *    test_softmax_masked.c) on the same inputs, to the tolerances of the other CUDA nn tests;
 *  - dp_softmax_masked on CUDA tensors (dispatch, broadcast view, autograd node) against the CPU,
 *    and its backward (softmax's) against the CPU's.
 * Exits 77 with a SKIP line when no CUDA device is usable. */
#include "dp_test.h"
#include "internal.h"
#include "cuda_nn_compare.h"

static const dp_dtype FLOATS[] = {DP_F32, DP_F64, DP_BF16, DP_F16};

enum { B = 3, H = 4, T = 45 };   /* T not a multiple of a warp; rows of 45 over 256 threads */
enum { PAD, SHARED, FULL, STRIDED, NKINDS };
static const char *KIND_NAMES[NKINDS] = {"(B,1,1,T)", "(1,1,1,T)", "(B,H,T,T)", "strided"};

/* A CPU mask: biases in [-1, 1) with -1e4 / -inf on padded keys (see test_softmax_masked.c).
 * STRIDED is (B,1,1,2T) here; the caller takes every other column. */
static dp_tensor *make_mask(int kind, dp_dtype dt, uint64_t seed) {
    int64_t shape[4] = {B, 1, 1, T};
    if (kind == SHARED) shape[0] = 1;
    if (kind == FULL) { shape[1] = H; shape[2] = T; }
    if (kind == STRIDED) shape[3] = 2 * T;
    int64_t n = dp_shape_numel(4, shape);
    double *v = malloc(sizeof(double) * (size_t)n);
    if (!v) return NULL;
    uint64_t s = seed * 31 + 7;
    for (int64_t i = 0; i < n; i++) v[i] = dp_test_uniform(&s);
    if (kind == FULL) {
        for (int64_t i = 0; i < n; i++) {
            if (i % 5 == 0) v[i] = -1e4;
            if (i % 7 == 3) v[i] = -INFINITY;
        }
        for (int64_t k = 0; k < T; k++) v[T + k] = -INFINITY;   /* row (0, 0, 1): NaN */
    } else {
        for (int64_t b = 0; b < shape[0]; b++)
            for (int64_t k = T - 1 - 3 * b; k < T; k++)
                v[b * shape[3] + k * (kind == STRIDED ? 2 : 1)] = b % 2 ? -INFINITY : -1e4;
    }
    dp_tensor *m = dp_tensor_from_f64(dt, 4, shape, v);
    free(v);
    CHECK(m != NULL, "mask: %s", dp_last_error());
    return m;
}

/* m (on its device) as the kernel sees it: every other column for STRIDED, broadcast to x. */
static dp_tensor *kernel_view(int kind, dp_tensor *m, const int64_t *xs) {
    dp_tensor *src = kind == STRIDED ? dp_slice(m, 3, 0, T, 2) : m;
    dp_tensor *v = src ? dp_broadcast_view(src, 4, xs) : NULL;
    CHECK(v != NULL, "mask view: %s", dp_last_error());
    if (src != m) dp_tensor_release(src);
    return v;
}

static void test_kernel(dp_dtype dt, int kind) {
    char what[96];
    int64_t xs[4] = {B, H, T, T};
    size_t bytes = (size_t)dp_shape_numel(4, xs) * (size_t)dp_dtype_size(dt);
    dp_tensor *x = rnd(dt, 4, xs, 5 + kind, 6.0), *m = make_mask(kind, dt, 9 + kind);
    dp_tensor *dx = x ? to_cuda(x) : NULL, *dm = m ? to_cuda(m) : NULL;
    dp_tensor *mv = m ? kernel_view(kind, m, xs) : NULL, *dmv = dm ? kernel_view(kind, dm, xs) : NULL;
    dp_tensor *y = dp_tensor_empty(dt, DP_CPU, 4, xs);
    dp_tensor *dy = dp_tensor_empty(dt, DP_CUDA, 4, xs), *dsum = dp_tensor_empty(dt, DP_CUDA, 4, xs);
    dp_tensor *dwant = dp_tensor_empty(dt, DP_CUDA, 4, xs);
    if (!x || !m || !dx || !dm || !mv || !dmv || !y || !dy || !dsum || !dwant) {
        CHECK(0, "setup %s %s: %s", dp_dtype_name(dt), KIND_NAMES[kind], dp_last_error());
        goto out;
    }
    snprintf(what, sizeof what, "softmax_masked %s mask %s", dp_dtype_name(dt), KIND_NAMES[kind]);
    CHECK_OK(dp_cpu_ops.softmax_masked(y, x, mv));
    CHECK_OK(cuda_ops->softmax_masked(dy, dx, dmv));
    compare(what, dy, y, tol_for(dt));
    /* The contract on the device itself: the fused kernel is binary add then softmax. */
    CHECK_OK(cuda_ops->binary(dsum, dx, dmv, DP_BIN_ADD));
    CHECK_OK(cuda_ops->softmax(dwant, dsum, 3, 0));
    dp_tensor *got = to_cpu(dy), *want = to_cpu(dwant);
    CHECK(got && want && memcmp(got->data, want->data, bytes) == 0,
          "%s: cuda fused differs from cuda binary add + softmax", what);
    dp_tensor_release(got);
    dp_tensor_release(want);
out:;
    dp_tensor *all[] = {x, m, dx, dm, mv, dmv, y, dy, dsum, dwant};
    for (int i = 0; i < 10; i++) dp_tensor_release(all[i]);
}

/* The public op on CUDA tensors: forward and x's gradient against the CPU. */
static void test_op(dp_dtype dt) {
    char what[96];
    int64_t xs[4] = {B, H, T, T};
    dp_tensor *x = rnd(dt, 4, xs, 41, 6.0), *m = make_mask(PAD, dt, 42), *gy = rnd(dt, 4, xs, 43, 1.0);
    dp_tensor *dx = x ? to_cuda(x) : NULL, *dm = m ? to_cuda(m) : NULL, *dgy = gy ? to_cuda(gy) : NULL;
    dp_tensor *y = NULL, *dy = NULL;
    if (!dx || !dm || !dgy) goto out;
    dp_tensor_set_requires_grad(x, 1);
    dp_tensor_set_requires_grad(dx, 1);
    y = dp_softmax_masked(x, m, -1);
    dy = dp_softmax_masked(dx, dm, -1);
    CHECK(y && dy && dy->device == DP_CUDA && !strcmp(dp_tensor_op_name(dy), "softmax_masked"),
          "dp_softmax_masked on cuda: %s", dp_last_error());
    if (!y || !dy) goto out;
    snprintf(what, sizeof what, "dp_softmax_masked %s", dp_dtype_name(dt));
    compare(what, dy, y, tol_for(dt));
    CHECK_OK(dp_backward(y, gy, 0));
    CHECK_OK(dp_backward(dy, dgy, 0));
    CHECK(x->grad && dx->grad, "no gradient: %s", dp_last_error());
    strncat(what, " grad", sizeof what - strlen(what) - 1);
    /* Each side's backward reads its own forward output: allow the forward's tolerance twice. */
    if (x->grad && dx->grad) compare(what, dx->grad, x->grad, 2 * tol_for(dt));
out:;
    dp_tensor *all[] = {x, m, gy, dx, dm, dgy, y, dy};
    for (int i = 0; i < 8; i++) dp_tensor_release(all[i]);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    for (int k = 0; k < 4; k++) {
        for (int kind = 0; kind < NKINDS; kind++) test_kernel(FLOATS[k], kind);
        test_op(FLOATS[k]);
    }
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_cuda_softmax_masked");
}
