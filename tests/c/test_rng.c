/* test_rng.c: Philox4x32-10 known answers, the documented (seed, counter) -> element mapping,
 * determinism across calls, splits and thread counts, distribution checks (moments and
 * Kolmogorov-Smirnov), dropout, and the error paths. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "internal.h"

static const double TWO_PI = 6.283185307179586476925286766559;

static dp_tensor *new1(dp_dtype dtype, int64_t n) { return dp_tensor_empty(dtype, DP_CPU, 1, &n); }

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    CHECK_OK(dp_tensor_to_f64(t, v));
    return v;
}

/* ---------------------------------------------------------------- Philox known answers */

/* Random123's tests/kat_vectors, "philox4x32 10" lines: counter words c0..c3, key words k0, k1,
 * expected outputs. ctr_lo = c1:c0, ctr_hi = c3:c2, seed = k1:k0. */
static void test_known_answers(void) {
    static const struct { uint32_t ctr[4], key[2], want[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        uint64_t lo = (uint64_t)kat[k].ctr[1] << 32 | kat[k].ctr[0];
        uint64_t hi = (uint64_t)kat[k].ctr[3] << 32 | kat[k].ctr[2];
        uint64_t seed = (uint64_t)kat[k].key[1] << 32 | kat[k].key[0];
        dp_philox4x32(out, seed, lo, hi);
        CHECK(memcmp(out, kat[k].want, sizeof out) == 0, "kat %d: %08x %08x %08x %08x", k, out[0],
              out[1], out[2], out[3]);
    }
    dp_rng rng = {123, 456};
    dp_rng_init(&rng, 77);
    CHECK(rng.seed == 77 && rng.counter == 0, "rng_init");
}

/* ---------------------------------------------------------------- the documented mapping */

static void test_mapping(void) {
    const uint64_t seed = 0x0123456789abcdefull, c0 = 5;
    dp_rng rng = {seed, c0};
    /* f32 uniform: lane i%4 of block c + i/4, top 24 bits. */
    dp_tensor *u = new1(DP_F32, 10);
    CHECK_OK(dp_rand_(u, &rng));
    CHECK(rng.counter == c0 + 3, "f32 uniform advances ceil(10/4) blocks: %llu",
          (unsigned long long)rng.counter);
    const float *uf = u->data;
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        uint32_t w[4];
        dp_philox4x32(w, seed, c0 + (uint64_t)(i / 4), 0);
        bad += uf[i] != (float)((w[i % 4] >> 8) * 0x1p-24);
    }
    CHECK(bad == 0, "f32 uniform mapping: %d mismatches", bad);

    /* f64 uniform: lanes 2(i%2), 2(i%2)+1 of block c + i/2, 53 bits. */
    dp_tensor *d = new1(DP_F64, 7);
    rng.counter = c0;
    CHECK_OK(dp_rand_(d, &rng));
    CHECK(rng.counter == c0 + 4, "f64 uniform advances ceil(7/2) blocks");
    bad = 0;
    for (int i = 0; i < 7; i++) {
        uint32_t w[4];
        dp_philox4x32(w, seed, c0 + (uint64_t)(i / 2), 0);
        uint64_t bits = ((uint64_t)w[2 * (i % 2)] << 21) | (w[2 * (i % 2) + 1] >> 11);
        bad += ((double *)d->data)[i] != bits * 0x1p-53;
    }
    CHECK(bad == 0, "f64 uniform mapping: %d mismatches", bad);

    /* Normals: Box-Muller on lane pairs, checked against libm (so the library's own log and
     * sin/cos are checked for accuracy too). */
    const int64_t n = 4003;
    const double mean = 0.25, std = 1.5;
    dp_tensor *z = new1(DP_F64, n);
    rng.counter = c0;
    CHECK_OK(dp_randn_(z, &rng, mean, std));
    CHECK(rng.counter == c0 + (uint64_t)((n + 3) / 4), "normal advances ceil(n/4) blocks");
    double max_err = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        dp_philox4x32(w, seed, c0 + (uint64_t)(i / 4), 0);
        int pair = (int)(i % 4) / 2;
        double u1 = (w[2 * pair] + 0.5) * 0x1p-32, phi = TWO_PI * (w[2 * pair + 1] * 0x1p-32);
        double r = sqrt(-2 * log(u1));
        double want = mean + std * (i % 2 == 0 ? r * cos(phi) : r * sin(phi));
        double err = fabs(((double *)z->data)[i] - want);
        if (err > max_err) max_err = err;
    }
    CHECK(max_err < 1e-13, "normal mapping vs libm Box-Muller: max error %g", max_err);

    /* Other dtypes round the same f64 value once. */
    const dp_dtype low[] = {DP_F32, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
    for (int k = 0; k < 5; k++) {
        dp_tensor *t = new1(low[k], n);
        rng.counter = c0;
        CHECK_OK(dp_randn_(t, &rng, mean, std));
        dp_tensor *want = new1(low[k], n);
        CHECK_OK(dp_copy_(want, z));
        CHECK(memcmp(t->data, want->data, (size_t)(n * dp_dtype_size(low[k]))) == 0,
              "%s normals are the f64 normals rounded once", dp_dtype_name(low[k]));
        dp_tensor_release(t);
        dp_tensor_release(want);
    }

    /* Low-precision uniforms round the f32 uniform toward zero: below it by less than a step,
     * and never 1. */
    dp_tensor *big = new1(DP_F32, 1 << 16);
    rng.counter = c0;
    CHECK_OK(dp_rand_(big, &rng));
    double *ref = values(big);
    for (int k = 1; k < 5; k++) {
        dp_tensor *t = new1(low[k], 1 << 16);
        rng.counter = c0;
        CHECK_OK(dp_rand_(t, &rng));
        double *v = values(t);
        int wrong = 0;
        double vmax = 0;
        for (int i = 0; i < 1 << 16; i++) {
            double step = fmax(ref[i] / 4, 0x1p-8);   /* at least one step in every format */
            wrong += !(v[i] <= ref[i] && ref[i] - v[i] < step && v[i] >= 0);
            if (v[i] > vmax) vmax = v[i];
        }
        CHECK(wrong == 0 && vmax < 1, "%s uniform: %d values not truncations, max %g",
              dp_dtype_name(low[k]), wrong, vmax);
        free(v);
        dp_tensor_release(t);
    }
    free(ref);
    dp_tensor_release(big);
    dp_tensor_release(u);
    dp_tensor_release(d);
    dp_tensor_release(z);
}

