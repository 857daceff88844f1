/* test_grad_reduce_nn.c: float64 finite-difference checks of the backward of every reduction
 * and NN op (sum, mean, max, softmax, log_softmax, layer_norm, embedding, index_add,
 * cross_entropy), on contiguous and strided inputs, and that no tensor header leaks. */
#include "dp_test.h"

static const double H = 1e-6, TOL = 1e-6;

typedef struct {
    int32_t ndims, dims[8], keepdim, permute;
    int mean;
} reduce_ctx;

/* sum or mean of inputs[0] (first permuted (2,0,1) when asked, to exercise strided inputs). */
static dp_tensor *f_reduce(dp_tensor **in, void *ctx) {
    reduce_ctx *c = ctx;
    int32_t perm[3] = {2, 0, 1};
    dp_tensor *x = c->permute ? dp_permute(in[0], perm) : (dp_tensor_retain(in[0]), in[0]);
    dp_tensor *y = c->mean ? dp_mean(x, c->ndims, c->dims, c->keepdim) : dp_sum(x, c->ndims, c->dims, c->keepdim);
    dp_tensor_release(x);
    return y;
}

static void grad_sum_mean(void) {
    int64_t shape[3] = {3, 4, 5};
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 1);
    dp_tensor_set_requires_grad(x, 1);
    reduce_ctx cases[] = {
        {0, {0}, 0, 0, 0},         {1, {1}, 0, 0, 0},       {1, {-1}, 1, 0, 1},  {2, {0, 2}, 0, 0, 1},
        {2, {2, 0}, 1, 0, 0},      {1, {0}, 0, 1, 0},       {2, {1, 2}, 1, 1, 1}, {3, {0, 1, 2}, 1, 0, 1},
        {0, {0}, 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s case %zu", cases[i].mean ? "mean" : "sum", i);
        dp_test_gradcheck(name, f_reduce, &cases[i], 1, &x, H, TOL);
    }
    dp_tensor_release(x);
}

typedef struct {
    int32_t dim, keepdim;
} dim_ctx;

static dp_tensor *f_max(dp_tensor **in, void *ctx) {
    dim_ctx *c = ctx;
    return dp_max(in[0], c->dim, c->keepdim);
}

static dp_tensor *f_max_strided(dp_tensor **in, void *ctx) {
    dim_ctx *c = ctx;
    dp_tensor *t = dp_transpose(in[0], 0, 2);
    dp_tensor *y = dp_max(t, c->dim, c->keepdim);
    dp_tensor_release(t);
    return y;
}

static void grad_max(void) {
    /* Random inputs have no ties, so the maximum is differentiable. */
    int64_t shape[3] = {3, 4, 5};
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 2);
    dp_tensor_set_requires_grad(x, 1);
    for (int32_t dim = -1; dim < 3; dim++) {
        dim_ctx c = {dim, dim == 1};
        dp_test_gradcheck("max", f_max, &c, 1, &x, H, TOL);
        dp_test_gradcheck("max of a transposed view", f_max_strided, &c, 1, &x, H, TOL);
    }
    dp_tensor_release(x);
}

static dp_tensor *f_softmax(dp_tensor **in, void *ctx) { return dp_softmax(in[0], ((dim_ctx *)ctx)->dim); }
static dp_tensor *f_log_softmax(dp_tensor **in, void *ctx) { return dp_log_softmax(in[0], ((dim_ctx *)ctx)->dim); }

static void grad_softmax(void) {
    int64_t shape[3] = {2, 3, 4};
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 3);
    dp_tensor_set_requires_grad(x, 1);
    for (int32_t dim = 0; dim < 3; dim++) {
        dim_ctx c = {dim, 0};
        dp_test_gradcheck("softmax", f_softmax, &c, 1, &x, H, TOL);
        dp_test_gradcheck("log_softmax", f_log_softmax, &c, 1, &x, H, TOL);
    }
    dim_ctx last = {-1, 0};
    dp_tensor *t = dp_test_random(DP_F64, 2, (int64_t[]){4, 3}, 4);
    dp_tensor_set_requires_grad(t, 1);
    dp_test_gradcheck("log_softmax last dim", f_log_softmax, &last, 1, &t, H, TOL);
    dp_tensor_release(t);
    dp_tensor_release(x);
}

typedef struct {
    int with_weight, with_bias;
} ln_ctx;

