/* test_reduce.c: dp_sum, dp_mean, dp_max and dp_argmax against naive float64 references, over
 * many dim sets, with and without keepdim, on contiguous, strided and expanded inputs, in f64,
 * f32 and bf16, plus the error messages. */
#include "dp_test.h"

enum { OP_SUM, OP_MEAN, OP_MAX };

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    dp_tensor_to_f64(t, v);
    return v;
}

/* out in the keepdim layout; arg (may be NULL) gets the first-max position along the single
 * reduced dim for OP_MAX. */
static void ref_reduce(const double *x, int ndim, const int64_t *shape, uint32_t mask, int op,
                       double *out, int64_t *arg) {
    int64_t kshape[8], n = 1, kn = 1, count = 1;
    for (int d = 0; d < ndim; d++) {
        kshape[d] = mask & (1u << d) ? 1 : shape[d];
        n *= shape[d];
        kn *= kshape[d];
        if (mask & (1u << d)) count *= shape[d];
    }
    for (int64_t k = 0; k < kn; k++) {
        out[k] = op == OP_MAX ? -INFINITY : 0.0;
        if (arg) arg[k] = -1;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, k = 0, kstride = 1, along = 0;
        for (int d = ndim - 1; d >= 0; d--) {
            int64_t id = rem % shape[d];
            rem /= shape[d];
            if (mask & (1u << d)) along = id;
            else k += id * kstride;
            kstride *= kshape[d];
        }
        if (op == OP_MAX) {
            /* Row-major order visits each slice front to back, so '>' keeps the first maximum. */
            if (x[i] > out[k] || (arg && arg[k] < 0)) {
                out[k] = x[i];
                if (arg) arg[k] = along;
            }
        } else {
            out[k] += x[i];
        }
    }
    if (op == OP_MEAN)
        for (int64_t k = 0; k < kn; k++) out[k] /= (double)count;
}

/* Reduce t over the dims in mask with op and compare with the reference (tolerance tol). */
static void check_reduce(dp_tensor *t, uint32_t mask, int op, int keepdim, double tol, const char *what) {
    int32_t dims[8], nd = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (!(mask & (1u << d))) continue;
        dims[nd] = nd % 2 ? d - t->ndim : d;   /* every other dim given as negative */
        nd++;
    }
    dp_tensor *r = NULL;
    if (op == OP_SUM) r = dp_sum(t, nd, dims, keepdim);
    if (op == OP_MEAN) r = dp_mean(t, nd, dims, keepdim);
    if (op == OP_MAX) r = dp_max(t, dims[0], keepdim);
    CHECK(r != NULL, "%s: %s", what, dp_last_error());
    if (!r) return;
    int expect_ndim = keepdim ? t->ndim : t->ndim - nd;
    CHECK(r->ndim == expect_ndim, "%s: result has %d dims, expected %d", what, r->ndim, expect_ndim);
    CHECK(r->dtype == t->dtype, "%s: dtype %s", what, dp_dtype_name(r->dtype));
    double *x = values(t), *got = values(r);
    int64_t kn = dp_tensor_numel(r);
    double *want = malloc(sizeof(double) * (size_t)kn);
    ref_reduce(x, t->ndim, t->shape, mask, op, want, NULL);
    int bad = 0;
    for (int64_t k = 0; k < kn; k++)
        if (fabs(got[k] - want[k]) > tol * (1 + fabs(want[k]))) {
            if (!bad) fprintf(stderr, "%s: element %lld: %.10g vs %.10g\n", what, (long long)k, got[k], want[k]);
            bad++;
        }
    CHECK(bad == 0, "%s: %d mismatches", what, bad);
    free(x);
    free(got);
    free(want);
    dp_tensor_release(r);
}

