/* dtype_cast.h: the bit-level float casts, written once and compiled both by the C core
 * (core/dtype.c wraps them as dp_f64_to_bf16 & co.) and by nvcc for the CUDA kernels, so both
 * backends round identically.
 *
 * Encoding rounds a double to nearest, ties to even, in one step. Subnormals and signed zeros are
 * kept. NaN becomes the format's canonical quiet NaN with the input's sign (payload dropped).
 * Overflow: bf16, f16 and e5m2 go to Inf (so does anything at or beyond the halfway point above
 * the largest finite value); e4m3 (OCP "fn" variant, no Inf) saturates Inf and overflow to +-448.
 * Decoding is exact. */
#ifndef DP_DTYPE_CAST_H
#define DP_DTYPE_CAST_H
#include <stdint.h>
#include <string.h>
#include "dp.h"

#ifdef __CUDACC__
#define DP_CAST_FN static __host__ __device__ __forceinline__
#else
#define DP_CAST_FN static inline
#endif

/* A float format with `man` stored mantissa bits and `ebits` exponent bits (bias 2^(ebits-1)-1).
 * fn = 1: no Inf, the all-ones code is the only NaN and overflow saturates (OCP e4m3). Returns
 * the code (sign at bit ebits+man). */
DP_CAST_FN uint32_t dp_cast_encode(double x, int man, int ebits, int fn) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint32_t sign = (uint32_t)(bits >> 63) << (ebits + man);
    uint32_t exp_ones = (1u << ebits) - 1;
    uint32_t inf_code = exp_ones << man;
    uint32_t max_code = fn ? inf_code | ((1u << man) - 2) : inf_code - 1;
    uint32_t nan_code = fn ? inf_code | ((1u << man) - 1) : inf_code | (1u << (man - 1));
    int dexp = (int)((bits >> 52) & 0x7FF);
    uint64_t frac = bits & ((1ull << 52) - 1);
    if (dexp == 0x7FF) return sign | (frac ? nan_code : (fn ? max_code : inf_code));
    /* Zeros and double subnormals: far below half the smallest subnormal of every target. */
    if (dexp == 0) return sign;
    int e = dexp - 1023;
    int emin = 2 - (1 << (ebits - 1));
    uint64_t m = frac | (1ull << 52);
    uint64_t code;
    int shift;
    /* The implicit bit of m >> shift lands on the exponent field's lowest bit, so a normal
     * number's code is ((e - emin) << man) + (m >> shift), and a rounding carry moves into the
     * exponent (or from the subnormals into the normals) by itself. */
    if (e >= emin) {
        shift = 52 - man;
        code = (uint64_t)(e - emin) << man;
    } else {
        shift = 52 - man + (emin - e);
        code = 0;
        if (shift > 53) return sign;   /* below half the smallest subnormal */
    }
    uint64_t rem = m & ((1ull << shift) - 1), half = 1ull << (shift - 1);
    code += m >> shift;
    if (rem > half || (rem == half && (code & 1))) code++;
    if (code > max_code) code = fn ? max_code : inf_code;
    return sign | (uint32_t)code;
}

DP_CAST_FN uint16_t dp_cast_f64_to_bf16(double x) { return (uint16_t)dp_cast_encode(x, 7, 8, 0); }
DP_CAST_FN uint16_t dp_cast_f64_to_f16(double x) { return (uint16_t)dp_cast_encode(x, 10, 5, 0); }
DP_CAST_FN uint8_t dp_cast_f64_to_e4m3(double x) { return (uint8_t)dp_cast_encode(x, 3, 4, 1); }
DP_CAST_FN uint8_t dp_cast_f64_to_e5m2(double x) { return (uint8_t)dp_cast_encode(x, 2, 5, 0); }

/* f32 -> bf16 directly on the bits: adding 0x7FFF plus the kept lowest bit rounds to nearest
 * even, and a carry runs into the exponent (up to Inf) by itself. Same result as via double. */
DP_CAST_FN uint16_t dp_cast_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7FC0u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

DP_CAST_FN float dp_cast_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

DP_CAST_FN float dp_cast_bf16_to_f32(uint16_t h) { return dp_cast_bits_f32((uint32_t)h << 16); }

