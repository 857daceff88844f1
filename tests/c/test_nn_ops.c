/* test_nn_ops.c: forward values of softmax, log_softmax, layer_norm, embedding, index_add and
 * cross_entropy against naive float64 references computed here, low-precision inputs within
 * stated tolerances, and the error messages for bad indices, labels and parameter shapes. */
#include "dp_test.h"

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    dp_tensor_to_f64(t, v);
    return v;
}

/* Count elements of got differing from want beyond tol (relative to 1 + |want|). */
static int mismatches(const double *got, const double *want, int64_t n, double tol, const char *what) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])))) {
            if (!bad) fprintf(stderr, "%s: element %lld: %.10g vs %.10g\n", what, (long long)i, got[i], want[i]);
            bad++;
        }
    return bad;
}

/* ---------------------------------------------------------------- softmax */

/* Reference (log-)softmax of row-major x (shape) along dim, in long double for headroom. */
static void ref_softmax(const double *x, int ndim, const int64_t *shape, int dim, int use_log, double *y) {
    int64_t outer = 1, inner = 1, D = shape[dim];
    for (int d = 0; d < dim; d++) outer *= shape[d];
    for (int d = dim + 1; d < ndim; d++) inner *= shape[d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            long double m = -INFINITY, s = 0;
            for (int64_t d = 0; d < D; d++) m = fmaxl(m, x[(o * D + d) * inner + j]);
            for (int64_t d = 0; d < D; d++) s += expl(x[(o * D + d) * inner + j] - m);
            for (int64_t d = 0; d < D; d++) {
                long double v = x[(o * D + d) * inner + j] - m;
                y[(o * D + d) * inner + j] = (double)(use_log ? v - logl(s) : expl(v) / s);
            }
        }
}

static void check_softmax(dp_tensor *x, int dim, int use_log, double tol, const char *name) {
    char what[128];
    snprintf(what, sizeof what, "%s %s dim %d", name, use_log ? "log_softmax" : "softmax", dim);
    dp_tensor *y = use_log ? dp_log_softmax(x, dim) : dp_softmax(x, dim);
    CHECK(y != NULL, "%s: %s", what, dp_last_error());
    if (!y) return;
    CHECK(y->dtype == x->dtype && y->ndim == x->ndim, "%s: result %s", what, dp_tensor_desc(y));
    int64_t n = dp_tensor_numel(x);
    double *xv = values(x), *got = values(y), *want = malloc(sizeof(double) * (size_t)n);
    ref_softmax(xv, x->ndim, x->shape, dim < 0 ? dim + x->ndim : dim, use_log, want);
    CHECK(mismatches(got, want, n, tol, what) == 0, "%s differs from the reference", what);
    free(xv);
    free(got);
    free(want);
    dp_tensor_release(y);
}

static void test_softmax(void) {
    int64_t shape[3] = {3, 4, 5};
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 11);
    dp_tensor *xs = dp_affine(x, 4.0, 0.0);   /* wider spread */
    dp_tensor *f = dp_test_random(DP_F32, 3, shape, 12);
    int32_t perm[3] = {2, 0, 1};
    dp_tensor *p = dp_permute(xs, perm);
    for (int dim = -3; dim < 3; dim++)
        for (int use_log = 0; use_log < 2; use_log++) {
            check_softmax(xs, dim, use_log, 1e-13, "f64");
            check_softmax(f, dim, use_log, 1e-6, "f32");
            check_softmax(p, dim, use_log, 1e-13, "permuted f64");
        }

    /* Large logits: subtracting the max keeps everything finite. */
    double big[8] = {1000, 1001, 1002, 999, -1000, -1001, 0, 1};
    int64_t s2[2] = {2, 4};
    dp_tensor *b = dp_tensor_from_f64(DP_F32, 2, s2, big);
    dp_tensor *ls = dp_log_softmax(b, 1), *sm = dp_softmax(b, 1);
    double *lv = values(ls), *sv = values(sm);
    int finite = 1;
    for (int i = 0; i < 8; i++) finite &= isfinite(lv[i]) && isfinite(sv[i]);
    CHECK(finite, "log_softmax of logits near 1000 must stay finite");
    CHECK_CLOSE(lv[2], -0.4401896985611957, 1e-6);   /* 1002 - log(e^1000 + e^1001 + e^1002 + e^999) */
    CHECK_CLOSE(sv[2], exp(-0.4401896985611957), 1e-6);
    free(lv);
    free(sv);
    check_softmax(b, 1, 1, 1e-6, "large logits");
    check_softmax(b, 0, 0, 1e-6, "large logits");

    /* Past the threading threshold, along the last dim and along the first. */
    int64_t s3[2] = {70, 600};
    dp_tensor *l = dp_test_random(DP_F32, 2, s3, 13);
    check_softmax(l, 1, 0, 1e-6, "large");
    check_softmax(l, 0, 1, 1e-6, "large");

    /* bf16: computed in float, rounded once (2^-8 relative) on store. */
    dp_tensor *h = dp_test_random(DP_BF16, 3, shape, 14);
    check_softmax(h, 2, 0, 8e-3, "bf16");
    check_softmax(h, 0, 1, 8e-3, "bf16");

    dp_tensor_release(h);
    dp_tensor_release(l);
    dp_tensor_release(ls);
    dp_tensor_release(sm);
    dp_tensor_release(b);
    dp_tensor_release(p);
    dp_tensor_release(f);
    dp_tensor_release(xs);
    dp_tensor_release(x);
}

