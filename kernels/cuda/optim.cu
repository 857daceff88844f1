// optim.cu: the optimizer updates (SGD with momentum, Adam/AdamW; dp_sgd_step_ and dp_adam_step_
// in dp.h) on CUDA, following kernels/cpu/optim.c: f32 arithmetic (f64 for f64 params), the
// result rounded once into the parameter's dtype, to nearest even or stochastically. One thread
// per 4 consecutive elements, which share one Philox block of the rounding stream, so element i
// uses lane i % 4 of block counter + i / 4 exactly as on the CPU.
//
// The DP noise fused into this update (the end of a DP step in one pass) is noisy_update.cu; it
// spells out with explicit roundings the multiply-adds that nvcc contracts here.
#include "dpsgd.h"
#include "philox.h"
#include "stochastic_round.h"

struct sgd_args {
    double lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
};

struct adam_args {
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled;
    double step_size;   // lr / (1 - beta1^step)
    double inv_bias2;   // 1 / sqrt(1 - beta2^step)
    double decay;       // AdamW: 1 - lr * weight_decay
};

// ---------------------------------------------------------------- one element

static __device__ __forceinline__ float load_f32(const void *p, dp_dtype t, int64_t i) {
    return t == DP_F32 ? ((const float *)p)[i] : (float)dp_cuda_load_f64(p, t, i);
}

// One SGD element in compute type R (float or double); s0 is buf (NULL when momentum is 0).
template <typename R>
static __device__ __forceinline__ R sgd_one(R p, R g, R *s0, const sgd_args &a) {
    R lr = (R)a.lr, mom = (R)a.momentum, keep = (R)(1.0 - a.dampening), wd = (R)a.weight_decay;
    if (a.weight_decay != 0) g = g + wd * p;   // skipped at 0 so an Inf p does not give NaN
    if (!s0) return p - lr * g;
    R buf = a.first_step ? g : mom * *s0 + keep * g;
    *s0 = buf;
    return a.nesterov ? p - lr * (g + mom * buf) : p - lr * buf;
}

template <typename R>
static __device__ __forceinline__ R adam_one(R p, R g, R *m, R *v, const adam_args &a) {
    R b1 = (R)a.beta1, b2 = (R)a.beta2, c1 = (R)(1.0 - a.beta1), c2 = (R)(1.0 - a.beta2);
    R eps = (R)a.eps, wd = (R)a.weight_decay, step_size = (R)a.step_size;
    R inv_bias2 = (R)a.inv_bias2, decay = (R)a.decay;
    if (a.weight_decay != 0) {
        if (a.decoupled) p = p * decay;
        else g = g + wd * p;
    }
    R mv = b1 * *m + c1 * g, vv = b2 * *v + c2 * (g * g);
    *m = mv;
    *v = vv;
    return p - step_size * mv / (sqrt(vv) * inv_bias2 + eps);
}

// ---------------------------------------------------------------- kernels

// Params other than f64: f32 arithmetic. sr != 0: stochastic rounding for bf16/f16/fp8 params.
template <bool ADAM>
__global__ void update_f32_kernel(void *param, dp_dtype pt, const void *grad, dp_dtype gt,
                                  float *s0, float *s1, int64_t n, sgd_args sa, adam_args aa,
                                  int sr, uint64_t sr_seed, uint64_t sr_counter) {
    for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; 4 * q < n;
         q += (int64_t)gridDim.x * blockDim.x) {
        uint32_t w[4] = {0, 0, 0, 0};
        if (sr) dp_philox_block(w, sr_seed, sr_counter + (uint64_t)q, DP_SR_STREAM);
        for (int j = 0; j < 4 && 4 * q + j < n; j++) {
            int64_t i = 4 * q + j;
            float p = load_f32(param, pt, i), g = load_f32(grad, gt, i);
            float r;
            if constexpr (ADAM) r = adam_one<float>(p, g, s0 + i, s1 + i, aa);
            else r = sgd_one<float>(p, g, s0 ? s0 + i : NULL, sa);
            if (pt == DP_F32) {
                ((float *)param)[i] = r;
            } else if (sr) {
                uint32_t code = dp_round_stochastic((double)r, pt, w[j]);
                if (pt == DP_BF16 || pt == DP_F16) ((uint16_t *)param)[i] = (uint16_t)code;
                else ((uint8_t *)param)[i] = (uint8_t)code;
            } else {
                dp_cast_store_float(param, pt, i, (double)r);
            }
        }
    }
}

