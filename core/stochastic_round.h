/* stochastic_round.h: the stochastic rounding rule of the optimizers (dp_rounding in dp.h), one
 * definition for the CPU (kernels/cpu/optim.c) and CUDA (kernels/cuda/optim.cu, noisy_update.cu),
 * so that equal values and equal Philox words give equal codes on both. Integer and compare
 * arithmetic plus one quotient, so no contraction flag (-fmad) can change a result. */
#ifndef DP_STOCHASTIC_ROUND_H
#define DP_STOCHASTIC_ROUND_H
#include <math.h>
#include "dtype_cast.h"

/* Philox stream of the rounding uniforms (ctr_hi of every block; "SR"). */
enum { DP_SR_STREAM = 0x5352 };

/* A format's field widths, for dp_cast_encode (fn: OCP e4m3, no Inf, saturating). */
typedef struct dp_sr_format { int man, ebits, fn; } dp_sr_format;

DP_CAST_FN dp_sr_format dp_sr_format_of(dp_dtype dt) {
    dp_sr_format f;
    switch (dt) {
    case DP_BF16: f.man = 7; f.ebits = 8; f.fn = 0; break;
    case DP_F16: f.man = 10; f.ebits = 5; f.fn = 0; break;
    case DP_FP8_E4M3: f.man = 3; f.ebits = 4; f.fn = 1; break;
    default: f.man = 2; f.ebits = 5; f.fn = 0; break;   /* DP_FP8_E5M2 */
    }
    return f;
}

/* The value of a (non-negative) code of dt, exactly. */
DP_CAST_FN double dp_sr_decode(dp_dtype dt, uint32_t code) {
    switch (dt) {
    case DP_BF16: return dp_cast_bf16_to_f32((uint16_t)code);
    case DP_F16: return dp_cast_f16_to_f32((uint16_t)code);
    case DP_FP8_E4M3: return dp_cast_e4m3_to_f32((uint8_t)code);
    default: return dp_cast_e5m2_to_f32((uint8_t)code);
    }
}

/* v rounded stochastically into dt: with lo < v < hi its neighbours, hi when u < (v - lo) /
 * (hi - lo), so E[result] = v for u uniform. u = w * 2^-32 from one Philox word. Values that are
 * exact, NaN or Inf, or beyond the largest finite value (whose upper neighbour would be Inf or NaN)
 * round to nearest: stochastic rounding must not overflow. Returns the code. */
DP_CAST_FN uint32_t dp_round_stochastic(double v, dp_dtype dt, uint32_t w) {
    dp_sr_format f = dp_sr_format_of(dt);
    uint32_t code = dp_cast_encode(v, f.man, f.ebits, f.fn);
    uint32_t sign = 1u << (f.ebits + f.man), mag = code & (sign - 1);
    double a = fabs(v), r = dp_sr_decode(dt, mag);
    if (!isfinite(v) || !isfinite(r) || r == a) return code;
    /* Magnitudes: the neighbours of a are r and the code next to it on a's other side. */
    uint32_t other = r < a ? mag + 1 : mag - 1;
    double o = dp_sr_decode(dt, other);
    if (!isfinite(o)) return code;
    double alo = r < a ? r : o, ahi = r < a ? o : r;
    uint32_t clo = r < a ? mag : other, chi = r < a ? other : mag;
    /* Signed: for v < 0 the upper neighbour is -alo, reached with probability (ahi - a) / (ahi - alo). */
    double p_up = v > 0 ? (a - alo) / (ahi - alo) : (ahi - a) / (ahi - alo);
    int up = (double)w * 0x1p-32 < p_up;
    uint32_t pick = v > 0 ? (up ? chi : clo) : (up ? clo : chi);
    return (code & sign) | pick;
}

#endif
