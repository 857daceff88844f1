/* ops_softmax.c: dp_softmax and dp_log_softmax along any dim. Both save their own output (as a
 * detached alias, so the node does not hold its result alive) because each backward needs only y. */
#include "internal.h"

static int softmax_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *y = node->saved[0];
    const dp_ops *ops = dp_ops_for(y->device);
    if (!ops) return DP_EDEVICE;
    dp_tensor *gc = dp_contiguous(g);
    dp_tensor *gx = dp_empty_like(y);
    int rc = gc && gx ? ops->softmax_backward(gx, gc, y, (int32_t)node->ints[0], (int32_t)node->ints[1])
                      : DP_ENOMEM;
    dp_tensor_release(gc);
    if (rc) { dp_tensor_release(gx); return rc; }
    gi[0] = gx;
    return 0;
}

static dp_tensor *softmax_op(const char *op, dp_tensor *x, int32_t dim, int32_t use_log) {
    if (!x) return dp_fail_null(DP_EARG, "%s: tensor is NULL", op);
    if (dp_check_float(op, x) || dp_norm_dim(op, &dim, x->ndim)) return NULL;
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    if (!ops->softmax || !ops->softmax_backward)
        return dp_fail_null(DP_EUNSUPPORTED, "%s: the %s backend has no softmax kernel (%s)", op,
                            dp_device_name(x->device), dp_tensor_desc(x));
    dp_tensor *xc = dp_contiguous(x);
    dp_tensor *y = xc ? dp_empty_like(xc) : NULL;
    int rc = y ? ops->softmax(y, xc, dim, use_log) : DP_ENOMEM;
    if (!rc && dp_autograd_wanted(1, &xc)) {
        dp_node *node = dp_autograd_record(y, op, softmax_backward, 1, &xc);
        dp_tensor *alias = node ? dp_detach(y) : NULL;
        if (alias) {
            dp_node_save(node, 0, alias);
            dp_tensor_release(alias);
            node->ints[0] = dim;
            node->ints[1] = use_log;
        } else {
            rc = DP_ENOMEM;
        }
    }
    dp_tensor_release(xc);
    if (rc) {
        dp_tensor_release(y);
        return NULL;
    }
    return y;
}

dp_tensor *dp_softmax(dp_tensor *x, int32_t dim) { return softmax_op("softmax", x, dim, 0); }

dp_tensor *dp_log_softmax(dp_tensor *x, int32_t dim) { return softmax_op("log_softmax", x, dim, 1); }
