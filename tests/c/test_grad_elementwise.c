/* test_grad_elementwise.c: gradients of the elementwise ops against central finite differences in
 * float64 (broadcast inputs get their gradient summed back), maximum's tie rule, saved outputs
 * that must not leak, and a leak check on tensor headers. */
#include "dp_test.h"
#include "internal.h"

enum { ADD, SUB, MUL, DIV, MAX, NEG, EXP, LOG, SQRT, ABS, TANH, SIGMOID, RELU, GELU, AFFINE, POW,
       MASKED_FILL, COMPOSITE, STRIDED, SELF };

typedef struct {
    int op;
    double p, q;
    dp_tensor *mask;
} op_ctx;

static dp_tensor *apply(dp_tensor **in, void *vctx) {
    const op_ctx *c = vctx;
    switch (c->op) {
    case ADD: return dp_add(in[0], in[1]);
    case SUB: return dp_sub(in[0], in[1]);
    case MUL: return dp_mul(in[0], in[1]);
    case DIV: return dp_div(in[0], in[1]);
    case MAX: return dp_maximum(in[0], in[1]);
    case NEG: return dp_neg(in[0]);
    case EXP: return dp_exp(in[0]);
    case LOG: return dp_log(in[0]);
    case SQRT: return dp_sqrt(in[0]);
    case ABS: return dp_abs(in[0]);
    case TANH: return dp_tanh(in[0]);
    case SIGMOID: return dp_sigmoid(in[0]);
    case RELU: return dp_relu(in[0]);
    case GELU: return dp_gelu(in[0]);
    case AFFINE: return dp_affine(in[0], c->p, c->q);
    case POW: return dp_pow_scalar(in[0], c->p);
    case MASKED_FILL: return dp_masked_fill(in[0], c->mask, c->p);
    case COMPOSITE: {
        /* gelu(tanh(a) * b) + a / sigmoid(b): a reaches the output along two paths. */
        dp_tensor *t = dp_tanh(in[0]), *m = dp_mul(t, in[1]), *g = dp_gelu(m);
        dp_tensor *s = dp_sigmoid(in[1]), *d = dp_div(in[0], s), *out = dp_add(g, d);
        dp_tensor_release(t);
        dp_tensor_release(m);
        dp_tensor_release(g);
        dp_tensor_release(s);
        dp_tensor_release(d);
        return out;
    }
    case SELF: {
        /* One tensor on both sides: x * x + x / (x * x + 1). */
        dp_tensor *sq = dp_mul(in[0], in[0]), *one = dp_affine(sq, 1, 1), *q = dp_div(in[0], one);
        dp_tensor *out = dp_add(sq, q);
        dp_tensor_release(sq);
        dp_tensor_release(one);
        dp_tensor_release(q);
        return out;
    }
    default: {
        /* A transposed and a narrowed input. */
        dp_tensor *t = dp_transpose(in[0], 0, 1), *n = dp_narrow(in[1], 1, 1, 4);
        dp_tensor *out = dp_mul(t, n);
        dp_tensor_release(t);
        dp_tensor_release(n);
        return out;
    }
    }
}

/* f64 leaf with values in [lo, hi), at least gap away from 0 when gap > 0. */
static dp_tensor *leaf(int32_t ndim, const int64_t *shape, uint64_t seed, double lo, double hi,
                       double gap) {
    int64_t n = dp_shape_numel(ndim, shape);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    uint64_t s = seed * 104729 + 3;
    for (int64_t i = 0; i < n; i++) {
        v[i] = lo + (hi - lo) * (dp_test_uniform(&s) + 1) / 2;
        if (gap > 0 && fabs(v[i]) < gap) v[i] = v[i] < 0 ? -gap : gap;
    }
    dp_tensor *t = dp_tensor_from_f64(DP_F64, ndim, shape, v);
    free(v);
    dp_tensor_set_requires_grad(t, 1);
    return t;
}

static dp_tensor *leaf_from(int32_t ndim, const int64_t *shape, const double *v) {
    dp_tensor *t = dp_tensor_from_f64(DP_F64, ndim, shape, v);
    dp_tensor_set_requires_grad(t, 1);
    return t;
}

static void gradcheck(const char *name, op_ctx *c, int32_t n, dp_tensor **in) {
    dp_test_gradcheck(name, apply, c, n, in, 1e-6, 1e-5);
}

