/* test_linear_act.c: dp_linear_act and the CPU bias_act kernel.
 *  - forward against a float64 loop written here (x w^T + b, then erf-GELU / relu / tanh) for
 *    f32, f64 and bf16, with and without bias, with and without a recorded node;
 *  - the kernel's contract: y == unary(act, binary(add, x, bias)) and pre == binary(add, x, bias)
 *    (byte for byte, NaN for NaN) for every float dtype, strided bias, y or pre written over x,
 *    on a tensor large enough to be split between threads;
 *  - f64 gradients of x, w and bias against central finite differences, and equal (1e-12) to
 *    those of dp_linear followed by dp_gelu / dp_relu / dp_tanh;
 *  - under an active DP engine: per-example norms and gradients of w and bias equal to each
 *    example run alone through plain autograd;
 *  - argument errors naming dp_linear_act, the argument and what was expected. */
#include "dp_test.h"
#include "internal.h"

static const int ACTS[4] = {DP_ACT_NONE, DP_ACT_GELU, DP_ACT_RELU, DP_ACT_TANH};

static double act_ref(int act, double v) {
    switch (act) {
    case DP_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case DP_ACT_RELU: return v > 0 ? v : 0.0;
    case DP_ACT_TANH: return tanh(v);
    default: return v;
    }
}

static dp_tensor *unfused(int act, dp_tensor *pre) {
    switch (act) {
    case DP_ACT_GELU: return dp_gelu(pre);
    case DP_ACT_RELU: return dp_relu(pre);
    case DP_ACT_TANH: return dp_tanh(pre);
    default: dp_tensor_retain(pre); return pre;
    }
}

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    CHECK(v && !dp_tensor_to_f64(t, v), "values of %s: %s", dp_tensor_desc(t), dp_last_error());
    return v;
}

/* ---------------------------------------------------------------- forward vs float64 */

static void test_forward(dp_dtype dt, int act, int with_bias, int record, double tol) {
    enum { R = 12, IN = 5, OUT = 6 };
    int64_t xs[3] = {3, 4, IN}, ws[2] = {OUT, IN}, bs[1] = {OUT};
    dp_tensor *x = dp_test_random(dt, 3, xs, 11), *w = dp_test_random(dt, 2, ws, 12);
    dp_tensor *b = with_bias ? dp_test_random(dt, 1, bs, 13) : NULL;
    CHECK_PTR(x);
    if (record) dp_tensor_set_requires_grad(w, 1);
    dp_tensor *y = dp_linear_act(x, w, b, act);
    CHECK(y && y->dtype == dt && y->ndim == 3 && y->shape[0] == 3 && y->shape[1] == 4 &&
          y->shape[2] == OUT, "%s: %s", y ? dp_tensor_desc(y) : "NULL", dp_last_error());
    CHECK(!y || !strcmp(dp_tensor_op_name(y), !record ? "" : act ? "linear_act" : "linear"),
          "node %s", y ? dp_tensor_op_name(y) : "");
    if (y) {
        double *xv = values(x), *wv = values(w), *bv = b ? values(b) : NULL, *yv = values(y);
        int bad = 0;
        for (int r = 0; r < R; r++)
            for (int o = 0; o < OUT; o++) {
                double s = bv ? bv[o] : 0;
                for (int k = 0; k < IN; k++) s += xv[r * IN + k] * wv[o * IN + k];
                double want = act_ref(act, s), got = yv[r * OUT + o];
                if (!(fabs(got - want) <= tol * (1 + fabs(want))) && bad++ < 3)
                    fprintf(stderr, "  %s act %d bias %d: y[%d,%d] = %.9g, want %.9g\n",
                            dp_dtype_name(dt), act, with_bias, r, o, got, want);
            }
        CHECK(bad == 0, "%s act %d bias %d record %d: %d of %d off", dp_dtype_name(dt), act,
              with_bias, record, bad, R * OUT);
        free(xv), free(wv), free(bv), free(yv);
    }
    dp_tensor_release(y);
    dp_tensor_release(x);
    dp_tensor_release(w);
    dp_tensor_release(b);
}

/* ---------------------------------------------------------------- the kernel's contract */

