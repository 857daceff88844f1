/* test_psg.c: the per-sample gradient engine (dp_psg_*) on a small model that uses every op with a
 * per-sample rule, checked against each example run alone through plain autograd in f64: norms in
 * every form, per-sample gradients, flat / per-layer / automatic clipped sums, micro-batches,
 * dp_psg_finish with and without noise, the clip bound in f32 and bf16, and a NaN example. Mainly
 * here to run the engine's C code under ASan/UBSan and LeakSanitizer (LuaJIT is not instrumented). */
#include "dp_test.h"

enum { B = 5, T = 3, V = 7, D = 4, P = 5, K = 3, MAXN = 32 };
enum { EMB, LNW, LNB, SEQW, SEQB, VALW, BASEW, BIAS, HEADW, HEADB, OUTW, NP };
static const char *names[NP] = {"emb", "ln.w", "ln.b", "seq.w", "seq.b", "val.w",
                                "base.w", "bias", "head.w", "head.b", "out.w"};
static const int32_t groups[NP] = {0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1};
static const int64_t shapes[NP][2] = {{V, D}, {D, 0}, {D, 0}, {P, D}, {P, 0}, {P, D},
                                      {P, D}, {P, 0}, {P, P}, {P, 0}, {K, P}};
static const int32_t kinds[NP] = {DP_PSG_EMBEDDING, DP_PSG_NORM_WEIGHT, DP_PSG_NORM_BIAS,
                                  DP_PSG_LINEAR_WEIGHT, DP_PSG_LINEAR_BIAS, DP_PSG_LINEAR_WEIGHT, 0,
                                  DP_PSG_BIAS, DP_PSG_LINEAR_WEIGHT, DP_PSG_LINEAR_BIAS,
                                  DP_PSG_LINEAR_WEIGHT};

typedef struct {
    dp_dtype dt;
    dp_tensor *p[NP];
    dp_tensor *idx, *xin, *labels;   /* (B, T) i64 with repeats, (B, T, D), (B) i64 */
} model;

/* ref[i][k]: example i's gradient of parameter k, from plain autograd on that example alone. */
typedef double grads[B][NP][MAXN];

static int64_t numel(int k) { return shapes[k][0] * (shapes[k][1] ? shapes[k][1] : 1); }
static int trainable(int k) { return k != BASEW; }

static model model_new(dp_dtype dt) {
    model m = {.dt = dt};
    for (int k = 0; k < NP; k++) {
        m.p[k] = dp_test_random(dt, shapes[k][1] ? 2 : 1, shapes[k], 100 + (uint64_t)k);
        CHECK_PTR(m.p[k]);
        dp_tensor_set_requires_grad(m.p[k], trainable(k));
        m.p[k]->is_param = trainable(k);
    }
    double iv[B * T] = {1, 1, 3, 0, 6, 0, 2, 2, 2, 5, 4, 5, 6, 1, 3}, lv[B] = {0, 2, 1, 2, 0};
    int64_t is[2] = {B, T}, xs[3] = {B, T, D}, ls[1] = {B};
    m.idx = dp_tensor_from_f64(DP_I64, 2, is, iv);
    m.xin = dp_test_random(dt, 3, xs, 77);
    m.labels = dp_tensor_from_f64(DP_I64, 1, ls, lv);
    return m;
}

static void model_free(model *m) {
    for (int k = 0; k < NP; k++) dp_tensor_release(m->p[k]);
    dp_tensor_release(m->idx);
    dp_tensor_release(m->xin);
    dp_tensor_release(m->labels);
}

typedef struct { dp_tensor *t[32]; int n; } arena;
static dp_tensor *keep(arena *a, dp_tensor *t) {
    CHECK(t != NULL && a->n < 32, "op failed: %s", dp_last_error());
    if (a->n < 32) a->t[a->n++] = t;
    return t;
}
static void arena_free(arena *a) {
    for (int i = 0; i < a->n; i++) dp_tensor_release(a->t[i]);
    a->n = 0;
}

/* Summed cross-entropy of examples [i0, i0 + n): embedding (+ input), layer norm, a linear on
 * sequences with bias, a second trainable and a frozen linear on the same input, mean over tokens,
 * a standalone bias, then head.w used twice on 2-D inputs and an output linear. */