static void test_binary(void) {
    static const struct { int32_t na; int64_t a[3]; int32_t nb; int64_t b[3]; } shapes[] = {
        { 2, { 2, 3 }, 2, { 2, 3 } },
        { 3, { 2, 1, 3 }, 2, { 4, 1 } },
        { 1, { 3 }, 0, { 0 } },
        { 0, { 0 }, 2, { 2, 3 } },
    };
    const int ops[] = { ADD, SUB, MUL, DIV };
    const char *names[] = { "add", "sub", "mul", "div" };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int k = 0; k < 4; k++) {
            dp_tensor *in[2] = { leaf(shapes[s].na, shapes[s].a, 1 + s, -2, 2, 0),
                                 leaf(shapes[s].nb, shapes[s].b, 9 + s, -2, 2, 0.3) };
            op_ctx c = { .op = ops[k] };
            char name[64];
            snprintf(name, sizeof name, "%s shapes %zu", names[k], s);
            gradcheck(name, &c, 2, in);
            /* Only a requires grad: b must get none. */
            dp_tensor_set_grad(in[0], NULL);
            dp_tensor_set_requires_grad(in[1], 0);
            gradcheck(name, &c, 2, in);
            CHECK(in[1]->grad == NULL, "%s: b does not require grad but got one", name);
            dp_tensor_release(in[0]);
            dp_tensor_release(in[1]);
        }
    }
}

static void test_maximum(void) {
    /* Same shape, every pair at least 0.1 apart. */
    int64_t s23[] = { 2, 3 }, s3[] = { 3 };
    double av[] = { 0.1, 0.5, 0.9, -0.3, 0.7, -0.8 }, bv[] = { 0.3, -0.2, 0.6, 0.2, 0.9, -1.2 };
    dp_tensor *in[2] = { leaf_from(2, s23, av), leaf_from(2, s23, bv) };
    op_ctx c = { .op = MAX };
    gradcheck("maximum", &c, 2, in);
    dp_tensor_release(in[1]);
    /* b broadcast along rows. */
    double rv[] = { 0.3, -0.2, 0.6 };
    in[1] = leaf_from(1, s3, rv);
    gradcheck("maximum broadcast", &c, 2, in);
    dp_tensor_release(in[1]);

    /* Ties send the whole gradient to a. */
    in[1] = leaf_from(2, s23, av);
    dp_tensor_set_grad(in[0], NULL);
    dp_tensor *y = dp_maximum(in[0], in[1]);
    dp_tensor *loss = dp_sum(y, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 0));
    double ga[6] = { 0 }, gb[6] = { 0 };
    if (in[0]->grad) dp_tensor_to_f64(in[0]->grad, ga);
    if (in[1]->grad) dp_tensor_to_f64(in[1]->grad, gb);
    for (int i = 0; i < 6; i++) CHECK(ga[i] == 1 && gb[i] == 0, "tie %d: da %g db %g", i, ga[i], gb[i]);
    dp_tensor_release(loss);
    dp_tensor_release(y);
    dp_tensor_release(in[0]);
    dp_tensor_release(in[1]);
}

static void test_unary(void) {
    static const struct { int op; const char *name; double lo, hi, gap, p, q; } cases[] = {
        { NEG, "neg", -2, 2, 0, 0, 0 },
        { EXP, "exp", -2, 2, 0, 0, 0 },
        { LOG, "log", 0.2, 3, 0, 0, 0 },
        { SQRT, "sqrt", 0.2, 3, 0, 0, 0 },
        { ABS, "abs", -2, 2, 0.1, 0, 0 },
        { TANH, "tanh", -2, 2, 0, 0, 0 },
        { SIGMOID, "sigmoid", -4, 4, 0, 0, 0 },
        { RELU, "relu", -2, 2, 0.1, 0, 0 },
        { GELU, "gelu", -3, 3, 0, 0, 0 },
        { AFFINE, "affine", -2, 2, 0, 2.5, -1 },
        { POW, "pow 2", -2, 2, 0, 2, 0 },
        { POW, "pow 3", -2, 2, 0, 3, 0 },
        { POW, "pow 1", -2, 2, 0, 1, 0 },
        { POW, "pow 0.5", 0.2, 3, 0, 0.5, 0 },
        { POW, "pow -1.5", 0.2, 3, 0, -1.5, 0 },
    };
    int64_t shape[] = { 3, 4 };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dp_tensor *in[1] = { leaf(2, shape, 20 + k, cases[k].lo, cases[k].hi, cases[k].gap) };
        op_ctx c = { .op = cases[k].op, .p = cases[k].p, .q = cases[k].q };
        gradcheck(cases[k].name, &c, 1, in);
        dp_tensor *y = apply(in, &c);
        CHECK(y && strcmp(dp_tensor_op_name(y), cases[k].op == POW ? "pow_scalar" :
                          cases[k].op == AFFINE ? "affine" : cases[k].name) == 0,
              "op name %s for %s", y ? dp_tensor_op_name(y) : "(null)", cases[k].name);
        dp_tensor_release(y);
        dp_tensor_release(in[0]);
    }
    /* 0-d input. */
    dp_tensor *in[1] = { leaf(0, NULL, 3, 0.2, 2, 0) };
    op_ctx c = { .op = GELU };
    gradcheck("gelu 0-d", &c, 1, in);
    c.op = SQRT;
    gradcheck("sqrt 0-d", &c, 1, in);
    dp_tensor_release(in[0]);
}

