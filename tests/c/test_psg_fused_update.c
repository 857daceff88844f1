/* test_psg_fused_update.c: dp_psg_finish_update_param (the end of a DP step fused with the
 * optimizer, CPU kernel noisy_update) against the composed path, dp_psg_finish then
 * dp_sgd_step_ / dp_adam_step_, on twin engines fed the same accumulators, for f32 / bf16 / f16 /
 * f64 parameters, SGD (plain; momentum with dampening and weight decay; nesterov), Adam and AdamW,
 * stochastic rounding on and off, scale 1/64 and 1, three steps each (momentum's first step, Adam's
 * step count). Bit for bit: parameters, optimizer state, .grad, the rounding counter and the noise
 * counter (which must also equal its start plus dp_psg_noise_blocks). Against a float64 loop
 * written here (normals from philox.h): the noisy sum n_i = acc_i + std z_i rounded once, .grad =
 * n_i * scale rounded once, and sum_norm / noise_norm within 1e-12 relative of sqrt(sum acc^2) and
 * sqrt(sum (n - acc)^2); the two paths' norms within 1e-12 of each other. Also: the composed path
 * inside the fused call (secure noise, std 0), frozen parameters, and errors naming the argument
 * with nothing consumed. */
#include "dp_test.h"
#include "internal.h"
#include "philox.h"
#include "fused_update_cases.h"

enum { NP = 3, B = 3, STEPS = 3 };
/* Parameter 1 is frozen; 0 is large enough for the kernel's threads (and has an odd size). */
static const int64_t SIZES[NP] = {40001, 7, 5};
static const uint64_t SEED = 0x5eed5eedull, STREAM = 1;

typedef struct {
    dp_tensor *p[NP], *s0[NP], *s1[NP];
    dp_psg *psg;
    dp_noise *noise;
    dp_rounding r;
} side;

static dp_dtype state_dt(dp_dtype dt) { return dt == DP_F64 ? DP_F64 : DP_F32; }

static size_t nbytes(const dp_tensor *t) {
    return (size_t)dp_tensor_numel(t) * (size_t)dp_dtype_size(t->dtype);
}

static int same_bytes(const dp_tensor *a, const dp_tensor *b) {
    if (!a || !b) return a == b;
    return a->dtype == b->dtype && nbytes(a) == nbytes(b) && memcmp(a->data, b->data, nbytes(a)) == 0;
}

static void side_init(side *s, dp_dtype dt, const dp_update_rule *rule, int sr, int secure) {
    memset(s, 0, sizeof *s);
    s->psg = dp_psg_new();
    for (int k = 0; k < NP; k++) {
        s->p[k] = dp_test_random(dt, 1, &SIZES[k], 10 + (uint64_t)k);
        CHECK_PTR(s->p[k]);
        dp_tensor_set_requires_grad(s->p[k], k != 1);
        s->p[k]->is_param = k != 1;
        char name[16];
        snprintf(name, sizeof name, "p%d", k);
        CHECK(dp_psg_add_param(s->psg, s->p[k], name, 0) == k, "%s", dp_last_error());
        int need0 = rule->kind == DP_UPDATE_ADAM || rule->momentum != 0;
        if (need0) s->s0[k] = dp_tensor_zeros(state_dt(dt), DP_CPU, 1, &SIZES[k]);
        if (rule->kind == DP_UPDATE_ADAM) s->s1[k] = dp_tensor_zeros(state_dt(dt), DP_CPU, 1, &SIZES[k]);
    }
    s->noise = secure ? dp_noise_new_secure(STREAM) : dp_noise_new_seeded(SEED, STREAM, 1000);
    s->r = (dp_rounding){sr, 77, 5};
}

static void side_free(side *s) {
    for (int k = 0; k < NP; k++) {
        dp_tensor_release(s->p[k]);
        dp_tensor_release(s->s0[k]);
        dp_tensor_release(s->s1[k]);
    }
    dp_psg_free(s->psg);
    dp_noise_free(s->noise);
}

