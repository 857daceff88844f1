/* philox.h: Philox4x32-10 and the mapping from (seed, counter) to tensor elements, written once
 * and compiled both by the C core (core/rng.c, kernels/cpu/random.c) and by nvcc
 * (kernels/cuda/random.cu), so the two backends draw bit-identical streams.
 *
 * Philox4x32-10: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC11 (2011). Key (k0, k1) = (low, high) 32 bits of the seed; the 128-bit counter is the words
 * (c0, c1, c2, c3) = (low, high) halves of ctr_lo then of ctr_hi.
 *
 * The stream, for a fill that starts at rng->counter = c (ctr_hi is always 0 and the block
 * counter c + j wraps modulo 2^64):
 *  - uniform, f32/bf16/f16/fp8: element i takes word w = lane i%4 of block c + i/4 and is
 *    u = (w >> 8) * 2^-24 in [0, 1). bf16/f16/fp8 store u rounded toward zero, so the value stays
 *    below 1 and each representable v is drawn with probability next(v) - v (to the 2^-24 grid).
 *    Blocks used: ceil(n/4).
 *  - uniform, f64: element i takes lanes 2(i%2) and 2(i%2)+1 of block c + i/2, and is
 *    u = (hi * 2^21 + (lo >> 11)) * 2^-53 (53 random bits) in [0, 1). Blocks used: ceil(n/2).
 *  - normal, every float dtype: element i takes block c + i/4. Lanes (0, 1) give elements 0 and
 *    1 of the block, lanes (2, 3) elements 2 and 3, by Box-Muller in double:
 *    u1 = (a + 0.5) * 2^-32 in (0, 1) from the first lane, phi = 2 pi * b * 2^-32 from the second,
 *    r = sqrt(-2 log u1), then r cos(phi) for the even element and r sin(phi) for the odd one;
 *    the value mean + std * z is formed in double (one fma) and rounded to the dtype once.
 *    log, sin and cos are the fixed-operation versions below (not libm / CUDA's), so both
 *    backends compute every bit the same way. |z| <= sqrt(2 * 33 log 2) ~ 6.77.
 *    Blocks used: ceil(n/4).
 *  - dropout: element i keeps x (mask 1) when the f32 uniform above, (w >> 8) * 2^-24, is >= p.
 *    Blocks used: ceil(n/4).
 * After a fill, rng->counter += blocks used. Hence two fills of n1 and n2 elements give the same
 * values as one fill of n1 + n2 whenever n1 is a multiple of 4 (of 2 for f64 uniform).
 *
 * The DP noise stream (dp_noise in reproducible mode, core/dpsgd/noise.c) is a second, separate
 * mapping with 53-bit uniforms, keyed by the same seed but with ctr_hi = the noise stream id:
 *  - normal pair of block c (dp_philox_normal_pair): words w of block (ctr_lo = c, ctr_hi =
 *    stream) give the 53-bit integers x1 = w0 * 2^21 + (w1 >> 11), x2 = w2 * 2^21 + (w3 >> 11)
 *    and the uniforms u_k = (x_k + 1/2) 2^-53 in (0, 1), never 0 nor 1. These u are exact reals,
 *    never rounded to a double (above 1/2 they need 54 bits): log u1 is computed from the
 *    integer 2 x1 + 1 and the angle 2 pi u2 from 2 x2 + 1 with the fixed-operation helpers.
 *    r = sqrt(-2 log u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2); |z| <= sqrt(108 log 2) ~ 8.65.
 *  - noise add (dp_philox_noise_add_block): element i of a fill starting at counter c takes z[i%2]
 *    of block c + i/2 and becomes fma(std, z, dst[i]) in double, rounded once to dst's dtype
 *    (f32 or f64). Blocks used: ceil(n/2), so fills of n1 and n2 elements equal one of n1 + n2
 *    whenever n1 is even.
 *
 * Exactness: every multiply-add below is an explicit fma() and no product feeds an addition
 * otherwise, so compilers have nothing to contract; the .cu file is built with -fmad=false as a
 * second guard. Division and sqrt are correctly rounded on both sides, and constants such as
 * 1.0 / 23.0 fold to the same correctly rounded double. */
#ifndef DP_PHILOX_H
#define DP_PHILOX_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "dp.h"
#include "dtype_cast.h"

#ifdef __CUDACC__
#define DP_RNG_FN static __host__ __device__ __forceinline__
#else
#define DP_RNG_FN static inline
#endif

