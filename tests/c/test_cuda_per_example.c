/* test_cuda_per_example.c: the CUDA fused per-example products (kernels/cuda/per_example.cu)
 * against float64 loops written here from the same bf16/f16 values, and the DP engine's use of them.
 *  - per_example_sq_norms: ||sum_t g[b,t,:]^T a[b,t,:]||_F^2 within 1e-3 relative (f32 accumulation
 *    of exact bf16/f16 products; the worst-case bound is 6 (T + 16) 2^-24 of the absolute sums);
 *  - clipped_sum: acc0 + sum_b f32(factor[b]) S_b, each element within 1e-3 of its absolute scale
 *    |acc0| + sum_b |factor[b]| sum_t |g a| (the f32 accumulation's error is relative to that);
 *    examples with factor 0 whose rows hold NaN and Inf add nothing; a second run gives the same bits;
 *  - shapes with edges: P, D not multiples of 16 or 64, T not a multiple of 16, T = 1, T = 0, B = 1,
 *    many examples (the clipped sum splits them into groups), taps viewed at an unaligned offset;
 *  - bad dtypes and shapes fail with DP_EDTYPE / DP_ESHAPE;
 *  - the engine: a bf16 linear weight on cuda with the materialised form, fused (its first-use
 *    self-check included) and with DP_CUDA_FUSED=0, gives the norms and the clipped sum of a float64
 *    loop over its taps, and the fused path holds less per-sample memory.
 * Without a CUDA device it prints SKIP and exits 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "internal.h"
#include "dpsgd/psg_internal.h"
#include "cuda_test.h"

/* ---------------------------------------------------------------- helpers */

/* CPU tensor of values scale * [-1, 1) rounded into dt, seeded with seed * 7919 + 17. */
static dp_tensor *make(dp_dtype dt, int32_t ndim, const int64_t *shape, uint64_t seed, double scale) {
    return rnd_state(dt, ndim, shape, seed * 7919 + 17, scale);
}

/* A CUDA tensor holding c's values: a contiguous view into a larger block, with misalign one
 * element in, so that its data is not 16-byte aligned. */
static dp_tensor *to_cuda_view(dp_tensor *c, int misalign) {
    int64_t n = dp_tensor_numel(c) + (misalign ? 1 : 0);
    dp_tensor *block = empty(c->dtype, DP_CUDA, 1, &n);
    dp_tensor *flat = dp_narrow(block, 0, misalign ? 1 : 0, dp_tensor_numel(c));
    dp_tensor *g = flat ? dp_reshape(flat, c->ndim, c->shape) : NULL;
    CHECK_PTR(g);
    if (!g) exit(1);
    CHECK_OK(dp_copy_(g, c));
    dp_tensor_release(flat);
    dp_tensor_release(block);
    return g;
}

static double *host(const dp_tensor *t) {
    double *v = malloc(sizeof(double) * (size_t)(dp_tensor_numel(t) + 1));
    if (!v) exit(1);
    CHECK_OK(dp_tensor_to_f64(t, v));
    return v;
}

typedef struct { int64_t B, T, P, D; int misalign; } shape4;

/* S (B, P, D) and the absolute sums (B, P, D) in double from the values of g and a. */
static void reference(const shape4 *s, const double *g, const double *a, double *S, double *abs_s) {
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t p = 0; p < s->P; p++)
            for (int64_t d = 0; d < s->D; d++) {
                double v = 0, w = 0;
                for (int64_t t = 0; t < s->T; t++) {
                    double x = g[(b * s->T + t) * s->P + p] * a[(b * s->T + t) * s->D + d];
                    v += x;
                    w += fabs(x);
                }
                S[(b * s->P + p) * s->D + d] = v;
                abs_s[(b * s->P + p) * s->D + d] = w;
            }
}

/* ---------------------------------------------------------------- the kernels */