/* ---------------------------------------------------------------- layer norm */

static void check_layer_norm(dp_tensor *x, dp_tensor *w, dp_tensor *b, double eps, double tol,
                             const char *what) {
    dp_tensor *y = dp_layer_norm(x, w, b, eps);
    CHECK(y != NULL, "%s: %s", what, dp_last_error());
    if (!y) return;
    int64_t D = x->shape[x->ndim - 1], n = dp_tensor_numel(x), R = n / D;
    double *xv = values(x), *got = values(y), *want = malloc(sizeof(double) * (size_t)n);
    double *wv = w ? values(w) : NULL, *bv = b ? values(b) : NULL;
    for (int64_t r = 0; r < R; r++) {
        double mu = 0, var = 0;
        for (int64_t d = 0; d < D; d++) mu += xv[r * D + d] / (double)D;
        for (int64_t d = 0; d < D; d++) var += (xv[r * D + d] - mu) * (xv[r * D + d] - mu) / (double)D;
        for (int64_t d = 0; d < D; d++)
            want[r * D + d] = (xv[r * D + d] - mu) / sqrt(var + eps) * (wv ? wv[d] : 1) + (bv ? bv[d] : 0);
    }
    CHECK(mismatches(got, want, n, tol, what) == 0, "%s differs from the formula", what);
    free(xv);
    free(got);
    free(want);
    free(wv);
    free(bv);
    dp_tensor_release(y);
}

static void test_layer_norm(void) {
    int64_t shape[3] = {2, 3, 7}, D = 7;
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 21);
    dp_tensor *w = dp_test_random(DP_F64, 1, &D, 22), *b = dp_test_random(DP_F64, 1, &D, 23);
    check_layer_norm(x, w, b, 1e-5, 1e-12, "f64 weight+bias");
    check_layer_norm(x, NULL, b, 1e-5, 1e-12, "f64 bias only");
    check_layer_norm(x, w, NULL, 0.1, 1e-12, "f64 weight only, eps 0.1");
    check_layer_norm(x, NULL, NULL, 1e-12, 1e-12, "f64 plain");

    /* Strided x and a strided weight. */
    int32_t perm[3] = {1, 0, 2};
    dp_tensor *xp = dp_permute(x, perm);
    int64_t D2 = 14;
    dp_tensor *w2 = dp_test_random(DP_F64, 1, &D2, 24);
    dp_tensor *ws = dp_slice(w2, 0, 0, 7, 2);
    check_layer_norm(xp, ws, b, 1e-5, 1e-12, "permuted x, strided weight");

    /* Rows are normalised: mean 0 and population variance 1 (up to eps). */
    dp_tensor *y = dp_layer_norm(x, NULL, NULL, 0.0);
    double *yv = values(y), mu = 0, var = 0;
    for (int d = 0; d < 7; d++) mu += yv[d] / 7;
    for (int d = 0; d < 7; d++) var += (yv[d] - mu) * (yv[d] - mu) / 7;
    CHECK_CLOSE(mu, 0.0, 1e-12);
    CHECK_CLOSE(var, 1.0, 1e-12);
    free(yv);

    int64_t big[2] = {48, 1024}, Db = 1024;
    dp_tensor *xf = dp_test_random(DP_F32, 2, big, 25);
    dp_tensor *wf = dp_test_random(DP_F32, 1, &Db, 26), *bf = dp_test_random(DP_F32, 1, &Db, 27);
    check_layer_norm(xf, wf, bf, 1e-5, 1e-5, "f32 large");

    dp_tensor *xh = dp_cast(x, DP_BF16), *wh = dp_cast(w, DP_BF16), *bh = dp_cast(b, DP_BF16);
    check_layer_norm(xh, wh, bh, 1e-5, 1.6e-2, "bf16");

    dp_tensor_release(xh);
    dp_tensor_release(wh);
    dp_tensor_release(bh);
    dp_tensor_release(xf);
    dp_tensor_release(wf);
    dp_tensor_release(bf);
    dp_tensor_release(y);
    dp_tensor_release(ws);
    dp_tensor_release(w2);
    dp_tensor_release(xp);
    dp_tensor_release(w);
    dp_tensor_release(b);
    dp_tensor_release(x);
}

