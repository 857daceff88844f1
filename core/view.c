/* view.c: ops that re-describe a tensor's elements without copying (reshape, permute, narrow,
 * expand, ...), plus the copies that complete them (contiguous, clone, cast, cast_into). Each
 * records an autograd node whose backward routes the gradient back through the inverse geometry. */
#include <stdlib.h>
#include "internal.h"

static int check_arg(const char *op, const dp_tensor *x) {
    if (!x) return dp_fail(DP_EARG, "%s: tensor is NULL", op);
    return 0;
}

/* Record a one-input node on out when grad is wanted; on failure drop out. */
static dp_tensor *record1(dp_tensor *out, dp_tensor *x, const char *op, dp_backward_fn fn,
                          dp_node **node_out) {
    if (node_out) *node_out = NULL;
    if (!out || !dp_autograd_wanted(1, &x)) return out;
    dp_node *node = dp_autograd_record(out, op, fn, 1, &x);
    if (!node) { dp_tensor_release(out); return NULL; }
    if (node_out) *node_out = node;
    return out;
}

/* ---------------------------------------------------------------- reshape */

/* Strides for viewing x as shape without copying, or 0 when the layout does not allow it. */
static int view_strides(const dp_tensor *x, int32_t ndim, const int64_t *shape, int64_t *stride) {
    if (dp_tensor_is_contiguous(x) || dp_tensor_numel(x) == 0) {
        dp_contiguous_strides(stride, ndim, shape);
        return 1;
    }
    /* Walk both shapes, matching groups of old dims that are contiguous among themselves. */
    int i = 0, j = 0;
    while (i < x->ndim || j < ndim) {
        int64_t old_n = 1, new_n = 1;
        int i0 = i, j0 = j;
        if (i < x->ndim) old_n = x->shape[i++];
        if (j < ndim) new_n = shape[j++];
        while (old_n != new_n) {
            if (old_n < new_n && i < x->ndim) old_n *= x->shape[i++];
            else if (j < ndim) new_n *= shape[j++];
            else return 0;
        }
        /* Within a group, each non-trivial dim must step over exactly the next one. */
        int prev = -1;
        for (int k = i0; k < i; k++) {
            if (x->shape[k] == 1) continue;
            if (prev >= 0 && x->stride[prev] != x->stride[k] * x->shape[k]) return 0;
            prev = k;
        }
        int64_t s = prev >= 0 ? x->stride[prev] : 1;
        for (int k = j - 1; k >= j0; k--) { stride[k] = s; s *= shape[k]; }
    }
    return 1;
}

static int reshape_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0];
    gi[0] = dp_reshape(g, x->ndim, x->shape);
    return gi[0] ? 0 : DP_ESHAPE;
}

dp_tensor *dp_reshape(dp_tensor *x, int32_t ndim, const int64_t *shape) {
    if (check_arg("reshape", x)) return NULL;
    if (ndim < 0 || ndim > 8) return dp_fail_null(DP_ESHAPE, "reshape: %d dims requested, at most 8", ndim);
    int64_t s[8], known = 1, numel = dp_tensor_numel(x);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) { infer = i; continue; }
        if (s[i] < 0) return dp_fail_null(DP_ESHAPE, "reshape: bad size %lld at dim %d", (long long)s[i], i);
        known *= s[i];
    }
    if (infer >= 0) s[infer] = known ? numel / known : 0;
    char want[128];
    dp_shape_str(want, sizeof want, ndim, s);
    if (dp_shape_numel(ndim, s) != numel)
        return dp_fail_null(DP_ESHAPE, "reshape: cannot view %s (%lld elements) as %s", dp_tensor_desc(x),
                            (long long)numel, want);
    int64_t stride[8];
    dp_tensor *out;
    if (view_strides(x, ndim, s, stride)) {
        out = dp_tensor_view_of(x, ndim, s, stride, x->offset);
    } else {
        dp_tensor *c = dp_contiguous(x);
        if (!c) return NULL;
        dp_contiguous_strides(stride, ndim, s);
        out = dp_tensor_view_of(c, ndim, s, stride, c->offset);
        dp_tensor_release(c);
    }
    return record1(out, x, "reshape", reshape_backward, NULL);
}

