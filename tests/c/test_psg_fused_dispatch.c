/* test_psg_fused_dispatch.c: the DP engine's choice of the fused per-example products and their
 * first-use self-check (core/dpsgd/psg_fused.c), on the CPU with a fake op table: a copy of the
 * CPU table whose per_example_sq_norms and clipped_sum are float64 loops written here, optionally
 * perturbed by a known relative amount. Checks:
 *  - DP_CUDA_FUSED parsing ("0", "off", "false", "no" in any case turn the paths off) and its effect;
 *  - dp_psg_fused_usable: only tables with the entry, bf16/f16 taps of one dtype, contiguous (B, T, *)
 *    taps, an f32 accumulator of P * D elements; a disabled entry is no longer used;
 *  - the self-check runs the composed path exactly once per entry and process (again after a failed
 *    composed run), accepts differences within 1e-3 relative (plus the caller's tolerances), and on
 *    a larger one fails with DP_EDEVICE and the documented message, leaves the composed values,
 *    and disables that entry only;
 *  - the checked clipped sum adds the very bits the kernel adds by itself.
 * The engine's composed path itself is covered, unchanged, by test_psg*.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "internal.h"
#include "dpsgd/psg_internal.h"

enum { B = 3, T = 5, P = 6, D = 4 };

static double perturb;          /* the fake kernels' relative error */
static int64_t nan_example = -1;/* the fake norm kernel's NaN output, or -1 */
static int composed_calls;
static int composed_fails;      /* the composed callbacks fail when set */

/* S_b (P, D) of bf16/f16 taps in double. */
static void product(const dp_tensor *g, const dp_tensor *a, int64_t b, double *S) {
    for (int64_t p = 0; p < P; p++)
        for (int64_t d = 0; d < D; d++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++)
                s += dp_load_f64(g->data, g->dtype, (b * T + t) * P + p) * dp_load_f64(a->data, a->dtype, (b * T + t) * D + d);
            S[p * D + d] = s;
        }
}

static double ref_sq(const dp_tensor *g, const dp_tensor *a, int64_t b) {
    double S[P * D], q = 0;
    product(g, a, b, S);
    for (int k = 0; k < P * D; k++) q += S[k] * S[k];
    return q;
}

/* sum_b f32(factor[b]) S_b, skipping factor 0. */
static void ref_sum(const dp_tensor *g, const dp_tensor *a, const double *factor, double *out) {
    double S[P * D];
    memset(out, 0, sizeof(double) * P * D);
    for (int64_t b = 0; b < B; b++) {
        if (factor[b] == 0) continue;
        product(g, a, b, S);
        for (int k = 0; k < P * D; k++) out[k] += (double)(float)factor[b] * S[k];
    }
}

static int fake_sq_norms(dp_tensor *out, const dp_tensor *g, const dp_tensor *a) {
    for (int64_t b = 0; b < B; b++)
        ((double *)out->data)[b] = b == nan_example ? NAN : ref_sq(g, a, b) * (1 + perturb) * (1 + perturb);
    return 0;
}

static int fake_clipped_sum(dp_tensor *acc, const dp_tensor *g, const dp_tensor *a, const dp_tensor *factor) {
    double s[P * D];
    ref_sum(g, a, (const double *)factor->data, s);
    for (int k = 0; k < P * D; k++) {
        float *x = (float *)acc->data + k;
        *x += (float)(s[k] * (1 + perturb));
    }
    return 0;
}

typedef struct { const dp_tensor *g, *a, *factor; } taps_ctx;

static int composed_norms(void *vctx, double *sq) {
    const taps_ctx *c = vctx;
    composed_calls++;
    if (composed_fails) return dp_fail(DP_ENOMEM, "composed norms: out of memory (test)");
    for (int64_t b = 0; b < B; b++) sq[b] = ref_sq(c->g, c->a, b);
    return 0;
}