/* ---------------------------------------------------------------- determinism */

static int same_bits(const dp_tensor *a, const dp_tensor *b) {
    return memcmp(a->data, b->data, (size_t)(dp_tensor_numel(a) * dp_dtype_size(a->dtype))) == 0;
}

static void test_determinism(void) {
    dp_rng r1, r2;
    dp_rng_init(&r1, 2024);
    r1.counter = 99;
    r2 = r1;
    dp_tensor *a = new1(DP_F32, 1000), *b = new1(DP_F32, 1000);
    CHECK_OK(dp_randn_(a, &r1, 0, 1));
    CHECK_OK(dp_randn_(b, &r2, 0, 1));
    CHECK(same_bits(a, b) && r1.counter == r2.counter, "same (seed, counter) gives the same draws");
    CHECK_OK(dp_randn_(b, &r2, 0, 1));
    CHECK(!same_bits(a, b), "the counter moved on");

    /* 8 then 8 equals one fill of 16 (split at a multiple of 4) and ends at the same counter;
     * 10 then 6 does not (the first fill discards lanes 2 and 3 of its last block). */
    dp_tensor *whole = new1(DP_F32, 16), *p1 = new1(DP_F32, 8), *p2 = new1(DP_F32, 8);
    dp_tensor *q1 = new1(DP_F32, 10), *q2 = new1(DP_F32, 6);
    dp_rng s = {7, 0};
    CHECK_OK(dp_rand_(whole, &s));
    uint64_t end_whole = s.counter;
    s.counter = 0;
    CHECK_OK(dp_rand_(p1, &s));
    CHECK_OK(dp_rand_(p2, &s));
    CHECK(s.counter == end_whole && end_whole == 4, "8 + 8 ends at counter 4");
    CHECK(memcmp(whole->data, p1->data, 32) == 0 && memcmp((float *)whole->data + 8, p2->data, 32) == 0,
          "8 + 8 equals 16");
    s.counter = 0;
    CHECK_OK(dp_rand_(q1, &s));
    CHECK(s.counter == 3, "10 elements use 3 blocks");
    CHECK_OK(dp_rand_(q2, &s));
    CHECK(s.counter == 5, "then 6 elements use 2 more");
    CHECK(memcmp(whole->data, q1->data, 40) == 0, "the first 10 agree");
    CHECK(memcmp((float *)whole->data + 12, q2->data, 16) == 0,
          "the second fill starts at block 3: its first 4 are elements 12..15 of the whole");

    /* A strided destination receives stream element i at row-major position i. */
    int64_t shape[2] = {6, 5};
    dp_tensor *m = dp_tensor_empty(DP_F32, DP_CPU, 2, shape);
    dp_tensor *mt = dp_transpose(m, 0, 1);   /* (5, 6) view */
    dp_tensor *flat = new1(DP_F32, 30);
    dp_rng t1 = {11, 3}, t2 = {11, 3};
    CHECK_OK(dp_rand_(mt, &t1));
    CHECK_OK(dp_rand_(flat, &t2));
    double *mv = values(mt), *fv = values(flat);
    CHECK(memcmp(mv, fv, 30 * sizeof(double)) == 0 && t1.counter == t2.counter,
          "strided fill follows row-major order");
    free(mv);
    free(fv);

    /* Thread count does not change a large (parallel) fill. */
    int32_t threads = dp_get_num_threads();
    CHECK(threads >= 1, "threads %d", threads);
    dp_tensor *l1 = new1(DP_F32, 300001), *l2 = new1(DP_F32, 300001);
    dp_rng a1 = {5, 1}, a2 = {5, 1};
    dp_set_num_threads(1);
    CHECK(dp_get_num_threads() == 1, "set_num_threads(1)");
    CHECK_OK(dp_randn_(l1, &a1, 0, 1));
    dp_set_num_threads(0);
    CHECK(dp_get_num_threads() >= 1, "default restored");
    CHECK_OK(dp_randn_(l2, &a2, 0, 1));
    CHECK(same_bits(l1, l2), "fills agree across thread counts");

    dp_tensor *ts[] = {a, b, whole, p1, p2, q1, q2, m, mt, flat, l1, l2};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dp_tensor_release(ts[i]);
}

