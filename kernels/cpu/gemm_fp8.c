/* gemm_fp8.c: the CPU fp8 GEMM with scale factors (dp_ops.gemm_fp8) by exact widening: each fp8
 * operand is decoded into an f32 copy (every e4m3/e5m2 value is an f32 value), the f32 GEMM of
 * gemm.c runs on the copies with alpha * scale_a * scale_b as its alpha (products accumulate in
 * f32), and each result is rounded once, to nearest even, into out's dtype. The GEMM of the f32
 * copies takes every layout, batch and broadcast the gemm entry takes, so none is handled here.
 *
 * Scales: scale_a and scale_b are rounded to f32 (as the CUDA kernel, which reads f32 scale
 * factors, sees them); their product with alpha is formed in double and rounded once to f32, the
 * alpha sgemm receives. Exact (no rounding at all) when the scales are powers of two. */
#include <omp.h>
#include "cpu_kernels.h"
#include "gemm_impl.h"

/* Conversions shorter than this stay on one thread. */
#define PARALLEL_MIN_ELEMS ((int64_t)1 << 16)

/* An f32 copy of fp8 operand t ((r, c) or (batch, r, c), unit stride in one of its last two dims)
 * with t's shape, contiguous, except that a batch dim of stride 0 (one matrix shared by the
 * batch) keeps stride 0 and is decoded once. *hdr is a kernel argument header (never retained);
 * *buf the scratch to hand back. */
static int widen_operand(dp_tensor *hdr, float **buf, const dp_tensor *t, const char *name) {
    int32_t nd = t->ndim;
    if (nd != 2 && nd != 3)
        return dp_fail(DP_ESHAPE, "gemm_fp8: %s must be 2-D or 3-D, got %s", name, dp_tensor_desc(t));
    int shared = nd == 3 && t->stride[0] == 0;
    int64_t count = nd == 3 && !shared ? t->shape[0] : 1;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t s0 = nd == 3 ? t->stride[0] : 0, s1 = t->stride[nd - 2], s2 = t->stride[nd - 1];
    *buf = dp_gemm_scratch_get((size_t)(count * r * c) * sizeof(float));
    if (!*buf)
        return dp_fail(DP_ENOMEM, "gemm_fp8: no memory for the f32 copy of %s %s", name,
                       dp_tensor_desc(t));
    float *dst = *buf;
    const uint8_t *src = (const uint8_t *)t->data;
    dp_dtype dt = t->dtype;
    int64_t rows = count * r;
#pragma omp parallel for schedule(static) if (rows * c >= PARALLEL_MIN_ELEMS)
    for (int64_t q = 0; q < rows; q++) {
        int64_t m = q / r, i = q % r;
        const uint8_t *row = src + m * s0 + i * s1;
        for (int64_t j = 0; j < c; j++)
            dst[q * c + j] = dp_load_f32(row, dt, j * s2);
    }
    memset(hdr, 0, sizeof *hdr);
    hdr->dtype = DP_F32;
    hdr->device = DP_CPU;
    hdr->ndim = nd;
    for (int k = 0; k < nd; k++) hdr->shape[k] = t->shape[k];
    hdr->stride[nd - 1] = 1;
    hdr->stride[nd - 2] = c > 1 ? c : 1;
    if (nd == 3) hdr->stride[0] = shared ? 0 : r * c;
    hdr->data = dst;
    hdr->refcount = 1;
    return 0;
}

static int is_fp8(dp_dtype dt) { return dt == DP_FP8_E4M3 || dt == DP_FP8_E5M2; }

int dp_cpu_gemm_fp8(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                    int32_t trans_b, double scale_a, double scale_b, double alpha, double beta) {
    if (!is_fp8(a->dtype) || !is_fp8(b->dtype) ||
        (a->dtype == DP_FP8_E5M2 && b->dtype == DP_FP8_E5M2))
        return dp_fail(DP_EDTYPE, "gemm_fp8: a and b must be fp8 (e4m3 or e5m2, not both e5m2), "
                       "got a %s, b %s", dp_tensor_desc(a), dp_tensor_desc(b));
    dp_dtype odt = out->dtype;
    if (odt != DP_BF16 && odt != DP_F16 && odt != DP_F32)
        return dp_fail(DP_EDTYPE, "gemm_fp8: out must be bf16, f16 or f32, got %s", dp_tensor_desc(out));
    if ((out->ndim != 2 && out->ndim != 3) || !dp_tensor_is_contiguous(out))
        return dp_fail(DP_ESHAPE, "gemm_fp8: out must be contiguous (batch, M, N) or (M, N), got %s",
                       dp_tensor_desc(out));
    double factor = (double)(float)scale_a * (double)(float)scale_b * alpha;
    int64_t n = dp_tensor_numel(out);
    dp_tensor wa, wb, wc;
    float *ba = NULL, *bb = NULL, *bc = NULL;
    int rc = widen_operand(&wa, &ba, a, "a");
    if (!rc) rc = widen_operand(&wb, &bb, b, "b");
    if (!rc && odt != DP_F32) {
        /* The f32 result, then one rounding into out: beta's term is added in f32 too. */
        bc = dp_gemm_scratch_get((size_t)n * sizeof(float));
        if (!bc) rc = dp_fail(DP_ENOMEM, "gemm_fp8: no memory for the f32 result %s", dp_tensor_desc(out));
        if (!rc && beta != 0)
            for (int64_t i = 0; i < n; i++) bc[i] = dp_load_f32(out->data, odt, i);
        if (!rc) {
            wc = *out;
            wc.dtype = DP_F32;
            wc.data = bc;
        }
    }
    if (!rc) rc = dp_cpu_gemm(bc ? &wc : out, &wa, &wb, trans_a, trans_b, (double)(float)factor, beta);
    if (!rc && bc) {
        if (odt == DP_BF16) {
            dp_f32_to_bf16_array((uint16_t *)out->data, bc, n);
        } else {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMS)
            for (int64_t i = 0; i < n; i++) ((uint16_t *)out->data)[i] = dp_f32_to_f16(bc[i]);
        }
    }
    dp_gemm_scratch_put(ba);
    dp_gemm_scratch_put(bb);
    dp_gemm_scratch_put(bc);
    return rc;
}
