/* ops_softmax.c: dp_softmax and dp_log_softmax along any dim, and dp_softmax_masked (softmax of
 * x + an additive mask over the last dim, fused). All save their own output (as a detached alias,
 * so the node does not hold its result alive) because each backward needs only y. */
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

/* Records y's node (input xc, saving y) when x needs a gradient; releases xc. y, or NULL when rc
 * (the kernel's status) or the recording failed. */
static dp_tensor *finish(const char *op, dp_tensor *xc, dp_tensor *y, int rc, int32_t dim,
                         int32_t use_log) {
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
    return finish(op, xc, y, rc, dim, use_log);
}

dp_tensor *dp_softmax(dp_tensor *x, int32_t dim) { return softmax_op("softmax", x, dim, 0); }

dp_tensor *dp_log_softmax(dp_tensor *x, int32_t dim) { return softmax_op("log_softmax", x, dim, 1); }

/* ---------------------------------------------------------------- masked softmax */

#define MOP "softmax_masked"

static int check_masked(dp_tensor *x, dp_tensor *mask, int32_t *dim) {
    if (!x || !mask)
        return dp_fail(DP_EARG, MOP ": %s (argument %d) is NULL", x ? "mask" : "x", x ? 2 : 1);
    if (!dp_dtype_is_float(x->dtype))
        return dp_fail(DP_EDTYPE, MOP ": x (argument 1) must be a float tensor, got %s", dp_tensor_desc(x));
    if (mask->device != x->device)
        return dp_fail(DP_EDEVICE, MOP ": mask (argument 2) is on %s, x on %s (mask %s, x %s)",
                       dp_device_name(mask->device), dp_device_name(x->device), dp_tensor_desc(mask),
                       dp_tensor_desc(x));
    if (mask->dtype != x->dtype)
        return dp_fail(DP_EDTYPE, MOP ": mask (argument 2) must have x's dtype %s (cast it first), got %s",
                       dp_dtype_name(x->dtype), dp_tensor_desc(mask));
    if (x->ndim < 1)
        return dp_fail(DP_ESHAPE, MOP ": x (argument 1) needs at least one dim, got %s", dp_tensor_desc(x));
    int32_t d = *dim;
    if (d != -1 && d != x->ndim - 1)
        return dp_fail(DP_EARG, MOP ": dim (argument 3) must be the last dim (-1 or %d) of x %s, got %d; "
                       "only the last dim is supported", x->ndim - 1, dp_tensor_desc(x), (int)d);
    *dim = x->ndim - 1;
    int ok = mask->ndim <= x->ndim;
    for (int i = 1; ok && i <= mask->ndim; i++) {
        int64_t m = mask->shape[mask->ndim - i];
        ok = m == 1 || m == x->shape[x->ndim - i];
    }
    if (!ok)
        return dp_fail(DP_ESHAPE, MOP ": mask (argument 2) %s does not broadcast to x %s (each of its "
                       "trailing dims must be 1 or equal to x's)", dp_tensor_desc(mask), dp_tensor_desc(x));
    if (dp_autograd_wanted(1, &mask))
        return dp_fail(DP_EARG, MOP ": mask (argument 2) requires grad, but " MOP " is not "
                       "differentiable in mask (detach it, or use dp_add then dp_softmax)");
    return 0;
}

dp_tensor *dp_softmax_masked(dp_tensor *x, dp_tensor *mask, int32_t dim) {
    if (check_masked(x, mask, &dim)) return NULL;
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    if (!ops->softmax_backward || (!ops->softmax_masked && (!ops->softmax || !ops->binary)))
        return dp_fail_null(DP_EUNSUPPORTED, MOP ": the %s backend has no softmax kernel (%s)",
                            dp_device_name(x->device), dp_tensor_desc(x));
    dp_tensor *xc = dp_contiguous(x);
    dp_tensor *mv = xc ? dp_broadcast_view(mask, xc->ndim, xc->shape) : NULL;
    dp_tensor *y = mv ? dp_empty_like(xc) : NULL;
    int rc = y ? 0 : DP_ENOMEM;
    if (!rc && ops->softmax_masked) {
        rc = ops->softmax_masked(y, xc, mv);
    } else if (!rc) {
        /* No fused kernel: the two passes it replaces, with the same rounding. */
        dp_tensor *sum = dp_empty_like(xc);
        rc = sum ? ops->binary(sum, xc, mv, DP_BIN_ADD) : DP_ENOMEM;
        if (!rc) rc = ops->softmax(y, sum, dim, 0);
        dp_tensor_release(sum);
    }
    dp_tensor_release(mv);
    if (!xc) return NULL;
    return finish(MOP, xc, y, rc, dim, 0);
}
