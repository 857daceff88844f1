/* ops_elementwise.c: checked, autograd-aware binary ops (add, sub, mul, div, maximum) with NumPy
 * broadcasting and float dtype promotion, masked_fill, and the in-place helpers fill_, copy_,
 * axpy_ and scale_ (each counting a write in the storage's version). Arguments are checked here
 * once; the arithmetic runs in the device's kernels (dp_ops_for). */
#include <string.h>
#include "internal.h"

/* A sub-op failed inside a backward function; its message is already set. */
#define FAILED DP_EINTERNAL

/* ---------------------------------------------------------------- shared checks */

/* 1 when src can be broadcast to shape[ndim] (shape is fixed, only src's size-1 dims stretch). */
static int broadcasts_to(const dp_tensor *src, int32_t ndim, const int64_t *shape) {
    if (src->ndim > ndim) return 0;
    for (int i = 1; i <= src->ndim; i++) {
        int64_t s = src->shape[src->ndim - i], d = shape[ndim - i];
        if (s != d && s != 1) return 0;
    }
    return 1;
}

/* 1 when two elements of t share an address (an expanded view): writing through t is then
 * ill-defined. Conservative: sorted by stride, each dim must step past all smaller ones. */
static int overlaps_itself(const dp_tensor *t) {
    if (dp_tensor_numel(t) == 0) return 0;
    int64_t stride[8], size[8];
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) continue;
        int k = n++;
        while (k > 0 && stride[k - 1] > t->stride[d]) {
            stride[k] = stride[k - 1];
            size[k] = size[k - 1];
            k--;
        }
        stride[k] = t->stride[d];
        size[k] = t->shape[d];
    }
    int64_t span = 0;
    for (int k = 0; k < n; k++) {
        if (stride[k] <= span) return 1;
        span += stride[k] * (size[k] - 1);
    }
    return 0;
}

/* Byte range [lo, hi) that t's elements occupy (lo == hi when empty). */
static void byte_range(const dp_tensor *t, uintptr_t *lo, uintptr_t *hi) {
    *lo = *hi = (uintptr_t)t->data;
    if (dp_tensor_numel(t) == 0) return;
    int64_t last = 0;
    for (int d = 0; d < t->ndim; d++) last += (t->shape[d] - 1) * t->stride[d];
    *hi = *lo + (uintptr_t)((last + 1) * dp_dtype_size(t->dtype));
}

/* 1 when reading src while writing dst elementwise could read an element already written:
 * they share memory and are not the very same elements in the same order. */
static int needs_staging(const dp_tensor *dst, const dp_tensor *src) {
    if (dst->storage != src->storage) return 0;
    uintptr_t dlo, dhi, slo, shi;
    byte_range(dst, &dlo, &dhi);
    byte_range(src, &slo, &shi);
    if (dlo == dhi || slo == shi || dhi <= slo || shi <= dlo) return 0;
    if (dst->data != src->data || dst->dtype != src->dtype || dst->ndim != src->ndim) return 1;
    for (int d = 0; d < dst->ndim; d++)
        if (dst->shape[d] != src->shape[d] || (dst->shape[d] > 1 && dst->stride[d] != src->stride[d]))
            return 1;
    return 0;
}

/* src as seen by a kernel writing dst: broadcast to dst's shape, and first copied aside when
 * it overlaps dst. NULL on failure (message set, prefixed with op). */
static dp_tensor *source_for(const char *op, const dp_tensor *dst, const dp_tensor *src,
                             const dp_ops *ops) {
    dp_tensor *staged = NULL;
    if (needs_staging(dst, src)) {
        staged = dp_tensor_empty(src->dtype, src->device, src->ndim, src->shape);
        if (!staged || ops->copy(staged, src)) {
            dp_error_prefix(op);
            dp_tensor_release(staged);
            return NULL;
        }
        src = staged;
    }
    dp_tensor *view = dp_broadcast_view(src, dst->ndim, dst->shape);
    if (!view) dp_error_prefix(op);
    dp_tensor_release(staged);
    return view;
}

static const dp_ops *ops_or_fail(const char *op, dp_device device) {
    const dp_ops *ops = dp_ops_for(device);
    if (!ops) dp_error_prefix(op);
    return ops;
}

