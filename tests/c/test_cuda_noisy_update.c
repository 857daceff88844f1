/* test_cuda_noisy_update.c: the CUDA noisy_update kernel (kernels/cuda/noisy_update.cu), three steps
 * per case over f32 / bf16 / f16 / fp8 e4m3 / f64 parameters, SGD (plain; momentum with dampening
 * and weight decay; nesterov), Adam and AdamW, stochastic rounding on and off, scale 1/64 and 1:
 *  - against the composed CUDA ops (noise_add_philox, unary AFFINE, sgd_step / adam_step): every
 *    byte of the accumulator (.grad), parameter and state equal, the contract of
 *    dp_psg_finish_update_param (the fused kernel spells out the multiply-adds nvcc contracts in
 *    optim.cu and unary.cu);
 *  - against the CPU kernel (itself bit-identical to the CPU's composed ops, test_psg_fused_update):
 *    the accumulator bit for bit (the noise and the scale round the same on both), the two sums
 *    within 1e-12 relative (f64 sums in another order), parameters and state within the tolerances
 *    of test_cuda_dpsgd's optimizer checks (gcc contracts the first product of a * b + c * d, nvcc
 *    the second: f32 1e-6 relative, f64 1e-13, bf16 / f16 / fp8 about one rounding step);
 *  - through the core on CUDA tensors: dp_psg_finish_update_param equals dp_psg_finish then
 *    dp_sgd_step_ / dp_adam_step_ bit for bit, noise counter included.
 * Without a CUDA device it prints SKIP and exits with DP_TEST_SKIP. */
#include "dp_test.h"
#include "internal.h"
#include "cuda_test.h"
#include "fused_update_cases.h"

enum { STEPS = 3 };
static const int64_t N = 70001;   /* odd, not a multiple of 4, many thread-blocks */

static dp_tensor *zeros_on(dp_dtype dt, dp_device dev, int64_t n) {
    dp_tensor *t = dp_tensor_zeros(dt, dev, 1, &n);
    CHECK(t != NULL, "zeros: %s", dp_last_error());
    return t;
}

typedef struct {
    dp_tensor *p, *s0, *s1, *acc, *sums;
} slot;

static slot slot_new(const dp_tensor *p_host, dp_device dev, int adam, int buf) {
    dp_dtype st = p_host->dtype == DP_F64 ? DP_F64 : DP_F32;
    slot s = {dev == DP_CUDA ? to_cuda(p_host) : dp_clone((dp_tensor *)p_host), NULL, NULL, NULL, NULL};
    if (adam || buf) s.s0 = zeros_on(st, dev, N);
    if (adam) s.s1 = zeros_on(st, dev, N);
    int64_t two = 2;
    s.sums = dp_tensor_zeros(DP_F64, dev, 1, &two);
    return s;
}

static void slot_free(slot *s) {
    dp_tensor *objs[] = {s->p, s->s0, s->s1, s->acc, s->sums};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
}