dp_tensor *dp_unsqueeze(dp_tensor *x, int32_t dim) {
    if (check_arg("unsqueeze", x)) return NULL;
    int32_t d = dim < 0 ? dim + x->ndim + 1 : dim;
    if (d < 0 || d > x->ndim || x->ndim >= 8)
        return dp_fail_null(DP_EINDEX, "unsqueeze: dim %d out of range for %s", dim, dp_tensor_desc(x));
    int64_t s[8];
    for (int i = 0, j = 0; i <= x->ndim; i++) s[i] = i == d ? 1 : x->shape[j++];
    return dp_reshape(x, x->ndim + 1, s);
}

dp_tensor *dp_squeeze(dp_tensor *x, int32_t dim) {
    if (check_arg("squeeze", x) || dp_norm_dim("squeeze", &dim, x->ndim)) return NULL;
    if (x->shape[dim] != 1)
        return dp_fail_null(DP_ESHAPE, "squeeze: dim %d of %s has size %lld, expected 1", dim,
                            dp_tensor_desc(x), (long long)x->shape[dim]);
    int64_t s[8];
    for (int i = 0, j = 0; i < x->ndim; i++) if (i != dim) s[j++] = x->shape[i];
    return dp_reshape(x, x->ndim - 1, s);
}

/* ---------------------------------------------------------------- permute, transpose */

static int permute_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    int32_t inv[8];
    for (int i = 0; i < g->ndim; i++) inv[node->ints[i]] = i;
    gi[0] = dp_permute(g, inv);
    return gi[0] ? 0 : DP_EINTERNAL;
}

dp_tensor *dp_permute(dp_tensor *x, const int32_t *perm) {
    if (check_arg("permute", x)) return NULL;
    int seen[8] = {0};
    int64_t shape[8], stride[8];
    for (int i = 0; i < x->ndim; i++) {
        int p = perm[i];
        if (p < 0 || p >= x->ndim || seen[p])
            return dp_fail_null(DP_EARG, "permute: entry %d (%d) does not make a permutation of %d dims of %s",
                                i, p, x->ndim, dp_tensor_desc(x));
        seen[p] = 1;
        shape[i] = x->shape[p];
        stride[i] = x->stride[p];
    }
    dp_node *node;
    dp_tensor *out = record1(dp_tensor_view_of(x, x->ndim, shape, stride, x->offset), x, "permute",
                             permute_backward, &node);
    if (node) for (int i = 0; i < x->ndim; i++) node->ints[i] = perm[i];
    return out;
}

dp_tensor *dp_transpose(dp_tensor *x, int32_t dim0, int32_t dim1) {
    if (check_arg("transpose", x) || dp_norm_dim("transpose", &dim0, x->ndim) ||
        dp_norm_dim("transpose", &dim1, x->ndim))
        return NULL;
    int32_t perm[8];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[dim0] = dim1;
    perm[dim1] = dim0;
    return dp_permute(x, perm);
}

/* ---------------------------------------------------------------- narrow, slice, select */

/* The gradient of a strided window: zeros of x's shape with g copied into the same window. */
static int window_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0];
    dp_tensor *gx = dp_tensor_zeros(g->dtype, g->device, x->ndim, x->shape);
    if (!gx) return DP_ENOMEM;
    int32_t dim = (int32_t)node->ints[0];
    int64_t start = node->ints[1], count = node->ints[2], step = node->ints[3];
    int64_t shape[8], stride[8];
    for (int i = 0; i < x->ndim; i++) { shape[i] = gx->shape[i]; stride[i] = gx->stride[i]; }
    shape[dim] = count;
    stride[dim] *= step;
    dp_tensor *win = dp_tensor_view_of(gx, x->ndim, shape, stride, start * gx->stride[dim]);
    dp_tensor *src = node->ints[4] ? dp_unsqueeze(g, dim) : (dp_tensor_retain(g), g);
    int rc = win && src ? dp_copy_(win, src) : DP_ENOMEM;
    dp_tensor_release(src);
    dp_tensor_release(win);
    if (rc) { dp_tensor_release(gx); return rc; }
    gi[0] = gx;
    return 0;
}