/* A backend may leave table entries it does not implement yet NULL. */
static int no_kernel(const char *op, const dp_tensor *x) {
    return dp_fail(DP_EUNSUPPORTED, "%s: the %s backend has no kernel for it (%s)", op,
                   dp_device_name(x->device), dp_tensor_desc(x));
}

/* ---------------------------------------------------------------- binary ops */

static int check_pair(const char *op, const dp_tensor *a, const dp_tensor *b) {
    if (!a || !b)
        return dp_fail(DP_EARG, "%s: tensor is NULL (a is %s, b is %s)", op, dp_tensor_desc(a),
                       dp_tensor_desc(b));
    int rc = dp_check_same_device(op, a, b);
    if (rc) return rc;
    if (a->dtype != b->dtype && !(dp_dtype_is_float(a->dtype) && dp_dtype_is_float(b->dtype)))
        return dp_fail(DP_EDTYPE, "%s: dtypes differ (a is %s, b is %s); only float dtypes are "
                       "promoted, cast integer operands first", op, dp_tensor_desc(a),
                       dp_tensor_desc(b));
    return dp_check_float(op, a);
}

/* Width class of a float dtype for promotion: fp8 < bf16, f16 < f32 < f64. */
static int float_rank(dp_dtype d) {
    switch (d) {
    case DP_FP8_E4M3: case DP_FP8_E5M2: return 0;
    case DP_BF16: case DP_F16: return 1;
    case DP_F32: return 2;
    default: return 3;
    }
}

/* The dtype two float operands meet in: the wider one, or f32 for two different formats of the
 * same width (bf16/f16 and e4m3/e5m2 each hold values the other cannot). */
static dp_dtype promoted(dp_dtype a, dp_dtype b) {
    if (a == b) return a;
    int ra = float_rank(a), rb = float_rank(b);
    if (ra != rb) return ra > rb ? a : b;
    return DP_F32;
}

/* out = a op b, broadcast, without autograd. */
static dp_tensor *binary_raw(const char *op, dp_binop bop, const dp_tensor *a, const dp_tensor *b) {
    int32_t ndim;
    int64_t shape[8];
    if (dp_broadcast_shapes(op, a, b, &ndim, shape)) return NULL;
    const dp_ops *ops = ops_or_fail(op, a->device);
    if (!ops) return NULL;
    if (!ops->binary) {
        no_kernel(op, a);
        return NULL;
    }
    dp_tensor *out = dp_empty_as(a, a->dtype, ndim, shape);
    dp_tensor *va = out ? dp_broadcast_view(a, ndim, shape) : NULL;
    dp_tensor *vb = va ? dp_broadcast_view(b, ndim, shape) : NULL;
    int rc = vb ? ops->binary(out, va, vb, bop) : DP_ENOMEM;
    if (!vb) dp_error_prefix(op);
    dp_tensor_release(va);
    dp_tensor_release(vb);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

static dp_tensor *binary_op(const char *op, dp_binop bop, dp_backward_fn backward, dp_tensor *a,
                            dp_tensor *b) {
    if (check_pair(op, a, b)) return NULL;
    if (a->dtype != b->dtype) {
        /* Promote through dp_cast so each operand's gradient comes back in its own dtype. */
        dp_dtype to = promoted(a->dtype, b->dtype);
        dp_tensor *pa = dp_cast(a, to), *pb = pa ? dp_cast(b, to) : NULL;
        dp_tensor *out = pb ? binary_op(op, bop, backward, pa, pb) : NULL;
        if (!pb) dp_error_prefix(op);
        dp_tensor_release(pa);
        dp_tensor_release(pb);
        return out;
    }
    dp_tensor *out = binary_raw(op, bop, a, b);
    dp_tensor *inputs[2] = { a, b };
    if (!out || !dp_autograd_wanted(2, inputs)) return out;
    if (!dp_autograd_record(out, op, backward, 2, inputs)) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* Hand g (a full output-shaped gradient, consumed) to input i, summed back to its shape. */
static int give(dp_node *node, dp_tensor **gi, int i, dp_tensor *g) {
    if (!g) return FAILED;
    dp_tensor *x = node->inputs[i];
    gi[i] = dp_sum_to_shape(g, x->ndim, x->shape);
    dp_tensor_release(g);
    return gi[i] ? 0 : FAILED;
}

static int wants(const dp_node *node, int i) { return node->inputs[i]->requires_grad; }

static dp_tensor *retained(dp_tensor *t) {
    dp_tensor_retain(t);
    return t;
}

static int add_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    if (wants(node, 0) && give(node, gi, 0, retained(g))) return FAILED;
    if (wants(node, 1) && give(node, gi, 1, retained(g))) return FAILED;
    return 0;
}

static int sub_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    if (wants(node, 0) && give(node, gi, 0, retained(g))) return FAILED;
    if (wants(node, 1) && give(node, gi, 1, dp_neg(g))) return FAILED;
    return 0;
}