static int composed_sum(void *vctx, dp_tensor *acc) {
    const taps_ctx *c = vctx;
    composed_calls++;
    if (composed_fails) return dp_fail(DP_ENOMEM, "composed sum: out of memory (test)");
    double s[P * D];
    ref_sum(c->g, c->a, (const double *)c->factor->data, s);
    for (int k = 0; k < P * D; k++) ((float *)acc->data)[k] += (float)s[k];
    return 0;
}

static dp_ops fake;
static dp_tensor *g, *a, *a16, *acc0, *factor;

static void set_env(const char *value) {
    if (value) setenv("DP_CUDA_FUSED", value, 1);
    else unsetenv("DP_CUDA_FUSED");
    dp_psg_fused_reset();
}

/* ---------------------------------------------------------------- the tests */

static void test_env_parsing(void) {
    const char *on[] = {"1", "", "yes", "on", "2", "00x"};
    const char *off[] = {"0", "off", "OFF", "false", "False", "no", "No", " 0"};
    CHECK(dp_psg_fused_env_allows(NULL) == 1, "unset");
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++)
        CHECK(dp_psg_fused_env_allows(on[i]) == 1, "'%s' should allow", on[i]);
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        CHECK(dp_psg_fused_env_allows(off[i]) == 0, "'%s' should turn off", off[i]);
}

static void test_usable(void) {
    set_env(NULL);
    int64_t gt[3] = {B, P, T}, accs[2] = {P, D}, wrong[2] = {P, D + 1}, g2s[2] = {B * T, P};
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g, a, NULL) == 1, "bf16 taps, fake table");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc0) == 1, "bf16 taps, f32 acc");
    CHECK(dp_psg_fused_usable(&dp_cpu_ops, DP_PSG_FUSED_SQ_NORMS, g, a, NULL) == 0, "cpu table has no entry");
    CHECK(dp_psg_fused_usable(&dp_cpu_ops, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc0) == 0, "cpu table has no entry");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g, a16, NULL) == 0, "bf16 with f16");
    dp_tensor *g16 = dp_cast(g, DP_F16), *g32 = dp_cast(g, DP_F32), *a32 = dp_cast(a, DP_F32);
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g16, a16, NULL) == 1, "f16 taps");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g32, a32, NULL) == 0, "f32 taps compose");
    dp_tensor *base = dp_test_random(DP_BF16, 3, gt, 5), *strided = dp_transpose(base, 1, 2);
    CHECK(strided && strided->shape[1] == T && !dp_tensor_is_contiguous(strided), "transposed view");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, strided, a, NULL) == 0, "strided g");
    dp_tensor *g2 = dp_reshape(g, 2, g2s);
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g2, a, NULL) == 0, "2-D g");
    dp_tensor *acc64 = dp_tensor_zeros(DP_F64, DP_CPU, 2, accs), *acc_wrong = dp_tensor_zeros(DP_F32, DP_CPU, 2, wrong);
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc64) == 0, "f64 accumulator");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc_wrong) == 0, "accumulator numel");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, NULL) == 0, "no accumulator");
    CHECK(dp_psg_fused_usable(&fake, 7, g, a, acc0) == 0, "unknown entry");
    const char *offs[] = {"0", "off"};
    for (int i = 0; i < 2; i++) {
        set_env(offs[i]);
        CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g, a, NULL) == 0, "DP_CUDA_FUSED=%s", offs[i]);
        CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc0) == 0, "DP_CUDA_FUSED=%s", offs[i]);
    }
    set_env("1");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g, a, NULL) == 1, "DP_CUDA_FUSED=1");
    set_env(NULL);
    dp_tensor *ts[] = {g16, g32, a32, base, strided, g2, acc64, acc_wrong};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dp_tensor_release(ts[i]);
}