static void test_shape(dp_dtype dt, const shape4 *s, uint64_t seed) {
    int64_t B = s->B, T = s->T, P = s->P, D = s->D;
    int64_t gs[3] = {B, T, P}, as[3] = {B, T, D}, accs[2] = {P, D};
    dp_tensor *gc = make(dt, 3, gs, seed, 1.0), *ac = make(dt, 3, as, seed + 1, 1.0);
    /* Example 1 (when there is one) is poisoned and gets factor 0. */
    int64_t bad = B > 1 && T > 0 ? 1 : -1;
    if (bad >= 0) {
        for (int64_t i = 0; i < T * P; i++) dp_store_f64(gc->data, dt, bad * T * P + i, NAN);
        for (int64_t i = 0; i < T * D; i += 3) dp_store_f64(ac->data, dt, bad * T * D + i, INFINITY);
    }
    double *g = host(gc), *a = host(ac);
    size_t n = (size_t)(B * P * D + 1);
    double *S = malloc(sizeof(double) * n), *abs_s = malloc(sizeof(double) * n);
    if (!S || !abs_s) exit(1);
    reference(s, g, a, S, abs_s);
    dp_tensor *gd = to_cuda_view(gc, s->misalign), *ad = to_cuda_view(ac, s->misalign);
    char what[96];
    snprintf(what, sizeof what, "%s B %lld T %lld P %lld D %lld%s", dp_dtype_name(dt), (long long)B,
             (long long)T, (long long)P, (long long)D, s->misalign ? " unaligned" : "");

    /* norms: out filled with garbage first, so every entry must be written */
    dp_tensor *out = dp_tensor_full(DP_F64, DP_CUDA, 1, &B, 12345.0);
    CHECK_PTR(out);
    CHECK_OK(cuda_ops->per_example_sq_norms(out, gd, ad));
    double *sq = host(out);
    for (int64_t b = 0; b < B; b++) {
        double ref = 0;
        for (int64_t k = 0; k < P * D; k++) ref += S[b * P * D + k] * S[b * P * D + k];
        if (b == bad) {
            CHECK(!isfinite(sq[b]), "%s: poisoned example's norm %g, expected NaN/Inf", what, sq[b]);
            continue;
        }
        CHECK(fabs(sq[b] - ref) <= 1e-3 * ref + 1e-30, "%s: sq norm of example %lld: %.9g vs %.9g",
              what, (long long)b, sq[b], ref);
    }

    /* clipped sum, factors in [0.25, 2] with the poisoned example's 0 */
    double *f = malloc(sizeof(double) * (size_t)(B + 1));
    uint64_t st = seed + 99;
    for (int64_t b = 0; b < B; b++) f[b] = b == bad ? 0.0 : 1.125 + 0.875 * dp_test_uniform(&st);
    dp_tensor *fc = dp_tensor_from_f64(DP_F64, 1, &B, f), *fd = to_cuda_view(fc, 0);
    dp_tensor *acc0 = make(DP_F32, 2, accs, seed + 2, 1.0);
    dp_tensor *acc = to_cuda_view(acc0, 0), *acc_again = to_cuda_view(acc0, 0);
    CHECK_OK(cuda_ops->clipped_sum(acc, gd, ad, fd));
    CHECK_OK(cuda_ops->clipped_sum(acc_again, gd, ad, fd));
    double *r = host(acc), *r2 = host(acc_again), *base = host(acc0);
    int64_t worst = -1;
    double worst_rel = 0;
    int same = 1;
    for (int64_t k = 0; k < P * D; k++) {
        double ref = base[k], scale = fabs(base[k]);
        for (int64_t b = 0; b < B; b++) {
            if (f[b] == 0) continue;
            double fb = (float)f[b];
            ref += fb * S[b * P * D + k];
            scale += fabs(fb) * abs_s[b * P * D + k];
        }
        double rel = fabs(r[k] - ref) / (scale + 1e-30);
        if (!(rel <= worst_rel)) { worst_rel = rel; worst = k; }
        same &= memcmp(&r[k], &r2[k], sizeof(double)) == 0;
    }
    CHECK(worst_rel <= 1e-3, "%s: clipped_sum element %lld off by %.3g of its scale", what,
          (long long)worst, worst_rel);
    CHECK(same, "%s: clipped_sum differs between two runs", what);
    free(r); free(r2); free(base); free(f); free(sq); free(g); free(a); free(S); free(abs_s);
    dp_tensor_release(acc); dp_tensor_release(acc_again); dp_tensor_release(acc0);
    dp_tensor_release(fc); dp_tensor_release(fd); dp_tensor_release(out);
    dp_tensor_release(gd); dp_tensor_release(ad); dp_tensor_release(gc); dp_tensor_release(ac);
}

static void test_kernels(void) {
    static const shape4 shapes[] = {
        {1, 1, 1, 1, 0},       {1, 1, 5, 7, 0},      {2, 16, 64, 64, 0},   {3, 17, 70, 65, 0},
        {4, 33, 130, 8, 0},    {5, 7, 9, 200, 0},    {300, 5, 40, 24, 0},  {40, 48, 128, 192, 0},
        {3, 9, 24, 16, 1},     {2, 0, 5, 6, 0},      {6, 1, 72, 80, 0},
    };
    dp_dtype dts[2] = {DP_BF16, DP_F16};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_shape(dts[k], &shapes[i], 10 * i + k);
}