static int mul_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (wants(node, 0) && give(node, gi, 0, dp_mul(g, b))) return FAILED;
    if (wants(node, 1) && give(node, gi, 1, dp_mul(g, a))) return FAILED;
    return 0;
}

/* d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -(g/b) * a / b. */
static int div_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *a = node->inputs[0], *b = node->inputs[1];
    dp_tensor *g_over_b = dp_div(g, b);
    if (!g_over_b) return FAILED;
    int rc = 0;
    if (wants(node, 1)) {
        dp_tensor *t = dp_mul(g_over_b, a);
        dp_tensor *q = t ? dp_div(t, b) : NULL;
        rc = give(node, gi, 1, q ? dp_neg(q) : NULL);
        dp_tensor_release(q);
        dp_tensor_release(t);
    }
    if (!rc && wants(node, 0)) rc = give(node, gi, 0, retained(g_over_b));
    dp_tensor_release(g_over_b);
    return rc;
}

/* b gets g where b > a strictly (the relu derivative of b - a), a gets the rest, so ties go
 * to a. */
static int maximum_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    dp_tensor *a = node->inputs[0], *b = node->inputs[1];
    const dp_ops *ops = ops_or_fail("maximum backward", g->device);
    if (!ops) return FAILED;
    if (!ops->unary_backward) return no_kernel("maximum backward", g);
    dp_tensor *d = dp_sub(b, a);
    dp_tensor *gb = d ? dp_empty_as(g, d->dtype, g->ndim, g->shape) : NULL;
    int rc = gb ? ops->unary_backward(gb, g, d, NULL, DP_UN_RELU, 0.0, 0.0) : FAILED;
    dp_tensor_release(d);
    if (!rc && wants(node, 0)) rc = give(node, gi, 0, dp_sub(g, gb));
    if (!rc && wants(node, 1)) rc = give(node, gi, 1, retained(gb));
    dp_tensor_release(gb);
    return rc;
}

dp_tensor *dp_add(dp_tensor *a, dp_tensor *b) {
    return binary_op("add", DP_BIN_ADD, add_backward, a, b);
}
dp_tensor *dp_sub(dp_tensor *a, dp_tensor *b) {
    return binary_op("sub", DP_BIN_SUB, sub_backward, a, b);
}
dp_tensor *dp_mul(dp_tensor *a, dp_tensor *b) {
    return binary_op("mul", DP_BIN_MUL, mul_backward, a, b);
}
dp_tensor *dp_div(dp_tensor *a, dp_tensor *b) {
    return binary_op("div", DP_BIN_DIV, div_backward, a, b);
}
dp_tensor *dp_maximum(dp_tensor *a, dp_tensor *b) {
    return binary_op("maximum", DP_BIN_MAX, maximum_backward, a, b);
}

/* ---------------------------------------------------------------- masked_fill */

static int masked_fill_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    gi[0] = dp_masked_fill(g, node->saved[0], 0.0);
    return gi[0] ? 0 : FAILED;
}

