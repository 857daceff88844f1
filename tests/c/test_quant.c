/* test_quant.c: emulated fp8 (dp_fp8_scale_for, dp_fake_quant, dp_grad_quant). References are
 * written here: rounding to nearest even by searching the table of a format's values (decoded
 * from the format's definition in fp_ref.h), saturation at the largest finite value, NaN kept.
 * Checks: every element for f32/bf16/f16/f64 inputs and both formats with per-tensor and
 * per-example scales (ties, subnormals, saturation, Inf, NaN, -0); amax ignoring NaN; the
 * just-in-time scale is the largest power of two with amax * s <= max; values spanning 1e-6..1e4
 * come back within 2^-4 (e4m3) / 2^-3 (e5m2) relative error inside the scaled normal range;
 * straight-through gradients; grad_quant's identity forward and a backward that quantises the
 * gradient with the scale read at backward time; bad arguments fail naming op and argument. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "fp_ref.h"

static const dp_dtype INPUTS[] = { DP_F32, DP_BF16, DP_F16, DP_F64 };
static const dp_dtype FP8[] = { DP_FP8_E4M3, DP_FP8_E5M2 };

/* ---------------------------------------------------------------- reference by table search */

typedef struct { double v[256]; int n; double max; } table;

/* The format's non-negative finite values in increasing order (codes 0 .. max). */
static table table_of(const fp_format *f) {
    table t = { {0}, 0, 0 };
    for (uint32_t c = 0; c < (1u << (f->man + f->ebits)); c++) {
        double v = fp_decode(f, c);
        if (isfinite(v)) t.v[t.n++] = v;
    }
    t.max = t.v[t.n - 1];
    return t;
}

/* v rounded to the nearest table value (ties to the even code), saturated; NaN stays. */
static double table_round(const table *t, double v) {
    if (isnan(v)) return v;
    double a = fabs(v);
    if (a >= t->max) return copysign(t->max, v);
    int k = 0;
    while (k + 1 < t->n && t->v[k + 1] <= a) k++;
    double lo = t->v[k], hi = t->v[k + 1], r;
    if (a - lo < hi - a) r = lo;
    else if (a - lo > hi - a) r = hi;
    else r = (k % 2 == 0) ? lo : hi;   /* code k is even */
    return copysign(r, v);
}

/* out = q(x s) / s, rounded to x's dtype once. */
static double ref_fake_quant(const table *t, dp_dtype xdt, double x, double s) {
    return fp_round(fp_format_of(xdt), table_round(t, x * s) / s);
}

static int same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) exit(2);
    CHECK_OK(dp_tensor_to_f64(t, v));
    return v;
}

static dp_tensor *tensor(dp_dtype dt, int32_t ndim, const int64_t *shape, const double *v) {
    dp_tensor *t = dp_tensor_from_f64(dt, ndim, shape, v);
    if (!t) { fprintf(stderr, "alloc: %s\n", dp_last_error()); exit(2); }
    return t;
}

/* ---------------------------------------------------------------- element by element */

enum { ROWS = 3, COLS = 40 };

/* Inputs for row r (scale s_r): ties between neighbours, subnormals, saturation, specials. */
static void fill_row(double *x, const table *t, double s, uint64_t *seed) {
    for (int j = 0; j < COLS; j++) {
        int k = 1 + (int)((dp_test_uniform(seed) + 1) * 0.5 * (t->n - 3));
        double v;
        switch (j % 5) {
        case 0: v = (t->v[k] + t->v[k + 1]) / 2; break;              /* exact tie */
        case 1: v = t->v[k] + (t->v[k + 1] - t->v[k]) * 0.3; break;
        case 2: v = t->v[j % 4] * 0.75; break;                        /* subnormals, zero */
        case 3: v = t->v[k] * (1 + 0.01 * dp_test_uniform(seed)); break;
        default: v = t->max * (1.5 + j); break;                        /* saturates */
        }
        x[j] = (j % 2 ? -v : v) / s;
    }
    x[4] = NAN; x[9] = INFINITY; x[14] = -INFINITY; x[19] = -0.0;
}

