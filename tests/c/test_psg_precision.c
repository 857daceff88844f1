/* test_psg_precision.c: the DP engine's precision features on a small model (embedding, layer norm,
 * a linear on sequences, bias_add, and a head whose weight goes through dp_fake_quant).
 * Checks: a loss scaled by 2^k (the backward's seed) with dp_psg_set_loss_scale(2^k) gives the
 * very same bits as the unscaled run for norms, bounds, sample_grad, factors, stats and clipped
 * sums (both norm forms, k = 10 and -3); the describe fields input/grad/norm/accum dtype for f32,
 * bf16 and f64 models, read against what each op hands the engine; sum_norm and noise_norm
 * against f64 norms of the accumulator before dp_psg_finish and of .grad after; a fake-quantised
 * weight is still the parameter (per-sample gradients match plain autograd example by example);
 * psg memory lands in the per_sample and gradients categories; bad loss scales fail. */
#include <string.h>
#include "dp_test.h"

enum { B = 4, T = 3, V = 6, D = 4, P = 5, K = 3, MAXN = 32 };
enum { EMB, LNW, LNB, SEQW, SEQB, BIAS, HEADW, NP };
static const char *names[NP] = {"emb", "ln.w", "ln.b", "seq.w", "seq.b", "bias", "head.w"};
static const int64_t shapes[NP][2] = {{V, D}, {D, 0}, {D, 0}, {P, D}, {P, 0}, {P, 0}, {K, P}};

typedef struct {
    dp_dtype dt;
    dp_tensor *p[NP], *idx, *xin, *labels, *qscale;
} model;

static int64_t numel(int k) { return shapes[k][0] * (shapes[k][1] ? shapes[k][1] : 1); }

static model model_new(dp_dtype dt) {
    model m = {.dt = dt};
    for (int k = 0; k < NP; k++) {
        m.p[k] = dp_test_random(dt, shapes[k][1] ? 2 : 1, shapes[k], 200 + (uint64_t)k);
        dp_tensor_set_requires_grad(m.p[k], 1);
        m.p[k]->is_param = 1;
    }
    double iv[B * T] = {1, 1, 3, 0, 5, 0, 2, 2, 2, 5, 4, 5}, lv[B] = {0, 2, 1, 2};
    m.idx = dp_tensor_from_f64(DP_I64, 2, (int64_t[]){B, T}, iv);
    m.xin = dp_test_random(dt, 3, (int64_t[]){B, T, D}, 78);
    m.labels = dp_tensor_from_f64(DP_I64, 1, (int64_t[]){B}, lv);
    m.qscale = dp_tensor_zeros(DP_F32, DP_CPU, 1, (int64_t[]){1});
    return m;
}

static void model_free(model *m) {
    for (int k = 0; k < NP; k++) dp_tensor_release(m->p[k]);
    dp_tensor_release(m->idx); dp_tensor_release(m->xin); dp_tensor_release(m->labels);
    dp_tensor_release(m->qscale);
}

typedef struct { dp_tensor *t[24]; int n; } arena;
static dp_tensor *keep(arena *a, dp_tensor *t) {
    CHECK(t != NULL && a->n < 24, "op failed: %s", dp_last_error());
    if (a->n < 24) a->t[a->n++] = t;
    return t;
}
static void arena_free(arena *a) {
    for (int i = 0; i < a->n; i++) dp_tensor_release(a->t[i]);
    a->n = 0;
}

