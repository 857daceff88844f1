// noise.cu: the DP noise add (dst += std * z on the Philox noise stream, core/philox.h), one thread
// per Philox block calling the same dp_philox_noise_add_block as kernels/cpu/random.c. Built with
// -fmad=false (cmake/cuda.cmake), so every element is bit-identical to the CPU's.
#include "dpsgd.h"
#include "philox.h"

__global__ void noise_add_kernel(void *dst, dp_dtype dtype, int64_t n, double std, uint64_t seed,
                                 uint64_t stream, uint64_t counter, int64_t blocks) {
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks;
         b += (int64_t)gridDim.x * blockDim.x)
        dp_philox_noise_add_block(dst, dtype, n, std, seed, stream, counter, b);
}

int dp_cuda_noise_add_philox(dp_tensor *dst, double std, uint64_t seed, uint64_t stream,
                             uint64_t counter) {
    if (dst->dtype != DP_F32 && dst->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "noise_add_philox: dst must be f32 or f64 on cuda, got %s",
                       dp_tensor_desc(dst));
    if (!dp_tensor_is_contiguous(dst))
        return dp_fail(DP_EUNSUPPORTED, "noise_add_philox: dst %s must be contiguous on cuda",
                       dp_tensor_desc(dst));
    int64_t n = dp_tensor_numel(dst), blocks = (n + 1) / 2;
    if (blocks == 0) return 0;
    noise_add_kernel<<<dp_cuda_grid(blocks), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(dst->data, dst->dtype, n, std, seed,
                                                                stream, counter, blocks);
    return dp_cuda_check_launch("noise_add_philox", "noise_add_kernel");
}
