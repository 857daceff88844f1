/* test_cuda_dpsgd.c: the CUDA DP-SGD kernels (kernels/cuda/{per_sample,noise,optim}.cu) against
 * the CPU table (dp_cpu_ops, itself tested against float64 loops in test_per_sample_kernels.c,
 * test_noise.c and test_optim*.c) and, where cheap, against float64 loops written here:
 *  - noise_add_philox: bit-identical to the CPU (f32, f64, odd n, nonzero counter), and element 0
 *    equal to fma(std, z0, x0) from philox.h's normal pair;
 *  - gram (upper triangle, f64 loop: f32 rel 1e-5, f64 1e-12), ghost_norm, row_sums, row_sq_norms,
 *    embedding_sq_norms (f64 accumulation in another order: rel 1e-12 against the CPU);
 *  - scale_rows: bytes equal to the CPU (one rounding of the same double product), zeros where the
 *    factor is 0 even over NaN;
 *  - sgd_step / adam_step: f32 params and state within 1e-6 relative (the two compilers contract
 *    multiply-adds differently), f64 within 1e-13, bf16/f16/e4m3 within one rounding step; and
 *    stochastic rounding bit-identical to the CPU on inputs whose f32 update is exact.
 * Without a CUDA device it prints SKIP and exits with DP_TEST_SKIP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "internal.h"
#include "philox.h"
#include "cuda_test.h"

static const dp_ops *cpu;

/* ---------------------------------------------------------------- helpers */

/* CPU tensor of values in [-scale, scale) rounded into dtype (floats), or integers in [0, mod);
 * seeded with seed * 7919 + 17. */
static dp_tensor *make(dp_dtype dt, int32_t ndim, const int64_t *shape, uint64_t seed, double scale,
                       int64_t mod) {
    if (dt != DP_I32 && dt != DP_I64) return rnd_state(dt, ndim, shape, seed * 7919 + 17, scale);
    dp_tensor *t = empty(dt, DP_CPU, ndim, shape);
    uint64_t s = seed * 7919 + 17;
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) {
        double u = dp_test_uniform(&s);
        if (dt == DP_I32) ((int32_t *)t->data)[i] = (int32_t)((u + 1) / 2 * (double)mod);
        else ((int64_t *)t->data)[i] = (int64_t)((u + 1) / 2 * (double)mod);
    }
    return t;
}

static dp_tensor *zeros(dp_dtype dt, dp_device dev, int32_t ndim, const int64_t *shape) {
    dp_tensor *t = empty(dt, dev, ndim, shape);
    CHECK_OK(dp_ops_for(dev)->fill(t, 0.0));
    return t;
}

/* ---------------------------------------------------------------- noise */

static void test_noise(void) {
    const dp_dtype dts[] = {DP_F32, DP_F64};
    for (int k = 0; k < 2; k++) {
        int64_t n = 100001;
        dp_tensor *c = make(dts[k], 1, &n, 3 + k, 2.0, 0);
        double x0 = dp_load_f64(c->data, c->dtype, 0);
        dp_tensor *g = to_cuda(c);
        uint64_t seed = 0x1234567890ABCDEFull, stream = 7, counter = 1000003;
        CHECK_OK(cpu->noise_add_philox(c, 0.75, seed, stream, counter));
        CHECK_OK(cuda_ops->noise_add_philox(g, 0.75, seed, stream, counter));
        CHECK(same_bytes(g, c), "noise_add_philox %s: cuda differs from cpu", dp_dtype_name(dts[k]));
        double z[2];
        dp_philox_normal_pair(z, seed, stream, counter);
        double want = fma(0.75, z[0], x0);
        if (dts[k] == DP_F32) want = (float)want;
        double got0 = dp_load_f64(c->data, c->dtype, 0);
        CHECK(got0 == want, "noise element 0: %.17g vs %.17g", got0, want);
        dp_tensor_release(c);
        dp_tensor_release(g);
    }
    int64_t n = 5;
    dp_tensor *h = make(DP_F16, 1, &n, 1, 1.0, 0), *hg = to_cuda(h);
    CHECK(cuda_ops->noise_add_philox(hg, 1.0, 1, 0, 0) == DP_EDTYPE, "f16 dst refused");
    dp_tensor_release(h);
    dp_tensor_release(hg);
}