static dp_tensor *clone_raw(const dp_tensor *t) {
    dp_tensor *c = dp_tensor_empty(t->dtype, DP_CPU, t->ndim, t->shape);
    CHECK_PTR(c);
    if (c) memcpy(c->data, t->data, (size_t)dp_tensor_numel(t) * dp_dtype_size(t->dtype));
    return c;
}

/* Same bytes element by element, or both NaN. */
static void same_bits(const char *what, const dp_tensor *got, const dp_tensor *want, dp_dtype dt, int act) {
    int64_t n = dp_tensor_numel(want), bad = -1;
    size_t es = dp_dtype_size(dt);
    for (int64_t i = 0; i < n && bad < 0; i++) {
        double g = dp_load_f64(got->data, dt, i), w = dp_load_f64(want->data, dt, i);
        if (memcmp((char *)got->data + i * es, (char *)want->data + i * es, es) && !(isnan(g) && isnan(w)))
            bad = i;
    }
    CHECK(bad < 0, "%s %s act %d: element %lld is %.9g, composed %.9g", what, dp_dtype_name(dt), act,
          (long long)bad, bad < 0 ? 0 : dp_load_f64(got->data, dt, bad),
          bad < 0 ? 0 : dp_load_f64(want->data, dt, bad));
}

static void test_kernel_contract(dp_dtype dt, dp_unop act, int with_bias) {
    enum { R = 64, N = 600 };   /* 38400 elements: above the one-thread limit */
    const dp_ops *ops = dp_ops_for(DP_CPU);
    int64_t xs[2] = {R, N}, b2s[1] = {2 * N};
    dp_tensor *x = dp_test_random(DP_F64, 2, xs, 21), *b2 = dp_test_random(DP_F64, 1, b2s, 22);
    double *xv = values(x);
    /* Spread over [-4, 4), with infinities, NaN and signed zeros among them. */
    for (int64_t i = 0; i < R * N; i++) xv[i] *= 4;
    xv[3] = INFINITY, xv[4] = -INFINITY, xv[5] = NAN, xv[6] = -0.0, xv[N + 7] = 0.0;
    dp_tensor_release(x);
    x = dp_tensor_from_f64(dt, 2, xs, xv);
    free(xv);
    dp_tensor *bw = dp_cast(b2, dt);
    /* bias: every other element of a longer vector (stride 2). */
    dp_tensor *bias = with_bias ? dp_slice(bw, 0, 0, N, 2) : NULL;
    dp_tensor *bb = with_bias ? dp_expand(bias, 2, xs) : NULL;
    dp_tensor *pre_ref = dp_tensor_empty(dt, DP_CPU, 2, xs), *y_ref = dp_tensor_empty(dt, DP_CPU, 2, xs);
    CHECK(x && bw && pre_ref && y_ref && (!with_bias || (bias && bb)), "setup: %s", dp_last_error());
    if (with_bias) CHECK_OK(ops->binary(pre_ref, x, bb, DP_BIN_ADD));
    else CHECK_OK(ops->copy(pre_ref, x));
    CHECK_OK(ops->unary(y_ref, pre_ref, act, 0.0, 0.0));

    dp_tensor *y = dp_tensor_empty(dt, DP_CPU, 2, xs), *pre = dp_tensor_empty(dt, DP_CPU, 2, xs);
    CHECK_OK(ops->bias_act(y, pre, x, bias, act));
    same_bits("y", y, y_ref, dt, act);
    same_bits("pre", pre, pre_ref, dt, act);
    CHECK_OK(ops->bias_act(y, NULL, x, bias, act));
    same_bits("y without pre", y, y_ref, dt, act);
    /* In place: y over x, then pre over x. */
    dp_tensor *xi = clone_raw(x);
    CHECK_OK(ops->bias_act(xi, NULL, xi, bias, act));
    same_bits("y over x", xi, y_ref, dt, act);
    dp_tensor_release(xi);
    xi = clone_raw(x);
    CHECK_OK(ops->bias_act(y, xi, xi, bias, act));
    same_bits("pre over x: y", y, y_ref, dt, act);
    same_bits("pre over x: pre", xi, pre_ref, dt, act);
    dp_tensor_release(xi);
    dp_tensor *t[8] = {x, b2, bw, bias, bb, pre_ref, y_ref, y};
    for (int i = 0; i < 8; i++) dp_tensor_release(t[i]);
    dp_tensor_release(pre);
}