dp_tensor *dp_masked_fill(dp_tensor *x, dp_tensor *mask, double value) {
    const char *op = "masked_fill";
    if (!x || !mask)
        return dp_fail_null(DP_EARG, "%s: tensor is NULL (x is %s, mask is %s)", op, dp_tensor_desc(x),
                            dp_tensor_desc(mask));
    if (dp_check_same_device(op, x, mask)) return NULL;
    if (mask->dtype != DP_U8)
        return dp_fail_null(DP_EDTYPE, "%s: mask must be u8, got %s (x is %s)", op, dp_tensor_desc(mask),
                            dp_tensor_desc(x));
    if (!broadcasts_to(mask, x->ndim, x->shape))
        return dp_fail_null(DP_ESHAPE, "%s: mask %s does not broadcast to x %s", op, dp_tensor_desc(mask),
                            dp_tensor_desc(x));
    const dp_ops *ops = ops_or_fail(op, x->device);
    if (!ops) return NULL;
    if (!ops->masked_fill) {
        no_kernel(op, x);
        return NULL;
    }
    dp_tensor *out = dp_empty_like(x);
    dp_tensor *vm = out ? dp_broadcast_view(mask, x->ndim, x->shape) : NULL;
    int rc = vm ? ops->masked_fill(out, x, vm, value) : DP_ENOMEM;
    if (!vm) dp_error_prefix(op);
    dp_tensor_release(vm);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    if (!dp_autograd_wanted(1, &x)) return out;
    dp_node *node = dp_autograd_record(out, op, masked_fill_backward, 1, &x);
    if (!node) {
        dp_tensor_release(out);
        return NULL;
    }
    dp_node_save(node, 0, mask);
    node->scalars[0] = value;
    return out;
}

/* ---------------------------------------------------------------- in-place helpers */

int dp_fill_(dp_tensor *x, double value) {
    if (!x) return dp_fail(DP_EARG, "fill_: tensor is NULL");
    const dp_ops *ops = ops_or_fail("fill_", x->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->fill) return no_kernel("fill_", x);
    dp_tensor_bump_version(x);
    return ops->fill(x, value);
}

/* dst = src between a host and a device: convert and broadcast on src's device into a contiguous
 * tensor of dst's dtype and shape, move the bytes, then scatter into dst if it is strided. */
static int copy_across_devices(dp_tensor *dst, const dp_tensor *src) {
    const char *op = "copy_";
    const dp_ops *dops = ops_or_fail(op, dst->device), *sops = ops_or_fail(op, src->device);
    if (!dops || !sops) return DP_EDEVICE;
    if (!dops->copy || !dops->memcpy_h2d) return no_kernel(op, dst);
    if (!sops->copy || !sops->memcpy_d2h) return no_kernel(op, src);
    /* The non-host table moves the bytes either way. */
    const dp_ops *mover = dst->device == DP_CPU ? sops : dops;
    int direct = dp_tensor_is_contiguous(dst);
    /* A contiguous source already in dst's dtype and shape moves as is: no packing, so a copy
     * from pinned memory (dp_tensor_empty_pinned) stays asynchronous. */
    if (direct && src->dtype == dst->dtype && src->ndim == dst->ndim && dp_tensor_is_contiguous(src) &&
        !memcmp(src->shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim)) {
        size_t bytes = (size_t)dp_tensor_numel(dst) * (size_t)dp_dtype_size(dst->dtype);
        return dst->device == DP_CPU ? mover->memcpy_d2h(dst->data, src->data, bytes)
                                     : mover->memcpy_h2d(dst->data, src->data, bytes);
    }
    dp_tensor *packed = dp_tensor_empty(dst->dtype, src->device, dst->ndim, dst->shape);
    dp_tensor *landing = direct || !packed ? NULL
                       : dp_tensor_empty(dst->dtype, dst->device, dst->ndim, dst->shape);
    if (!packed || (!direct && !landing)) {
        dp_error_prefix(op);
        dp_tensor_release(packed);
        return DP_ENOMEM;
    }
    dp_tensor *view = source_for(op, packed, src, sops);
    int rc = view ? sops->copy(packed, view) : DP_ENOMEM;
    if (!rc) {
        void *to = direct ? dst->data : landing->data;
        size_t bytes = (size_t)dp_tensor_numel(dst) * (size_t)dp_dtype_size(dst->dtype);
        rc = dst->device == DP_CPU ? mover->memcpy_d2h(to, packed->data, bytes)
                                   : mover->memcpy_h2d(to, packed->data, bytes);
    }
    if (!rc && !direct) rc = dops->copy(dst, landing);
    dp_tensor_release(view);
    dp_tensor_release(landing);
    dp_tensor_release(packed);
    return rc;
}

