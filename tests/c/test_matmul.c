/* test_matmul.c: dp_matmul and dp_linear forward against a naive float64 reference (every float
 * dtype, transposed and strided views, broadcast batch dims, 1-D promotion), the GEMM kernel's
 * alpha/beta and engines, and the error messages. */
#include <pthread.h>
#include <stdlib.h>
#include "dp_test.h"
#include "internal.h"

/* Tolerances, relative to |ref| (the final rounding) plus a term relative to sum |a||b| (f32
 * accumulation: ~K * 2^-24). The low-precision references use the already-rounded inputs, so
 * only the output rounding (half an ulp) and the f32 sums separate them. */
typedef struct tol {
    double rel, scale, abs;
} tol;
static const tol TOL_F64 = {1e-14, 1e-14, 0};
static const tol TOL_F32 = {1e-6, 1e-6, 0};
static const tol TOL_BF16 = {1.0 / 256, 1e-5, 0};          /* 2^-9 half ulp, with room */
static const tol TOL_F16 = {1.0 / 2048, 1e-5, 1e-7};       /* 2^-11 */
static const tol TOL_E4M3 = {1.0 / 16, 1e-5, 1.0 / 1024};  /* 2^-4; subnormal step 2^-9 */
static const tol TOL_E5M2 = {1.0 / 8, 1e-5, 1.0 / 65536};  /* 2^-3; subnormal step 2^-16 */

static tol tol_for(dp_dtype dt) {
    switch (dt) {
    case DP_F64: return TOL_F64;
    case DP_F32: return TOL_F32;
    case DP_BF16: return TOL_BF16;
    case DP_F16: return TOL_F16;
    case DP_FP8_E4M3: return TOL_E4M3;
    default: return TOL_E5M2;
    }
}

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    dp_tensor_to_f64(t, v);
    return v;
}

/* Reference a @ b with NumPy semantics, in double: values and sum |a||b| per output element. */
typedef struct ref {
    int32_t ndim;
    int64_t shape[8];
    int64_t n;
    double *val, *scale;
} ref;

static ref ref_matmul(const dp_tensor *a, const dp_tensor *b) {
    ref r = {0};
    double *av = values(a), *bv = values(b);
    int64_t as[8], bs[8];
    int32_t an = a->ndim, bn = b->ndim;
    if (an == 1) { as[0] = 1; as[1] = a->shape[0]; an = 2; } else memcpy(as, a->shape, sizeof(int64_t) * an);
    if (bn == 1) { bs[0] = b->shape[0]; bs[1] = 1; bn = 2; } else memcpy(bs, b->shape, sizeof(int64_t) * bn);
    int64_t M = as[an - 2], K = as[an - 1], N = bs[bn - 1];
    int32_t nb = (an > bn ? an : bn) - 2;
    int64_t batch[8], nbatch = 1;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (an - 2)), ib = i - (nb - (bn - 2));
        int64_t sa = ia >= 0 ? as[ia] : 1, sb = ib >= 0 ? bs[ib] : 1;
        batch[i] = sa > sb ? sa : sb;
        nbatch *= batch[i];
    }
    r.n = nbatch * M * N;
    r.val = calloc((size_t)(r.n ? r.n : 1), sizeof(double));
    r.scale = calloc((size_t)(r.n ? r.n : 1), sizeof(double));
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t rem = bi, offa = 0, offb = 0, stra = M * K, strb = K * N;
        for (int i = nb - 1; i >= 0; i--) {
            int64_t k = rem % batch[i];
            rem /= batch[i];
            int ia = i - (nb - (an - 2)), ib = i - (nb - (bn - 2));
            if (ia >= 0) { offa += (as[ia] == 1 ? 0 : k) * stra; stra *= as[ia]; }
            if (ib >= 0) { offb += (bs[ib] == 1 ? 0 : k) * strb; strb *= bs[ib]; }
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0, sc = 0;
                for (int64_t k = 0; k < K; k++) {
                    double p = av[offa + m * K + k] * bv[offb + k * N + n];
                    s += p;
                    sc += fabs(p);
                }
                r.val[bi * M * N + m * N + n] = s;
                r.scale[bi * M * N + m * N + n] = sc;
            }
    }
    for (int i = 0; i < nb; i++) r.shape[r.ndim++] = batch[i];
    if (a->ndim > 1) r.shape[r.ndim++] = M;
    if (b->ndim > 1) r.shape[r.ndim++] = N;
    free(av);
    free(bv);
    return r;
}