static dp_tensor *forward(model *m, arena *a, int64_t i0, int64_t n) {
    dp_tensor **p = m->p;
    dp_tensor *idx = keep(a, dp_narrow(m->idx, 0, i0, n)), *xin = keep(a, dp_narrow(m->xin, 0, i0, n));
    dp_tensor *labels = keep(a, dp_narrow(m->labels, 0, i0, n));
    dp_tensor *h0 = keep(a, dp_add(keep(a, dp_embedding(p[EMB], idx)), xin));
    dp_tensor *h = keep(a, dp_layer_norm(h0, p[LNW], p[LNB], 1e-5));
    dp_tensor *u = keep(a, dp_tanh(keep(a, dp_linear(h, p[SEQW], p[SEQB]))));
    dp_tensor *uv = keep(a, dp_add(u, keep(a, dp_linear(h, p[VALW], NULL))));
    dp_tensor *s = keep(a, dp_add(uv, keep(a, dp_linear(h, p[BASEW], NULL))));
    int32_t dim1 = 1;
    dp_tensor *z = keep(a, dp_tanh(keep(a, dp_bias_add(keep(a, dp_mean(s, 1, &dim1, 0)), p[BIAS]))));
    dp_tensor *y1 = keep(a, dp_tanh(keep(a, dp_linear(z, p[HEADW], p[HEADB]))));
    dp_tensor *y2 = keep(a, dp_linear(y1, p[HEADW], NULL));
    dp_tensor *logits = keep(a, dp_linear(y2, p[OUTW], NULL));
    return keep(a, dp_cross_entropy(logits, labels, -100, 2));
}

static void brute_force(model *m, grads ref) {
    for (int64_t i = 0; i < B; i++) {
        arena a = {0};
        CHECK_OK(dp_backward(forward(m, &a, i, 1), NULL, 0));
        for (int k = 0; k < NP; k++) {
            CHECK(trainable(k) == (m->p[k]->grad != NULL), "grad of %s", names[k]);
            if (m->p[k]->grad) CHECK_OK(dp_tensor_to_f64(m->p[k]->grad, ref[i][k]));
            dp_tensor_set_grad(m->p[k], NULL);
        }
        arena_free(&a);
    }
}

static dp_psg *engine_new(model *m) {
    dp_psg *psg = dp_psg_new();
    CHECK_PTR(psg);
    for (int k = 0; k < NP; k++) CHECK(dp_psg_add_param(psg, m->p[k], names[k], groups[k]) == k, "%s", dp_last_error());
    CHECK(dp_psg_num_params(psg) == NP, "num_params");
    return psg;
}

/* Examples [i0, i0 + n) as one micro-batch through the active engine, then compute_norms. */
static void micro_batch(dp_psg *psg, model *m, int64_t i0, int64_t n) {
    arena a = {0};
    CHECK_OK(dp_psg_begin(psg, n));
    CHECK_OK(dp_psg_activate(psg));
    CHECK(dp_psg_active() == psg, "active");
    CHECK_OK(dp_backward(forward(m, &a, i0, n), NULL, 0));
    CHECK_OK(dp_psg_activate(NULL));
    arena_free(&a);
    for (int k = 0; k < NP; k++) {
        dp_psg_param_info info;
        CHECK_OK(dp_psg_describe(psg, k, &info));
        CHECK(m->p[k]->grad == NULL, "the engine wrote %s's grad", names[k]);
        CHECK(info.taps == (k == HEADW ? 2 : trainable(k)), "%s taps %d", names[k], info.taps);
        CHECK(!trainable(k) || info.kind == kinds[k], "%s kind %d", names[k], info.kind);
    }
    CHECK_OK(dp_psg_compute_norms(psg));
}

static double sqnorm(const double *v, int64_t n) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += v[j] * v[j];
    return s;
}

static void check_sample_grads(dp_psg *psg, grads ref, int64_t i0, int64_t n, double tol) {
    for (int k = 0; k < NP; k++) {
        for (int64_t i = 0; i < n && trainable(k); i++) {
            dp_tensor *g = dp_psg_sample_grad(psg, k, i);
            CHECK_PTR(g);
            double v[MAXN] = {0};
            if (g) CHECK(g->dtype == DP_F64 && dp_tensor_numel(g) == numel(k), "%s", dp_tensor_desc(g));
            if (g) dp_tensor_to_f64(g, v);
            for (int64_t j = 0; j < numel(k); j++) CHECK_CLOSE(v[j], ref[i0 + i][k][j], tol);
            dp_tensor_release(g);
        }
    }
    CHECK(dp_psg_sample_grad(psg, BASEW, 0) == NULL, "frozen has no per-sample gradient");
}

