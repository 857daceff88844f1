/* test_dtype.c: the dtype table and every float cast against independent float64 references: the
 * decoder of fp_ref.h (from the formats' definitions: sign, biased exponent, subnormals, NaN/Inf
 * codes) and an encoder by search over the decoded codes, written here. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "fp_ref.h"
#include "internal.h"

/* ---------------------------------------------------------------- reference formats */

/* Formats and the decoder from their definitions come from fp_ref.h; the encoder below is this
 * test's own, by search over the decoded codes (a method independent of fp_round's scaling). */
typedef fp_format format;
#define BF16 FP_BF16
#define F16 FP_F16
#define E4M3 FP_E4M3
#define E5M2 FP_E5M2

static int ncodes(const format *f) { return 1 << (1 + f->man + f->ebits); }

static double ref_decode(const format *f, uint32_t code) { return fp_decode(f, code); }

static double lib_decode(const format *f, uint32_t code) {
    if (f == &BF16) return dp_bf16_to_f32((uint16_t)code);
    if (f == &F16) return dp_f16_to_f32((uint16_t)code);
    if (f == &E4M3) return dp_e4m3_to_f32((uint8_t)code);
    return dp_e5m2_to_f32((uint8_t)code);
}

static uint32_t lib_encode(const format *f, double x) {
    if (f == &BF16) return dp_f64_to_bf16(x);
    if (f == &F16) return dp_f64_to_f16(x);
    if (f == &E4M3) return dp_f64_to_e4m3(x);
    return dp_f64_to_e5m2(x);
}

static uint32_t lib_encode_f32(const format *f, float x) {
    if (f == &BF16) return dp_f32_to_bf16(x);
    if (f == &F16) return dp_f32_to_f16(x);
    if (f == &E4M3) return dp_f32_to_e4m3(x);
    return dp_f32_to_e5m2(x);
}

/* Positive finite codes in increasing value: for every format here these are 0 .. max_code. */
static uint32_t max_finite_code(const format *f) {
    uint32_t inf_code = ((1u << f->ebits) - 1) << f->man;
    return f->fn ? inf_code | ((1u << f->man) - 2) : inf_code - 1;
}

/* Reference encoder by search: the nearest finite code, ties to the even code; beyond the largest
 * finite value by at least half a step, Inf (or saturation for fn formats). */
static uint32_t ref_encode(const format *f, double x) {
    uint32_t sign = signbit(x) ? 1u << (f->man + f->ebits) : 0;
    uint32_t inf_code = ((1u << f->ebits) - 1) << f->man, maxc = max_finite_code(f);
    if (isnan(x)) return sign | (f->fn ? maxc + 1 : inf_code | (1u << (f->man - 1)));
    double a = fabs(x);
    double maxv = ref_decode(f, maxc);
    /* The step above max is the step below it (same binade). */
    double over = maxv + (maxv - ref_decode(f, maxc - 1)) / 2;
    if (a >= over) return sign | (f->fn ? maxc : inf_code);
    if (a >= maxv) return sign | maxc;
    uint32_t lo = 0, hi = maxc;   /* value(lo) <= a < value(hi) */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (ref_decode(f, mid) <= a) lo = mid;
        else hi = mid;
    }
    double dl = a - ref_decode(f, lo), dh = ref_decode(f, hi) - a;
    uint32_t c = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
    return sign | c;
}

