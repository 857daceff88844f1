/* test_view.c: views share storage and index correctly; their gradients match finite differences. */
#include "dp_test.h"

static dp_tensor *arange(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (double)i;
    dp_tensor *t = dp_tensor_from_f64(DP_F64, ndim, shape, v);
    free(v);
    return t;
}

static double at(const dp_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
    int64_t idx[3] = {i0, i1, i2};
    double v = NAN;
    dp_tensor_get(t, idx, &v);
    return v;
}

static void test_geometry(void) {
    int64_t shape[3] = {2, 3, 4};
    dp_tensor *x = arange(3, shape);
    int32_t perm[3] = {2, 0, 1};
    dp_tensor *p = dp_permute(x, perm);                 /* (4, 2, 3) */
    CHECK(p->shape[0] == 4 && p->shape[1] == 2 && p->shape[2] == 3, "permuted shape");
    CHECK(p->data == x->data, "permute shares storage");
    CHECK(at(p, 3, 1, 2) == 1 * 12 + 2 * 4 + 3, "permute indexes x[1,2,3]");
    dp_tensor *c = dp_contiguous(p);
    CHECK(c != p && dp_tensor_is_contiguous(c), "contiguous copies a permuted view");
    CHECK(at(c, 3, 1, 2) == 23, "contiguous keeps values");

    dp_tensor *n = dp_narrow(x, 2, 1, 2);               /* (2, 3, 2) starting at column 1 */
    CHECK(at(n, 1, 2, 1) == 12 + 8 + 2, "narrow offsets");
    dp_tensor *s = dp_slice(x, 2, 0, 2, 3);             /* columns 0 and 3 */
    CHECK(at(s, 0, 1, 1) == 4 + 3, "slice steps");
    dp_tensor *sel = dp_select(x, 1, 2);                /* (2, 4) */
    int64_t i2[2] = {1, 3};
    double v;
    dp_tensor_get(sel, i2, &v);
    CHECK(sel->ndim == 2 && v == 12 + 8 + 3, "select drops the dim");

    int64_t r_shape[2] = {6, -1};
    dp_tensor *r = dp_reshape(x, 2, r_shape);
    CHECK(r->shape[1] == 4 && r->data == x->data, "reshape infers -1 and views");
    int64_t flat = 24;
    dp_tensor *pr = dp_reshape(p, 1, &flat);            /* permuted: must copy */
    CHECK(pr->data != x->data, "reshape of a permuted tensor copies");
    dp_tensor_get_flat(pr, 1, &v);
    CHECK(v == 4, "copied reshape is in the view's order: p[0,0,1] = x[0,1,0] (got %g)", v);
    int64_t t_shape[3] = {2, 12, 1};
    dp_tensor *tr = dp_reshape(x, 3, t_shape);
    CHECK(tr->data == x->data, "reshape merging contiguous dims views");

    int64_t col_shape[2] = {3, 1};
    dp_tensor *col = arange(2, col_shape);
    int64_t e_shape[3] = {2, 3, 5};
    dp_tensor *e = dp_expand(col, 3, e_shape);
    CHECK(e->stride[0] == 0 && e->stride[2] == 0, "expand uses zero strides");
    CHECK(at(e, 1, 2, 4) == 2, "expanded element");
    dp_tensor *u = dp_unsqueeze(col, 0);
    CHECK(u->ndim == 3 && u->shape[0] == 1, "unsqueeze");
    dp_tensor *sq = dp_squeeze(u, 0);
    CHECK(sq->ndim == 2, "squeeze");
    CHECK(dp_squeeze(x, 0) == NULL, "squeeze of a non-1 dim fails");
    CHECK(strstr(dp_last_error(), "expected 1") != NULL, "message: %s", dp_last_error());

    int64_t bad[2] = {5, 5};
    CHECK(dp_reshape(x, 2, bad) == NULL, "reshape to the wrong size fails");
    CHECK(strstr(dp_last_error(), "[2,3,4] f64 cpu") != NULL && strstr(dp_last_error(), "[5,5]"),
          "message names both shapes: %s", dp_last_error());
    CHECK(dp_narrow(x, 0, 1, 2) == NULL, "narrow past the end fails");
    CHECK(strstr(dp_last_error(), "out of range") != NULL, "message: %s", dp_last_error());
    int32_t bad_perm[3] = {0, 0, 1};
    CHECK(dp_permute(x, bad_perm) == NULL, "non-permutation rejected");

    dp_tensor *h = dp_cast(x, DP_BF16);
    CHECK(h->dtype == DP_BF16 && at(h, 1, 2, 3) == 23, "cast");
    dp_tensor *d = dp_detach(x);
    CHECK(d->data == x->data && d->grad_fn == NULL, "detach shares storage");

    dp_tensor *all[] = {x, p, c, n, s, sel, r, pr, tr, col, e, u, sq, h, d};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) dp_tensor_release(all[i]);
}

