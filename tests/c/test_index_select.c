/* test_index_select.c: dp_index_select_rows against a reference loop over dp_tensor_get (float
 * and integer dtypes, 1-D to 3-D, views with strides and offsets), exact copies of 64-bit integers,
 * empty index lists, and the errors naming the position and the valid range. */
#include <stdint.h>
#include "dp_test.h"

static dp_tensor *index_tensor(dp_dtype dtype, int64_t n, const int64_t *values) {
    double v[16];
    for (int64_t i = 0; i < n; i++) v[i] = (double)values[i];
    return dp_tensor_from_f64(dtype, 1, &n, v);
}

/* out[i, ...] == x[idx[i], ...] for every element, read through dp_tensor_get (any strides). */
static void check_rows(const char *name, const dp_tensor *out, const dp_tensor *x, const int64_t *idx,
                       int64_t n) {
    CHECK(out->ndim == x->ndim && out->shape[0] == n && out->dtype == x->dtype, "%s: shape %s", name,
          dp_tensor_desc(out));
    for (int d = 1; d < x->ndim; d++) CHECK(out->shape[d] == x->shape[d], "%s: dim %d", name, d);
    CHECK(out->requires_grad == 0 && out->grad_fn == NULL, "%s: not in the graph", name);
    CHECK(dp_tensor_is_contiguous(out), "%s: contiguous", name);
    int64_t row = dp_tensor_numel(x) / (x->shape[0] ? x->shape[0] : 1), bad = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < row; k++) {
            int64_t at[8], ax[8], rem = k;
            for (int d = x->ndim - 1; d >= 1; d--) { at[d] = ax[d] = rem % x->shape[d]; rem /= x->shape[d]; }
            at[0] = i;
            ax[0] = idx[i];
            double a, b;
            dp_tensor_get(out, at, &a);
            dp_tensor_get(x, ax, &b);
            bad += a != b;
        }
    CHECK(bad == 0, "%s: %lld elements differ", name, (long long)bad);
}

static void test_dtypes_and_ranks(void) {
    int64_t s2[2] = {5, 3}, s1[1] = {6}, s3[3] = {4, 2, 3};
    int64_t idx[4] = {4, 0, 4, 2};
    dp_tensor *i64 = index_tensor(DP_I64, 4, idx), *i32 = index_tensor(DP_I32, 4, idx);
    dp_dtype dtypes[] = {DP_F32, DP_F64, DP_BF16, DP_I32, DP_I64, DP_U8};
    for (int k = 0; k < 6; k++) {
        dp_tensor *x = dp_test_random(DP_F64, 2, s2, 10 + (uint64_t)k), *xs = dp_affine(x, 50, 60);
        dp_tensor *xt = dp_cast(xs, dtypes[k]);   /* values 10..110: integral after the cast */
        for (int w = 0; w < 2; w++) {
            dp_tensor *out = dp_index_select_rows(xt, w ? i32 : i64);
            CHECK_PTR(out);
            char name[64];
            snprintf(name, sizeof name, "2-D %s, %s indices", dp_dtype_name(dtypes[k]), w ? "i32" : "i64");
            if (out) check_rows(name, out, xt, idx, 4);
            dp_tensor_release(out);
        }
        dp_tensor_release(xt);
        dp_tensor_release(xs);
        dp_tensor_release(x);
    }
    dp_tensor *x1 = dp_test_random(DP_F32, 1, s1, 3), *x3 = dp_test_random(DP_F32, 3, s3, 4);
    dp_tensor *u3 = dp_cast(x3, DP_U8);
    int64_t idx3[3] = {3, 1, 3};
    dp_tensor *j = index_tensor(DP_I32, 3, idx3);
    dp_tensor *o1 = dp_index_select_rows(x1, j), *o3 = dp_index_select_rows(x3, j), *ou = dp_index_select_rows(u3, j);
    CHECK(o1 && o3 && ou, "%s", dp_last_error());
    if (o1) check_rows("1-D f32", o1, x1, idx3, 3);
    if (o3) check_rows("3-D f32", o3, x3, idx3, 3);
    if (ou) check_rows("3-D u8", ou, u3, idx3, 3);
    dp_tensor *t[] = {o1, o3, ou, j, u3, x3, x1, i64, i32};
    for (int k = 0; k < 9; k++) dp_tensor_release(t[k]);
}

/* 64-bit integers beyond 2^53 must come through bit for bit (a copy through double would not). */
static void test_i64_exact(void) {
    int64_t v[8], shape[2] = {4, 2};
    for (int k = 0; k < 8; k++) v[k] = INT64_MAX - 3 * k;
    dp_tensor *x = dp_tensor_from_raw(DP_I64, 2, shape, v);
    int64_t idx[3] = {3, 3, 1};
    dp_tensor *i = index_tensor(DP_I64, 3, idx);
    dp_tensor *out = dp_index_select_rows(x, i);
    CHECK_PTR(out);
    int64_t got[6] = {0};
    if (out) CHECK_OK(dp_tensor_to_raw(out, got));
    int64_t want[6] = {v[6], v[7], v[6], v[7], v[2], v[3]};
    CHECK(memcmp(got, want, sizeof want) == 0, "i64 rows: %lld %lld ...", (long long)got[0], (long long)got[1]);
    dp_tensor_release(out);
    dp_tensor_release(i);
    dp_tensor_release(x);
}