/* Summed cross-entropy of examples [i0, i0 + n), backward from `seed` (the loss scale). */
static void forward_backward(model *m, int64_t i0, int64_t n, double seed) {
    arena a = {0};
    dp_tensor **p = m->p;
    dp_tensor *idx = keep(&a, dp_narrow(m->idx, 0, i0, n)), *xin = keep(&a, dp_narrow(m->xin, 0, i0, n));
    dp_tensor *h0 = keep(&a, dp_add(keep(&a, dp_embedding(p[EMB], idx)), xin));
    dp_tensor *h = keep(&a, dp_layer_norm(h0, p[LNW], p[LNB], 1e-5));
    dp_tensor *u = keep(&a, dp_tanh(keep(&a, dp_linear(h, p[SEQW], p[SEQB]))));
    int32_t dim1 = 1;
    dp_tensor *z = keep(&a, dp_tanh(keep(&a, dp_bias_add(keep(&a, dp_mean(u, 1, &dim1, 0)), p[BIAS]))));
    dp_tensor *wq = keep(&a, dp_fake_quant(p[HEADW], DP_FP8_E4M3, m->qscale, NULL, 1));
    dp_tensor *logits = keep(&a, dp_linear(z, wq, NULL));
    dp_tensor *loss = keep(&a, dp_cross_entropy(logits, keep(&a, dp_narrow(m->labels, 0, i0, n)), -100, 2));
    dp_tensor *g = keep(&a, dp_tensor_scalar(loss->dtype, DP_CPU, seed));
    CHECK_OK(dp_backward(loss, g, 0));
    arena_free(&a);
}

static dp_psg *engine_new(model *m) {
    dp_psg *psg = dp_psg_new();
    for (int k = 0; k < NP; k++) CHECK(dp_psg_add_param(psg, m->p[k], names[k], 0) == k, "%s", dp_last_error());
    return psg;
}

static void micro_batch(dp_psg *psg, model *m, double seed) {
    CHECK_OK(dp_psg_begin(psg, B));
    CHECK_OK(dp_psg_activate(psg));
    forward_backward(m, 0, B, seed);
    CHECK_OK(dp_psg_activate(NULL));
    CHECK_OK(dp_psg_compute_norms(psg));
}

/* ---------------------------------------------------------------- loss scale */

/* Everything the engine reports for one micro-batch, as doubles. */
typedef struct {
    double norms[NP][B], bounds[NP][B], total[B], grads[NP][B][MAXN], factors[B], acc[NP][MAXN];
    dp_clip_stats st;
} observed;

static void observe(model *m, double L, int form, observed *o) {
    memset(o, 0, sizeof *o);
    dp_psg *psg = engine_new(m);
    CHECK_OK(dp_psg_set_form(psg, -1, form));
    if (L != 1) CHECK_OK(dp_psg_set_loss_scale(psg, L));
    CHECK(dp_psg_loss_scale(psg) == L, "loss_scale %g", dp_psg_loss_scale(psg));
    micro_batch(psg, m, L);
    for (int k = 0; k < NP; k++) {
        CHECK_OK(dp_psg_sample_norms(psg, k, 0, o->norms[k]));
        CHECK_OK(dp_psg_sample_norms(psg, k, 1, o->bounds[k]));
        for (int i = 0; i < B; i++) {
            dp_tensor *g = dp_psg_sample_grad(psg, k, i);
            CHECK_PTR(g);
            if (g) CHECK_OK(dp_tensor_to_f64(g, o->grads[k][i]));
            dp_tensor_release(g);
        }
    }
    CHECK_OK(dp_psg_sample_norms(psg, -1, 1, o->total));
    /* C between the smallest and largest total norm, so some examples are clipped */
    double lo = o->total[0], hi = o->total[0];
    for (int i = 1; i < B; i++) { lo = fmin(lo, o->total[i]); hi = fmax(hi, o->total[i]); }
    dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = (lo + hi) / 2};
    CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, &o->st));
    CHECK(o->st.clipped > 0 && o->st.clipped < B, "clipped %lld of %d", (long long)o->st.clipped, B);
    CHECK_OK(dp_psg_clip_factors(psg, 0, o->factors));
    for (int k = 0; k < NP; k++) {
        dp_tensor *acc = dp_psg_accumulator(psg, k);
        CHECK_PTR(acc);
        if (acc) CHECK_OK(dp_tensor_to_f64(acc, o->acc[k]));
        dp_tensor_release(acc);
    }
    dp_psg_free(psg);
}