static void test_elements(void) {
    static const double SCALES[ROWS] = { 1.0, 0.0625, 3.0 };   /* 3: not a power of two */
    for (size_t fi = 0; fi < 2; fi++) {
        table t = table_of(fp_format_of(FP8[fi]));
        for (size_t xi = 0; xi < sizeof INPUTS / sizeof *INPUTS; xi++) {
            dp_dtype xdt = INPUTS[xi];
            double xv[ROWS * COLS];
            uint64_t seed = 17 + fi * 5 + xi;
            for (int r = 0; r < ROWS; r++) fill_row(xv + r * COLS, &t, SCALES[r], &seed);
            dp_tensor *x = tensor(xdt, 2, (int64_t[]){ROWS, COLS}, xv);
            double *xr = values(x);   /* the inputs as stored in xdt */
            for (int per_example = 0; per_example <= 1; per_example++) {
                int64_t g = per_example ? ROWS : 1;
                double sv[ROWS] = { SCALES[0], SCALES[1], SCALES[2] };
                dp_tensor *s = tensor(DP_F32, 1, (int64_t[]){g}, sv);
                dp_tensor *amax = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){g});
                dp_tensor *y = dp_fake_quant(x, FP8[fi], s, amax, 0);
                CHECK_PTR(y);
                if (!y) continue;
                CHECK(y->dtype == xdt, "output dtype %s", dp_dtype_name(y->dtype));
                double *yv = values(y), *av = values(amax);
                int bad = 0, first = -1;
                for (int i = 0; i < ROWS * COLS; i++) {
                    double want = ref_fake_quant(&t, xdt, xr[i], sv[per_example ? i / COLS : 0]);
                    if (!same(yv[i], want)) { bad++; if (first < 0) first = i; }
                }
                CHECK(bad == 0, "%s x %s per_example %d: %d wrong, first [%d] x %.9g got %.9g want %.9g",
                      fp_format_of(FP8[fi])->name, dp_dtype_name(xdt), per_example, bad, first,
                      first >= 0 ? xr[first] : 0, first >= 0 ? yv[first] : 0,
                      first >= 0 ? ref_fake_quant(&t, xdt, xr[first], sv[per_example ? first / COLS : 0]) : 0);
                /* amax: Inf counts (every row holds one), NaN is ignored */
                for (int k = 0; k < g; k++) CHECK(isinf(av[k]), "amax[%d] = %g, want Inf", k, av[k]);
                free(yv); free(av);
                dp_tensor_release(y); dp_tensor_release(s); dp_tensor_release(amax);
            }
            free(xr);
            dp_tensor_release(x);
        }
    }
}

/* ---------------------------------------------------------------- amax and just-in-time scales */

static void test_amax_and_jit(void) {
    double xv[4 * 3] = { 1.5, NAN, -3.0,   NAN, NAN, NAN,   0, -0.0, 0,   -1e-3, 2e-3, NAN };
    dp_tensor *x = tensor(DP_F32, 2, (int64_t[]){4, 3}, xv);
    double ones[4] = { 1, 1, 1, 1 };
    for (size_t fi = 0; fi < 2; fi++) {
        double max = fp_max(fp_format_of(FP8[fi]));
        dp_tensor *s = tensor(DP_F32, 1, (int64_t[]){4}, ones);
        dp_tensor *amax = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){4});
        uint64_t v0 = dp_tensor_version(s);
        dp_tensor *y = dp_fake_quant(x, FP8[fi], s, amax, 1);
        CHECK_PTR(y);
        double *sv = values(s), *av = values(amax);
        double want_amax[4] = { 3.0, 0, 0, (double)2e-3f };
        for (int k = 0; k < 4; k++) {
            CHECK(av[k] == want_amax[k], "amax[%d] = %.9g, want %.9g", k, av[k], want_amax[k]);
            int e;
            CHECK(frexp(sv[k], &e) == 0.5, "scale[%d] = %g is not a power of two", k, sv[k]);
            if (want_amax[k] == 0) CHECK(sv[k] == 1, "scale of an all-zero/NaN row %g, want 1", sv[k]);
            else CHECK(av[k] * sv[k] <= max && av[k] * 2 * sv[k] > max,
                       "scale[%d] = %g not the largest with amax * s <= %g", k, sv[k], max);
        }
        CHECK(dp_tensor_version(s) > v0, "just-in-time scale write did not bump the version");
        free(sv); free(av);
        dp_tensor_release(y); dp_tensor_release(s); dp_tensor_release(amax);
    }
    dp_tensor_release(x);

    /* dp_fp8_scale_for against its definition */
    const double AMAX[] = { 1.0, 448.0, 449.0, 3e-7, 12345.678, 57344.0, 1e30, 1e-30 };
    for (size_t fi = 0; fi < 2; fi++) {
        double max = fp_max(fp_format_of(FP8[fi]));
        for (size_t i = 0; i < sizeof AMAX / sizeof *AMAX; i++) {
            for (int margin = 0; margin <= 2; margin++) {
                double s = dp_fp8_scale_for(AMAX[i], FP8[fi], margin), lim = ldexp(max, -margin);
                int e;
                CHECK(frexp(s, &e) == 0.5 && AMAX[i] * s <= lim && AMAX[i] * 2 * s > lim,
                      "scale_for(%g, %s, %d) = %g", AMAX[i], fp_format_of(FP8[fi])->name, margin, s);
            }
        }
        CHECK(dp_fp8_scale_for(0, FP8[fi], 0) == 1 && dp_fp8_scale_for(NAN, FP8[fi], 0) == 1 &&
              dp_fp8_scale_for(INFINITY, FP8[fi], 3) == 1, "scale_for of 0 / NaN / Inf is not 1");
    }
    CHECK(dp_fp8_scale_for(448.0, DP_FP8_E4M3, 0) == 1.0 && dp_fp8_scale_for(1.0, DP_FP8_E4M3, 0) == 256.0 &&
          dp_fp8_scale_for(1.0, DP_FP8_E5M2, 1) == 16384.0, "known scales");
    CHECK(isnan(dp_fp8_scale_for(1.0, DP_I32, 0)) && strstr(dp_last_error(), "fp8_scale_for: dtype"),
          "non-float dtype: %s", dp_last_error());
}

