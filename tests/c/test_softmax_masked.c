/* test_softmax_masked.c: dp_softmax_masked and the CPU softmax_masked kernel.
 *  - the contract: the result equals dp_softmax(dp_add(x, mask), -1) byte for byte (NaN for NaN)
 *    for f32, f64, bf16, f16 and fp8 e4m3, with masks (B,1,1,T), (1,1,1,T), (T), a full
 *    (B,H,T,T) mask, a mask with a strided last dim, a transposed x, and a tensor large enough
 *    to be split between threads; masks hold random biases, -1e4 and -inf (some rows partly
 *    masked, one row entirely -inf);
 *  - forward against a float64 loop written here: x + mask rounded as the contract says (to f32,
 *    then to the dtype with tests/c/fp_ref.h's encoder), softmax in long double, one rounding of
 *    the output allowed;
 *  - f64 gradient of x against central finite differences, and equal (1e-12) to the gradient
 *    through dp_add + dp_softmax; the node is "softmax_masked" and only x gets a gradient;
 *  - argument errors naming softmax_masked, the argument and what was expected. */
#include "dp_test.h"
#include "fp_ref.h"
#include "internal.h"

enum { B = 2, H = 3, T = 7 };

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    CHECK(v && !dp_tensor_to_f64(t, v), "values of %s: %s", dp_tensor_desc(t), dp_last_error());
    return v;
}

/* Mask kinds: the padding mask BERT builds, one bias row for all, a 1-D row, a full mask, and
 * the padding mask seen through a step-2 slice (last-dim stride 2). */
enum { PAD, SHARED, ROW, FULL, STRIDED, NKINDS };
static const char *KIND_NAMES[NKINDS] = {"(B,1,1,T)", "(1,1,1,T)", "(T)", "(B,H,T,T)", "strided"};

/* A mask of kind for x (b, h, t, t) in dt: random biases in [-1, 1), with -1e4 and -inf where
 * keys are masked (batch b pads its last b + 1 keys, with -1e4 for even b and -inf for odd b). */
static dp_tensor *make_mask(int kind, dp_dtype dt, int64_t b, int64_t h, int64_t t, uint64_t seed) {
    int64_t shape[4] = {b, 1, 1, t}, n;
    int32_t ndim = 4;
    if (kind == SHARED) shape[0] = 1;
    if (kind == ROW) { ndim = 1; shape[0] = t; }
    if (kind == FULL) { shape[1] = h; shape[2] = t; }
    if (kind == STRIDED) shape[3] = 2 * t;
    n = dp_shape_numel(ndim, shape);
    double *v = malloc(sizeof(double) * (size_t)n);
    uint64_t s = seed * 977 + 5;
    for (int64_t i = 0; i < n; i++) v[i] = dp_test_uniform(&s);
    if (kind == PAD || kind == STRIDED) {
        int64_t step = kind == STRIDED ? 2 : 1;
        for (int64_t bb = 0; bb < b; bb++)
            for (int64_t k = t - 1 - (bb % (t - 1)); k < t; k++)
                v[bb * shape[3] + k * step] = bb % 2 ? -INFINITY : -1e4;
    } else if (kind == SHARED || kind == ROW) {
        v[0] = -1e4;
        v[t - 1] = -INFINITY;
    } else {
        for (int64_t i = 0; i < n; i++) {
            if (i % 5 == 0) v[i] = -1e4;
            if (i % 7 == 3) v[i] = -INFINITY;
        }
        for (int64_t k = 0; k < t; k++) v[t + k] = -INFINITY;   /* row (0, 0, 1): all masked */
    }
    dp_tensor *m = dp_tensor_from_f64(dt, ndim, shape, v);
    free(v);
    CHECK_PTR(m);
    if (m && kind == STRIDED) {
        dp_tensor *view = dp_slice(m, 3, 0, t, 2);
        dp_tensor_release(m);
        m = view;
        CHECK(m && m->stride[3] == 2, "strided mask: %s", m ? dp_tensor_desc(m) : dp_last_error());
    }
    return m;
}

/* ---------------------------------------------------------------- the contract, byte for byte */

