/* ops_reduce.c: checked, autograd-aware reductions: sum and mean over a set of dims, max and
 * argmax along one dim. The kernel always writes the keepdim shape; without keepdim the result
 * is a view of it with the reduced dims dropped (made before the node is recorded, so the view
 * is no separate graph op). */
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

/* DP_EUNSUPPORTED for a device table without the kernel op needs. */
static int no_kernel(const char *op, const dp_tensor *x) {
    return dp_fail(DP_EUNSUPPORTED, "%s: the %s backend has no kernel for it (%s)", op,
                   dp_device_name(x->device), dp_tensor_desc(x));
}

/* Bit d of *mask set for each reduced dim; ndims = 0 selects every dim. */
static int parse_dims(const char *op, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                      uint32_t *mask) {
    *mask = 0;
    if (ndims == 0) {
        *mask = (1u << x->ndim) - 1u;
        return 0;
    }
    if (ndims < 0 || ndims > (x->ndim ? x->ndim : 1))
        return dp_fail(DP_EARG, "%s: %d dims requested for %s, expected 0 (all dims) to %d", op, ndims,
                       dp_tensor_desc(x), x->ndim);
    if (!dims) return dp_fail(DP_EARG, "%s: %d dims requested but the dims list is NULL", op, ndims);
    for (int i = 0; i < ndims; i++) {
        int32_t d = dims[i];
        if (dp_norm_dim(op, &d, x->ndim)) return DP_EINDEX;
        if (x->ndim == 0) continue;
        if (*mask & (1u << d)) {
            char list[128];
            size_t used = (size_t)snprintf(list, sizeof list, "[");
            for (int j = 0; j < ndims && used < sizeof list; j++)
                used += (size_t)snprintf(list + used, sizeof list - used, j ? ",%d" : "%d", dims[j]);
            if (used < sizeof list) snprintf(list + used, sizeof list - used, "]");
            return dp_fail(DP_EARG, "%s: dim %d appears twice in dims %s for %s", op, d, list,
                           dp_tensor_desc(x));
        }
        *mask |= 1u << d;
    }
    return 0;
}

static int64_t reduced_count(const dp_tensor *x, uint32_t mask) {
    int64_t n = 1;
    for (int d = 0; d < x->ndim; d++)
        if (mask & (1u << d)) n *= x->shape[d];
    return n;
}

/* out (keepdim shape) = op over the masked dims of x; a raw result, not in the graph. */
static dp_tensor *reduce_raw(const char *op, dp_tensor *x, uint32_t mask, dp_redop rop) {
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    if (!ops->reduce || !ops->copy) { no_kernel(op, x); return NULL; }
    int64_t kshape[8];
    int32_t dims[8], nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        kshape[d] = mask & (1u << d) ? 1 : x->shape[d];
        if (mask & (1u << d)) dims[nd++] = d;
    }
    dp_tensor *out = dp_empty_as(x, x->dtype, x->ndim, kshape);
    if (!out) return NULL;
    int rc = nd ? ops->reduce(out, x, nd, dims, rop) : ops->copy(out, x);
    if (rc) {
        dp_error_prefix(op);
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* The keepdim-shaped out without its reduced dims (steals out's reference). */
static dp_tensor *drop_dims(dp_tensor *out, uint32_t mask) {
    int64_t shape[8], stride[8];
    int n = 0;
    for (int d = 0; d < out->ndim; d++)
        if (!(mask & (1u << d))) shape[n++] = out->shape[d];
    dp_contiguous_strides(stride, n, shape);
    dp_tensor *v = dp_tensor_view_of(out, n, shape, stride, out->offset);
    dp_tensor_release(out);
    return v;
}

/* ---------------------------------------------------------------- sum, mean */

/* g (the output's shape) broadcast back over the reduced dims and scaled: a stride-0 view of g
 * made contiguous by the copy or the scaling. */
static int sum_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0];
    uint32_t mask = (uint32_t)node->ints[0];
    int keepdim = (int)node->ints[1];
    double scale = node->scalars[0];
    int64_t stride[8];
    for (int d = 0, j = 0; d < x->ndim; d++) {
        if (mask & (1u << d)) {
            stride[d] = 0;
            if (keepdim) j++;
        } else {
            stride[d] = g->stride[j++];
        }
    }
    dp_tensor *v = dp_tensor_view_of(g, x->ndim, x->shape, stride, g->offset);
    if (!v) return DP_ENOMEM;
    gi[0] = scale == 1.0 ? dp_contiguous(v) : dp_affine(v, scale, 0.0);
    dp_tensor_release(v);
    return gi[0] ? 0 : DP_ENOMEM;
}

static dp_tensor *sum_or_mean(const char *op, dp_tensor *x, int32_t ndims, const int32_t *dims,
                              int32_t keepdim, dp_redop rop) {
    uint32_t mask;
    if (!x) return dp_fail_null(DP_EARG, "%s: tensor is NULL", op);
    if (dp_check_float(op, x) || parse_dims(op, x, ndims, dims, &mask)) return NULL;
    dp_tensor *out = reduce_raw(op, x, mask, rop);
    if (out && !keepdim) out = drop_dims(out, mask);
    if (!out || !dp_autograd_wanted(1, &x)) return out;
    dp_node *node = dp_autograd_record(out, op, sum_backward, 1, &x);
    if (!node) { dp_tensor_release(out); return NULL; }
    int64_t count = reduced_count(x, mask);
    node->ints[0] = mask;
    node->ints[1] = keepdim ? 1 : 0;
    node->scalars[0] = rop == DP_RED_MEAN ? (count ? 1.0 / (double)count : 0.0) : 1.0;
    return out;
}