static void check_kernel(dp_dtype pt, const dp_update_rule *base, const char *what, int sr, double scale) {
    const dp_ops *cpu = dp_ops_for(DP_CPU);
    int adam = base->kind == DP_UPDATE_ADAM, buf = !adam && base->momentum != 0;
    dp_dtype at = pt == DP_F64 ? DP_F64 : DP_F32;
    dp_tensor *p0 = rnd(pt, 1, &N, 3 + (uint64_t)pt, 1.0);
    slot c = slot_new(p0, DP_CPU, adam, buf), f = slot_new(p0, DP_CUDA, adam, buf), k = slot_new(p0, DP_CUDA, adam, buf);
    dp_rounding r = {sr, 0xC0FFEEull, 17};
    const double std = 0.6;
    const uint64_t seed = 0xABCDEF12345ull, stream = 1;
    const char *dn = dp_dtype_name(pt);
    for (int step = 0; step < STEPS; step++) {
        dp_update_rule rule = *base;
        rule.first_step = step == 0;
        rule.step = step + 1;
        uint64_t counter = 1000 + (uint64_t)step * (uint64_t)((N + 1) / 2);
        dp_tensor *a = rnd(at, 1, &N, 40 + (uint64_t)step, 2.0);
        dp_tensor_release(c.acc);
        dp_tensor_release(f.acc);
        dp_tensor_release(k.acc);
        c.acc = dp_clone(a);
        f.acc = to_cuda(a);
        k.acc = to_cuda(a);
        dp_tensor_release(a);
        CHECK_OK(cpu->noisy_update(c.p, c.acc, c.s0, c.s1, c.sums, std, seed, stream, counter, scale, &rule, &r));
        CHECK_OK(cuda_ops->noisy_update(f.p, f.acc, f.s0, f.s1, f.sums, std, seed, stream, counter, scale, &rule, &r));
        CHECK_OK(cuda_ops->noise_add_philox(k.acc, std, seed, stream, counter));
        if (scale != 1.0) CHECK_OK(cuda_ops->unary(k.acc, k.acc, DP_UN_AFFINE, scale, 0.0));
        if (adam)
            CHECK_OK(cuda_ops->adam_step(k.p, k.acc, k.s0, k.s1, rule.lr, rule.beta1, rule.beta2, rule.eps,
                                         rule.weight_decay, rule.decoupled, rule.step, &r));
        else
            CHECK_OK(cuda_ops->sgd_step(k.p, k.acc, k.s0, rule.lr, rule.momentum, rule.dampening, rule.weight_decay,
                                        rule.nesterov, rule.first_step, &r));
        CHECK(same_bytes(f.acc, k.acc) && same_bytes(f.acc, c.acc), "%s %s step %d: the noisy gradient differs "
              "(composed cuda %d, cpu %d)", dn, what, step, same_bytes(f.acc, k.acc), same_bytes(f.acc, c.acc));
        CHECK(same_bytes(f.p, k.p) && same_bytes(f.s0, k.s0) && same_bytes(f.s1, k.s1),
              "%s %s sr=%d step %d: fused and composed cuda differ (param %d, state %d %d)", dn, what, sr, step,
              same_bytes(f.p, k.p), same_bytes(f.s0, k.s0), same_bytes(f.s1, k.s1));
        dp_tensor *hs = to_cpu(f.sums);
        if (hs) {
            const double *g = hs->data, *w = c.sums->data;
            CHECK(fabs(g[0] - w[0]) <= 1e-12 * w[0] && fabs(g[1] - w[1]) <= 1e-12 * w[1],
                  "%s %s: sums %.17g %.17g, cpu %.17g %.17g", dn, what, g[0], g[1], w[0], w[1]);
        }
        dp_tensor_release(hs);
        /* Advance as the core does after each update. */
        if (sr && pt != DP_F32 && pt != DP_F64) r.counter += (uint64_t)((N + 3) / 4);
    }
    double ep = worst_rel_diff(f.p, c.p, pt == DP_FP8_E4M3 ? 0x1p-6 : 1e-3);
    double e0 = f.s0 ? worst_rel_diff(f.s0, c.s0, 1e-3) : 0, e1 = f.s1 ? worst_rel_diff(f.s1, c.s1, 1e-6) : 0;
    double tol = step_tol(pt), stol = pt == at ? step_tol(at) * 10 : 1e-3;
    if (sr) tol *= 2;   /* a value one ulp apart may round stochastically to the other neighbour */
    CHECK(ep <= tol && e0 <= stol && e1 <= stol, "%s %s sr=%d vs cpu: param %g, state %g %g", dn, what, sr, ep, e0,
          e1);
    slot_free(&c);
    slot_free(&f);
    slot_free(&k);
    dp_tensor_release(p0);
}

/* The core's fused path on CUDA tensors against its composed one, on twin one-parameter engines
 * whose accumulators are written directly after a micro-batch of bias_add taps. */
