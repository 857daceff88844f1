// bias_act.cu: the linear epilogue on CUDA, pre = x + bias and y = act(pre) (gelu, relu, tanh)
// in one grid-stride pass over contiguous x, y, pre. Same arithmetic as binary.cu's add and
// unary.cu's act (f64 in double, every other float dtype in f32, each result rounded once on
// store), so y equals unary(act, binary(add, x, bias)) on this backend bit for bit.
#include "ew.h"

#define INV_SQRT2 0.70710678118654752440

static __device__ __forceinline__ float act_erf(float x) { return erff(x); }
static __device__ __forceinline__ double act_erf(double x) { return erf(x); }
static __device__ __forceinline__ float act_tanh(float x) { return tanhf(x); }
static __device__ __forceinline__ double act_tanh(double x) { return tanh(x); }

// The expressions of unary.cu's unary_f for these three ops.
template <typename T>
static __device__ __forceinline__ T act_f(dp_unop act, T x) {
    switch (act) {
    case DP_UN_TANH: return act_tanh(x);
    case DP_UN_RELU: return (x > (T)0 || x != x) ? x : (T)0;
    default: return (T)0.5 * x * ((T)1 + act_erf(x * (T)INV_SQRT2));   // DP_UN_GELU
    }
}

// v as it reads back after a store into dtype t: the act sees pre rounded, as unary would.
static __device__ __forceinline__ float rounded(dp_dtype t, float v) {
    if (t == DP_F32) return v;
    uint64_t cell = 0;
    dp_cu_store(&cell, t, 0, v);
    float r;
    dp_cu_load(&r, &cell, t, 0);
    return r;
}
// f64 is the only dtype computed in double, and it stores exactly.
static __device__ __forceinline__ double rounded(dp_dtype t, double v) { return v; }

// Element i: bias index i % N. x is read before y or pre (either may be x itself) is written.
template <typename T>
static __global__ void bias_act_kernel(int64_t numel, int64_t N, void *y, void *pre,
                                       const void *x, const void *bias, int64_t bstride,
                                       dp_dtype dt, dp_unop act) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        T v;
        dp_cu_load(&v, x, dt, i);
        if (bias) {
            T b;
            dp_cu_load(&b, bias, dt, (i % N) * bstride);
            v = v + b;
        }
        if (pre) dp_cu_store(pre, dt, i, v);
        if (bias) v = rounded(dt, v);
        dp_cu_store(y, dt, i, act_f<T>(act, v));
    }
}

static int dp_cuda_bias_act(dp_tensor *y, dp_tensor *pre, const dp_tensor *x, const dp_tensor *bias,
                            dp_unop act) {
    if (act != DP_UN_GELU && act != DP_UN_RELU && act != DP_UN_TANH)
        return dp_fail(DP_EARG, "cuda bias_act: act must be gelu, relu or tanh, got op %d", (int)act);
    if (!dp_dtype_is_float(x->dtype) || y->dtype != x->dtype || (pre && pre->dtype != x->dtype) ||
        (bias && bias->dtype != x->dtype))
        return dp_fail(DP_EDTYPE, "cuda bias_act: x, y, pre and bias must share a float dtype "
                       "(x is %s, y is %s)", dp_tensor_desc(x), dp_tensor_desc(y));
    int64_t numel = dp_tensor_numel(x);
    int64_t N = x->ndim > 0 ? x->shape[x->ndim - 1] : 1;
    if (numel == 0 || N == 0) return 0;
    const void *bd = bias ? bias->data : NULL;
    int64_t bs = bias ? bias->stride[0] : 0;
    void *pd = pre ? pre->data : NULL;
    if (x->dtype == DP_F64)
        bias_act_kernel<double><<<dp_cuda_grid(numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            numel, N, y->data, pd, x->data, bd, bs, x->dtype, act);
    else
        bias_act_kernel<float><<<dp_cuda_grid(numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            numel, N, y->data, pd, x->data, bd, bs, x->dtype, act);
    return dp_cuda_check_launch("bias_act", "bias_act_kernel");
}

void dp_cuda_register_bias_act(dp_ops *t) { t->bias_act = dp_cuda_bias_act; }