static void test_norms(model *m, grads ref, int form) {
    dp_psg *psg = engine_new(m);
    if (form) CHECK_OK(dp_psg_set_form(psg, -1, form));
    micro_batch(psg, m, 0, B);
    double total[B] = {0}, got[B], bound[B];
    for (int k = 0; k < NP; k++) {
        if (!trainable(k)) continue;
        CHECK_OK(dp_psg_sample_norms(psg, k, 0, got));
        CHECK_OK(dp_psg_sample_norms(psg, k, 1, bound));
        for (int i = 0; i < B; i++) {
            double want = sqnorm(ref[i][k], numel(k));
            total[i] += want;
            CHECK(fabs(got[i] * got[i] - want) <= 1e-10 * want, "%s example %d: %.17g vs %.17g", names[k], i,
                  got[i] * got[i], want);
            CHECK(bound[i] >= got[i] && bound[i] <= got[i] * (1 + 1e-9), "%s bound %.17g norm %.17g", names[k],
                  bound[i], got[i]);
        }
    }
    CHECK_OK(dp_psg_sample_norms(psg, -1, 0, got));
    for (int i = 0; i < B; i++) CHECK_CLOSE(got[i] * got[i], total[i], 1e-10);
    CHECK(dp_psg_sample_norms(psg, BASEW, 0, got) == DP_EARG, "frozen has no norms");
    check_sample_grads(psg, ref, 0, B, 1e-10);
    /* Forms: linear weights on sequences take the requested one (AUTO: the cheaper estimate);
     * on 2-D inputs (T = 1) the outer product is always materialised. */
    struct { int k; int64_t t, d, p; } lin[3] = {{SEQW, T, D, P}, {VALW, T, D, P}, {HEADW, 2, P, P}};
    for (int j = 0; j < 3; j++) {
        dp_psg_param_info info;
        CHECK_OK(dp_psg_describe(psg, lin[j].k, &info));
        double ghost = (double)B * lin[j].t * lin[j].t * (lin[j].d + lin[j].p);
        double mat = 2.0 * B * lin[j].t * lin[j].d * lin[j].p;
        int want = form ? form : ghost <= mat ? DP_PSG_GHOST : DP_PSG_MATERIALISE;
        CHECK(info.form_used == want && info.form_request == form, "%s form %d", info.name, info.form_used);
        CHECK(info.seq_len == lin[j].t && info.ghost_flops == ghost && info.materialise_flops == mat,
              "%s seq_len %lld flops %g %g", info.name, (long long)info.seq_len, info.ghost_flops,
              info.materialise_flops);
        CHECK(info.taps == 1 && !strcmp(info.name, names[lin[j].k]), "merged taps of %s", info.name);
    }
    dp_psg_param_info info;
    CHECK_OK(dp_psg_describe(psg, OUTW, &info));
    CHECK(info.form_used == DP_PSG_MATERIALISE && info.seq_len == 1, "out.w form %d", info.form_used);
    CHECK_OK(dp_psg_describe(psg, BASEW, &info));
    CHECK(!info.trainable && info.group == 0 && info.taps == 0, "frozen info");
    dp_psg_free(psg);   /* with taps and norms still held */
}

/* Expected accumulators: sum over examples [0, n) of c[group][i] * ref[i][k]. */
static void check_accumulators(dp_psg *psg, grads ref, double c[2][B], int64_t n, double tol) {
    for (int k = 0; k < NP; k++) {
        dp_tensor *acc = dp_psg_accumulator(psg, k);
        CHECK(trainable(k) == (acc != NULL), "accumulator of %s", names[k]);
        if (!acc) continue;
        double v[MAXN];
        CHECK(acc->dtype == DP_F64, "f64 accumulator");
        dp_tensor_to_f64(acc, v);
        for (int64_t j = 0; j < numel(k); j++) {
            double want = 0;
            for (int64_t i = 0; i < n; i++) want += c[groups[k]][i] * ref[i][k][j];
            CHECK_CLOSE(v[j], want, tol);
        }
        dp_tensor_release(acc);
    }
}