/* The accumulator values of parameter k at a step: some exact zeros and one -0. */
static double acc_value(int k, int64_t i, int step) {
    if (i % 97 == 3) return 0.0;
    if (i == 11) return -0.0;
    uint64_t st = (uint64_t)(k * 1000003 + i * 7 + step * 31);
    dp_test_uniform(&st);
    return 3.0 * dp_test_uniform(&st);
}

/* A micro-batch through the engine (bias_add taps), so that the accumulators exist, then their
 * values overwritten with acc_value (rounded to the accumulator's dtype). */
static void fill_accumulators(side *s, int step) {
    dp_tensor *keep[2 * NP] = {0};
    int nk = 0;
    CHECK_OK(dp_psg_begin(s->psg, B));
    CHECK_OK(dp_psg_activate(s->psg));
    dp_tensor *loss = NULL;
    for (int k = 0; k < NP; k++) {
        if (k == 1) continue;
        int64_t xs[2] = {B, SIZES[k]};
        dp_tensor *x = dp_test_random(s->p[k]->dtype, 2, xs, 50 + (uint64_t)k);
        dp_tensor *y = dp_bias_add(x, s->p[k]);
        dp_tensor *l = y ? dp_sum(y, 0, NULL, 0) : NULL;
        CHECK_PTR(l);
        dp_tensor *sum = loss ? dp_add(loss, l) : l;
        if (loss) dp_tensor_release(l);
        dp_tensor_release(loss);
        loss = sum;
        keep[nk++] = x;
        keep[nk++] = y;
    }
    CHECK_OK(dp_backward(loss, NULL, 0));
    CHECK_OK(dp_psg_activate(NULL));
    dp_tensor_release(loss);
    for (int i = 0; i < nk; i++) dp_tensor_release(keep[i]);
    CHECK_OK(dp_psg_compute_norms(s->psg));
    dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = 1.0};
    CHECK_OK(dp_psg_clip_accumulate(s->psg, &cfg, NULL));
    for (int k = 0; k < NP; k++) {
        if (k == 1) continue;
        dp_tensor *acc = dp_psg_accumulator(s->psg, k);
        CHECK_PTR(acc);
        if (!acc) continue;
        for (int64_t i = 0; i < SIZES[k]; i++) {
            double v = acc_value(k, i, step);
            if (acc->dtype == DP_F64) ((double *)acc->data)[i] = v;
            else ((float *)acc->data)[i] = (float)v;
        }
        dp_tensor_release(acc);
    }
}

static uint64_t counter_of(const dp_noise *n) {
    uint64_t c = 0;
    CHECK_OK(dp_noise_state(n, NULL, NULL, &c));
    return c;
}

static dp_update_rule rule_at(const dp_update_rule *base, int step) {
    dp_update_rule r = *base;
    r.first_step = step == 0;
    r.step = step + 1;
    return r;
}

/* One optimizer step of the composed side on every parameter that has a .grad. */
static void composed_update(side *s, const dp_update_rule *rule) {
    for (int k = 0; k < NP; k++) {
        if (!s->p[k]->grad) continue;
        if (rule->kind == DP_UPDATE_SGD)
            CHECK_OK(dp_sgd_step_(s->p[k], s->p[k]->grad, s->s0[k], rule->lr, rule->momentum, rule->dampening,
                                  rule->weight_decay, rule->nesterov, rule->first_step, &s->r));
        else
            CHECK_OK(dp_adam_step_(s->p[k], s->p[k]->grad, s->s0[k], s->s1[k], rule->lr, rule->beta1, rule->beta2,
                                   rule->eps, rule->weight_decay, rule->decoupled, rule->step, &s->r));
    }
}

/* The float64 reference of one parameter's noise at generator position c0: the noisy sum, .grad,
 * and the two sums of squares. Returns the elements of .grad that differ. */
