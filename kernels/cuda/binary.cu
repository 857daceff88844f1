// binary.cu: CUDA kernels for the binary ops (add, sub, mul, div, max), axpy and masked_fill over
// strided, broadcast operands. Same arithmetic as kernels/cpu/elementwise.c: f64 outputs compute
// in double, every other float dtype loads to f32, computes in f32 and rounds once on store.
#include "ew.h"

template <typename T>
static __device__ __forceinline__ T binop(dp_binop op, T a, T b) {
    switch (op) {
    case DP_BIN_ADD: return a + b;
    case DP_BIN_SUB: return a - b;
    case DP_BIN_MUL: return a * b;
    case DP_BIN_DIV: return a / b;
    // Ties and a NaN in a pick a; a NaN in b loses the comparison and is picked (as on the CPU).
    default: return (a >= b || a != a) ? a : b;
    }
}

template <typename T>
static __global__ void binary_kernel(dp_cu_geom g, void *out, dp_dtype ot, const void *a, dp_dtype at,
                              const void *b, dp_dtype bt, dp_binop op) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        T x, y;
        dp_cu_load(&x, a, at, off[1]);
        dp_cu_load(&y, b, bt, off[2]);
        dp_cu_store(out, ot, off[0], binop<T>(op, x, y));
    }
}

int dp_cuda_binary(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, dp_binop op) {
    if (!dp_dtype_is_float(out->dtype))
        return dp_fail(DP_EDTYPE, "cuda binary: float tensors only, got %s", dp_tensor_desc(out));
    if ((unsigned)op > DP_BIN_MAX) return dp_fail(DP_EARG, "cuda binary: unknown op %d", (int)op);
    const dp_tensor *ts[3] = { out, a, b };
    dp_cu_geom g;
    dp_cu_geom_init(&g, 3, ts);
    if (g.numel == 0) return 0;
    if (out->dtype == DP_F64)
        binary_kernel<double><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, out->data, out->dtype, a->data, a->dtype, b->data, b->dtype, op);
    else
        binary_kernel<float><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, out->data, out->dtype, a->data, a->dtype, b->data, b->dtype, op);
    return dp_cuda_check_launch("binary", "binary_kernel");
}

// dst += alpha * src; dst is operand 0 (written) and 1 (read), the same elements.
template <typename T>
static __global__ void axpy_kernel(dp_cu_geom g, void *dst, dp_dtype dt, const void *src, dp_dtype st,
                            T alpha) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        T d, x;
        dp_cu_load(&d, dst, dt, off[0]);
        dp_cu_load(&x, src, st, off[1]);
        dp_cu_store(dst, dt, off[0], d + alpha * x);
    }
}

int dp_cuda_axpy(dp_tensor *dst, double alpha, const dp_tensor *src) {
    if (!dp_dtype_is_float(dst->dtype) || !dp_dtype_is_float(src->dtype))
        return dp_fail(DP_EDTYPE, "cuda axpy: float tensors only, got %s and %s",
                       dp_tensor_desc(dst), dp_tensor_desc(src));
    const dp_tensor *ts[2] = { dst, src };
    dp_cu_geom g;
    dp_cu_geom_init(&g, 2, ts);
    if (g.numel == 0) return 0;
    if (dst->dtype == DP_F64)
        axpy_kernel<double><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, dst->data, dst->dtype, src->data, src->dtype, alpha);
    else
        axpy_kernel<float><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, dst->data, dst->dtype, src->data, src->dtype, (float)alpha);
    return dp_cuda_check_launch("axpy", "axpy_kernel");
}

// out and x share a dtype, so this selects bits: value's (already encoded) where the mask is set.
static __global__ void masked_fill_kernel(dp_cu_geom g, void *out, const void *x, const uint8_t *mask,
                                   int32_t size, uint64_t bits) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        int m = mask[off[2]] != 0;
        switch (size) {
        case 1: ((uint8_t *)out)[off[0]] = m ? (uint8_t)bits : ((const uint8_t *)x)[off[1]]; break;
        case 2: ((uint16_t *)out)[off[0]] = m ? (uint16_t)bits : ((const uint16_t *)x)[off[1]]; break;
        case 4: ((uint32_t *)out)[off[0]] = m ? (uint32_t)bits : ((const uint32_t *)x)[off[1]]; break;
        default: ((uint64_t *)out)[off[0]] = m ? bits : ((const uint64_t *)x)[off[1]]; break;
        }
    }
}

int dp_cuda_masked_fill(dp_tensor *out, const dp_tensor *x, const dp_tensor *mask, double value) {
    if (out->dtype != x->dtype)
        return dp_fail(DP_EDTYPE, "cuda masked_fill: out %s and x %s differ in dtype",
                       dp_tensor_desc(out), dp_tensor_desc(x));
    if (mask->dtype != DP_U8)
        return dp_fail(DP_EDTYPE, "cuda masked_fill: mask must be u8, got %s", dp_tensor_desc(mask));
    const dp_tensor *ts[3] = { out, x, mask };
    dp_cu_geom g;
    dp_cu_geom_init(&g, 3, ts);
    if (g.numel == 0) return 0;
    uint64_t bits = 0;
    dp_store_f64(&bits, out->dtype, 0, value);   // the host's rounding, little-endian
    masked_fill_kernel<<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
        g, out->data, x->data, (const uint8_t *)mask->data, dp_dtype_size(out->dtype), bits);
    return dp_cuda_check_launch("masked_fill", "masked_fill_kernel");
}
