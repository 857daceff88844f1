/* test_per_sample_kernels.c: the CPU per-sample-gradient kernels (gram, ghost_norm, scale_rows,
 * row_sums, row_sq_norms, embedding_sq_norms), called through dp_cpu_ops, against float64
 * brute-force loops written here: odd shapes with T = 1 and B = 1, f32/f64/bf16 inputs, the ghost
 * norm identity sum_{t,s} (a_t.a_s)(g_t.g_s) = ||A^T G||_F^2 and its rounding bound, exact zeros
 * for NaN/Inf rows scaled by 0, repeated indices, and thread-count independence. */
#include "dp_test.h"
#include "internal.h"

static const double U32 = 5.9604644775390625e-08, U64 = 1.1102230246251565e-16;   /* 2^-24, 2^-53 */

/* ---------------------------------------------------------------- helpers */

/* CPU tensor of values in [-scale, scale); bf16 is made by casting an f32 tensor. */
static dp_tensor *make(dp_dtype dtype, int32_t ndim, const int64_t *shape, uint64_t seed, double scale) {
    int64_t n = dp_shape_numel(ndim, shape);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    uint64_t s = seed * 7919 + 17;
    for (int64_t i = 0; i < n; i++) v[i] = scale * dp_test_uniform(&s);
    dp_tensor *t = dp_tensor_from_f64(dtype == DP_BF16 ? DP_F32 : dtype, ndim, shape, v);
    free(v);
    if (dtype == DP_BF16) {
        dp_tensor *c = dp_cast(t, DP_BF16);
        dp_tensor_release(t);
        t = c;
    }
    CHECK(t != NULL, "make: %s", dp_last_error());
    return t;
}

/* The stored values (after rounding to the tensor's dtype), as doubles. */
static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (dp_tensor_to_f64(t, v)) CHECK(0, "to_f64 failed: %s", dp_last_error());
    return v;
}

static dp_tensor *empty(dp_dtype dtype, int32_t ndim, const int64_t *shape) {
    return dp_tensor_empty(dtype, DP_CPU, ndim, shape);
}

/* ---------------------------------------------------------------- gram */

static void check_gram(dp_dtype dt, int64_t B, int64_t T, int64_t K) {
    int64_t xs[3] = {B, T, K}, os[3] = {B, T, T};
    dp_tensor *x = make(dt, 3, xs, (uint64_t)(B * 1000 + T * 10 + K), 1.0), *out = empty(dt, 3, os);
    CHECK_OK(dp_cpu_ops.gram(out, x));
    double *xv = values(x), *ov = values(out), u = dt == DP_F32 ? U32 : U64;
    int bad = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t s = t; s < T; s++) {
                const double *xt = xv + (b * T + t) * K, *xs2 = xv + (b * T + s) * K;
                double dot = 0, nt = 0, ns = 0;
                for (int64_t k = 0; k < K; k++) {
                    dot += xt[k] * xs2[k];
                    nt += xt[k] * xt[k];
                    ns += xs2[k] * xs2[k];
                }
                /* Any summation order is within gamma_K |x_t| |x_s| of the exact dot product. */
                double tol = (double)(K + 2) * u * sqrt(nt * ns) + 1e-300;
                if (!(fabs(ov[(b * T + t) * T + s] - dot) <= tol) && bad++ < 3)
                    fprintf(stderr, "gram %s B%lld T%lld K%lld [%lld,%lld,%lld]: %.17g vs %.17g\n",
                            dp_dtype_name(dt), (long long)B, (long long)T, (long long)K,
                            (long long)b, (long long)t, (long long)s, ov[(b * T + t) * T + s], dot);
            }
    CHECK(bad == 0, "gram %s (%lld,%lld,%lld): %d entries off", dp_dtype_name(dt), (long long)B,
          (long long)T, (long long)K, bad);
    free(xv);
    free(ov);
    dp_tensor_release(x);
    dp_tensor_release(out);
}