static void test_masked_fill(void) {
    int64_t xs[] = { 2, 3, 4 }, ms[] = { 3, 1 };
    double mv[] = { 0, 1, 0 };
    op_ctx c = { .op = MASKED_FILL, .p = -5, .mask = dp_tensor_from_f64(DP_U8, 2, ms, mv) };
    dp_tensor *in[1] = { leaf(3, xs, 4, -2, 2, 0) };
    gradcheck("masked_fill", &c, 1, in);
    /* Masked positions get exactly zero gradient. */
    double g[24] = { 0 };
    if (in[0]->grad) dp_tensor_to_f64(in[0]->grad, g);
    for (int k = 0; k < 24; k++)
        if (mv[(k / 4) % 3]) CHECK(g[k] == 0, "masked element %d has gradient %g", k, g[k]);
    dp_tensor_release(in[0]);
    dp_tensor_release(c.mask);
}

static void test_composite(void) {
    int64_t sa[] = { 3, 1 }, sb[] = { 3, 4 }, sq[] = { 4, 3 }, sn[] = { 3, 5 };
    dp_tensor *in[2] = { leaf(2, sa, 5, -1.5, 1.5, 0), leaf(2, sb, 6, -1.5, 1.5, 0) };
    op_ctx c = { .op = COMPOSITE };
    gradcheck("composite", &c, 2, in);
    dp_tensor_release(in[0]);
    dp_tensor_release(in[1]);
    dp_tensor *sin[2] = { leaf(2, sq, 7, -1, 1, 0), leaf(2, sn, 8, -1, 1, 0) };
    c.op = STRIDED;
    gradcheck("strided inputs", &c, 2, sin);
    c.op = SELF;
    gradcheck("same tensor twice", &c, 1, sin);
    dp_tensor_release(sin[0]);
    dp_tensor_release(sin[1]);
}

/* f32 gradients through the kernels' f32 path, checked against hand-computed values. */
static void test_f32_backward(void) {
    int64_t s4[] = { 4 };
    double xv[] = { -1, 0.5, 2, -0.25 };
    dp_tensor *x = dp_tensor_from_f64(DP_F32, 1, s4, xv);
    dp_tensor_set_requires_grad(x, 1);
    dp_tensor *r = dp_relu(x), *e = dp_exp(x), *sum = dp_add(r, e);
    dp_tensor *loss = dp_sum(sum, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 0));
    double g[4] = { 0 };
    if (x->grad) dp_tensor_to_f64(x->grad, g);
    for (int i = 0; i < 4; i++)
        CHECK_CLOSE(g[i], (xv[i] > 0) + exp(xv[i]), 1e-6);
    CHECK(x->grad && x->grad->dtype == DP_F32, "gradient dtype %s", dp_tensor_desc(x->grad));
    dp_tensor_release(loss);
    dp_tensor_release(sum);
    dp_tensor_release(e);
    dp_tensor_release(r);
    dp_tensor_release(x);
}

/* Ops that save their output keep a detached alias: dropping the result without a backward frees
 * everything, and backward with retain_graph can run twice. */
static void test_saved_outputs(void) {
    int64_t live = dp_live_tensors(), s3[] = { 3 };
    dp_tensor *x = leaf(1, s3, 11, -1, 1, 0);
    dp_tensor *y = dp_tanh(x);
    dp_tensor_release(y);
    dp_tensor_release(x);
    CHECK(dp_live_tensors() == live, "tanh without backward leaked %lld headers",
          (long long)(dp_live_tensors() - live));

    x = leaf(1, s3, 12, -1, 1, 0);
    y = dp_exp(x);
    dp_tensor *loss = dp_sum(y, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 1));
    CHECK_OK(dp_backward(loss, NULL, 0));
    double g[3] = { 0 }, v[3];
    dp_tensor_to_f64(x, v);
    if (x->grad) dp_tensor_to_f64(x->grad, g);
    for (int i = 0; i < 3; i++) CHECK_CLOSE(g[i], 2 * exp(v[i]), 1e-12);
    dp_tensor_release(loss);
    dp_tensor_release(y);
    dp_tensor_release(x);
    CHECK(dp_live_tensors() == live, "exp with backward leaked %lld headers",
          (long long)(dp_live_tensors() - live));

    /* Grad mode off: no node. */
    x = leaf(1, s3, 13, -1, 1, 0);
    dp_set_grad_enabled(0);
    y = dp_sigmoid(x);
    dp_set_grad_enabled(1);
    CHECK(y && !y->requires_grad && !y->grad_fn, "no graph with grad mode off");
    dp_tensor_release(y);
    dp_tensor_release(x);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_binary();
    test_maximum();
    test_unary();
    test_masked_fill();
    test_composite();
    test_f32_backward();
    test_saved_outputs();
    CHECK(dp_live_tensors() == live, "%lld tensor headers leaked", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_grad_elementwise");
}
