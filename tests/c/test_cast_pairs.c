/* test_cast_pairs.c: dp_cast between every pair of float dtypes (f64, f32, bf16, f16, fp8 e4m3,
 * fp8 e5m2) against the float64 reference of fp_ref.h (decode from the format's definition, round
 * to nearest even by scaling to the quantum). Sources: every code of the 8- and 16-bit formats,
 * and for f32 / f64 random bit patterns plus, for every target, its values, the exact midpoints
 * between neighbours (ties), one source ulp either side of them, the subnormal range, the
 * overflow threshold (to Inf for bf16 / f16 / e5m2 as dp_cast documents, saturation for e4m3),
 * Inf, NaN and signed zeros. NaN must stay NaN with its sign; everything else bit-exact. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "fp_ref.h"

static const dp_dtype ALL[] = { DP_F64, DP_F32, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2 };
enum { NDT = sizeof ALL / sizeof *ALL };

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) exit(2);
    CHECK_OK(dp_tensor_to_f64(t, v));
    return v;
}

static int same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) && signbit(a) == signbit(b);
    return a == b && signbit(a) == signbit(b);
}

/* Cast src to every float dtype and compare each element with the reference rounding of its
 * exact value (read back through dp_tensor_to_f64, exact for every float dtype). */
static void check_all_targets(const char *what, dp_tensor *src) {
    int64_t n = dp_tensor_numel(src);
    double *sv = values(src);
    for (int k = 0; k < NDT; k++) {
        const fp_format *f = fp_format_of(ALL[k]);
        dp_tensor *out = dp_cast(src, ALL[k]);
        CHECK_PTR(out);
        if (!out) continue;
        CHECK(out->dtype == ALL[k], "%s -> %s: dtype %s", what, f->name, dp_dtype_name(out->dtype));
        double *ov = values(out);
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < n; i++) {
            if (!same(ov[i], fp_round(f, sv[i]))) { bad++; if (first < 0) first = i; }
        }
        CHECK(bad == 0, "%s -> %s: %lld of %lld wrong, first %.17g gave %.17g, want %.17g", what,
              f->name, (long long)bad, (long long)n, first >= 0 ? sv[first] : 0,
              first >= 0 ? ov[first] : 0, first >= 0 ? fp_round(f, sv[first]) : 0);
        free(ov);
        dp_tensor_release(out);
    }
    free(sv);
}

/* Every code of an 8- or 16-bit format as a tensor of that dtype (NaN payloads included). */
static void test_exhaustive(void) {
    const dp_dtype SMALL[] = { DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2 };
    for (size_t k = 0; k < 4; k++) {
        int bytes = dp_dtype_size(SMALL[k]);
        int64_t n = (int64_t)1 << (8 * bytes);
        dp_tensor *t = dp_tensor_empty(SMALL[k], DP_CPU, 1, (int64_t[]){n});
        CHECK_PTR(t);
        if (!t) continue;
        for (int64_t c = 0; c < n; c++) {
            if (bytes == 1) ((uint8_t *)t->data)[c] = (uint8_t)c;
            else ((uint16_t *)t->data)[c] = (uint16_t)c;
        }
        /* the reference decode agrees with what the library reads back */
        double *v = values(t);
        int64_t bad = 0;
        for (int64_t c = 0; c < n; c++) bad += !same(v[c], fp_decode(fp_format_of(SMALL[k]), (uint32_t)c)) &&
                                                 !(isnan(v[c]) && isnan(fp_decode(fp_format_of(SMALL[k]), (uint32_t)c)));
        CHECK(bad == 0, "%s: %lld codes decode differently", dp_dtype_name(SMALL[k]), (long long)bad);
        free(v);
        check_all_targets(dp_dtype_name(SMALL[k]), t);
        dp_tensor_release(t);
    }
}

