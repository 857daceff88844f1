/* test_optim_rounding.c: stochastic rounding of bf16/f16/fp8 parameters in the optimizers
 * (dp_rounding in dp.h). Checks: every element against a reference that takes the documented
 * Philox word (seed, counter + i/4, stream 0x5352, lane i%4) and the neighbours lo < v < hi from
 * the format's definition (tests/c/fp_ref.h), also split between 2 threads; the mean over many
 * sub-ulp steps equals the exact expectation within 5 standard deviations while nearest rounding
 * never moves; same seed and counter give the same bits; the counter advances by ceil(numel/4)
 * (not for f32 params, which ignore the rounding); a step bumps the param's version once; a bad
 * flag fails naming the argument and changes nothing. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "fp_ref.h"
#include "philox.h"

static const dp_dtype LOWP[] = { DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2 };

static dp_tensor *from_values(dp_dtype dt, int64_t n, const double *v) {
    dp_tensor *t = dp_tensor_from_f64(dt, 1, (int64_t[]){n}, v);
    if (!t) { fprintf(stderr, "alloc: %s\n", dp_last_error()); exit(2); }
    return t;
}

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) { fprintf(stderr, "out of memory\n"); exit(2); }
    CHECK_OK(dp_tensor_to_f64(t, v));
    return v;
}

/* Same value, same sign of zero, or both NaN. */
static int same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

/* The documented stochastic rounding of v (an f32 value) with word w. */
static double ref_stochastic(const fp_format *f, double v, uint32_t w) {
    double r = fp_round(f, v);
    if (r == v || !isfinite(v)) return r;
    double lo, hi;
    fp_neighbours(f, v, &lo, &hi);
    if (fabs(lo) > fp_max(f) || fabs(hi) > fp_max(f)) return r;   /* no rounding up to overflow */
    return (double)w * 0x1p-32 < (v - lo) / (hi - lo) ? hi : lo;
}

/* Every element of one SGD step (lr 1, so v = p - g in f32) against the reference. n elements,
 * values spread over the format's range, subnormals and both signs included. */
static void check_mapping(dp_dtype dt, int64_t n, uint64_t seed, uint64_t counter) {
    const fp_format *f = fp_format_of(dt);
    double *pv = malloc(sizeof(double) * (size_t)n), *gv = malloc(sizeof(double) * (size_t)n);
    if (!pv || !gv) exit(2);
    uint64_t s = seed * 7 + 3;
    double max = fp_max(f), tiny = ldexp(1.0, 1 - fp_bias(f) - f->man);
    for (int64_t i = 0; i < n; i++) {
        double u = dp_test_uniform(&s), mag;
        switch (i % 4) {
        case 0: mag = 1.0 + 0.5 * u; break;                            /* around 1 */
        case 1: mag = tiny * (8 + 6 * u); break;                       /* subnormals */
        case 2: mag = max * (0.5 + 0.49 * u); break;                   /* near the top */
        default: mag = ldexp(1.0, (int)(20 * u)) * (1 + 0.3 * u); break;
        }
        pv[i] = fp_round(f, (u < 0 ? -1 : 1) * mag);
        if (fabs(pv[i]) > max) pv[i] = copysign(max, pv[i]);
        /* A gradient well below one ulp of p, with many f32 bits. */
        gv[i] = (double)(float)(fp_quantum(f, fabs(pv[i])) * 0.37 * dp_test_uniform(&s));
    }
    dp_tensor *p = from_values(dt, n, pv), *g = from_values(DP_F32, n, gv);
    dp_rounding r = { 1, seed, counter };
    CHECK_OK(dp_sgd_step_(p, g, NULL, 1.0, 0, 0, 0, 0, 1, &r));
    CHECK(r.counter == counter + (uint64_t)((n + 3) / 4), "%s: counter %llu, want %llu", f->name,
          (unsigned long long)r.counter, (unsigned long long)(counter + (uint64_t)((n + 3) / 4)));
    double *got = values(p);
    int64_t bad = 0, first = -1, moved = 0;
    uint32_t words[4];
    for (int64_t i = 0; i < n; i++) {
        if (i % 4 == 0) dp_philox_block(words, seed, counter + (uint64_t)(i / 4), 0x5352);
        double v = (double)((float)pv[i] - (float)gv[i]);
        double want = ref_stochastic(f, v, words[i % 4]);
        if (!same(got[i], want)) { bad++; if (first < 0) first = i; }
        moved += got[i] != fp_round(f, v);
    }
    CHECK(bad == 0, "%s n=%lld: %lld elements differ from the reference, first %lld", f->name,
          (long long)n, (long long)bad, (long long)first);
    CHECK(moved > n / 20, "%s: stochastic rounding never differed from nearest (%lld of %lld)",
          f->name, (long long)moved, (long long)n);
    free(got); free(pv); free(gv);
    dp_tensor_release(p); dp_tensor_release(g);
}