/* Every dim subset of t, every op, both keepdims. */
static void check_all_subsets(dp_tensor *t, double tol, const char *name) {
    for (uint32_t mask = 1; mask < (1u << t->ndim); mask++)
        for (int keepdim = 0; keepdim < 2; keepdim++) {
            char what[160];
            snprintf(what, sizeof what, "%s sum mask %u keepdim %d", name, mask, keepdim);
            check_reduce(t, mask, OP_SUM, keepdim, tol, what);
            snprintf(what, sizeof what, "%s mean mask %u keepdim %d", name, mask, keepdim);
            check_reduce(t, mask, OP_MEAN, keepdim, tol, what);
            if (__builtin_popcount(mask) == 1) {
                snprintf(what, sizeof what, "%s max mask %u keepdim %d", name, mask, keepdim);
                check_reduce(t, mask, OP_MAX, keepdim, 0, what);
            }
        }
}

static void test_dense_and_strided(void) {
    int64_t shape[3] = {3, 4, 5};
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 1);
    check_all_subsets(x, 1e-12, "f64 [3,4,5]");

    int32_t perm[3] = {2, 0, 1};
    dp_tensor *p = dp_permute(x, perm);
    check_all_subsets(p, 1e-12, "permuted [5,3,4]");

    dp_tensor *s = dp_slice(x, 2, 1, 2, 2);           /* [3,4,2], stride 2 in the last dim */
    check_all_subsets(s, 1e-12, "sliced [3,4,2]");

    int64_t small[3] = {3, 1, 5}, big[3] = {3, 4, 5};
    dp_tensor *b = dp_test_random(DP_F64, 3, small, 2);
    dp_tensor *e = dp_expand(b, 3, big);              /* stride 0 in dim 1 */
    check_all_subsets(e, 1e-12, "expanded [3,4,5]");

    dp_tensor *f = dp_test_random(DP_F32, 3, shape, 3);
    check_all_subsets(f, 1e-6, "f32 [3,4,5]");

    int64_t four[4] = {2, 3, 2, 3};
    dp_tensor *q = dp_test_random(DP_F64, 4, four, 4);
    check_all_subsets(q, 1e-12, "f64 [2,3,2,3]");

    dp_tensor_release(p);
    dp_tensor_release(s);
    dp_tensor_release(e);
    dp_tensor_release(b);
    dp_tensor_release(f);
    dp_tensor_release(q);
    dp_tensor_release(x);
}

/* Sizes past the threading threshold: column sums, row sums, one long reduction. */
static void test_large(void) {
    int64_t shape[2] = {300, 257};
    dp_tensor *x = dp_test_random(DP_F32, 2, shape, 5);
    check_reduce(x, 1u, OP_SUM, 0, 1e-6, "large column sum");
    check_reduce(x, 1u, OP_MAX, 1, 0, "large column max");
    check_reduce(x, 2u, OP_MEAN, 0, 1e-6, "large row mean");
    check_reduce(x, 3u, OP_SUM, 0, 1e-6, "large full sum");
    int64_t flat = 300 * 257;
    dp_tensor *v = dp_reshape(x, 1, &flat);
    check_reduce(v, 1u, OP_MAX, 0, 0, "large 1-d max");
    int32_t perm[2] = {1, 0};
    dp_tensor *t = dp_permute(x, perm);
    check_reduce(t, 1u, OP_SUM, 0, 1e-6, "large transposed sum");
    check_reduce(t, 2u, OP_SUM, 0, 1e-6, "large transposed row sum");
    dp_tensor_release(t);
    dp_tensor_release(v);
    dp_tensor_release(x);

    /* f32 sums accumulate in double: a million small values sum without drift. */
    int64_t n = 1 << 20;
    dp_tensor *ones = dp_tensor_full(DP_F32, DP_CPU, 1, &n, 0.1);
    dp_tensor *s = dp_sum(ones, 0, NULL, 0);
    double got;
    dp_tensor_get_flat(s, 0, &got);
    CHECK_CLOSE(got, (double)0.1f * (double)n, 1e-7);
    dp_tensor_release(s);
    dp_tensor_release(ones);
}

