/* ops_unary.c: checked, autograd-aware unary ops (neg, exp, log, sqrt, abs, tanh, sigmoid, relu,
 * gelu, affine, pow_scalar). One forward and one backward serve them all: the backward asks the
 * device's unary_backward kernel for gy * f'(x), from x or from the saved output y. */
#include "internal.h"

/* Whose derivative is cheapest from the output: exp (y), tanh (1 - y^2), sigmoid (y (1 - y)),
 * sqrt (0.5 / y). */
static int uses_output(dp_unop op) {
    return op == DP_UN_EXP || op == DP_UN_TANH || op == DP_UN_SIGMOID || op == DP_UN_SQRT;
}

/* A backend may leave table entries it does not implement yet NULL. */
static int no_kernel(const char *op, const dp_tensor *x) {
    return dp_fail(DP_EUNSUPPORTED, "%s: the %s backend has no kernel for it (%s)", op,
                   dp_device_name(x->device), dp_tensor_desc(x));
}

static int unary_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0];
    const dp_ops *ops = dp_ops_for(g->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->unary_backward) return no_kernel(node->op, g);
    dp_tensor *gx = dp_empty_as(g, x->dtype, g->ndim, g->shape);
    if (!gx) return DP_ENOMEM;
    int rc = ops->unary_backward(gx, g, x, node->saved[0], (dp_unop)node->ints[0], node->scalars[0],
                                 node->scalars[1]);
    if (rc) {
        dp_tensor_release(gx);
        return rc;
    }
    gi[0] = gx;
    return 0;
}

static dp_tensor *unary_op(const char *op, dp_unop uop, double alpha, double beta, dp_tensor *x) {
    if (!x) return dp_fail_null(DP_EARG, "%s: tensor is NULL", op);
    if (dp_check_float(op, x)) return NULL;
    const dp_ops *ops = dp_ops_for(x->device);
    if (ops && !ops->unary) {
        no_kernel(op, x);
        return NULL;
    }
    dp_tensor *out = ops ? dp_empty_like(x) : NULL;
    if (!out) {
        dp_error_prefix(op);
        return NULL;
    }
    if (ops->unary(out, x, uop, alpha, beta)) {
        dp_tensor_release(out);
        return NULL;
    }
    if (!dp_autograd_wanted(1, &x)) return out;
    dp_node *node = dp_autograd_record(out, op, unary_backward, 1, &x);
    dp_tensor *y = node && uses_output(uop) ? dp_detach(out) : NULL;
    if (!node || (uses_output(uop) && !y)) {
        dp_tensor_release(out);
        return NULL;
    }
    node->ints[0] = uop;
    node->scalars[0] = alpha;
    node->scalars[1] = beta;
    /* A detached alias of the output: saving out itself would make out own itself. */
    if (y) {
        dp_node_save(node, 0, y);
        dp_tensor_release(y);
    }
    return out;
}

dp_tensor *dp_affine(dp_tensor *x, double scale, double shift) {
    return unary_op("affine", DP_UN_AFFINE, scale, shift, x);
}
dp_tensor *dp_pow_scalar(dp_tensor *x, double p) {
    return unary_op("pow_scalar", DP_UN_POW, p, 0.0, x);
}
dp_tensor *dp_neg(dp_tensor *x) { return unary_op("neg", DP_UN_NEG, 0.0, 0.0, x); }
dp_tensor *dp_exp(dp_tensor *x) { return unary_op("exp", DP_UN_EXP, 0.0, 0.0, x); }
dp_tensor *dp_log(dp_tensor *x) { return unary_op("log", DP_UN_LOG, 0.0, 0.0, x); }
dp_tensor *dp_sqrt(dp_tensor *x) { return unary_op("sqrt", DP_UN_SQRT, 0.0, 0.0, x); }
dp_tensor *dp_abs(dp_tensor *x) { return unary_op("abs", DP_UN_ABS, 0.0, 0.0, x); }
dp_tensor *dp_tanh(dp_tensor *x) { return unary_op("tanh", DP_UN_TANH, 0.0, 0.0, x); }
dp_tensor *dp_sigmoid(dp_tensor *x) { return unary_op("sigmoid", DP_UN_SIGMOID, 0.0, 0.0, x); }
dp_tensor *dp_relu(dp_tensor *x) { return unary_op("relu", DP_UN_RELU, 0.0, 0.0, x); }
dp_tensor *dp_gelu(dp_tensor *x) { return unary_op("gelu", DP_UN_GELU, 0.0, 0.0, x); }