/* ---------------------------------------------------------------- embedding, index_add */

static void test_embedding(void) {
    int64_t ws[2] = {5, 3};
    dp_tensor *w = dp_test_random(DP_F32, 2, ws, 31);
    double *wv = values(w);
    double iv[6] = {4, 0, 4, 2, 2, 4};
    int64_t is[2] = {2, 3};
    for (int k = 0; k < 2; k++) {
        dp_tensor *idx = dp_tensor_from_f64(k ? DP_I32 : DP_I64, 2, is, iv);
        dp_tensor *e = dp_embedding(w, idx);
        CHECK(e != NULL, "embedding: %s", dp_last_error());
        if (e) {
            CHECK(e->ndim == 3 && e->shape[0] == 2 && e->shape[1] == 3 && e->shape[2] == 3,
                  "embedding shape %s", dp_tensor_desc(e));
            double *ev = values(e), want[18];
            for (int i = 0; i < 6; i++)
                for (int d = 0; d < 3; d++) want[i * 3 + d] = wv[(int)iv[i] * 3 + d];
            CHECK(mismatches(ev, want, 18, 0, "embedding") == 0, "rows with repeated indices (%s)",
                  dp_dtype_name(idx->dtype));
            free(ev);
        }
        dp_tensor_release(e);
        dp_tensor_release(idx);
    }
    /* Large lookups use the threaded path. */
    int64_t vs[2] = {50, 700}, n = 100;
    dp_tensor *bw = dp_test_random(DP_F64, 2, vs, 32);
    double *bwv = values(bw), ids[100];
    for (int i = 0; i < 100; i++) ids[i] = (i * 7) % 50;
    dp_tensor *bi = dp_tensor_from_f64(DP_I64, 1, &n, ids);
    dp_tensor *be = dp_embedding(bw, bi);
    double *bev = values(be);
    int bad = 0;
    for (int i = 0; i < 100; i++)
        for (int d = 0; d < 700; d++) bad += bev[i * 700 + d] != bwv[(int)ids[i] * 700 + d];
    CHECK(bad == 0, "large embedding: %d mismatches", bad);
    free(bev);
    free(bwv);
    dp_tensor_release(be);
    dp_tensor_release(bi);
    dp_tensor_release(bw);
    free(wv);
    dp_tensor_release(w);
}