DP_RNG_FN void dp_philox_block(uint32_t out[4], uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi) {
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;   /* Weyl key schedule: golden ratio and sqrt(3) - 1 */
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

DP_RNG_FN float dp_philox_uniform_f32(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }

DP_RNG_FN double dp_philox_uniform_f64(uint32_t hi, uint32_t lo) {
    return (double)(((uint64_t)hi << 21) | (lo >> 11)) * 0x1p-53;
}

/* log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1], as 2 atanh(s) with s = f / (2 + f)
 * (|s| < 0.172, truncation < 1e-18 relative): the series behind both logarithms of uniforms. */
DP_RNG_FN double dp_philox_log1p_reduced(double f) {
    double s = f / (2.0 + f);
    double z = s * s;
    double p = 1.0 / 23.0;
    p = fma(p, z, 1.0 / 21.0);
    p = fma(p, z, 1.0 / 19.0);
    p = fma(p, z, 1.0 / 17.0);
    p = fma(p, z, 1.0 / 15.0);
    p = fma(p, z, 1.0 / 13.0);
    p = fma(p, z, 1.0 / 11.0);
    p = fma(p, z, 1.0 / 9.0);
    p = fma(p, z, 1.0 / 7.0);
    p = fma(p, z, 1.0 / 5.0);
    p = fma(p, z, 1.0 / 3.0);
    return 2.0 * fma(s * z, p, s);
}

/* log(u1) for u1 = (a + 0.5) * 2^-32 = v * 2^-33 with v = 2a + 1 odd. With v = m * 2^k,
 * m in [sqrt(1/2), sqrt(2)): log u1 = (k - 33) log 2 + 2 atanh(s), s = (m - 1)/(m + 1),
 * |s| < 0.172, by the series 2 s (1 + s^2/3 + s^4/5 + ... + s^22/23) (truncation < 1e-18). */
DP_RNG_FN double dp_philox_log_u1(uint32_t a) {
    double v = (double)((uint64_t)a * 2 + 1);
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int k = (int)(bits >> 52) - 1023;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m;
    memcpy(&m, &bits, sizeof m);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        k++;
    }
    double f = m - 1.0;   /* exact (Sterbenz) */
    double log_m = dp_philox_log1p_reduced(f);
    double e = (double)(k - 33);
    /* log 2 split in a head with trailing zeros (e * head is exact) and a tail. */
    return fma(e, 0x1.62e42fefa3800p-1, fma(e, 0x1.ef35793c76730p-45, log_m));
}

/* sin and cos of x in [0, pi/4] by Taylor series to x^17 / x^18 (truncation < 1e-16 relative). */
DP_RNG_FN void dp_philox_sincos_small(double x, double *s, double *c) {
    double z = x * x;
    double ps = -1.0 / 355687428096000.0;               /* -1/17! */
    ps = fma(ps, z, 1.0 / 1307674368000.0);              /* 1/15! */
    ps = fma(ps, z, -1.0 / 6227020800.0);
    ps = fma(ps, z, 1.0 / 39916800.0);
    ps = fma(ps, z, -1.0 / 362880.0);
    ps = fma(ps, z, 1.0 / 5040.0);
    ps = fma(ps, z, -1.0 / 120.0);
    ps = fma(ps, z, 1.0 / 6.0);
    *s = fma(-(x * z), ps, x);                           /* x - x^3/3! + ... */
    double pc = 1.0 / 6402373705728000.0;                /* 1/18! */
    pc = fma(pc, z, -1.0 / 20922789888000.0);
    pc = fma(pc, z, 1.0 / 87178291200.0);
    pc = fma(pc, z, -1.0 / 479001600.0);
    pc = fma(pc, z, 1.0 / 3628800.0);
    pc = fma(pc, z, -1.0 / 40320.0);
    pc = fma(pc, z, 1.0 / 720.0);
    pc = fma(pc, z, -1.0 / 24.0);
    pc = fma(pc, z, 0.5);
    *c = fma(-z, pc, 1.0);                               /* 1 - x^2/2! + ... */
}

/* sin and cos of quadrant * pi/2 + (upper ? pi/2 - x : x) for 0 <= x <= pi/4: the reduced angle
 * of both uniform widths mapped back to the whole turn. */
DP_RNG_FN void dp_philox_sincos_unreduce(double x, int upper, uint32_t quadrant, double *sin_out,
                                         double *cos_out) {
    double s, c;
    dp_philox_sincos_small(x, &s, &c);
    if (upper) {   /* sin(pi/2 - x) = cos x */
        double tmp = s;
        s = c;
        c = tmp;
    }
    switch (quadrant) {   /* rotate by quadrant * pi/2 */
    case 0: *sin_out = s; *cos_out = c; break;
    case 1: *sin_out = c; *cos_out = -s; break;
    case 2: *sin_out = -s; *cos_out = -c; break;
    default: *sin_out = -c; *cos_out = s; break;
    }
}

/* sin and cos of phi = 2 pi b 2^-32. The top two bits of b pick the quadrant and the next one the
 * half of it, all in integers, so the reduced angle is exact up to the one rounding of t*pi/2. */