static void test_mapping(void) {
    for (size_t k = 0; k < sizeof LOWP / sizeof *LOWP; k++) check_mapping(LOWP[k], 37, 11 + k, 5);
    /* Above the size split between threads, with a counter near 2^64 (it wraps). */
    int saved = dp_get_num_threads();
    dp_set_num_threads(2);
    check_mapping(DP_BF16, 70001, 99, UINT64_MAX - 100);
    dp_set_num_threads(saved);
}

/* T steps of +d (d = 5/16 of an ulp at 1, exact in f32 beside p) from +-1 on N elements: with
 * stochastic rounding the mean is +-(1 + T d) in expectation (unbiased at every step); each step
 * adds variance at most q^2 / 4 (q the ulp), so the mean of N has standard deviation at most
 * q sqrt(T / (4 N)). Nearest rounding never leaves +-1. */
static void test_unbiased(void) {
    enum { N = 8192, T = 20 };
    for (size_t k = 0; k < sizeof LOWP / sizeof *LOWP; k++) {
        const fp_format *f = fp_format_of(LOWP[k]);
        double q = ldexp(1.0, -f->man), d = q * 5.0 / 16.0;
        for (int sign = -1; sign <= 1; sign += 2) {
            for (int stochastic = 0; stochastic <= 1; stochastic++) {
                dp_tensor *p = dp_tensor_full(LOWP[k], DP_CPU, 1, (int64_t[]){N}, sign);
                dp_tensor *g = dp_tensor_full(DP_F32, DP_CPU, 1, (int64_t[]){N}, -sign * d);
                dp_rounding r = { stochastic, 1234 + k, 0 };
                for (int t = 0; t < T; t++) CHECK_OK(dp_sgd_step_(p, g, NULL, 1.0, 0, 0, 0, 0, 1, &r));
                double *v = values(p), mean = 0;
                for (int i = 0; i < N; i++) mean += v[i];
                mean /= N;
                double want = sign * (1.0 + T * d), sd = q * sqrt(T / (4.0 * N));
                if (stochastic)
                    CHECK(fabs(mean - want) <= 5 * sd, "%s sign %d: mean %.10g, expected %.10g +- %.3g",
                          f->name, sign, mean, want, 5 * sd);
                else
                    CHECK(mean == sign, "%s sign %d nearest: mean %.10g, expected %d", f->name, sign,
                          mean, sign);
                CHECK(r.counter == (stochastic ? (uint64_t)T * (N / 4) : 0), "%s: counter %llu",
                      f->name, (unsigned long long)r.counter);
                free(v);
                dp_tensor_release(p); dp_tensor_release(g);
            }
        }
    }
}

/* One Adam step on a bf16 param with the given rounding; returns the param's bytes (n * 2). */
static uint16_t *adam_once(dp_rounding *r, int64_t n) {
    dp_tensor *p = dp_test_random(DP_BF16, 1, (int64_t[]){n}, 4);
    dp_tensor *g = dp_test_random(DP_F32, 1, (int64_t[]){n}, 5);
    dp_tensor *m = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){n});
    dp_tensor *v = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){n});
    CHECK_OK(dp_adam_step_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1, r));
    uint16_t *out = malloc((size_t)n * 2);
    if (!out) exit(2);
    memcpy(out, p->data, (size_t)n * 2);
    dp_tensor_release(p); dp_tensor_release(g); dp_tensor_release(m); dp_tensor_release(v);
    return out;
}

