/* ops_quant.c: emulated fp8 compute (dp_fp8_scale_for, dp_fake_quant, dp_grad_quant in dp.h):
 * argument checks, the just-in-time scale, and the autograd nodes. fake_quant passes its gradient
 * straight through; grad_quant is the identity forward and quantises the gradient in backward with
 * the scale it reads then. The arithmetic runs in the device's kernels (quant_amax, fake_quant). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include "internal.h"

/* The largest finite value of a float dtype, 0 for other dtypes. */
static double max_finite(dp_dtype dtype) {
    switch (dtype) {
    case DP_FP8_E4M3: return 448.0;
    case DP_FP8_E5M2: return 57344.0;
    case DP_F16: return 65504.0;
    case DP_BF16: return 0x1.FEp127;
    case DP_F32: return FLT_MAX;
    case DP_F64: return DBL_MAX;
    default: return 0;
    }
}

/* Scales live in f32 tensors: keep them within f32's normal powers of two. */
enum { SCALE_EXP_MIN = -126, SCALE_EXP_MAX = 127 };

double dp_fp8_scale_for(double amax, dp_dtype dtype, int32_t margin) {
    double top = max_finite(dtype);
    if (top == 0) {
        dp_fail(DP_EDTYPE, "fp8_scale_for: dtype must be a float dtype, got %s", dp_dtype_name(dtype));
        return NAN;
    }
    amax = fabs(amax);
    if (amax == 0 || !isfinite(amax)) return 1.0;
    /* First guess from the exponents, then settle it exactly: amax * 2^e <= top * 2^-margin. */
    int ea, et;
    frexp(amax, &ea);
    frexp(top, &et);
    long e = (long)et - ea - margin;
    if (e < SCALE_EXP_MIN) e = SCALE_EXP_MIN;
    if (e > SCALE_EXP_MAX) e = SCALE_EXP_MAX;
    double limit = ldexp(top, -margin);
    while (e > SCALE_EXP_MIN && ldexp(amax, (int)e) > limit) e--;
    while (e < SCALE_EXP_MAX && ldexp(amax, (int)e + 1) <= limit) e++;
    return ldexp(1.0, (int)e);
}

/* ---------------------------------------------------------------- checks */

static int is_fp8(dp_dtype dt) { return dt == DP_FP8_E4M3 || dt == DP_FP8_E5M2; }

/* x: a float tensor; dtype: an fp8 dtype; scale: contiguous f32 (1) or (x.shape[0]) on x's
 * device; amax_out: NULL or like scale; just_in_time 0/1. *groups = scale's numel. */
static int check_args(const char *op, const dp_tensor *x, dp_dtype dtype, const dp_tensor *scale,
                      const dp_tensor *amax_out, int32_t jit, int64_t *groups) {
    if (!x) return dp_fail(DP_EARG, "%s: x is NULL", op);
    if (dp_check_float(op, x)) return DP_EDTYPE;
    if (!is_fp8(dtype))
        return dp_fail(DP_EDTYPE, "%s: dtype must be fp8_e4m3 or fp8_e5m2, got %s", op,
                       dp_dtype_name(dtype));
    if (!scale) return dp_fail(DP_EARG, "%s: scale is NULL (an f32 tensor of shape (1) or (x.shape[0]))", op);
    int64_t n = scale->ndim == 1 ? scale->shape[0] : -1;
    int per_example = x->ndim >= 1 && n == x->shape[0];
    if (scale->dtype != DP_F32 || (n != 1 && !per_example))
        return dp_fail(DP_ESHAPE, "%s: scale must be f32 of shape (1) or (x.shape[0]), got %s for x %s",
                       op, dp_tensor_desc(scale), dp_tensor_desc(x));
    if (dp_check_same_device(op, x, scale)) return DP_EDEVICE;
    if (!dp_tensor_is_contiguous(scale))
        return dp_fail(DP_EARG, "%s: scale %s must be contiguous", op, dp_tensor_desc(scale));
    if (amax_out) {
        if (amax_out->dtype != DP_F32 || amax_out->ndim != 1 || amax_out->shape[0] != n)
            return dp_fail(DP_ESHAPE, "%s: amax_out must be f32 of scale's shape %s, got %s", op,
                           dp_tensor_desc(scale), dp_tensor_desc(amax_out));
        if (dp_check_same_device(op, x, amax_out)) return DP_EDEVICE;
        if (!dp_tensor_is_contiguous(amax_out))
            return dp_fail(DP_EARG, "%s: amax_out %s must be contiguous", op, dp_tensor_desc(amax_out));
        if (amax_out->storage == scale->storage)
            return dp_fail(DP_EARG, "%s: amax_out and scale share storage; each needs its own", op);
    }
    if (jit != 0 && jit != 1)
        return dp_fail(DP_EARG, "%s: just_in_time must be 0 or 1, got %d", op, (int)jit);
    *groups = n;
    return 0;
}

/* The device table, failing (DP_EUNSUPPORTED, never a crash) when it lacks the fp8 kernels. */
static const dp_ops *quant_ops(const char *op, const dp_tensor *x) {
    const dp_ops *ops = dp_ops_for(x->device);
    if (!ops) {
        dp_error_prefix(op);
        return NULL;
    }
    if (!ops->quant_amax || !ops->fake_quant)
        return dp_fail_null(DP_EUNSUPPORTED, "%s: the %s backend has no fp8 quantisation kernels (%s)",
                            op, ops->name, dp_tensor_desc(x));
    return ops;
}