static dp_tensor *window(const char *op, dp_tensor *x, int32_t dim, int64_t start, int64_t count,
                         int64_t step, int drop_dim) {
    if (check_arg(op, x) || dp_norm_dim(op, &dim, x->ndim)) return NULL;
    if (x->ndim == 0) return dp_fail_null(DP_ESHAPE, "%s: a 0-dim tensor has no dims to cut", op);
    int64_t size = x->shape[dim];
    if (step < 1) return dp_fail_null(DP_EARG, "%s: step %lld, expected >= 1", op, (long long)step);
    if (start < 0 || count < 0 || (count > 0 && start + (count - 1) * step >= size) || start > size)
        return dp_fail_null(DP_EINDEX, "%s: elements %lld..%lld (step %lld) out of range for dim %d of size %lld (%s)",
                            op, (long long)start, (long long)(start + (count - 1) * step), (long long)step, dim,
                            (long long)size, dp_tensor_desc(x));
    int64_t shape[8], stride[8];
    int n = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == dim && drop_dim) continue;
        shape[n] = i == dim ? count : x->shape[i];
        stride[n] = i == dim ? x->stride[i] * step : x->stride[i];
        n++;
    }
    dp_node *node;
    dp_tensor *out = record1(dp_tensor_view_of(x, n, shape, stride, x->offset + start * x->stride[dim]),
                             x, op, window_backward, &node);
    if (node) {
        node->ints[0] = dim; node->ints[1] = start; node->ints[2] = count; node->ints[3] = step;
        node->ints[4] = drop_dim;
    }
    return out;
}

dp_tensor *dp_narrow(dp_tensor *x, int32_t dim, int64_t start, int64_t length) {
    return window("narrow", x, dim, start, length, 1, 0);
}

dp_tensor *dp_slice(dp_tensor *x, int32_t dim, int64_t start, int64_t count, int64_t step) {
    return window("slice", x, dim, start, count, step, 0);
}

dp_tensor *dp_select(dp_tensor *x, int32_t dim, int64_t index) {
    if (x && x->ndim > 0) {
        int32_t d = dim;
        if (dp_norm_dim("select", &d, x->ndim)) return NULL;
        if (index < 0 || index >= x->shape[d])
            return dp_fail_null(DP_EINDEX, "select: index %lld out of range for dim %d of size %lld (%s)",
                                (long long)index, d, (long long)x->shape[d], dp_tensor_desc(x));
    }
    return window("select", x, dim, index, 1, 1, 1);
}

/* ---------------------------------------------------------------- expand */

static int expand_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *x = node->inputs[0];
    gi[0] = dp_sum_to_shape(g, x->ndim, x->shape);
    return gi[0] ? 0 : DP_EINTERNAL;
}

dp_tensor *dp_expand(dp_tensor *x, int32_t ndim, const int64_t *shape) {
    if (check_arg("expand", x)) return NULL;
    if (ndim < x->ndim || ndim > 8)
        return dp_fail_null(DP_ESHAPE, "expand: cannot expand %s to %d dims", dp_tensor_desc(x), ndim);
    int64_t s[8];
    for (int i = 0; i < ndim; i++) {
        int j = i - (ndim - x->ndim);
        s[i] = shape[i] == -1 && j >= 0 ? x->shape[j] : shape[i];
    }
    return record1(dp_broadcast_view(x, ndim, s), x, "expand", expand_backward, NULL);
}

/* ---------------------------------------------------------------- copies */

static int identity_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor_retain(g);
    gi[0] = g;
    return 0;
}