/* ---------------------------------------------------------------- recovery within format error */

/* Rows at magnitudes 1e-6, 1e-4, ..., 1e4 (each spanning a factor 10). Per-example scales keep
 * every value inside the scaled normal range, so each comes back within half an ulp: 2^-4 (e4m3,
 * 3 mantissa bits) or 2^-3 (e5m2) relative. With one scale for the tensor, values scaled below the
 * normal range may lose everything (checked only to be absolute errors below the subnormal step). */
static void test_recovery(void) {
    enum { R = 6, N = 200 };
    double xv[R * N];
    uint64_t seed = 5;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < N; j++)
            xv[r * N + j] = pow(10.0, -6 + 2 * r + 0.5 * (dp_test_uniform(&seed) + 1)) * (j % 3 ? 1 : -1);
    for (size_t fi = 0; fi < 2; fi++) {
        const fp_format *f = fp_format_of(FP8[fi]);
        double min_normal = ldexp(1.0, 1 - fp_bias(f)), bound = ldexp(1.0, -1 - f->man);
        double sub_step = ldexp(1.0, 1 - fp_bias(f) - f->man);
        for (int per_example = 0; per_example <= 1; per_example++) {
            int64_t g = per_example ? R : 1;
            dp_tensor *x = tensor(DP_F32, 2, (int64_t[]){R, N}, xv);
            dp_tensor *s = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){g});
            dp_tensor *y = dp_fake_quant(x, FP8[fi], s, NULL, 1);
            CHECK_PTR(y);
            if (!y) continue;
            double *in = values(x), *out = values(y), *sv = values(s);
            double worst = 0;
            int checked = 0, abs_bad = 0;
            for (int i = 0; i < R * N; i++) {
                double sc = sv[per_example ? i / N : 0];
                if (fabs(in[i]) * sc >= min_normal) {
                    double rel = fabs(out[i] - in[i]) / fabs(in[i]);
                    if (rel > worst) worst = rel;
                    checked++;
                } else if (fabs(out[i] - in[i]) > sub_step / sc / 2 * (1 + 1e-6)) {
                    abs_bad++;
                }
            }
            CHECK(worst <= bound, "%s per_example %d: worst relative error %g > %g", f->name,
                  per_example, worst, bound);
            CHECK(abs_bad == 0, "%s: %d values below the normal range off by more than half a step",
                  f->name, abs_bad);
            if (per_example) CHECK(checked == R * N, "%s: only %d of %d values in the normal range",
                                   f->name, checked, R * N);
            else CHECK(checked < R * N, "%s: one scale kept all of 1e-6..1e4 normal (range too wide "
                       "for the format, so this cannot be)", f->name);
            free(in); free(out); free(sv);
            dp_tensor_release(x); dp_tensor_release(s); dp_tensor_release(y);
        }
    }
}

/* ---------------------------------------------------------------- gradients */