/* ---------------------------------------------------------------- gradients (f64) */

typedef struct { int act; } fn_ctx;

static dp_tensor *linear_act_fn(dp_tensor **in, void *ctx) {
    return dp_linear_act(in[0], in[1], in[2], ((fn_ctx *)ctx)->act);
}

static void test_gradcheck(int act, int with_bias) {
    int64_t xs[3] = {2, 3, 4}, ws[2] = {5, 4}, bs[1] = {5};
    dp_tensor *in[3] = {dp_test_random(DP_F64, 3, xs, 31), dp_test_random(DP_F64, 2, ws, 32),
                        with_bias ? dp_test_random(DP_F64, 1, bs, 33) : NULL};
    for (int i = 0; i < 3; i++)
        if (in[i]) dp_tensor_set_requires_grad(in[i], 1);
    fn_ctx c = {act};
    char name[64];
    snprintf(name, sizeof name, "linear_act act %d bias %d", act, with_bias);
    dp_test_gradcheck(name, linear_act_fn, &c, with_bias ? 3 : 2, in, 1e-6, 1e-6);
    for (int i = 0; i < 3; i++) dp_tensor_release(in[i]);
}

/* sum(f(x, w, b) * r) backward; the three gradients into g[3] (new arrays). */
static void grads_of(int act, int fused, dp_tensor **in, dp_tensor *r, double **g, double **yv) {
    for (int i = 0; i < 3; i++) dp_tensor_set_grad(in[i], NULL);
    dp_tensor *lin = fused ? NULL : dp_linear(in[0], in[1], in[2]);
    dp_tensor *y = fused ? dp_linear_act(in[0], in[1], in[2], act) : unfused(act, lin);
    dp_tensor *yr = y ? dp_mul(y, r) : NULL, *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
    CHECK(loss != NULL, "loss: %s", dp_last_error());
    if (loss) CHECK_OK(dp_backward(loss, NULL, 0));
    *yv = y ? values(y) : NULL;
    for (int i = 0; i < 3; i++) g[i] = in[i]->grad ? values(in[i]->grad) : NULL;
    dp_tensor *t[4] = {lin, y, yr, loss};
    for (int i = 0; i < 4; i++) dp_tensor_release(t[i]);
}

static void test_matches_unfused(int act) {
    int64_t xs[3] = {3, 4, 5}, ws[2] = {6, 5}, bs[1] = {6}, ys[3] = {3, 4, 6};
    dp_tensor *in[3] = {dp_test_random(DP_F64, 3, xs, 41), dp_test_random(DP_F64, 2, ws, 42),
                        dp_test_random(DP_F64, 1, bs, 43)};
    dp_tensor *r = dp_test_random(DP_F64, 3, ys, 44);
    for (int i = 0; i < 3; i++) dp_tensor_set_requires_grad(in[i], 1);
    double *ga[3], *gb[3], *ya, *yb;
    grads_of(act, 1, in, r, ga, &ya);
    grads_of(act, 0, in, r, gb, &yb);
    const int64_t n[3] = {60, 30, 6};
    for (int i = 0; i < 3; i++) {
        CHECK(ga[i] && gb[i], "act %d: gradient %d missing", act, i);
        int bad = 0;
        for (int64_t k = 0; ga[i] && gb[i] && k < n[i]; k++)
            bad += !(fabs(ga[i][k] - gb[i][k]) <= 1e-12 * (1 + fabs(gb[i][k])));
        CHECK(bad == 0, "act %d: gradient of input %d differs from the unfused ops in %d places", act, i, bad);
        free(ga[i]), free(gb[i]);
    }
    int bad = 0;
    for (int k = 0; ya && yb && k < 72; k++) bad += !(fabs(ya[k] - yb[k]) <= 1e-12 * (1 + fabs(yb[k])));
    CHECK(ya && yb && bad == 0, "act %d: forward differs from the unfused ops in %d places", act, bad);
    free(ya), free(yb);
    for (int i = 0; i < 3; i++) dp_tensor_release(in[i]);
    dp_tensor_release(r);
}