/* ---------------------------------------------------------------- gram and ghost norm */

static void test_gram_ghost(void) {
    const dp_dtype dts[] = {DP_F32, DP_F64};
    for (int k = 0; k < 2; k++) {
        int64_t B = 3, T = 17, K = 33, xs[3] = {B, T, K}, gs[3] = {B, T, T};
        dp_tensor *x = make(dts[k], 3, xs, 11 + k, 1.0, 0), *y = make(dts[k], 3, xs, 21 + k, 1.0, 0);
        dp_tensor *xg = to_cuda(x), *yg = to_cuda(y);
        dp_tensor *ga = zeros(dts[k], DP_CUDA, 3, gs), *gg = zeros(dts[k], DP_CUDA, 3, gs);
        CHECK_OK(cuda_ops->gram(ga, xg));
        CHECK_OK(cuda_ops->gram(gg, yg));
        dp_tensor *gah = to_cpu(ga);
        double worst = 0, tol = dts[k] == DP_F32 ? 1e-5 : 1e-12;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t s = t; s < T; s++) {
                    double ref = 0, mag = 0;
                    for (int64_t q = 0; q < K; q++) {
                        double p = dp_load_f64(x->data, x->dtype, (b * T + t) * K + q) *
                                   dp_load_f64(x->data, x->dtype, (b * T + s) * K + q);
                        ref += p;
                        mag += fabs(p);
                    }
                    double d = fabs(dp_load_f64(gah->data, gah->dtype, (b * T + t) * T + s) - ref) / mag;
                    if (!(d <= worst)) worst = d;
                }
        CHECK(worst <= tol, "gram %s: rel error %g", dp_dtype_name(dts[k]), worst);
        /* ghost_norm on the same Grams: the CPU's result from the cuda Grams' bytes. */
        dp_tensor *ggh = to_cpu(gg);
        int64_t bs = B;
        dp_tensor *sq_c = zeros(DP_F64, DP_CPU, 1, &bs), *bd_c = zeros(DP_F64, DP_CPU, 1, &bs);
        dp_tensor *sq_g = zeros(DP_F64, DP_CUDA, 1, &bs), *bd_g = zeros(DP_F64, DP_CUDA, 1, &bs);
        CHECK_OK(cpu->ghost_norm(sq_c, bd_c, gah, ggh, 0.25, 3.0));
        CHECK_OK(cuda_ops->ghost_norm(sq_g, bd_g, ga, gg, 0.25, 3.0));
        double e1 = worst_rel_diff(bd_g, bd_c, 0), e0 = worst_rel_diff(sq_g, sq_c, 0);
        /* sq is a signed sum: compare against the bound's scale rather than its own. */
        dp_tensor *sqh = to_cpu(sq_g);
        double e_sq = 0;
        for (int64_t b = 0; b < B; b++) {
            double d = fabs(((double *)sqh->data)[b] - ((double *)sq_c->data)[b]) /
                       ((double *)bd_c->data)[b];
            if (!(d <= e_sq)) e_sq = d;
        }
        CHECK(e_sq <= 1e-12 && e1 <= 1e-12, "ghost_norm %s: sq %g (own scale %g), bound %g",
              dp_dtype_name(dts[k]), e_sq, e0, e1);
        dp_tensor *objs[] = {x, y, xg, yg, ga, gg, gah, ggh, sq_c, bd_c, sq_g, bd_g, sqh};
        for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
    }
}

/* ---------------------------------------------------------------- scale_rows */

