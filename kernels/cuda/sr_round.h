// sr_round.h: stochastic rounding of an f32 update into a bf16 / f16 / fp8 parameter on CUDA, the
// rule of kernels/cpu/optim.c, shared by the optimizer kernels (optim.cu) and the fused end of a
// DP step (noisy_update.cu). Integer and compare arithmetic only, so the files' contraction flags
// (-fmad) cannot change a result.
#ifndef DP_CUDA_SR_ROUND_H
#define DP_CUDA_SR_ROUND_H
#include "dpsgd.h"

enum { SR_STREAM = 0x5352 };   // Philox ctr_hi of the stochastic-rounding uniforms ("SR")

struct sr_format { int man, ebits, fn; };

static __device__ sr_format sr_format_of(dp_dtype dt) {
    switch (dt) {
    case DP_BF16: return sr_format{7, 8, 0};
    case DP_F16: return sr_format{10, 5, 0};
    case DP_FP8_E4M3: return sr_format{3, 4, 1};
    default: return sr_format{2, 5, 0};
    }
}

static __device__ double sr_decode(dp_dtype dt, uint32_t code) {
    switch (dt) {
    case DP_BF16: return dp_cast_bf16_to_f32((uint16_t)code);
    case DP_F16: return dp_cast_f16_to_f32((uint16_t)code);
    case DP_FP8_E4M3: return dp_cast_e4m3_to_f32((uint8_t)code);
    default: return dp_cast_e5m2_to_f32((uint8_t)code);
    }
}

// The code of v rounded stochastically into dt with the uniform u = w 2^-32: between its
// neighbours lo < v < hi it becomes hi when u < (v - lo) / (hi - lo). Exact values, NaN, Inf,
// and values whose far neighbour is not finite round to nearest (never overflow). Same rule and
// arithmetic as the CPU (kernels/cpu/optim.c), so equal v and w give equal codes.
static __device__ uint32_t round_stochastic(double v, dp_dtype dt, uint32_t w) {
    sr_format f = sr_format_of(dt);
    uint32_t code = dp_cast_encode(v, f.man, f.ebits, f.fn);
    uint32_t sign = 1u << (f.ebits + f.man), mag = code & (sign - 1);
    double a = fabs(v), near = sr_decode(dt, mag);
    if (!isfinite(v) || !isfinite(near) || near == a) return code;
    uint32_t far = near < a ? mag + 1 : mag - 1;   // the magnitude on a's other side
    double o = sr_decode(dt, far);
    if (!isfinite(o)) return code;
    double alo = near < a ? near : o, ahi = near < a ? o : near;
    uint32_t clo = near < a ? mag : far, chi = near < a ? far : mag;
    double p_up = v > 0 ? (a - alo) / (ahi - alo) : (ahi - a) / (ahi - alo);
    int up = (double)w * 0x1p-32 < p_up;
    uint32_t pick = v > 0 ? (up ? chi : clo) : (up ? clo : chi);
    return (code & sign) | pick;
}

#endif