static dp_tensor *f_layer_norm(dp_tensor **in, void *ctx) {
    ln_ctx *c = ctx;
    return dp_layer_norm(in[0], c->with_weight ? in[1] : NULL, c->with_bias ? in[2] : NULL, 1e-5);
}

static void grad_layer_norm(void) {
    int64_t shape[3] = {2, 3, 6}, D = 6;
    dp_tensor *in[3] = {dp_test_random(DP_F64, 3, shape, 5), dp_test_random(DP_F64, 1, &D, 6),
                        dp_test_random(DP_F64, 1, &D, 7)};
    for (int i = 0; i < 3; i++) dp_tensor_set_requires_grad(in[i], 1);
    ln_ctx full = {1, 1}, bias_only = {0, 1}, plain = {0, 0};
    dp_test_gradcheck("layer_norm wrt x, weight, bias", f_layer_norm, &full, 3, in, H, TOL);
    dp_tensor_set_requires_grad(in[1], 0);
    dp_test_gradcheck("layer_norm without weight", f_layer_norm, &bias_only, 3, in, H, TOL);
    dp_tensor_set_requires_grad(in[2], 0);
    dp_test_gradcheck("layer_norm plain", f_layer_norm, &plain, 3, in, H, TOL);
    /* Only the parameters require grad (gx is skipped). */
    dp_tensor_set_requires_grad(in[0], 0);
    dp_tensor_set_requires_grad(in[1], 1);
    dp_tensor_set_requires_grad(in[2], 1);
    dp_test_gradcheck("layer_norm wrt weight and bias only", f_layer_norm, &full, 3, in, H, TOL);
    /* Only x (the weight is used but frozen). */
    dp_tensor_set_requires_grad(in[0], 1);
    dp_tensor_set_requires_grad(in[1], 0);
    dp_tensor_set_requires_grad(in[2], 0);
    dp_test_gradcheck("layer_norm wrt x with frozen weight", f_layer_norm, &full, 3, in, H, TOL);
    for (int i = 0; i < 3; i++) dp_tensor_release(in[i]);
}

static dp_tensor *f_embedding(dp_tensor **in, void *ctx) { return dp_embedding(in[0], (dp_tensor *)ctx); }

static void grad_embedding(void) {
    int64_t ws[2] = {5, 3}, is[2] = {2, 4};
    dp_tensor *w = dp_test_random(DP_F64, 2, ws, 8);
    dp_tensor_set_requires_grad(w, 1);
    dp_tensor *idx = dp_tensor_from_f64(DP_I64, 2, is, (double[]){4, 1, 4, 0, 1, 4, 2, 2});
    dp_test_gradcheck("embedding wrt weight (repeated indices)", f_embedding, idx, 1, &w, H, TOL);
    dp_tensor_release(idx);
    dp_tensor_release(w);
}

static dp_tensor *f_index_add(dp_tensor **in, void *ctx) { return dp_index_add(in[0], (dp_tensor *)ctx, in[1]); }

static void grad_index_add(void) {
    int64_t xs[3] = {4, 2, 3}, ss[3] = {5, 2, 3}, n = 5;
    dp_tensor *in[2] = {dp_test_random(DP_F64, 3, xs, 9), dp_test_random(DP_F64, 3, ss, 10)};
    for (int i = 0; i < 2; i++) dp_tensor_set_requires_grad(in[i], 1);
    dp_tensor *idx = dp_tensor_from_f64(DP_I32, 1, &n, (double[]){3, 0, 3, 1, 3});
    dp_test_gradcheck("index_add wrt x and src", f_index_add, idx, 2, in, H, TOL);
    dp_tensor_set_requires_grad(in[0], 0);
    dp_test_gradcheck("index_add wrt src only", f_index_add, idx, 2, in, H, TOL);
    dp_tensor_release(idx);
    for (int i = 0; i < 2; i++) dp_tensor_release(in[i]);
}

typedef struct {
    dp_tensor *labels;
    int32_t reduction;
} ce_ctx;

static dp_tensor *f_cross_entropy(dp_tensor **in, void *ctx) {
    ce_ctx *c = ctx;
    return dp_cross_entropy(in[0], c->labels, -100, c->reduction);
}