static void test_scale_rows(void) {
    const dp_dtype xts[] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
    int64_t B = 4, xs[3] = {B, 5, 37};
    dp_tensor *f = make(DP_F64, 1, &B, 5, 3.0, 0);
    ((double *)f->data)[2] = 0.0;
    dp_tensor *fg = to_cuda(f);
    for (int k = 0; k < 6; k++)
        for (int o = 0; o < 2; o++) {
            dp_dtype ot = o ? DP_F64 : DP_F32;
            dp_tensor *x = make(xts[k], 3, xs, 31 + k, 2.0, 0);
            dp_store_f64(x->data, x->dtype, 2 * 5 * 37 + 3, NAN);   /* example 2, factor 0 */
            dp_tensor *xg = to_cuda(x);
            dp_tensor *oc = zeros(ot, DP_CPU, 3, xs), *og = zeros(ot, DP_CUDA, 3, xs);
            CHECK_OK(cpu->scale_rows(oc, x, f));
            CHECK_OK(cuda_ops->scale_rows(og, xg, fg));
            CHECK(same_bytes(og, oc), "scale_rows %s -> %s differs from cpu", dp_dtype_name(xts[k]),
                  dp_dtype_name(ot));
            dp_tensor *oh = to_cpu(og);
            CHECK(dp_load_f64(oh->data, ot, 2 * 5 * 37 + 3) == 0, "zero factor over NaN gives 0");
            dp_tensor_release(oh);
            dp_tensor_release(x);
            dp_tensor_release(xg);
            dp_tensor_release(oc);
            dp_tensor_release(og);
        }
    dp_tensor_release(f);
    dp_tensor_release(fg);
}

/* ---------------------------------------------------------------- row_sums, row_sq_norms */

static void test_row_sums_norms(void) {
    const dp_dtype dts[] = {DP_F32, DP_BF16, DP_F64, DP_F16};
    int64_t B = 3, T = 9, N = 300, gs[3] = {B, T, N}, os[2] = {B, N}, bt = B * T;
    for (int k = 0; k < 4; k++)
        for (int with_x = 0; with_x < 2; with_x++) {
            dp_tensor *g = make(dts[k], 3, gs, 41 + k, 1.0, 0), *x = make(dts[k], 3, gs, 51 + k, 3.0, 0);
            dp_tensor *mean = make(DP_F32, 1, &bt, 61, 0.5, 0), *rstd = make(DP_F64, 1, &bt, 62, 2.0, 0);
            dp_tensor *gg = to_cuda(g), *xg = to_cuda(x), *mg = to_cuda(mean), *rg = to_cuda(rstd);
            dp_tensor *oc = zeros(DP_F64, DP_CPU, 2, os), *og = zeros(DP_F64, DP_CUDA, 2, os);
            CHECK_OK(cpu->row_sums(oc, g, with_x ? x : NULL, with_x ? mean : NULL, with_x ? rstd : NULL));
            CHECK_OK(cuda_ops->row_sums(og, gg, with_x ? xg : NULL, with_x ? mg : NULL, with_x ? rg : NULL));
            double e = worst_rel_diff(og, oc, 1e-3);
            CHECK(e <= 1e-12, "row_sums %s x=%d: rel %g", dp_dtype_name(dts[k]), with_x, e);
            /* row_sq_norms over g viewed as (B*T, N) rows */
            int64_t rs[2] = {B * T, N};
            dp_tensor *rc = zeros(DP_F64, DP_CPU, 1, &bt), *rgpu = zeros(DP_F64, DP_CUDA, 1, &bt);
            dp_tensor *gv = dp_tensor_empty(dts[k], DP_CUDA, 2, rs);
            CHECK_PTR(gv);
            CHECK_OK(cuda_ops->memcpy_h2d(gv->data, g->data, nbytes(g)));
            CHECK_OK(cuda_ops->row_sq_norms(rgpu, gv));
            dp_tensor *gc2 = dp_tensor_empty(dts[k], DP_CPU, 2, rs);
            memcpy(gc2->data, g->data, nbytes(g));
            CHECK_OK(cpu->row_sq_norms(rc, gc2));
            dp_tensor *rh = to_cpu(rgpu);
            double worst = 0;
            for (int64_t r = 0; r < B * T; r++) {   /* and a float64 loop */
                double s = 0;
                for (int64_t j = 0; j < N; j++) {
                    double v = dp_load_f64(g->data, g->dtype, r * N + j);
                    s += v * v;
                }
                double d = fabs(((double *)rh->data)[r] - s) / s;
                if (!(d <= worst)) worst = d;
            }
            CHECK(worst <= 1e-12 && worst_rel_diff(rgpu, rc, 0) <= 1e-12, "row_sq_norms %s: rel %g",
                  dp_dtype_name(dts[k]), worst);
            dp_tensor *objs[] = {g, x, mean, rstd, gg, xg, mg, rg, oc, og, rc, rgpu, gv, gc2, rh};
            for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
        }
}

