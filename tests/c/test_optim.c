/* test_optim.c: dp_sgd_step_ and dp_adam_step_ (SGD plain, momentum with dampening, nesterov,
 * weight decay; Adam; AdamW) over several steps against reference loops written here from the
 * formulas in dp.h: f64 arithmetic for f32/f64 params, f32 arithmetic rounded to bf16 (RNE) each
 * step for bf16 params. Also: large tensors split between threads give the same bits with 1 and 2
 * threads, momentum 0 leaves a buffer alone, and every bad argument fails naming the function,
 * the argument and what was expected, leaving param untouched. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"

typedef struct {
    const char *name;
    int adam;                       /* 0: SGD, 1: Adam (decoupled: AdamW) */
    double lr, momentum, dampening, weight_decay;
    int nesterov;
    double beta1, beta2, eps;
    int decoupled;
} config;

static const config SGD_CASES[] = {
    { "sgd plain", 0, 0.1, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "sgd weight decay, no momentum", 0, 0.05, 0, 0, 0.1, 0, 0, 0, 0, 0 },
    { "sgd momentum + dampening", 0, 0.1, 0.9, 0.25, 0, 0, 0, 0, 0, 0 },
    { "sgd nesterov", 0, 0.1, 0.9, 0, 0, 1, 0, 0, 0, 0 },
    { "sgd momentum + weight decay", 0, 0.2, 0.5, 0, 0.01, 0, 0, 0, 0, 0 },
};
static const config ADAM_CASES[] = {
    { "adam", 1, 0.01, 0, 0, 0, 0, 0.9, 0.999, 1e-8, 0 },
    { "adam l2", 1, 0.01, 0, 0, 0.1, 0, 0.8, 0.99, 1e-6, 0 },
    { "adamw", 1, 0.02, 0, 0, 0.1, 0, 0.9, 0.999, 1e-8, 1 },
};

/* ---------------------------------------------------------------- references */

/* One step (t from 1) in f64 on arrays: p, and state s0 (buf or m), s1 (v). */
static void ref_step_f64(const config *c, double *p, const double *g, double *s0, double *s1,
                         int64_t n, int t) {
    for (int64_t i = 0; i < n; i++) {
        if (!c->adam) {
            double gi = g[i] + c->weight_decay * p[i];
            double step = gi;
            if (c->momentum != 0) {
                s0[i] = t == 1 ? gi : c->momentum * s0[i] + (1 - c->dampening) * gi;
                step = c->nesterov ? gi + c->momentum * s0[i] : s0[i];
            }
            p[i] -= c->lr * step;
        } else {
            double gi = g[i] + (c->decoupled ? 0 : c->weight_decay * p[i]);
            if (c->decoupled) p[i] *= 1 - c->lr * c->weight_decay;
            s0[i] = c->beta1 * s0[i] + (1 - c->beta1) * gi;
            s1[i] = c->beta2 * s1[i] + (1 - c->beta2) * gi * gi;
            double mhat = s0[i] / (1 - pow(c->beta1, t)), vhat = s1[i] / (1 - pow(c->beta2, t));
            p[i] -= c->lr * mhat / (sqrt(vhat) + c->eps);
        }
    }
}

/* The same step in f32 arithmetic (constants rounded to f32 once), param rounded to bf16. */
static void ref_step_bf16(const config *c, float *p, const float *g, float *s0, float *s1,
                          int64_t n, int t) {
    float lr = (float)c->lr, wd = (float)c->weight_decay, mom = (float)c->momentum;
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i];
        if (!c->adam) {
            float gi = wd != 0 ? g[i] + wd * pi : g[i];
            float step = gi;
            if (mom != 0) {
                s0[i] = t == 1 ? gi : mom * s0[i] + (float)(1 - c->dampening) * gi;
                step = c->nesterov ? gi + mom * s0[i] : s0[i];
            }
            pi = pi - lr * step;
        } else {
            float gi = (!c->decoupled && wd != 0) ? g[i] + wd * pi : g[i];
            if (c->decoupled) pi *= (float)(1 - c->lr * c->weight_decay);
            s0[i] = (float)c->beta1 * s0[i] + (float)(1 - c->beta1) * gi;
            s1[i] = (float)c->beta2 * s1[i] + (float)(1 - c->beta2) * (gi * gi);
            float mhat = s0[i] / (float)(1 - pow(c->beta1, t));
            float vhat = s1[i] / (float)(1 - pow(c->beta2, t));
            pi = pi - lr * mhat / (sqrtf(vhat) + (float)c->eps);
        }
        p[i] = dp_bf16_to_f32(dp_f64_to_bf16(pi));
    }
}