static void test_reproducible(void) {
    int64_t n = 10;
    dp_rounding a = { 1, 42, 7 }, b = { 1, 42, 7 }, c = { 1, 43, 7 }, z = { 0, 42, 7 };
    uint16_t *pa = adam_once(&a, 1000), *pb = adam_once(&b, 1000), *pc = adam_once(&c, 1000);
    uint16_t *pz = adam_once(&z, 1000), *pn = adam_once(NULL, 1000);
    CHECK(memcmp(pa, pb, 2000) == 0, "same seed and counter: different bits");
    CHECK(memcmp(pa, pc, 2000) != 0, "another seed: same bits");
    CHECK(memcmp(pz, pn, 2000) == 0, "stochastic = 0 differs from NULL (nearest)");
    CHECK(memcmp(pa, pn, 2000) != 0, "stochastic rounding equals nearest on 1000 values");
    CHECK(a.counter == 7 + 250 && z.counter == 7, "counters %llu, %llu",
          (unsigned long long)a.counter, (unsigned long long)z.counter);
    free(pa); free(pb); free(pc); free(pz); free(pn);

    /* f32 params ignore the rounding, counter included; ceil(10/4) = 3 for an f16 param */
    dp_tensor *p32 = dp_test_random(DP_F32, 1, (int64_t[]){n}, 1);
    dp_tensor *q32 = dp_test_random(DP_F32, 1, (int64_t[]){n}, 1);
    dp_tensor *p16 = dp_test_random(DP_F16, 1, (int64_t[]){n}, 1);
    dp_tensor *g = dp_test_random(DP_F32, 1, (int64_t[]){n}, 2);
    dp_rounding r = { 1, 5, 0 };
    CHECK_OK(dp_sgd_step_(p32, g, NULL, 0.1, 0, 0, 0, 0, 1, &r));
    CHECK_OK(dp_sgd_step_(q32, g, NULL, 0.1, 0, 0, 0, 0, 1, NULL));
    CHECK(r.counter == 0 && memcmp(p32->data, q32->data, (size_t)n * 4) == 0,
          "f32 param: counter %llu, same bits as nearest", (unsigned long long)r.counter);
    uint64_t v0 = dp_tensor_version(p16);
    CHECK_OK(dp_sgd_step_(p16, g, NULL, 0.1, 0, 0, 0, 0, 1, &r));
    CHECK(r.counter == 3, "f16 param of 10: counter %llu, want 3", (unsigned long long)r.counter);
    CHECK(dp_tensor_version(p16) == v0 + 1, "a step did not bump the param's version once");

    dp_rounding bad = { 2, 0, 0 };
    int rc = dp_sgd_step_(p16, g, NULL, 0.1, 0, 0, 0, 0, 1, &bad);
    CHECK(rc == DP_EARG && strstr(dp_last_error(), "dp_sgd_step_: rounding->stochastic must be 0 or 1, got 2"),
          "rc %d: %s", rc, dp_last_error());
    dp_tensor *m = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){n});
    dp_tensor *v = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){n});
    rc = dp_adam_step_(p16, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, &bad);
    CHECK(rc == DP_EARG && strstr(dp_last_error(), "dp_adam_step_: rounding->stochastic must be 0 or 1"),
          "rc %d: %s", rc, dp_last_error());
    CHECK(r.counter == 3 && dp_tensor_version(p16) == v0 + 1, "failed calls moved the counter or version");
    dp_tensor_release(p32); dp_tensor_release(q32); dp_tensor_release(p16); dp_tensor_release(g);
    dp_tensor_release(m); dp_tensor_release(v);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_mapping();
    test_unbiased();
    test_reproducible();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_optim_rounding");
}