static void test_gram(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 1, 7}, {3, 1, 5}, {1, 6, 1}, {2, 5, 3},
                                        {3, 7, 17}, {1, 33, 65}, {2, 130, 40}, {9, 16, 24}, {2, 3, 0}};
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            check_gram(d ? DP_F64 : DP_F32, shapes[i][0], shapes[i][1], shapes[i][2]);

    int64_t xs[3] = {2, 3, 4}, os[3] = {2, 3, 3};
    dp_tensor *x = make(DP_BF16, 3, xs, 1, 1.0), *out = empty(DP_F32, 3, os);
    CHECK(dp_cpu_ops.gram(out, x) == DP_EDTYPE && strstr(dp_last_error(), "gram:"),
          "bf16 gram: %s", dp_last_error());
    dp_tensor_release(x);
    dp_tensor_release(out);
}

/* ---------------------------------------------------------------- ghost_norm */

/* Engine pipeline: Grams of A (B,T,d) and G (B,T,p) in dt, then ghost_norm; sq must match both
 * f64 forms of the per-example squared gradient norm within the bound (with ka, kg the worst-case
 * dot-product rounding of d and p terms). */
static void check_ghost_pipeline(dp_dtype dt, int64_t B, int64_t T, int64_t d, int64_t p) {
    int64_t as[3] = {B, T, d}, gs[3] = {B, T, p}, ts[3] = {B, T, T}, bs[1] = {B};
    dp_tensor *A = make(dt, 3, as, (uint64_t)(B + 7 * T + 31 * d), 1.0);
    dp_tensor *G = make(dt, 3, gs, (uint64_t)(B + 5 * T + 37 * p + 1), 0.5);
    dp_tensor *ga = empty(dt, 3, ts), *gg = empty(dt, 3, ts);
    dp_tensor *sq = empty(DP_F64, 1, bs), *bound = empty(DP_F64, 1, bs);
    double u = dt == DP_F32 ? U32 : U64;
    double ka = (double)(d + 2) * u, kg = (double)(p + 2) * u;
    CHECK_OK(dp_cpu_ops.gram(ga, A));
    CHECK_OK(dp_cpu_ops.gram(gg, G));
    CHECK_OK(dp_cpu_ops.ghost_norm(sq, bound, ga, gg, ka, kg));
    double *av = values(A), *gv = values(G), *sqv = sq->data, *bv = bound->data;
    double *m = malloc(sizeof(double) * (size_t)(d * p + 1));
    for (int64_t b = 0; b < B; b++) {
        const double *Ab = av + b * T * d, *Gb = gv + b * T * p;
        double pairs = 0, mag = 0, frob = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t s = 0; s < T; s++) {
                double aa = 0, gg2 = 0;
                for (int64_t k = 0; k < d; k++) aa += Ab[t * d + k] * Ab[s * d + k];
                for (int64_t k = 0; k < p; k++) gg2 += Gb[t * p + k] * Gb[s * p + k];
                pairs += aa * gg2;
                mag += fabs(aa * gg2);
            }
        /* The per-sample gradient A_b^T G_b (d, p), materialised. */
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < p; j++) {
                double v = 0;
                for (int64_t t = 0; t < T; t++) v += Ab[t * d + i] * Gb[t * p + j];
                m[i * p + j] = v;
            }
        for (int64_t i = 0; i < d * p; i++) frob += m[i] * m[i];
        double slack = 8.0 * (double)(T * T + d + p) * U64 * mag + 1e-300;
        CHECK(fabs(pairs - frob) <= slack, "identity B%lld T%lld d%lld p%lld ex %lld: %.17g vs %.17g",
              (long long)B, (long long)T, (long long)d, (long long)p, (long long)b, pairs, frob);
        CHECK(bv[b] >= 0 && fabs(sqv[b] - pairs) <= bv[b] + slack,
              "ghost %s B%lld T%lld d%lld p%lld ex %lld: sq %.17g, f64 %.17g, bound %.3g",
              dp_dtype_name(dt), (long long)B, (long long)T, (long long)d, (long long)p,
              (long long)b, sqv[b], pairs, bv[b]);
    }
    free(m);
    free(av);
    free(gv);
    dp_tensor *all[6] = {A, G, ga, gg, sq, bound};
    for (int i = 0; i < 6; i++) dp_tensor_release(all[i]);
}

/* Grams given directly (upper triangles; NaN below, which must not be read): sq and bound against
 * the contract's formulas in f64. Also the same bits with one thread as with all. */