int dp_copy_(dp_tensor *dst, const dp_tensor *src) {
    const char *op = "copy_";
    if (!dst || !src)
        return dp_fail(DP_EARG, "%s: tensor is NULL (dst is %s, src is %s)", op, dp_tensor_desc(dst),
                       dp_tensor_desc(src));
    if (!broadcasts_to(src, dst->ndim, dst->shape))
        return dp_fail(DP_ESHAPE, "%s: src %s does not broadcast to dst %s", op, dp_tensor_desc(src),
                       dp_tensor_desc(dst));
    if (overlaps_itself(dst))
        return dp_fail(DP_EARG, "%s: dst %s has elements sharing memory (an expanded view); copy into "
                       "a tensor that owns each element", op, dp_tensor_desc(dst));
    /* Counted once the checks pass: a failure past here may have written part of dst. */
    dp_tensor_bump_version(dst);
    if (dst->device != src->device) return copy_across_devices(dst, src);
    const dp_ops *ops = ops_or_fail(op, dst->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->copy) return no_kernel(op, dst);
    dp_tensor *view = source_for(op, dst, src, ops);
    if (!view) return DP_ENOMEM;
    int rc = ops->copy(dst, view);
    dp_tensor_release(view);
    return rc;
}

int dp_axpy_(dp_tensor *dst, double alpha, const dp_tensor *src) {
    const char *op = "axpy_";
    if (!dst || !src)
        return dp_fail(DP_EARG, "%s: tensor is NULL (dst is %s, src is %s)", op, dp_tensor_desc(dst),
                       dp_tensor_desc(src));
    int rc = dp_check_same_device(op, dst, src);
    if (rc) return rc;
    if (dst->dtype != src->dtype)
        return dp_fail(DP_EDTYPE, "%s: dtypes differ (dst is %s, src is %s)", op, dp_tensor_desc(dst),
                       dp_tensor_desc(src));
    if ((rc = dp_check_float(op, dst))) return rc;
    if (!dp_tensor_is_contiguous(dst))
        return dp_fail(DP_EARG, "%s: dst %s must be contiguous", op, dp_tensor_desc(dst));
    if (!broadcasts_to(src, dst->ndim, dst->shape))
        return dp_fail(DP_ESHAPE, "%s: src %s does not broadcast to dst %s", op, dp_tensor_desc(src),
                       dp_tensor_desc(dst));
    const dp_ops *ops = ops_or_fail(op, dst->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->axpy || !ops->copy) return no_kernel(op, dst);
    dp_tensor *view = source_for(op, dst, src, ops);
    if (!view) return DP_ENOMEM;
    dp_tensor_bump_version(dst);
    rc = ops->axpy(dst, alpha, view);
    dp_tensor_release(view);
    return rc;
}

int dp_scale_(dp_tensor *dst, double alpha) {
    const char *op = "scale_";
    if (!dst) return dp_fail(DP_EARG, "%s: tensor is NULL", op);
    int rc = dp_check_float(op, dst);
    if (rc) return rc;
    const dp_ops *ops = ops_or_fail(op, dst->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->unary || !ops->copy) return no_kernel(op, dst);
    dp_tensor_bump_version(dst);
    /* Elementwise kernels may write over the very tensor they read; a strided dst goes through
     * a contiguous temporary, since kernel outputs are contiguous. */
    if (dp_tensor_is_contiguous(dst)) return ops->unary(dst, dst, DP_UN_AFFINE, alpha, 0.0);
    dp_tensor *tmp = dp_empty_like(dst);
    if (!tmp) {
        dp_error_prefix(op);
        return DP_ENOMEM;
    }
    rc = ops->unary(tmp, dst, DP_UN_AFFINE, alpha, 0.0);
    if (!rc) rc = ops->copy(dst, tmp);
    dp_tensor_release(tmp);
    return rc;
}