static int64_t reference(const dp_tensor *grad, int k, int step, uint64_t c0, double std, double scale,
                         double *sum_sq, double *noise_sq) {
    int64_t bad = 0;
    *sum_sq = *noise_sq = 0;
    for (int64_t i = 0; i < SIZES[k]; i++) {
        double z[2];
        dp_philox_normal_pair(z, SEED, STREAM, c0 + (uint64_t)(i / 2));
        double a = acc_value(k, i, step), n, g;
        if (grad->dtype == DP_F64) {
            n = fma(std, z[i % 2], a);
            g = scale == 1.0 ? n : n * scale;
        } else {
            a = (float)a;
            n = (float)fma(std, z[i % 2], a);
            /* Two floats' product is exact in double: one rounding to float, as the kernel's. */
            g = scale == 1.0 ? n : (float)(n * (double)(float)scale);
        }
        *sum_sq += a * a;
        *noise_sq += (n - a) * (n - a);
        double got = dp_load_f64(grad->data, grad->dtype, i);
        bad += !(got == g || (g == 0 && got == 0));
    }
    return bad;
}

static void check_case(dp_dtype dt, const dp_update_rule *base, const char *what, int sr, double scale) {
    side A, Bs;
    side_init(&A, dt, base, sr, 0);
    side_init(&Bs, dt, base, sr, 0);
    const double std = 0.75;
    for (int step = 0; step < STEPS; step++) {
        dp_update_rule rule = rule_at(base, step);
        fill_accumulators(&A, step);
        fill_accumulators(&Bs, step);
        uint64_t c0 = counter_of(A.noise);
        int64_t blocks = dp_psg_noise_blocks(A.psg);
        CHECK(blocks == (SIZES[0] + 1) / 2 + (SIZES[2] + 1) / 2, "noise blocks %lld", (long long)blocks);
        for (int k = 0; k < NP; k++)
            CHECK_OK(dp_psg_finish_update_param(A.psg, k, A.noise, std, scale, &rule, A.s0[k], A.s1[k], &A.r));
        CHECK_OK(dp_psg_finish(Bs.psg, Bs.noise, std, scale));
        composed_update(&Bs, &rule);
        const char *dn = dp_dtype_name(dt);
        CHECK(counter_of(A.noise) == counter_of(Bs.noise) && counter_of(A.noise) == c0 + (uint64_t)blocks,
              "%s %s step %d: noise counter %llu, composed %llu, expected %llu", dn, what, step,
              (unsigned long long)counter_of(A.noise), (unsigned long long)counter_of(Bs.noise),
              (unsigned long long)(c0 + (uint64_t)blocks));
        CHECK(A.r.counter == Bs.r.counter, "%s %s step %d: rounding counter %llu vs %llu", dn, what, step,
              (unsigned long long)A.r.counter, (unsigned long long)Bs.r.counter);
        uint64_t ck = c0;
        for (int k = 0; k < NP; k++) {
            CHECK(same_bytes(A.p[k], Bs.p[k]), "%s %s sr=%d step %d: param %d differs", dn, what, sr, step, k);
            CHECK(same_bytes(A.s0[k], Bs.s0[k]) && same_bytes(A.s1[k], Bs.s1[k]),
                  "%s %s step %d: state of param %d differs", dn, what, step, k);
            CHECK(same_bytes(A.p[k]->grad, Bs.p[k]->grad), "%s %s step %d: grad %d differs", dn, what, step, k);
            dp_tensor *acc = dp_psg_accumulator(A.psg, k);
            CHECK(acc == NULL, "param %d keeps an accumulator", k);
            dp_tensor_release(acc);
            if (k == 1) {
                CHECK(A.p[k]->grad == NULL, "frozen param got a grad");
                continue;
            }
            if (!A.p[k]->grad) continue;
            double ss, ns;
            int64_t bad = reference(A.p[k]->grad, k, step, ck, std, scale, &ss, &ns);
            CHECK(bad == 0, "%s %s step %d: %lld grad elements differ from the f64 reference", dn, what, step,
                  (long long)bad);
            ck += (uint64_t)((SIZES[k] + 1) / 2);
            dp_psg_param_info ia, ib;
            CHECK_OK(dp_psg_describe(A.psg, k, &ia));
            CHECK_OK(dp_psg_describe(Bs.psg, k, &ib));
            CHECK(fabs(ia.sum_norm - sqrt(ss)) <= 1e-12 * sqrt(ss) && fabs(ia.noise_norm - sqrt(ns)) <= 1e-12 * sqrt(ns),
                  "%s %s: norms %.17g %.17g, f64 loop %.17g %.17g", dn, what, ia.sum_norm, ia.noise_norm, sqrt(ss),
                  sqrt(ns));
            CHECK(fabs(ia.sum_norm - ib.sum_norm) <= 1e-12 * ib.sum_norm &&
                      fabs(ia.noise_norm - ib.noise_norm) <= 1e-12 * ib.noise_norm,
                  "%s %s: norms %.17g %.17g, composed %.17g %.17g", dn, what, ia.sum_norm, ia.noise_norm,
                  ib.sum_norm, ib.noise_norm);
        }
        for (int k = 0; k < NP; k++) {
            dp_tensor_set_grad(A.p[k], NULL);
            dp_tensor_set_grad(Bs.p[k], NULL);
        }
    }
    side_free(&A);
    side_free(&Bs);
}