static void test_errors(void) {
    int64_t gs[3] = {2, 3, 4}, as[3] = {2, 3, 5}, bad_as[3] = {2, 4, 5}, two = 2, accs[2] = {4, 5}, wrong[2] = {5, 5};
    dp_tensor *g = dp_tensor_zeros(DP_BF16, DP_CUDA, 3, gs), *a = dp_tensor_zeros(DP_BF16, DP_CUDA, 3, as);
    dp_tensor *a16 = dp_tensor_zeros(DP_F16, DP_CUDA, 3, as), *a32 = dp_tensor_zeros(DP_F32, DP_CUDA, 3, as);
    dp_tensor *abad = dp_tensor_zeros(DP_BF16, DP_CUDA, 3, bad_as), *out = dp_tensor_zeros(DP_F64, DP_CUDA, 1, &two);
    dp_tensor *out32 = dp_tensor_zeros(DP_F32, DP_CUDA, 1, &two), *acc = dp_tensor_zeros(DP_F32, DP_CUDA, 2, accs);
    dp_tensor *acc_wrong = dp_tensor_zeros(DP_F32, DP_CUDA, 2, wrong), *f = dp_tensor_zeros(DP_F64, DP_CUDA, 1, &two);
    CHECK(cuda_ops->per_example_sq_norms(out, g, a16) == DP_EDTYPE, "mixed dtypes: %s", dp_last_error());
    CHECK(strstr(dp_last_error(), "per_example_sq_norms") != NULL, "message: %s", dp_last_error());
    CHECK(cuda_ops->per_example_sq_norms(out, g, a32) == DP_EDTYPE, "f32: %s", dp_last_error());
    CHECK(cuda_ops->per_example_sq_norms(out, g, abad) == DP_ESHAPE, "T differs: %s", dp_last_error());
    CHECK(cuda_ops->per_example_sq_norms(out32, g, a) == DP_EDTYPE, "f32 out: %s", dp_last_error());
    CHECK(cuda_ops->clipped_sum(acc_wrong, g, a, f) == DP_ESHAPE, "acc numel: %s", dp_last_error());
    CHECK(strstr(dp_last_error(), "clipped_sum") != NULL, "message: %s", dp_last_error());
    CHECK(cuda_ops->clipped_sum(acc, g, a32, f) == DP_EDTYPE, "f32 taps: %s", dp_last_error());
    CHECK(cuda_ops->clipped_sum(out, g, a, f) == DP_EDTYPE, "f64 acc: %s", dp_last_error());
    CHECK_OK(cuda_ops->clipped_sum(acc, g, a, f));
    dp_tensor *ts[] = {g, a, a16, a32, abad, out, out32, acc, acc_wrong, f};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dp_tensor_release(ts[i]);
}

/* ---------------------------------------------------------------- the engine */

enum { EB = 6, ET = 20, EP = 36, ED = 44 };

typedef struct {
    double norms[EB], factors[EB], acc[EP * ED];
    int64_t per_sample_peak;
    dp_psg_param_info info;
} engine_result;

/* One micro-batch of loss = sum(linear(x, W) * r) (so the output gradient is r) with W (EP, ED)
 * bf16 on cuda, materialised form, flat clipping at C; run twice so the second micro-batch (after
 * the first-use self-check) shows the path's own memory. */
static void engine_run(dp_tensor *w, dp_tensor *x, dp_tensor *r, double C, engine_result *out) {
    dp_psg *psg = dp_psg_new();
    CHECK(dp_psg_add_param(psg, w, "w", 0) == 0, "%s", dp_last_error());
    CHECK_OK(dp_psg_set_form(psg, 0, DP_PSG_MATERIALISE));
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            CHECK_OK(dp_psg_reset(psg));
            dp_mem_reset_peak(DP_CUDA);
        }
        CHECK_OK(dp_psg_begin(psg, EB));
        CHECK_OK(dp_psg_activate(psg));
        dp_tensor *y = dp_linear(x, w, NULL), *yr = y ? dp_mul(y, r) : NULL;
        dp_tensor *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
        dp_tensor *one = dp_tensor_scalar(DP_BF16, DP_CUDA, 1.0);
        CHECK_PTR(loss);
        if (loss) CHECK_OK(dp_backward(loss, one, 0));
        dp_tensor_release(one); dp_tensor_release(loss); dp_tensor_release(yr); dp_tensor_release(y);
        CHECK_OK(dp_psg_activate(NULL));
        CHECK_OK(dp_psg_compute_norms(psg));
        CHECK_OK(dp_psg_sample_norms(psg, 0, 0, out->norms));
        dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = C};
        CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, NULL));
        CHECK_OK(dp_psg_clip_factors(psg, 0, out->factors));
    }
    out->per_sample_peak = dp_mem_category_peak(DP_CUDA, DP_MEM_PER_SAMPLE);
    dp_tensor *acc = dp_psg_accumulator(psg, 0);
    CHECK_PTR(acc);
    if (acc) CHECK_OK(dp_tensor_to_f64(acc, out->acc));
    CHECK_OK(dp_psg_describe(psg, 0, &out->info));
    dp_tensor_release(acc);
    dp_psg_free(psg);
    dp_tensor_set_grad(w, NULL);
}