static void check_ghost_formula(dp_dtype dt, int64_t B, int64_t T) {
    int64_t ts[3] = {B, T, T}, bs[1] = {B};
    int64_t n = B * T * T;
    double *va = malloc(sizeof(double) * (size_t)n), *vg = malloc(sizeof(double) * (size_t)n);
    uint64_t s = (uint64_t)(B * 131 + T);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t r = 0; r < T; r++) {
                int64_t i = (b * T + t) * T + r;
                double x = dp_test_uniform(&s), y = dp_test_uniform(&s);
                va[i] = r < t ? NAN : r == t ? 2 + x : x;   /* diagonals positive, as Grams' are */
                vg[i] = r < t ? NAN : r == t ? 1.5 + y : y;
            }
    dp_tensor *ga = dp_tensor_from_f64(dt, 3, ts, va), *gg = dp_tensor_from_f64(dt, 3, ts, vg);
    dp_tensor *sq = empty(DP_F64, 1, bs), *bound = empty(DP_F64, 1, bs);
    dp_tensor *sq1 = empty(DP_F64, 1, bs), *bound1 = empty(DP_F64, 1, bs);
    double ka = 0.37, kg = 1.9;
    CHECK_OK(dp_cpu_ops.ghost_norm(sq, bound, ga, gg, ka, kg));
    dp_set_num_threads(1);
    CHECK_OK(dp_cpu_ops.ghost_norm(sq1, bound1, ga, gg, ka, kg));
    dp_set_num_threads(0);
    double *a = values(ga), *g = values(gg), *sqv = sq->data, *bv = bound->data;
    for (int64_t b = 0; b < B; b++) {
        const double *Ab = a + b * T * T, *Gb = g + b * T * T;
        double rs = 0, rb = 0, mag = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t r = 0; r < T; r++) {
                int64_t lo = t < r ? t : r, hi = t < r ? r : t;
                double at = Ab[lo * T + hi], gt = Gb[lo * T + hi];
                rs += at * gt;
                mag += fabs(at * gt);
                rb += ka * sqrt(Ab[t * T + t]) * sqrt(Ab[r * T + r]) * fabs(gt) +
                      kg * fabs(at) * sqrt(Gb[t * T + t]) * sqrt(Gb[r * T + r]);
            }
        CHECK(fabs(sqv[b] - rs) <= 1e-12 * mag, "ghost formula %s T%lld ex %lld: sq %.17g vs %.17g",
              dp_dtype_name(dt), (long long)T, (long long)b, sqv[b], rs);
        CHECK_CLOSE(bv[b], rb, 1e-12);
    }
    CHECK(memcmp(sq->data, sq1->data, sizeof(double) * (size_t)B) == 0 &&
              memcmp(bound->data, bound1->data, sizeof(double) * (size_t)B) == 0,
          "ghost_norm %s differs between 1 and %d threads", dp_dtype_name(dt), dp_get_num_threads());
    free(va);
    free(vg);
    free(a);
    free(g);
    dp_tensor *all[6] = {ga, gg, sq, bound, sq1, bound1};
    for (int i = 0; i < 6; i++) dp_tensor_release(all[i]);
}

