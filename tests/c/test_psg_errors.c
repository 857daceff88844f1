/* test_psg_errors.c: misuse of the per-sample gradient engine (dp_psg_*) fails with a message that
 * names the culprit and leaves the engine usable (retries and late registration included); plus the
 * paths the model of test_psg.c does not take (a tapped bias beside an unregistered weight, 1-D
 * embedding indices, parameters reached through clone and cast, a bias used twice), checked against
 * closed forms. Run under ASan/LSan for the error paths. */
#include "dp_test.h"

enum { B = 4, T = 3 };

#define CHECK_FAIL(expr, code, text)                                                              \
    do {                                                                                          \
        int rc_ = (expr);                                                                         \
        CHECK(rc_ == (code) && strstr(dp_last_error(), text), "rc %d (want %d): %s", rc_, code,   \
              dp_last_error());                                                                   \
    } while (0)

static dp_tensor *leaf(dp_dtype dt, int32_t ndim, const int64_t *shape, uint64_t seed, int32_t trainable) {
    dp_tensor *t = dp_test_random(dt, ndim, shape, seed);
    CHECK_PTR(t);
    dp_tensor_set_requires_grad(t, trainable);
    t->is_param = trainable;
    return t;
}

/* sum(a) + sum(b), releasing a and b. */
static dp_tensor *plus(dp_tensor *a, dp_tensor *b) {
    dp_tensor *sa = a ? dp_sum(a, 0, NULL, 0) : NULL, *sb = b ? dp_sum(b, 0, NULL, 0) : NULL;
    dp_tensor *out = sa && sb ? dp_add(sa, sb) : NULL;
    CHECK_PTR(out);
    dp_tensor *list[] = {a, b, sa, sb};
    for (int i = 0; i < 4; i++) dp_tensor_release(list[i]);
    return out;
}

/* Backward of sum(y) with psg active, as a micro-batch of `batch` examples; releases y. */
static int backward_sum(dp_psg *psg, int64_t batch, dp_tensor *y) {
    dp_tensor *loss = y ? dp_sum(y, 0, NULL, 0) : NULL;
    CHECK_PTR(loss);
    dp_psg_activate(psg);
    int rc = dp_psg_begin(psg, batch);
    if (!rc) rc = loss ? dp_backward(loss, NULL, 0) : DP_EINTERNAL;
    dp_psg_activate(NULL);
    dp_tensor_release(loss);
    dp_tensor_release(y);
    return rc;
}

