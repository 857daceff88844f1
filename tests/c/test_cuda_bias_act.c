/* test_cuda_bias_act.c: the CUDA bias_act kernel (kernels/cuda/bias_act.cu) and dp_linear_act on
 * CUDA tensors, against the CPU (itself checked against float64 loops in test_linear_act.c):
 *  - kernel, every float dtype, gelu / relu / tanh, with a stride-2 bias and without bias, on a
 *    tensor of 38400 elements (many blocks): pre byte for byte equal to the CPU's (one add, one
 *    rounding), y within a tolerance (CUDA's erff / tanhf differ from glibc by an ulp or two:
 *    f32 1e-5, f64 1e-12, f16 2e-3, bf16 1e-2, e4m3 2^-3, e5m2 2^-2, relative to 1 + |cpu|;
 *    relu byte for byte), and y byte for byte equal to CUDA's own unary(act, binary(add)), also
 *    when y or pre is written over x;
 *  - dp_linear_act forward and the gradients of x, w and bias of sum(y * r), f32 and bf16, with
 *    CUDA's GEMM against the CPU's (f32 1e-4, bf16 3e-2).
 * Without a CUDA device it prints SKIP and exits with DP_TEST_SKIP. */
#include "dp_test.h"
#include "internal.h"
#include "cuda_test.h"

static double tol_y(dp_dtype dt) {
    switch (dt) {
    case DP_FP8_E4M3: return 0.125;
    case DP_FP8_E5M2: return 0.25;
    default: return tol_for(dt);
    }
}

/* A fresh CUDA copy of CUDA tensor d (to be written over in place). */
static dp_tensor *dev_clone(const dp_tensor *d) {
    dp_tensor *h = to_cpu(d), *c = h ? to_cuda(h) : NULL;
    dp_tensor_release(h);
    return c;
}

static void test_kernel(dp_dtype dt, dp_unop act, int with_bias) {
    enum { R = 64, N = 600 };
    int64_t xs[2] = {R, N}, b2s[1] = {2 * N};
    char what[96];
    dp_tensor *x = rnd(dt, 2, xs, 61, 4.0), *b2 = rnd(dt, 1, b2s, 62, 1.0);
    dp_tensor *bias = with_bias ? dp_slice(b2, 0, 0, N, 2) : NULL;
    dp_tensor *y = dp_tensor_empty(dt, DP_CPU, 2, xs), *pre = dp_tensor_empty(dt, DP_CPU, 2, xs);
    CHECK_OK(dp_cpu_ops.bias_act(y, pre, x, bias, act));

    dp_tensor *dx = to_cuda(x), *db2 = to_cuda(b2);
    dp_tensor *dbias = with_bias ? dp_slice(db2, 0, 0, N, 2) : NULL;
    dp_tensor *dbb = with_bias ? dp_expand(dbias, 2, xs) : NULL;
    dp_tensor *dy = empty(dt, DP_CUDA, 2, xs), *dpre = empty(dt, DP_CUDA, 2, xs);
    CHECK_OK(cuda_ops->bias_act(dy, dpre, dx, dbias, act));
    snprintf(what, sizeof what, "bias_act %s act %d bias %d", dp_dtype_name(dt), (int)act, with_bias);
    compare(what, dpre, pre, 0.0);
    compare(what, dy, y, act == DP_UN_RELU ? 0.0 : tol_y(dt));

    /* CUDA's own composition: pre then act, two kernels. */
    dp_tensor *cpre = empty(dt, DP_CUDA, 2, xs), *cy = empty(dt, DP_CUDA, 2, xs);
    if (with_bias) CHECK_OK(cuda_ops->binary(cpre, dx, dbb, DP_BIN_ADD));
    else CHECK_OK(cuda_ops->copy(cpre, dx));
    CHECK_OK(cuda_ops->unary(cy, cpre, act, 0.0, 0.0));
    dp_tensor *want_y = to_cpu(cy), *want_pre = to_cpu(cpre);
    snprintf(what, sizeof what, "bias_act %s act %d bias %d vs cuda unary(binary)", dp_dtype_name(dt),
             (int)act, with_bias);
    compare(what, dy, want_y, 0.0);
    CHECK_OK(cuda_ops->bias_act(dy, NULL, dx, dbias, act));
    compare("without pre", dy, want_y, 0.0);
    dp_tensor *xi = dev_clone(dx);
    CHECK_OK(cuda_ops->bias_act(xi, NULL, xi, dbias, act));
    compare("y over x", xi, want_y, 0.0);
    dp_tensor_release(xi);
    xi = dev_clone(dx);
    CHECK_OK(cuda_ops->bias_act(dy, xi, xi, dbias, act));
    compare("pre over x: y", dy, want_y, 0.0);
    compare("pre over x: pre", xi, want_pre, 0.0);
    dp_tensor_release(xi);
    dp_tensor *all[] = {x, b2, bias, y, pre, dx, db2, dbias, dbb, dy, dpre, cpre, cy, want_y, want_pre};
    for (int i = 0; i < 15; i++) dp_tensor_release(all[i]);
}

