/* ops_matmul_fp8.c: dp_matmul_fp8, (scale_a * a) @ (scale_b * b) for fp8 operands with f32
 * accumulation and a bf16, f16 or f32 result: argument checks, batch broadcasting, and dispatch to
 * the device's gemm_fp8 kernel (cuBLASLt's fp8 GEMM on sm_89+, exact widening elsewhere). The op
 * records no autograd node: it is an inference/forward building block, so inputs that would need
 * a gradient are refused rather than silently cut off from the graph. */
#include <float.h>
#include <math.h>
#include "internal.h"
#include "gemm_operands.h"

#define OP "dp_matmul_fp8"

static int is_fp8(dp_dtype dt) { return dt == DP_FP8_E4M3 || dt == DP_FP8_E5M2; }

/* Scales become the f32 scale factors of the kernels: finite, > 0 and normal in f32, so that
 * rounding them to f32 neither overflows nor flushes them to zero. */
static int check_scale(const char *name, double s) {
    if (isfinite(s) && s >= FLT_MIN && s <= FLT_MAX) return 0;
    return dp_fail(DP_EARG, OP ": %s must be finite and > 0, within f32's normal range "
                   "[2^-126, 3.4e38], got %g", name, s);
}

static int check_args(dp_tensor *a, dp_tensor *b, double scale_a, double scale_b, dp_dtype out_dtype) {
    if (!a || !b) return dp_fail(DP_EARG, OP ": %s is NULL (expected an fp8 tensor)", !a ? "a" : "b");
    if (!is_fp8(a->dtype) || !is_fp8(b->dtype))
        return dp_fail(DP_EDTYPE, OP ": %s must be fp8_e4m3 or fp8_e5m2, got %s",
                       !is_fp8(a->dtype) ? "a" : "b", dp_tensor_desc(!is_fp8(a->dtype) ? a : b));
    if (a->dtype == DP_FP8_E5M2 && b->dtype == DP_FP8_E5M2)
        return dp_fail(DP_EDTYPE, OP ": a and b are both fp8_e5m2; at least one must be fp8_e4m3 "
                       "(e5m2 x e5m2 has no fp8 tensor-core GEMM)");
    if (out_dtype != DP_BF16 && out_dtype != DP_F16 && out_dtype != DP_F32)
        return dp_fail(DP_EDTYPE, OP ": out_dtype must be bf16, f16 or f32, got %s",
                       dp_dtype_name(out_dtype));
    if (dp_check_same_device(OP, a, b)) return DP_EDEVICE;
    if (check_scale("scale_a", scale_a) || check_scale("scale_b", scale_b)) return DP_EARG;
    dp_tensor *inputs[2] = {a, b};
    if (dp_autograd_wanted(2, inputs))
        return dp_fail(DP_EARG, OP ": %s requires grad, but matmul_fp8 is not differentiable "
                       "(detach it or turn grad mode off)", a->requires_grad ? "a" : "b");
    if (a->ndim < 2 || b->ndim < 2)
        return dp_fail(DP_ESHAPE, OP ": a (..., M, K) and b (..., K, N) need at least 2 dims, got "
                       "a %s, b %s", dp_tensor_desc(a), dp_tensor_desc(b));
    if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return dp_fail(DP_ESHAPE, OP ": inner dims differ (a is %s with K = %lld, b is %s with K = "
                       "%lld)", dp_tensor_desc(a), (long long)a->shape[a->ndim - 1],
                       dp_tensor_desc(b), (long long)b->shape[b->ndim - 2]);
    return 0;
}

/* Batch dim i (of nb, NumPy-aligned from the right) of x: its size and stride, size 1 and stride
 * 0 where x has no such dim or broadcasts along it. */
static void batch_dim(const dp_tensor *x, int32_t nb, int32_t i, int64_t *size, int64_t *stride) {
    int32_t j = i - (nb - (x->ndim - 2));
    *size = j >= 0 ? x->shape[j] : 1;
    *stride = j >= 0 && x->shape[j] != 1 ? x->stride[j] : 0;
}