static void check_bitwise(dp_tensor *x, dp_tensor *mask, const char *what) {
    dp_tensor *y = dp_softmax_masked(x, mask, -1);
    dp_tensor *sum = dp_add(x, mask);
    dp_tensor *want = sum ? dp_softmax(sum, -1) : NULL;
    CHECK(y && want, "%s: %s", what, dp_last_error());
    if (y && want) {
        int same_shape = y->ndim == x->ndim && y->dtype == x->dtype && dp_tensor_is_contiguous(y);
        for (int d = 0; same_shape && d < x->ndim; d++) same_shape = y->shape[d] == x->shape[d];
        CHECK(same_shape, "%s: result %s for x %s", what, dp_tensor_desc(y), dp_tensor_desc(x));
        size_t bytes = (size_t)dp_tensor_numel(x) * (size_t)dp_dtype_size(x->dtype);
        CHECK(same_shape && memcmp(y->data, want->data, bytes) == 0,
              "%s: differs from softmax(add(x, mask))", what);
    }
    dp_tensor_release(y);
    dp_tensor_release(want);
    dp_tensor_release(sum);
}

static void test_bitwise(dp_dtype dt) {
    char what[128];
    int64_t xs[4] = {B, H, T, T};
    dp_tensor *x = dp_test_random(dt, 4, xs, 3 + dt);
    /* Scores of a few units, as attention produces. */
    dp_tensor *x3 = x ? dp_affine(x, 3.0, 0.25) : NULL;
    dp_tensor *xt = x3 ? dp_transpose(x3, 2, 3) : NULL;
    CHECK(x3 && xt && !dp_tensor_is_contiguous(xt), "inputs: %s", dp_last_error());
    for (int kind = 0; kind < NKINDS && xt; kind++) {
        dp_tensor *m = make_mask(kind, dt, B, H, T, 40 + kind);
        snprintf(what, sizeof what, "bitwise %s mask %s", dp_dtype_name(dt), KIND_NAMES[kind]);
        if (m) check_bitwise(x3, m, what);
        strncat(what, " transposed x", sizeof what - strlen(what) - 1);
        if (m) check_bitwise(xt, m, what);
        dp_tensor_release(m);
    }
    /* 4 * 4 * 48 * 48 elements: more than one thread's share, so the OpenMP path runs. */
    int64_t big[4] = {4, 4, 48, 48};
    dp_tensor *xb = dp_test_random(dt, 4, big, 9), *mb = make_mask(PAD, dt, 4, 4, 48, 10);
    dp_tensor *xb3 = xb ? dp_affine(xb, 4.0, 0.0) : NULL;
    snprintf(what, sizeof what, "bitwise %s (4,4,48,48) threaded", dp_dtype_name(dt));
    if (xb3 && mb) check_bitwise(xb3, mb, what);
    dp_tensor *all[] = {x, x3, xt, xb, mb, xb3};
    for (int i = 0; i < 6; i++) dp_tensor_release(all[i]);
}

/* ---------------------------------------------------------------- forward against float64 */

/* The sum as the contract rounds it: f64 exact-then-rounded in double, every other dtype added
 * in f32 (a double sum rounded once to f32 is the f32 sum) and then rounded to the dtype. */
static double rounded_sum(dp_dtype dt, double a, double b) {
    if (dt == DP_F64) return a + b;
    double f = (double)(float)(a + b);
    return dt == DP_F32 ? f : fp_round(fp_format_of(dt), f);
}