/* ---------------------------------------------------------------- under the DP engine */

enum { EB = 4, ET = 3, EIN = 5, EOUT = 6 };

/* sum over examples [i0, i0 + n) of sum(linear_act(x_i, w, b) * r_i). */
static dp_tensor *engine_loss(int act, dp_tensor *x, dp_tensor *w, dp_tensor *b, dp_tensor *r,
                              int64_t i0, int64_t n) {
    dp_tensor *xi = dp_narrow(x, 0, i0, n), *ri = dp_narrow(r, 0, i0, n);
    dp_tensor *y = xi ? dp_linear_act(xi, w, b, act) : NULL;
    dp_tensor *yr = y && ri ? dp_mul(y, ri) : NULL, *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
    CHECK(loss != NULL, "engine loss: %s", dp_last_error());
    dp_tensor *t[4] = {xi, ri, y, yr};
    for (int i = 0; i < 4; i++) dp_tensor_release(t[i]);
    return loss;
}

static double sqnorm(const double *v, int64_t n) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += v[j] * v[j];
    return s;
}

static void test_engine(int act) {
    int64_t xs[3] = {EB, ET, EIN}, ws[2] = {EOUT, EIN}, bs[1] = {EOUT}, ys[3] = {EB, ET, EOUT};
    dp_tensor *x = dp_test_random(DP_F64, 3, xs, 51), *w = dp_test_random(DP_F64, 2, ws, 52);
    dp_tensor *b = dp_test_random(DP_F64, 1, bs, 53), *r = dp_test_random(DP_F64, 3, ys, 54);
    dp_tensor *p[2] = {w, b};
    const int64_t np[2] = {EOUT * EIN, EOUT};
    double ref[EB][2][EOUT * EIN];
    for (int k = 0; k < 2; k++) {
        dp_tensor_set_requires_grad(p[k], 1);
        p[k]->is_param = 1;
    }
    /* Brute force: each example alone, plain autograd. */
    for (int64_t i = 0; i < EB; i++) {
        dp_tensor *loss = engine_loss(act, x, w, b, r, i, 1);
        if (loss) CHECK_OK(dp_backward(loss, NULL, 0));
        dp_tensor_release(loss);
        for (int k = 0; k < 2; k++) {
            CHECK(p[k]->grad != NULL, "brute force grad %d", k);
            if (p[k]->grad) dp_tensor_to_f64(p[k]->grad, ref[i][k]);
            dp_tensor_set_grad(p[k], NULL);
        }
    }
    dp_psg *psg = dp_psg_new();
    CHECK_PTR(psg);
    CHECK(dp_psg_add_param(psg, w, "w", 0) == 0 && dp_psg_add_param(psg, b, "b", 0) == 1, "%s",
          dp_last_error());
    CHECK_OK(dp_psg_begin(psg, EB));
    CHECK_OK(dp_psg_activate(psg));
    dp_tensor *loss = engine_loss(act, x, w, b, r, 0, EB);
    if (loss) CHECK_OK(dp_backward(loss, NULL, 0));
    dp_tensor_release(loss);
    CHECK_OK(dp_psg_activate(NULL));
    CHECK(w->grad == NULL && b->grad == NULL, "the engine's parameters got a .grad");
    CHECK_OK(dp_psg_compute_norms(psg));
    const int kinds[2] = {DP_PSG_LINEAR_WEIGHT, DP_PSG_LINEAR_BIAS};
    for (int k = 0; k < 2; k++) {
        dp_psg_param_info info;
        CHECK_OK(dp_psg_describe(psg, k, &info));
        CHECK(info.taps == 1 && info.kind == kinds[k], "act %d param %d: taps %d kind %d", act, k,
              info.taps, info.kind);
        double got[EB];
        CHECK_OK(dp_psg_sample_norms(psg, k, 0, got));
        for (int i = 0; i < EB; i++) {
            double want = sqnorm(ref[i][k], np[k]);
            CHECK(fabs(got[i] * got[i] - want) <= 1e-10 * want, "act %d param %d example %d: %.17g vs %.17g",
                  act, k, i, got[i] * got[i], want);
            dp_tensor *g = dp_psg_sample_grad(psg, k, i);
            CHECK_PTR(g);
            double *gv = g ? values(g) : NULL;
            int bad = 0;
            for (int64_t j = 0; gv && j < np[k]; j++)
                bad += !(fabs(gv[j] - ref[i][k][j]) <= 1e-10 * (1 + fabs(ref[i][k][j])));
            CHECK(gv && bad == 0, "act %d param %d example %d: per-sample gradient off in %d places",
                  act, k, i, bad);
            free(gv);
            dp_tensor_release(g);
        }
    }
    dp_psg_free(psg);
    dp_tensor *t[4] = {x, w, b, r};
    for (int i = 0; i < 4; i++) dp_tensor_release(t[i]);
}