/* Norms of each example: total (group -1) or of one clipping group, from the reference. */
static double ref_norm(grads ref, int i, int group) {
    double s = 0;
    for (int k = 0; k < NP; k++)
        if (trainable(k) && (group < 0 || groups[k] == group)) s += sqnorm(ref[i][k], numel(k));
    return sqrt(s);
}

/* A threshold between the second and third smallest norms: some examples clipped, some not. */
static double mid_threshold(grads ref, int group) {
    double n[B];
    for (int i = 0; i < B; i++) n[i] = ref_norm(ref, i, group);
    for (int i = 1; i < B; i++)
        for (int j = i; j > 0 && n[j] < n[j - 1]; j--) { double t = n[j]; n[j] = n[j - 1]; n[j - 1] = t; }
    return sqrt(n[1] * n[2]);
}

static void test_clip(model *m, grads ref, int mode) {
    double C = mid_threshold(ref, -1), th[2] = {mid_threshold(ref, 0), mid_threshold(ref, 1)};
    dp_clip_config cfg = {.mode = mode, .max_norm = mode == DP_CLIP_AUTOMATIC ? 1.5 : C, .n_groups = 2,
                          .thresholds = th};
    double c[2][B], sum = 0, max = 0;
    int64_t clipped = 0;
    for (int i = 0; i < B; i++) {
        double n = ref_norm(ref, i, -1);
        for (int g = 0; g < 2; g++) {
            double ng = ref_norm(ref, i, g);
            c[g][i] = mode == DP_CLIP_FLAT ? fmin(1, C / n) : mode == DP_CLIP_PER_LAYER ? fmin(1, th[g] / ng)
                                                                                         : 1.5 / (n + 0.01);
        }
        clipped += c[0][i] < 1 || c[1][i] < 1;
        sum += n;
        max = fmax(max, n);
    }
    CHECK(clipped > 0 && (mode != DP_CLIP_FLAT || clipped < B), "mode %d clips %lld", mode, (long long)clipped);
    dp_psg *psg = engine_new(m);
    micro_batch(psg, m, 0, B);
    dp_clip_stats st;
    CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, &st));
    CHECK(st.samples == B && st.clipped == clipped && st.nonfinite == 0, "stats %lld %lld %lld",
          (long long)st.samples, (long long)st.clipped, (long long)st.nonfinite);
    CHECK_CLOSE(st.norm_mean, sum / B, 1e-10);
    CHECK_CLOSE(st.norm_max, max, 1e-10);
    double f[B];
    for (int g = 0; g < (mode == DP_CLIP_PER_LAYER ? 2 : 1); g++) {
        CHECK_OK(dp_psg_clip_factors(psg, g, f));
        for (int i = 0; i < B; i++) CHECK_CLOSE(f[i], c[g][i], 1e-9);
    }
    CHECK(dp_psg_clip_factors(psg, mode == DP_CLIP_PER_LAYER ? 2 : 1, f) == DP_EINDEX, "group out of range");
    if (mode != DP_CLIP_PER_LAYER) memcpy(c[1], c[0], sizeof c[0]);
    check_accumulators(psg, ref, c, B, 1e-9);
    dp_psg_free(psg);
}

/* Two micro-batches (3 + 2 examples) make one logical batch; finish without and with noise, then
 * an empty logical batch (noise alone), then reset. */