static void test_index_add(void) {
    double xv[8] = {1, 2, 3, 4, 5, 6, 7, 8}, sv[6] = {10, 20, 30, 40, 50, 60}, iv[3] = {1, 3, 1};
    int64_t xs[2] = {4, 2}, ss[2] = {3, 2}, n = 3;
    dp_tensor *x = dp_tensor_from_f64(DP_F32, 2, xs, xv), *s = dp_tensor_from_f64(DP_F32, 2, ss, sv);
    dp_tensor *i = dp_tensor_from_f64(DP_I32, 1, &n, iv);
    dp_tensor *y = dp_index_add(x, i, s);
    CHECK(y != NULL, "index_add: %s", dp_last_error());
    if (y) {
        double *yv = values(y), want[8] = {1, 2, 3 + 10 + 50, 4 + 20 + 60, 5, 6, 7 + 30, 8 + 40};
        CHECK(mismatches(yv, want, 8, 0, "index_add") == 0, "index_add with a repeated index");
        free(yv);
        double x0;
        dp_tensor_get_flat(x, 2, &x0);
        CHECK(x0 == 3, "index_add must not modify x (got %g)", x0);
    }
    dp_tensor_release(y);
    dp_tensor_release(i);
    dp_tensor_release(s);
    dp_tensor_release(x);

    /* Many rows, wide enough for the column-parallel scatter, every index repeated. */
    int64_t bx[2] = {8, 4096}, bs[2] = {64, 4096}, m = 64;
    dp_tensor *X = dp_tensor_zeros(DP_F64, DP_CPU, 2, bx), *S = dp_tensor_full(DP_F64, DP_CPU, 2, bs, 1.0);
    double ids[64];
    for (int k = 0; k < 64; k++) ids[k] = k % 8;
    dp_tensor *I = dp_tensor_from_f64(DP_I64, 1, &m, ids);
    dp_tensor *Y = dp_index_add(X, I, S);
    double *Yv = values(Y);
    int bad = 0;
    for (int k = 0; k < 8 * 4096; k++) bad += Yv[k] != 8.0;
    CHECK(bad == 0, "wide index_add with repeats: %d wrong sums", bad);
    free(Yv);
    dp_tensor_release(Y);
    dp_tensor_release(I);
    dp_tensor_release(S);
    dp_tensor_release(X);
}

/* ---------------------------------------------------------------- cross-entropy */

static double ref_row_loss(const double *row, int C, int label) {
    double m = -INFINITY, s = 0;
    for (int c = 0; c < C; c++) m = fmax(m, row[c]);
    for (int c = 0; c < C; c++) s += exp(row[c] - m);
    return m + log(s) - row[label];
}

static double scalar_of(dp_tensor *t) {
    double v = NAN;
    if (t) dp_tensor_get_flat(t, 0, &v);
    return v;
}

