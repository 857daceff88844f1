/* gemm_operands.h: how the core hands matrices to a device's GEMM kernels (dp_ops.gemm and
 * gemm_fp8): kernel arguments as views of the callers' memory, which strides a kernel reads as
 * they are, and a contiguous copy for a matrix it cannot. Shared by matmul and linear
 * (ops_matmul.c) and matmul_fp8 (ops_matmul_fp8.c); implemented in gemm_operands.c. */
#ifndef DP_GEMM_OPERANDS_H
#define DP_GEMM_OPERANDS_H
#include "internal.h"

/* A kernel argument, not a tensor: fills the header *v (on the caller's stack) to share x's
 * memory with the given geometry at element offset `offset` from x; it is never retained or
 * released (kernels only read the geometry and data). */
void dp_gemm_raw_view(dp_tensor *v, const dp_tensor *x, int32_t ndim, const int64_t *shape,
                      const int64_t *stride, int64_t offset);

/* How a GEMM kernel can read an (r, c) matrix with strides (s1, s2): 0 as it is (unit stride
 * along rows), 1 as the transpose of a row-major matrix (unit stride down columns), -1 not at
 * all. */
int dp_gemm_layout(int64_t r, int64_t c, int64_t s1, int64_t s2);

/* dp_gemm_layout of the matrix in x's last two dims, 0 when it is empty (nothing is read; see
 * dp_gemm_operand for its strides). */
int dp_gemm_matrix_layout(const dp_tensor *x);

/* The matrix in x's last two dims (dp_gemm_matrix_layout(x) >= 0) as a 3-D kernel operand
 * (batch, r, c) with the given batch stride at element offset off, written into *v as by
 * dp_gemm_raw_view; passed transposed (*trans = 1) when its unit stride runs down the columns, so
 * kernels always see unit stride in the last dim. An empty matrix gets strides any kernel accepts
 * (a (3, 0) view may have strides [0, 1]). */
void dp_gemm_operand(dp_tensor *v, int32_t *trans, const dp_tensor *x, int64_t batch,
                     int64_t batch_stride, int64_t off);

/* A new contiguous copy of x made with ops->copy, without autograd (the calling op's own node
 * covers it); NULL when it could not be made (error set). */
dp_tensor *dp_gemm_contiguous(const dp_ops *ops, const dp_tensor *x);

/* *copy = dp_gemm_contiguous(ops, x) when no kernel can read the matrices in x's last two dims
 * as they are (dp_gemm_matrix_layout < 0), else NULL. 0, or DP_ENOMEM when the copy failed. */
int dp_gemm_readable(const dp_ops *ops, const dp_tensor *x, dp_tensor **copy);

#endif