/* Values that stress rounding into f: for some of f's values, each one, the midpoint to the next
 * (a tie), and the source's neighbours of that midpoint; plus the edges. Appended to v. */
static int64_t edge_values(const fp_format *f, double *v, int64_t at, int fine_f32) {
    double max = fp_max(f), tiny = ldexp(1.0, 1 - fp_bias(f) - f->man);
    double seeds[] = { 1.0, 1.5, tiny, 2 * tiny, 3 * tiny, ldexp(1.0, 1 - fp_bias(f)), max / 2, max,
                       ldexp(1.0, -3), 1000.0, 0.1 };
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        double a = fp_round_sat(f, seeds[s], 1);
        double q = fp_quantum(f, a), mid = a + q / 2;   /* exact: a few bits beyond f's */
        double cand[] = { a, mid, a + q / 4, a + 3 * q / 4, a - q / 4 };
        for (size_t c = 0; c < sizeof cand / sizeof *cand; c++) {
            for (int sign = -1; sign <= 1; sign += 2) {
                double x = sign * cand[c];
                v[at++] = x;
                /* one source ulp either side of it */
                if (fine_f32) {
                    v[at++] = (double)nextafterf((float)x, INFINITY);
                    v[at++] = (double)nextafterf((float)x, -INFINITY);
                } else {
                    v[at++] = nextafter(x, INFINITY);
                    v[at++] = nextafter(x, -INFINITY);
                }
            }
        }
    }
    /* overflow threshold: max + half a step (ties away from max: Inf, or saturation for e4m3) */
    double top = max + fp_quantum(f, max) / 2;
    double specials[] = { top, -top, max * 4, tiny / 2, -tiny / 2, tiny / 4, tiny * 0.75,
                          INFINITY, -INFINITY, NAN, -NAN, 0.0, -0.0 };
    for (size_t s = 0; s < sizeof specials / sizeof *specials; s++) v[at++] = specials[s];
    return at;
}

static void test_sweeps(void) {
    enum { RANDOM = 200000, EDGES = 6 * (11 * 5 * 2 * 3 + 13) };
    double *v = malloc(sizeof(double) * (RANDOM + EDGES));
    if (!v) exit(2);
    for (int wide = 0; wide <= 1; wide++) {
        dp_dtype dt = wide ? DP_F64 : DP_F32;
        int64_t n = 0;
        /* edges for every target (the f32 source cannot hold some f64-level ties: it rounds them,
         * and the reference then sees the f32 value, which is what dp_cast receives) */
        for (int k = 0; k < NDT; k++) n = edge_values(fp_format_of(ALL[k]), v, n, !wide);
        uint64_t s = 12345 + (uint64_t)wide;
        for (int i = 0; i < RANDOM; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            if (wide) {
                /* exponents within +-2^10 of 1 mostly, so every target sees normal, subnormal,
                 * overflowing and underflowing values */
                uint64_t bits = (s & 0x800FFFFFFFFFFFFFull) |
                                ((uint64_t)(1023 - 160 + (int)((s >> 40) % 320)) << 52);
                if (i % 50 == 0) bits = s ^ (s >> 13);   /* anything at all */
                memcpy(&v[n++], &bits, sizeof bits);
            } else {
                uint32_t bits = (uint32_t)(s >> 32);
                float f;
                memcpy(&f, &bits, sizeof f);
                v[n++] = (double)f;
            }
        }
        dp_tensor *t = dp_tensor_empty(dt, DP_CPU, 1, (int64_t[]){n});
        CHECK_PTR(t);
        if (!t) continue;
        for (int64_t i = 0; i < n; i++) {
            if (wide) ((double *)t->data)[i] = v[i];
            else ((float *)t->data)[i] = (float)v[i];
        }
        check_all_targets(wide ? "f64 sweep" : "f32 sweep", t);
        dp_tensor_release(t);
    }
    free(v);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_exhaustive();
    test_sweeps();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_cast_pairs");
}
