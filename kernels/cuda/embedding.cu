// embedding.cu: row gather (embedding lookup, index_select) and row scatter-add (its backward,
// index_add), as kernels/cpu/embedding.c defines them. The gather copies elements of any dtype.
// The scatter-add uses atomicAdd for f32 and f64 (repeated indices add in an unspecified order,
// so sums of several rows may differ from the CPU's in the last bits); for bf16, f16 and fp8,
// which have no suitable atomics and round after every addition, each thread owns one column and
// walks the indices in order, reproducing the CPU's sequence of roundings exactly.
#include "nn.h"

__global__ void gather_rows_kernel(void *out, const void *w, int32_t size, const void *idx,
                                   dp_dtype idtype, int64_t n, int64_t D) {
    int64_t total = n * D;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k / D, d = k - i * D;
        int64_t src = nn_index(idx, idtype, i) * D + d;
        switch (size) {
        case 1: ((uint8_t *)out)[k] = ((const uint8_t *)w)[src]; break;
        case 2: ((uint16_t *)out)[k] = ((const uint16_t *)w)[src]; break;
        case 4: ((uint32_t *)out)[k] = ((const uint32_t *)w)[src]; break;
        default: ((uint64_t *)out)[k] = ((const uint64_t *)w)[src]; break;
        }
    }
}

template <typename T>
__global__ void scatter_atomic_kernel(T *dst, const void *idx, dp_dtype idtype, const T *src,
                                      int64_t n, int64_t D) {
    int64_t total = n * D;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k / D, d = k - i * D;
        atomicAdd(dst + nn_index(idx, idtype, i) * D + d, src[k]);
    }
}

// dst[idx[i], d] = round(dst[idx[i], d] + src[i, d]) in f32, for i in order: the CPU's add_run.
__global__ void scatter_ordered_kernel(void *dst, const void *idx, dp_dtype idtype,
                                       const void *src, dp_dtype dtype, int64_t n, int64_t D) {
    for (int64_t d = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; d < D;
         d += (int64_t)gridDim.x * blockDim.x) {
        for (int64_t i = 0; i < n; i++) {
            int64_t o = nn_index(idx, idtype, i) * D + d;
            float v = nn_load<float>(dst, dtype, o) + nn_load<float>(src, dtype, i * D + d);
            nn_store<float>(dst, dtype, o, v);
        }
    }
}

int dp_cuda_gather_rows(dp_tensor *out, const dp_tensor *weight, const dp_tensor *indices) {
    if (indices->dtype != DP_I32 && indices->dtype != DP_I64)
        return dp_fail(DP_EUNSUPPORTED, "gather_rows: indices %s on cuda (i32 or i64)",
                       dp_tensor_desc(indices));
    int64_t n = dp_tensor_numel(indices), D = weight->shape[1];
    if (n == 0 || D == 0) return 0;
    int32_t size = dp_dtype_size(weight->dtype);
    if (size != 1 && size != 2 && size != 4 && size != 8)
        return dp_fail(DP_EUNSUPPORTED, "gather_rows: %s on cuda (elements of 1, 2, 4 or 8 bytes)",
                       dp_tensor_desc(weight));
    gather_rows_kernel<<<dp_cuda_grid(n * D), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out->data, weight->data, size,
                                                                indices->data, indices->dtype, n, D);
    return dp_cuda_check_launch("gather_rows", "gather_rows_kernel");
}

int dp_cuda_scatter_add_rows(dp_tensor *dst, const dp_tensor *indices, const dp_tensor *src) {
    if (indices->dtype != DP_I32 && indices->dtype != DP_I64)
        return dp_fail(DP_EUNSUPPORTED, "scatter_add_rows: indices %s on cuda (i32 or i64)",
                       dp_tensor_desc(indices));
    if (!dp_dtype_is_float(dst->dtype) || src->dtype != dst->dtype)
        return dp_fail(DP_EUNSUPPORTED, "scatter_add_rows: %s into %s on cuda (one float dtype)",
                       dp_tensor_desc(src), dp_tensor_desc(dst));
    int64_t n = dp_tensor_numel(indices), D = dst->shape[1];
    if (n == 0 || D == 0) return 0;
    switch (dst->dtype) {
    case DP_F32:
        scatter_atomic_kernel<float><<<dp_cuda_grid(n * D), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            (float *)dst->data, indices->data, indices->dtype, (const float *)src->data, n, D);
        break;
    case DP_F64:
        scatter_atomic_kernel<double><<<dp_cuda_grid(n * D), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            (double *)dst->data, indices->data, indices->dtype, (const double *)src->data, n, D);
        break;
    default:
        scatter_ordered_kernel<<<dp_cuda_grid(D), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            dst->data, indices->data, indices->dtype, src->data, dst->dtype, n, D);
        break;
    }
    return dp_cuda_check_launch("scatter_add_rows", "scatter_add_rows kernel");
}
