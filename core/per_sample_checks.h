/* per_sample_checks.h: the argument checks of the per-sample kernels (dp_ops gram, ghost_norm,
 * scale_rows, row_sums, row_sq_norms, embedding_sq_norms), shared by the CPU (kernels/cpu/
 * per_sample.c) and CUDA (kernels/cuda/per_sample.cu) twins so both refuse the same inputs with the
 * same messages, and give back the geometry they read. Each returns 0 or a dp_fail status. Host
 * code; include after internal.h (in CUDA files through cuda_common.h). Backend limits (BLAS's or
 * cuBLAS's 32-bit ints) stay with each backend. */
#ifndef DP_PER_SAMPLE_CHECKS_H
#define DP_PER_SAMPLE_CHECKS_H
#include <stdint.h>

static inline int dp_ps_f32_or_f64(dp_dtype t) { return t == DP_F32 || t == DP_F64; }

/* out (B, T, T) = x (B, T, K) x^T, both f32 or both f64. */
static inline int dp_ps_check_gram(const dp_tensor *out, const dp_tensor *x) {
    if (!dp_ps_f32_or_f64(x->dtype) || out->dtype != x->dtype)
        return dp_fail(DP_EDTYPE, "gram: x and out must both be f32 or both f64 (x is %s, out is %s)",
                       dp_tensor_desc(x), dp_tensor_desc(out));
    if (x->ndim != 3 || out->ndim != 3 || out->shape[0] != x->shape[0] ||
        out->shape[1] != x->shape[1] || out->shape[2] != x->shape[1])
        return dp_fail(DP_ESHAPE, "gram: expected x (B, T, K) and out (B, T, T), got x %s, out %s",
                       dp_tensor_desc(x), dp_tensor_desc(out));
    return 0;
}

/* ga, gg (B, T, T) both f32 or both f64; sq, bound (B) f64. */
static inline int dp_ps_check_ghost_norm(const dp_tensor *sq, const dp_tensor *bound,
                                         const dp_tensor *ga, const dp_tensor *gg, int64_t *B,
                                         int64_t *T) {
    if (!dp_ps_f32_or_f64(ga->dtype) || gg->dtype != ga->dtype || sq->dtype != DP_F64 ||
        bound->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "ghost_norm: expected ga, gg both f32 or both f64 and sq, bound "
                       "f64, got ga %s, gg %s, sq %s, bound %s", dp_tensor_desc(ga),
                       dp_tensor_desc(gg), dp_tensor_desc(sq), dp_tensor_desc(bound));
    *B = ga->ndim == 3 ? ga->shape[0] : 0;
    *T = ga->ndim == 3 ? ga->shape[1] : 0;
    if (ga->ndim != 3 || ga->shape[2] != *T || gg->ndim != 3 || gg->shape[0] != *B ||
        gg->shape[1] != *T || gg->shape[2] != *T || dp_tensor_numel(sq) != *B ||
        dp_tensor_numel(bound) != *B)
        return dp_fail(DP_ESHAPE, "ghost_norm: expected ga, gg (B, T, T) and sq, bound (B), got ga "
                       "%s, gg %s, sq %s, bound %s", dp_tensor_desc(ga), dp_tensor_desc(gg),
                       dp_tensor_desc(sq), dp_tensor_desc(bound));
    return 0;
}

/* out like x (B, R, N), float; factor (B) f64. *total = numel(x). */
static inline int dp_ps_check_scale_rows(const dp_tensor *out, const dp_tensor *x,
                                         const dp_tensor *factor, int64_t *B, int64_t *total) {
    if (!dp_dtype_is_float(x->dtype) || !dp_dtype_is_float(out->dtype) || factor->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "scale_rows: expected float x and out and f64 factor, got x %s, "
                       "out %s, factor %s", dp_tensor_desc(x), dp_tensor_desc(out),
                       dp_tensor_desc(factor));
    *B = x->ndim ? x->shape[0] : 1;
    *total = dp_tensor_numel(x);
    if (dp_tensor_numel(out) != *total || dp_tensor_numel(factor) != *B)
        return dp_fail(DP_ESHAPE, "scale_rows: expected out like x (B, R, N) and factor (B), got x "
                       "%s, out %s, factor %s", dp_tensor_desc(x), dp_tensor_desc(out),
                       dp_tensor_desc(factor));
    return 0;
}

