// noisy_update.cu: the end of a DP step for one parameter in one pass (backend noisy_update,
// core/backend.h): noise into the clipped sum, the scale, and the SGD / Adam update, each element
// computed as the unfused CUDA kernels compute it, so that the fused path gives their bits:
//   noise:  dp_philox_noise_add_block, the function noise.cu runs (this file, like noise.cu, is
//           built with -fmad=false, and philox.h spells out every fma);
//   scale:  fma(n, alpha, 0), the contracted x * alpha + beta of unary.cu's AFFINE (dp_scale_);
//   update: optim.cu's sgd_one / adam_one with the multiply-adds that nvcc contracts there (seen in
//           its SASS with CUDA 13.0 for sm_80 and sm_90: the second product of a * b + c * d, the
//           product of p - lr * s, g + wd * p and s * inv_bias2 + eps) written as explicit fma and
//           every other operation as an explicitly rounded one, since -fmad=false would otherwise
//           keep them apart. Stochastic rounding is optim.cu's (core/stochastic_round.h).
// One thread per 4 elements, as optim.cu (they share one Philox block of the rounding stream; the
// noise takes two blocks of its own stream). The two sums of squares are formed in double per
// thread, reduced per thread-block in shared memory in a fixed order into per-block partials, and
// those summed by a second kernel in a fixed order: the result does not depend on scheduling.
#include "allocator.h"
#include "dpsgd.h"
#include "philox.h"
#include "stochastic_round.h"

// ---------------------------------------------------------------- explicitly rounded arithmetic

static __device__ __forceinline__ float k_mul(float a, float b) { return __fmul_rn(a, b); }
static __device__ __forceinline__ double k_mul(double a, double b) { return __dmul_rn(a, b); }
static __device__ __forceinline__ float k_sub(float a, float b) { return __fsub_rn(a, b); }
static __device__ __forceinline__ double k_sub(double a, double b) { return __dsub_rn(a, b); }
static __device__ __forceinline__ float k_div(float a, float b) { return __fdiv_rn(a, b); }
static __device__ __forceinline__ double k_div(double a, double b) { return __ddiv_rn(a, b); }
static __device__ __forceinline__ float k_fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
static __device__ __forceinline__ double k_fma(double a, double b, double c) { return __fma_rn(a, b, c); }
static __device__ __forceinline__ float k_sqrt(float a) { return __fsqrt_rn(a); }
static __device__ __forceinline__ double k_sqrt(double a) { return __dsqrt_rn(a); }

// ---------------------------------------------------------------- one element

// The update's constants in the compute type R, converted from double as optim.cu converts them.
template <typename R>
struct rule_k {
    int adam, nesterov, first_step, has_wd, decoupled;
    R lr, mom, keep, wd;                                  // SGD (lr and wd: Adam too)
    R b1, b2, c1, c2, eps, step_size, inv_bias2, decay;   // Adam
};

// optim.cu's sgd_one: s0 is the momentum buffer (NULL when momentum is 0).
template <typename R>
static __device__ __forceinline__ R sgd_fused(R p, R g, R *s0, const rule_k<R> &a) {
    if (a.has_wd) g = k_fma(a.wd, p, g);
    if (!s0) return k_fma(-a.lr, g, p);
    R buf = a.first_step ? g : k_fma(a.keep, g, k_mul(a.mom, *s0));
    *s0 = buf;
    return k_fma(-a.lr, a.nesterov ? k_fma(a.mom, buf, g) : buf, p);
}

// optim.cu's adam_one.
template <typename R>
static __device__ __forceinline__ R adam_fused(R p, R g, R *m, R *v, const rule_k<R> &a) {
    if (a.has_wd) {
        if (a.decoupled) p = k_mul(p, a.decay);
        else g = k_fma(a.wd, p, g);
    }
    R mv = k_fma(a.c1, g, k_mul(a.b1, *m)), vv = k_fma(a.c2, k_mul(g, g), k_mul(a.b2, *v));
    *m = mv;
    *v = vv;
    return k_sub(p, k_div(k_mul(a.step_size, mv), k_fma(k_sqrt(vv), a.inv_bias2, a.eps)));
}

// ---------------------------------------------------------------- kernels