static void test_engine(void) {
    int64_t ws[2] = {EP, ED}, xs[3] = {EB, ET, ED}, rs[3] = {EB, ET, EP};
    dp_tensor *wc = make(DP_BF16, 2, ws, 501, 0.5), *xc = make(DP_BF16, 3, xs, 502, 1.0);
    dp_tensor *rc = make(DP_BF16, 3, rs, 503, 1.0);
    /* example 2's input holds a NaN: its norm is NaN, its factor 0, and it adds nothing */
    dp_store_f64(xc->data, DP_BF16, 2 * ET * ED + 5, NAN);
    double *x = host(xc), *r = host(rc);
    double S[EB][EP * ED], abs_s[EB][EP * ED];
    shape4 s = {EB, ET, EP, ED, 0};
    reference(&s, r, x, &S[0][0], &abs_s[0][0]);
    double ref_norm[EB];
    for (int b = 0; b < EB; b++) {
        double q = 0;
        for (int k = 0; k < EP * ED; k++) q += S[b][k] * S[b][k];
        ref_norm[b] = sqrt(q);
    }
    double C = (ref_norm[0] + ref_norm[1]) / 2;   /* some examples clipped, some not */
    dp_tensor *w = to_cuda_view(wc, 0), *xd = to_cuda_view(xc, 0), *rd = to_cuda_view(rc, 0);
    dp_tensor_set_requires_grad(w, 1);
    w->is_param = 1;
    engine_result *res = calloc(2, sizeof *res);
    if (!res) exit(1);
    const char *modes[2] = {"1", "0"};
    for (int m = 0; m < 2; m++) {
        setenv("DP_CUDA_FUSED", modes[m], 1);
        dp_psg_fused_reset();
        engine_run(w, xd, rd, C, &res[m]);
        const engine_result *e = &res[m];
        CHECK(e->info.form_used == DP_PSG_MATERIALISE && e->info.norm_dtype == DP_F32,
              "DP_CUDA_FUSED=%s: form %d, norm dtype %d", modes[m], e->info.form_used, e->info.norm_dtype);
        for (int b = 0; b < EB; b++) {
            if (b == 2) {
                CHECK(!isfinite(e->norms[b]) && e->factors[b] == 0, "DP_CUDA_FUSED=%s: NaN example: "
                      "norm %g, factor %g", modes[m], e->norms[b], e->factors[b]);
                continue;
            }
            CHECK(fabs(e->norms[b] - ref_norm[b]) <= 1e-3 * ref_norm[b], "DP_CUDA_FUSED=%s: norm of "
                  "example %d: %.9g vs %.9g", modes[m], b, e->norms[b], ref_norm[b]);
        }
        double worst = 0;
        for (int k = 0; k < EP * ED; k++) {
            double ref = 0, scale = 0;
            for (int b = 0; b < EB; b++) {
                if (e->factors[b] == 0) continue;
                ref += e->factors[b] * S[b][k];
                scale += e->factors[b] * abs_s[b][k];
            }
            worst = fmax(worst, fabs(e->acc[k] - ref) / (scale + 1e-30));
        }
        CHECK(worst <= 1e-3, "DP_CUDA_FUSED=%s: clipped sum off by %.3g of its scale", modes[m], worst);
    }
    /* the fused path keeps no f32 copies of the taps and no per-example products */
    CHECK(res[0].per_sample_peak < res[1].per_sample_peak, "per-sample peak fused %lld, composed %lld",
          (long long)res[0].per_sample_peak, (long long)res[1].per_sample_peak);
    unsetenv("DP_CUDA_FUSED");
    dp_psg_fused_reset();
    free(res); free(x); free(r);
    dp_tensor_release(w); dp_tensor_release(xd); dp_tensor_release(rd);
    dp_tensor_release(wc); dp_tensor_release(xc); dp_tensor_release(rc);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    if (!cuda_ops->per_example_sq_norms || !cuda_ops->clipped_sum) {
        CHECK(0, "the cuda table lacks per_example_sq_norms / clipped_sum");
        return dp_test_finish("test_cuda_per_example");
    }
    int64_t live = dp_live_tensors();
    test_kernels();
    test_errors();
    test_engine();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_cuda_per_example");
}