/* ---------------------------------------------------------------- embedding_sq_norms */

static void test_embedding(void) {
    const dp_dtype its[] = {DP_I32, DP_I64};
    const dp_dtype gts[] = {DP_F32, DP_BF16};
    int64_t B = 4, T = 23, D = 70, is[2] = {B, T}, gs[3] = {B, T, D};
    for (int k = 0; k < 2; k++) {
        dp_tensor *idx = make(its[k], 2, is, 71 + k, 0, 6);   /* 6 values over 23 positions: repeats */
        dp_tensor *g = make(gts[k], 3, gs, 81 + k, 1.0, 0);
        dp_tensor *ig = to_cuda(idx), *gg = to_cuda(g);
        dp_tensor *oc = zeros(DP_F64, DP_CPU, 1, &B), *og = zeros(DP_F64, DP_CUDA, 1, &B);
        CHECK_OK(cpu->embedding_sq_norms(oc, idx, g));
        CHECK_OK(cuda_ops->embedding_sq_norms(og, ig, gg));
        dp_tensor *oh = to_cpu(og);
        double worst = 0;
        for (int64_t b = 0; b < B; b++) {   /* sum over pairs with equal index of <g_t, g_s> */
            double s = 0;
            for (int64_t t = 0; t < T; t++)
                for (int64_t u = 0; u < T; u++) {
                    if (dp_load_f64(idx->data, idx->dtype, b * T + t) !=
                        dp_load_f64(idx->data, idx->dtype, b * T + u)) continue;
                    for (int64_t d = 0; d < D; d++)
                        s += dp_load_f64(g->data, g->dtype, (b * T + t) * D + d) *
                             dp_load_f64(g->data, g->dtype, (b * T + u) * D + d);
                }
            double d = fabs(((double *)oh->data)[b] - s) / s;
            if (!(d <= worst)) worst = d;
        }
        CHECK(worst <= 1e-12 && worst_rel_diff(og, oc, 0) <= 1e-12, "embedding_sq_norms %s: rel %g",
              dp_dtype_name(its[k]), worst);
        dp_tensor *objs[] = {idx, g, ig, gg, oc, og, oh};
        for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
    }
}

/* ---------------------------------------------------------------- optimizers */