/* x (..., in) @ w (out, in)^T + bias. */
static ref ref_linear(const dp_tensor *x, const dp_tensor *w, const dp_tensor *bias) {
    ref r = {0};
    double *xv = values(x), *wv = values(w), *bv = bias ? values(bias) : NULL;
    int64_t in = w->shape[1], outf = w->shape[0], rows = dp_tensor_numel(x) / (in ? in : 1);
    r.n = rows * outf;
    r.val = calloc((size_t)(r.n ? r.n : 1), sizeof(double));
    r.scale = calloc((size_t)(r.n ? r.n : 1), sizeof(double));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t o = 0; o < outf; o++) {
            double s = bv ? bv[o] : 0, sc = fabs(s);
            for (int64_t k = 0; k < in; k++) {
                s += xv[i * in + k] * wv[o * in + k];
                sc += fabs(xv[i * in + k] * wv[o * in + k]);
            }
            r.val[i * outf + o] = s;
            r.scale[i * outf + o] = sc;
        }
    r.ndim = x->ndim;
    memcpy(r.shape, x->shape, sizeof(int64_t) * x->ndim);
    r.shape[r.ndim - 1] = outf;
    free(xv);
    free(wv);
    free(bv);
    return r;
}

/* Compare y with r and free r; returns the number of bad elements. */
static int expect(const char *what, const dp_tensor *y, ref r, tol t) {
    int bad = 0;
    CHECK(y != NULL, "%s: %s", what, dp_last_error());
    if (y) {
        int same = y->ndim == r.ndim;
        for (int i = 0; same && i < r.ndim; i++) same = y->shape[i] == r.shape[i];
        CHECK(same, "%s: shape %s", what, dp_tensor_desc(y));
        if (same) {
            double *v = values(y);
            for (int64_t i = 0; i < r.n; i++) {
                double err = fabs(v[i] - r.val[i]);
                if (!(err <= t.rel * fabs(r.val[i]) + t.scale * r.scale[i] + t.abs)) {
                    if (bad < 3)
                        fprintf(stderr, "FAIL %s [%s]: element %lld is %.9g, reference %.9g\n", what,
                                dp_dtype_name(y->dtype), (long long)i, v[i], r.val[i]);
                    bad++;
                }
            }
            free(v);
            dp_test_checks++;
            if (bad) dp_test_failures++;
        }
    }
    free(r.val);
    free(r.scale);
    return bad;
}

static uint64_t seed = 1;
static dp_tensor *rnd(dp_dtype dt, int32_t ndim, const int64_t *shape) {
    return dp_test_random(dt, ndim, shape, seed++);
}
#define SHAPE(...) (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

static void check_matmul(const char *what, dp_tensor *a, dp_tensor *b) {
    dp_tensor *y = dp_matmul(a, b);
    expect(what, y, ref_matmul(a, b), tol_for(a->dtype));
    dp_tensor_release(y);
}

static const dp_dtype FLOATS[] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};