/* The composed path inside the fused call: with secure noise (drawn on the host) each parameter
 * still ends as its noisy .grad followed by the optimizer; with std 0 it equals dp_psg_finish
 * then the step, bit for bit. */
static void check_composed_inside(void) {
    dp_update_rule rule = {.kind = DP_UPDATE_SGD, .lr = 0.1, .momentum = 0.9, .dampening = 0.1,
                           .weight_decay = 1e-3, .first_step = 1};
    side A;
    side_init(&A, DP_BF16, &rule, 1, 1);
    fill_accumulators(&A, 0);
    dp_tensor *before[NP];
    for (int k = 0; k < NP; k++) before[k] = dp_clone(A.p[k]);
    dp_rounding r0 = A.r;
    for (int k = 0; k < NP; k++)
        CHECK_OK(dp_psg_finish_update_param(A.psg, k, A.noise, 0.5, 0.25, &rule, A.s0[k], A.s1[k], &A.r));
    CHECK(counter_of(A.noise) == (uint64_t)((SIZES[0] + 1) / 2 + (SIZES[2] + 1) / 2), "secure counter %llu",
          (unsigned long long)counter_of(A.noise));
    for (int k = 0; k < NP; k += 2) {
        dp_tensor *buf = dp_tensor_zeros(DP_F32, DP_CPU, 1, &SIZES[k]);
        CHECK_PTR(A.p[k]->grad);
        if (A.p[k]->grad)
            CHECK_OK(dp_sgd_step_(before[k], A.p[k]->grad, buf, 0.1, 0.9, 0.1, 1e-3, 0, 1, &r0));
        CHECK(same_bytes(before[k], A.p[k]) && same_bytes(buf, A.s0[k]), "secure: param %d is not its grad's step", k);
        dp_tensor_release(buf);
    }
    CHECK(r0.counter == A.r.counter, "secure: rounding counter %llu vs %llu", (unsigned long long)A.r.counter,
          (unsigned long long)r0.counter);
    for (int k = 0; k < NP; k++) dp_tensor_release(before[k]);
    side_free(&A);

    side X, Y;
    side_init(&X, DP_F32, &rule, 0, 0);
    side_init(&Y, DP_F32, &rule, 0, 0);
    fill_accumulators(&X, 1);
    fill_accumulators(&Y, 1);
    for (int k = 0; k < NP; k++)
        CHECK_OK(dp_psg_finish_update_param(X.psg, k, NULL, 0.0, 0.5, &rule, X.s0[k], X.s1[k], &X.r));
    CHECK_OK(dp_psg_finish(Y.psg, NULL, 0.0, 0.5));
    composed_update(&Y, &rule);
    for (int k = 0; k < NP; k++)
        CHECK(same_bytes(X.p[k], Y.p[k]) && same_bytes(X.p[k]->grad, Y.p[k]->grad), "std 0: param %d differs", k);
    CHECK(counter_of(X.noise) == 1000, "std 0 drew noise");
    side_free(&X);
    side_free(&Y);
}

static void expect_error(int rc, int want, const char *needle, const char *what) {
    CHECK(rc == want, "%s: rc %d, expected %d (%s)", what, rc, want, dp_last_error());
    CHECK(strstr(dp_last_error(), needle) != NULL, "%s: message '%s' does not name '%s'", what, dp_last_error(),
          needle);
}

