/* fp_ref.h: float64 reference encoders for the tests, written from the formats' definitions (sign,
 * biased exponent, subnormals, Inf/NaN codes) and not from the library's bit tricks: decoding a
 * code, rounding a double to nearest even in a format (by scaling to the format's quantum and
 * rint), and the two neighbours of a value. Header-only; shared by test_dtype.c,
 * test_cast_pairs.c, test_quant.c and test_optim_rounding.c. */
#ifndef FP_REF_H
#define FP_REF_H
#include <math.h>
#include <stdint.h>
#include "dp.h"

typedef struct {
    const char *name;
    int man, ebits;
    int fn;   /* OCP e4m3: no Inf, only S.1111.111 is NaN, overflow saturates */
} fp_format;

static const fp_format FP_F64 __attribute__((unused)) = {"f64", 52, 11, 0};
static const fp_format FP_F32 __attribute__((unused)) = {"f32", 23, 8, 0};
static const fp_format FP_BF16 __attribute__((unused)) = {"bf16", 7, 8, 0};
static const fp_format FP_F16 __attribute__((unused)) = {"f16", 10, 5, 0};
static const fp_format FP_E4M3 __attribute__((unused)) = {"e4m3", 3, 4, 1};
static const fp_format FP_E5M2 __attribute__((unused)) = {"e5m2", 2, 5, 0};

static inline const fp_format *fp_format_of(dp_dtype dt) {
    switch (dt) {
    case DP_F64: return &FP_F64;
    case DP_F32: return &FP_F32;
    case DP_BF16: return &FP_BF16;
    case DP_F16: return &FP_F16;
    case DP_FP8_E4M3: return &FP_E4M3;
    default: return &FP_E5M2;
    }
}

static inline int fp_bias(const fp_format *f) { return (1 << (f->ebits - 1)) - 1; }

/* Decode from the definition: (-1)^s 2^(e - bias) (1 + m / 2^man), or 2^(1 - bias) m / 2^man
 * for e = 0; e all ones is Inf (m = 0) or NaN, except in fn formats where only m all ones is NaN. */
static inline double fp_decode(const fp_format *f, uint32_t code) {
    int bias = fp_bias(f);
    uint32_t m = code & ((1u << f->man) - 1);
    uint32_t e = (code >> f->man) & ((1u << f->ebits) - 1);
    int s = (code >> (f->man + f->ebits)) & 1;
    double v;
    if (e == (1u << f->ebits) - 1 && !f->fn) v = m ? NAN : INFINITY;
    else if (f->fn && e == (1u << f->ebits) - 1 && m == (1u << f->man) - 1) v = NAN;
    else if (e == 0) v = ldexp((double)m, 1 - bias - f->man);
    else v = ldexp((double)((1ull << f->man) + m), (int)e - bias - f->man);
    return s ? -v : v;
}

/* Largest finite value: 2^emax (2 - 2^-man), one mantissa step less for fn formats. */
static inline double fp_max(const fp_format *f) {
    int emax = (1 << f->ebits) - 2 - fp_bias(f) + (f->fn ? 1 : 0);
    double steps = f->fn ? 2.0 - ldexp(1.0, 1 - f->man) : 2.0 - ldexp(1.0, -f->man);
    return ldexp(steps, emax);
}

/* The spacing of f's values around |x| (the smallest subnormal below the normals). */
static inline double fp_quantum(const fp_format *f, double ax) {
    int emin = 1 - fp_bias(f), e;
    frexp(ax, &e);   /* ax = m 2^e, m in [0.5, 1): exponent e - 1 */
    int ee = ax == 0 ? emin : e - 1;
    if (ee < emin) ee = emin;
    return ldexp(1.0, ee - f->man);
}

/* x rounded to nearest, ties to even, in f; overflow to Inf, or for fn formats (and when
 * saturate is set) to the largest finite value with x's sign. NaN stays NaN; zeros keep their
 * sign. Exact: ax / q is a power-of-two scaling and rint rounds ties to even. */
static inline double fp_round_sat(const fp_format *f, double x, int saturate) {
    if (isnan(x)) return x;
    double ax = fabs(x), max = fp_max(f), r;
    if (isinf(x)) r = (f->fn || saturate) ? max : INFINITY;
    else {
        double q = fp_quantum(f, ax);
        r = rint(ax / q) * q;
        if (r > max) r = (f->fn || saturate) ? max : INFINITY;
    }
    return signbit(x) ? -r : r;
}

static inline double fp_round(const fp_format *f, double x) { return fp_round_sat(f, x, 0); }

/* The values of f on each side of a finite x that f cannot represent: lo < x < hi (hi may be
 * beyond the largest finite value). */
static inline void fp_neighbours(const fp_format *f, double x, double *lo, double *hi) {
    double q = fp_quantum(f, fabs(x));
    double d = floor(x / q) * q;
    *lo = d;
    /* q is the spacing on |x|'s side of its power of two, so lo and hi are adjacent values. */
    *hi = d + q;
}

#endif