/* Gradient checks: each view op composed with a nonlinear op so the routing matters. */
static dp_tensor *f_permute(dp_tensor **in, void *ctx) {
    int32_t perm[3] = {1, 2, 0};
    return dp_permute(in[0], perm);
}
static dp_tensor *f_transpose_reshape(dp_tensor **in, void *ctx) {
    dp_tensor *t = dp_transpose(in[0], 0, 2);
    int64_t shape[2] = {4, -1};
    dp_tensor *r = dp_reshape(t, 2, shape);
    dp_tensor_release(t);
    return r;
}
static dp_tensor *f_narrow(dp_tensor **in, void *ctx) { return dp_narrow(in[0], 1, 1, 2); }
static dp_tensor *f_slice(dp_tensor **in, void *ctx) { return dp_slice(in[0], 2, 1, 2, 2); }
static dp_tensor *f_select(dp_tensor **in, void *ctx) { return dp_select(in[0], 0, 1); }
static dp_tensor *f_expand(dp_tensor **in, void *ctx) {
    dp_tensor *n = dp_narrow(in[0], 2, 0, 1);           /* (2, 3, 1) */
    int64_t shape[4] = {5, 2, 3, 4};
    dp_tensor *e = dp_expand(n, 4, shape);
    dp_tensor_release(n);
    return e;
}
static dp_tensor *f_squeeze(dp_tensor **in, void *ctx) {
    dp_tensor *u = dp_unsqueeze(in[0], 1);
    dp_tensor *s = dp_squeeze(u, 1);
    dp_tensor_release(u);
    return s;
}
static dp_tensor *f_clone_contiguous(dp_tensor **in, void *ctx) {
    dp_tensor *t = dp_transpose(in[0], 0, 1);
    dp_tensor *c = dp_contiguous(t);
    dp_tensor *k = dp_clone(c);
    dp_tensor_release(t);
    dp_tensor_release(c);
    return k;
}
static dp_tensor *f_cast(dp_tensor **in, void *ctx) {
    dp_tensor *f = dp_cast(in[0], DP_F32);
    dp_tensor *d = dp_cast(f, DP_F64);
    dp_tensor_release(f);
    return d;
}
/* A value reused along two paths: gradients must add. */
static dp_tensor *f_diamond(dp_tensor **in, void *ctx) {
    dp_tensor *a = dp_narrow(in[0], 2, 0, 2);
    dp_tensor *b = dp_narrow(in[0], 2, 1, 2);
    dp_tensor *m = dp_mul(a, b);
    dp_tensor *out = dp_mul(m, in[1]);
    dp_tensor_release(a);
    dp_tensor_release(b);
    dp_tensor_release(m);
    return out;
}

static void test_gradients(void) {
    int64_t shape[3] = {2, 3, 4};
    int64_t wshape[1] = {2};
    dp_tensor *x = dp_test_random(DP_F64, 3, shape, 1);
    dp_tensor *w = dp_test_random(DP_F64, 1, wshape, 2);
    dp_tensor_set_requires_grad(x, 1);
    dp_tensor_set_requires_grad(w, 1);
    dp_tensor *in[2] = {x, w};
    dp_test_gradcheck("permute", f_permute, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("transpose+reshape", f_transpose_reshape, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("narrow", f_narrow, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("slice", f_slice, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("select", f_select, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("expand", f_expand, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("squeeze", f_squeeze, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("clone+contiguous", f_clone_contiguous, NULL, 1, in, 1e-6, 1e-6);
    dp_test_gradcheck("cast", f_cast, NULL, 1, in, 1e-3, 1e-4);
    dp_test_gradcheck("diamond", f_diamond, NULL, 2, in, 1e-6, 1e-6);
    dp_tensor_release(x);
    dp_tensor_release(w);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_geometry();
    test_gradients();
    CHECK(dp_live_tensors() == live, "no tensor headers leak (%lld live, %lld before)",
          (long long)dp_live_tensors(), (long long)live);
    return dp_test_finish("test_view");
}