static void test_registration(void) {
    int64_t ws[2] = {3, 2}, is[1] = {2};
    dp_tensor *w = leaf(DP_F64, 2, ws, 1, 1), *v = leaf(DP_F64, 2, ws, 2, 1);
    dp_tensor *ints = dp_tensor_zeros(DP_I64, DP_CPU, 1, is), *sq = dp_mul(w, w);
    dp_psg *psg = dp_psg_new();
    CHECK_PTR(psg);
    CHECK(dp_psg_add_param(psg, w, "w", 0) == 0, "first index: %s", dp_last_error());
    CHECK_FAIL(dp_psg_add_param(psg, w, "w2", 0), DP_EARG, "'w2' is already registered as 'w'");
    CHECK_FAIL(dp_psg_add_param(psg, v, "w", 0), DP_EARG, "the name 'w' is already taken");
    CHECK_FAIL(dp_psg_add_param(psg, v, "", 0), DP_EARG, "needs a name");
    CHECK_FAIL(dp_psg_add_param(psg, v, NULL, 0), DP_EARG, "needs a name");
    CHECK_FAIL(dp_psg_add_param(psg, v, "v", -1), DP_EARG, "group of 'v' is -1");
    CHECK_FAIL(dp_psg_add_param(psg, ints, "i", 0), DP_EARG, "float leaves");
    CHECK_FAIL(dp_psg_add_param(psg, sq, "sq", 0), DP_EARG, "the result of an op");
    CHECK_FAIL(dp_psg_add_param(psg, NULL, "n", 0), DP_EARG, "NULL");
    CHECK(dp_psg_num_params(psg) == 1 && dp_psg_num_params(NULL) == 0, "one registered");
    dp_psg_param_info info;
    CHECK_FAIL(dp_psg_describe(psg, 1, &info), DP_EINDEX, "index 1 out of range");
    CHECK_FAIL(dp_psg_describe(psg, 0, NULL), DP_EARG, "out is NULL");
    CHECK_FAIL(dp_psg_set_form(psg, 0, 3), DP_EARG, "form 3");
    CHECK_FAIL(dp_psg_set_form(psg, 2, DP_PSG_GHOST), DP_EINDEX, "index 2");
    CHECK_OK(dp_psg_set_form(psg, 0, DP_PSG_GHOST));
    CHECK_OK(dp_psg_describe(psg, 0, &info));
    CHECK(info.form_request == DP_PSG_GHOST && !strcmp(info.name, "w") && info.trainable, "info");
    /* Before any micro-batch: nothing to read or clip. */
    double out[B];
    dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = 1};
    CHECK_FAIL(dp_psg_begin(psg, 0), DP_EARG, "expected >= 1");
    CHECK_FAIL(dp_psg_compute_norms(psg), DP_EGRAPH, "call dp_psg_begin");
    CHECK_FAIL(dp_psg_sample_norms(psg, 0, 0, out), DP_EGRAPH, "call dp_psg_compute_norms");
    CHECK_FAIL(dp_psg_clip_accumulate(psg, &cfg, NULL), DP_EGRAPH, "call dp_psg_compute_norms");
    CHECK_FAIL(dp_psg_clip_factors(psg, 0, out), DP_EGRAPH, "call dp_psg_clip_accumulate");
    CHECK(dp_psg_accumulator(psg, 0) == NULL && strstr(dp_last_error(), "no accumulator"), "no accumulator");
    CHECK(dp_psg_sample_grad(psg, 0, 0) == NULL && strstr(dp_last_error(), "no per-sample data for 'w'"),
          "sample_grad: %s", dp_last_error());
    CHECK_FAIL(dp_psg_finish(psg, NULL, -1, 1), DP_EARG, "noise std -1");
    CHECK_FAIL(dp_psg_finish(psg, NULL, NAN, 1), DP_EARG, "noise std");
    CHECK_FAIL(dp_psg_finish(psg, NULL, 0, INFINITY), DP_EARG, "scale inf");
    CHECK_FAIL(dp_psg_finish(psg, NULL, 1, 1), DP_EARG, "needs a generator");
    CHECK(w->grad == NULL, "failed finishes write nothing");
    CHECK_FAIL(dp_psg_begin(NULL, 1), DP_EARG, "engine is NULL");
    dp_psg_free(NULL);
    dp_psg_free(psg);
    dp_tensor *list[] = {w, v, ints, sq};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* Graphs the engine must refuse, and states it must refuse to go on from. */