static void test_ghost_norm(void) {
    static const int64_t shapes[][4] = {{1, 1, 1, 1}, {1, 1, 5, 3}, {3, 1, 4, 6}, {2, 5, 3, 7},
                                        {4, 9, 16, 5}, {2, 33, 20, 31}, {8, 80, 12, 10}};
    for (int d = 0; d < 2; d++) {
        dp_dtype dt = d ? DP_F64 : DP_F32;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            check_ghost_pipeline(dt, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
        check_ghost_formula(dt, 1, 1);
        check_ghost_formula(dt, 3, 7);
        check_ghost_formula(dt, 9, 70);   /* above the parallel threshold */
    }
    int64_t ts[3] = {2, 3, 3}, bs[1] = {2};
    dp_tensor *a = make(DP_F32, 3, ts, 3, 1.0), *g = make(DP_F64, 3, ts, 4, 1.0);
    dp_tensor *sq = empty(DP_F64, 1, bs), *bound = empty(DP_F64, 1, bs);
    CHECK(dp_cpu_ops.ghost_norm(sq, bound, a, g, 1, 1) == DP_EDTYPE &&
              strstr(dp_last_error(), "ghost_norm:"), "mixed dtypes: %s", dp_last_error());
    dp_tensor *all[4] = {a, g, sq, bound};
    for (int i = 0; i < 4; i++) dp_tensor_release(all[i]);
}

/* ---------------------------------------------------------------- scale_rows */

static void check_scale_rows(dp_dtype xt, dp_dtype ot, int64_t B, int64_t R, int64_t N) {
    int64_t xs[3] = {B, R, N}, bs[1] = {B}, n = B * R * N;
    double *raw = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double *f = malloc(sizeof(double) * (size_t)B);
    static const double factors[] = {0.5, 0.0, -1.75, 3e-3, 1.0, 7.25, 0.0, 1e-30};
    uint64_t s = (uint64_t)(B * 7 + R * 3 + N);
    for (int64_t i = 0; i < n; i++) raw[i] = 4 * dp_test_uniform(&s);
    for (int64_t b = 0; b < B; b++) {
        f[b] = factors[b % 8];
        int64_t base = b * R * N;   /* specials in every example: a zero factor must hide them */
        raw[base] = NAN;
        if (R * N > 1) raw[base + R * N - 1] = b % 2 ? INFINITY : -INFINITY;
    }
    dp_tensor *x32 = dp_tensor_from_f64(xt == DP_F64 ? DP_F64 : DP_F32, 3, xs, raw);
    dp_tensor *x = xt == DP_BF16 ? dp_cast(x32, DP_BF16) : x32;
    if (x != x32) dp_tensor_release(x32);
    dp_tensor *fac = dp_tensor_from_f64(DP_F64, 1, bs, f), *out = empty(ot, 3, xs);
    CHECK_OK(dp_cpu_ops.scale_rows(out, x, fac));
    double *xv = values(x), *ov = values(out);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double fb = f[i / (R * N)], prod = fb * xv[i];
        double want = fb == 0 ? 0.0 : ot == DP_F32 ? (double)(float)prod : prod;
        int ok = isnan(want) ? isnan(ov[i]) : ov[i] == want;
        if (!ok && bad++ < 3)
            fprintf(stderr, "scale_rows %s->%s [%lld]: %.17g vs %.17g\n", dp_dtype_name(xt),
                    dp_dtype_name(ot), (long long)i, ov[i], want);
    }
    CHECK(bad == 0, "scale_rows %s->%s (%lld,%lld,%lld): %d elements differ", dp_dtype_name(xt),
          dp_dtype_name(ot), (long long)B, (long long)R, (long long)N, bad);
    free(raw);
    free(f);
    free(xv);
    free(ov);
    dp_tensor_release(x);
    dp_tensor_release(fac);
    dp_tensor_release(out);
}

static void test_scale_rows(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 1, 5}, {1, 4, 7}, {5, 3, 9}, {9, 61, 130},
                                        {1, 300, 200}};
    static const dp_dtype xts[] = {DP_F32, DP_F64, DP_BF16};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int x = 0; x < 3; x++)
            for (int o = 0; o < 2; o++)
                check_scale_rows(xts[x], o ? DP_F64 : DP_F32, shapes[i][0], shapes[i][1], shapes[i][2]);
}

/* ---------------------------------------------------------------- row_sums */

static void check_row_sums(dp_dtype gt, dp_dtype xt, dp_dtype st, int with_x, int64_t B, int64_t T,
                           int64_t N) {
    int64_t gs[3] = {B, T, N}, ms[1] = {B * T}, os[2] = {B, N};
    uint64_t seed = (uint64_t)(B * 100 + T * 10 + N);
    dp_tensor *g = make(gt, 3, gs, seed, 1.0), *x = with_x ? make(xt, 3, gs, seed + 1, 2.0) : NULL;
    dp_tensor *mean = with_x ? make(st, 1, ms, seed + 2, 1.0) : NULL;
    dp_tensor *rstd = with_x ? make(st, 1, ms, seed + 3, 1.0) : NULL;
    if (rstd) {   /* rstd in [0.5, 2.5) */
        dp_tensor *shifted = dp_affine(rstd, 1.0, 1.5);
        dp_tensor_release(rstd);
        rstd = shifted;
    }
    dp_tensor *out = empty(DP_F64, 2, os);
    CHECK_OK(dp_cpu_ops.row_sums(out, g, x, mean, rstd));
    double *gv = values(g), *xv = x ? values(x) : NULL, *mv = x ? values(mean) : NULL;
    double *rv = x ? values(rstd) : NULL, *ov = out->data;
    int bad = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < N; j++) {
            double sum = 0, mag = 0;
            for (int64_t t = 0; t < T; t++) {
                int64_t i = (b * T + t) * N + j;
                double term = x ? gv[i] * ((xv[i] - mv[b * T + t]) * rv[b * T + t]) : gv[i];
                sum += term;
                mag += fabs(term);
            }
            if (!(fabs(ov[b * N + j] - sum) <= 1e-13 * mag + 1e-300) && bad++ < 3)
                fprintf(stderr, "row_sums [%lld,%lld]: %.17g vs %.17g\n", (long long)b,
                        (long long)j, ov[b * N + j], sum);
        }
    CHECK(bad == 0, "row_sums g %s x %s stats %s (%lld,%lld,%lld): %d off", dp_dtype_name(gt),
          x ? dp_dtype_name(xt) : "none", dp_dtype_name(st), (long long)B, (long long)T,
          (long long)N, bad);
    free(gv);
    free(xv);
    free(mv);
    free(rv);
    dp_tensor *all[5] = {g, x, mean, rstd, out};
    for (int i = 0; i < 5; i++) dp_tensor_release(all[i]);
}