// The thread-block's sums of a and b (one pair per thread), a tree over the threads in a fixed
// order: red[0][0] and red[1][0] hold them on return, for every thread.
static __device__ __forceinline__ void block_sum_pair(double (*red)[DP_CUDA_THREADS], double a, double b) {
    red[0][threadIdx.x] = a;
    red[1][threadIdx.x] = b;
    __syncthreads();
    for (int half = DP_CUDA_THREADS / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) {
            red[0][threadIdx.x] = __dadd_rn(red[0][threadIdx.x], red[0][threadIdx.x + half]);
            red[1][threadIdx.x] = __dadd_rn(red[1][threadIdx.x], red[1][threadIdx.x + half]);
        }
        __syncthreads();
    }
}

struct noise_k {
    double std;
    uint64_t seed, stream, counter;
    int scaled;          // scale != 1 (dp_psg_finish skips the scale at 1)
    double scale;
};

struct sr_k {
    int on;              // stochastic rounding of a bf16/f16/fp8 param
    uint64_t seed, counter;
};

// R: the accumulator's and state's type (float, double for f64 params). Param dtype pt: f64 when
// R is double, any other float dtype when R is float.
template <typename R>
__global__ void noisy_update_kernel(void *param, dp_dtype pt, R *acc, R *s0, R *s1, int64_t n,
                                    noise_k nz, rule_k<R> rule, sr_k sr, double *partials) {
    __shared__ double red[2][DP_CUDA_THREADS];
    const dp_dtype at = sizeof(R) == 8 ? DP_F64 : DP_F32;
    const R alpha = (R)nz.scale, zero = (R)0;
    double sum_sq = 0, noise_sq = 0;
    for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; 4 * q < n;
         q += (int64_t)gridDim.x * blockDim.x) {
        R before[4];
        for (int j = 0; j < 4 && 4 * q + j < n; j++) before[j] = acc[4 * q + j];
        dp_philox_noise_add_block(acc, at, n, nz.std, nz.seed, nz.stream, nz.counter, 2 * q);
        if (4 * q + 2 < n)
            dp_philox_noise_add_block(acc, at, n, nz.std, nz.seed, nz.stream, nz.counter, 2 * q + 1);
        uint32_t w[4] = {0, 0, 0, 0};
        if (sr.on) dp_philox_block(w, sr.seed, sr.counter + (uint64_t)q, DP_SR_STREAM);
        for (int j = 0; j < 4 && 4 * q + j < n; j++) {
            int64_t i = 4 * q + j;
            R noisy = acc[i];
            double b = (double)before[j], d = __dsub_rn((double)noisy, b);
            sum_sq = __fma_rn(b, b, sum_sq);
            noise_sq = __fma_rn(d, d, noise_sq);
            R g = nz.scaled ? k_fma(noisy, alpha, zero) : noisy;
            acc[i] = g;
            R p = pt == DP_F64 ? (R)((double *)param)[i] : (R)dp_cuda_load_f64(param, pt, i);
            R *m = s0 ? s0 + i : NULL;
            R r = rule.adam ? adam_fused<R>(p, g, m, s1 + i, rule) : sgd_fused<R>(p, g, m, rule);
            if (pt == DP_F64) {
                ((double *)param)[i] = (double)r;
            } else if (pt == DP_F32) {
                ((float *)param)[i] = (float)r;
            } else if (sr.on) {
                uint32_t code = dp_round_stochastic((double)r, pt, w[j]);
                if (pt == DP_BF16 || pt == DP_F16) ((uint16_t *)param)[i] = (uint16_t)code;
                else ((uint8_t *)param)[i] = (uint8_t)code;
            } else {
                dp_cast_store_float(param, pt, i, (double)r);
            }
        }
    }
    block_sum_pair(red, sum_sq, noise_sq);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = red[0][0];
        partials[2 * blockIdx.x + 1] = red[1][0];
    }
}

// sums[0..1] = the partials of `blocks` thread-blocks added up, in a fixed order (one block).
__global__ void noisy_sums_kernel(double *sums, const double *partials, int64_t blocks) {
    __shared__ double red[2][DP_CUDA_THREADS];
    double a = 0, b = 0;
    for (int64_t k = threadIdx.x; k < blocks; k += DP_CUDA_THREADS) {
        a = __dadd_rn(a, partials[2 * k]);
        b = __dadd_rn(b, partials[2 * k + 1]);
    }
    block_sum_pair(red, a, b);
    if (threadIdx.x == 0) {
        sums[0] = red[0][0];
        sums[1] = red[1][0];
    }
}

// ---------------------------------------------------------------- launcher