static void test_straight_through(void) {
    enum { N = 30 };
    dp_tensor *x = dp_test_random(DP_F64, 1, (int64_t[]){N}, 8);
    CHECK_OK(dp_tensor_set_requires_grad(x, 1));
    double one = 1.0;
    dp_tensor *s = tensor(DP_F32, 1, (int64_t[]){1}, &one);
    /* loss = sum(q(x) * x): d/dx = x + q(x) when q passes gradients straight through */
    dp_tensor *q = dp_fake_quant(x, DP_FP8_E4M3, s, NULL, 1);
    CHECK(q && strcmp(dp_tensor_op_name(q), "fake_quant") == 0, "op name %s", q ? dp_tensor_op_name(q) : "-");
    dp_tensor *p = dp_mul(q, x), *loss = dp_sum(p, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 0));
    double *xv = values(x), *qv = values(q), *gv = x->grad ? values(x->grad) : NULL;
    table t = table_of(&FP_E4M3);
    int bad = !gv;
    for (int i = 0; gv && i < N; i++) bad += gv[i] != xv[i] + qv[i];
    double amax = 0;
    for (int i = 0; i < N; i++) amax = fmax(amax, fabs(xv[i]));
    double sc = dp_fp8_scale_for(amax, DP_FP8_E4M3, 0);
    for (int i = 0; i < N; i++) bad += qv[i] != table_round(&t, xv[i] * sc) / sc;
    CHECK(bad == 0, "straight-through gradient or forward values wrong (%d)", bad);
    free(xv); free(qv); free(gv);
    dp_tensor_release(loss); dp_tensor_release(p); dp_tensor_release(q); dp_tensor_release(s);
    dp_tensor_release(x);
}

/* grad_quant: forward is x; backward quantises the incoming gradient r with the scale set after
 * the forward (delayed scaling), fills amax_out, and with just_in_time uses r's own amax. */
static void test_grad_quant(void) {
    enum { B = 2, N = 8 };
    dp_tensor *x = dp_test_random(DP_F32, 2, (int64_t[]){B, N}, 3);
    dp_tensor *r = dp_test_random(DP_F32, 2, (int64_t[]){B, N}, 4);
    CHECK_OK(dp_tensor_set_requires_grad(x, 1));
    double r_amax[B] = { 0, 0 };
    double *rv = values(r);
    for (int i = 0; i < B * N; i++) r_amax[i / N] = fmax(r_amax[i / N], fabs(rv[i]));
    table t = table_of(&FP_E5M2);
    for (int jit = 0; jit <= 1; jit++) {
        double init[B] = { 1, 1 };
        dp_tensor *s = tensor(DP_F32, 1, (int64_t[]){B}, init);
        dp_tensor *amax = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){B});
        dp_tensor *y = dp_grad_quant(x, DP_FP8_E5M2, s, amax, jit);
        CHECK_PTR(y);
        double *xv = values(x), *yv = values(y);
        CHECK(memcmp(xv, yv, sizeof(double) * B * N) == 0, "grad_quant forward is not the identity");
        double later[B] = { 1024.0, 0.5 };   /* the delayed scale, set after the forward */
        memcpy(s->data, (float[]){1024.0f, 0.5f}, sizeof(float) * B);
        dp_tensor *p = dp_mul(y, r), *loss = dp_sum(p, 0, NULL, 0);
        dp_tensor_set_grad(x, NULL);
        CHECK_OK(dp_backward(loss, NULL, 0));
        double *gv = x->grad ? values(x->grad) : NULL, *sv = values(s), *av = values(amax);
        int bad = !gv;
        for (int i = 0; gv && i < B * N; i++) {
            double sc = jit ? dp_fp8_scale_for(r_amax[i / N], DP_FP8_E5M2, 0) : later[i / N];
            bad += gv[i] != (double)(float)(table_round(&t, rv[i] * sc) / sc);
        }
        CHECK(bad == 0, "jit %d: backward gradient is not q(r) with the backward-time scale (%d)", jit, bad);
        for (int b = 0; b < B; b++) {
            CHECK(av[b] == (double)(float)r_amax[b], "amax_out[%d] = %g, want %g", b, av[b], r_amax[b]);
            if (jit) CHECK(sv[b] == dp_fp8_scale_for(r_amax[b], DP_FP8_E5M2, 0), "jit scale[%d] %g", b, sv[b]);
        }
        free(xv); free(yv); free(gv); free(sv); free(av);
        dp_tensor_release(loss); dp_tensor_release(p); dp_tensor_release(y);
        dp_tensor_release(s); dp_tensor_release(amax);
    }
    free(rv);
    dp_tensor_release(x); dp_tensor_release(r);
}