/* ---------------------------------------------------------------- distributions */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov statistic of sorted v[n] against the CDF cdf. */
static double ks_stat(double *v, int64_t n, double (*cdf)(double)) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double f = cdf(v[i]);
        double hi = (double)(i + 1) / n - f, lo = f - (double)i / n;
        if (hi > d) d = hi;
        if (lo > d) d = lo;
    }
    return d;
}

static double uniform_cdf(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static void moments(const double *v, int64_t n, double *mean, double *var) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int64_t i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *var = ss / (n - 1);
}

static void test_distributions(void) {
    /* Fixed seeds, so these are deterministic; the thresholds are the 5-sigma band for the moments
     * and the KS critical value 1.95/sqrt(n) (significance about 0.001). */
    const int64_t n = 1 << 20;
    const double ks_crit = 1.95 / sqrt((double)n);
    dp_rng rng = {20240601, 0};
    const dp_dtype dts[] = {DP_F32, DP_F64};
    for (int k = 0; k < 2; k++) {
        dp_tensor *u = new1(dts[k], n);
        CHECK_OK(dp_rand_(u, &rng));
        double *v = values(u), mean, var, lo = 1, hi = 0;
        for (int64_t i = 0; i < n; i++) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
        CHECK(lo >= 0 && hi < 1, "uniform range [%g, %g]", lo, hi);
        moments(v, n, &mean, &var);
        CHECK(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / n), "%s uniform mean %g", dp_dtype_name(dts[k]), mean);
        CHECK(fabs(var - 1.0 / 12) < 5 * sqrt(1.0 / 180 / n), "%s uniform var %g", dp_dtype_name(dts[k]), var);
        double d = ks_stat(v, n, uniform_cdf);
        CHECK(d < ks_crit, "%s uniform KS %g >= %g", dp_dtype_name(dts[k]), d, ks_crit);
        free(v);
        dp_tensor_release(u);

        dp_tensor *z = new1(dts[k], n);
        CHECK_OK(dp_randn_(z, &rng, 0, 1));
        v = values(z);
        moments(v, n, &mean, &var);
        CHECK(fabs(mean) < 5 / sqrt((double)n), "%s normal mean %g", dp_dtype_name(dts[k]), mean);
        CHECK(fabs(var - 1) < 5 * sqrt(2.0 / n), "%s normal var %g", dp_dtype_name(dts[k]), var);
        d = ks_stat(v, n, normal_cdf);
        CHECK(d < ks_crit, "%s normal KS %g >= %g", dp_dtype_name(dts[k]), d, ks_crit);
        free(v);
        dp_tensor_release(z);
    }
    /* mean and std are applied. */
    dp_tensor *z = new1(DP_F32, 200000);
    CHECK_OK(dp_randn_(z, &rng, 3.0, 0.5));
    double *v = values(z), mean, var;
    moments(v, 200000, &mean, &var);
    CHECK(fabs(mean - 3) < 5 * 0.5 / sqrt(200000.0) && fabs(sqrt(var) - 0.5) < 0.01,
          "N(3, 0.25): mean %g std %g", mean, sqrt(var));
    free(v);
    CHECK_OK(dp_randn_(z, &rng, -2.0, 0.0));
    v = values(z);
    CHECK(v[0] == -2 && v[199999] == -2, "std 0 gives the mean");
    free(v);
    dp_tensor_release(z);
}