// The rule's constants as optim.cu forms them: the double hyper-parameters rounded to R on their
// own, the Adam bias corrections in double on the host.
template <typename R>
static rule_k<R> constants(const dp_update_rule *rule) {
    rule_k<R> k = {};
    k.adam = rule->kind == DP_UPDATE_ADAM;
    k.has_wd = rule->weight_decay != 0;
    k.lr = (R)rule->lr;
    k.wd = (R)rule->weight_decay;
    if (!k.adam) {
        k.mom = (R)rule->momentum;
        k.keep = (R)(1.0 - rule->dampening);
        k.nesterov = rule->nesterov;
        k.first_step = rule->first_step;
        return k;
    }
    double bias1 = 1.0 - pow(rule->beta1, (double)rule->step), bias2 = 1.0 - pow(rule->beta2, (double)rule->step);
    k.decoupled = rule->decoupled;
    k.b1 = (R)rule->beta1;
    k.b2 = (R)rule->beta2;
    k.c1 = (R)(1.0 - rule->beta1);
    k.c2 = (R)(1.0 - rule->beta2);
    k.eps = (R)rule->eps;
    k.step_size = (R)(rule->lr / bias1);
    k.inv_bias2 = (R)(1.0 / sqrt(bias2));
    k.decay = (R)(1.0 - rule->lr * rule->weight_decay);
    return k;
}

static int dp_cuda_noisy_update(dp_tensor *param, dp_tensor *acc, dp_tensor *state0, dp_tensor *state1,
                                dp_tensor *sums, double std, uint64_t seed, uint64_t stream,
                                uint64_t counter, double scale, const dp_update_rule *rule,
                                const dp_rounding *rounding) {
    const char *op = "noisy_update";
    int wide = param->dtype == DP_F64;
    dp_dtype st = wide ? DP_F64 : DP_F32;
    if (!dp_cuda_is_float(param->dtype) || acc->dtype != st || (state0 && state0->dtype != st) ||
        (state1 && state1->dtype != st) || sums->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "%s: expected a float param with %s accumulator and state and f64 sums "
                       "on cuda, got param %s, accumulator %s", op, wide ? "f64" : "f32",
                       dp_tensor_desc(param), dp_tensor_desc(acc));
    if (rule->kind == DP_UPDATE_ADAM && (!state0 || !state1))
        return dp_fail(DP_EARG, "%s: Adam needs m and v", op);
    int64_t n = dp_tensor_numel(param);
    if (n == 0)
        return dp_cuda_check(cudaMemsetAsync(sums->data, 0, 2 * sizeof(double), dp_cuda_stream()), op,
                             "cudaMemsetAsync");
    noise_k nz = {std, seed, stream, counter, scale != 1.0, scale};
    // With momentum 0 the buffer plays no part (as optim.cu's sgd_step).
    dp_tensor *s0 = rule->kind == DP_UPDATE_SGD && rule->momentum == 0 ? NULL : state0;
    dp_tensor *s1 = rule->kind == DP_UPDATE_ADAM ? state1 : NULL;
    int sr_on = !wide && param->dtype != DP_F32 && rounding && rounding->stochastic;
    sr_k sr = {sr_on, sr_on ? rounding->seed : 0, sr_on ? rounding->counter : 0};
    unsigned grid = dp_cuda_grid((n + 3) / 4);
    size_t bytes = 2 * sizeof(double) * grid;
    double *partials = (double *)dp_cuda_alloc(bytes, op);
    if (!partials) return DP_ENOMEM;
    dp_mem_scratch(DP_CUDA, (int64_t)bytes);
    if (wide)
        noisy_update_kernel<double><<<grid, DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            param->data, param->dtype, (double *)acc->data, s0 ? (double *)s0->data : NULL,
            s1 ? (double *)s1->data : NULL, n, nz, constants<double>(rule), sr, partials);
    else
        noisy_update_kernel<float><<<grid, DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            param->data, param->dtype, (float *)acc->data, s0 ? (float *)s0->data : NULL,
            s1 ? (float *)s1->data : NULL, n, nz, constants<float>(rule), sr, partials);
    int rc = dp_cuda_check_launch(op, "noisy_update_kernel");
    if (!rc) {
        noisy_sums_kernel<<<1, DP_CUDA_THREADS, 0, dp_cuda_stream()>>>((double *)sums->data, partials, grid);
        rc = dp_cuda_check_launch(op, "noisy_sums_kernel");
    }
    // Freed behind the queued kernels: a later user of the block is queued after them (one stream).
    dp_cuda_free(partials);
    dp_mem_scratch(DP_CUDA, -(int64_t)bytes);
    return rc;
}

void dp_cuda_register_noisy_update(dp_ops *t) { t->noisy_update = dp_cuda_noisy_update; }