static int same_value(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

/* ---------------------------------------------------------------- table and names */

static void test_table(void) {
    CHECK(dp_dtype_size(DP_F32) == 4 && dp_dtype_size(DP_F64) == 8 && dp_dtype_size(DP_BF16) == 2 &&
              dp_dtype_size(DP_F16) == 2 && dp_dtype_size(DP_FP8_E4M3) == 1 &&
              dp_dtype_size(DP_FP8_E5M2) == 1 && dp_dtype_size(DP_I32) == 4 &&
              dp_dtype_size(DP_I64) == 8 && dp_dtype_size(DP_U8) == 1,
          "sizes");
    for (int d = 0; d < DP_NUM_DTYPES; d++) {
        CHECK(dp_dtype_is_float((dp_dtype)d) == (d <= DP_FP8_E5M2), "is_float %d", d);
        CHECK(dp_dtype_from_name(dp_dtype_name((dp_dtype)d)) == d, "name round trip %d", d);
    }
    CHECK(strcmp(dp_dtype_name(DP_FP8_E4M3), "fp8_e4m3") == 0, "%s", dp_dtype_name(DP_FP8_E4M3));
    struct { const char *n; int d; } aliases[] = {
        {"float32", DP_F32}, {"float", DP_F32}, {"fp32", DP_F32}, {"F32", DP_F32},
        {"bfloat16", DP_BF16}, {"half", DP_F16}, {"float16", DP_F16}, {"e4m3", DP_FP8_E4M3},
        {"fp8_e4m3", DP_FP8_E4M3}, {"e5m2", DP_FP8_E5M2}, {"fp8_e5m2", DP_FP8_E5M2},
        {"int32", DP_I32}, {"int64", DP_I64}, {"bool", DP_U8}, {"uint8", DP_U8},
        {"float64", DP_F64}, {"double", DP_F64}, {"nope", -1}, {"", -1}, {NULL, -1}};
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        CHECK(dp_dtype_from_name(aliases[i].n) == aliases[i].d, "alias %s",
              aliases[i].n ? aliases[i].n : "(null)");
    CHECK(dp_dtype_size((dp_dtype)99) == 0 && strcmp(dp_dtype_name((dp_dtype)99), "invalid") == 0,
          "invalid dtype");
    CHECK(strcmp(dp_device_name(DP_CPU), "cpu") == 0 && strcmp(dp_device_name(DP_CUDA), "cuda") == 0,
          "device names");
}

/* ---------------------------------------------------------------- decoding */

static void test_decode_exhaustive(const format *f) {
    int bad = 0;
    for (int c = 0; c < ncodes(f); c++) {
        double want = ref_decode(f, (uint32_t)c), got = lib_decode(f, (uint32_t)c);
        if (!same_value(got, want) && bad++ < 5)
            fprintf(stderr, "%s decode 0x%x: got %.17g want %.17g\n", f->name, c, got, want);
    }
    CHECK(bad == 0, "%s: %d codes decode wrongly", f->name, bad);
}

/* ---------------------------------------------------------------- encoding */

static void test_encode_codes(const format *f) {
    int bad_trip = 0, bad_mid = 0, bad_near = 0;
    uint32_t maxc = max_finite_code(f), sbit = 1u << (f->man + f->ebits);
    for (uint32_t c = 0; c <= maxc; c++) {
        for (int s = 0; s < 2; s++) {
            uint32_t code = c | (s ? sbit : 0);
            double v = ref_decode(f, code);
            if (lib_encode(f, v) != code) bad_trip++;
            if (lib_encode_f32(f, (float)v) != code) bad_trip++;
        }
        if (c == maxc) break;
        /* Midpoint to the next code (exact in double: at most 12 significant bits), and the
         * doubles either side of it. */
        double lo = ref_decode(f, c), hi = ref_decode(f, c + 1), mid = (lo + hi) / 2;
        uint32_t even = (c % 2 == 0) ? c : c + 1;
        for (int s = 0; s < 2; s++) {
            double sg = s ? -1 : 1;
            uint32_t sb = s ? sbit : 0;
            if (lib_encode(f, sg * mid) != (even | sb)) bad_mid++;
            if (lib_encode_f32(f, (float)(sg * mid)) != (even | sb)) bad_mid++;
            if (lib_encode(f, sg * nextafter(mid, 0)) != (c | sb)) bad_near++;
            if (lib_encode(f, sg * nextafter(mid, INFINITY)) != ((c + 1) | sb)) bad_near++;
            if (lib_encode_f32(f, (float)sg * nextafterf((float)mid, 0)) != (c | sb)) bad_near++;
            if (lib_encode_f32(f, (float)sg * nextafterf((float)mid, INFINITY)) != ((c + 1) | sb))
                bad_near++;
        }
    }
    CHECK(bad_trip == 0, "%s: %d codes do not round-trip", f->name, bad_trip);
    CHECK(bad_mid == 0, "%s: %d midpoints not tied to even", f->name, bad_mid);
    CHECK(bad_near == 0, "%s: %d values beside midpoints misrounded", f->name, bad_near);
}

/* Random doubles over the whole range of the format (and well beyond) against the search. */
static void test_encode_random(const format *f) {
    uint64_t s = 12345;
    int bad = 0, bad32 = 0;
    int bias = (1 << (f->ebits - 1)) - 1;
    for (int i = 0; i < 400000; i++) {
        double u = dp_test_uniform(&s), w = dp_test_uniform(&s);
        /* Exponents from below half the smallest subnormal to beyond overflow. */
        int lo = -(bias + f->man + 4), hi = bias + 4;
        int e = lo + (int)floor((w + 1) / 2 * (hi - lo));
        double x = ldexp(u, e);
        uint32_t want = ref_encode(f, x), got = lib_encode(f, x);
        if (got != want && bad++ < 5)
            fprintf(stderr, "%s encode %.17g: got 0x%x want 0x%x\n", f->name, x, got, want);
        float xf = (float)x;
        if (lib_encode_f32(f, xf) != ref_encode(f, xf)) bad32++;
    }
    CHECK(bad == 0, "%s: %d random doubles encode wrongly", f->name, bad);
    CHECK(bad32 == 0, "%s: %d random floats encode wrongly", f->name, bad32);
}

static void test_specials(void) {
    /* Signed zeros and NaN / Inf. */
    CHECK(dp_f64_to_bf16(0.0) == 0 && dp_f64_to_bf16(-0.0) == 0x8000, "bf16 zeros");
    CHECK(dp_f64_to_f16(0.0) == 0 && dp_f64_to_f16(-0.0) == 0x8000, "f16 zeros");
    CHECK(dp_f64_to_e4m3(-0.0) == 0x80 && dp_f64_to_e5m2(-0.0) == 0x80, "fp8 zeros");
    CHECK(dp_f64_to_bf16(INFINITY) == 0x7F80 && dp_f64_to_bf16(-INFINITY) == 0xFF80, "bf16 inf");
    CHECK(dp_f64_to_f16(INFINITY) == 0x7C00 && dp_f64_to_f16(-INFINITY) == 0xFC00, "f16 inf");
    CHECK(dp_f64_to_e5m2(INFINITY) == 0x7C && dp_f64_to_e5m2(-INFINITY) == 0xFC, "e5m2 inf");
    CHECK(dp_f64_to_e4m3(INFINITY) == 0x7E && dp_f64_to_e4m3(-INFINITY) == 0xFE, "e4m3 inf saturates");
    CHECK(dp_f64_to_bf16(NAN) == 0x7FC0 && dp_f64_to_bf16(-NAN) == 0xFFC0, "bf16 nan 0x%x",
          dp_f64_to_bf16(NAN));
    CHECK(dp_f64_to_f16(NAN) == 0x7E00, "f16 nan 0x%x", dp_f64_to_f16(NAN));
    CHECK(dp_f64_to_e4m3(NAN) == 0x7F && dp_f64_to_e4m3(-NAN) == 0xFF, "e4m3 nan");
    CHECK(dp_f64_to_e5m2(NAN) == 0x7E, "e5m2 nan");
    CHECK(dp_f32_to_bf16(NAN) == 0x7FC0 && dp_f32_to_f16(-NAN) == 0xFE00, "f32 nan");
    CHECK(isnan(dp_bf16_to_f32(0x7F81)) && isnan(dp_f16_to_f32(0x7C01)), "signalling NaN decodes to NaN");
    /* A signalling f32 NaN whose payload sits in the dropped bits must not become Inf. */
    float snan;
    uint32_t snan_bits = 0x7F800001u;
    memcpy(&snan, &snan_bits, sizeof snan);
    CHECK(dp_f32_to_bf16(snan) == 0x7FC0 && dp_f32_to_f16(snan) == 0x7E00, "f32 sNaN");
    CHECK(dp_f32_to_e4m3(snan) == 0x7F && dp_f32_to_e5m2(snan) == 0x7E, "f32 sNaN fp8");

    /* Overflow boundaries. */
    CHECK(dp_f64_to_f16(65520.0) == 0x7C00, "f16 65520 -> inf");
    CHECK(dp_f64_to_f16(65519.99) == 0x7BFF, "f16 65519.99 -> 65504");
    CHECK(dp_f64_to_f16(-65520.0) == 0xFC00, "f16 -65520 -> -inf");
    CHECK(dp_f32_to_f16(65520.0f) == 0x7C00 && dp_f32_to_f16(65519.996f) == 0x7BFF, "f16 from f32");
    CHECK(dp_f64_to_e4m3(448.0) == 0x7E && dp_f64_to_e4m3(463.99) == 0x7E &&
              dp_f64_to_e4m3(464.0) == 0x7E && dp_f64_to_e4m3(1e6) == 0x7E &&
              dp_f64_to_e4m3(1e300) == 0x7E && dp_f64_to_e4m3(-500) == 0xFE,
          "e4m3 saturates");
    CHECK(dp_f64_to_e4m3(432.0) == 0x7E && dp_f64_to_e4m3(431.99) == 0x7D, "e4m3 416|448 midpoint");
    CHECK(dp_f64_to_e5m2(57344.0) == 0x7B && dp_f64_to_e5m2(61439.99) == 0x7B &&
              dp_f64_to_e5m2(61440.0) == 0x7C && dp_f64_to_e5m2(-61440.0) == 0xFC,
          "e5m2 boundary");
    CHECK(dp_f64_to_bf16(3.4028234663852886e38) == 0x7F80, "bf16 FLT_MAX rounds to inf");
    CHECK(dp_f64_to_bf16(3.3895313892515355e38) == 0x7F7F, "bf16 max");
    CHECK(dp_f32_to_bf16(3.4028234663852886e38f) == 0x7F80, "bf16 FLT_MAX (f32) -> inf");
    CHECK(dp_f64_to_bf16(1e300) == 0x7F80 && dp_f64_to_f16(1e300) == 0x7C00, "huge -> inf");

    /* Subnormal ranges: smallest subnormal, half of it (tie to 0), just above half. */
    CHECK(dp_f64_to_f16(0x1p-24) == 1 && dp_f64_to_f16(0x1p-25) == 0 &&
              dp_f64_to_f16(nextafter(0x1p-25, 1)) == 1 && dp_f64_to_f16(0x1.8p-24) == 2,
          "f16 subnormals");
    CHECK(dp_f64_to_bf16(0x1p-133) == 1 && dp_f64_to_bf16(0x1p-134) == 0 &&
              dp_f64_to_bf16(-0x1.0000001p-134) == 0x8001,
          "bf16 subnormals");
    CHECK(dp_f64_to_e4m3(0x1p-9) == 1 && dp_f64_to_e4m3(0x1p-10) == 0 &&
              dp_f64_to_e4m3(0x1.8p-9) == 2 && dp_f64_to_e4m3(0x1.cp-7) == 0x07 &&
              dp_f64_to_e4m3(0x1.ep-7) == 0x08,
          "e4m3 subnormals and the carry into the normals");
    CHECK(dp_f64_to_e5m2(0x1p-16) == 1 && dp_f64_to_e5m2(0x1p-17) == 0 &&
              dp_f64_to_e5m2(0x1.8p-16) == 2,
          "e5m2 subnormals");
    CHECK(dp_f64_to_f16(1e-300) == 0 && dp_f64_to_f16(-1e-300) == 0x8000 &&
              dp_f64_to_bf16(4.9e-324) == 0,
          "tiny -> signed zero");
    CHECK(dp_f32_to_bf16(1e-45f) == 1 || dp_f32_to_bf16(1e-45f) == 0, "f32 denormal");
    CHECK(dp_f32_to_bf16(0x1p-126f) == 0x0080 && dp_f32_to_f16(0x1p-24f) == 1, "f32 subnormal targets");
}

/* Rounding from double must happen once: these values sit just above a midpoint by less than half
 * an f32 step, so rounding to f32 first would land on the midpoint and tie to the other code. */
static void test_double_rounding(void) {
    double x = 1.0 + 0x1p-8 + 0x1p-30;   /* bf16 neighbours 1.0 (0x3F80) and 1.0078125 (0x3F81) */
    CHECK(dp_f64_to_bf16(x) == 0x3F81, "bf16 rounds once: 0x%x", dp_f64_to_bf16(x));
    CHECK(dp_f32_to_bf16((float)x) == 0x3F80, "via f32 it would tie to even");
    CHECK(dp_f64_to_bf16(-x) == 0xBF81, "negative too");
    double y = 1.0 + 0x1p-11 + 0x1p-40;  /* f16 neighbours 0x3C00 and 0x3C01 */
    CHECK(dp_f64_to_f16(y) == 0x3C01 && dp_f32_to_f16((float)y) == 0x3C00, "f16 rounds once");
    double z = 1.0 + 0x1p-4 + 0x1p-35;   /* e4m3 neighbours 1.0 (0x38) and 1.125 (0x39) */
    CHECK(dp_f64_to_e4m3(z) == 0x39 && dp_f32_to_e4m3((float)z) == 0x38, "e4m3 rounds once");
    double w = 1.0 + 0x1p-3 + 0x1p-35;   /* e5m2 neighbours 1.0 (0x3C) and 1.25 (0x3D) */
    CHECK(dp_f64_to_e5m2(w) == 0x3D && dp_f32_to_e5m2((float)w) == 0x3C, "e5m2 rounds once");
}

/* ---------------------------------------------------------------- arrays and element access */

static void test_arrays(void) {
    enum { N = 4099 };
    float *in = malloc(sizeof(float) * N), *back = malloc(sizeof(float) * N);
    uint16_t *h = malloc(sizeof(uint16_t) * N);
    uint64_t s = 7;
    const uint32_t specials[] = {0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00001u, 0x7F800001u,
                                 0x00000001u, 0x80000000u, 0x7F7FFFFFu, 0x3F808000u, 0x3F818000u,
                                 0x3F80FFFFu, 0x007FFFFFu, 0x7F7F8000u, 0xFF7F8000u};
    for (int i = 0; i < N; i++) {
        if (i % 5 == 0) {
            uint32_t b = specials[(i / 5) % (sizeof specials / sizeof specials[0])];
            memcpy(&in[i], &b, 4);
        } else {
            uint32_t b = (uint32_t)(dp_test_uniform(&s) * 2147483648.0) * 2u + (uint32_t)(i & 1);
            memcpy(&in[i], &b, 4);   /* random bit patterns, NaNs included */
        }
    }
    for (int start = 0; start < 3; start++) {
        dp_f32_to_bf16_array(h + start, in + start, N - start);
        int bad = 0;
        for (int i = start; i < N; i++) bad += h[i] != dp_f32_to_bf16(in[i]);
        CHECK(bad == 0, "f32_to_bf16_array differs from scalar at %d elements (offset %d)", bad, start);
        dp_bf16_to_f32_array(back + start, h + start, N - start);
        bad = 0;
        for (int i = start; i < N; i++) {
            float want = dp_bf16_to_f32(h[i]);
            bad += memcmp(&back[i], &want, 4) != 0;
        }
        CHECK(bad == 0, "bf16_to_f32_array differs from scalar at %d elements", bad);
    }
    dp_f32_to_bf16_array(h, in, 0);
    free(in);
    free(back);
    free(h);
}

static void test_load_store(void) {
    unsigned char buf[64];
    const double vals[] = {2.7, -2.7, 0.5, -0.0, 300.0, -1.0, 1e20, -1e20, NAN, 123456.0};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        double v = vals[k];
        dp_store_f64(buf, DP_I32, 3, v);
        int32_t i32 = ((int32_t *)buf)[3];
        int32_t want32 = isnan(v) ? 0 : v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN
                                                                                             : (int32_t)v;
        CHECK(i32 == want32 && dp_load_f64(buf, DP_I32, 3) == want32, "i32 store %g -> %d", v, i32);
        dp_store_f64(buf, DP_I64, 2, v);
        int64_t i64 = ((int64_t *)buf)[2];
        int64_t want64 = isnan(v) ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
        CHECK(i64 == want64, "i64 store %g -> %lld", v, (long long)i64);
        dp_store_f64(buf, DP_U8, 5, v);
        int want8 = isnan(v) ? 0 : v >= 255 ? 255 : v <= 0 ? 0 : (int)v;
        CHECK(buf[5] == want8 && dp_load_f64(buf, DP_U8, 5) == want8, "u8 store %g -> %d", v, buf[5]);
    }
    for (int d = 0; d <= DP_FP8_E5M2; d++) {
        double v = -1.25, want = v;   /* exact in every float format */
        dp_store_f64(buf, (dp_dtype)d, 1, v);
        double back = dp_load_f64(buf, (dp_dtype)d, 1);
        CHECK(back == want, "%s store/load %g -> %g", dp_dtype_name((dp_dtype)d), v, back);
        dp_store_f32(buf, (dp_dtype)d, 2, -0.1f);
        float bf = dp_load_f32(buf, (dp_dtype)d, 2);
        double wantf = d == DP_F32 ? -0.1f : d == DP_F64 ? (double)-0.1f
                       : d == DP_BF16 ? dp_bf16_to_f32(dp_f64_to_bf16(-0.1f))
                       : d == DP_F16 ? dp_f16_to_f32(dp_f64_to_f16(-0.1f))
                       : d == DP_FP8_E4M3 ? dp_e4m3_to_f32(dp_f64_to_e4m3(-0.1f))
                                          : dp_e5m2_to_f32(dp_f64_to_e5m2(-0.1f));
        CHECK(bf == (float)wantf, "%s store_f32/load_f32 -> %g want %g", dp_dtype_name((dp_dtype)d),
              bf, wantf);
    }
    ((int64_t *)buf)[0] = -5;
    CHECK(dp_load_f32(buf, DP_I64, 0) == -5.0f, "i64 load_f32");
}

int main(void) {
    const format *formats[] = {&BF16, &F16, &E4M3, &E5M2};
    test_table();
    for (int i = 0; i < 4; i++) {
        test_decode_exhaustive(formats[i]);
        test_encode_codes(formats[i]);
        test_encode_random(formats[i]);
    }
    test_specials();
    test_double_rounding();
    test_arrays();
    test_load_store();
    return dp_test_finish("test_dtype");
}