template <bool ADAM>
__global__ void update_f64_kernel(double *param, const void *grad, dp_dtype gt, double *s0,
                                  double *s1, int64_t n, sgd_args sa, adam_args aa) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        double g = dp_cuda_load_f64(grad, gt, i);
        if constexpr (ADAM) param[i] = adam_one<double>(param[i], g, s0 + i, s1 + i, aa);
        else param[i] = sgd_one<double>(param[i], g, s0 ? s0 + i : NULL, sa);
    }
}

// ---------------------------------------------------------------- launchers

static int check_args(const char *op, const dp_tensor *param, const dp_tensor *grad,
                      const dp_tensor *s0, const dp_tensor *s1) {
    dp_dtype st = param->dtype == DP_F64 ? DP_F64 : DP_F32;
    if (!dp_cuda_is_float(param->dtype) || !dp_cuda_is_float(grad->dtype) ||
        (s0 && s0->dtype != st) || (s1 && s1->dtype != st))
        return dp_fail(DP_EDTYPE, "%s: expected a float param and grad and %s state on cuda, got "
                       "param %s, grad %s", op, st == DP_F64 ? "f64" : "f32",
                       dp_tensor_desc(param), dp_tensor_desc(grad));
    return 0;
}

template <bool ADAM>
static int launch(const char *op, dp_tensor *param, const dp_tensor *grad, dp_tensor *s0,
                  dp_tensor *s1, const sgd_args &sa, const adam_args &aa,
                  const dp_rounding *rounding) {
    int64_t n = dp_tensor_numel(param);
    if (n == 0) return 0;
    if (param->dtype == DP_F64) {
        update_f64_kernel<ADAM><<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            (double *)param->data, grad->data, grad->dtype, s0 ? (double *)s0->data : NULL,
            s1 ? (double *)s1->data : NULL, n, sa, aa);
    } else {
        int sr = rounding && rounding->stochastic && param->dtype != DP_F32;
        update_f32_kernel<ADAM><<<dp_cuda_grid((n + 3) / 4), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            param->data, param->dtype, grad->data, grad->dtype, s0 ? (float *)s0->data : NULL,
            s1 ? (float *)s1->data : NULL, n, sa, aa, sr, sr ? rounding->seed : 0,
            sr ? rounding->counter : 0);
    }
    return dp_cuda_check_launch(op, ADAM ? "update_kernel<adam>" : "update_kernel<sgd>");
}

int dp_cuda_sgd_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *buf, double lr,
                     double momentum, double dampening, double weight_decay, int32_t nesterov,
                     int32_t first_step, const dp_rounding *rounding) {
    dp_tensor *s0 = momentum != 0 ? buf : NULL;   // with momentum 0 the buffer plays no part
    int rc = check_args("sgd_step", param, grad, s0, NULL);
    if (rc) return rc;
    sgd_args sa = {lr, momentum, dampening, weight_decay, nesterov, first_step};
    adam_args aa = {};
    return launch<false>("sgd_step", param, grad, s0, NULL, sa, aa, rounding);
}

int dp_cuda_adam_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      int32_t decoupled, int64_t step, const dp_rounding *rounding) {
    int rc = check_args("adam_step", param, grad, m, v);
    if (rc) return rc;
    if (!m || !v) return dp_fail(DP_EARG, "adam_step: m and v are required");
    // The bias corrections on the host, in double, exactly as the CPU forms them.
    double bias1 = 1.0 - pow(beta1, (double)step), bias2 = 1.0 - pow(beta2, (double)step);
    adam_args aa = {lr, beta1, beta2, eps, weight_decay, decoupled, lr / bias1, 1.0 / sqrt(bias2),
                    1.0 - lr * weight_decay};
    sgd_args sa = {};
    return launch<true>("adam_step", param, grad, m, v, sa, aa, rounding);
}