/* ---------------------------------------------------------------- bad arguments */

#define EXPECT_NULL(expr, code, text)                                                          \
    do {                                                                                       \
        dp_tensor *t_ = (expr);                                                                \
        CHECK(t_ == NULL && strstr(dp_last_error(), (text)),                                   \
              "%s: message \"%s\", expected %s with \"%s\"", #expr, dp_last_error(), #code, (text)); \
        dp_tensor_release(t_);                                                                 \
    } while (0)

static void test_bad_arguments(void) {
    dp_tensor *x = dp_test_random(DP_F32, 2, (int64_t[]){3, 4}, 1);
    dp_tensor *xi = dp_tensor_zeros(DP_I32, DP_CPU, 1, (int64_t[]){3});
    double one = 1, zero = 0, nan = NAN, three[3] = { 1, 1, 1 };
    dp_tensor *s = tensor(DP_F32, 1, (int64_t[]){1}, &one), *s3 = tensor(DP_F32, 1, (int64_t[]){3}, three);
    dp_tensor *s2 = tensor(DP_F32, 1, (int64_t[]){2}, three), *s64 = tensor(DP_F64, 1, (int64_t[]){1}, &one);
    dp_tensor *s0 = tensor(DP_F32, 1, (int64_t[]){1}, &zero), *sn = tensor(DP_F32, 1, (int64_t[]){1}, &nan);
    EXPECT_NULL(dp_fake_quant(NULL, DP_FP8_E4M3, s, NULL, 0), DP_EARG, "fake_quant: x is NULL");
    EXPECT_NULL(dp_fake_quant(xi, DP_FP8_E4M3, s, NULL, 0), DP_EDTYPE, "fake_quant");
    EXPECT_NULL(dp_fake_quant(x, DP_BF16, s, NULL, 0), DP_EDTYPE, "fake_quant: dtype must be fp8_e4m3 or fp8_e5m2, got bf16");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, NULL, NULL, 0), DP_EARG, "fake_quant: scale is NULL");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, s2, NULL, 0), DP_ESHAPE, "fake_quant: scale must be f32 of shape (1) or (x.shape[0])");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, s64, NULL, 0), DP_ESHAPE, "scale must be f32");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, s3, s, 0), DP_ESHAPE, "fake_quant: amax_out must be f32 of scale's shape");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, s, s, 0), DP_EARG, "amax_out and scale share storage");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, s, NULL, 2), DP_EARG, "fake_quant: just_in_time must be 0 or 1, got 2");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E4M3, s0, NULL, 0), DP_EARG, "fake_quant: scale[0] must be finite and > 0, got 0");
    EXPECT_NULL(dp_fake_quant(x, DP_FP8_E5M2, sn, NULL, 0), DP_EARG, "scale[0] must be finite and > 0, got nan");
    EXPECT_NULL(dp_grad_quant(x, DP_F32, s, NULL, 0), DP_EDTYPE, "grad_quant: dtype must be fp8_e4m3 or fp8_e5m2, got f32");
    EXPECT_NULL(dp_grad_quant(x, DP_FP8_E5M2, s2, NULL, 0), DP_ESHAPE, "grad_quant: scale must be");
    /* a zero scale set only after the forward fails the backward, naming it */
    CHECK_OK(dp_tensor_set_requires_grad(x, 1));
    dp_tensor *sz = tensor(DP_F32, 1, (int64_t[]){1}, &one);
    dp_tensor *y = dp_grad_quant(x, DP_FP8_E5M2, sz, NULL, 0), *l = y ? dp_sum(y, 0, NULL, 0) : NULL;
    ((float *)sz->data)[0] = 0;
    int rc = l ? dp_backward(l, NULL, 0) : -1;
    CHECK(rc != 0 && strstr(dp_last_error(), "grad_quant backward: scale[0] must be finite and > 0"),
          "rc %d: %s", rc, dp_last_error());
    dp_tensor_release(l); dp_tensor_release(y); dp_tensor_release(sz);
    dp_tensor *all[] = { x, xi, s, s3, s2, s64, s0, sn };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dp_tensor_release(all[i]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_elements();
    test_amax_and_jit();
    test_recovery();
    test_straight_through();
    test_grad_quant();
    test_bad_arguments();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_quant");
}