static void check_core(int adam) {
    int64_t n = 5001, xs[2] = {3, n};
    dp_update_rule rule = adam ? (dp_update_rule){.kind = DP_UPDATE_ADAM, .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999,
                                                  .eps = 1e-8, .weight_decay = 0.01, .decoupled = 1, .step = 1}
                               : (dp_update_rule){.kind = DP_UPDATE_SGD, .lr = 0.1, .momentum = 0.9, .first_step = 1};
    dp_tensor *host = rnd(DP_F32, 1, &n, 8, 1.0), *acc_host = rnd(DP_F32, 1, &n, 9, 2.0);
    dp_tensor *p[2], *s0[2], *s1[2] = {NULL, NULL};
    dp_psg *psg[2];
    dp_noise *noise[2];
    for (int side = 0; side < 2; side++) {
        p[side] = to_cuda(host);
        dp_tensor_set_requires_grad(p[side], 1);
        p[side]->is_param = 1;
        s0[side] = zeros_on(DP_F32, DP_CUDA, n);
        if (adam) s1[side] = zeros_on(DP_F32, DP_CUDA, n);
        psg[side] = dp_psg_new();
        CHECK(dp_psg_add_param(psg[side], p[side], "b", 0) == 0, "%s", dp_last_error());
        noise[side] = dp_noise_new_seeded(5, 1, 77);
        dp_tensor *xh = rnd(DP_F32, 2, xs, 10, 1.0), *x = to_cuda(xh);
        CHECK_OK(dp_psg_begin(psg[side], 3));
        CHECK_OK(dp_psg_activate(psg[side]));
        dp_tensor *y = dp_bias_add(x, p[side]), *l = y ? dp_sum(y, 0, NULL, 0) : NULL;
        CHECK_PTR(l);
        CHECK_OK(dp_backward(l, NULL, 0));
        CHECK_OK(dp_psg_activate(NULL));
        CHECK_OK(dp_psg_compute_norms(psg[side]));
        dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = 1.0};
        CHECK_OK(dp_psg_clip_accumulate(psg[side], &cfg, NULL));
        dp_tensor *acc = dp_psg_accumulator(psg[side], 0);
        CHECK_PTR(acc);
        if (acc) CHECK_OK(cuda_ops->memcpy_h2d(acc->data, acc_host->data, sizeof(float) * (size_t)n));
        dp_tensor *objs[] = {xh, x, y, l, acc};
        for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
    }
    dp_rounding r0 = {0, 0, 0}, r1 = {0, 0, 0};
    CHECK_OK(dp_psg_finish_update_param(psg[0], 0, noise[0], 0.5, 0.25, &rule, s0[0], s1[0], &r0));
    CHECK_OK(dp_psg_finish(psg[1], noise[1], 0.5, 0.25));
    if (adam)
        CHECK_OK(dp_adam_step_(p[1], p[1]->grad, s0[1], s1[1], rule.lr, rule.beta1, rule.beta2, rule.eps,
                               rule.weight_decay, rule.decoupled, 1, &r1));
    else
        CHECK_OK(dp_sgd_step_(p[1], p[1]->grad, s0[1], rule.lr, rule.momentum, 0, 0, 0, 1, &r1));
    uint64_t c0 = 0, c1 = 0;
    dp_noise_state(noise[0], NULL, NULL, &c0);
    dp_noise_state(noise[1], NULL, NULL, &c1);
    CHECK(c0 == c1 && c0 == 77 + (uint64_t)((n + 1) / 2), "core on cuda: noise counter %llu vs %llu",
          (unsigned long long)c0, (unsigned long long)c1);
    CHECK(same_bytes(p[0], p[1]) && same_bytes(p[0]->grad, p[1]->grad) && same_bytes(s0[0], s0[1]) &&
              same_bytes(s1[0], s1[1]),
          "core on cuda (%s): fused and composed differ", adam ? "adamw" : "sgd");
    dp_psg_param_info a, b;
    CHECK_OK(dp_psg_describe(psg[0], 0, &a));
    CHECK_OK(dp_psg_describe(psg[1], 0, &b));
    CHECK(fabs(a.sum_norm - b.sum_norm) <= 1e-12 * b.sum_norm && fabs(a.noise_norm - b.noise_norm) <= 1e-12 * b.noise_norm,
          "core on cuda: norms %.17g %.17g vs %.17g %.17g", a.sum_norm, a.noise_norm, b.sum_norm, b.noise_norm);
    for (int side = 0; side < 2; side++) {
        dp_tensor_release(p[side]);
        dp_tensor_release(s0[side]);
        dp_tensor_release(s1[side]);
        dp_psg_free(psg[side]);
        dp_noise_free(noise[side]);
    }
    dp_tensor_release(host);
    dp_tensor_release(acc_host);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    int64_t live = dp_live_tensors();
    const dp_dtype pts[] = {DP_F32, DP_BF16, DP_F16, DP_FP8_E4M3, DP_F64};
    for (int d = 0; d < 5; d++)
        for (int r = 0; r < N_FUSED_UPDATE_CASES; r++)
            for (int sr = 0; sr < 2; sr++) {
                const fused_update_case *u = &fused_update_cases[r];
                if (sr && (pts[d] == DP_F32 || pts[d] == DP_F64)) continue;
                check_kernel(pts[d], &u->rule, u->name, sr, u->scale);
            }
    check_core(0);
    check_core(1);
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_cuda_noisy_update");
}
