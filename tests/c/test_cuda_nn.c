/* test_cuda_nn.c: the CUDA nn kernels (softmax, log-softmax and their backward, layer norm and
 * its backward, row gather and scatter-add, cross-entropy and its backward) against the CPU
 * kernels (the reference, themselves checked against float64 loops in test_nn_ops.c) on the same
 * inputs: odd sizes, softmax over a middle dim, large logits, NULL weight and bias, repeated
 * indices, ignored labels and a stride-0 upstream gradient, for f32, f64, bf16 and f16. Exits 0
 * with a SKIP line when no CUDA device is usable. */
#include "dp_test.h"
#include "internal.h"
#include "cuda_test.h"

static const dp_dtype FLOATS[] = {DP_F32, DP_F64, DP_BF16, DP_F16};

static void test_softmax(dp_dtype dt) {
    /* (6, 37) over its last dim, (3, 7, 5) over the middle one (inner 5); logits up to +-30. */
    int64_t shapes[2][3] = {{6, 37, 0}, {3, 7, 5}};
    int32_t ndims[2] = {2, 3}, dims[2] = {1, 1};
    for (int s = 0; s < 2; s++)
        for (int use_log = 0; use_log < 2; use_log++) {
            char what[96];
            dp_tensor *x = rnd(dt, ndims[s], shapes[s], 11 + s, 30.0);
            dp_tensor *gy = rnd(dt, ndims[s], shapes[s], 21 + s, 1.0);
            dp_tensor *y = dp_tensor_empty(dt, DP_CPU, ndims[s], shapes[s]);
            dp_tensor *gx = dp_tensor_empty(dt, DP_CPU, ndims[s], shapes[s]);
            dp_tensor *dx = to_cuda(x), *dgy = to_cuda(gy);
            dp_tensor *dy = dp_tensor_empty(dt, DP_CUDA, ndims[s], shapes[s]);
            dp_tensor *dgx = dp_tensor_empty(dt, DP_CUDA, ndims[s], shapes[s]);
            CHECK_OK(dp_cpu_ops.softmax(y, x, dims[s], use_log));
            CHECK_OK(cuda_ops->softmax(dy, dx, dims[s], use_log));
            snprintf(what, sizeof what, "%s %s shape %d", use_log ? "log_softmax" : "softmax",
                     dp_dtype_name(dt), s);
            compare(what, dy, y, tol_for(dt));
            /* Both backwards read the CPU's y, so only the backward is compared. */
            dp_tensor *dyc = to_cuda(y);
            CHECK_OK(dp_cpu_ops.softmax_backward(gx, gy, y, dims[s], use_log));
            CHECK_OK(cuda_ops->softmax_backward(dgx, dgy, dyc, dims[s], use_log));
            strncat(what, " backward", sizeof what - strlen(what) - 1);
            compare(what, dgx, gx, tol_for(dt));
            dp_tensor *all[] = {x, gy, y, gx, dx, dgy, dy, dgx, dyc};
            for (int i = 0; i < 9; i++) dp_tensor_release(all[i]);
        }
}