static void test_views(void) {
    int64_t shape[2] = {3, 4}, s3[3] = {6, 2, 5};
    dp_tensor *a = dp_test_random(DP_F32, 2, shape, 5);
    dp_tensor_set_requires_grad(a, 1);            /* an input in the graph: the result is not */
    dp_tensor *at = dp_transpose(a, 0, 1);        /* (4, 3), strides (1, 4) */
    int64_t idx[5] = {3, 0, 2, 2, 1};
    dp_tensor *i = index_tensor(DP_I64, 5, idx);
    dp_tensor *out = dp_index_select_rows(at, i);
    CHECK(at && !dp_tensor_is_contiguous(at) && out, "%s", dp_last_error());
    if (out) check_rows("transposed", out, at, idx, 5);
    dp_tensor_release(out);

    /* a slice with an offset and a step along dim 0, and a narrowed inner dim */
    dp_tensor *b = dp_test_random(DP_F64, 3, s3, 6);
    dp_tensor *bs = dp_slice(b, 0, 1, 3, 2);      /* rows 1, 3, 5 */
    dp_tensor *bn = bs ? dp_narrow(bs, 2, 1, 3) : NULL;
    int64_t idx2[4] = {2, 0, 1, 2};
    dp_tensor *k = index_tensor(DP_I32, 4, idx2);
    out = bn ? dp_index_select_rows(bn, k) : NULL;
    CHECK_PTR(out);
    if (out) check_rows("sliced and narrowed", out, bn, idx2, 4);
    dp_tensor *t[] = {out, k, bn, bs, b, i, at, a};
    for (int j = 0; j < 8; j++) dp_tensor_release(t[j]);
}

static void test_empty(void) {
    int64_t shape[2] = {5, 3}, none = 0, zero_rows[2] = {0, 3};
    dp_tensor *x = dp_test_random(DP_F32, 2, shape, 7);
    dp_tensor *i = dp_tensor_empty(DP_I64, DP_CPU, 1, &none);
    dp_tensor *out = dp_index_select_rows(x, i);
    CHECK(out && out->ndim == 2 && out->shape[0] == 0 && out->shape[1] == 3 && out->dtype == DP_F32,
          "empty: %s", out ? dp_tensor_desc(out) : dp_last_error());
    dp_tensor_release(out);
    dp_tensor *e = dp_tensor_empty(DP_I32, DP_CPU, 2, zero_rows);
    out = dp_index_select_rows(e, i);
    CHECK(out && out->shape[0] == 0 && out->dtype == DP_I32, "empty of empty");
    dp_tensor_release(out);
    int64_t one[1] = {0};
    dp_tensor *j = index_tensor(DP_I64, 1, one);
    CHECK(dp_index_select_rows(e, j) == NULL &&
          strstr(dp_last_error(), "index_select_rows: index 0 at position 0, but x [0,3] i32 cpu has no rows"),
          "%s", dp_last_error());
    dp_tensor *t[] = {j, e, i, x};
    for (int k = 0; k < 4; k++) dp_tensor_release(t[k]);
}

static void test_errors(void) {
    int64_t shape[2] = {5, 3}, sq[2] = {2, 2};
    dp_tensor *x = dp_test_random(DP_F32, 2, shape, 8);
    int64_t bad[3] = {1, 4, 5}, neg[2] = {0, -1};
    dp_tensor *b = index_tensor(DP_I64, 3, bad), *n = index_tensor(DP_I32, 2, neg);
    CHECK(dp_index_select_rows(x, b) == NULL &&
          strstr(dp_last_error(), "index_select_rows: index 5 at position 2 is out of range for x [5,3] f32 cpu "
                                  "(indices [3] i64 cpu); valid indices are 0..4"), "%s", dp_last_error());
    CHECK(dp_index_select_rows(x, n) == NULL && strstr(dp_last_error(), "index -1 at position 1"), "%s", dp_last_error());
    dp_tensor *f = dp_test_random(DP_F32, 1, shape, 9), *i2 = dp_tensor_zeros(DP_I64, DP_CPU, 2, sq);
    CHECK(dp_index_select_rows(x, f) == NULL && strstr(dp_last_error(), "index_select_rows: indices must be i32 or i64, got [5] f32 cpu"),
          "%s", dp_last_error());
    CHECK(dp_index_select_rows(x, i2) == NULL && strstr(dp_last_error(), "indices must be 1-D, got [2,2] i64 cpu"),
          "%s", dp_last_error());
    dp_tensor *s = dp_tensor_scalar(DP_F32, DP_CPU, 1);
    CHECK(dp_index_select_rows(s, n) == NULL && strstr(dp_last_error(), "x must have at least one dim"), "%s", dp_last_error());
    CHECK(dp_index_select_rows(NULL, n) == NULL && strstr(dp_last_error(), "x or indices is NULL"), "%s", dp_last_error());
    dp_tensor *t[] = {s, i2, f, n, b, x};
    for (int k = 0; k < 6; k++) dp_tensor_release(t[k]);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_dtypes_and_ranks();
    test_i64_exact();
    test_views();
    test_empty();
    test_errors();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_index_select");
}