dp_tensor *dp_sum(dp_tensor *x, int32_t ndims, const int32_t *dims, int32_t keepdim) {
    return sum_or_mean("sum", x, ndims, dims, keepdim, DP_RED_SUM);
}

dp_tensor *dp_mean(dp_tensor *x, int32_t ndims, const int32_t *dims, int32_t keepdim) {
    return sum_or_mean("mean", x, ndims, dims, keepdim, DP_RED_MEAN);
}

/* ---------------------------------------------------------------- max, argmax */

/* Checks shared by max and argmax; normalises *dim. */
static int check_dim_op(const char *op, dp_tensor *x, int32_t *dim) {
    if (!x) return dp_fail(DP_EARG, "%s: tensor is NULL", op);
    if (dp_norm_dim(op, dim, x->ndim)) return DP_EINDEX;
    if (x->ndim && x->shape[*dim] == 0)
        return dp_fail(DP_ESHAPE, "%s: dim %d of %s is empty; %s needs at least one element", op, *dim,
                       dp_tensor_desc(x), op);
    return 0;
}

/* i64 argmax of x along dim in the keepdim shape (raw). */
static dp_tensor *argmax_raw(const char *op, dp_tensor *x, int32_t dim) {
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return NULL;
    if (!ops->argmax) { no_kernel(op, x); return NULL; }
    int64_t kshape[8];
    for (int d = 0; d < x->ndim; d++) kshape[d] = d == dim ? 1 : x->shape[d];
    dp_tensor *out = dp_empty_as(x, DP_I64, x->ndim, kshape);
    if (out && ops->argmax(out, x, dim)) {
        dp_error_prefix(op);
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* The gradient goes to the first maximum: the flat positions (in x's row-major order) of the
 * saved argmax indices receive g through a scatter-add into zeros viewed as (numel, 1). */
static int max_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0], *am = node->saved[0];
    int32_t dim = (int32_t)node->ints[0];
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->scatter_add_rows) return no_kernel("max", x);
    int64_t n = dp_tensor_numel(am), numel = dp_tensor_numel(x), len = x->shape[dim], inner = 1;
    for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    dp_tensor *idx = dp_tensor_empty(DP_I64, x->device, 1, &n);
    dp_tensor *gx = dp_tensor_zeros(x->dtype, x->device, x->ndim, x->shape);
    dp_tensor *gc = dp_contiguous(g);
    int rc = pos && idx && gx && gc ? 0 : DP_ENOMEM;
    if (!rc) rc = ops->memcpy_d2h(pos, am->data, sizeof(int64_t) * (size_t)n);
    if (!rc) {
        for (int64_t o = 0; o < n; o++) pos[o] = (o / inner) * len * inner + pos[o] * inner + o % inner;
        rc = ops->memcpy_h2d(idx->data, pos, sizeof(int64_t) * (size_t)n);
    }
    if (!rc) {
        int64_t shape_x[2] = {numel, 1}, shape_g[2] = {n, 1}, stride[2] = {1, 1};
        dp_tensor *gx2 = dp_tensor_view_of(gx, 2, shape_x, stride, gx->offset);
        dp_tensor *gc2 = dp_tensor_view_of(gc, 2, shape_g, stride, gc->offset);
        rc = gx2 && gc2 ? ops->scatter_add_rows(gx2, idx, gc2) : DP_ENOMEM;
        dp_tensor_release(gx2);
        dp_tensor_release(gc2);
    }
    free(pos);
    dp_tensor_release(idx);
    dp_tensor_release(gc);
    if (rc) {
        dp_tensor_release(gx);
        return rc;
    }
    gi[0] = gx;
    return 0;
}

dp_tensor *dp_max(dp_tensor *x, int32_t dim, int32_t keepdim) {
    if (check_dim_op("max", x, &dim) || dp_check_float("max", x)) return NULL;
    uint32_t mask = x->ndim ? 1u << dim : 0u;
    dp_tensor *out = reduce_raw("max", x, mask, DP_RED_MAX);
    if (out && !keepdim) out = drop_dims(out, mask);
    if (!out || !dp_autograd_wanted(1, &x)) return out;
    if (x->ndim == 0) {
        /* The max of one element is that element: the gradient passes straight through. */
        dp_node *node = dp_autograd_record(out, "max", sum_backward, 1, &x);
        if (!node) { dp_tensor_release(out); return NULL; }
        node->scalars[0] = 1.0;
        return out;
    }
    dp_tensor *am = argmax_raw("max", x, dim);
    dp_node *node = am ? dp_autograd_record(out, "max", max_backward, 1, &x) : NULL;
    if (!node) {
        dp_tensor_release(am);
        dp_tensor_release(out);
        return NULL;
    }
    dp_node_save(node, 0, am);
    dp_tensor_release(am);
    node->ints[0] = dim;
    node->ints[1] = keepdim ? 1 : 0;
    return out;
}

dp_tensor *dp_argmax(dp_tensor *x, int32_t dim, int32_t keepdim) {
    if (check_dim_op("argmax", x, &dim)) return NULL;
    if (!dp_dtype_is_float(x->dtype) && x->dtype != DP_I32 && x->dtype != DP_I64 && x->dtype != DP_U8)
        return dp_fail_null(DP_EDTYPE, "argmax: expected a float, i32, i64 or u8 tensor, got %s",
                            dp_tensor_desc(x));
    if (x->ndim == 0) return dp_tensor_zeros(DP_I64, x->device, 0, NULL);
    dp_tensor *out = argmax_raw("argmax", x, dim);
    if (out && !keepdim) out = drop_dims(out, 1u << dim);
    return out;
}