/* ---------------------------------------------------------------- helpers */

static dp_tensor *random_vec(dp_dtype dtype, int64_t n, uint64_t seed) {
    return dp_test_random(dtype, 1, &n, seed);
}

static dp_tensor *zeros_vec(dp_dtype dtype, int64_t n) { return dp_tensor_zeros(dtype, DP_CPU, 1, &n); }

static double *values_of(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) { fprintf(stderr, "out of memory\n"); exit(2); }
    CHECK_OK(dp_tensor_to_f64(t, v));
    return v;
}

static int call_step(const config *c, dp_tensor *p, const dp_tensor *g, dp_tensor *s0, dp_tensor *s1,
                     int t) {
    if (c->adam)
        return dp_adam_step_(p, g, s0, s1, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay,
                             c->decoupled, t, NULL);
    return dp_sgd_step_(p, g, c->momentum != 0 ? s0 : NULL, c->lr, c->momentum, c->dampening,
                        c->weight_decay, c->nesterov, t == 1, NULL);
}

/* Largest |a - b| / (1 + |b|) over n values. */
static double max_rel_err(const double *a, const double *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]) / (1 + fabs(b[i]));
        if (!(e <= worst)) worst = e;   /* NaN counts as the worst */
    }
    return worst;
}

/* ---------------------------------------------------------------- f32 / f64 params */

/* steps updates of an n-element param of pdtype with grads of gdtype, compared with the f64
 * reference after each step (param and state). */
static void run_against_f64(const config *c, dp_dtype pdtype, dp_dtype gdtype, int64_t n, int steps,
                            double tol) {
    dp_dtype sdtype = pdtype == DP_F64 ? DP_F64 : DP_F32;
    dp_tensor *p = random_vec(pdtype, n, 11), *s0 = zeros_vec(sdtype, n), *s1 = zeros_vec(sdtype, n);
    double *rp = values_of(p), *r0 = calloc((size_t)n, sizeof(double)), *r1 = calloc((size_t)n, sizeof(double));
    double worst = 0;
    for (int t = 1; t <= steps; t++) {
        dp_tensor *g = random_vec(gdtype, n, 100 + (uint64_t)t);
        double *gv = values_of(g);   /* the reference sees exactly the grad the kernel sees */
        CHECK_OK(call_step(c, p, g, s0, s1, t));
        ref_step_f64(c, rp, gv, r0, r1, n, t);
        double *kp = values_of(p), *k0 = values_of(s0), *k1 = values_of(s1);
        double e = max_rel_err(kp, rp, n);
        if (c->momentum != 0 || c->adam) e = fmax(e, max_rel_err(k0, r0, n));
        if (c->adam) e = fmax(e, max_rel_err(k1, r1, n));
        worst = fmax(worst, e);
        free(kp); free(k0); free(k1); free(gv);
        dp_tensor_release(g);
    }
    CHECK(worst <= tol, "%s, %s param, %s grad, n %lld: max relative error %g > %g", c->name,
          dp_dtype_name(pdtype), dp_dtype_name(gdtype), (long long)n, worst, tol);
    free(rp); free(r0); free(r1);
    dp_tensor_release(p); dp_tensor_release(s0); dp_tensor_release(s1);
}