static void test_layer_norm(dp_dtype dt) {
    int64_t R = 9, D = 50, xs[2] = {R, D};
    dp_dtype st = dt == DP_F64 ? DP_F64 : DP_F32;
    for (int with_params = 0; with_params < 2; with_params++) {
        char what[96];
        dp_tensor *x = rnd(dt, 2, xs, 31, 3.0), *gy = rnd(dt, 2, xs, 32, 1.0);
        dp_tensor *w = with_params ? rnd(dt, 1, &D, 33, 2.0) : NULL;
        dp_tensor *b = with_params ? rnd(dt, 1, &D, 34, 1.0) : NULL;
        dp_tensor *y = dp_tensor_empty(dt, DP_CPU, 2, xs), *gx = dp_tensor_empty(dt, DP_CPU, 2, xs);
        dp_tensor *mean = dp_tensor_empty(st, DP_CPU, 1, &R), *rstd = dp_tensor_empty(st, DP_CPU, 1, &R);
        dp_tensor *gw = dp_tensor_empty(dt, DP_CPU, 1, &D), *gb = dp_tensor_empty(dt, DP_CPU, 1, &D);
        dp_tensor *dx = to_cuda(x), *dgy = to_cuda(gy), *dw = w ? to_cuda(w) : NULL, *db = b ? to_cuda(b) : NULL;
        dp_tensor *dy = dp_tensor_empty(dt, DP_CUDA, 2, xs), *dgx = dp_tensor_empty(dt, DP_CUDA, 2, xs);
        dp_tensor *dmean = dp_tensor_empty(st, DP_CUDA, 1, &R), *drstd = dp_tensor_empty(st, DP_CUDA, 1, &R);
        dp_tensor *dgw = dp_tensor_empty(dt, DP_CUDA, 1, &D), *dgb = dp_tensor_empty(dt, DP_CUDA, 1, &D);
        CHECK_OK(dp_cpu_ops.layer_norm(y, mean, rstd, x, w, b, 1e-5));
        CHECK_OK(cuda_ops->layer_norm(dy, dmean, drstd, dx, dw, db, 1e-5));
        snprintf(what, sizeof what, "layer_norm %s params %d", dp_dtype_name(dt), with_params);
        compare(what, dy, y, tol_for(dt));
        compare("layer_norm mean", dmean, mean, tol_for(st));
        compare("layer_norm rstd", drstd, rstd, tol_for(st));
        /* Backward from the CPU's saved statistics on both sides. */
        dp_tensor *cm = to_cuda(mean), *cr = to_cuda(rstd);
        CHECK_OK(dp_cpu_ops.layer_norm_backward(gx, gw, gb, gy, x, mean, rstd, w));
        CHECK_OK(cuda_ops->layer_norm_backward(dgx, with_params ? dgw : NULL, with_params ? dgb : NULL,
                                               dgy, dx, cm, cr, dw));
        strncat(what, " gx", sizeof what - strlen(what) - 1);
        /* gx subtracts means of size ~1 from values of size ~1: absolute error, scaled by rstd. */
        compare(what, dgx, gx, 4 * tol_for(dt));
        if (with_params) {
            /* Column sums of 9 rows: 9 roundings' worth for the 16-bit formats. */
            compare("layer_norm gweight", dgw, gw, 4 * tol_for(dt));
            compare("layer_norm gbias", dgb, gb, 4 * tol_for(dt));
        }
        dp_tensor *all[] = {x, gy, w, b, y, gx, mean, rstd, gw, gb, dx, dgy, dw, db, dy, dgx,
                            dmean, drstd, dgw, dgb, cm, cr};
        for (int i = 0; i < 22; i++) dp_tensor_release(all[i]);
    }
}

static void test_embedding(dp_dtype dt, dp_dtype it) {
    int64_t V = 10, D = 33, n = 25, ws[2] = {V, D}, os[2] = {n, D};
    /* Indices with repeats (i % 7 * 3 % V hits rows 0,3,6,9,2,5,8 several times each). */
    double iv[25];
    for (int i = 0; i < 25; i++) iv[i] = (double)((i % 7) * 3 % V);
    dp_tensor *idx = dp_tensor_from_f64(it, 1, &n, iv), *didx = to_cuda(idx);
    dp_tensor *w = rnd(dt, 2, ws, 41, 1.0), *src = rnd(dt, 2, os, 42, 1.0);
    dp_tensor *out = dp_tensor_empty(dt, DP_CPU, 2, os), *dout = dp_tensor_empty(dt, DP_CUDA, 2, os);
    dp_tensor *dw = to_cuda(w), *dsrc = to_cuda(src);
    char what[96];
    CHECK_OK(dp_cpu_ops.gather_rows(out, w, idx));
    CHECK_OK(cuda_ops->gather_rows(dout, dw, didx));
    snprintf(what, sizeof what, "gather_rows %s %s", dp_dtype_name(dt), dp_dtype_name(it));
    compare(what, dout, out, 0.0);   /* a copy: exact */
    /* dst starts as w (not zeros) so the additions round. */
    CHECK_OK(dp_cpu_ops.scatter_add_rows(w, idx, src));
    CHECK_OK(cuda_ops->scatter_add_rows(dw, didx, dsrc));
    snprintf(what, sizeof what, "scatter_add_rows %s %s", dp_dtype_name(dt), dp_dtype_name(it));
    /* f32/f64 add atomically in any order (4 rows at most meet in one element: a few ulps of the
     * partial sums); the 16-bit formats add in index order like the CPU: exact. */
    compare(what, dw, w, dt == DP_F32 ? 2e-6 : dt == DP_F64 ? 1e-14 : 0.0);
    dp_tensor *all[] = {idx, didx, w, src, out, dout, dw, dsrc};
    for (int i = 0; i < 8; i++) dp_tensor_release(all[i]);
}

