// unary.cu: CUDA kernels for the unary functions (neg, exp, log, sqrt, abs, tanh, sigmoid, relu,
// gelu, affine, pow) and their derivatives over strided operands. Same formulas as
// kernels/cpu/unary.c: f64 computes in double, the other float dtypes in f32 with the float
// functions (CUDA's expf, erff, ... differ from glibc by an ulp or two).
#include "ew.h"

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

// The float and double versions of each libm function, picked by the compute type.
static __device__ __forceinline__ float m_exp(float x) { return expf(x); }
static __device__ __forceinline__ double m_exp(double x) { return exp(x); }
static __device__ __forceinline__ float m_log(float x) { return logf(x); }
static __device__ __forceinline__ double m_log(double x) { return log(x); }
static __device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
static __device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
static __device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
static __device__ __forceinline__ double m_abs(double x) { return fabs(x); }
static __device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
static __device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
static __device__ __forceinline__ float m_erf(float x) { return erff(x); }
static __device__ __forceinline__ double m_erf(double x) { return erf(x); }
static __device__ __forceinline__ float m_pow(float x, float a) { return powf(x, a); }
static __device__ __forceinline__ double m_pow(double x, double a) { return pow(x, a); }

// f(x); a2 is 1 when alpha == 1 exactly, 2 when alpha == 2 (the CPU's special cases of pow).
template <typename T>
static __device__ __forceinline__ T unary_f(dp_unop op, T x, T alpha, T beta, int a2) {
    switch (op) {
    case DP_UN_NEG: return -x;
    case DP_UN_EXP: return m_exp(x);
    case DP_UN_LOG: return m_log(x);
    case DP_UN_SQRT: return m_sqrt(x);
    case DP_UN_ABS: return m_abs(x);
    case DP_UN_TANH: return m_tanh(x);
    case DP_UN_SIGMOID: return (T)1 / ((T)1 + m_exp(-x));
    // NaN fails both comparisons and is kept, so it propagates.
    case DP_UN_RELU: return (x > (T)0 || x != x) ? x : (T)0;
    case DP_UN_GELU: return (T)0.5 * x * ((T)1 + m_erf(x * (T)INV_SQRT2));
    case DP_UN_AFFINE: return x * alpha + beta;
    default:   // DP_UN_POW
        return a2 == 1 ? x : a2 == 2 ? x * x : m_pow(x, alpha);
    }
}

template <typename T>
static __global__ void unary_kernel(dp_cu_geom g, void *out, dp_dtype ot, const void *x, dp_dtype xt,
                             dp_unop op, T alpha, T beta, int a2) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        T v;
        dp_cu_load(&v, x, xt, off[1]);
        dp_cu_store(out, ot, off[0], unary_f<T>(op, v, alpha, beta, a2));
    }
}

static int pow_case(double alpha) { return alpha == 1.0 ? 1 : alpha == 2.0 ? 2 : 0; }

int dp_cuda_unary(dp_tensor *out, const dp_tensor *x, dp_unop op, double alpha, double beta) {
    if (!dp_dtype_is_float(out->dtype) || !dp_dtype_is_float(x->dtype))
        return dp_fail(DP_EDTYPE, "cuda unary: float tensors only, got %s and %s",
                       dp_tensor_desc(out), dp_tensor_desc(x));
    if ((unsigned)op > DP_UN_POW) return dp_fail(DP_EARG, "cuda unary: unknown op %d", (int)op);
    const dp_tensor *ts[2] = { out, x };
    dp_cu_geom g;
    dp_cu_geom_init(&g, 2, ts);
    if (g.numel == 0) return 0;
    int a2 = pow_case(alpha);
    if (out->dtype == DP_F64)
        unary_kernel<double><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, out->data, out->dtype, x->data, x->dtype, op, alpha, beta, a2);
    else
        unary_kernel<float><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, out->data, out->dtype, x->data, x->dtype, op, (float)alpha, (float)beta, a2);
    return dp_cuda_check_launch("unary", "unary_kernel");
}

