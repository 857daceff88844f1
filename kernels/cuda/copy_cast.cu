// copy_cast.cu: CUDA fill and copy for any strides, and copies between any two dtypes (integers
// included). These replace backend.cu's contiguous-only versions in the op table. A casting copy
// goes through double, which gives exactly the CPU's results (kernels/cpu/elementwise.c): every
// float dtype but f64 is exact in f32 and in double, so one rounding on store either way, and
// integers take the CPU's route (to double, then truncating and saturating on store).
#include "ew.h"

// Every element gets the same bit pattern (1, 2, 4 or 8 bytes), computed once on the host.
static __global__ void fill_strided_kernel(dp_cu_geom g, void *out, int32_t size, uint64_t pattern) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        switch (size) {
        case 1: ((uint8_t *)out)[off[0]] = (uint8_t)pattern; break;
        case 2: ((uint16_t *)out)[off[0]] = (uint16_t)pattern; break;
        case 4: ((uint32_t *)out)[off[0]] = (uint32_t)pattern; break;
        default: ((uint64_t *)out)[off[0]] = pattern; break;
        }
    }
}

int dp_cuda_fill(dp_tensor *out, double value) {
    const dp_tensor *ts[1] = { out };
    dp_cu_geom g;
    dp_cu_geom_init(&g, 1, ts);
    if (g.numel == 0) return 0;
    uint64_t pattern = 0;
    dp_store_f64(&pattern, out->dtype, 0, value);   // the host's rounding, little-endian
    fill_strided_kernel<<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(g, out->data,
                                                                    dp_dtype_size(out->dtype), pattern);
    return dp_cuda_check_launch("fill", "fill_strided_kernel");
}

// Same dtype: move the bits.
static __global__ void copy_same_kernel(dp_cu_geom g, void *out, const void *src, int32_t size) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        switch (size) {
        case 1: ((uint8_t *)out)[off[0]] = ((const uint8_t *)src)[off[1]]; break;
        case 2: ((uint16_t *)out)[off[0]] = ((const uint16_t *)src)[off[1]]; break;
        case 4: ((uint32_t *)out)[off[0]] = ((const uint32_t *)src)[off[1]]; break;
        default: ((uint64_t *)out)[off[0]] = ((const uint64_t *)src)[off[1]]; break;
        }
    }
}

static __global__ void copy_cast_kernel(dp_cu_geom g, void *out, dp_dtype ot, const void *src,
                                 dp_dtype st) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        dp_cu_store_f64(out, ot, off[0], dp_cu_load_f64(src, st, off[1]));
    }
}

int dp_cuda_copy(dp_tensor *out, const dp_tensor *src) {
    if ((unsigned)out->dtype >= DP_NUM_DTYPES || (unsigned)src->dtype >= DP_NUM_DTYPES)
        return dp_fail(DP_EDTYPE, "cuda copy: unknown dtype (%s from %s)", dp_tensor_desc(out),
                       dp_tensor_desc(src));
    const dp_tensor *ts[2] = { out, src };
    dp_cu_geom g;
    dp_cu_geom_init(&g, 2, ts);
    if (g.numel == 0) return 0;
    int32_t size = dp_dtype_size(out->dtype);
    if (out->dtype == src->dtype) {
        // One contiguous run in both (after merging): a plain device-to-device copy.
        if (g.ndim == 1 && g.stride[0][0] == 1 && g.stride[1][0] == 1)
            return dp_cuda_check(cudaMemcpyAsync(out->data, src->data, (size_t)g.numel * (size_t)size,
                                                 cudaMemcpyDeviceToDevice, dp_cuda_stream()),
                                 "copy", "cudaMemcpyAsync(device to device)");
        copy_same_kernel<<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(g, out->data, src->data, size);
        return dp_cuda_check_launch("copy", "copy_same_kernel");
    }
    copy_cast_kernel<<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(g, out->data, out->dtype, src->data,
                                                                 src->dtype);
    return dp_cuda_check_launch("copy", "copy_cast_kernel");
}