static void test_shapes(dp_dtype dt) {
    dp_tensor *a = rnd(dt, SHAPE(5, 7)), *b = rnd(dt, SHAPE(7, 3));
    check_matmul("2-D", a, b);
    dp_tensor *v = rnd(dt, SHAPE(7)), *u = rnd(dt, SHAPE(5));
    check_matmul("matrix @ vector", a, v);
    check_matmul("vector @ matrix", u, a);
    check_matmul("vector @ vector", v, v);
    dp_tensor *y = dp_matmul(v, v);
    CHECK(y && y->ndim == 0, "vector @ vector is 0-d");
    dp_tensor_release(y);

    dp_tensor *a3 = rnd(dt, SHAPE(4, 5, 7)), *b3 = rnd(dt, SHAPE(4, 7, 3));
    check_matmul("batched", a3, b3);
    check_matmul("batched @ matrix", a3, b);
    check_matmul("matrix @ batched", a, b3);
    check_matmul("batched @ vector", a3, v);
    check_matmul("vector @ batched", v, b3);
    dp_tensor *a4 = rnd(dt, SHAPE(2, 1, 5, 7)), *b4 = rnd(dt, SHAPE(3, 7, 3));
    check_matmul("broadcast (2,1,5,7) @ (3,7,3)", a4, b4);
    dp_tensor *a5 = rnd(dt, SHAPE(2, 3, 5, 7)), *b5 = rnd(dt, SHAPE(1, 3, 7, 4));
    check_matmul("broadcast (2,3,5,7) @ (1,3,7,4)", a5, b5);
    dp_tensor *b6 = rnd(dt, SHAPE(2, 1, 7, 4));
    check_matmul("broadcast (2,3,5,7) @ (2,1,7,4)", a5, b6);

    /* Larger: blocked BLAS paths, the batch-parallel path, odd sizes. */
    dp_tensor *big_a = rnd(dt, SHAPE(67, 129)), *big_b = rnd(dt, SHAPE(129, 33));
    check_matmul("67x129 @ 129x33", big_a, big_b);
    dp_tensor *many_a = rnd(dt, SHAPE(16, 24, 40)), *many_b = rnd(dt, SHAPE(16, 40, 24));
    check_matmul("16 x (24x40 @ 40x24)", many_a, many_b);

    dp_tensor *list[] = {a, b, v, u, a3, b3, a4, b4, a5, b5, b6, big_a, big_b, many_a, many_b};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

static void test_views(dp_dtype dt) {
    dp_tensor *at = rnd(dt, SHAPE(7, 5)), *bt = rnd(dt, SHAPE(3, 7));
    dp_tensor *a = dp_transpose(at, 0, 1), *b = dp_transpose(bt, 0, 1);   /* (5,7), (7,3) */
    dp_tensor *ac = dp_contiguous(a), *bc = dp_contiguous(b);
    check_matmul("a^T view @ b", a, bc);
    check_matmul("a @ b^T view", ac, b);
    check_matmul("both transposed views", a, b);

    /* Every other column and row: neither dim has unit stride, so matmul copies. */
    dp_tensor *wide = rnd(dt, SHAPE(10, 14));
    dp_tensor *rows = dp_slice(wide, 0, 0, 5, 2), *strided = dp_slice(rows, 1, 1, 7, 2);
    check_matmul("strided (5,7) @ b", strided, bc);
    /* A narrowed block: unit stride, leading dimension larger than its width. */
    dp_tensor *block = dp_narrow(wide, 1, 2, 7), *block5 = dp_narrow(block, 0, 3, 5);
    check_matmul("narrowed block @ b", block5, bc);

    /* Batched transposed views and an expanded (stride-0) batch. */
    dp_tensor *bat = rnd(dt, SHAPE(4, 7, 5));
    dp_tensor *ba = dp_transpose(bat, 1, 2);                           /* (4,5,7), unit stride dim 1 */
    dp_tensor *bb = rnd(dt, SHAPE(4, 3, 7)), *bbt = dp_transpose(bb, 1, 2);   /* (4,7,3) */
    check_matmul("batched transposed views", ba, bbt);
    dp_tensor *ex = dp_expand(bc, 3, (int64_t[]){4, 7, 3});
    check_matmul("expanded batch", ba, ex);
    /* An expanded row: stride 0 inside a matrix cannot go to BLAS as is. */
    dp_tensor *row = rnd(dt, SHAPE(1, 7)), *rows5 = dp_expand(row, 2, (int64_t[]){5, 7});
    check_matmul("expanded rows", rows5, bc);
    /* Permuted batch dims: batch dims do not merge, matmul loops over the outer one. */
    dp_tensor *p = rnd(dt, SHAPE(3, 2, 5, 7));
    dp_tensor *pp = dp_permute(p, (int32_t[]){1, 0, 2, 3});             /* (2,3,5,7) */
    dp_tensor *pb = rnd(dt, SHAPE(2, 3, 7, 4));
    check_matmul("permuted batch dims", pp, pb);

    dp_tensor *list[] = {at, bt, a, b, ac, bc, wide, rows, strided, block, block5, bat, ba, bb,
                         bbt, ex, row, rows5, p, pp, pb};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

static void check_linear(const char *what, dp_tensor *x, dp_tensor *w, dp_tensor *bias) {
    dp_tensor *y = dp_linear(x, w, bias);
    expect(what, y, ref_linear(x, w, bias), tol_for(x->dtype));
    dp_tensor_release(y);
}

static void test_linear(dp_dtype dt) {
    dp_tensor *x2 = rnd(dt, SHAPE(6, 5)), *x3 = rnd(dt, SHAPE(2, 3, 5)), *x1 = rnd(dt, SHAPE(5));
    dp_tensor *w = rnd(dt, SHAPE(4, 5)), *bias = rnd(dt, SHAPE(4));
    check_linear("linear 2-D", x2, w, NULL);
    check_linear("linear 2-D + bias", x2, w, bias);
    check_linear("linear 3-D", x3, w, NULL);
    check_linear("linear 3-D + bias", x3, w, bias);
    check_linear("linear 1-D + bias", x1, w, bias);
    /* w as a transposed view of (in, out), x as a permuted view. */
    dp_tensor *wt = rnd(dt, SHAPE(5, 4)), *wv = dp_transpose(wt, 0, 1);
    check_linear("linear, w transposed view", x3, wv, bias);
    dp_tensor *xp = dp_transpose(x3, 0, 1);                          /* (3,2,5) */
    check_linear("linear, permuted x", xp, w, bias);
    dp_tensor *xsb = rnd(dt, SHAPE(5, 6)), *xs = dp_transpose(xsb, 0, 1);   /* (6,5) column-major */
    check_linear("linear, x column-major", xs, w, bias);
    dp_tensor *big_x = rnd(dt, SHAPE(2, 33, 70)), *big_w = rnd(dt, SHAPE(45, 70)),
              *big_b = rnd(dt, SHAPE(45));
    check_linear("linear (2,33,70) x (45,70)", big_x, big_w, big_b);
    dp_tensor *list[] = {x2, x3, x1, w, bias, wt, wv, xp, xsb, xs, big_x, big_w, big_b};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

static void test_zero_sizes(void) {
    dp_tensor *a = rnd(DP_F32, SHAPE(0, 3)), *b = rnd(DP_F32, SHAPE(3, 4));
    dp_tensor *y = dp_matmul(a, b);
    CHECK(y && y->ndim == 2 && y->shape[0] == 0 && y->shape[1] == 4, "(0,3)@(3,4) is (0,4)");
    dp_tensor_release(y);
    dp_tensor *c = rnd(DP_BF16, SHAPE(2, 0)), *d = rnd(DP_BF16, SHAPE(0, 3));
    check_matmul("K = 0 gives zeros", c, d);
    dp_tensor *list[] = {a, b, c, d};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* The kernel directly: alpha, beta, trans flags, against the reference. */
static void test_kernel(dp_dtype dt) {
    const dp_ops *ops = dp_ops_for(DP_CPU);
    dp_tensor *a = rnd(dt, SHAPE(3, 6, 5)), *b = rnd(dt, SHAPE(4, 6)), *c = rnd(dt, SHAPE(3, 5, 4));
    double *av = values(a), *bv = values(b), *cv = values(c);
    /* out = 0.5 * a^T @ b^T + 2 * out, a (3,6,5) read as (3,5,6), b (4,6) shared as (6,4). */
    dp_tensor bv3;
    bv3 = *b;
    bv3.ndim = 3;
    bv3.shape[0] = 1; bv3.shape[1] = 4; bv3.shape[2] = 6;
    bv3.stride[0] = 0; bv3.stride[1] = 6; bv3.stride[2] = 1;
    int rc = ops->gemm(c, a, &bv3, 1, 1, 0.5, 2.0);
    CHECK(rc == 0, "gemm %s: %s", dp_dtype_name(dt), dp_last_error());
    double *out = values(c);
    tol t = tol_for(dt);
    int bad = 0;
    for (int i = 0; i < 3; i++)
        for (int m = 0; m < 5; m++)
            for (int n = 0; n < 4; n++) {
                double s = 0, sc = 0;
                for (int k = 0; k < 6; k++) {
                    double p = av[i * 30 + k * 5 + m] * bv[n * 6 + k];
                    s += p;
                    sc += fabs(p);
                }
                double want = 0.5 * s + 2 * cv[i * 20 + m * 4 + n];
                sc = 0.5 * sc + 2 * fabs(cv[i * 20 + m * 4 + n]);
                double got = out[i * 20 + m * 4 + n];
                if (!(fabs(got - want) <= t.rel * fabs(want) + t.scale * sc + t.abs + 1e-300)) bad++;
            }
    CHECK(bad == 0, "gemm alpha/beta/trans %s: %d elements off", dp_dtype_name(dt), bad);
    free(av);
    free(bv);
    free(cv);
    free(out);
    dp_tensor_release(a);
    dp_tensor_release(b);
    dp_tensor_release(c);
}

static void test_engines(void) {
    dp_tensor *a = rnd(DP_F32, SHAPE(8, 16)), *b = rnd(DP_F32, SHAPE(16, 8));
    dp_tensor *y = dp_matmul(a, b);
    CHECK(!strcmp(dp_matmul_engine(DP_F32), "openblas"), "f32 engine %s", dp_matmul_engine(DP_F32));
    dp_tensor_release(y);
    dp_tensor *ab = dp_cast(a, DP_BF16), *bb = dp_cast(b, DP_BF16);
    dp_clear_error();
    y = dp_matmul(ab, bb);
    CHECK(dp_last_error()[0] == '\0', "a fallback leaves no message: %s", dp_last_error());
    const char *bf16_engine = dp_matmul_engine(DP_BF16);
    printf("bf16 matmul engine on this CPU: %s\n", bf16_engine);
    CHECK(!strcmp(bf16_engine, "onednn") || !strcmp(bf16_engine, "convert+openblas"),
          "bf16 engine %s", bf16_engine);
    dp_tensor_release(y);

    setenv("DP_GEMM_ENGINE", "openblas", 1);
    y = dp_matmul(ab, bb);
    CHECK(!strcmp(dp_matmul_engine(DP_BF16), "convert+openblas"), "forced openblas: %s",
          dp_matmul_engine(DP_BF16));
    expect("bf16 forced openblas", y, ref_matmul(ab, bb), TOL_BF16);
    dp_tensor_release(y);

    setenv("DP_GEMM_ENGINE", "onednn", 1);
    check_matmul("f32 through oneDNN", a, b);
    CHECK(!strcmp(dp_matmul_engine(DP_F32), "onednn"), "forced onednn f32: %s",
          dp_matmul_engine(DP_F32));
    test_kernel(DP_F32);   /* alpha, beta and trans through oneDNN */
    test_shapes(DP_F32);   /* shared left operands, broadcast batches, vectors */
    test_views(DP_F32);
    test_linear(DP_F32);
    y = dp_matmul(ab, bb);
    if (y) {
        CHECK(!strcmp(dp_matmul_engine(DP_BF16), "onednn"), "forced onednn bf16: %s",
              dp_matmul_engine(DP_BF16));
        expect("bf16 through oneDNN", y, ref_matmul(ab, bb), TOL_BF16);
        test_kernel(DP_BF16);
    } else {
        /* This CPU has no oneDNN bf16 kernel (no AVX-512 / AMX): a clear error, not a fallback. */
        CHECK(strstr(dp_last_error(), "DP_GEMM_ENGINE=onednn") &&
                  strstr(dp_last_error(), "unimplemented"),
              "forced onednn error: %s", dp_last_error());
    }
    dp_tensor_release(y);

    /* f16 goes through oneDNN only when asked; most CPUs have no f16 matmul kernel. */
    dp_tensor *ah = dp_cast(a, DP_F16), *bh = dp_cast(b, DP_F16);
    y = dp_matmul(ah, bh);
    if (y)
        expect("f16 through oneDNN", y, ref_matmul(ah, bh), TOL_F16);
    else
        CHECK(strstr(dp_last_error(), "unimplemented"), "forced onednn f16: %s", dp_last_error());
    dp_tensor_release(y);
    dp_tensor_release(ah);
    dp_tensor_release(bh);

    setenv("DP_GEMM_ENGINE", "cublas", 1);
    y = dp_matmul(a, b);
    CHECK(!y && strstr(dp_last_error(), "DP_GEMM_ENGINE must be"), "bad engine: %s",
          dp_last_error());
    dp_tensor_release(y);
    unsetenv("DP_GEMM_ENGINE");
    dp_tensor *list[] = {a, b, ab, bb};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* Many small bf16 matrices: the conversion runs in chunks, each through the batch-parallel sgemm;
 * the result must equal rounding the f32 product of the same (already rounded) inputs. */
static void test_chunked_bf16(void) {
    dp_tensor *a = rnd(DP_BF16, SHAPE(1100, 64, 64)), *b = rnd(DP_BF16, SHAPE(1100, 64, 80));
    dp_tensor *y = dp_matmul(a, b);
    dp_tensor *af = dp_cast(a, DP_F32), *bf = dp_cast(b, DP_F32);
    dp_tensor *yf = dp_matmul(af, bf), *yr = yf ? dp_cast(yf, DP_BF16) : NULL;
    CHECK(y && yr, "chunked bf16: %s", dp_last_error());
    if (y && yr) {
        int64_t n = dp_tensor_numel(y), bad = 0;
        uint16_t *p = malloc(2 * (size_t)n), *q = malloc(2 * (size_t)n);
        dp_tensor_to_raw(y, p);
        dp_tensor_to_raw(yr, q);
        for (int64_t i = 0; i < n; i++) bad += abs((int)p[i] - (int)q[i]) > 1;
        CHECK(bad == 0, "chunked bf16 differs from rounded f32 in %lld elements", (long long)bad);
        free(p);
        free(q);
    }
    dp_tensor *list[] = {a, b, y, af, bf, yf, yr};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

/* Host threads calling matmul at once share the scratch pool and the oneDNN cache. */
typedef struct worker {
    dp_dtype dtype;
    int bad;
} worker;

static void *worker_run(void *arg) {
    worker *w = arg;
    dp_tensor *a = dp_test_random(w->dtype, SHAPE(3, 40, 48), 21), *b = dp_test_random(w->dtype, SHAPE(48, 36), 22);
    dp_tensor *first = dp_matmul(a, b);
    int64_t n = first ? dp_tensor_numel(first) : 0;
    double *want = malloc(sizeof(double) * (size_t)n), *got = malloc(sizeof(double) * (size_t)n);
    if (!first) w->bad++;
    else dp_tensor_to_f64(first, want);
    for (int r = 0; r < 30 && first; r++) {
        dp_tensor *y = dp_matmul(a, b);
        if (!y) { w->bad++; break; }
        dp_tensor_to_f64(y, got);
        if (memcmp(want, got, sizeof(double) * (size_t)n)) w->bad++;
        dp_tensor_release(y);
    }
    free(want);
    free(got);
    dp_tensor_release(first);
    dp_tensor_release(a);
    dp_tensor_release(b);
    return NULL;
}

static void test_threads(void) {
    enum { T = 4 };
    pthread_t th[T];
    worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker){i % 2 ? DP_BF16 : DP_F32, 0};
        pthread_create(&th[i], NULL, worker_run, &w[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].bad == 0, "thread %d (%s): %d results differ", i, dp_dtype_name(w[i].dtype),
              w[i].bad);
    }
}

static void expect_error(dp_tensor *y, const char *message) {
    CHECK(y == NULL, "expected failure with \"%s\"", message);
    CHECK(strstr(dp_last_error(), message) != NULL, "message \"%s\", want \"%s\"", dp_last_error(),
          message);
    dp_tensor_release(y);
}

static void test_errors(void) {
    dp_tensor *a = rnd(DP_F32, SHAPE(4, 5)), *b = rnd(DP_F32, SHAPE(6, 3));
    expect_error(dp_matmul(a, b), "matmul: inner dims differ (a is [4,5] f32 cpu, b is [6,3] f32 cpu)");
    dp_tensor *x = rnd(DP_F32, SHAPE(3, 5)), *w = rnd(DP_F32, SHAPE(2, 4));
    expect_error(dp_linear(x, w, NULL),
                 "linear: expected input width 4, got 5 (x is [3,5] f32 cpu, w is [2,4] f32 cpu)");
    dp_tensor *bias = rnd(DP_F32, SHAPE(3)), *w5 = rnd(DP_F32, SHAPE(2, 5));
    expect_error(dp_linear(x, w5, bias), "linear: bias must be (2)");
    dp_tensor *d = rnd(DP_F64, SHAPE(5, 3));
    expect_error(dp_matmul(a, d), "matmul: dtypes differ (a is [4,5] f32 cpu, b is [5,3] f64 cpu)");
    dp_tensor *i1 = dp_tensor_zeros(DP_I32, DP_CPU, SHAPE(4, 5)), *i2 = dp_tensor_zeros(DP_I32, DP_CPU, SHAPE(5, 2));
    expect_error(dp_matmul(i1, i2), "matmul: expected a float tensor");
    dp_tensor *s = dp_tensor_scalar(DP_F32, DP_CPU, 2);
    expect_error(dp_matmul(s, a), "matmul: both operands need at least 1 dim");
    dp_tensor *b3 = rnd(DP_F32, SHAPE(3, 4, 5)), *c3 = rnd(DP_F32, SHAPE(2, 5, 6));
    expect_error(dp_matmul(b3, c3), "matmul: batch dims do not broadcast");
    expect_error(dp_matmul(a, NULL), "matmul: b is NULL");
    dp_tensor *w1 = rnd(DP_F32, SHAPE(5));
    expect_error(dp_linear(x, w1, NULL), "linear: w must be (out, in)");
    dp_tensor *list[] = {a, b, x, w, bias, w5, d, i1, i2, s, b3, c3, w1};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) dp_tensor_release(list[i]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    for (size_t i = 0; i < sizeof FLOATS / sizeof *FLOATS; i++) {
        test_shapes(FLOATS[i]);
        test_views(FLOATS[i]);
        test_linear(FLOATS[i]);
        test_kernel(FLOATS[i]);
    }
    test_zero_sizes();
    test_engines();
    test_chunked_bf16();
    test_threads();
    test_errors();
    CHECK(dp_live_tensors() == live, "live tensors %lld, started with %lld",
          (long long)dp_live_tensors(), (long long)live);
    return dp_test_finish("test_matmul");
}