/* A raw contiguous copy of x in dtype (no autograd). */
static dp_tensor *copy_as(const dp_tensor *x, dp_dtype dtype) {
    dp_tensor *out = dp_empty_as(x, dtype, x->ndim, x->shape);
    if (out && dp_ops_for(x->device)->copy(out, x)) { dp_tensor_release(out); return NULL; }
    return out;
}

dp_tensor *dp_contiguous(dp_tensor *x) {
    if (check_arg("contiguous", x)) return NULL;
    if (dp_tensor_is_contiguous(x) || dp_tensor_numel(x) == 0) { dp_tensor_retain(x); return x; }
    return record1(copy_as(x, x->dtype), x, "contiguous", identity_backward, NULL);
}

dp_tensor *dp_clone(dp_tensor *x) {
    if (check_arg("clone", x)) return NULL;
    return record1(copy_as(x, x->dtype), x, "clone", identity_backward, NULL);
}

dp_tensor *dp_detach(dp_tensor *x) {
    if (check_arg("detach", x)) return NULL;
    return dp_tensor_view_of(x, x->ndim, x->shape, x->stride, x->offset);
}

static int cast_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    gi[0] = dp_cast(g, node->inputs[0]->dtype);
    return gi[0] ? 0 : DP_EINTERNAL;
}

dp_tensor *dp_cast(dp_tensor *x, dp_dtype dtype) {
    if (check_arg("cast", x)) return NULL;
    if ((unsigned)dtype >= DP_NUM_DTYPES) return dp_fail_null(DP_EDTYPE, "cast: unknown dtype %d", (int)dtype);
    if (x->dtype == dtype) { dp_tensor_retain(x); return x; }
    dp_tensor *out = copy_as(x, dtype);
    /* Gradients flow only between float dtypes. */
    if (!dp_dtype_is_float(dtype) || !dp_dtype_is_float(x->dtype)) return out;
    return record1(out, x, "cast", cast_backward, NULL);
}

dp_tensor *dp_cast_into(dp_tensor *x, dp_tensor *cache, int32_t refresh) {
    const char *op = "cast_into";
    if (!x || !cache)
        return dp_fail_null(DP_EARG, "%s: tensor is NULL (x is %s, cache is %s)", op, dp_tensor_desc(x),
                            dp_tensor_desc(cache));
    if (dp_check_same_device(op, x, cache)) return NULL;
    if (!dp_dtype_is_float(x->dtype) || !dp_dtype_is_float(cache->dtype))
        return dp_fail_null(DP_EDTYPE, "%s: x and cache must be float tensors (x is %s, cache is %s)",
                            op, dp_tensor_desc(x), dp_tensor_desc(cache));
    int same = x->ndim == cache->ndim;
    for (int i = 0; same && i < x->ndim; i++) same = x->shape[i] == cache->shape[i];
    if (!same)
        return dp_fail_null(DP_ESHAPE, "%s: cache %s must have x's shape (x is %s)", op,
                            dp_tensor_desc(cache), dp_tensor_desc(x));
    if (!dp_tensor_is_contiguous(cache))
        return dp_fail_null(DP_EARG, "%s: cache %s must be contiguous", op, dp_tensor_desc(cache));
    if (refresh != 0 && refresh != 1)
        return dp_fail_null(DP_EARG, "%s: refresh must be 0 (trust cache) or 1 (convert x into it), "
                            "got %d", op, (int)refresh);
    if (refresh) {
        if (cache->storage == x->storage)
            return dp_fail_null(DP_EARG, "%s: cache %s shares storage with x %s", op,
                                dp_tensor_desc(cache), dp_tensor_desc(x));
        const dp_ops *ops = dp_ops_for(x->device);
        if (!ops) return NULL;
        dp_tensor_bump_version(cache);
        if (ops->copy(cache, x)) { dp_error_prefix(op); return NULL; }
    }
    /* Named "cast" so that the DP engine looks through it to x, as through dp_cast. */
    dp_tensor *out = dp_tensor_view_of(cache, cache->ndim, cache->shape, cache->stride, cache->offset);
    return record1(out, x, "cast", cast_backward, NULL);
}