static void test_forward(dp_dtype dt, int kind, double tol) {
    int64_t xs[4] = {B, H, T, T};
    dp_tensor *x0 = dp_test_random(dt, 4, xs, 70 + kind);
    dp_tensor *x = x0 ? dp_affine(x0, 3.0, 0.0) : NULL;
    dp_tensor *m = make_mask(kind, dt, B, H, T, 80 + kind);
    /* The mask broadcast to x's shape, to read it with x's flat index. */
    dp_tensor *mexp = m ? dp_expand(m, 4, xs) : NULL;
    dp_tensor *y = x && m ? dp_softmax_masked(x, m, 3) : NULL;
    CHECK(y && mexp, "forward %s %s: %s", dp_dtype_name(dt), KIND_NAMES[kind], dp_last_error());
    if (y && mexp) {
        double *xv = values(x), *mv = values(mexp), *yv = values(y);
        int bad = 0;
        for (int64_t r = 0; r < B * H * T; r++) {
            long double s[T], mx = -INFINITY, tot = 0;
            for (int k = 0; k < T; k++) {
                s[k] = rounded_sum(dt, xv[r * T + k], mv[r * T + k]);
                if (s[k] > mx) mx = s[k];
            }
            for (int k = 0; k < T; k++) tot += expl(s[k] - mx);
            for (int k = 0; k < T; k++) {
                double want = isinf(mx) ? NAN : (double)(expl(s[k] - mx) / tot), got = yv[r * T + k];
                int ok = isnan(want) ? isnan(got) : fabs(got - want) <= tol * (1 + fabs(want));
                if (!ok && bad++ < 3)
                    fprintf(stderr, "forward %s %s: row %lld col %d: %.10g, reference %.10g\n",
                            dp_dtype_name(dt), KIND_NAMES[kind], (long long)r, k, got, want);
            }
        }
        CHECK(bad == 0, "forward %s mask %s: %d elements off (tol %g)", dp_dtype_name(dt),
              KIND_NAMES[kind], bad, tol);
        free(xv);
        free(mv);
        free(yv);
    }
    dp_tensor *all[] = {x0, x, m, mexp, y};
    for (int i = 0; i < 5; i++) dp_tensor_release(all[i]);
}

/* ---------------------------------------------------------------- gradients (f64) */

static dp_tensor *masked_fn(dp_tensor **in, void *ctx) {
    return dp_softmax_masked(in[0], (dp_tensor *)ctx, -1);
}

/* The loss sum(softmax * r) through f: returns x's gradient (new reference) or NULL. */
static dp_tensor *grad_of(dp_tensor *x, dp_tensor *mask, dp_tensor *r, int fused) {
    dp_tensor_set_grad(x, NULL);
    dp_tensor *sum = fused ? NULL : dp_add(x, mask);
    dp_tensor *y = fused ? dp_softmax_masked(x, mask, -1) : sum ? dp_softmax(sum, -1) : NULL;
    CHECK(!fused || !y || !strcmp(dp_tensor_op_name(y), "softmax_masked"), "node is %s",
          y ? dp_tensor_op_name(y) : "");
    dp_tensor *yr = y ? dp_mul(y, r) : NULL;
    dp_tensor *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
    int rc = loss ? dp_backward(loss, NULL, 0) : -1;
    CHECK(rc == 0 && x->grad, "grad (fused %d): %s", fused, dp_last_error());
    dp_tensor *g = rc == 0 ? x->grad : NULL;
    if (g) dp_tensor_retain(g);
    dp_tensor *all[] = {sum, y, yr, loss};
    for (int i = 0; i < 4; i++) dp_tensor_release(all[i]);
    return g;
}

static void test_grad(int kind) {
    int64_t xs[4] = {B, H, 5, 5};
    dp_tensor *x = dp_test_random(DP_F64, 4, xs, 90 + kind);
    dp_tensor *m = make_mask(kind, DP_F64, B, H, 5, 91 + kind);
    if (kind == FULL && m) {   /* no row of only -inf here: its NaN has no derivative to check */
        int64_t idx[4] = {0, 0, 1, 2};
        CHECK_OK(dp_tensor_set(m, idx, 0.5));
    }
    CHECK(x && m, "grad inputs: %s", dp_last_error());
    if (!x || !m) goto out;
    dp_tensor_set_requires_grad(x, 1);
    char name[64];
    snprintf(name, sizeof name, "softmax_masked grad %s", KIND_NAMES[kind]);
    dp_test_gradcheck(name, masked_fn, m, 1, &x, 1e-6, 1e-6);
    CHECK(m->grad == NULL, "%s: the mask got a gradient", name);
    dp_tensor *r = dp_test_random(DP_F64, 4, xs, 95);
    dp_tensor *gf = grad_of(x, m, r, 1), *gc = grad_of(x, m, r, 0);
    if (gf && gc) {
        double *a = values(gf), *b = values(gc);
        int64_t n = dp_tensor_numel(x);
        double worst = 0;
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
        CHECK(worst <= 1e-12, "%s: fused and composed gradients differ by %g", name, worst);
        free(a);
        free(b);
    }
    dp_tensor_release(gf);
    dp_tensor_release(gc);
    dp_tensor_release(r);
out:
    dp_tensor_release(x);
    dp_tensor_release(m);
}