DP_RNG_FN void dp_philox_sincos_turn(uint32_t b, double *sin_out, double *cos_out) {
    uint32_t quadrant = b >> 30, r = b & 0x3FFFFFFFu;
    int upper = r > 0x20000000u;
    uint32_t t = upper ? 0x40000000u - r : r;            /* angle (t / 2^30) * pi/2 <= pi/4 */
    double x = (double)t * (0x1.921fb54442d18p0 * 0x1p-30);
    dp_philox_sincos_unreduce(x, upper, quadrant, sin_out, cos_out);
}

/* The two standard normals from the lane pair (a, b): z[0] = r cos phi, z[1] = r sin phi. */
DP_RNG_FN void dp_philox_box_muller(double z[2], uint32_t a, uint32_t b) {
    double r = sqrt(-2.0 * dp_philox_log_u1(a));
    double s, c;
    dp_philox_sincos_turn(b, &s, &c);
    z[0] = r * c;
    z[1] = r * s;
}

/* ---------------------------------------------------------------- filling one block's elements */

/* Blocks a uniform fill of n elements of dtype uses. */
DP_RNG_FN int64_t dp_philox_uniform_blocks(dp_dtype dtype, int64_t n) {
    return dtype == DP_F64 ? (n + 1) / 2 : (n + 3) / 4;
}

/* Blocks a normal fill or a dropout mask of n elements uses. */
DP_RNG_FN int64_t dp_philox_quad_blocks(int64_t n) { return (n + 3) / 4; }

/* u in [0, 1) stored rounded toward zero, so no value rounds up to 1. */
DP_RNG_FN void dp_philox_store_uniform(void *p, dp_dtype dtype, int64_t i, float u) {
    uint32_t bits;
    switch (dtype) {
    case DP_F32: ((float *)p)[i] = u; break;
    case DP_BF16:
        memcpy(&bits, &u, sizeof bits);
        ((uint16_t *)p)[i] = (uint16_t)(bits >> 16);
        break;
    case DP_F16: {
        uint16_t c = dp_cast_f64_to_f16(u);
        ((uint16_t *)p)[i] = (uint16_t)(dp_cast_f16_to_f32(c) > u ? c - 1 : c);
        break;
    }
    case DP_FP8_E4M3: {
        uint8_t c = dp_cast_f64_to_e4m3(u);
        ((uint8_t *)p)[i] = (uint8_t)(dp_cast_e4m3_to_f32(c) > u ? c - 1 : c);
        break;
    }
    case DP_FP8_E5M2: {
        uint8_t c = dp_cast_f64_to_e5m2(u);
        ((uint8_t *)p)[i] = (uint8_t)(dp_cast_e5m2_to_f32(c) > u ? c - 1 : c);
        break;
    }
    default: break;
    }
}

/* v rounded once (to nearest even) into a float dtype. */
DP_RNG_FN void dp_philox_store(void *p, dp_dtype dtype, int64_t i, double v) {
    dp_cast_store_float(p, dtype, i, v);
}

/* The elements of a uniform fill (n elements, contiguous out) that block b of the fill feeds. */
DP_RNG_FN void dp_philox_fill_uniform(void *out, dp_dtype dtype, int64_t n, uint64_t seed,
                                      uint64_t counter, int64_t b) {
    uint32_t w[4];
    dp_philox_block(w, seed, counter + (uint64_t)b, 0);
    if (dtype == DP_F64) {
        for (int q = 0; q < 2; q++)
            if (2 * b + q < n) ((double *)out)[2 * b + q] = dp_philox_uniform_f64(w[2 * q], w[2 * q + 1]);
        return;
    }
    for (int j = 0; j < 4; j++)
        if (4 * b + j < n) dp_philox_store_uniform(out, dtype, 4 * b + j, dp_philox_uniform_f32(w[j]));
}

/* The elements of a normal fill that block b feeds: mean + std * z, formed with one fma. */
DP_RNG_FN void dp_philox_fill_normal(void *out, dp_dtype dtype, int64_t n, uint64_t seed,
                                     uint64_t counter, int64_t b, double mean, double std) {
    uint32_t w[4];
    dp_philox_block(w, seed, counter + (uint64_t)b, 0);
    for (int q = 0; q < 2 && 4 * b + 2 * q < n; q++) {
        double z[2];
        dp_philox_box_muller(z, w[2 * q], w[2 * q + 1]);
        for (int k = 0; k < 2; k++)
            if (4 * b + 2 * q + k < n) dp_philox_store(out, dtype, 4 * b + 2 * q + k, fma(std, z[k], mean));
    }
}