static void test_loss_scale(void) {
    model m = model_new(DP_F32);
    static observed ref, got;
    for (int form = DP_PSG_GHOST; form <= DP_PSG_MATERIALISE; form++) {
        observe(&m, 1.0, form, &ref);
        for (int e = -3; e <= 10; e += 13) {
            observe(&m, ldexp(1.0, e), form, &got);
            CHECK(memcmp(&ref.norms, &got.norms, sizeof ref.norms) == 0, "form %d 2^%d: norms differ", form, e);
            CHECK(memcmp(&ref.bounds, &got.bounds, sizeof ref.bounds) == 0, "form %d 2^%d: bounds differ", form, e);
            CHECK(memcmp(&ref.grads, &got.grads, sizeof ref.grads) == 0, "form %d 2^%d: sample_grad differs", form, e);
            CHECK(memcmp(&ref.factors, &got.factors, sizeof ref.factors) == 0, "form %d 2^%d: factors differ", form, e);
            CHECK(memcmp(&ref.acc, &got.acc, sizeof ref.acc) == 0, "form %d 2^%d: clipped sums differ", form, e);
            CHECK(ref.st.clipped == got.st.clipped && ref.st.norm_max == got.st.norm_max &&
                  ref.st.norm_mean == got.st.norm_mean, "form %d 2^%d: stats differ", form, e);
        }
        /* and the check has teeth: without telling the engine, the norms carry the scale */
        dp_psg *psg = engine_new(&m);
        CHECK_OK(dp_psg_set_form(psg, -1, form));
        micro_batch(psg, &m, 8.0);
        double n8[B];
        CHECK_OK(dp_psg_sample_norms(psg, SEQW, 0, n8));
        CHECK(n8[0] == 8 * ref.norms[SEQW][0], "unscaled engine: %g vs 8 * %g", n8[0], ref.norms[SEQW][0]);
        dp_psg_free(psg);
    }
    dp_psg *psg = dp_psg_new();
    const double BAD[] = { 3.0, 0x1p-25, 0.0, -2.0, NAN, INFINITY };
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        int rc = dp_psg_set_loss_scale(psg, BAD[i]);
        CHECK(rc == DP_EARG && strstr(dp_last_error(), "dp_psg_set_loss_scale: scale must be a power of two >= 2^-24"),
              "scale %g: rc %d %s", BAD[i], rc, dp_last_error());
    }
    CHECK(dp_psg_loss_scale(psg) == 1.0, "failed calls changed the scale");
    CHECK_OK(dp_psg_set_loss_scale(psg, 0x1p-24));
    CHECK(dp_psg_set_loss_scale(NULL, 2.0) == DP_EARG, "NULL engine");
    dp_psg_free(psg);
    model_free(&m);
}

/* ---------------------------------------------------------------- describe fields */