static void test_cross_entropy(void) {
    int64_t ls[2] = {4, 5}, N = 4;
    dp_tensor *logits = dp_test_random(DP_F64, 2, ls, 41);
    dp_tensor *scaled = dp_affine(logits, 3.0, 0.0);
    double *lv = values(scaled);
    double labv[4] = {1, -100, 4, 0};
    dp_tensor *lab = dp_tensor_from_f64(DP_I64, 1, &N, labv);
    double want[4], total = 0;
    for (int r = 0; r < 4; r++) {
        want[r] = labv[r] == -100 ? 0 : ref_row_loss(lv + r * 5, 5, (int)labv[r]);
        total += want[r];
    }
    dp_tensor *none = dp_cross_entropy(scaled, lab, -100, 0);
    CHECK(none != NULL, "cross_entropy none: %s", dp_last_error());
    if (none) {
        CHECK(none->ndim == 1 && none->shape[0] == 4 && none->dtype == DP_F64, "none result %s",
              dp_tensor_desc(none));
        double *nv = values(none);
        CHECK(mismatches(nv, want, 4, 1e-13, "cross_entropy none") == 0, "per-row losses");
        CHECK(nv[1] == 0, "ignored row gives 0, got %g", nv[1]);
        free(nv);
    }
    dp_tensor *mean = dp_cross_entropy(scaled, lab, -100, 1), *sum = dp_cross_entropy(scaled, lab, -100, 2);
    CHECK(mean && mean->ndim == 0 && sum && sum->ndim == 0, "reductions give 0-d results");
    CHECK_CLOSE(scalar_of(mean), total / 3, 1e-13);
    CHECK_CLOSE(scalar_of(sum), total, 1e-13);

    /* i32 labels; ignore_index may be a valid class id. */
    dp_tensor *lab32 = dp_tensor_from_f64(DP_I32, 1, &N, (double[]){1, 2, 4, 0});
    dp_tensor *m2 = dp_cross_entropy(scaled, lab32, 2, 1);
    CHECK_CLOSE(scalar_of(m2), total / 3, 1e-13);

    /* Every row ignored: the mean is 0, not NaN; the sum is 0. */
    dp_tensor *ign = dp_tensor_full(DP_I64, DP_CPU, 1, &N, -100);
    dp_tensor *m0 = dp_cross_entropy(scaled, ign, -100, 1), *s0 = dp_cross_entropy(scaled, ign, -100, 2);
    CHECK(scalar_of(m0) == 0, "all-ignored mean %g", scalar_of(m0));
    CHECK(scalar_of(s0) == 0, "all-ignored sum %g", scalar_of(s0));

    /* f32 and bf16 logits give f32 losses. */
    dp_tensor *lf = dp_cast(scaled, DP_F32), *lh = dp_cast(scaled, DP_BF16);
    dp_tensor *nf = dp_cross_entropy(lf, lab, -100, 0), *nh = dp_cross_entropy(lh, lab, -100, 0);
    CHECK(nf && nf->dtype == DP_F32 && nh && nh->dtype == DP_F32, "f32/bf16 logits give f32 losses");
    if (nf && nh) {
        double *fv = values(nf), *hv = values(nh), *hl = values(lh), hw[4];
        CHECK(mismatches(fv, want, 4, 1e-6, "f32 cross_entropy") == 0, "f32 per-row losses");
        /* Against the reference on the bf16-rounded logits, the loss is f32-accurate. */
        for (int r = 0; r < 4; r++) hw[r] = labv[r] == -100 ? 0 : ref_row_loss(hl + r * 5, 5, (int)labv[r]);
        CHECK(mismatches(hv, hw, 4, 1e-6, "bf16 cross_entropy") == 0, "bf16 per-row losses");
        CHECK(mismatches(hv, want, 4, 5e-2, "bf16 vs f64 cross_entropy") == 0, "bf16 close to f64");
        free(fv);
        free(hv);
        free(hl);
    }

    /* Many rows: the threaded path. */
    int64_t bs[2] = {512, 100}, bn = 512;
    dp_tensor *bl = dp_test_random(DP_F32, 2, bs, 42);
    double bl_labels[512];
    for (int r = 0; r < 512; r++) bl_labels[r] = r % 7 == 0 ? -100 : (r * 13) % 100;
    dp_tensor *blab = dp_tensor_from_f64(DP_I64, 1, &bn, bl_labels);
    dp_tensor *bsum = dp_cross_entropy(bl, blab, -100, 2);
    double *blv = values(bl), bt = 0;
    for (int r = 0; r < 512; r++)
        if (bl_labels[r] != -100) bt += ref_row_loss(blv + r * 100, 100, (int)bl_labels[r]);
    CHECK_CLOSE(scalar_of(bsum), bt, 1e-6);
    free(blv);

    dp_tensor *objs[] = {bsum, blab, bl, nf, nh, lf, lh, m0, s0, ign, m2, lab32, mean, sum, none, lab, scaled, logits};
    for (size_t k = 0; k < sizeof objs / sizeof objs[0]; k++) dp_tensor_release(objs[k]);
    free(lv);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
    int64_t ws[2] = {5, 3}, is[2] = {2, 2}, N = 3, D = 4, D5 = 5, xs[2] = {2, 4};
    dp_tensor *w = dp_test_random(DP_F32, 2, ws, 51);
    dp_tensor *bad_idx = dp_tensor_from_f64(DP_I64, 2, is, (double[]){0, 1, 7, 2});
    CHECK(dp_embedding(w, bad_idx) == NULL, "out-of-range index accepted");
    CHECK(dp_tensor_numel(w) && strstr(dp_last_error(), "embedding: index 7 at position [1,0] is out of range "
                                                       "for 5 rows") != NULL,
          "message: %s", dp_last_error());
    dp_tensor *neg_idx = dp_tensor_from_f64(DP_I32, 2, is, (double[]){0, -1, 2, 2});
    CHECK(dp_embedding(w, neg_idx) == NULL, "negative index accepted");
    CHECK(strstr(dp_last_error(), "index -1 at position [0,1]") != NULL, "message: %s", dp_last_error());
    dp_tensor *f_idx = dp_tensor_zeros(DP_F32, DP_CPU, 2, is);
    CHECK(dp_embedding(w, f_idx) == NULL, "float indices accepted");
    CHECK(strstr(dp_last_error(), "embedding: indices must be i32 or i64, got [2,2] f32 cpu") != NULL,
          "message: %s", dp_last_error());

    dp_tensor *logits = dp_test_random(DP_F32, 2, (int64_t[]){3, 5}, 52);
    dp_tensor *bad_lab = dp_tensor_from_f64(DP_I64, 1, &N, (double[]){0, 9, 1});
    CHECK(dp_cross_entropy(logits, bad_lab, -100, 1) == NULL, "label 9 of 5 classes accepted");
    CHECK(strstr(dp_last_error(), "cross_entropy: label 9 in row 1 is out of range for 5 classes") != NULL,
          "message: %s", dp_last_error());
    dp_tensor *ok_lab = dp_tensor_from_f64(DP_I64, 1, &N, (double[]){0, 4, 1});
    CHECK(dp_cross_entropy(logits, ok_lab, -100, 3) == NULL, "reduction 3 accepted");
    CHECK(strstr(dp_last_error(), "reduction 3") != NULL, "message: %s", dp_last_error());
    dp_tensor *short_lab = dp_tensor_from_f64(DP_I64, 1, (int64_t[]){2}, (double[]){0, 1});
    CHECK(dp_cross_entropy(logits, short_lab, -100, 0) == NULL, "2 labels for 3 rows accepted");
    CHECK(strstr(dp_last_error(), "logits [3,5] f32 cpu and labels [2] i64 cpu") != NULL, "message: %s",
          dp_last_error());

    dp_tensor *x = dp_test_random(DP_F32, 2, xs, 53);
    dp_tensor *w5 = dp_test_random(DP_F32, 1, &D5, 54);
    CHECK(dp_layer_norm(x, w5, NULL, 1e-5) == NULL, "weight [5] for D 4 accepted");
    CHECK(strcmp(dp_last_error(), "layer_norm: weight has shape [5], expected [4] (last dim of x [2,4] f32 cpu)") == 0,
          "message: %s", dp_last_error());
    dp_tensor *b64 = dp_test_random(DP_F64, 1, &D, 55);
    CHECK(dp_layer_norm(x, NULL, b64, 1e-5) == NULL, "f64 bias for f32 x accepted");
    CHECK(strstr(dp_last_error(), "layer_norm: bias is [4] f64 cpu, expected the dtype of x [2,4] f32 cpu") != NULL,
          "message: %s", dp_last_error());
    CHECK(dp_layer_norm(x, NULL, NULL, -1.0) == NULL, "negative eps accepted");

    dp_tensor *src = dp_test_random(DP_F32, 2, (int64_t[]){3, 5}, 56);
    dp_tensor *ii = dp_tensor_from_f64(DP_I64, 1, &N, (double[]){0, 1, 1});
    CHECK(dp_index_add(x, ii, src) == NULL, "src [3,5] for x [2,4] accepted");
    CHECK(strstr(dp_last_error(), "index_add: src is [3,5] f32 cpu, expected shape [3,4]") != NULL, "message: %s",
          dp_last_error());
    dp_tensor *src4 = dp_test_random(DP_F32, 2, (int64_t[]){3, 4}, 57);
    dp_tensor *ii_bad = dp_tensor_from_f64(DP_I64, 1, &N, (double[]){0, 2, 1});
    CHECK(dp_index_add(x, ii_bad, src4) == NULL, "index 2 into 2 rows accepted");
    CHECK(strstr(dp_last_error(), "index_add: index 2 at position [1] is out of range for 2 rows") != NULL,
          "message: %s", dp_last_error());
    CHECK(dp_softmax(x, 2) == NULL, "softmax dim 2 of a 2-d tensor accepted");
    CHECK(strstr(dp_last_error(), "softmax: dim 2 out of range") != NULL, "message: %s", dp_last_error());

    dp_tensor *objs[] = {w, bad_idx, neg_idx, f_idx, logits, bad_lab, ok_lab, short_lab, x, w5, b64, src, ii,
                         src4, ii_bad};
    for (size_t k = 0; k < sizeof objs / sizeof objs[0]; k++) dp_tensor_release(objs[k]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_softmax();
    test_layer_norm();
    test_embedding();
    test_index_add();
    test_cross_entropy();
    test_errors();
    CHECK(dp_live_tensors() == live, "leaked %lld tensor headers", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_nn_ops");
}