/* ---------------------------------------------------------------- argument errors */

static void expect_error(dp_tensor *got, const char *part1, const char *part2) {
    const char *msg = dp_last_error();
    CHECK(got == NULL && strstr(msg, "dp_linear_act") && strstr(msg, part1) && strstr(msg, part2),
          "expected an error with \"%s\" and \"%s\", got %s", part1, part2, got ? "a tensor" : msg);
    dp_tensor_release(got);
}

static void test_errors(void) {
    int64_t xs[2] = {3, 4}, ws[2] = {5, 4}, bs[1] = {5}, bad_b[1] = {4}, bad_w[2] = {5, 3};
    dp_tensor *x = dp_test_random(DP_F32, 2, xs, 1), *w = dp_test_random(DP_F32, 2, ws, 2);
    dp_tensor *b = dp_test_random(DP_F32, 1, bs, 3), *b4 = dp_test_random(DP_F32, 1, bad_b, 4);
    dp_tensor *w3 = dp_test_random(DP_F32, 2, bad_w, 5), *w64 = dp_test_random(DP_F64, 2, ws, 6);
    dp_tensor *xi = dp_tensor_zeros(DP_I32, DP_CPU, 2, xs);
    expect_error(dp_linear_act(x, w, b, 7), "act must be", "got 7");
    expect_error(dp_linear_act(NULL, w, b, DP_ACT_GELU), "x is NULL", "");
    expect_error(dp_linear_act(x, NULL, b, DP_ACT_GELU), "w is NULL", "");
    expect_error(dp_linear_act(x, w3, b, DP_ACT_GELU), "expected input width 3", "got 4");
    expect_error(dp_linear_act(x, w, b4, DP_ACT_RELU), "bias must be (5)", "got [4]");
    expect_error(dp_linear_act(x, w64, NULL, DP_ACT_TANH), "dtypes differ", "w is");
    expect_error(dp_linear_act(xi, xi, NULL, DP_ACT_TANH), "float", "");
    dp_tensor *t[7] = {x, w, b, b4, w3, w64, xi};
    for (int i = 0; i < 7; i++) dp_tensor_release(t[i]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    const dp_dtype fwd[3] = {DP_F32, DP_F64, DP_BF16};
    /* f32 and f64: rounding only; bf16: four roundings (GEMM, add, act, inputs are exact). */
    const double tol[3] = {2e-6, 1e-13, 2e-2};
    for (int d = 0; d < 3; d++)
        for (int a = 0; a < 4; a++)
            for (int bias = 0; bias < 2; bias++)
                for (int record = 0; record < 2; record++) test_forward(fwd[d], ACTS[a], bias, record, tol[d]);
    const dp_dtype all[6] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
    const dp_unop uops[3] = {DP_UN_GELU, DP_UN_RELU, DP_UN_TANH};
    for (int d = 0; d < 6; d++)
        for (int a = 0; a < 3; a++)
            for (int bias = 0; bias < 2; bias++) test_kernel_contract(all[d], uops[a], bias);
    for (int a = 0; a < 4; a++) {
        test_gradcheck(ACTS[a], 1);
        test_matches_unfused(ACTS[a]);
    }
    test_gradcheck(DP_ACT_GELU, 0);
    test_gradcheck(DP_ACT_TANH, 0);
    for (int a = 0; a < 4; a++) test_engine(ACTS[a]);
    test_errors();
    CHECK(dp_live_tensors() == live, "no tensor headers leak (%lld live, %lld before)",
          (long long)dp_live_tensors(), (long long)live);
    return dp_test_finish("test_linear_act");
}