static void test_describe(dp_dtype dt) {
    model m = model_new(dt);
    dp_psg *psg = engine_new(&m);
    dp_psg_param_info info;
    for (int k = 0; k < NP; k++) {
        CHECK_OK(dp_psg_describe(psg, k, &info));
        CHECK(info.input_dtype == -1 && info.grad_dtype == -1 && info.norm_dtype == -1 &&
              info.accum_dtype == -1 && info.sum_norm == -1 && info.noise_norm == -1,
              "%s: fields before any tap", names[k]);
    }
    micro_batch(psg, &m, 1.0);
    int32_t compute = dt == DP_F64 ? DP_F64 : DP_F32;
    /* what each op hands over: embedding its indices, bias_add no input, the rest activations */
    const int32_t input[NP] = {DP_I64, dt, dt, dt, dt, -1, dt};
    /* norms: the sequence linear in its Gram/GEMM dtype; the 2-D head, embedding, norm and bias
     * parameters sum in f64 */
    const int32_t norm[NP] = {DP_F64, DP_F64, DP_F64, compute, DP_F64, DP_F64, DP_F64};
    for (int k = 0; k < NP; k++) {
        CHECK_OK(dp_psg_describe(psg, k, &info));
        CHECK(info.input_dtype == input[k] && info.grad_dtype == (int32_t)dt,
              "%s %s: input %d grad %d", dp_dtype_name(dt), names[k], info.input_dtype, info.grad_dtype);
        CHECK(info.norm_dtype == norm[k], "%s %s: norm dtype %d, want %d", dp_dtype_name(dt), names[k],
              info.norm_dtype, norm[k]);
        CHECK(info.accum_dtype == -1, "accum dtype before clipping");
    }
    CHECK_OK(dp_psg_clip_accumulate(psg, &(dp_clip_config){.mode = DP_CLIP_FLAT, .max_norm = 1.0}, NULL));
    double before[NP], acc[MAXN];
    for (int k = 0; k < NP; k++) {
        CHECK_OK(dp_psg_describe(psg, k, &info));
        CHECK(info.accum_dtype == compute, "%s: accum dtype %d", names[k], info.accum_dtype);
        dp_tensor *a = dp_psg_accumulator(psg, k);
        CHECK(a && a->dtype == (dp_dtype)compute, "accumulator dtype");
        CHECK(dp_tensor_mem_category(a) == DP_MEM_GRADIENTS, "%s: accumulator in category %d", names[k],
              dp_tensor_mem_category(a));
        CHECK_OK(dp_tensor_to_f64(a, acc));
        before[k] = 0;
        for (int64_t j = 0; j < numel(k); j++) before[k] += acc[j] * acc[j];
        before[k] = sqrt(before[k]);
        dp_tensor_release(a);
    }
    dp_noise *noise = dp_noise_new_seeded(7, 1, 0);
    const double std = 0.5, scale = 0.25;   /* .grad / scale is exact */
    CHECK_OK(dp_psg_finish(psg, noise, std, scale));
    for (int k = 0; k < NP; k++) {
        CHECK_OK(dp_psg_describe(psg, k, &info));
        dp_tensor *grad = m.p[k]->grad;
        CHECK(grad && dp_tensor_mem_category(grad) == DP_MEM_GRADIENTS, "%s: .grad category", names[k]);
        CHECK_CLOSE(info.sum_norm, before[k], 1e-14);
        /* a loose range here; test_noise_norm checks the value against .grad */
        CHECK(info.noise_norm > 0.2 * std * sqrt((double)numel(k)) && info.noise_norm < 3 * std * sqrt((double)numel(k)),
              "%s: noise norm %g for std %g over %lld", names[k], info.noise_norm, std, (long long)numel(k));
    }
    dp_noise_free(noise);
    dp_psg_free(psg);
    CHECK(dp_mem_get_category() == DP_MEM_OTHER, "thread category left at %d", dp_mem_get_category());
    model_free(&m);
}