/* out (B, N) f64; g and x (when not NULL) (B, T, N) float; mean, rstd (B*T) f32/f64. */
static inline int dp_ps_check_row_sums(const dp_tensor *out, const dp_tensor *g, const dp_tensor *x,
                                       const dp_tensor *mean, const dp_tensor *rstd, int64_t *B,
                                       int64_t *T, int64_t *N) {
    if (out->dtype != DP_F64 || !dp_dtype_is_float(g->dtype) ||
        (x && (!dp_dtype_is_float(x->dtype) || !mean || !rstd || !dp_ps_f32_or_f64(mean->dtype) ||
               !dp_ps_f32_or_f64(rstd->dtype))))
        return dp_fail(DP_EDTYPE, "row_sums: expected f64 out, float g and x, and f32/f64 mean and "
                       "rstd, got out %s, g %s, x %s", dp_tensor_desc(out), dp_tensor_desc(g),
                       x ? dp_tensor_desc(x) : "none");
    *B = out->ndim == 2 ? out->shape[0] : 0;
    *N = out->ndim == 2 ? out->shape[1] : 0;
    *T = *B > 0 && *N > 0 ? dp_tensor_numel(g) / (*B * *N) : 0;
    if (out->ndim != 2 || g->ndim < 2 || g->shape[0] != *B || g->shape[g->ndim - 1] != *N ||
        (x && (dp_tensor_numel(x) != dp_tensor_numel(g) || dp_tensor_numel(mean) != *B * *T ||
               dp_tensor_numel(rstd) != *B * *T)))
        return dp_fail(DP_ESHAPE, "row_sums: expected g, x (B, T, N), mean, rstd (B*T) and out (B, "
                       "N), got g %s, x %s, out %s", dp_tensor_desc(g),
                       x ? dp_tensor_desc(x) : "none", dp_tensor_desc(out));
    return 0;
}

/* out (R) f64; x (R, N) float. */
static inline int dp_ps_check_row_sq_norms(const dp_tensor *out, const dp_tensor *x, int64_t *R,
                                           int64_t *N) {
    if (out->dtype != DP_F64 || !dp_dtype_is_float(x->dtype))
        return dp_fail(DP_EDTYPE, "row_sq_norms: expected f64 out and float x, got out %s, x %s",
                       dp_tensor_desc(out), dp_tensor_desc(x));
    int64_t total = dp_tensor_numel(x);
    *R = dp_tensor_numel(out);
    if ((*R == 0 && total != 0) || (*R && total % *R) || (x->ndim && x->shape[0] != *R))
        return dp_fail(DP_ESHAPE, "row_sq_norms: expected x (R, N) and out (R), got x %s, out %s",
                       dp_tensor_desc(x), dp_tensor_desc(out));
    *N = *R ? total / *R : 0;
    return 0;
}

/* out (B) f64; idx (B, T) i32/i64; g (B, T, D) float; T small enough for 32-bit position links. */
static inline int dp_ps_check_embedding_sq_norms(const dp_tensor *out, const dp_tensor *idx,
                                                 const dp_tensor *g, int64_t *B, int64_t *T,
                                                 int64_t *D) {
    if (out->dtype != DP_F64 || (idx->dtype != DP_I32 && idx->dtype != DP_I64) ||
        !dp_dtype_is_float(g->dtype))
        return dp_fail(DP_EDTYPE, "embedding_sq_norms: expected f64 out, i32/i64 idx and float g, "
                       "got out %s, idx %s, g %s", dp_tensor_desc(out), dp_tensor_desc(idx),
                       dp_tensor_desc(g));
    *B = dp_tensor_numel(out);
    *T = *B ? dp_tensor_numel(idx) / *B : 0;
    *D = *B > 0 && *T > 0 ? dp_tensor_numel(g) / (*B * *T) : 0;
    if (idx->ndim != 2 || idx->shape[0] != *B || g->ndim != 3 || g->shape[0] != *B ||
        g->shape[1] != *T)
        return dp_fail(DP_ESHAPE, "embedding_sq_norms: expected idx (B, T), g (B, T, D) and out "
                       "(B), got idx %s, g %s, out %s", dp_tensor_desc(idx), dp_tensor_desc(g),
                       dp_tensor_desc(out));
    if (*T > INT32_MAX / 2)
        return dp_fail(DP_EUNSUPPORTED, "embedding_sq_norms: T = %lld positions per example is "
                       "more than this kernel's 32-bit position tables hold", (long long)*T);
    return 0;
}

#endif
