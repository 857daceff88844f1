// random.cu: CUDA kernels for the counter-based random fills and dropout. One thread per Philox
// block, calling the same code as the CPU (core/philox.h, built here with -fmad=false), so a
// tensor filled from the same (seed, counter) is bit-identical on both devices.
#include "cuda_common.h"
#include "philox.h"

__global__ void uniform_kernel(void *out, dp_dtype dtype, int64_t n, uint64_t seed,
                               uint64_t counter, int64_t blocks) {
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks;
         b += (int64_t)gridDim.x * blockDim.x)
        dp_philox_fill_uniform(out, dtype, n, seed, counter, b);
}

__global__ void normal_kernel(void *out, dp_dtype dtype, int64_t n, uint64_t seed,
                              uint64_t counter, int64_t blocks, double mean, double std) {
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks;
         b += (int64_t)gridDim.x * blockDim.x)
        dp_philox_fill_normal(out, dtype, n, seed, counter, b, mean, std);
}

// Same arithmetic as kernels/cpu/random.c: x * (keep ? scale : 0) in f64 for f64, in f32
// otherwise, rounded once on store.
__global__ void dropout_kernel(void *out, uint8_t *mask, const void *x, dp_dtype dtype, int64_t n,
                               uint64_t seed, uint64_t counter, int64_t blocks, double p,
                               double scale, float scale_f) {
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks;
         b += (int64_t)gridDim.x * blockDim.x) {
        uint32_t w[4];
        dp_philox_block(w, seed, counter + (uint64_t)b, 0);
        for (int j = 0; j < 4 && 4 * b + j < n; j++) {
            int64_t i = 4 * b + j;
            int keep = dp_philox_keep(w[j], p);
            mask[i] = (uint8_t)keep;
            float xf;
            switch (dtype) {
            case DP_F64:
                ((double *)out)[i] = ((const double *)x)[i] * (keep ? scale : 0.0);
                continue;
            case DP_F32: xf = ((const float *)x)[i]; break;
            case DP_BF16: xf = dp_cast_bf16_to_f32(((const uint16_t *)x)[i]); break;
            case DP_F16: xf = dp_cast_f16_to_f32(((const uint16_t *)x)[i]); break;
            case DP_FP8_E4M3: xf = dp_cast_e4m3_to_f32(((const uint8_t *)x)[i]); break;
            default: xf = dp_cast_e5m2_to_f32(((const uint8_t *)x)[i]); break;
            }
            dp_philox_store(out, dtype, i, (double)(xf * (keep ? scale_f : 0.0f)));
        }
    }
}

int dp_cuda_rand_uniform(dp_tensor *out, dp_rng *rng) {
    int64_t n = dp_tensor_numel(out);
    int64_t blocks = dp_philox_uniform_blocks(out->dtype, n);
    if (blocks == 0) return 0;
    uniform_kernel<<<dp_cuda_grid(blocks), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out->data, out->dtype, n, rng->seed,
                                                              rng->counter, blocks);
    int rc = dp_cuda_check_launch("rand_uniform", "uniform_kernel");
    if (!rc) rng->counter += (uint64_t)blocks;
    return rc;
}

int dp_cuda_rand_normal(dp_tensor *out, dp_rng *rng, double mean, double std) {
    int64_t n = dp_tensor_numel(out);
    int64_t blocks = dp_philox_quad_blocks(n);
    if (blocks == 0) return 0;
    normal_kernel<<<dp_cuda_grid(blocks), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out->data, out->dtype, n, rng->seed,
                                                             rng->counter, blocks, mean, std);
    int rc = dp_cuda_check_launch("rand_normal", "normal_kernel");
    if (!rc) rng->counter += (uint64_t)blocks;
    return rc;
}

int dp_cuda_dropout(dp_tensor *out, dp_tensor *mask, const dp_tensor *x, double p, dp_rng *rng) {
    if (!dp_tensor_is_contiguous(x))
        return dp_fail(DP_EUNSUPPORTED, "dropout: strided input %s not supported on cuda yet "
                       "(make it contiguous first)", dp_tensor_desc(x));
    int64_t n = dp_tensor_numel(out);
    int64_t blocks = dp_philox_quad_blocks(n);
    if (blocks == 0) return 0;
    double scale = 1.0 / (1.0 - p);
    dropout_kernel<<<dp_cuda_grid(blocks), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
        out->data, (uint8_t *)mask->data, x->data, x->dtype, n, rng->seed, rng->counter, blocks, p,
        scale, (float)scale);
    int rc = dp_cuda_check_launch("dropout", "dropout_kernel");
    if (!rc) rng->counter += (uint64_t)blocks;
    return rc;
}
