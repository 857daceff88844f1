/* gemm_impl.h: what the three CPU GEMM files share (gemm.c: dispatch and BLAS, gemm_lowp.c:
 * convert-to-f32 path, gemm_onednn.c: oneDNN matmul). Private to kernels/cpu/gemm*.c. */
#ifndef DP_GEMM_IMPL_H
#define DP_GEMM_IMPL_H
#include "internal.h"

/* One operand as BLAS sees it: a row-major matrix of `rows` x `cols` with leading dimension ld,
 * which is op(operand) itself (trans = 0) or its transpose (trans = 1). */
typedef struct dp_gemm_operand {
    const char *data;       /* first matrix */
    int64_t batch_stride;   /* elements between consecutive matrices; 0 = one shared matrix */
    int64_t rows, cols, ld;
    int32_t trans;
} dp_gemm_operand;

/* out[i] = alpha * op(a[i]) @ op(b[i]) + beta * out[i], i < batch; op(a) is (M, K), op(b) is
 * (K, N), out (batch, M, N) contiguous. a, b and out share dtype. */
typedef struct dp_gemm_problem {
    dp_dtype dtype;
    int64_t batch, M, N, K;
    dp_gemm_operand a, b;
    char *out;
    double alpha, beta;
} dp_gemm_problem;

/* gemm.c: run an f32 or f64 problem through OpenBLAS (no engine bookkeeping). */
int dp_gemm_blas(const dp_gemm_problem *p);
/* gemm.c: pooled scratch memory (64-byte aligned, reused across calls, freed at unload). */
void *dp_gemm_scratch_get(size_t bytes);
void dp_gemm_scratch_put(void *ptr);

/* gemm_lowp.c: bf16/f16/fp8 problem: convert to f32, sgemm, round back. */
int dp_gemm_lowp(const dp_gemm_problem *p);

/* gemm_onednn.c: run through oneDNN's matmul primitive. Returns 0 when done, 1 when oneDNN has
 * no implementation for it on this CPU (nothing written; with explain, dp_last_error() says why,
 * else the message is left alone for the fallback), or a negative dp_status after dp_fail. */
int dp_gemm_onednn(const dp_gemm_problem *p, int explain);

#endif