// gx = gy * f'(.), v being y for exp, tanh, sigmoid and sqrt, x for the rest (unused by neg and
// affine, whose derivative is a constant).
template <typename T>
static __device__ __forceinline__ T unary_grad(dp_unop op, T g, T v, T alpha, int a2) {
    switch (op) {
    case DP_UN_NEG: return -g;
    case DP_UN_EXP: return g * v;
    case DP_UN_LOG: return g / v;
    case DP_UN_SQRT: return g * (T)0.5 / v;
    // sign(x), 0 at 0; a NaN x passes its NaN on.
    case DP_UN_ABS: return v > (T)0 ? g : v < (T)0 ? -g : v == (T)0 ? (T)0 : v;
    case DP_UN_TANH: return g * ((T)1 - v * v);
    case DP_UN_SIGMOID: return g * v * ((T)1 - v);
    case DP_UN_RELU: return v > (T)0 ? g : (T)0;
    // d/dx x Phi(x) = Phi(x) + x phi(x).
    case DP_UN_GELU: {
        T cdf = (T)0.5 * ((T)1 + m_erf(v * (T)INV_SQRT2));
        T pdf = m_exp((T)-0.5 * v * v) * (T)INV_SQRT_2PI;
        return g * (cdf + v * pdf);
    }
    case DP_UN_AFFINE: return g * alpha;
    default:   // DP_UN_POW
        return a2 == 1 ? g : a2 == 2 ? g * (T)2 * v : g * alpha * m_pow(v, alpha - (T)1);
    }
}

template <typename T>
static __global__ void unary_backward_kernel(dp_cu_geom g, void *gx, dp_dtype gxt, const void *gy,
                                      dp_dtype gyt, const void *v, dp_dtype vt, dp_unop op,
                                      T alpha, int a2) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < g.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t off[DP_CU_EW_MAX_OPS];
        dp_cu_offsets(g, i, off);
        T gv, vv = (T)0;
        dp_cu_load(&gv, gy, gyt, off[1]);
        if (v) dp_cu_load(&vv, v, vt, off[2]);
        dp_cu_store(gx, gxt, off[0], unary_grad<T>(op, gv, vv, alpha, a2));
    }
}

static int uses_output(dp_unop op) {
    return op == DP_UN_EXP || op == DP_UN_TANH || op == DP_UN_SIGMOID || op == DP_UN_SQRT;
}

int dp_cuda_unary_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *x,
                           const dp_tensor *y, dp_unop op, double alpha, double beta) {
    if ((unsigned)op > DP_UN_POW)
        return dp_fail(DP_EARG, "cuda unary_backward: unknown op %d", (int)op);
    int constant = op == DP_UN_NEG || op == DP_UN_AFFINE;
    const dp_tensor *v = constant ? NULL : uses_output(op) ? y : x;
    if (!constant && !v)
        return dp_fail(DP_EARG, "cuda unary_backward: op %d needs its %s", (int)op,
                       uses_output(op) ? "output y" : "input x");
    if (!dp_dtype_is_float(gx->dtype) || !dp_dtype_is_float(gy->dtype) ||
        (v && !dp_dtype_is_float(v->dtype)))
        return dp_fail(DP_EDTYPE, "cuda unary_backward: float tensors only, got gx %s, gy %s",
                       dp_tensor_desc(gx), dp_tensor_desc(gy));
    const dp_tensor *ts[3] = { gx, gy, v };
    dp_cu_geom g;
    dp_cu_geom_init(&g, v ? 3 : 2, ts);
    if (g.numel == 0) return 0;
    int a2 = pow_case(alpha);
    const void *vd = v ? v->data : NULL;
    dp_dtype vt = v ? v->dtype : gy->dtype;
    if (gx->dtype == DP_F64)
        unary_backward_kernel<double><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, gx->data, gx->dtype, gy->data, gy->dtype, vd, vt, op, alpha, a2);
    else
        unary_backward_kernel<float><<<dp_cuda_grid(g.numel), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            g, gx->data, gx->dtype, gy->data, gy->dtype, vd, vt, op, (float)alpha, a2);
    return dp_cuda_check_launch("unary_backward", "unary_backward_kernel");
}