/* Three steps of SGD (momentum + nesterov + wd) or AdamW/Adam on both devices, compared. */
static void test_optim_rne(void) {
    const dp_dtype pts[] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3};
    int64_t n = 1027;
    for (int k = 0; k < 5; k++)
        for (int adam = 0; adam < 2; adam++) {
            dp_dtype st = pts[k] == DP_F64 ? DP_F64 : DP_F32;
            dp_tensor *pc = make(pts[k], 1, &n, 91 + k, 1.0, 0), *pg = to_cuda(pc);
            dp_tensor *s0c = zeros(st, DP_CPU, 1, &n), *s1c = zeros(st, DP_CPU, 1, &n);
            dp_tensor *s0g = zeros(st, DP_CUDA, 1, &n), *s1g = zeros(st, DP_CUDA, 1, &n);
            for (int step = 1; step <= 3; step++) {
                dp_tensor *gc = make(st, 1, &n, 100 * step + k, 0.5, 0), *gg = to_cuda(gc);
                if (adam) {
                    CHECK_OK(cpu->adam_step(pc, gc, s0c, s1c, 1e-2, 0.9, 0.999, 1e-8, 0.01, step != 2,
                                            step, NULL));
                    CHECK_OK(cuda_ops->adam_step(pg, gg, s0g, s1g, 1e-2, 0.9, 0.999, 1e-8, 0.01, step != 2,
                                                 step, NULL));
                } else {
                    CHECK_OK(cpu->sgd_step(pc, gc, s0c, 0.1, 0.9, 0.1, 1e-3, step == 3, step == 1, NULL));
                    CHECK_OK(cuda_ops->sgd_step(pg, gg, s0g, 0.1, 0.9, 0.1, 1e-3, step == 3, step == 1, NULL));
                }
                dp_tensor_release(gc);
                dp_tensor_release(gg);
            }
            /* The floor keeps one step of an fp8 subnormal within tolerance. */
            double ep = worst_rel_diff(pg, pc, pts[k] == DP_FP8_E4M3 ? 0x1p-6 : 1e-3);
            double e0 = worst_rel_diff(s0g, s0c, 1e-3), e1 = adam ? worst_rel_diff(s1g, s1c, 1e-6) : 0;
            /* A low-precision param that rounded the other way at a near-tie feeds wd * p into the
             * next step's state, so its state gets a looser bound. */
            double tol = step_tol(pts[k]), stol = pts[k] == st ? step_tol(st) * 10 : 1e-3;
            CHECK(ep <= tol && e0 <= stol && e1 <= stol, "%s %s: param %g, state %g %g",
                  adam ? "adam" : "sgd", dp_dtype_name(pts[k]), ep, e0, e1);
            dp_tensor *objs[] = {pc, pg, s0c, s1c, s0g, s1g};
            for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) dp_tensor_release(objs[i]);
        }
}

/* Stochastic rounding: p - lr * g is exact in f32 here (bf16/f16/fp8 p, g multiples of 2^-10,
 * lr = 2^-4), so both devices round the same value with the same Philox word: codes must match. */
static void test_optim_stochastic(void) {
    const dp_dtype pts[] = {DP_BF16, DP_F16, DP_FP8_E5M2, DP_FP8_E4M3};
    int64_t n = 4099;
    for (int k = 0; k < 4; k++) {
        dp_tensor *pc = make(pts[k], 1, &n, 7 + k, 1.0, 0), *pg = to_cuda(pc);
        dp_tensor *gc = dp_tensor_empty(DP_F32, DP_CPU, 1, &n);
        uint64_t s = 99;
        for (int64_t i = 0; i < n; i++)
            ((float *)gc->data)[i] = (float)(floor(dp_test_uniform(&s) * 512) * 0x1p-10);
        dp_tensor *gg = to_cuda(gc);
        dp_rounding r = {1, 0xC0FFEEull, 12345};
        CHECK_OK(cpu->sgd_step(pc, gc, NULL, 0.0625, 0, 0, 0, 0, 1, &r));
        CHECK_OK(cuda_ops->sgd_step(pg, gg, NULL, 0.0625, 0, 0, 0, 0, 1, &r));
        CHECK(r.counter == 12345, "the kernel leaves the counter to the caller");
        CHECK(same_bytes(pg, pc), "stochastic rounding %s differs from cpu", dp_dtype_name(pts[k]));
        dp_tensor_release(pc);
        dp_tensor_release(pg);
        dp_tensor_release(gc);
        dp_tensor_release(gg);
    }
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    cpu = dp_ops_for(DP_CPU);
    int64_t live = dp_live_tensors();
    test_noise();
    test_gram_ghost();
    test_scale_rows();
    test_row_sums_norms();
    test_embedding();
    test_optim_rne();
    test_optim_stochastic();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_cuda_dpsgd");
}
