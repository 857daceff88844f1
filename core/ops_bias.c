/* ops_bias.c: dp_bias_add, a bias added along the last dim as its own op, so that the DP engine
 * sees the bias's per-sample gradient (a plain dp_add hides which dim is the example). */
#include "internal.h"

/* gx = gy; gbias = gy summed over every dim but the last (or a tap for the DP engine). */
static int bias_add_backward(dp_node *node, dp_tensor *gy, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0], *b = node->inputs[1];
    if (x->requires_grad) {
        dp_tensor_retain(gy);
        gi[0] = gy;
    }
    if (!b->requires_grad) return 0;
    dp_psg_param *pb = dp_psg_lookup(b);
    if (pb) return dp_psg_tap_bias(pb, gy) ? DP_EGRAPH : 0;
    int32_t dims[8], n = 0;
    for (int32_t d = 0; d < gy->ndim - 1; d++) dims[n++] = d;
    if (n == 0) {
        dp_tensor_retain(gy);
        gi[1] = gy;
        return 0;
    }
    gi[1] = dp_sum(gy, n, dims, 0);
    return gi[1] ? 0 : DP_ENOMEM;
}

dp_tensor *dp_bias_add(dp_tensor *x, dp_tensor *bias) {
    if (!x || !bias) return dp_fail_null(DP_EARG, "bias_add: x or bias is NULL");
    if (x->ndim < 1 || bias->ndim != 1 || bias->shape[0] != x->shape[x->ndim - 1])
        return dp_fail_null(DP_ESHAPE, "bias_add: bias must be (%lld) to match the last dim of x %s, got %s",
                            x->ndim ? (long long)x->shape[x->ndim - 1] : 0LL, dp_tensor_desc(x),
                            dp_tensor_desc(bias));
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    dp_tensor *out = dp_add(x, bias);
    dp_set_grad_enabled(prev);
    dp_tensor *inputs[2] = {x, bias};
    if (!out || !dp_autograd_wanted(2, inputs)) return out;
    if (!dp_autograd_record(out, "bias_add", bias_add_backward, 2, inputs)) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}