static void test_graph_errors(void) {
    int64_t xs[2] = {B, 3}, x2s[2] = {B, 2}, ws[2] = {2, 3}, one[1] = {1};
    dp_tensor *x = leaf(DP_F64, 2, xs, 3, 1), *x2 = leaf(DP_F64, 2, x2s, 4, 0), *w = leaf(DP_F64, 2, ws, 5, 1);
    dp_tensor *u = leaf(DP_F64, 2, ws, 6, 1), *s = leaf(DP_F64, 1, one, 7, 1), *q = leaf(DP_F64, 2, ws, 8, 1);
    x->is_param = 0;
    dp_psg *psg = dp_psg_new();
    CHECK(dp_psg_add_param(psg, w, "w", 0) == 0 && dp_psg_add_param(psg, u, "u", 1) == 1 &&
          dp_psg_add_param(psg, s, "s", 0) == 2, "register: %s", dp_last_error());

    CHECK_FAIL(backward_sum(psg, B, dp_matmul(x2, w)), DP_EGRAPH, "parameter 'w' [2,3]");
    CHECK(strstr(dp_last_error(), "through matmul") != NULL, "names the op: %s", dp_last_error());
    CHECK(w->grad == NULL, "no gradient through matmul");
    CHECK_FAIL(backward_sum(psg, B, dp_linear(x, q, NULL)), DP_EGRAPH, "is not registered");
    CHECK(q->grad == NULL, "an unregistered parameter gets nothing");
    dp_psg_activate(psg);
    CHECK_FAIL(dp_backward(s, NULL, 0), DP_EGRAPH, "parameter 's'");
    dp_psg_activate(NULL);

    /* u is trainable but unused: compute_norms names it, also when retried. */
    dp_tensor_set_grad(x, NULL);
    CHECK_OK(backward_sum(psg, B, dp_linear(x, w, NULL)));
    CHECK(x->grad != NULL && w->grad == NULL, "inputs still get gradients, parameters do not");
    CHECK_FAIL(dp_psg_compute_norms(psg), DP_EGRAPH, "trainable parameter 'u' [2,3] f64 cpu got no per-sample");
    CHECK_FAIL(dp_psg_compute_norms(psg), DP_EGRAPH, "'u'");
    dp_tensor_set_requires_grad(u, 0);
    dp_tensor_set_requires_grad(s, 0);
    CHECK_FAIL(backward_sum(psg, B + 1, dp_linear(x, w, NULL)), DP_EGRAPH,
               "linear output gradient is [4,2] f64 cpu, expected the micro-batch of 5 examples");
    CHECK_OK(backward_sum(psg, B, dp_linear(x, w, NULL)));
    CHECK_OK(dp_psg_compute_norms(psg));
    CHECK_FAIL(dp_psg_compute_norms(psg), DP_EGRAPH, "already computed");
    double out[B];
    CHECK_FAIL(dp_psg_sample_norms(psg, 1, 0, out), DP_EARG, "'u' is frozen");
    CHECK_FAIL(dp_psg_sample_norms(psg, 3, 0, out), DP_EINDEX, "index 3 out of range");
    CHECK_FAIL(dp_psg_sample_norms(psg, -2, 0, out), DP_EINDEX, "index -2");
    CHECK(dp_psg_sample_grad(psg, 0, B) == NULL && strstr(dp_last_error(), "sample 4 out of range"), "sample");

    /* Bad configurations leave the micro-batch ready for a good one. */
    double th1[1] = {1}, th_zero[2] = {1, 0}, th_nan[2] = {NAN, 1};
    struct { dp_clip_config cfg; const char *msg; } bad[] = {
        {{.mode = 7, .max_norm = 1}, "clipping mode 7"},
        {{.mode = DP_CLIP_FLAT, .max_norm = 0}, "max_norm 0"},
        {{.mode = DP_CLIP_FLAT, .max_norm = -1}, "max_norm -1"},
        {{.mode = DP_CLIP_AUTOMATIC, .max_norm = NAN}, "max_norm nan"},
        {{.mode = DP_CLIP_FLAT, .max_norm = INFINITY}, "max_norm inf"},
        {{.mode = DP_CLIP_AUTOMATIC, .max_norm = 1, .gamma = -1}, "gamma -1"},
        {{.mode = DP_CLIP_PER_LAYER, .n_groups = 1, .thresholds = th1}, "needs 2 thresholds (one per group), got 1"},
        {{.mode = DP_CLIP_PER_LAYER, .n_groups = 2, .thresholds = NULL}, "needs 2 thresholds"},
        {{.mode = DP_CLIP_PER_LAYER, .n_groups = 2, .thresholds = th_zero}, "threshold of group 1 is 0"},
        {{.mode = DP_CLIP_PER_LAYER, .n_groups = 2, .thresholds = th_nan}, "threshold of group 0 is nan"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_FAIL(dp_psg_clip_accumulate(psg, &bad[i].cfg, NULL), DP_EARG, bad[i].msg);
    CHECK_FAIL(dp_psg_clip_accumulate(psg, NULL, NULL), DP_EARG, "config is NULL");
    /* A parameter registered after the norms has no part in this micro-batch. */
    CHECK(dp_psg_add_param(psg, q, "late", 0) == 3, "late registration: %s", dp_last_error());
    dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = 1e9};
    dp_clip_stats st;
    CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, &st));
    CHECK(st.samples == B && st.clipped == 0, "stats");
    CHECK_FAIL(dp_psg_clip_accumulate(psg, &cfg, NULL), DP_EGRAPH, "already clipped");
    CHECK_FAIL(dp_psg_clip_factors(psg, 1, out), DP_EINDEX, "group 1");
    CHECK(dp_psg_sample_grad(psg, 0, 0) == NULL, "no per-sample data after the clip");
    dp_psg_free(psg);
    dp_tensor *list[] = {x, x2, w, u, s, q};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* A tap with the wrong micro-batch size fails every op's backward; one table as embedding and
 * linear weight cannot be combined. */