static void check_errors(void) {
    dp_update_rule sgd = {.kind = DP_UPDATE_SGD, .lr = 0.1, .momentum = 0.9, .first_step = 1};
    dp_update_rule adam = {.kind = DP_UPDATE_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .step = 1};
    side A;
    side_init(&A, DP_F32, &sgd, 0, 0);
    fill_accumulators(&A, 0);
    dp_tensor *acc0 = dp_psg_accumulator(A.psg, 0), *copy = dp_clone(acc0), *p0 = dp_clone(A.p[0]);
    int64_t wrong = 3;
    dp_tensor *small = dp_tensor_zeros(DP_F32, DP_CPU, 1, &wrong);
    expect_error(dp_psg_finish_update_param(A.psg, 3, A.noise, 1, 1, &sgd, A.s0[0], NULL, &A.r), DP_EINDEX, "index 3",
                 "index past the end");
    expect_error(dp_psg_finish_update_param(A.psg, -1, A.noise, 1, 1, &sgd, A.s0[0], NULL, &A.r), DP_EINDEX,
                 "index -1", "negative index");
    expect_error(dp_psg_finish_update_param(NULL, 0, A.noise, 1, 1, &sgd, A.s0[0], NULL, &A.r), DP_EARG, "engine",
                 "NULL engine");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, -1, 1, &sgd, A.s0[0], NULL, &A.r), DP_EARG, "std",
                 "negative std");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, NAN, &sgd, A.s0[0], NULL, &A.r), DP_EARG, "scale",
                 "NaN scale");
    expect_error(dp_psg_finish_update_param(A.psg, 0, NULL, 1, 1, &sgd, A.s0[0], NULL, &A.r), DP_EARG, "generator",
                 "no generator");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &sgd, small, NULL, &A.r), DP_ESHAPE,
                 "state0 (momentum buffer)", "wrong state shape");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &sgd, NULL, NULL, &A.r), DP_EARG,
                 "state0 (momentum buffer)", "missing momentum buffer");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &adam, A.s0[0], NULL, &A.r), DP_EARG,
                 "state1 (v)", "missing v");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, NULL, A.s0[0], NULL, &A.r), DP_EARG, "rule",
                 "NULL rule");
    dp_update_rule bad = sgd;
    bad.kind = 3;
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &bad, A.s0[0], NULL, &A.r), DP_EARG,
                 "rule->kind", "unknown kind");
    bad = sgd;
    bad.momentum = 1.5;
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &bad, A.s0[0], NULL, &A.r), DP_EARG,
                 "momentum", "momentum 1.5");
    bad = adam;
    bad.step = 0;
    dp_tensor *m = dp_tensor_zeros(DP_F32, DP_CPU, 1, &SIZES[0]), *v = dp_tensor_zeros(DP_F32, DP_CPU, 1, &SIZES[0]);
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &bad, m, v, &A.r), DP_EARG, "step", "step 0");
    expect_error(dp_psg_finish_update_param(A.psg, 0, A.noise, 1, 1, &adam, m, m, &A.r), DP_EARG, "shares memory",
                 "m and v the same");
    CHECK(dp_psg_noise_blocks(NULL) < 0, "noise_blocks of NULL");
    /* Nothing was consumed or changed by the failed calls. */
    dp_tensor *acc_after = dp_psg_accumulator(A.psg, 0);
    CHECK(counter_of(A.noise) == 1000 && A.r.counter == 5, "a failed call moved a counter");
    CHECK(same_bytes(acc_after, copy) && same_bytes(A.p[0], p0) && A.p[0]->grad == NULL,
          "a failed call changed the accumulator, param or grad");
    dp_tensor *objs[] = {acc0, copy, p0, small, m, v, acc_after};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
    side_free(&A);
}

int main(void) {
    int64_t live = dp_live_tensors();
    const dp_dtype dts[] = {DP_F32, DP_BF16, DP_F16, DP_F64};
    for (int d = 0; d < 4; d++)
        for (int r = 0; r < N_FUSED_UPDATE_CASES; r++)
            for (int sr = 0; sr < 2; sr++) {
                const fused_update_case *u = &fused_update_cases[r];
                check_case(dts[d], &u->rule, u->name, sr, u->scale);
            }
    check_composed_inside();
    check_errors();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_psg_fused_update");
}
