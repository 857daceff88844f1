/* ops_layernorm.c: dp_layer_norm over the last dim, with optional weight and bias of shape
 * [D]. The forward saves the per-row mean and rstd (f32; f64 when x is f64, so gradient checks
 * in f64 stay exact) for the backward, which gives gx, gweight and gbias in one kernel call. */
#include <math.h>
#include "internal.h"

/* weight or bias (NULL allowed) must be [D] with x's dtype and device. */
static int check_param(const char *name, const dp_tensor *p, const dp_tensor *x, int64_t D) {
    if (!p) return 0;
    if (p->ndim != 1 || p->shape[0] != D) {
        char have[128];
        dp_shape_str(have, sizeof have, p->ndim, p->shape);
        return dp_fail(DP_ESHAPE, "layer_norm: %s has shape %s, expected [%lld] (last dim of x %s)", name,
                       have, (long long)D, dp_tensor_desc(x));
    }
    if (p->dtype != x->dtype)
        return dp_fail(DP_EDTYPE, "layer_norm: %s is %s, expected the dtype of x %s", name, dp_tensor_desc(p),
                       dp_tensor_desc(x));
    return dp_check_same_device("layer_norm", x, p);
}

/* inputs: x, then weight and bias where present (ints[0], ints[1] say which). */
static int layer_norm_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    int has_w = (int)node->ints[0], has_b = (int)node->ints[1];
    dp_tensor *x = node->inputs[0], *w = has_w ? node->inputs[1] : NULL;
    dp_tensor *b = has_b ? node->inputs[1 + has_w] : NULL;
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return DP_EDEVICE;
    /* Parameters registered with an active DP engine: per-sample gradients go to the engine. */
    dp_psg_param *pw = w && w->requires_grad ? dp_psg_lookup(w) : NULL;
    dp_psg_param *pb = b && b->requires_grad ? dp_psg_lookup(b) : NULL;
    if ((pw || pb) && dp_psg_tap_layer_norm(pw, pb, x, node->saved[0], node->saved[1], g)) return DP_EGRAPH;
    dp_tensor *gc = dp_contiguous(g);
    dp_tensor *gx = x->requires_grad ? dp_empty_like(x) : NULL;
    int want_w = w && w->requires_grad && !pw, want_b = b && b->requires_grad && !pb;
    dp_tensor *gw = want_w ? dp_empty_like(w) : NULL;
    dp_tensor *gb = want_b ? dp_empty_like(b) : NULL;
    int rc = gc && (gx || !x->requires_grad) && (gw || !want_w) && (gb || !want_b)
                 ? ops->layer_norm_backward(gx, gw, gb, gc, x, node->saved[0], node->saved[1], w)
                 : DP_ENOMEM;
    dp_tensor_release(gc);
    if (rc) {
        dp_tensor_release(gx);
        dp_tensor_release(gw);
        dp_tensor_release(gb);
        return rc;
    }
    gi[0] = gx;
    if (has_w) gi[1] = gw;
    if (has_b) gi[1 + has_w] = gb;
    return 0;
}

dp_tensor *dp_layer_norm(dp_tensor *x, dp_tensor *weight, dp_tensor *bias, double eps) {
    if (!x) return dp_fail_null(DP_EARG, "layer_norm: x is NULL");
    if (dp_check_float("layer_norm", x)) return NULL;
    if (x->ndim < 1)
        return dp_fail_null(DP_ESHAPE, "layer_norm: x %s has no last dim to normalise", dp_tensor_desc(x));
    int64_t D = x->shape[x->ndim - 1], R = dp_shape_numel(x->ndim - 1, x->shape);
    if (check_param("weight", weight, x, D) || check_param("bias", bias, x, D)) return NULL;
    if (!(eps >= 0) || isinf(eps))
        return dp_fail_null(DP_EARG, "layer_norm: eps %g for %s, expected a finite value >= 0", eps,
                            dp_tensor_desc(x));
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    if (!ops->layer_norm || !ops->layer_norm_backward)
        return dp_fail_null(DP_EUNSUPPORTED, "layer_norm: the %s backend has no layer norm kernel (%s)",
                            dp_device_name(x->device), dp_tensor_desc(x));
    dp_dtype stat = x->dtype == DP_F64 ? DP_F64 : DP_F32;
    dp_tensor *xc = dp_contiguous(x);
    dp_tensor *y = xc ? dp_empty_like(xc) : NULL;
    dp_tensor *mean = dp_empty_as(x, stat, 1, &R), *rstd = dp_empty_as(x, stat, 1, &R);
    int rc = y && mean && rstd ? ops->layer_norm(y, mean, rstd, xc, weight, bias, eps) : DP_ENOMEM;
    dp_tensor *inputs[3] = {xc, weight, bias};
    int32_t n = 1;
    if (weight) inputs[n++] = weight;
    if (bias) inputs[n++] = bias;
    if (!rc && dp_autograd_wanted(n, inputs)) {
        dp_node *node = dp_autograd_record(y, "layer_norm", layer_norm_backward, n, inputs);
        if (node) {
            dp_node_save(node, 0, mean);
            dp_node_save(node, 1, rstd);
            node->ints[0] = weight != NULL;
            node->ints[1] = bias != NULL;
            node->scalars[0] = eps;
        } else {
            rc = DP_ENOMEM;
        }
    }
    dp_tensor_release(mean);
    dp_tensor_release(rstd);
    dp_tensor_release(xc);
    if (rc) {
        dp_tensor_release(y);
        return NULL;
    }
    return y;
}