static void test_logical_batch(model *m, grads ref) {
    double C = mid_threshold(ref, -1), c[2][B];
    for (int i = 0; i < B; i++) c[0][i] = c[1][i] = fmin(1, C / ref_norm(ref, i, -1));
    dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = C};
    dp_psg *psg = engine_new(m);
    const double std = 0.7, scale = 0.25;
    dp_noise *noise = dp_noise_new_seeded(42, 3, 10), *twin = dp_noise_new_seeded(42, 3, 10);
    CHECK(noise && twin, "noise");
    for (int round = 0; round < 3; round++) {
        if (round < 2) {
            micro_batch(psg, m, 0, 3);
            check_sample_grads(psg, ref, 0, 3, 1e-10);
            CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, NULL));
            micro_batch(psg, m, 3, 2);
            check_sample_grads(psg, ref, 3, 2, 1e-10);
            CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, NULL));
            check_accumulators(psg, ref, c, B, 1e-9);
        }
        dp_tensor *fake = dp_tensor_zeros(m->dt, DP_CPU, 2, shapes[BASEW]);
        CHECK_OK(dp_tensor_set_grad(m->p[BASEW], fake));
        dp_tensor_release(fake);
        double s = round == 0 ? 1.0 / B : scale, sd = round == 0 ? 0 : std;
        CHECK_OK(dp_psg_finish(psg, round == 0 ? NULL : noise, sd, s));
        CHECK(m->p[BASEW]->grad == NULL, "frozen grad cleared");
        uint64_t blocks = 0;
        for (int k = 0; k < NP; k++) {
            if (!trainable(k)) continue;
            double z[MAXN] = {0}, v[MAXN];
            if (round) CHECK_OK(dp_noise_normals(twin, z, numel(k)));
            blocks += (uint64_t)(numel(k) + 1) / 2;
            CHECK(m->p[k]->grad && m->p[k]->grad->dtype == DP_F64, "grad of %s", names[k]);
            if (m->p[k]->grad) dp_tensor_to_f64(m->p[k]->grad, v);
            for (int64_t j = 0; j < numel(k); j++) {
                double acc = 0;
                for (int i = 0; round < 2 && i < B; i++) acc += c[0][i] * ref[i][k][j];
                CHECK_CLOSE(v[j], (acc + sd * z[j]) * s, 1e-9);
            }
            CHECK(dp_psg_accumulator(psg, k) == NULL, "accumulator of %s zeroed", names[k]);
            dp_tensor_set_grad(m->p[k], NULL);
        }
        uint64_t counter;
        CHECK_OK(dp_noise_state(noise, NULL, NULL, &counter));
        CHECK(counter == 10 + (round ? blocks * (uint64_t)round : 0), "noise counter %llu",
              (unsigned long long)counter);
    }
    micro_batch(psg, m, 0, 2);
    CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, NULL));
    CHECK_OK(dp_psg_reset(psg));
    CHECK(dp_psg_accumulator(psg, SEQW) == NULL, "reset drops the accumulators");
    dp_noise_free(noise);
    dp_noise_free(twin);
    dp_psg_free(psg);
}

/* f32 and bf16: each example's clipped contribution, measured on its exact (f64) per-sample
 * gradient, stays within C (per group for per-layer clipping), and the f32 accumulator holds
 * sum_i c_i g_i. tol: per-sample gradients against one example at a time in the same dtype. */
static void test_low_precision_bound(dp_dtype dt, double tol) {
    model m = model_new(dt);
    static grads ref;
    brute_force(&m, ref);
    for (int mode = DP_CLIP_FLAT; mode <= DP_CLIP_AUTOMATIC; mode++) {
        dp_psg *psg = engine_new(&m);
        micro_batch(psg, &m, 0, B);
        static grads sg;
        double n[3][B] = {{0}}, lo = INFINITY;
        for (int k = 0; k < NP; k++)
            for (int i = 0; i < B && trainable(k); i++) {
                dp_tensor *g = dp_psg_sample_grad(psg, k, i);
                CHECK_PTR(g);
                if (g) dp_tensor_to_f64(g, sg[i][k]);
                dp_tensor_release(g);
                for (int64_t j = 0; j < numel(k); j++) CHECK_CLOSE(sg[i][k][j], ref[i][k][j], tol);
                double s = sqnorm(sg[i][k], numel(k));
                n[2][i] += s;
                n[groups[k]][i] += s;
            }
        for (int r = 0; r < 3; r++)
            for (int i = 0; i < B; i++) n[r][i] = sqrt(n[r][i]), lo = fmin(lo, n[r][i]);
        double th[2] = {0.5 * lo, 0.7 * lo}, C = 0.5 * lo, f[2][B];
        dp_clip_config cfg = {.mode = mode, .max_norm = C, .n_groups = 2, .thresholds = th, .gamma = 1e-7};
        CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, NULL));
        int ng = mode == DP_CLIP_PER_LAYER ? 2 : 1;
        for (int g = 0; g < ng; g++) {
            CHECK_OK(dp_psg_clip_factors(psg, g, f[g]));
            for (int i = 0; i < B; i++) {
                double lim = ng == 2 ? th[g] : C, norm = ng == 2 ? n[g][i] : n[2][i];
                CHECK(f[g][i] * norm <= lim && f[g][i] * norm >= lim * (1 - 1e-3), "mode %d: %.17g > %.17g",
                      mode, f[g][i] * norm, lim);
            }
        }
        if (ng == 1) memcpy(f[1], f[0], sizeof f[0]);
        for (int k = 0; k < NP; k++) {
            dp_tensor *acc = trainable(k) ? dp_psg_accumulator(psg, k) : NULL;
            double v[MAXN] = {0};
            CHECK(!trainable(k) || (acc && acc->dtype == DP_F32), "f32 accumulator of %s", names[k]);
            if (acc) dp_tensor_to_f64(acc, v);
            for (int64_t j = 0; acc && j < numel(k); j++) {
                double want = 0;
                for (int i = 0; i < B; i++) want += f[groups[k]][i] * sg[i][k][j];
                CHECK_CLOSE(v[j], want, 1e-5);
            }
            dp_tensor_release(acc);
        }
        dp_psg_free(psg);
    }
    model_free(&m);
}

