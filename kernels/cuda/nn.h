// nn.h: the nn and gemm kernel families of the CUDA backend (softmax.cu, layernorm.cu,
// embedding.cu, cross_entropy.cu, gemm.cu): their launchers, registered in register_nn.cu and
// register_gemm.cu, and the device-side element access they share.
#ifndef DP_CUDA_NN_H
#define DP_CUDA_NN_H
#include "cuda_common.h"
#include "dtype_cast.h"

// Accumulation type: f64 tensors compute in double, every other float dtype in float (values
// are loaded to f32, computed there and rounded once, to nearest even, on store).

// Element i of a float buffer of dtype, as A.
template <typename A>
__device__ __forceinline__ A nn_load(const void *p, dp_dtype dtype, int64_t i) {
    switch (dtype) {
    case DP_F32: return (A)((const float *)p)[i];
    case DP_F64: return (A)((const double *)p)[i];
    case DP_BF16: return (A)dp_cast_bf16_to_f32(((const uint16_t *)p)[i]);
    case DP_F16: return (A)dp_cast_f16_to_f32(((const uint16_t *)p)[i]);
    case DP_FP8_E4M3: return (A)dp_cast_e4m3_to_f32(((const uint8_t *)p)[i]);
    default: return (A)dp_cast_e5m2_to_f32(((const uint8_t *)p)[i]);
    }
}

// v rounded once into element i (a float is exact in double, so the double path adds no
// second rounding).
template <typename A>
__device__ __forceinline__ void nn_store(void *p, dp_dtype dtype, int64_t i, A v) {
    if (dtype == DP_F32) ((float *)p)[i] = (float)v;
    else if (dtype == DP_BF16 && sizeof(A) == sizeof(float))
        ((uint16_t *)p)[i] = dp_cast_f32_to_bf16((float)v);
    else dp_cast_store_float(p, dtype, i, (double)v);
}

__device__ __forceinline__ int64_t nn_index(const void *p, dp_dtype dtype, int64_t i) {
    return dtype == DP_I32 ? (int64_t)((const int32_t *)p)[i] : ((const int64_t *)p)[i];
}

// Block-wide sum and max of one value per thread (blockDim.x a multiple of 32, at most 1024);
// every thread gets the result. shm holds 32 A; the trailing barrier lets callers reuse it.
template <typename A>
__device__ A nn_block_sum(A v, A *shm) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    A t = 0;
    for (int w = 0; w < nw; w++) t += shm[w];   // same order in every thread: one answer
    __syncthreads();
    return t;
}

// NaN compares false, so (as on the CPU) a NaN never becomes the maximum.
template <typename A>
__device__ A nn_block_max(A v, A *shm) {
    for (int o = 16; o > 0; o >>= 1) {
        A u = __shfl_xor_sync(0xffffffffu, v, o);
        v = u > v ? u : v;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    A t = shm[0];
    for (int w = 1; w < nw; w++) t = shm[w] > t ? shm[w] : t;
    __syncthreads();
    return t;
}

// Blocks for one-block-per-row kernels (each block loops over rows blockIdx.x + k * gridDim.x).
static inline unsigned nn_row_grid(int64_t rows) {
    return (unsigned)(rows < 1 ? 1 : rows > 65535 ? 65535 : rows);
}

// softmax.cu
int dp_cuda_softmax(dp_tensor *y, const dp_tensor *x, int32_t dim, int32_t log);
int dp_cuda_softmax_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *y, int32_t dim,
                             int32_t log);
// y = softmax(x + mask) over the last dim (backend.h's softmax_masked).
int dp_cuda_softmax_masked(dp_tensor *y, const dp_tensor *x, const dp_tensor *mask);
// layernorm.cu
int dp_cuda_layer_norm(dp_tensor *y, dp_tensor *mean, dp_tensor *rstd, const dp_tensor *x,
                       const dp_tensor *weight, const dp_tensor *bias, double eps);
int dp_cuda_layer_norm_backward(dp_tensor *gx, dp_tensor *gweight, dp_tensor *gbias,
                                const dp_tensor *gy, const dp_tensor *x, const dp_tensor *mean,
                                const dp_tensor *rstd, const dp_tensor *weight);
// embedding.cu
int dp_cuda_gather_rows(dp_tensor *out, const dp_tensor *weight, const dp_tensor *indices);
int dp_cuda_scatter_add_rows(dp_tensor *dst, const dp_tensor *indices, const dp_tensor *src);
// cross_entropy.cu
int dp_cuda_cross_entropy(dp_tensor *loss, dp_tensor *lse, const dp_tensor *logits,
                          const dp_tensor *labels, int64_t ignore_index);
int dp_cuda_cross_entropy_backward(dp_tensor *glogits, const dp_tensor *gloss,
                                   const dp_tensor *logits, const dp_tensor *lse,
                                   const dp_tensor *labels, int64_t ignore_index);
// gemm.cu
int dp_cuda_gemm(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                 int32_t trans_b, double alpha, double beta);

#endif