/* Dropout keeps an element when its f32 uniform is at least p. */
DP_RNG_FN int dp_philox_keep(uint32_t w, double p) { return (double)dp_philox_uniform_f32(w) >= p; }

/* ---------------------------------------------------------------- DP noise: 53-bit Box-Muller */

/* The 53-bit integer of a lane pair; the uniform it stands for is (x + 1/2) 2^-53. */
DP_RNG_FN uint64_t dp_philox_bits53(uint32_t hi, uint32_t lo) {
    return ((uint64_t)hi << 21) | (lo >> 11);
}

/* 2^e as a double, for a normal exponent e (built from its bits: no libm, no rounding). */
DP_RNG_FN double dp_philox_pow2(int e) {
    uint64_t bits = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}


/* log u for u = (x + 1/2) 2^-53 = v 2^-54, v = 2x + 1 odd and below 2^54 (so not a double).
 * With v = m 2^k, m in [sqrt(1/2), sqrt(2)): log u = (k - 54) log 2 + log m, where m - 1 =
 * (v - 2^k) 2^-k is formed exactly from integers (|v - 2^k| < 2^53). The double nearest v only
 * serves to read k; when it rounds up to the next power of two m - 1 is a tiny negative. */
DP_RNG_FN double dp_philox_log_u53(uint64_t x) {
    int64_t v = (int64_t)(2 * x + 1);
    double dv = (double)v;
    uint64_t bits;
    memcpy(&bits, &dv, sizeof bits);
    int k = (int)(bits >> 52) - 1023;
    double f = (double)(v - ((int64_t)1 << k)) * dp_philox_pow2(-k);
    if (f > 0.41421356237309503) {   /* m > sqrt 2: use m / 2, again exact */
        k++;
        f = (double)(v - ((int64_t)1 << k)) * dp_philox_pow2(-k);
    }
    double e = (double)(k - 54);
    /* log 2 split in a head with trailing zeros (e * head is exact) and a tail. */
    return fma(e, 0x1.62e42fefa3800p-1, fma(e, 0x1.ef35793c76730p-45, dp_philox_log1p_reduced(f)));
}

/* sin and cos of phi = 2 pi t 2^-54 for t < 2^54 (t = 2 x2 + 1). The top two bits of t pick the
 * quadrant and the next one the half of it, in integers, so the reduced angle a (pi/2) 2^-52 <=
 * pi/4 is exact up to the one rounding of its product with pi/2. */
DP_RNG_FN void dp_philox_sincos_turn54(uint64_t t, double *sin_out, double *cos_out) {
    uint32_t quadrant = (uint32_t)(t >> 52) & 3u;
    uint64_t r = t & ((UINT64_C(1) << 52) - 1);
    int upper = r > (UINT64_C(1) << 51);
    uint64_t a = upper ? (UINT64_C(1) << 52) - r : r;
    double x = (double)a * (0x1.921fb54442d18p0 * 0x1p-52);
    dp_philox_sincos_unreduce(x, upper, quadrant, sin_out, cos_out);
}

/* The two normals of four 32-bit words: u1 from (w0, w1), u2 from (w2, w3). Also used by the
 * secure (ChaCha20) generator on its keystream words. */
DP_RNG_FN void dp_philox_box_muller53(double z[2], const uint32_t w[4]) {
    double r = sqrt(-2.0 * dp_philox_log_u53(dp_philox_bits53(w[0], w[1])));
    double s, c;
    dp_philox_sincos_turn54(2 * dp_philox_bits53(w[2], w[3]) + 1, &s, &c);
    z[0] = r * c;
    z[1] = r * s;
}

/* The normal pair of the DP noise stream at block `counter` of `stream`. */
DP_RNG_FN void dp_philox_normal_pair(double z[2], uint64_t seed, uint64_t stream, uint64_t counter) {
    uint32_t w[4];
    dp_philox_block(w, seed, counter, stream);
    dp_philox_box_muller53(z, w);
}

/* dst[i] += std * z for the (one or two) elements i = 2b, 2b+1 < n that block b of a noise fill
 * starting at `counter` feeds; f32 or f64 dst, one fma in double, rounded once. */
DP_RNG_FN void dp_philox_noise_add_block(void *dst, dp_dtype dtype, int64_t n, double std,
                                         uint64_t seed, uint64_t stream, uint64_t counter,
                                         int64_t b) {
    double z[2];
    dp_philox_normal_pair(z, seed, stream, counter + (uint64_t)b);
    for (int k = 0; k < 2 && 2 * b + k < n; k++) {
        int64_t i = 2 * b + k;
        if (dtype == DP_F64)
            ((double *)dst)[i] = fma(std, z[k], ((double *)dst)[i]);
        else
            ((float *)dst)[i] = (float)fma(std, z[k], (double)((float *)dst)[i]);
    }
}

#endif