/* A NaN in example 2's input: its norm is NaN, its factor 0, and the sums hold the others only. */
static void test_nonfinite(model *m, grads ref) {
    int64_t at[3] = {2, 1, 3};
    double saved = 0;
    CHECK_OK(dp_tensor_get(m->xin, at, &saved));
    CHECK_OK(dp_tensor_set(m->xin, at, NAN));
    for (int mode = DP_CLIP_FLAT; mode <= DP_CLIP_AUTOMATIC; mode++) {
        double th[2] = {0.5, 0.5}, c[2][B], f[B], norms[B];
        dp_clip_config cfg = {.mode = mode, .max_norm = 0.5, .n_groups = 2, .thresholds = th};
        for (int i = 0; i < B; i++)
            for (int g = 0; g < 2; g++) {
                double n = ref_norm(ref, i, mode == DP_CLIP_PER_LAYER ? g : -1);
                c[g][i] = i == 2 ? 0 : mode == DP_CLIP_AUTOMATIC ? 0.5 / (n + 0.01) : fmin(1, 0.5 / n);
            }
        dp_psg *psg = engine_new(m);
        micro_batch(psg, m, 0, B);
        for (int k = -1; k < NP; k++) {   /* the total, then each parameter; bounds and values alternate */
            if (k == BASEW) continue;
            CHECK_OK(dp_psg_sample_norms(psg, k, k & 1, norms));
            CHECK(isnan(norms[2]) && isfinite(norms[1]), "norms of %d: %g %g", k, norms[2], norms[1]);
        }
        dp_clip_stats st;
        CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, &st));
        CHECK(st.nonfinite == 1 && st.samples == B && isfinite(st.norm_mean), "nonfinite %lld", (long long)st.nonfinite);
        for (int g = 0; g < (mode == DP_CLIP_PER_LAYER ? 2 : 1); g++) {
            CHECK_OK(dp_psg_clip_factors(psg, g, f));
            CHECK(f[2] == 0.0, "factor of the NaN example %g", f[2]);
        }
        check_accumulators(psg, ref, c, B, 1e-9);
        dp_psg_free(psg);
    }
    CHECK_OK(dp_tensor_set(m->xin, at, saved));
}

int main(void) {
    int64_t live = dp_live_tensors();
    model m = model_new(DP_F64);
    static grads ref;
    brute_force(&m, ref);
    test_norms(&m, ref, DP_PSG_GHOST);
    test_norms(&m, ref, DP_PSG_MATERIALISE);
    test_norms(&m, ref, DP_PSG_AUTO);
    for (int mode = DP_CLIP_FLAT; mode <= DP_CLIP_AUTOMATIC; mode++) test_clip(&m, ref, mode);
    test_logical_batch(&m, ref);
    test_nonfinite(&m, ref);
    model_free(&m);
    test_low_precision_bound(DP_F32, 1e-5);
    test_low_precision_bound(DP_BF16, 2e-2);
    CHECK(dp_psg_active() == NULL, "no engine left active");
    CHECK(dp_live_tensors() == live, "live tensors %lld, started with %lld", (long long)dp_live_tensors(),
          (long long)live);
    return dp_test_finish("test_psg");
}
