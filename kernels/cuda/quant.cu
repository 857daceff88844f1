// quant.cu: CUDA kernels of the emulated fp8 quantisation (dp_fake_quant in dp.h): each group's
// max |x| and the round trip x -> q(x * s) / s through e4m3 or e5m2, bit-identical to
// kernels/cpu/quant.c (the encoders are core/dtype_cast.h's, compiled for the device; the product
// and quotient are single IEEE double operations, so no contraction can change them). x and out
// are contiguous; amax and scale hold one value per group of consecutive elements.
#include "ew.h"

enum { AMAX_THREADS = 256 };

// One block per group: strided partial maxima of |x|, then a tree. fabs(NaN) > m is false, so
// NaN never becomes the maximum; Inf does.
static __global__ void amax_kernel(double *amax, const void *x, dp_dtype xt, int64_t groups, int64_t per) {
    __shared__ double part[AMAX_THREADS];
    for (int64_t gi = blockIdx.x; gi < groups; gi += gridDim.x) {
        double m = 0;
        for (int64_t i = threadIdx.x; i < per; i += blockDim.x) {
            double v = fabs(dp_cu_load_f64(x, xt, gi * per + i));
            if (v > m) m = v;
        }
        part[threadIdx.x] = m;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w /= 2) {
            if ((int)threadIdx.x < w && part[threadIdx.x + w] > part[threadIdx.x])
                part[threadIdx.x] = part[threadIdx.x + w];
            __syncthreads();
        }
        if (threadIdx.x == 0) amax[gi] = part[0];
        __syncthreads();
    }
}

int dp_cuda_quant_amax(dp_tensor *amax, const dp_tensor *x) {
    if (!dp_dtype_is_float(x->dtype) || amax->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "cuda quant_amax: float x and f64 amax expected, got %s and %s",
                       dp_tensor_desc(x), dp_tensor_desc(amax));
    int64_t groups = dp_tensor_numel(amax), n = dp_tensor_numel(x);
    int64_t per = groups ? n / groups : 0;
    if (groups == 0) return 0;
    unsigned blocks = (unsigned)(groups < 65535 ? groups : 65535);
    amax_kernel<<<blocks, AMAX_THREADS, 0, dp_cuda_stream()>>>((double *)amax->data, x->data, x->dtype, groups, per);
    return dp_cuda_check_launch("quant_amax", "amax_kernel");
}

// v rounded to nearest even in the fp8 format after saturating at its largest finite value;
// NaN stays (kernels/cpu/quant.c quantise).
static __device__ __forceinline__ double quantise(double v, int e4m3) {
    if (isnan(v)) return v;
    if (e4m3) {
        if (fabs(v) > 448.0) v = copysign(448.0, v);
        return dp_cast_e4m3_to_f32((uint8_t)dp_cast_encode(v, 3, 4, 1));
    }
    if (fabs(v) > 57344.0) v = copysign(57344.0, v);
    return dp_cast_e5m2_to_f32((uint8_t)dp_cast_encode(v, 2, 5, 0));
}

static __global__ void fake_quant_kernel(void *out, const void *x, dp_dtype xt, const float *scale,
                                  int64_t n, int64_t per, int e4m3) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        double sc = (double)scale[i / per];
        double q = quantise(__dmul_rn(dp_cu_load_f64(x, xt, i), sc), e4m3);
        dp_cu_store_f64(out, xt, i, __ddiv_rn(q, sc));
    }
}

int dp_cuda_fake_quant(dp_tensor *out, const dp_tensor *x, const dp_tensor *scale, dp_dtype dtype) {
    if (!dp_dtype_is_float(x->dtype) || out->dtype != x->dtype || scale->dtype != DP_F32)
        return dp_fail(DP_EDTYPE, "cuda fake_quant: float x, out of x's dtype and f32 scale "
                       "expected, got %s, %s and %s", dp_tensor_desc(x), dp_tensor_desc(out),
                       dp_tensor_desc(scale));
    if (dtype != DP_FP8_E4M3 && dtype != DP_FP8_E5M2)
        return dp_fail(DP_EDTYPE, "cuda fake_quant: target must be fp8 (e4m3 or e5m2), got %s",
                       dp_dtype_name(dtype));
    int64_t n = dp_tensor_numel(x), groups = dp_tensor_numel(scale);
    int64_t per = groups ? n / groups : 0;
    if (n == 0 || per == 0) return 0;
    fake_quant_kernel<<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out->data, x->data, x->dtype,
                                                            (const float *)scale->data, n, per,
                                                            dtype == DP_FP8_E4M3);
    return dp_cuda_check_launch("fake_quant", "fake_quant_kernel");
}
