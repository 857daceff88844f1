// dpsgd.h: the CUDA DP-SGD kernel family (per_sample.cu, noise.cu, optim.cu): the launchers that
// register_dpsgd.cu puts in the op table (semantics in core/backend.h), and the device-side load of
// any float dtype they share.
#ifndef DP_CUDA_DPSGD_H
#define DP_CUDA_DPSGD_H
#include "cuda_common.h"
#include "dtype_cast.h"

// per_sample.cu
int dp_cuda_gram(dp_tensor *out, const dp_tensor *x);
int dp_cuda_ghost_norm(dp_tensor *sq, dp_tensor *bound, const dp_tensor *ga, const dp_tensor *gg,
                       double ka, double kg);
int dp_cuda_scale_rows(dp_tensor *out, const dp_tensor *x, const dp_tensor *factor);
int dp_cuda_row_sums(dp_tensor *out, const dp_tensor *g, const dp_tensor *x, const dp_tensor *mean,
                     const dp_tensor *rstd);
int dp_cuda_row_sq_norms(dp_tensor *out, const dp_tensor *x);
int dp_cuda_embedding_sq_norms(dp_tensor *out, const dp_tensor *idx, const dp_tensor *g);

// noise.cu: bit-identical to kernels/cpu/random.c (core/philox.h, built with -fmad=false).
int dp_cuda_noise_add_philox(dp_tensor *dst, double std, uint64_t seed, uint64_t stream,
                             uint64_t counter);

// optim.cu
int dp_cuda_sgd_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *buf, double lr,
                     double momentum, double dampening, double weight_decay, int32_t nesterov,
                     int32_t first_step, const dp_rounding *rounding);
int dp_cuda_adam_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      int32_t decoupled, int64_t step, const dp_rounding *rounding);

// Element i of a float tensor as a double (exact for every float dtype).
static __device__ __forceinline__ double dp_cuda_load_f64(const void *p, dp_dtype t, int64_t i) {
    switch (t) {
    case DP_F32: return ((const float *)p)[i];
    case DP_F64: return ((const double *)p)[i];
    case DP_BF16: return dp_cast_bf16_to_f32(((const uint16_t *)p)[i]);
    case DP_F16: return dp_cast_f16_to_f32(((const uint16_t *)p)[i]);
    case DP_FP8_E4M3: return dp_cast_e4m3_to_f32(((const uint8_t *)p)[i]);
    default: return dp_cast_e5m2_to_f32(((const uint8_t *)p)[i]);   // DP_FP8_E5M2
    }
}

static inline int dp_cuda_is_float(dp_dtype t) {
    return t == DP_F32 || t == DP_F64 || t == DP_BF16 || t == DP_F16 || t == DP_FP8_E4M3 ||
           t == DP_FP8_E5M2;
}

#endif