/* sum(linear_act(x, w, b) * r) on one device; y and the three gradients stay on it. */
static void run_linear_act(dp_tensor **in, dp_tensor *r, int act, dp_tensor **y) {
    for (int i = 0; i < 3; i++) {
        dp_tensor_set_grad(in[i], NULL);
        CHECK_OK(dp_tensor_set_requires_grad(in[i], 1));
    }
    *y = dp_linear_act(in[0], in[1], in[2], act);
    dp_tensor *yr = *y ? dp_mul(*y, r) : NULL, *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
    CHECK(loss != NULL, "linear_act loss: %s", dp_last_error());
    if (loss) CHECK_OK(dp_backward(loss, NULL, 0));
    dp_tensor_release(yr);
    dp_tensor_release(loss);
}

static void test_linear_act(dp_dtype dt, int act) {
    int64_t xs[3] = {4, 7, 48}, ws[2] = {96, 48}, bs[1] = {96}, ys[3] = {4, 7, 96};
    double tol = dt == DP_F32 ? 1e-4 : 3e-2;
    char what[96];
    dp_tensor *h[3] = {rnd(dt, 3, xs, 71, 1.0), rnd(dt, 2, ws, 72, 0.3), rnd(dt, 1, bs, 73, 0.5)};
    dp_tensor *hr = rnd(dt, 3, ys, 74, 1.0);
    dp_tensor *d[3] = {to_cuda(h[0]), to_cuda(h[1]), to_cuda(h[2])}, *dr = to_cuda(hr);
    dp_tensor *hy = NULL, *dy = NULL;
    run_linear_act(h, hr, act, &hy);
    run_linear_act(d, dr, act, &dy);
    CHECK(hy && dy && dy->device == DP_CUDA, "linear_act on cuda: %s", dp_last_error());
    snprintf(what, sizeof what, "linear_act %s act %d", dp_dtype_name(dt), act);
    if (hy && dy) compare(what, dy, hy, tol);
    for (int i = 0; i < 3; i++) {
        snprintf(what, sizeof what, "linear_act %s act %d grad of input %d", dp_dtype_name(dt), act, i);
        CHECK(h[i]->grad && d[i]->grad, "%s missing", what);
        if (h[i]->grad && d[i]->grad) compare(what, d[i]->grad, h[i]->grad, tol);
    }
    for (int i = 0; i < 3; i++) {
        dp_tensor_release(h[i]);
        dp_tensor_release(d[i]);
    }
    dp_tensor *all[] = {hr, dr, hy, dy};
    for (int i = 0; i < 4; i++) dp_tensor_release(all[i]);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    const dp_dtype all[6] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
    const dp_unop acts[3] = {DP_UN_GELU, DP_UN_RELU, DP_UN_TANH};
    for (int k = 0; k < 6; k++)
        for (int a = 0; a < 3; a++)
            for (int bias = 0; bias < 2; bias++) test_kernel(all[k], acts[a], bias);
    const dp_dtype lin[2] = {DP_F32, DP_BF16};
    for (int k = 0; k < 2; k++)
        for (int act = DP_ACT_NONE; act <= DP_ACT_TANH; act++) test_linear_act(lin[k], act);
    CHECK_OK(dp_device_sync(DP_CUDA));
    return dp_test_finish("test_cuda_bias_act");
}