static void test_f32_f64_params(void) {
    const config *all[8];
    int k = 0;
    for (size_t i = 0; i < sizeof SGD_CASES / sizeof *SGD_CASES; i++) all[k++] = &SGD_CASES[i];
    for (size_t i = 0; i < sizeof ADAM_CASES / sizeof *ADAM_CASES; i++) all[k++] = &ADAM_CASES[i];
    for (int i = 0; i < k; i++) {
        run_against_f64(all[i], DP_F64, DP_F64, 37, 5, 1e-13);
        run_against_f64(all[i], DP_F64, DP_F32, 37, 5, 1e-13);
        run_against_f64(all[i], DP_F32, DP_F32, 37, 5, 3e-6);
        run_against_f64(all[i], DP_F32, DP_F64, 37, 5, 3e-6);
    }
    /* more than one block and above the threading threshold, with a ragged last block */
    run_against_f64(&SGD_CASES[3], DP_F32, DP_F32, 70001, 3, 3e-6);
    run_against_f64(&ADAM_CASES[2], DP_F32, DP_F32, 70001, 3, 3e-6);
}

/* The reference really moves: a kernel that did nothing fails the comparison. */
static void test_reference_moves(void) {
    for (size_t i = 0; i < sizeof ADAM_CASES / sizeof *ADAM_CASES; i++) {
        int64_t n = 37;
        dp_tensor *p = random_vec(DP_F64, n, 11), *g = random_vec(DP_F64, n, 101);
        double *before = values_of(p), *rp = values_of(p), *gv = values_of(g);
        double *r0 = calloc((size_t)n, sizeof(double)), *r1 = calloc((size_t)n, sizeof(double));
        ref_step_f64(&ADAM_CASES[i], rp, gv, r0, r1, n, 1);
        /* Adam's first step moves every element by about lr (m/sqrt(v) = sign(g)) */
        double moved = max_rel_err(rp, before, n);
        CHECK(moved > ADAM_CASES[i].lr / 4, "%s reference moved only %g", ADAM_CASES[i].name, moved);
        free(before); free(rp); free(gv); free(r0); free(r1);
        dp_tensor_release(p); dp_tensor_release(g);
    }
}

/* ---------------------------------------------------------------- bf16 params */

static int32_t bf16_order(uint16_t h) {   /* bf16 bits -> integer order (ulps apart = difference) */
    return (h & 0x8000) ? -(int32_t)(h & 0x7FFF) : (int32_t)h;
}

static void run_bf16(const config *c, int steps) {
    int64_t n = 300;
    dp_tensor *p = random_vec(DP_BF16, n, 21), *s0 = zeros_vec(DP_F32, n), *s1 = zeros_vec(DP_F32, n);
    double *init = values_of(p);
    float *rp = malloc(sizeof(float) * n), *r0 = calloc((size_t)n, sizeof(float)),
          *r1 = calloc((size_t)n, sizeof(float)), *gf = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) rp[i] = (float)init[i];
    int64_t exact = 0, off_by_one = 0, worse = 0, changed = 0;
    for (int t = 1; t <= steps; t++) {
        dp_tensor *g = random_vec(DP_F32, n, 200 + (uint64_t)t);
        CHECK_OK(dp_tensor_to_raw(g, gf));
        CHECK_OK(call_step(c, p, g, s0, s1, t));
        ref_step_bf16(c, rp, gf, r0, r1, n, t);
        const uint16_t *kp = p->data;
        for (int64_t i = 0; i < n; i++) {
            int32_t d = abs(bf16_order(kp[i]) - bf16_order(dp_f64_to_bf16(rp[i])));
            if (d == 0) exact++;
            else if (d == 1) off_by_one++;
            else worse++;
        }
        dp_tensor_release(g);
    }
    double *final = values_of(p);
    for (int64_t i = 0; i < n; i++) changed += final[i] != init[i];
    /* One rounding to bf16 per step: the two f32 computations may differ in the last f32 bits,
     * which shows only when they straddle a bf16 rounding boundary (rare), and then by 1 ulp. */
    CHECK(worse == 0 && exact >= (exact + off_by_one) * 99 / 100,
          "%s bf16: %lld exact, %lld off by 1 ulp, %lld worse", c->name, (long long)exact,
          (long long)off_by_one, (long long)worse);
    CHECK(changed > n * 9 / 10, "%s bf16: only %lld of %lld params changed", c->name,
          (long long)changed, (long long)n);
    free(init); free(final); free(rp); free(r0); free(r1); free(gf);
    dp_tensor_release(p); dp_tensor_release(s0); dp_tensor_release(s1);
}