static void test_row_sums(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {2, 1, 5}, {1, 7, 1}, {3, 5, 9}, {2, 17, 300},
                                        {32, 16, 80}, {3, 40, 513}, {2, 3, 1100}};
    /* g, x, mean/rstd dtypes: the f32 fast path, f64, bf16, and mixed. */
    static const dp_dtype combos[][3] = {{DP_F32, DP_F32, DP_F32}, {DP_F64, DP_F64, DP_F64},
                                         {DP_BF16, DP_BF16, DP_F32}, {DP_BF16, DP_F32, DP_F64},
                                         {DP_F32, DP_F64, DP_F32}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (size_t c = 0; c < sizeof combos / sizeof combos[0]; c++)
            for (int with_x = 0; with_x < 2; with_x++)
                check_row_sums(combos[c][0], combos[c][1], combos[c][2], with_x, shapes[i][0],
                               shapes[i][1], shapes[i][2]);
}

/* ---------------------------------------------------------------- row_sq_norms */

static void test_row_sq_norms(void) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 9}, {7, 1}, {5, 33}, {3, 1000}, {64, 700}};
    static const dp_dtype dts[] = {DP_F32, DP_F64, DP_BF16};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int d = 0; d < 3; d++) {
            int64_t R = shapes[i][0], N = shapes[i][1], rs[1] = {R};
            dp_tensor *x = make(dts[d], 2, shapes[i], (uint64_t)(R * 7 + N), 3.0);
            dp_tensor *out = empty(DP_F64, 1, rs);
            CHECK_OK(dp_cpu_ops.row_sq_norms(out, x));
            double *xv = values(x), *ov = out->data;
            int bad = 0;
            for (int64_t r = 0; r < R; r++) {
                double s = 0;
                for (int64_t j = 0; j < N; j++) s += xv[r * N + j] * xv[r * N + j];
                if (!(fabs(ov[r] - s) <= 1e-13 * s) && bad++ < 3)
                    fprintf(stderr, "row_sq_norms row %lld: %.17g vs %.17g\n", (long long)r, ov[r], s);
            }
            CHECK(bad == 0, "row_sq_norms %s (%lld,%lld): %d rows off", dp_dtype_name(dts[d]),
                  (long long)R, (long long)N, bad);
            free(xv);
            dp_tensor_release(x);
            dp_tensor_release(out);
        }
}

/* ---------------------------------------------------------------- embedding_sq_norms */

enum { IDX_DISTINCT, IDX_SMALL_VOCAB, IDX_ALL_SAME, IDX_WIDE };

static int64_t index_value(int pattern, int64_t b, int64_t t, int64_t T, uint64_t *s) {
    switch (pattern) {
    case IDX_DISTINCT: return 1000 + ((t * 7 + b) % T) * 3;   /* a permutation when gcd(7, T) = 1 */
    case IDX_SMALL_VOCAB: return (int64_t)((dp_test_uniform(s) + 1) * 2);   /* 0..3 */
    case IDX_ALL_SAME: return 5;
    default:   /* i64 only: negative and beyond 32 bits, multiples of 2^20 to crowd hash slots */
        return ((int64_t)((dp_test_uniform(s) + 1) * 3) - 2) * ((int64_t)1 << 20) +
               (t % 3 == 0 ? ((int64_t)1 << 40) : 0);
    }
}

