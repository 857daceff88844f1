/* test_grad_matmul.c: matmul and linear gradients against central finite differences in float64:
 * 2-D, batched, broadcast batch dims, 1-D promotion, transposed-view inputs; linear with respect
 * to x, w and bias on 2-D and 3-D input. */
#include "dp_test.h"

#define SHAPE(...) (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

static const double H = 1e-6, TOL = 1e-6;
static uint64_t seed = 7;

static dp_tensor *leaf(int32_t ndim, const int64_t *shape) {
    dp_tensor *t = dp_test_random(DP_F64, ndim, shape, seed++);
    dp_tensor_set_requires_grad(t, 1);
    return t;
}

static dp_tensor *f_matmul(dp_tensor **in, void *ctx) { return dp_matmul(in[0], in[1]); }

/* Both operands enter as transposed views of the leaves: in[0] is a^T (K, M), in[1] is b^T. */
static dp_tensor *f_matmul_transposed(dp_tensor **in, void *ctx) {
    dp_tensor *a = dp_transpose(in[0], -2, -1), *b = dp_transpose(in[1], -2, -1);
    dp_tensor *y = dp_matmul(a, b);
    dp_tensor_release(a);
    dp_tensor_release(b);
    return y;
}

static dp_tensor *f_linear(dp_tensor **in, void *ctx) {
    return dp_linear(in[0], in[1], ctx ? in[2] : NULL);
}

static void check(const char *name, dp_test_fn f, void *ctx, dp_tensor *a, dp_tensor *b,
                  dp_tensor *c) {
    dp_tensor *in[3] = {a, b, c};
    dp_test_gradcheck(name, f, ctx, c ? 3 : 2, in, H, TOL);
    for (int i = 0; i < 3; i++) dp_tensor_release(in[i]);
}

static void test_matmul(void) {
    check("2-D", f_matmul, NULL, leaf(SHAPE(3, 4)), leaf(SHAPE(4, 5)), NULL);
    check("batched", f_matmul, NULL, leaf(SHAPE(2, 3, 4)), leaf(SHAPE(2, 4, 5)), NULL);
    check("batched @ shared matrix", f_matmul, NULL, leaf(SHAPE(2, 3, 3, 4)), leaf(SHAPE(4, 5)), NULL);
    check("shared matrix @ batched", f_matmul, NULL, leaf(SHAPE(3, 4)), leaf(SHAPE(2, 4, 5)), NULL);
    check("broadcast (2,1,3,4) @ (3,4,5)", f_matmul, NULL, leaf(SHAPE(2, 1, 3, 4)),
          leaf(SHAPE(3, 4, 5)), NULL);
    check("broadcast (1,3,4) @ (2,4,2)", f_matmul, NULL, leaf(SHAPE(1, 3, 4)), leaf(SHAPE(2, 4, 2)),
          NULL);
    check("vector @ matrix", f_matmul, NULL, leaf(SHAPE(4)), leaf(SHAPE(4, 5)), NULL);
    check("matrix @ vector", f_matmul, NULL, leaf(SHAPE(3, 4)), leaf(SHAPE(4)), NULL);
    check("vector @ vector", f_matmul, NULL, leaf(SHAPE(4)), leaf(SHAPE(4)), NULL);
    check("vector @ batched", f_matmul, NULL, leaf(SHAPE(4)), leaf(SHAPE(2, 4, 5)), NULL);
    check("batched @ vector", f_matmul, NULL, leaf(SHAPE(2, 3, 4)), leaf(SHAPE(4)), NULL);
    check("transposed views", f_matmul_transposed, NULL, leaf(SHAPE(4, 3)), leaf(SHAPE(5, 4)), NULL);
    check("batched transposed views", f_matmul_transposed, NULL, leaf(SHAPE(2, 4, 3)),
          leaf(SHAPE(1, 5, 4)), NULL);

    /* Only one operand requiring grad. */
    dp_tensor *a = leaf(SHAPE(3, 4)), *b = dp_test_random(DP_F64, SHAPE(4, 2), 3);
    check("only a requires grad", f_matmul, NULL, a, b, NULL);
}

static void test_linear(void) {
    int with_bias = 1;
    check("linear 2-D", f_linear, &with_bias, leaf(SHAPE(3, 4)), leaf(SHAPE(5, 4)), leaf(SHAPE(5)));
    check("linear 3-D", f_linear, &with_bias, leaf(SHAPE(2, 3, 4)), leaf(SHAPE(5, 4)),
          leaf(SHAPE(5)));
    check("linear 1-D", f_linear, &with_bias, leaf(SHAPE(4)), leaf(SHAPE(2, 4)), leaf(SHAPE(2)));
    check("linear 3-D no bias", f_linear, NULL, leaf(SHAPE(2, 3, 4)), leaf(SHAPE(5, 4)), NULL);
    /* Frozen weight (LoRA-style): only x and bias require grad. */
    check("linear frozen w", f_linear, &with_bias, leaf(SHAPE(2, 3, 4)),
          dp_test_random(DP_F64, SHAPE(5, 4), 11), leaf(SHAPE(5)));
}

static void test_grad_shapes(void) {
    /* bf16 gradients have the inputs' dtype and shape. */
    dp_tensor *x = dp_test_random(DP_BF16, SHAPE(2, 3, 8), 5);
    dp_tensor *w = dp_test_random(DP_BF16, SHAPE(4, 8), 6);
    dp_tensor *bias = dp_test_random(DP_BF16, SHAPE(4), 7);
    dp_tensor_set_requires_grad(w, 1);
    dp_tensor_set_requires_grad(bias, 1);
    dp_tensor *y = dp_linear(x, w, bias);
    dp_tensor *loss = y ? dp_sum(y, 0, NULL, 0) : NULL;
    CHECK(loss && dp_backward(loss, NULL, 0) == 0, "bf16 linear backward: %s", dp_last_error());
    CHECK(w->grad && w->grad->dtype == DP_BF16 && w->grad->shape[0] == 4 && w->grad->shape[1] == 8,
          "bf16 w grad %s", dp_tensor_desc(w->grad));
    /* d sum / d bias = rows = 6, exact in bf16. */
    double g = 0;
    if (bias->grad) dp_tensor_get_flat(bias->grad, 2, &g);
    CHECK(g == 6, "bias grad %g", g);
    CHECK(x->grad == NULL, "x does not require grad");
    dp_tensor *list[] = {x, w, bias, y, loss};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_matmul();
    test_linear();
    test_grad_shapes();
    CHECK(dp_live_tensors() == live, "live tensors %lld, started with %lld",
          (long long)dp_live_tensors(), (long long)live);
    return dp_test_finish("test_grad_matmul");
}