static void test_norms_check(void) {
    taps_ctx ctx = {g, a, factor};
    double sq[B], ref[B];
    for (int64_t b = 0; b < B; b++) ref[b] = ref_sq(g, a, b);

    /* agreeing: the composed path runs on the first call only */
    set_env(NULL);
    perturb = 0;
    composed_calls = 0;
    CHECK_OK(dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx));
    CHECK(composed_calls == 1, "first call ran the composed path %d times", composed_calls);
    for (int b = 0; b < B; b++) CHECK(sq[b] == ref[b], "example %d: %.17g vs %.17g", b, sq[b], ref[b]);
    perturb = 0.01;   /* no longer checked: the fused values come through as they are */
    CHECK_OK(dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx));
    CHECK(composed_calls == 1, "second call ran the composed path (%d calls)", composed_calls);
    CHECK_CLOSE(sq[0], ref[0] * 1.01 * 1.01, 1e-14);

    /* within 1e-3 relative of the norm passes; the caller's tolerance widens it */
    set_env(NULL);
    perturb = 5e-4;
    CHECK_OK(dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx));
    set_env(NULL);
    perturb = 2e-3;
    double tol[B];
    for (int b = 0; b < B; b++) tol[b] = 2e-3 * sqrt(ref[b]);
    CHECK_OK(dp_psg_fused_sq_norms(&fake, sq, g, a, tol, composed_norms, &ctx));

    /* a failing composed run leaves the check for the next call */
    set_env(NULL);
    perturb = 0;
    composed_calls = 0;
    composed_fails = 1;
    CHECK(dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx) == DP_ENOMEM, "%s", dp_last_error());
    composed_fails = 0;
    CHECK_OK(dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx));
    CHECK(composed_calls == 2, "the check ran again: %d composed calls", composed_calls);

    /* both non-finite agrees; one non-finite does not */
    set_env(NULL);
    nan_example = 1;
    dp_tensor *gn = dp_clone(g);
    dp_store_f64(gn->data, DP_BF16, 1 * T * P + 2, NAN);
    taps_ctx nctx = {gn, a, factor};
    CHECK_OK(dp_psg_fused_sq_norms(&fake, sq, gn, a, NULL, composed_norms, &nctx));
    CHECK(isnan(sq[1]), "NaN example: %g", sq[1]);
    set_env(NULL);
    CHECK(dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx) == DP_EDEVICE,
          "NaN against a finite norm should fail");
    nan_example = -1;
    dp_tensor_release(gn);

    /* a disagreement: message, composed values kept, this entry off, the other still on */
    set_env(NULL);
    perturb = 2e-3;
    int rc = dp_psg_fused_sq_norms(&fake, sq, g, a, NULL, composed_norms, &ctx);
    CHECK(rc == DP_EDEVICE, "rc %d", rc);
    const char *msg = dp_last_error();
    CHECK(strstr(msg, "per_example_sq_norms on fake disagrees with the composed path by 0.002") != NULL &&
          strstr(msg, "set DP_CUDA_FUSED=0 to use the composed path") != NULL, "message: %s", msg);
    for (int b = 0; b < B; b++) CHECK(sq[b] == ref[b], "composed value kept for example %d", b);
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g, a, NULL) == 0, "entry disabled");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc0) == 1, "other entry still on");
    perturb = 0;
    set_env(NULL);
}

/* acc0 + the fake kernel's sum, straight through the kernel. */
static dp_tensor *direct_sum(void) {
    dp_tensor *acc = dp_clone(acc0);
    int64_t shape2[2] = {P, D};
    dp_tensor *acc2 = dp_reshape(acc, 2, shape2);
    CHECK_OK(fake_clipped_sum(acc2, g, a, factor));
    dp_tensor_release(acc2);
    return acc;
}