/* gather_rows copies any dtype: i64 and u8 rows too. */
static void test_gather_ints(void) {
    int64_t V = 6, D = 5, n = 4, ws[2] = {V, D}, os[2] = {n, D};
    double iv[4] = {5, 0, 5, 2};
    dp_dtype dts[2] = {DP_I64, DP_U8};
    for (int k = 0; k < 2; k++) {
        double v[30];
        for (int i = 0; i < 30; i++) v[i] = (double)(i * 7 % 31);
        dp_tensor *w = dp_tensor_from_f64(dts[k], 2, ws, v), *idx = dp_tensor_from_f64(DP_I32, 1, &n, iv);
        dp_tensor *out = dp_tensor_empty(dts[k], DP_CPU, 2, os), *dout = dp_tensor_empty(dts[k], DP_CUDA, 2, os);
        dp_tensor *dw = to_cuda(w), *didx = to_cuda(idx);
        CHECK_OK(dp_cpu_ops.gather_rows(out, w, idx));
        CHECK_OK(cuda_ops->gather_rows(dout, dw, didx));
        compare(dts[k] == DP_I64 ? "gather_rows i64" : "gather_rows u8", dout, out, 0.0);
        dp_tensor *all[] = {w, idx, out, dout, dw, didx};
        for (int i = 0; i < 6; i++) dp_tensor_release(all[i]);
    }
}

static void test_cross_entropy(dp_dtype dt, dp_dtype it) {
    int64_t N = 9, C = 40, ls[2] = {N, C}, zero = 0, one = 1;
    const int64_t ignore = -100;
    double lv[9] = {0, 39, -100, 7, 7, 12, -100, 1, 38};
    dp_dtype st = dt == DP_F64 ? DP_F64 : DP_F32;
    dp_tensor *logits = rnd(dt, 2, ls, 51, 20.0), *labels = dp_tensor_from_f64(it, 1, &N, lv);
    dp_tensor *loss = dp_tensor_empty(st, DP_CPU, 1, &N), *lse = dp_tensor_empty(st, DP_CPU, 1, &N);
    dp_tensor *dlogits = to_cuda(logits), *dlabels = to_cuda(labels);
    dp_tensor *dloss = dp_tensor_empty(st, DP_CUDA, 1, &N), *dlse = dp_tensor_empty(st, DP_CUDA, 1, &N);
    char what[96];
    CHECK_OK(dp_cpu_ops.cross_entropy(loss, lse, logits, labels, ignore));
    CHECK_OK(cuda_ops->cross_entropy(dloss, dlse, dlogits, dlabels, ignore));
    snprintf(what, sizeof what, "cross_entropy %s %s", dp_dtype_name(dt), dp_dtype_name(it));
    compare(what, dloss, loss, tol_for(st));
    compare("cross_entropy lse", dlse, lse, tol_for(st));
    /* Backward with a per-row gloss, then with one scalar read through a stride-0 view. */
    dp_tensor *gloss = rnd(st, 1, &N, 52, 2.0), *dgloss = to_cuda(gloss), *clse = to_cuda(lse);
    dp_tensor *scalar = rnd(st, 1, &one, 53, 2.0), *dscalar = to_cuda(scalar);
    for (int k = 0; k < 2; k++) {
        dp_tensor *g = k ? dp_tensor_view_of(scalar, 1, &N, &zero, 0) : gloss;
        dp_tensor *dg = k ? dp_tensor_view_of(dscalar, 1, &N, &zero, 0) : dgloss;
        dp_tensor *gx = dp_tensor_empty(dt, DP_CPU, 2, ls), *dgx = dp_tensor_empty(dt, DP_CUDA, 2, ls);
        CHECK_OK(dp_cpu_ops.cross_entropy_backward(gx, g, logits, lse, labels, ignore));
        CHECK_OK(cuda_ops->cross_entropy_backward(dgx, dg, dlogits, clse, dlabels, ignore));
        snprintf(what, sizeof what, "cross_entropy_backward %s %s gloss %s", dp_dtype_name(dt),
                 dp_dtype_name(it), k ? "stride 0" : "per row");
        compare(what, dgx, gx, tol_for(dt));
        if (k) {
            dp_tensor_release(g);
            dp_tensor_release(dg);
        }
        dp_tensor_release(gx);
        dp_tensor_release(dgx);
    }
    dp_tensor *all[] = {logits, labels, loss, lse, dlogits, dlabels, dloss, dlse, gloss, dgloss,
                        clse, scalar, dscalar};
    for (int i = 0; i < 13; i++) dp_tensor_release(all[i]);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    for (int k = 0; k < 4; k++) {
        test_softmax(FLOATS[k]);
        test_layer_norm(FLOATS[k]);
        test_embedding(FLOATS[k], k % 2 ? DP_I64 : DP_I32);
        test_cross_entropy(FLOATS[k], k % 2 ? DP_I32 : DP_I64);
    }
    test_gather_ints();
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_cuda_nn");
}