static void grad_cross_entropy(void) {
    int64_t ls[2] = {5, 4}, N = 5;
    dp_tensor *logits = dp_test_random(DP_F64, 2, ls, 11);
    dp_tensor_set_requires_grad(logits, 1);
    dp_tensor *labels = dp_tensor_from_f64(DP_I64, 1, &N, (double[]){3, -100, 0, 1, 3});
    for (int32_t r = 0; r < 3; r++) {
        ce_ctx c = {labels, r};
        char name[64];
        snprintf(name, sizeof name, "cross_entropy reduction %d with an ignored row", r);
        dp_test_gradcheck(name, f_cross_entropy, &c, 1, &logits, H, TOL);
    }
    /* The ignored row's gradient is exactly zero. */
    ce_ctx mean = {labels, 1};
    dp_tensor_set_grad(logits, NULL);
    dp_tensor *loss = f_cross_entropy(&logits, &mean);
    CHECK(dp_backward(loss, NULL, 0) == 0, "backward: %s", dp_last_error());
    double g[20] = {0};
    if (logits->grad) dp_tensor_to_f64(logits->grad, g);
    CHECK(g[4] == 0 && g[5] == 0 && g[6] == 0 && g[7] == 0, "ignored row gradient %g %g %g %g", g[4], g[5], g[6], g[7]);
    dp_tensor_release(loss);

    /* All rows ignored: the mean is 0 and so is its gradient. */
    dp_tensor *ign = dp_tensor_full(DP_I32, DP_CPU, 1, &N, -100);
    ce_ctx all = {ign, 1};
    dp_tensor_set_grad(logits, NULL);
    loss = f_cross_entropy(&logits, &all);
    CHECK(dp_backward(loss, NULL, 0) == 0, "backward: %s", dp_last_error());
    int nonzero = 0;
    if (logits->grad) {
        dp_tensor_to_f64(logits->grad, g);
        for (int i = 0; i < 20; i++) nonzero += g[i] != 0;
    }
    CHECK(logits->grad && nonzero == 0, "all-ignored gradient has %d nonzeros", nonzero);
    dp_tensor_release(loss);
    dp_tensor_release(ign);
    dp_tensor_release(labels);
    dp_tensor_release(logits);
}

/* A small chain through several of the ops at once: mean(cross_entropy(layer_norm(embedding))). */
static dp_tensor *f_chain(dp_tensor **in, void *ctx) {
    dp_tensor *e = dp_embedding(in[0], ((dp_tensor **)ctx)[0]);
    dp_tensor *n = e ? dp_layer_norm(e, in[1], NULL, 1e-5) : NULL;
    dp_tensor *s = n ? dp_log_softmax(n, -1) : NULL;
    dp_tensor *m = s ? dp_max(s, 0, 0) : NULL;
    dp_tensor *l = n ? dp_cross_entropy(n, ((dp_tensor **)ctx)[1], -100, 1) : NULL;
    dp_tensor *y = m && l ? dp_add(m, l) : NULL;
    dp_tensor_release(e);
    dp_tensor_release(n);
    dp_tensor_release(s);
    dp_tensor_release(m);
    dp_tensor_release(l);
    return y;
}

static void grad_chain(void) {
    int64_t ws[2] = {6, 4}, D = 4, n = 3;
    dp_tensor *in[2] = {dp_test_random(DP_F64, 2, ws, 12), dp_test_random(DP_F64, 1, &D, 13)};
    for (int i = 0; i < 2; i++) dp_tensor_set_requires_grad(in[i], 1);
    dp_tensor *ctx[2] = {dp_tensor_from_f64(DP_I64, 1, &n, (double[]){5, 2, 5}),
                         dp_tensor_from_f64(DP_I64, 1, &n, (double[]){1, -100, 3})};
    dp_test_gradcheck("embedding -> layer_norm -> log_softmax/max + cross_entropy", f_chain, ctx, 2, in, H, TOL);
    for (int i = 0; i < 2; i++) {
        dp_tensor_release(ctx[i]);
        dp_tensor_release(in[i]);
    }
}

int main(void) {
    int64_t live = dp_live_tensors();
    grad_sum_mean();
    grad_max();
    grad_softmax();
    grad_layer_norm();
    grad_embedding();
    grad_index_add();
    grad_cross_entropy();
    grad_chain();
    CHECK(dp_live_tensors() == live, "leaked %lld tensor headers", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_grad_reduce_nn");
}