/* out (batch..., M, N) = the products, one kernel call per index of all batch dims but the last,
 * which becomes the kernel's batch (stride 0 where an operand broadcasts along it). */
static int dispatch(const dp_ops *ops, dp_tensor *out, const dp_tensor *a, const dp_tensor *b,
                    int32_t nb, double scale_a, double scale_b) {
    int64_t M = a->shape[a->ndim - 2], N = b->shape[b->ndim - 1];
    int64_t kb = 1, kbs_a = 0, kbs_b = 0, outer = 1;
    if (nb > 0) {
        int64_t sz;
        kb = out->shape[nb - 1];
        batch_dim(a, nb, nb - 1, &sz, &kbs_a);
        batch_dim(b, nb, nb - 1, &sz, &kbs_b);
    }
    for (int i = 0; i < nb - 1; i++) outer *= out->shape[i];
    for (int64_t o = 0; o < outer; o++) {
        int64_t rem = o, off_a = 0, off_b = 0, off_out = 0, out_step = kb * M * N;
        for (int i = nb - 2; i >= 0; i--) {
            int64_t k = rem % out->shape[i], sz, st;
            rem /= out->shape[i];
            batch_dim(a, nb, i, &sz, &st);
            off_a += (sz == 1 ? 0 : k) * st;
            batch_dim(b, nb, i, &sz, &st);
            off_b += (sz == 1 ? 0 : k) * st;
            off_out += k * out_step;
            out_step *= out->shape[i];
        }
        dp_tensor av, bv, ov;
        int32_t ta, tb;
        dp_gemm_operand(&av, &ta, a, kb, kbs_a, off_a);
        dp_gemm_operand(&bv, &tb, b, kb, kbs_b, off_b);
        int64_t oshape[3] = {kb, M, N}, ostride[3] = {M * N, N, 1};
        dp_gemm_raw_view(&ov, out, 3, oshape, ostride, off_out);
        int rc = ops->gemm_fp8(&ov, &av, &bv, ta, tb, scale_a, scale_b, 1.0, 0.0);
        if (rc) return rc;
    }
    return 0;
}

dp_tensor *dp_matmul_fp8(dp_tensor *a, dp_tensor *b, double scale_a, double scale_b,
                         dp_dtype out_dtype) {
    if (check_args(a, b, scale_a, scale_b, out_dtype)) return NULL;
    int32_t nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    int64_t shape[8];
    for (int i = 0; i < nb; i++) {
        int64_t sa, sb, st;
        batch_dim(a, nb, i, &sa, &st);
        batch_dim(b, nb, i, &sb, &st);
        if (sa != sb && sa != 1 && sb != 1)
            return dp_fail_null(DP_ESHAPE, OP ": batch dims do not broadcast (a is %s, b is %s)",
                                dp_tensor_desc(a), dp_tensor_desc(b));
        shape[i] = sa == 1 ? sb : sa;
    }
    shape[nb] = a->shape[a->ndim - 2];
    shape[nb + 1] = b->shape[b->ndim - 1];
    const dp_ops *ops = dp_ops_for(a->device);
    if (!ops) {
        dp_error_prefix(OP);
        return NULL;
    }
    if (!ops->gemm_fp8)
        return dp_fail_null(DP_EUNSUPPORTED, OP ": the %s backend has no fp8 GEMM (a is %s)",
                            ops->name, dp_tensor_desc(a));
    dp_tensor *out = dp_tensor_empty(out_dtype, a->device, nb + 2, shape);
    if (!out) return NULL;
    dp_tensor *ac = NULL, *bc = NULL;
    int rc = dp_gemm_readable(ops, a, &ac);
    if (!rc) rc = dp_gemm_readable(ops, b, &bc);
    if (!rc) rc = dispatch(ops, out, ac ? ac : a, bc ? bc : b, nb, scale_a, scale_b);
    dp_tensor_release(ac);
    dp_tensor_release(bc);
    if (rc) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}