static void test_bf16_params(void) {
    run_bf16(&SGD_CASES[0], 4);
    run_bf16(&SGD_CASES[3], 4);
    run_bf16(&SGD_CASES[4], 4);
    for (size_t i = 0; i < sizeof ADAM_CASES / sizeof *ADAM_CASES; i++) run_bf16(&ADAM_CASES[i], 4);
}

/* ---------------------------------------------------------------- threads, edge cases */

static void test_threads_same_bits(void) {
    int64_t n = 100003;
    int32_t saved = dp_get_num_threads();
    dp_tensor *p[2], *m[2], *v[2];
    dp_tensor *g = random_vec(DP_F32, n, 5);
    for (int k = 0; k < 2; k++) {
        dp_set_num_threads(k + 1);
        p[k] = random_vec(DP_BF16, n, 6);
        m[k] = zeros_vec(DP_F32, n);
        v[k] = zeros_vec(DP_F32, n);
        for (int t = 1; t <= 2; t++) CHECK_OK(call_step(&ADAM_CASES[2], p[k], g, m[k], v[k], t));
    }
    dp_set_num_threads(saved);
    CHECK(memcmp(p[0]->data, p[1]->data, (size_t)n * 2) == 0 &&
          memcmp(m[0]->data, m[1]->data, (size_t)n * 4) == 0 &&
          memcmp(v[0]->data, v[1]->data, (size_t)n * 4) == 0, "1 and 2 threads give different bits");
    for (int k = 0; k < 2; k++) { dp_tensor_release(p[k]); dp_tensor_release(m[k]); dp_tensor_release(v[k]); }
    dp_tensor_release(g);
}

static void test_edges(void) {
    /* momentum 0: a buffer passed anyway is left alone */
    dp_tensor *p = random_vec(DP_F32, 8, 1), *g = random_vec(DP_F32, 8, 2);
    dp_tensor *buf = dp_tensor_full(DP_F32, DP_CPU, 1, (int64_t[]){8}, 7.0);
    double *pv = values_of(p), *gv = values_of(g);
    CHECK_OK(dp_sgd_step_(p, g, buf, 0.5, 0, 0, 0, 0, 1, NULL));
    double *after = values_of(p), *bv = values_of(buf);
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= bv[i] == 7.0 && fabs(after[i] - (pv[i] - 0.5 * gv[i])) < 1e-6;
    CHECK(ok, "momentum 0 with a buffer: plain step, buffer untouched");
    free(pv); free(gv); free(after); free(bv);

    /* wd 0 adds nothing, even to an infinite param (0 * inf would be NaN) */
    dp_tensor *inf = dp_tensor_full(DP_F32, DP_CPU, 1, (int64_t[]){8}, INFINITY);
    CHECK_OK(dp_sgd_step_(inf, g, NULL, 0.1, 0, 0, 0, 0, 1, NULL));
    CHECK(isinf(((float *)inf->data)[0]), "inf param stays inf with wd 0");

    /* empty tensors, lr 0 (a no-op update), a 0-d param */
    dp_tensor *e = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){0});
    dp_tensor *em = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){0});
    dp_tensor *ev = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){0});
    CHECK_OK(dp_adam_step_(e, e, em, ev, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL));
    dp_tensor *s = dp_tensor_scalar(DP_F64, DP_CPU, 2.0), *sg = dp_tensor_scalar(DP_F64, DP_CPU, 4.0);
    CHECK_OK(dp_sgd_step_(s, sg, NULL, 0.25, 0, 0, 0, 0, 1, NULL));
    CHECK(((double *)s->data)[0] == 1.0, "0-d param: 2 - 0.25 * 4 = %g", ((double *)s->data)[0]);
    CHECK_OK(dp_sgd_step_(s, sg, NULL, 0, 0, 0, 0, 0, 1, NULL));
    CHECK(((double *)s->data)[0] == 1.0, "lr 0 leaves param alone");
    dp_tensor *sm = dp_tensor_scalar(DP_F64, DP_CPU, 0), *sv = dp_tensor_scalar(DP_F64, DP_CPU, 0);
    /* Adam's first step is lr * sign(g) (up to eps) */
    CHECK_OK(dp_adam_step_(s, sg, sm, sv, 0.1, 0.9, 0.999, 1e-12, 0, 0, 1, NULL));
    CHECK_CLOSE(((double *)s->data)[0], 0.9, 1e-10);
    dp_tensor *f16 = random_vec(DP_F16, 8, 9);
    double *f16v = values_of(f16);
    CHECK_OK(dp_sgd_step_(f16, g, NULL, 0.5, 0, 0, 0, 0, 1, NULL));
    double *f16a = values_of(f16);
    ok = 1;
    for (int i = 0; i < 8; i++) {
        float want = (float)f16v[i] - 0.5f * ((float *)g->data)[i];
        ok &= f16a[i] == dp_f16_to_f32(dp_f64_to_f16(want));
    }
    CHECK(ok, "f16 param: f32 update rounded once");
    free(f16v); free(f16a);
    dp_tensor_release(f16); dp_tensor_release(sm); dp_tensor_release(sv);
    dp_tensor_release(s); dp_tensor_release(sg);
    dp_tensor_release(e); dp_tensor_release(em); dp_tensor_release(ev);
    dp_tensor_release(inf); dp_tensor_release(p); dp_tensor_release(g); dp_tensor_release(buf);
}

