/* cuda_common.h: what the CUDA backend's files share: the core's internal API with C linkage,
 * the error check that turns a CUDA status into dp_fail naming the call, and launch sizes. */
#ifndef DP_CUDA_COMMON_H
#define DP_CUDA_COMMON_H
#include <stdint.h>
#include <string.h>
#include <cuda_runtime.h>
extern "C" {
#include "internal.h"
}

/* 0, or DP_EDEVICE with "op: call failed: reason". */
static inline int dp_cuda_check(cudaError_t err, const char *op, const char *call) {
    if (err == cudaSuccess) return 0;
    return dp_fail(DP_EDEVICE, "%s: %s failed: %s", op, call, cudaGetErrorString(err));
}

/* Launch errors of the kernel just queued (bad configuration, no image for this GPU, ...). */
static inline int dp_cuda_check_launch(const char *op, const char *kernel) {
    return dp_cuda_check(cudaGetLastError(), op, kernel);
}

/* The one stream every kernel, copy, memset and cuBLAS(Lt) call of the backend is queued on
 * (created on first use, non-blocking: it never waits on the legacy default stream). One stream
 * keeps the ops in program order, so a block the caching allocator hands out again is only
 * touched after the kernels that used it before (stream-ordered reuse). */
cudaStream_t dp_cuda_stream(void);

enum { DP_CUDA_THREADS = 256 };

/* Grid for a grid-stride loop over n work items. */
static inline unsigned dp_cuda_grid(int64_t n) {
    int64_t g = (n + DP_CUDA_THREADS - 1) / DP_CUDA_THREADS;
    return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

/* random.cu */
int dp_cuda_rand_uniform(dp_tensor *out, dp_rng *rng);
int dp_cuda_rand_normal(dp_tensor *out, dp_rng *rng, double mean, double std);
int dp_cuda_dropout(dp_tensor *out, dp_tensor *mask, const dp_tensor *x, double p, dp_rng *rng);

/* Kernel families: each fills its entries of the op table (dp_ops in core/backend.h).
 * elementwise.cu and friends: binary, unary, unary_backward, axpy, copy (strided, casting),
 *   reduce, argmax, masked_fill, quant_amax, fake_quant.
 * nn (softmax.cu, layernorm.cu, embedding.cu, cross_entropy.cu): softmax(+backward),
 *   layer_norm(+backward), gather_rows, scatter_add_rows, cross_entropy(+backward).
 * gemm.cu: gemm through cuBLASLt.
 * dpsgd (per_sample.cu, noise.cu, optim.cu): gram, ghost_norm, scale_rows, row_sums,
 *   row_sq_norms, embedding_sq_norms, noise_add_philox, sgd_step, adam_step. */
void dp_cuda_register_elementwise(dp_ops *t);
void dp_cuda_register_nn(dp_ops *t);
void dp_cuda_register_gemm(dp_ops *t);
void dp_cuda_register_dpsgd(dp_ops *t);
/* Fused kernels, one file each: per_example.cu (per_example_sq_norms, clipped_sum),
 * noisy_update.cu (noisy_update), bias_act.cu (bias_act), gemm_fp8.cu (gemm_fp8). */
void dp_cuda_register_per_example(dp_ops *t);
void dp_cuda_register_noisy_update(dp_ops *t);
void dp_cuda_register_bias_act(dp_ops *t);
void dp_cuda_register_gemm_fp8(dp_ops *t);

#endif