/* ---------------------------------------------------------------- dropout */

static void test_dropout(void) {
    const int64_t n = 100000;
    const double p = 0.3;
    dp_rng rng = {99, 10};
    dp_tensor *x = dp_test_random(DP_F32, 1, &n, 3);
    CHECK_OK(dp_tensor_set_requires_grad(x, 1));
    dp_tensor *y = dp_dropout(x, p, 1, &rng);
    CHECK_PTR(y);
    if (!y) return;
    CHECK(rng.counter == 10 + (uint64_t)(n / 4), "dropout advances ceil(n/4) blocks");
    CHECK(strcmp(dp_tensor_op_name(y), "dropout") == 0, "op name %s", dp_tensor_op_name(y));
    double *xv = values(x), *yv = values(y);
    const float scale = (float)(1 / (1 - p));
    int64_t kept = 0, bad = 0, bad_mask = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        dp_philox4x32(w, 99, 10 + (uint64_t)(i / 4), 0);
        int keep = (w[i % 4] >> 8) * 0x1p-24 >= p;
        kept += keep;
        if (yv[i] != 0) bad_mask += !keep;
        bad += yv[i] != (keep ? (double)((float)xv[i] * scale) : 0.0);
    }
    double frac = (double)kept / n;
    CHECK(fabs(frac - (1 - p)) < 5 * sqrt(p * (1 - p) / n), "keep fraction %g", frac);
    CHECK(bad == 0 && bad_mask == 0, "dropout values: %lld wrong, %lld kept where dropped",
          (long long)bad, (long long)bad_mask);

    /* Backward: gx = gy * mask / (1 - p). */
    dp_tensor *gy = dp_test_random(DP_F32, 1, &n, 4);
    CHECK_OK(dp_backward(y, gy, 0));
    CHECK_PTR(x->grad);
    if (x->grad) {
        double *gv = values(x->grad), *gyv = values(gy);
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; i++) {
            double want = yv[i] != 0 ? gyv[i] / (1 - p) : 0.0;
            wrong += fabs(gv[i] - want) > 1e-6 * (1 + fabs(want));
        }
        CHECK(wrong == 0, "dropout backward: %lld wrong", (long long)wrong);
        free(gv);
        free(gyv);
    }
    free(xv);
    free(yv);
    dp_tensor_release(gy);
    dp_tensor_release(y);

    /* Identity cases return x itself. */
    dp_rng before = rng;
    dp_tensor *same = dp_dropout(x, 0.0, 1, &rng);
    CHECK(same == x, "p = 0 returns x");
    dp_tensor_release(same);
    same = dp_dropout(x, 0.5, 0, NULL);
    CHECK(same == x && rng.counter == before.counter, "eval mode returns x and draws nothing");
    dp_tensor_release(same);

    /* A strided input and a low-precision one. */
    int64_t shape[2] = {3, 7};
    dp_tensor *m = dp_test_random(DP_F64, 2, shape, 5);
    dp_tensor *mt = dp_transpose(m, 0, 1);
    dp_rng r1 = {1, 0}, r2 = {1, 0};
    dp_tensor *ys = dp_dropout(mt, 0.5, 1, &r1);
    dp_tensor *mc = dp_contiguous(mt);
    dp_tensor *yc = dp_dropout(mc, 0.5, 1, &r2);
    CHECK(ys && yc && same_bits(ys, yc), "strided input drops like its contiguous copy");
    dp_tensor_release(ys);
    dp_tensor_release(yc);
    dp_tensor_release(mc);
    dp_tensor_release(mt);
    dp_tensor_release(m);
    dp_tensor *hb = dp_test_random(DP_BF16, 1, &n, 6);
    dp_tensor *yb = dp_dropout(hb, 0.25, 1, &r1);
    CHECK_PTR(yb);
    if (yb) {
        double *hv = values(hb), *bv = values(yb);
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; i++)
            wrong += bv[i] != 0 && bv[i] != dp_bf16_to_f32(dp_f64_to_bf16((float)hv[i] * (float)(1 / 0.75)));
        CHECK(wrong == 0, "bf16 dropout rounds x * scale once: %lld wrong", (long long)wrong);
        free(hv);
        free(bv);
    }
    dp_tensor_release(yb);
    dp_tensor_release(hb);
    dp_tensor_release(x);
}