/* ---------------------------------------------------------------- bad arguments */

#define EXPECT_FAIL(expr, code, text)                                                          \
    do {                                                                                       \
        int rc_ = (expr);                                                                      \
        CHECK(rc_ == (code) && strstr(dp_last_error(), (text)) != NULL,                        \
              "%s: rc %d, message \"%s\", expected %d with \"%s\"", #expr, rc_, dp_last_error(), \
              (code), (text));                                                                 \
    } while (0)

static void test_bad_arguments(void) {
    int64_t n = 6, n2[2] = {2, 3};
    dp_tensor *p = random_vec(DP_F32, n, 1), *g = random_vec(DP_F32, n, 2);
    dp_tensor *b = zeros_vec(DP_F32, n), *m = zeros_vec(DP_F32, n), *v = zeros_vec(DP_F32, n);
    dp_tensor *p64 = random_vec(DP_F64, n, 3), *b64 = zeros_vec(DP_F64, n);
    dp_tensor *i32 = zeros_vec(DP_I32, n), *gbf = random_vec(DP_BF16, n, 4), *g5 = random_vec(DP_F32, 5, 4);
    dp_tensor *m2d = dp_test_random(DP_F32, 2, n2, 5);
    dp_tensor *mt = dp_transpose(m2d, 0, 1);   /* (3, 2), not contiguous */
    dp_tensor *g2d = dp_test_random(DP_F32, 2, (int64_t[]){3, 2}, 6);
    double *before = values_of(p);

    EXPECT_FAIL(dp_sgd_step_(NULL, g, b, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "dp_sgd_step_: param must not be NULL");
    EXPECT_FAIL(dp_sgd_step_(i32, g, b, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EDTYPE, "dp_sgd_step_: param must be a float tensor, got [6] i32");
    EXPECT_FAIL(dp_sgd_step_(mt, g2d, NULL, 0.1, 0, 0, 0, 0, 1, NULL), DP_EARG, "param [3,2] f32 cpu must be contiguous");
    EXPECT_FAIL(dp_sgd_step_(p, NULL, b, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "dp_sgd_step_: grad must not be NULL");
    EXPECT_FAIL(dp_sgd_step_(p, gbf, b, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EDTYPE, "dp_sgd_step_: grad must be f32 or f64, got [6] bf16");
    EXPECT_FAIL(dp_sgd_step_(p, g5, b, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_ESHAPE, "dp_sgd_step_: grad must have param's shape, got [5]");
    EXPECT_FAIL(dp_sgd_step_(g2d, mt, NULL, 0.1, 0, 0, 0, 0, 1, NULL), DP_EARG, "grad [3,2] f32 cpu must be contiguous");
    EXPECT_FAIL(dp_sgd_step_(p, g, b64, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EDTYPE, "momentum_buf must be f32 (the state dtype of non-f64 params)");
    EXPECT_FAIL(dp_sgd_step_(p64, g, b, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EDTYPE, "momentum_buf must be f64");
    EXPECT_FAIL(dp_sgd_step_(p, g, p, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "momentum_buf shares memory with param");
    EXPECT_FAIL(dp_sgd_step_(p, g, NULL, 0.1, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "momentum_buf may be NULL only when momentum is 0");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, -0.1, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "dp_sgd_step_: lr must be finite and >= 0, got -0.1");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, NAN, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "lr must be finite and >= 0, got nan");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, INFINITY, 0.9, 0, 0, 0, 1, NULL), DP_EARG, "lr must be finite");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, 1.0, 0, 0, 0, 1, NULL), DP_EARG, "momentum must be in [0, 1), got 1");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, -0.5, 0, 0, 0, 1, NULL), DP_EARG, "momentum must be in [0, 1)");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, 0.9, 1.5, 0, 0, 1, NULL), DP_EARG, "dampening must be in [0, 1], got 1.5");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, 0.9, 0, -1e-3, 0, 1, NULL), DP_EARG, "weight_decay must be finite and >= 0, got -0.001");
    EXPECT_FAIL(dp_sgd_step_(p, g, NULL, 0.1, 0, 0, 0, 1, 1, NULL), DP_EARG, "nesterov needs momentum > 0 and dampening 0, got momentum 0");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, 0.9, 0.5, 0, 1, 1, NULL), DP_EARG, "nesterov needs momentum > 0 and dampening 0, got momentum 0.9, dampening 0.5");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, 0.9, 0, 0, 2, 1, NULL), DP_EARG, "nesterov must be 0 or 1, got 2");
    EXPECT_FAIL(dp_sgd_step_(p, g, b, 0.1, 0.9, 0, 0, 0, -1, NULL), DP_EARG, "first_step must be 0 or 1, got -1");

    EXPECT_FAIL(dp_adam_step_(p, g, NULL, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_EARG, "dp_adam_step_: m must not be NULL");
    EXPECT_FAIL(dp_adam_step_(p, g, m, b64, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_EDTYPE, "dp_adam_step_: v must be f32");
    EXPECT_FAIL(dp_adam_step_(p64, g, b64, m, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_EDTYPE, "v must be f64");
    EXPECT_FAIL(dp_adam_step_(p, g, m, g5, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_ESHAPE, "v must have param's shape, got [5]");
    EXPECT_FAIL(dp_adam_step_(p, g, m, m, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_EARG, "m shares memory with v");
    EXPECT_FAIL(dp_adam_step_(p, g, g, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_EARG, "m shares memory with grad");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, -1, 0.9, 0.999, 1e-8, 0, 0, 1, NULL), DP_EARG, "dp_adam_step_: lr must be finite and >= 0");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, 0.1, 1.0, 0.999, 1e-8, 0, 0, 1, NULL), DP_EARG, "beta1 must be in [0, 1), got 1");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, 0.1, 0.9, -0.1, 1e-8, 0, 0, 1, NULL), DP_EARG, "beta2 must be in [0, 1), got -0.1");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, 0.1, 0.9, 0.999, 0, 0, 0, 1, NULL), DP_EARG, "eps must be finite and > 0, got 0");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, NAN, 0, 1, NULL), DP_EARG, "weight_decay must be finite and >= 0, got nan");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 3, 1, NULL), DP_EARG, "decoupled must be 0 or 1, got 3");
    EXPECT_FAIL(dp_adam_step_(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, 0, 0, NULL), DP_EARG, "step must be >= 1 (it counts from 1), got 0");

    double *after = values_of(p);
    CHECK(memcmp(before, after, sizeof(double) * (size_t)n) == 0, "failed calls changed param");
    free(before); free(after);
    dp_tensor *all[] = { p, g, b, m, v, p64, b64, i32, gbf, g5, m2d, mt, g2d };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dp_tensor_release(all[i]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_f32_f64_params();
    test_reference_moves();
    test_bf16_params();
    test_threads_same_bits();
    test_edges();
    test_bad_arguments();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_optim");
}