/* bf16 loads go through f32 and the result is rounded to bf16 once (relative error <= 2^-8). */
static void test_bf16(void) {
    int64_t shape[2] = {6, 33};
    dp_tensor *x = dp_test_random(DP_BF16, 2, shape, 6);
    check_reduce(x, 2u, OP_SUM, 0, 1e-2, "bf16 row sum");
    check_reduce(x, 1u, OP_MEAN, 1, 1e-2, "bf16 column mean");
    check_reduce(x, 2u, OP_MAX, 0, 0, "bf16 row max");
    dp_tensor *h = dp_test_random(DP_F16, 2, shape, 7);
    check_reduce(h, 3u, OP_SUM, 0, 2e-3, "f16 full sum");
    dp_tensor_release(h);
    dp_tensor_release(x);
}

static void test_argmax(void) {
    double v[12] = {1, 5, 5, 2,
                    7, 0, 7, -1,
                    -3, -3, -3, -3};
    int64_t shape[2] = {3, 4};
    dp_tensor *x = dp_tensor_from_f64(DP_F32, 2, shape, v);
    dp_tensor *a = dp_argmax(x, 1, 0);
    CHECK_PTR(a);
    if (a) {
        CHECK(a->dtype == DP_I64 && a->ndim == 1 && a->shape[0] == 3, "argmax shape %s", dp_tensor_desc(a));
        double got[3];
        dp_tensor_to_f64(a, got);
        CHECK(got[0] == 1 && got[1] == 0 && got[2] == 0, "first maximum wins: %g %g %g", got[0], got[1], got[2]);
    }
    dp_tensor *b = dp_argmax(x, -2, 1);
    CHECK_PTR(b);
    if (b) {
        CHECK(b->ndim == 2 && b->shape[0] == 1 && b->shape[1] == 4, "keepdim shape %s", dp_tensor_desc(b));
        double got[4];
        dp_tensor_to_f64(b, got);
        CHECK(got[0] == 1 && got[1] == 0 && got[2] == 1 && got[3] == 0, "columns: %g %g %g %g", got[0], got[1],
              got[2], got[3]);
    }
    /* Integer tensors too. */
    dp_tensor *xi = dp_tensor_from_f64(DP_I64, 2, shape, v);
    dp_tensor *c = dp_argmax(xi, 1, 0);
    CHECK_PTR(c);
    if (c) {
        double got[3];
        dp_tensor_to_f64(c, got);
        CHECK(got[0] == 1 && got[1] == 0 && got[2] == 0, "i64 argmax: %g %g %g", got[0], got[1], got[2]);
    }
    /* Argmax over a random strided tensor agrees with the reference's first maximum. */
    int64_t s3[3] = {4, 5, 6};
    dp_tensor *r = dp_test_random(DP_F64, 3, s3, 8);
    int32_t perm[3] = {1, 2, 0};
    dp_tensor *p = dp_permute(r, perm);
    double *pv = values(p);
    for (int dim = 0; dim < 3; dim++) {
        dp_tensor *am = dp_argmax(p, dim, 1);
        double *got = values(am);
        int64_t kn = dp_tensor_numel(am), *arg = malloc(sizeof(int64_t) * (size_t)kn);
        double *mx = malloc(sizeof(double) * (size_t)kn);
        ref_reduce(pv, 3, p->shape, 1u << dim, OP_MAX, mx, arg);
        int bad = 0;
        for (int64_t k = 0; k < kn; k++) bad += got[k] != (double)arg[k];
        CHECK(bad == 0, "strided argmax dim %d: %d mismatches", dim, bad);
        free(got);
        free(arg);
        free(mx);
        dp_tensor_release(am);
    }
    free(pv);
    dp_tensor_release(p);
    dp_tensor_release(r);
    dp_tensor_release(c);
    dp_tensor_release(xi);
    dp_tensor_release(b);
    dp_tensor_release(a);
    dp_tensor_release(x);
}