/* noise_norm against .grad: with the accumulator known before finish, noise = grad / scale - acc. */
static void test_noise_norm(void) {
    model m = model_new(DP_F32);
    dp_psg *psg = engine_new(&m);
    micro_batch(psg, &m, 1.0);
    CHECK_OK(dp_psg_clip_accumulate(psg, &(dp_clip_config){.mode = DP_CLIP_FLAT, .max_norm = 0.5}, NULL));
    static double acc[NP][MAXN];
    for (int k = 0; k < NP; k++) {
        dp_tensor *a = dp_psg_accumulator(psg, k);
        CHECK_OK(dp_tensor_to_f64(a, acc[k]));
        dp_tensor_release(a);
    }
    dp_noise *noise = dp_noise_new_seeded(9, 2, 5);
    CHECK_OK(dp_psg_finish(psg, noise, 0.3, 0.25));
    for (int k = 0; k < NP; k++) {
        dp_psg_param_info info;
        CHECK_OK(dp_psg_describe(psg, k, &info));
        double g[MAXN], sn = 0, nn = 0;
        CHECK_OK(dp_tensor_to_f64(m.p[k]->grad, g));
        for (int64_t j = 0; j < numel(k); j++) {
            sn += acc[k][j] * acc[k][j];
            double z = g[j] / 0.25 - acc[k][j];
            nn += z * z;
        }
        CHECK_CLOSE(info.sum_norm, sqrt(sn), 1e-14);
        CHECK_CLOSE(info.noise_norm, sqrt(nn), 1e-14);
        dp_tensor_set_grad(m.p[k], NULL);
    }
    /* no noise: noise_norm 0 */
    micro_batch(psg, &m, 1.0);
    CHECK_OK(dp_psg_clip_accumulate(psg, &(dp_clip_config){.mode = DP_CLIP_FLAT, .max_norm = 0.5}, NULL));
    CHECK_OK(dp_psg_finish(psg, NULL, 0, 1.0));
    dp_psg_param_info info;
    CHECK_OK(dp_psg_describe(psg, SEQW, &info));
    CHECK(info.noise_norm == 0 && info.sum_norm > 0, "std 0: noise norm %g, sum norm %g", info.noise_norm, info.sum_norm);
    dp_noise_free(noise);
    dp_psg_free(psg);
    model_free(&m);
}

/* ---------------------------------------------------------------- fp8 weights, memory */

/* head.w used through fake_quant: the engine taps it (no "no per-sample rule" failure) and its
 * per-sample gradient equals plain autograd's on each example alone (straight-through). */
static void test_fake_quant_weight(void) {
    model m = model_new(DP_F64);
    static double ref[B][MAXN];
    for (int i = 0; i < B; i++) {
        forward_backward(&m, i, 1, 1.0);
        CHECK_OK(dp_tensor_to_f64(m.p[HEADW]->grad, ref[i]));
        for (int k = 0; k < NP; k++) dp_tensor_set_grad(m.p[k], NULL);
    }
    dp_psg *psg = engine_new(&m);
    int64_t ps0 = dp_mem_category_current(DP_CPU, DP_MEM_PER_SAMPLE);
    micro_batch(psg, &m, 1.0);
    CHECK(dp_mem_category_current(DP_CPU, DP_MEM_PER_SAMPLE) > ps0, "taps hold no per_sample memory");
    dp_psg_param_info info;
    CHECK_OK(dp_psg_describe(psg, HEADW, &info));
    CHECK(info.taps == 1 && info.kind == DP_PSG_LINEAR_WEIGHT, "head.w taps %d kind %d", info.taps, info.kind);
    int bad = 0;
    for (int i = 0; i < B; i++) {
        double g[MAXN];
        dp_tensor *t = dp_psg_sample_grad(psg, HEADW, i);
        CHECK_OK(dp_tensor_to_f64(t, g));
        for (int64_t j = 0; j < numel(HEADW); j++) bad += fabs(g[j] - ref[i][j]) > 1e-12 * (1 + fabs(ref[i][j]));
        dp_tensor_release(t);
    }
    CHECK(bad == 0, "fake-quantised weight: %d per-sample gradient entries differ from autograd", bad);
    CHECK_OK(dp_psg_clip_accumulate(psg, &(dp_clip_config){.mode = DP_CLIP_FLAT, .max_norm = 1.0}, NULL));
    CHECK(dp_mem_category_current(DP_CPU, DP_MEM_PER_SAMPLE) == ps0, "per_sample memory after the taps are "
          "released: %lld, was %lld", (long long)dp_mem_category_current(DP_CPU, DP_MEM_PER_SAMPLE), (long long)ps0);
    dp_psg_free(psg);
    model_free(&m);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_loss_scale();
    test_describe(DP_F32);
    test_describe(DP_BF16);
    test_describe(DP_F64);
    test_noise_norm();
    test_fake_quant_weight();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_psg_precision");
}
