/* ops_linear_act.c: dp_linear_act, act(x @ w^T + bias) as one autograd node: the GEMM without
 * bias, then the bias add and activation in one pass over the output (the backend's bias_act,
 * composed from binary + unary where a backend has none). Its backward turns the output gradient
 * into the pre-activation's and hands it to dp_linear's own backward (linear.h), so the DP engine
 * taps w and bias exactly as for dp_linear. */
#include "internal.h"
#include "linear.h"

static const char *const OP = "dp_linear_act";

static int act_to_unop(int32_t act, dp_unop *uop) {
    switch (act) {
    case DP_ACT_GELU: *uop = DP_UN_GELU; return 0;
    case DP_ACT_RELU: *uop = DP_UN_RELU; return 0;
    case DP_ACT_TANH: *uop = DP_UN_TANH; return 0;
    default:
        return dp_fail(DP_EARG, "%s: act must be DP_ACT_NONE (0), DP_ACT_GELU (1), DP_ACT_RELU (2) "
                       "or DP_ACT_TANH (3), got %d", OP, (int)act);
    }
}

/* tanh's derivative is cheapest from its output (1 - y^2); gelu's and relu's need the input. */
static int needs_output(dp_unop uop) { return uop == DP_UN_TANH; }

/* g_pre = gy * act'(.), then dp_linear's backward with g_pre. saved[2] is pre (gelu, relu) or a
 * detached alias of the output y (tanh). */
static int linear_act_backward(dp_node *node, dp_tensor *gy, dp_tensor **gi) {
    dp_unop uop = (dp_unop)node->ints[0];
    dp_tensor *v = node->saved[2];
    const dp_ops *ops = dp_ops_for(gy->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->unary_backward)
        return dp_fail(DP_EUNSUPPORTED, "%s: the %s backend has no unary_backward kernel", OP,
                       dp_device_name(gy->device));
    dp_tensor *g_pre = dp_empty_as(gy, node->out_dtype, gy->ndim, gy->shape);
    if (!g_pre) return DP_ENOMEM;
    int rc = needs_output(uop) ? ops->unary_backward(g_pre, gy, NULL, v, uop, 0.0, 0.0)
                               : ops->unary_backward(g_pre, gy, v, NULL, uop, 0.0, 0.0);
    if (!rc) rc = dp_linear_grads(node, g_pre, gi);
    dp_tensor_release(g_pre);
    return rc;
}

/* The epilogue without a fused kernel: pre = t + bias (binary), y = act(pre) (unary): the same
 * arithmetic as bias_act, in two passes. t is consumed; *pre_out receives pre when asked for. */
static dp_tensor *compose_epilogue(const dp_ops *ops, dp_tensor *t, dp_tensor *bias, dp_unop uop,
                                   dp_tensor **pre_out) {
    if (!ops->unary || (bias && !ops->binary)) {
        dp_tensor_release(t);
        return dp_fail_null(DP_EUNSUPPORTED, "%s: the %s backend has no %s kernel", OP,
                            ops->name, !ops->unary ? "unary" : "binary");
    }
    dp_tensor *pre = t, *y = NULL;
    if (bias) {
        dp_tensor *bv = dp_broadcast_view(bias, t->ndim, t->shape);
        pre = bv ? dp_empty_like(t) : NULL;
        int rc = pre ? ops->binary(pre, t, bv, DP_BIN_ADD) : DP_ENOMEM;
        dp_tensor_release(bv);
        dp_tensor_release(t);
        if (rc) goto fail;
    }
    if (!(y = dp_empty_like(pre)) || ops->unary(y, pre, uop, 0.0, 0.0)) goto fail;
    if (pre_out) *pre_out = pre;
    else dp_tensor_release(pre);
    return y;
fail:
    dp_tensor_release(pre);
    dp_tensor_release(y);
    return NULL;
}

/* y = act(t + bias) from the GEMM result t (consumed). With pre_out, *pre_out = t + bias (t itself
 * becomes it, written in place); without, y is written over t. */
static dp_tensor *epilogue(const dp_ops *ops, dp_tensor *t, dp_tensor *bias, dp_unop uop,
                           dp_tensor **pre_out) {
    if (!ops->bias_act) return compose_epilogue(ops, t, bias, uop, pre_out);
    dp_tensor *y = pre_out ? dp_empty_like(t) : t;
    if (!y) {
        dp_tensor_release(t);
        return NULL;
    }
    /* Without a bias t already is the pre-activation: nothing to write into it. */
    dp_tensor *pre = pre_out && bias ? t : NULL;
    if (ops->bias_act(y, pre, t, bias, uop)) {
        if (y != t) dp_tensor_release(y);
        dp_tensor_release(t);
        return NULL;
    }
    if (pre_out) *pre_out = t;
    return y;
}

dp_tensor *dp_linear_act(dp_tensor *x, dp_tensor *w, dp_tensor *bias, int32_t act) {
    dp_unop uop = DP_UN_GELU;
    if (act != DP_ACT_NONE && act_to_unop(act, &uop)) return NULL;
    if (dp_linear_check(OP, x, w, bias)) return NULL;
    /* No activation: dp_linear itself (bias inside the GEMM, one rounding), same node and taps. */
    if (act == DP_ACT_NONE) return dp_linear(x, w, bias);
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;

    dp_tensor *inputs[3] = {x, w, bias};
    int32_t n = bias ? 3 : 2;
    int record = dp_autograd_wanted(n, inputs);
    /* pre is kept only for a backward that reads it. */
    int keep_pre = record && !needs_output(uop);
    dp_tensor *t = dp_linear_gemm(x, w, NULL);
    if (!t) return NULL;
    dp_tensor *pre = NULL;
    dp_tensor *y = epilogue(ops, t, bias, uop, keep_pre ? &pre : NULL);
    if (!y || !record) {
        dp_tensor_release(pre);
        return y;
    }
    dp_node *node = dp_autograd_record(y, "linear_act", linear_act_backward, n, inputs);
    /* tanh saves a detached alias of y: saving y itself would make y own itself. */
    dp_tensor *v = !node ? NULL : keep_pre ? pre : dp_detach(y);
    if (!node || !v) {
        dp_tensor_release(pre);
        dp_tensor_release(y);
        return NULL;
    }
    node->ints[0] = uop;
    dp_node_save(node, 0, x);
    dp_node_save(node, 1, w);
    dp_node_save(node, 2, v);
    dp_tensor_release(v);
    return y;
}
