// gemm_lt.h: what the CUDA GEMM files share: gemm.cu (the cuBLASLt wrapper and the gemm entry)
// and gemm_fp8.cu (fp8 operands through cuBLASLt's fp8 kernels or by exact widening).
//
// Row-major out (M, N) is column-major out^T (N, M) = op(b)^T op(a)^T, so cuBLASLt gets b as its
// first operand ("A" in its terms) and a as its second ("B"), each described as the column-major
// view of its storage.
#ifndef DP_CUDA_GEMM_LT_H
#define DP_CUDA_GEMM_LT_H
#include <cublasLt.h>
#include "nn.h"

// One operand as stored: a row-major matrix rows x cols with leading dimension ld (so the
// column-major matrix cols x rows); trans = 1 when op(operand) is its transpose.
struct gemm_operand {
    const char *data;
    int64_t batch_stride;   // elements; 0 = one matrix shared by the batch
    int64_t rows, cols, ld;
    int trans;
};

// t ((batch, r, c) or (r, c), unit stride in one of its last two dims) as an operand; op_rows x
// op_cols gets op(t)'s shape. Errors name op and the argument `name`.
int gemm_describe(gemm_operand *o, int64_t *op_rows, int64_t *op_cols, const dp_tensor *t,
                  int32_t trans, int64_t batch, const char *op, const char *name);

// Types of one cuBLASLt problem, in row-major terms (a is the left operand of out = a @ b).
struct gemm_lt_types {
    cudaDataType_t a, b, c;         // storage types of a, b and out (C and D)
    cublasComputeType_t compute;
    cudaDataType_t scale;           // of alpha and beta
    const float *scale_a, *scale_b; // device pointers to fp8 scale factors, or NULL
    const char *op;                 // names the op in errors
};

// out[i] = alpha * op(a[i]) @ op(b[i]) + beta * out[i] for i < batch, out (batch, M, N)
// contiguous at c_data; a_data and b_data replace the operands' own data pointers. ab_size and
// c_size are element sizes in bytes. With soft = 1, a problem cuBLASLt has no algorithm for
// returns 1 with nothing written and no error set (the caller falls back); else 0 or < 0.
int gemm_lt_run(const gemm_lt_types &ty, const gemm_operand &a, const gemm_operand &b,
                const void *a_data, const void *b_data, void *c_data, int64_t batch, int64_t M,
                int64_t N, int64_t K, double alpha, double beta, int32_t ab_size, int32_t c_size,
                int soft);

// out (n elements of float dtype) = beta * out, queued; beta = 0 writes exact zeros.
int gemm_scale_out(void *out, dp_dtype dtype, int64_t n, double beta, const char *op);

// gemm_fp8.cu: the gemm entry for fp8 a, b and out (all of dtype): the products accumulate in
// f32 and each result is rounded once into out's dtype. Operands as described by gemm_describe.
int gemm_fp8_same_dtype(dp_dtype dtype, const gemm_operand &a, const gemm_operand &b, void *out,
                        int64_t batch, int64_t M, int64_t N, int64_t K, double alpha, double beta);

// gemm_fp8.cu: dp_ops.gemm_fp8.
int dp_cuda_gemm_fp8(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                     int32_t trans_b, double scale_a, double scale_b, double alpha, double beta);

#endif