static void test_sum_check(void) {
    taps_ctx ctx = {g, a, factor};
    set_env(NULL);
    perturb = 0;
    composed_calls = 0;
    dp_tensor *acc = dp_clone(acc0), *want = direct_sum();
    CHECK_OK(dp_psg_fused_clipped_sum(&fake, acc, g, a, factor, 1.0, composed_sum, &ctx));
    CHECK(composed_calls == 1, "composed calls %d", composed_calls);
    CHECK(memcmp(acc->data, want->data, sizeof(float) * P * D) == 0, "checked sum differs from the kernel's bits");
    dp_tensor_release(acc);
    acc = dp_clone(acc0);
    CHECK_OK(dp_psg_fused_clipped_sum(&fake, acc, g, a, factor, 1.0, composed_sum, &ctx));
    CHECK(composed_calls == 1, "second call checked again (%d)", composed_calls);
    CHECK(memcmp(acc->data, want->data, sizeof(float) * P * D) == 0, "unchecked sum differs from the kernel's bits");
    dp_tensor_release(acc);

    /* the contributions' scale widens the tolerance where the sum cancels */
    double s[P * D], norm = 0;
    ref_sum(g, a, (const double *)factor->data, s);
    for (int k = 0; k < P * D; k++) norm += s[k] * s[k];
    norm = sqrt(norm);
    set_env(NULL);
    perturb = 5e-3;
    acc = dp_clone(acc0);
    CHECK_OK(dp_psg_fused_clipped_sum(&fake, acc, g, a, factor, 100 * norm, composed_sum, &ctx));
    dp_tensor_release(acc);

    /* a disagreement: acc gets the composed sum, the call fails, this entry is off */
    set_env(NULL);
    acc = dp_clone(acc0);
    int rc = dp_psg_fused_clipped_sum(&fake, acc, g, a, factor, norm, composed_sum, &ctx);
    CHECK(rc == DP_EDEVICE, "rc %d", rc);
    const char *msg = dp_last_error();
    CHECK(strstr(msg, "clipped_sum on fake disagrees with the composed path by 0.005") != NULL &&
          strstr(msg, "DP_CUDA_FUSED=0") != NULL, "message: %s", msg);
    for (int k = 0; k < P * D; k++) {
        double base = dp_load_f64(acc0->data, DP_F32, k);
        float expect = (float)(base + (double)(float)s[k]);
        CHECK(((float *)acc->data)[k] == expect, "element %d: %.9g vs composed %.9g", k,
              ((float *)acc->data)[k], expect);
    }
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_CLIPPED_SUM, g, a, acc0) == 0, "entry disabled");
    CHECK(dp_psg_fused_usable(&fake, DP_PSG_FUSED_SQ_NORMS, g, a, NULL) == 1, "other entry still on");

    /* a failing composed run: the error, and the check waits for the next call */
    set_env(NULL);
    perturb = 0;
    composed_calls = 0;
    composed_fails = 1;
    CHECK(dp_psg_fused_clipped_sum(&fake, acc, g, a, factor, norm, composed_sum, &ctx) == DP_ENOMEM, "%s",
          dp_last_error());
    composed_fails = 0;
    CHECK_OK(dp_psg_fused_clipped_sum(&fake, acc, g, a, factor, norm, composed_sum, &ctx));
    CHECK(composed_calls == 2, "the check ran again: %d composed calls", composed_calls);
    dp_tensor_release(acc);
    dp_tensor_release(want);
    set_env(NULL);
}

int main(void) {
    fake = dp_cpu_ops;
    fake.name = "fake";
    fake.per_example_sq_norms = fake_sq_norms;
    fake.clipped_sum = fake_clipped_sum;
    int64_t live = dp_live_tensors();
    int64_t gs[3] = {B, T, P}, as[3] = {B, T, D}, accs[2] = {P, D}, nb = B;
    g = dp_test_random(DP_BF16, 3, gs, 1);
    a = dp_test_random(DP_BF16, 3, as, 2);
    a16 = dp_test_random(DP_F16, 3, as, 3);
    acc0 = dp_test_random(DP_F32, 2, accs, 4);
    double f[B] = {0.75, 0.0, 1.3};
    factor = dp_tensor_from_f64(DP_F64, 1, &nb, f);
    test_env_parsing();
    test_usable();
    test_norms_check();
    test_sum_check();
    dp_tensor *ts[] = {g, a, a16, acc0, factor};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dp_tensor_release(ts[i]);
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_psg_fused_dispatch");
}