/* ---------------------------------------------------------------- errors and devices */

static void test_errors(void) {
    dp_rng rng = {1, 0};
    dp_tensor *x = new1(DP_F32, 8), *xi = new1(DP_I32, 8);
    const double bad_p[] = {1.0, -0.1, 1.5, NAN};
    for (int i = 0; i < 4; i++) {
        CHECK(dp_dropout(x, bad_p[i], 1, &rng) == NULL, "p = %g rejected", bad_p[i]);
        CHECK(strstr(dp_last_error(), "dropout: p must be in [0, 1)") != NULL, "%s", dp_last_error());
    }
    CHECK(dp_dropout(x, 0.5, 1, NULL) == NULL && strstr(dp_last_error(), "rng") != NULL, "%s",
          dp_last_error());
    CHECK(dp_dropout(xi, 0.5, 1, &rng) == NULL && strstr(dp_last_error(), "float") != NULL, "%s",
          dp_last_error());
    CHECK(dp_rand_(xi, &rng) == DP_EDTYPE, "rand_ on i32: %s", dp_last_error());
    CHECK(strstr(dp_last_error(), "rand_: expected a float tensor") != NULL, "%s", dp_last_error());
    CHECK(dp_rand_(x, NULL) == DP_EARG && strstr(dp_last_error(), "rng") != NULL, "%s", dp_last_error());
    CHECK(dp_randn_(x, &rng, 0, -1) == DP_EARG && strstr(dp_last_error(), "std") != NULL, "%s",
          dp_last_error());
    CHECK(dp_randn_(x, &rng, 0, NAN) == DP_EARG, "NaN std");
    CHECK(rng.counter == 0, "failed calls draw nothing");
    dp_tensor *empty = new1(DP_F32, 0);
    CHECK_OK(dp_rand_(empty, &rng));
    CHECK(rng.counter == 0, "an empty fill draws nothing");
    dp_tensor_release(empty);
    dp_tensor_release(x);
    dp_tensor_release(xi);

    CHECK(dp_device_available(DP_CPU) == 1, "cpu available");
    CHECK(dp_ops_for(DP_CPU) == &dp_cpu_ops, "cpu table");
    CHECK(dp_ops_for((dp_device)7) == NULL && strstr(dp_last_error(), "unknown device") != NULL, "%s",
          dp_last_error());
    if (!dp_device_available(DP_CUDA)) {
        CHECK(dp_ops_for(DP_CUDA) == NULL, "no cuda table without a device");
        CHECK(strncmp(dp_last_error(), "cuda: ", 6) == 0, "%s", dp_last_error());
        printf("cuda unavailable: %s\n", dp_last_error());
        int64_t n = 4;
        CHECK(dp_tensor_empty(DP_F32, DP_CUDA, 1, &n) == NULL, "no cuda tensors without a device");
    }
}