static void test_shape_errors(void) {
    int64_t xs[2] = {B, 3}, es[2] = {2, 3}, ps[1] = {3}, is[1] = {B};
    double iv[B] = {0, 1, 1, 0};
    dp_tensor *x = leaf(DP_F64, 2, xs, 9, 0), *e = leaf(DP_F64, 2, es, 10, 1), *lw = leaf(DP_F64, 1, ps, 11, 1);
    dp_tensor *lb = leaf(DP_F64, 1, ps, 12, 1), *bb = leaf(DP_F64, 1, ps, 13, 1);
    dp_tensor *idx = dp_tensor_from_f64(DP_I64, 1, is, iv);
    dp_psg *psg = dp_psg_new();
    CHECK(dp_psg_add_param(psg, e, "e", 0) == 0 && dp_psg_add_param(psg, lw, "lw", 0) == 1 &&
          dp_psg_add_param(psg, lb, "lb", 0) == 2 && dp_psg_add_param(psg, bb, "bb", 0) == 3, "register");
    CHECK_FAIL(backward_sum(psg, B + 1, dp_embedding(e, idx)), DP_EGRAPH, "embedding indices is [4]");
    CHECK_FAIL(backward_sum(psg, B + 1, dp_layer_norm(x, lw, lb, 1e-5)), DP_EGRAPH, "layer_norm output gradient");
    CHECK_FAIL(backward_sum(psg, B + 1, dp_bias_add(x, bb)), DP_EGRAPH, "bias_add output gradient");
    CHECK(strstr(dp_last_error(), "micro-batch of 5") != NULL, "message: %s", dp_last_error());
    dp_tensor_set_requires_grad(lw, 0);
    dp_tensor_set_requires_grad(lb, 0);
    dp_tensor_set_requires_grad(bb, 0);
    CHECK_OK(backward_sum(psg, B, plus(dp_embedding(e, idx), dp_linear(x, e, NULL))));
    CHECK_FAIL(dp_psg_compute_norms(psg), DP_EGRAPH, "used both as a linear weight and as an embedding");
    dp_psg_free(psg);
    dp_tensor *list[] = {x, e, lw, lb, bb, idx};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* Taps the model of test_psg.c does not make, on sum(y) where every per-sample gradient has a
 * closed form: a bias beside a frozen unregistered weight (T * ones), a layer-norm bias without
 * weight (T * ones), 1-D embedding indices (ones in row idx_i), weights reached through clone and
 * through an f32 -> f64 cast (ones outer x_i), and a bias added twice to 2-D input (2 * ones).
 * w2 (f64) and w3 (f32) read the same input but accumulate in different dtypes. */
enum { LINB, LNB, EMB, W2, W3, BB, NQ };
static void test_closed_forms(void) {
    static const char *names[NQ] = {"b", "ln.b", "emb", "w2", "w3", "bb"};
    static const int32_t kinds[NQ] = {DP_PSG_LINEAR_BIAS, DP_PSG_NORM_BIAS, DP_PSG_EMBEDDING,
                                      DP_PSG_LINEAR_WEIGHT, DP_PSG_LINEAR_WEIGHT, DP_PSG_BIAS};
    int64_t x3s[3] = {B, T, 2}, x2s[2] = {B, 2}, ws[2] = {3, 2}, bs[1] = {3}, ls[1] = {2}, es[2] = {5, 2};
    int64_t is[1] = {B};
    double iv[B] = {1, 3, 1, 0}, x2v[B * 2];
    dp_tensor *x3 = leaf(DP_F64, 3, x3s, 20, 0), *x2 = leaf(DP_F64, 2, x2s, 21, 0), *f = leaf(DP_F64, 2, ws, 22, 0);
    dp_tensor *idx = dp_tensor_from_f64(DP_I64, 1, is, iv), *p[NQ] = {
        leaf(DP_F64, 1, bs, 23, 1), leaf(DP_F64, 1, ls, 24, 1), leaf(DP_F64, 2, es, 25, 1),
        leaf(DP_F64, 2, ws, 26, 1), leaf(DP_F32, 2, ws, 27, 1), leaf(DP_F64, 1, ls, 28, 1)};
    dp_tensor_to_f64(x2, x2v);
    dp_psg *psg = dp_psg_new();
    for (int k = 0; k < NQ; k++) CHECK(dp_psg_add_param(psg, p[k], names[k], 0) == k, "%s", dp_last_error());
    dp_tensor *w2 = dp_clone(p[W2]), *w3 = dp_cast(p[W3], DP_F64);
    dp_tensor *y = plus(plus(plus(dp_linear(x3, f, p[LINB]), dp_layer_norm(x3, NULL, p[LNB], 1e-5)),
                             plus(dp_embedding(p[EMB], idx), dp_linear(x2, w2, NULL))),
                        plus(plus(dp_linear(x2, w3, NULL), dp_bias_add(x2, p[BB])), dp_bias_add(x2, p[BB])));
    dp_tensor_release(w2);
    dp_tensor_release(w3);
    CHECK_OK(backward_sum(psg, B, y));
    dp_psg_param_info info;
    CHECK_OK(dp_psg_describe(psg, BB, &info));
    CHECK(info.taps == 2, "bb is used twice: %d taps", info.taps);
    CHECK_OK(dp_psg_compute_norms(psg));
    for (int k = 0; k < NQ; k++) {
        double got[B];
        CHECK_OK(dp_psg_sample_norms(psg, k, 0, got));
        CHECK_OK(dp_psg_describe(psg, k, &info));
        CHECK(info.kind == kinds[k] && (k < W2 || k > W3 || info.seq_len == 1), "%s kind %d", names[k], info.kind);
        for (int i = 0; i < B; i++) {
            double want = k <= LNB ? T * sqrt(k == LINB ? 3 : 2)
                          : k == W2 || k == W3 ? sqrt(3) * hypot(x2v[2 * i], x2v[2 * i + 1]) : sqrt(k == BB ? 8 : 2);
            CHECK_CLOSE(got[i], want, 1e-12);
        }
    }
    dp_tensor *g = dp_psg_sample_grad(psg, EMB, 1);
    for (int64_t j = 0; g && j < 10; j++) {
        double v;
        dp_tensor_get_flat(g, j, &v);
        CHECK(v == (j / 2 == 3), "emb sample 1 [%lld] = %g", (long long)j, v);
    }
    dp_tensor_release(g);
    dp_clip_config cfg = {.mode = DP_CLIP_FLAT, .max_norm = 1e6};
    dp_clip_stats st;
    CHECK_OK(dp_psg_clip_accumulate(psg, &cfg, &st));
    CHECK(st.clipped == 0 && st.nonfinite == 0, "nothing clipped");
    CHECK_OK(dp_psg_finish(psg, NULL, 0, 1));
    CHECK(f->grad == NULL && p[W3]->grad && p[W3]->grad->dtype == DP_F32, "grads: frozen none, w3 f32");
    double counts[5] = {1, 2, 0, 1, 0};
    for (int k = 0; k < NQ; k++) {
        int64_t n = p[k]->grad ? dp_tensor_numel(p[k]->grad) : 0;
        CHECK(n == dp_tensor_numel(p[k]), "grad of %s", names[k]);
        for (int64_t j = 0; j < n; j++) {
            double v, want = k <= LNB ? B * T : k == EMB ? counts[j / 2] : k == BB ? 2 * B : 0;
            dp_tensor_get_flat(p[k]->grad, j, &v);
            for (int i = 0; i < B && (k == W2 || k == W3); i++) want += x2v[2 * i + j % 2];
            CHECK_CLOSE(v, want, k == W3 ? 1e-6 : 1e-12);
        }
    }
    dp_psg_free(psg);
    for (int k = 0; k < NQ; k++) dp_tensor_release(p[k]);
    dp_tensor *list[] = {x3, x2, f, idx};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* Freeing the active engine deactivates it: the next backward is plain autograd. */
static void test_free_active(void) {
    int64_t xs[2] = {B, 3}, ws[2] = {2, 3};
    dp_tensor *x = leaf(DP_F64, 2, xs, 30, 0), *w = leaf(DP_F64, 2, ws, 31, 1);
    dp_psg *psg = dp_psg_new();
    CHECK(dp_psg_add_param(psg, w, "w", 0) == 0, "add");
    CHECK_OK(dp_psg_activate(psg));
    CHECK_OK(dp_psg_begin(psg, B));
    dp_psg_free(psg);
    CHECK(dp_psg_active() == NULL, "freed engine deactivated");
    dp_tensor *y = dp_linear(x, w, NULL), *loss = y ? dp_sum(y, 0, NULL, 0) : NULL;
    CHECK_OK(loss ? dp_backward(loss, NULL, 0) : DP_EINTERNAL);
    for (int64_t j = 0; j < 6; j++) {
        double v = NAN, want = 0, xv;
        if (w->grad) dp_tensor_get_flat(w->grad, j, &v);
        for (int64_t i = 0; i < B; i++) {
            int64_t at[2] = {i, j % 3};
            dp_tensor_get(x, at, &xv);
            want += xv;
        }
        CHECK_CLOSE(v, want, 1e-12);
    }
    dp_tensor *list[] = {x, w, y, loss};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_registration();
    test_graph_errors();
    test_shape_errors();
    test_closed_forms();
    test_free_active();
    CHECK(dp_psg_active() == NULL, "no engine left active");
    CHECK(dp_live_tensors() == live, "live tensors %lld, started with %lld", (long long)dp_live_tensors(),
          (long long)live);
    return dp_test_finish("test_psg_errors");
}