static void check_embedding(dp_dtype it, dp_dtype gt, int pattern, int64_t B, int64_t T, int64_t D) {
    int64_t is[2] = {B, T}, gs[3] = {B, T, D}, bs[1] = {B};
    double *iv = malloc(sizeof(double) * (size_t)(B * T));
    uint64_t s = (uint64_t)(pattern * 1000 + B * 10 + T);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) iv[b * T + t] = (double)index_value(pattern, b, t, T, &s);
    dp_tensor *idx = dp_tensor_from_f64(it, 2, is, iv);
    dp_tensor *g = make(gt, 3, gs, (uint64_t)(B + T + D), 1.0);
    dp_tensor *out = empty(DP_F64, 1, bs), *out1 = empty(DP_F64, 1, bs);
    CHECK_OK(dp_cpu_ops.embedding_sq_norms(out, idx, g));
    dp_set_num_threads(1);
    CHECK_OK(dp_cpu_ops.embedding_sq_norms(out1, idx, g));
    dp_set_num_threads(0);
    double *gv = values(g), *ov = out->data;
    int bad = 0;
    for (int64_t b = 0; b < B; b++) {
        double total = 0, mag = 0;
        for (int64_t t = 0; t < T; t++) {
            int first = 1;
            for (int64_t r = 0; r < t; r++) first &= iv[b * T + r] != iv[b * T + t];
            if (!first) continue;
            for (int64_t d = 0; d < D; d++) {
                double sum = 0, abs_sum = 0;
                for (int64_t r = t; r < T; r++)
                    if (iv[b * T + r] == iv[b * T + t]) {
                        sum += gv[(b * T + r) * D + d];
                        abs_sum += fabs(gv[(b * T + r) * D + d]);
                    }
                total += sum * sum;
                mag += abs_sum * abs_sum;
            }
        }
        if (!(fabs(ov[b] - total) <= 1e-13 * mag + 1e-300) && bad++ < 3)
            fprintf(stderr, "embedding ex %lld: %.17g vs %.17g\n", (long long)b, ov[b], total);
    }
    CHECK(bad == 0, "embedding_sq_norms %s %s pattern %d (%lld,%lld,%lld): %d examples off",
          dp_dtype_name(it), dp_dtype_name(gt), pattern, (long long)B, (long long)T, (long long)D,
          bad);
    CHECK(memcmp(out->data, out1->data, sizeof(double) * (size_t)B) == 0,
          "embedding_sq_norms differs between 1 and %d threads", dp_get_num_threads());
    free(iv);
    free(gv);
    dp_tensor *all[4] = {idx, g, out, out1};
    for (int i = 0; i < 4; i++) dp_tensor_release(all[i]);
}

static void test_embedding_sq_norms(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 1, 6}, {3, 1, 4}, {2, 9, 5}, {4, 33, 17},
                                        {2, 128, 300}, {16, 64, 40}};
    static const dp_dtype gts[] = {DP_F32, DP_F64, DP_BF16};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int pattern = 0; pattern < 4; pattern++)
            for (int ix = 0; ix < 2; ix++)
                for (int d = 0; d < 3; d++) {
                    if (pattern == IDX_WIDE && ix == 0) continue;
                    check_embedding(ix ? DP_I64 : DP_I32, gts[d], pattern, shapes[i][0],
                                    shapes[i][1], shapes[i][2]);
                }
    int64_t is[2] = {2, 3}, gs[3] = {2, 3, 4}, bs[1] = {2};
    dp_tensor *idx = make(DP_F32, 2, is, 1, 1.0), *g = make(DP_F32, 3, gs, 2, 1.0);
    dp_tensor *out = empty(DP_F64, 1, bs);
    CHECK(dp_cpu_ops.embedding_sq_norms(out, idx, g) == DP_EDTYPE &&
              strstr(dp_last_error(), "embedding_sq_norms:"), "f32 indices: %s", dp_last_error());
    dp_tensor_release(idx);
    dp_tensor_release(g);
    dp_tensor_release(out);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_gram();
    test_ghost_norm();
    test_scale_rows();
    test_row_sums();
    test_row_sq_norms();
    test_embedding_sq_norms();
    CHECK(dp_live_tensors() == live, "leaked %lld tensor headers", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_per_sample_kernels");
}