/* ---------------------------------------------------------------- cuda matches cpu */

/* Bytes of a contiguous tensor on any device, copied to the host (caller frees). */
static void *host_bytes(const dp_tensor *t) {
    size_t bytes = (size_t)(dp_tensor_numel(t) * dp_dtype_size(t->dtype));
    void *h = malloc(bytes ? bytes : 1);
    CHECK_OK(dp_ops_for(t->device)->memcpy_d2h(h, t->data, bytes));
    return h;
}

/* The stream is defined bit for bit (philox.h), so CUDA fills must equal CPU fills. Skipped
 * without a device. */
static void test_cuda_matches_cpu(void) {
    if (!dp_device_available(DP_CUDA)) {
        printf("test_cuda_matches_cpu: skipped (no CUDA device)\n");
        return;
    }
    const int64_t n = 100003;
    const dp_dtype dts[] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
    for (int k = 0; k < 6; k++) {
        size_t bytes = (size_t)(n * dp_dtype_size(dts[k]));
        dp_tensor *c = new1(dts[k], n);
        dp_tensor *g = dp_tensor_empty(dts[k], DP_CUDA, 1, &n);
        CHECK_PTR(g);
        if (!g) { dp_tensor_release(c); return; }
        for (int kind = 0; kind < 3; kind++) {
            dp_rng rc = {314159, 27}, rg = rc;
            dp_tensor *xc = NULL, *xg = NULL, *yc = NULL, *yg = NULL;
            if (kind == 0) {
                CHECK_OK(dp_rand_(c, &rc));
                CHECK_OK(dp_rand_(g, &rg));
            } else if (kind == 1) {
                CHECK_OK(dp_randn_(c, &rc, 0.5, 2.0));
                CHECK_OK(dp_randn_(g, &rg, 0.5, 2.0));
            } else {
                dp_rng fill = {1, 0};
                CHECK_OK(dp_randn_(c, &fill, 0, 1));
                xc = c;
                xg = g;
                CHECK_OK(dp_ops_for(DP_CUDA)->memcpy_h2d(g->data, c->data, bytes));
                yc = dp_dropout(xc, 0.4, 1, &rc);
                yg = dp_dropout(xg, 0.4, 1, &rg);
                CHECK(yc && yg, "dropout: %s", dp_last_error());
                if (!yc || !yg) { dp_tensor_release(yc); dp_tensor_release(yg); continue; }
            }
            const dp_tensor *a = yc ? yc : c, *b = yg ? yg : g;
            void *hb = host_bytes(b);
            CHECK(memcmp(a->data, hb, bytes) == 0 && rc.counter == rg.counter,
                  "%s %s: cuda differs from cpu", dp_dtype_name(dts[k]),
                  kind == 0 ? "uniform" : kind == 1 ? "normal" : "dropout");
            free(hb);
            dp_tensor_release(yc);
            dp_tensor_release(yg);
        }
        dp_tensor_release(c);
        dp_tensor_release(g);
    }
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_known_answers();
    test_mapping();
    test_determinism();
    test_distributions();
    test_dropout();
    test_errors();
    test_cuda_matches_cpu();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_rng");
}