static void test_nan_and_scalars(void) {
    double v[4] = {1, NAN, 3, 2};
    int64_t n = 4;
    dp_tensor *x = dp_tensor_from_f64(DP_F32, 1, &n, v);
    dp_tensor *m = dp_max(x, 0, 0), *a = dp_argmax(x, 0, 0);
    double mv = 0, av = -1;
    dp_tensor_get_flat(m, 0, &mv);
    dp_tensor_get_flat(a, 0, &av);
    CHECK(isnan(mv), "max propagates NaN, got %g", mv);
    CHECK(av == 1, "argmax points at the NaN, got %g", av);
    dp_tensor_release(m);
    dp_tensor_release(a);
    dp_tensor_release(x);

    dp_tensor *s = dp_tensor_scalar(DP_F64, DP_CPU, 2.5);
    dp_tensor *ss = dp_sum(s, 0, NULL, 0), *sm = dp_max(s, 0, 0);
    double a1 = 0, a2 = 0;
    CHECK(ss && ss->ndim == 0, "sum of a scalar is a scalar");
    if (ss) dp_tensor_get_flat(ss, 0, &a1);
    if (sm) dp_tensor_get_flat(sm, 0, &a2);
    CHECK(a1 == 2.5 && a2 == 2.5, "scalar sum %g max %g", a1, a2);
    dp_tensor_release(ss);
    dp_tensor_release(sm);
    dp_tensor_release(s);

    /* Sum over an empty dim is 0; mean of nothing is NaN. */
    int64_t e[2] = {3, 0};
    dp_tensor *z = dp_tensor_zeros(DP_F32, DP_CPU, 2, e);
    int32_t d1 = 1;
    dp_tensor *zs = dp_sum(z, 1, &d1, 0), *zm = dp_mean(z, 1, &d1, 0);
    CHECK(zs && zs->ndim == 1 && zs->shape[0] == 3, "empty sum shape");
    double g0 = -1, g1 = 0;
    if (zs) dp_tensor_get_flat(zs, 0, &g0);
    if (zm) dp_tensor_get_flat(zm, 0, &g1);
    CHECK(g0 == 0 && isnan(g1), "empty sum %g mean %g", g0, g1);
    dp_tensor_release(zs);
    dp_tensor_release(zm);
    dp_tensor_release(z);
}

static void test_errors(void) {
    int64_t shape[2] = {2, 3};
    dp_tensor *x = dp_test_random(DP_F32, 2, shape, 9);
    int32_t dup[2] = {1, -1};
    CHECK(dp_sum(x, 2, dup, 0) == NULL, "duplicate dims accepted");
    CHECK(strstr(dp_last_error(), "sum: dim 1 appears twice in dims [1,-1] for [2,3] f32 cpu") != NULL,
          "message: %s", dp_last_error());
    int32_t far = 2;
    CHECK(dp_mean(x, 1, &far, 1) == NULL, "dim 2 accepted");
    CHECK(strstr(dp_last_error(), "mean: dim 2 out of range") != NULL, "message: %s", dp_last_error());
    int32_t three[3] = {0, 1, 0};
    CHECK(dp_sum(x, 3, three, 0) == NULL, "3 dims accepted for a 2-d tensor");
    CHECK(dp_max(x, -3, 0) == NULL, "max dim -3 accepted");
    CHECK(strstr(dp_last_error(), "max: dim -3") != NULL, "message: %s", dp_last_error());

    int64_t e[2] = {2, 0};
    dp_tensor *z = dp_tensor_zeros(DP_F32, DP_CPU, 2, e);
    CHECK(dp_max(z, 1, 0) == NULL, "max over an empty dim accepted");
    CHECK(strstr(dp_last_error(), "max: dim 1 of [2,0] f32 cpu is empty") != NULL, "message: %s", dp_last_error());
    CHECK(dp_argmax(z, 1, 0) == NULL, "argmax over an empty dim accepted");

    dp_tensor *i = dp_tensor_zeros(DP_I32, DP_CPU, 2, shape);
    CHECK(dp_sum(i, 0, NULL, 0) == NULL, "integer sum accepted");
    CHECK(strstr(dp_last_error(), "sum: expected a float tensor, got [2,3] i32 cpu") != NULL, "message: %s",
          dp_last_error());
    CHECK(dp_sum(NULL, 0, NULL, 0) == NULL, "NULL accepted");
    dp_tensor_release(i);
    dp_tensor_release(z);
    dp_tensor_release(x);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_dense_and_strided();
    test_large();
    test_bf16();
    test_argmax();
    test_nan_and_scalars();
    test_errors();
    CHECK(dp_live_tensors() == live, "leaked %lld tensor headers", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_reduce");
}