/* ---------------------------------------------------------------- errors */

static void expect_error(dp_tensor *got, const char *what, const char *part1, const char *part2) {
    const char *msg = dp_last_error();
    CHECK(got == NULL && strstr(msg, "softmax_masked") && strstr(msg, part1) && strstr(msg, part2),
          "%s: expected an error naming softmax_masked, '%s' and '%s', got %s", what, part1, part2,
          got ? "a tensor" : msg);
    dp_tensor_release(got);
}

static void test_errors(void) {
    int64_t xs[4] = {B, H, T, T}, ms[4] = {B, 1, 1, T}, bad[4] = {B, 1, 1, T + 1}, wide[5] = {1, B, H, T, T};
    dp_tensor *x = dp_test_random(DP_F32, 4, xs, 1), *m = make_mask(PAD, DP_F32, B, H, T, 2);
    dp_tensor *m64 = make_mask(PAD, DP_F64, B, H, T, 2), *mbad = dp_test_random(DP_F32, 4, bad, 3);
    dp_tensor *m5 = dp_test_random(DP_F32, 5, wide, 4);
    dp_tensor *xi = dp_tensor_empty(DP_I32, DP_CPU, 4, xs), *mi = dp_tensor_empty(DP_I32, DP_CPU, 4, ms);
    dp_tensor *mg = make_mask(PAD, DP_F32, B, H, T, 5);
    dp_tensor_set_requires_grad(mg, 1);

    expect_error(dp_softmax_masked(x, mg, -1), "mask requires grad", "mask (argument 2)", "requires grad");
    /* With grad mode off nothing could be lost: the same call computes. */
    dp_set_grad_enabled(0);
    dp_tensor *ok = dp_softmax_masked(x, mg, -1);
    CHECK(ok != NULL, "mask requiring grad under no-grad: %s", dp_last_error());
    dp_tensor_release(ok);
    dp_set_grad_enabled(1);

    expect_error(dp_softmax_masked(x, mbad, -1), "shape", "mask (argument 2)", "does not broadcast");
    expect_error(dp_softmax_masked(x, m5, -1), "more dims", "mask (argument 2)", "does not broadcast");
    expect_error(dp_softmax_masked(x, m64, -1), "dtype", "mask (argument 2)", "x's dtype f32");
    expect_error(dp_softmax_masked(xi, mi, -1), "integer x", "x (argument 1)", "float");
    expect_error(dp_softmax_masked(x, m, 2), "dim 2", "dim (argument 3)", "last dim");
    expect_error(dp_softmax_masked(x, m, -2), "dim -2", "dim (argument 3)", "last dim");
    expect_error(dp_softmax_masked(x, m, 4), "dim 4", "dim (argument 3)", "last dim");
    expect_error(dp_softmax_masked(NULL, m, -1), "NULL x", "x (argument 1)", "NULL");
    expect_error(dp_softmax_masked(x, NULL, -1), "NULL mask", "mask (argument 2)", "NULL");
    /* dim = ndim - 1 is the same as -1. */
    dp_tensor *a = dp_softmax_masked(x, m, 3), *b = dp_softmax_masked(x, m, -1);
    CHECK(a && b && !memcmp(a->data, b->data, sizeof(float) * (size_t)dp_tensor_numel(x)),
          "dim 3 vs -1: %s", dp_last_error());
    dp_tensor *all[] = {x, m, m64, mbad, m5, xi, mi, mg, a, b};
    for (int i = 0; i < 10; i++) dp_tensor_release(all[i]);
}

int main(void) {
    const dp_dtype dts[5] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3};
    for (int i = 0; i < 5; i++) test_bitwise(dts[i]);
    /* One rounding of the output: half a unit in the last place of the dtype. */
    const double tols[4] = {ldexp(1, -24), 1e-14, ldexp(1, -8), ldexp(1, -11)};
    for (int i = 0; i < 4; i++)
        for (int kind = 0; kind < NKINDS; kind++) test_forward(dts[i], kind, tols[i]);
    for (int kind = 0; kind < NKINDS; kind++) test_grad(kind);
    test_errors();
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_softmax_masked");
}
