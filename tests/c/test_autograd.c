/* test_autograd.c: the engine's contract: accumulation, shared subgraphs, grad mode, freed graphs,
 * and errors for misuse. Values are checked against hand-derived closed forms. */
#include "dp_test.h"

static dp_tensor *vec(const double *v, int64_t n) {
    dp_tensor *t = dp_tensor_from_f64(DP_F64, 1, &n, v);
    dp_tensor_set_requires_grad(t, 1);
    return t;
}

static double grad_at(const dp_tensor *t, int64_t i) {
    double v = NAN;
    if (t->grad) dp_tensor_get_flat(t->grad, i, &v);
    return v;
}

/* loss = sum(x * x * w): dloss/dx = 2 x w, dloss/dw = x^2; x is used twice (a diamond). */
static void test_closed_form_and_accumulation(void) {
    double xv[3] = {1, -2, 3}, wv[3] = {0.5, 2, -1};
    dp_tensor *x = vec(xv, 3), *w = vec(wv, 3);
    for (int pass = 1; pass <= 2; pass++) {
        dp_tensor *xx = dp_mul(x, x);
        dp_tensor *y = dp_mul(xx, w);
        dp_tensor *loss = dp_sum(y, 0, NULL, 0);
        CHECK(strcmp(dp_tensor_op_name(loss), "sum") == 0, "op name: %s", dp_tensor_op_name(loss));
        CHECK_OK(dp_backward(loss, NULL, 0));
        for (int i = 0; i < 3; i++) {
            CHECK_CLOSE(grad_at(x, i), pass * 2 * xv[i] * wv[i], 1e-12);
            CHECK_CLOSE(grad_at(w, i), pass * xv[i] * xv[i], 1e-12);
        }
        /* The graph is spent: a second backward through it is an error, not garbage. */
        CHECK(dp_backward(loss, NULL, 0) == DP_EGRAPH, "second backward refused");
        CHECK(strstr(dp_last_error(), "retain_graph") != NULL, "message: %s", dp_last_error());
        dp_tensor_release(xx);
        dp_tensor_release(y);
        dp_tensor_release(loss);
    }
    CHECK_OK(dp_tensor_set_grad(x, NULL));
    CHECK(x->grad == NULL, "grad cleared");
    dp_tensor_release(x);
    dp_tensor_release(w);
}

static void test_retain_graph(void) {
    double xv[2] = {2, 3};
    dp_tensor *x = vec(xv, 2);
    dp_tensor *y = dp_mul(x, x);
    dp_tensor *loss = dp_sum(y, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 1));
    CHECK_OK(dp_backward(loss, NULL, 0));
    CHECK_CLOSE(grad_at(x, 1), 2 * 2 * 3, 1e-12);
    dp_tensor_release(loss);
    dp_tensor_release(y);
    dp_tensor_release(x);
}

static void test_grad_mode_and_errors(void) {
    double xv[2] = {1, 2};
    dp_tensor *x = vec(xv, 2);
    dp_set_grad_enabled(0);
    dp_tensor *y = dp_mul(x, x);
    dp_set_grad_enabled(1);
    CHECK(y->grad_fn == NULL && !y->requires_grad, "no node recorded with grad off");
    CHECK(dp_backward(y, NULL, 0) == DP_EGRAPH, "backward of a constant refused");
    CHECK(strstr(dp_last_error(), "does not require grad") != NULL, "message: %s", dp_last_error());

    dp_tensor *z = dp_mul(x, x);
    CHECK(dp_backward(z, NULL, 0) == DP_EGRAPH, "non-scalar root needs a gradient");
    CHECK(strstr(dp_last_error(), "2 elements") != NULL, "message: %s", dp_last_error());
    double gv[2] = {1, 10};
    int64_t two = 2;
    dp_tensor *g = dp_tensor_from_f64(DP_F64, 1, &two, gv);
    CHECK_OK(dp_backward(z, g, 0));
    CHECK_CLOSE(grad_at(x, 1), 2 * 2 * 10, 1e-12);

    int64_t n = 3;
    dp_tensor *ints = dp_tensor_zeros(DP_I64, DP_CPU, 1, &n);
    CHECK(dp_tensor_set_requires_grad(ints, 1) == DP_EDTYPE, "integer tensors cannot require grad");
    CHECK(dp_tensor_set_requires_grad(z, 0) == DP_EGRAPH, "a result cannot stop requiring grad");

    dp_tensor *all[] = {x, y, z, g, ints};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dp_tensor_release(all[i]);
}

/* A long chain must neither overflow the stack in backward nor leak. */
static void test_long_chain(void) {
    double xv[1] = {1.0};
    dp_tensor *x = vec(xv, 1);
    dp_tensor *y = x;
    dp_tensor_retain(y);
    for (int i = 0; i < 5000; i++) {
        dp_tensor *next = dp_affine(y, 1.0, 0.001);
        dp_tensor_release(y);
        y = next;
    }
    dp_tensor *loss = dp_sum(y, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 0));
    CHECK_CLOSE(grad_at(x, 0), 1.0, 1e-12);
    dp_tensor_release(loss);
    dp_tensor_release(y);
    dp_tensor_release(x);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_closed_form_and_accumulation();
    test_retain_graph();
    test_grad_mode_and_errors();
    test_long_chain();
    CHECK(dp_live_tensors() == live, "no tensor headers leak (%lld live, %lld before)",
          (long long)dp_live_tensors(), (long long)live);
    return dp_test_finish("test_autograd");
}