/* Every scale finite and > 0 (they are divided by). */
static int check_scale_values(const char *op, const dp_tensor *scale, int64_t groups) {
    double *v = malloc(sizeof(double) * (size_t)groups);
    if (!v) return dp_fail(DP_ENOMEM, "%s: out of host memory reading scale", op);
    int rc = dp_tensor_to_f64(scale, v);
    for (int64_t i = 0; rc == 0 && i < groups; i++)
        if (!(isfinite(v[i]) && v[i] > 0))
            rc = dp_fail(DP_EARG, "%s: scale[%lld] must be finite and > 0, got %g", op, (long long)i, v[i]);
    free(v);
    return rc;
}

/* ---------------------------------------------------------------- the raw op (no autograd) */

/* amax per group (into amax_out), scale from it (just_in_time), then out = q(x s) / s. x may be
 * strided; the kernels see a contiguous copy. Grad mode is off here. */
static dp_tensor *quantise(const char *op, dp_tensor *x, dp_dtype dtype, dp_tensor *scale,
                           dp_tensor *amax_out, int32_t jit, int64_t groups) {
    const dp_ops *ops = quant_ops(op, x);
    if (!ops) return NULL;
    if (!jit && check_scale_values(op, scale, groups)) return NULL;
    dp_tensor *xc = dp_contiguous(x), *amax = NULL, *out = NULL;
    float *host = NULL;
    double *am = NULL;
    int rc = xc ? 0 : DP_ENOMEM;
    if (!rc && (jit || amax_out)) {
        amax = dp_tensor_empty(DP_F64, x->device, 1, (int64_t[]){groups});
        rc = amax ? ops->quant_amax(amax, xc) : DP_ENOMEM;
        if (!rc && amax_out) rc = ops->copy(amax_out, amax);
    }
    if (!rc && jit) {
        host = malloc(sizeof(float) * (size_t)groups);
        am = malloc(sizeof(double) * (size_t)groups);
        rc = host && am ? dp_tensor_to_f64(amax, am) : dp_fail(DP_ENOMEM, "%s: out of host memory", op);
        for (int64_t i = 0; !rc && i < groups; i++) host[i] = (float)dp_fp8_scale_for(am[i], dtype, 0);
        if (!rc) rc = ops->memcpy_h2d(scale->data, host, sizeof(float) * (size_t)groups);
    }
    if (!rc) {
        out = dp_empty_as(x, x->dtype, x->ndim, x->shape);
        rc = out ? ops->fake_quant(out, xc, scale, dtype) : DP_ENOMEM;
    }
    free(host);
    free(am);
    dp_tensor_release(amax);
    dp_tensor_release(xc);
    if (rc) {
        dp_error_prefix(op);
        dp_tensor_release(out);
        return NULL;
    }
    if (jit) dp_tensor_bump_version(scale);
    if (amax_out) dp_tensor_bump_version(amax_out);
    return out;
}

/* ---------------------------------------------------------------- fake_quant */

/* Straight-through: the rounding is treated as the identity. */
static int fake_quant_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    (void)node;
    dp_tensor_retain(g);
    gi[0] = g;
    return 0;
}

dp_tensor *dp_fake_quant(dp_tensor *x, dp_dtype dtype, dp_tensor *scale, dp_tensor *amax_out,
                         int32_t just_in_time) {
    const char *op = "fake_quant";
    int64_t groups;
    if (check_args(op, x, dtype, scale, amax_out, just_in_time, &groups)) return NULL;
    int grad = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    dp_tensor *out = quantise(op, x, dtype, scale, amax_out, just_in_time, groups);
    dp_set_grad_enabled(grad);
    if (!out || !dp_autograd_wanted(1, &x)) return out;
    if (!dp_autograd_record(out, op, fake_quant_backward, 1, &x)) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- grad_quant */

/* g -> fake_quant(g) with the node's scale and amax_out as they are now. */
static int grad_quant_backward(dp_node *node, dp_tensor *g, dp_tensor **gi) {
    int64_t groups;
    dp_tensor *scale = node->saved[0], *amax_out = node->saved[1];
    dp_dtype dtype = (dp_dtype)node->ints[0];
    int32_t jit = (int32_t)node->ints[1];
    if (check_args("grad_quant backward", g, dtype, scale, amax_out, jit, &groups)) return DP_EARG;
    gi[0] = quantise("grad_quant backward", g, dtype, scale, amax_out, jit, groups);
    return gi[0] ? 0 : DP_EINTERNAL;
}

dp_tensor *dp_grad_quant(dp_tensor *x, dp_dtype dtype, dp_tensor *scale, dp_tensor *amax_out,
                         int32_t just_in_time) {
    const char *op = "grad_quant";
    int64_t groups;
    if (check_args(op, x, dtype, scale, amax_out, just_in_time, &groups)) return NULL;
    if (!quant_ops(op, x)) return NULL;
    if (!dp_autograd_wanted(1, &x)) {
        dp_tensor_retain(x);
        return x;
    }
    /* A new header on x's storage carries the node; the values are x's. */
    dp_tensor *out = dp_detach(x);
    if (!out) return NULL;
    dp_node *node = dp_autograd_record(out, op, grad_quant_backward, 1, &x);
    if (!node) {
        dp_tensor_release(out);
        return NULL;
    }
    node->ints[0] = dtype;
    node->ints[1] = just_in_time;
    dp_node_save(node, 0, scale);
    if (amax_out) dp_node_save(node, 1, amax_out);
    return out;
}