DP_CAST_FN float dp_cast_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 31u, m = h & 0x3FFu;
    if (e == 31) return dp_cast_bits_f32(sign | 0x7F800000u | (m ? 0x400000u | (m << 13) : 0));
    if (e == 0) {   /* subnormal or zero: m * 2^-24, exact in f32 */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return dp_cast_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

DP_CAST_FN float dp_cast_e4m3_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t e = (b >> 3) & 15u, m = b & 7u;
    if (e == 15 && m == 7) return dp_cast_bits_f32(sign | 0x7FC00000u);
    if (e == 0) {   /* subnormal or zero: m * 2^-9 */
        float v = (float)m * 0x1p-9f;
        return sign ? -v : v;
    }
    return dp_cast_bits_f32(sign | ((e + 120u) << 23) | (m << 20));
}

/* e5m2 is the top byte of an f16. */
DP_CAST_FN float dp_cast_e5m2_to_f32(uint8_t b) { return dp_cast_f16_to_f32((uint16_t)(b << 8)); }

/* v rounded once (to nearest even) into element i of a float buffer; returns 0 for a non-float
 * dtype, which the caller handles. The one store both backends use for float results. */
DP_CAST_FN int dp_cast_store_float(void *p, dp_dtype dtype, int64_t i, double v) {
    switch (dtype) {
    case DP_F32: ((float *)p)[i] = (float)v; return 1;
    case DP_F64: ((double *)p)[i] = v; return 1;
    case DP_BF16: ((uint16_t *)p)[i] = dp_cast_f64_to_bf16(v); return 1;
    case DP_F16: ((uint16_t *)p)[i] = dp_cast_f64_to_f16(v); return 1;
    case DP_FP8_E4M3: ((uint8_t *)p)[i] = dp_cast_f64_to_e4m3(v); return 1;
    case DP_FP8_E5M2: ((uint8_t *)p)[i] = dp_cast_f64_to_e5m2(v); return 1;
    default: return 0;
    }
}

/* Element i of any dtype as a double (integers exactly up to 2^53). */
DP_CAST_FN double dp_cast_load(const void *p, dp_dtype dtype, int64_t i) {
    switch (dtype) {
    case DP_F32: return ((const float *)p)[i];
    case DP_F64: return ((const double *)p)[i];
    case DP_BF16: return dp_cast_bf16_to_f32(((const uint16_t *)p)[i]);
    case DP_F16: return dp_cast_f16_to_f32(((const uint16_t *)p)[i]);
    case DP_FP8_E4M3: return dp_cast_e4m3_to_f32(((const uint8_t *)p)[i]);
    case DP_FP8_E5M2: return dp_cast_e5m2_to_f32(((const uint8_t *)p)[i]);
    case DP_I32: return ((const int32_t *)p)[i];
    case DP_I64: return (double)((const int64_t *)p)[i];
    case DP_U8: return ((const uint8_t *)p)[i];
    default: return 0;
    }
}

/* Float -> integer as a cast does: truncate toward zero and saturate, NaN -> 0 (for u8 masks
 * the integer value: 2.7 -> 2, -1 -> 0, 300 -> 255, not a normalised boolean). */
DP_CAST_FN int64_t dp_cast_int_sat(double v, double lo, double hi_excl, int64_t lo_i, int64_t hi_i) {
    if (v != v) return 0;
    if (v <= lo) return lo_i;
    if (v >= hi_excl) return hi_i;
    return (int64_t)v;
}

/* v into element i of any dtype: floats rounded once to nearest even, integers saturated. */
DP_CAST_FN void dp_cast_store(void *p, dp_dtype dtype, int64_t i, double v) {
    if (dp_cast_store_float(p, dtype, i, v)) return;
    switch (dtype) {
    case DP_I32:
        ((int32_t *)p)[i] = (int32_t)dp_cast_int_sat(v, -2147483648.0, 2147483648.0, INT32_MIN, INT32_MAX);
        break;
    case DP_I64:
        ((int64_t *)p)[i] = dp_cast_int_sat(v, -9223372036854775808.0, 9223372036854775808.0,
                                            INT64_MIN, INT64_MAX);
        break;
    case DP_U8: ((uint8_t *)p)[i] = (uint8_t)dp_cast_int_sat(v, 0.0, 256.0, 0, 255); break;
    default: break;
    }
}

#endif
