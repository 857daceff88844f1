/* test_elementwise.c: forward values of the elementwise ops (binary, unary, masked_fill, fill_,
 * copy_, axpy_, scale_) against a float64 reference computed here with libm, across dtypes,
 * broadcasting, strided views, 0-d and empty tensors, NaN/Inf, and their error messages. */
#include "dp_test.h"
#include "internal.h"

/* The first four are checked everywhere; the fp8 pair where no Inf or overflow is involved. */
static const dp_dtype float_dtypes[] = { DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2 };
enum { N_FLOAT_DTYPES = 4, N_FLOAT_DTYPES_FP8 = 6 };

/* ---------------------------------------------------------------- helpers */

/* A CPU tensor of values in [lo, hi); with gap > 0, values are kept at least gap away from 0. */
static dp_tensor *make(dp_dtype dtype, int32_t ndim, const int64_t *shape, uint64_t seed, double lo,
                       double hi, double gap) {
    int64_t n = dp_shape_numel(ndim, shape);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    uint64_t s = seed * 7919 + 17;
    for (int64_t i = 0; i < n; i++) {
        double u = (dp_test_uniform(&s) + 1) / 2;
        v[i] = lo + (hi - lo) * u;
        if (gap > 0 && fabs(v[i]) < gap) v[i] = v[i] < 0 ? -gap : gap;
    }
    dp_tensor *t = dp_tensor_from_f64(dtype, ndim, shape, v);
    free(v);
    return t;
}

static double *values(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (dp_tensor_to_f64(t, v)) CHECK(0, "to_f64 failed: %s", dp_last_error());
    return v;
}

static double round_to(dp_dtype dt, double v) {
    switch (dt) {
    case DP_F32: return (float)v;
    case DP_BF16: return dp_bf16_to_f32(dp_f64_to_bf16(v));
    case DP_F16: return dp_f16_to_f32(dp_f64_to_f16(v));
    case DP_FP8_E4M3: return dp_e4m3_to_f32(dp_f64_to_e4m3(v));
    case DP_FP8_E5M2: return dp_e5m2_to_f32(dp_f64_to_e5m2(v));
    default: return v;
    }
}

/* Spacing of dt's values at magnitude v. */
static double ulp_of(dp_dtype dt, double v) {
    int man = dt == DP_F32 ? 23 : dt == DP_BF16 ? 7 : dt == DP_F16 ? 10 : dt == DP_FP8_E4M3 ? 3
            : dt == DP_FP8_E5M2 ? 2 : 52;
    int emin = dt == DP_F16 || dt == DP_FP8_E5M2 ? -14 : dt == DP_FP8_E4M3 ? -6
             : dt == DP_F64 ? -1022 : -126;
    int e;
    frexp(fabs(v), &e);
    e -= 1;
    if (v == 0 || e < emin) e = emin;
    return ldexp(1.0, e - man);
}

/* got (in dtype dt) against the exact ref: NaN and Inf must match; f64 to rounding noise, f32 to
 * a few ulps (plus a little absolute slack for cancellation inside gelu and sigmoid), bf16 and
 * f16 within 1 ulp of the reference rounded to them. */
static int close_in(dp_dtype dt, double got, double ref) {
    if (isnan(ref)) return isnan(got);
    if (isinf(ref)) return got == ref;
    if (!isfinite(got)) return 0;
    double r = round_to(dt, ref), d = fabs(got - r);
    double big = fabs(got) > fabs(r) ? fabs(got) : fabs(r);
    switch (dt) {
    case DP_F64: return d <= 1e-14 * (1 + fabs(ref));
    case DP_F32: return d <= 8 * ulp_of(DP_F32, big) + 1e-7;
    default: return d <= ulp_of(dt, big);
    }
}

/* Compare every element of t with ref[]; report the first few mismatches under name. */
static void check_values(const char *name, const dp_tensor *t, const double *ref, int64_t n) {
    CHECK(t != NULL, "%s: NULL result: %s", name, dp_last_error());
    if (!t) return;
    CHECK(dp_tensor_numel(t) == n, "%s: %lld elements, expected %lld", name,
          (long long)dp_tensor_numel(t), (long long)n);
    if (dp_tensor_numel(t) != n) return;
    double *got = values(t);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (close_in(t->dtype, got[i], ref[i])) continue;
        if (bad++ < 4)
            fprintf(stderr, "  %s (%s) [%lld]: got %.9g, expected %.9g\n", name, dp_tensor_desc(t),
                    (long long)i, got[i], ref[i]);
    }
    CHECK(bad == 0, "%s: %d of %lld elements differ", name, bad, (long long)n);
    free(got);
}

static void check_shape(const dp_tensor *t, int32_t ndim, const int64_t *shape) {
    if (!t) return;
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    char want[128];
    dp_shape_str(want, sizeof want, ndim, shape);
    CHECK(same, "shape %s, expected %s", dp_tensor_desc(t), want);
}

static int contains(const char *text, const char *part) { return strstr(text, part) != NULL; }

/* Flat row-major index into t of the element that broadcasting maps to out index k. */
static int64_t source_index(const dp_tensor *t, int32_t ndim, const int64_t *shape, int64_t k) {
    int64_t idx[8], f = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = k % shape[d];
        k /= shape[d];
    }
    for (int j = 0; j < t->ndim; j++) {
        int d = j + ndim - t->ndim;
        f = f * t->shape[j] + (t->shape[j] == 1 ? 0 : idx[d]);
    }
    return f;
}

/* ---------------------------------------------------------------- binary ops */

enum { ADD, SUB, MUL, DIV, MAX, N_BINARY };
static const char *binary_names[] = { "add", "sub", "mul", "div", "maximum" };

static dp_tensor *run_binary(int op, dp_tensor *a, dp_tensor *b) {
    switch (op) {
    case ADD: return dp_add(a, b);
    case SUB: return dp_sub(a, b);
    case MUL: return dp_mul(a, b);
    case DIV: return dp_div(a, b);
    default: return dp_maximum(a, b);
    }
}

static double ref_binary(int op, double a, double b) {
    switch (op) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    case DIV: return a / b;
    default: return (a >= b || isnan(a)) ? a : b;
    }
}

/* a op b for every op, against the reference with broadcasting done by index arithmetic. */
static void check_binary_pair(const char *what, dp_tensor *a, dp_tensor *b) {
    int32_t ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[8];
    for (int i = 0; i < ndim; i++) {
        int ia = i - (ndim - a->ndim), ib = i - (ndim - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        shape[i] = sa == 1 ? sb : sa;
    }
    int64_t n = dp_shape_numel(ndim, shape);
    double *va = values(a), *vb = values(b), *ref = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int op = 0; op < N_BINARY; op++) {
        for (int64_t k = 0; k < n; k++)
            ref[k] = ref_binary(op, va[source_index(a, ndim, shape, k)], vb[source_index(b, ndim, shape, k)]);
        dp_tensor *out = run_binary(op, a, b);
        char name[160];
        snprintf(name, sizeof name, "%s %s (%s, %s)", binary_names[op], what, dp_tensor_desc(a),
                 dp_tensor_desc(b));
        check_values(name, out, ref, n);
        check_shape(out, ndim, shape);
        if (out) CHECK(out->dtype == a->dtype && (n == 0 || dp_tensor_is_contiguous(out)),
                       "%s: result %s", name, dp_tensor_desc(out));
        dp_tensor_release(out);
    }
    free(ref);
    free(va);
    free(vb);
}

static void test_binary_broadcast(void) {
    static const struct { int32_t na; int64_t a[3]; int32_t nb; int64_t b[3]; } cases[] = {
        { 2, { 2, 3 }, 2, { 2, 3 } },
        { 3, { 2, 1, 3 }, 2, { 4, 1 } },
        { 2, { 5, 1 }, 2, { 1, 7 } },
        { 1, { 3 }, 0, { 0 } },
        { 0, { 0 }, 2, { 2, 3 } },
        { 0, { 0 }, 0, { 0 } },
        { 2, { 0, 3 }, 1, { 3 } },
        { 3, { 2, 0, 3 }, 2, { 1, 3 } },
        { 2, { 1, 1 }, 3, { 4, 1, 2 } },
        { 2, { 300, 200 }, 1, { 200 } },    /* > 32K elements: the threaded path */
        { 2, { 257, 129 }, 2, { 257, 1 } },
    };
    for (int d = 0; d < N_FLOAT_DTYPES_FP8; d++) {
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            dp_tensor *a = make(float_dtypes[d], cases[c].na, cases[c].a, 10 + c, -2, 2, 0);
            /* b stays away from 0 so that div is well conditioned. */
            dp_tensor *b = make(float_dtypes[d], cases[c].nb, cases[c].b, 50 + c, -2, 2, 0.25);
            check_binary_pair("broadcast", a, b);
            dp_tensor_release(a);
            dp_tensor_release(b);
        }
    }
}

/* Transposed, narrowed and stepped views as inputs. */
static void test_binary_strided(void) {
    for (int d = 0; d < N_FLOAT_DTYPES_FP8; d++) {
        dp_dtype dt = float_dtypes[d];
        int64_t s34[] = { 3, 4 }, s45[] = { 4, 5 }, s4x9[] = { 4, 9 };
        dp_tensor *base_a = make(dt, 2, s34, 1, -2, 2, 0);
        dp_tensor *base_b = make(dt, 2, s45, 2, -2, 2, 0.25);
        dp_tensor *base_c = make(dt, 2, s4x9, 3, -2, 2, 0.25);
        dp_tensor *at = dp_transpose(base_a, 0, 1);         /* (4, 3), strides (1, 4) */
        dp_tensor *bn = dp_narrow(base_b, 1, 1, 3);         /* (4, 3), strides (5, 1) */
        dp_tensor *cs = dp_slice(base_c, 1, 1, 3, 3);       /* (4, 3), strides (9, 3) */
        CHECK_PTR(at);
        CHECK_PTR(bn);
        CHECK_PTR(cs);
        if (at && bn && cs) {
            CHECK(!dp_tensor_is_contiguous(at) && !dp_tensor_is_contiguous(bn), "views are strided");
            check_binary_pair("strided", at, bn);
            check_binary_pair("strided", bn, cs);
            check_binary_pair("strided", cs, at);
            dp_tensor *row = dp_select(bn, 0, 2);            /* (3), stride 1 inside a strided base */
            check_binary_pair("strided row", at, row);
            dp_tensor_release(row);
        }
        dp_tensor_release(at);
        dp_tensor_release(bn);
        dp_tensor_release(cs);
        dp_tensor_release(base_a);
        dp_tensor_release(base_b);
        dp_tensor_release(base_c);
    }
}

static void check_unary_on_any(dp_tensor *x);

/* Eight dims: broadcasting on alternate dims, and a permuted (fully strided) operand. */
static void test_binary_8d(void) {
    int64_t sa[8] = { 2, 1, 3, 1, 2, 1, 2, 1 }, sb[8] = { 1, 2, 1, 2, 1, 3, 1, 2 };
    int64_t sc[8] = { 2, 2, 3, 2, 2, 3, 2, 2 };
    int32_t perm[8] = { 7, 6, 5, 4, 3, 2, 1, 0 };
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        dp_tensor *a = make(float_dtypes[d], 8, sa, 31, -2, 2, 0);
        dp_tensor *b = make(float_dtypes[d], 8, sb, 32, -2, 2, 0.25);
        check_binary_pair("8-d", a, b);
        dp_tensor *c = make(float_dtypes[d], 8, sc, 33, -2, 2, 0.25);
        dp_tensor *cp = dp_permute(c, perm), *cpp = dp_permute(cp, perm);
        check_binary_pair("8-d permuted", cpp, a);
        check_unary_on_any(cpp);
        dp_tensor_release(cpp);
        dp_tensor_release(cp);
        dp_tensor_release(c);
        dp_tensor_release(a);
        dp_tensor_release(b);
    }
}

/* ---------------------------------------------------------------- unary ops */

enum { NEG, EXP, LOG, SQRT, ABS, TANH, SIGMOID, RELU, GELU, AFFINE, POW, N_UNARY };
static const char *unary_names[] = { "neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu",
                                     "gelu", "affine", "pow_scalar" };

static dp_tensor *run_unary(int op, dp_tensor *x, double p, double q) {
    switch (op) {
    case NEG: return dp_neg(x);
    case EXP: return dp_exp(x);
    case LOG: return dp_log(x);
    case SQRT: return dp_sqrt(x);
    case ABS: return dp_abs(x);
    case TANH: return dp_tanh(x);
    case SIGMOID: return dp_sigmoid(x);
    case RELU: return dp_relu(x);
    case GELU: return dp_gelu(x);
    case AFFINE: return dp_affine(x, p, q);
    default: return dp_pow_scalar(x, p);
    }
}

static double ref_unary(int op, double x, double p, double q) {
    switch (op) {
    case NEG: return -x;
    case EXP: return exp(x);
    case LOG: return log(x);
    case SQRT: return sqrt(x);
    case ABS: return fabs(x);
    case TANH: return tanh(x);
    case SIGMOID: return 1 / (1 + exp(-x));
    case RELU: return x > 0 || isnan(x) ? x : 0;
    case GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case AFFINE: return x * p + q;
    default: return pow(x, p);
    }
}

static void check_unary_on(const char *what, int op, dp_tensor *x, double p, double q) {
    int64_t n = dp_tensor_numel(x);
    double *vx = values(x), *ref = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) ref[i] = ref_unary(op, vx[i], p, q);
    dp_tensor *out = run_unary(op, x, p, q);
    char name[160];
    snprintf(name, sizeof name, "%s(p=%g) %s %s", unary_names[op], p, what, dp_tensor_desc(x));
    check_values(name, out, ref, n);
    check_shape(out, x->ndim, x->shape);
    dp_tensor_release(out);
    free(ref);
    free(vx);
}

static void check_unary_on_any(dp_tensor *x) {
    check_unary_on("any", TANH, x, 0, 0);
    check_unary_on("any", GELU, x, 0, 0);
    check_unary_on("any", AFFINE, x, 3, 1);
}

static void test_unary(void) {
    static const struct { int32_t ndim; int64_t shape[3]; } shapes[] = {
        { 2, { 3, 5 } }, { 0, { 0 } }, { 2, { 0, 4 } }, { 3, { 2, 3, 7 } }, { 1, { 40000 } },
    };
    static const struct { int op; double p, q; } cases[] = {
        { NEG, 0, 0 }, { EXP, 0, 0 }, { LOG, 0, 0 }, { SQRT, 0, 0 }, { ABS, 0, 0 }, { TANH, 0, 0 },
        { SIGMOID, 0, 0 }, { RELU, 0, 0 }, { GELU, 0, 0 }, { AFFINE, 2.5, -1 }, { AFFINE, -0.5, 0 },
        { POW, 2, 0 }, { POW, 3, 0 }, { POW, 1, 0 }, { POW, 0.5, 0 }, { POW, -1.5, 0 },
    };
    for (int d = 0; d < N_FLOAT_DTYPES_FP8; d++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                int op = cases[c].op;
                /* log, sqrt and fractional powers need positive inputs. */
                int positive = op == LOG || op == SQRT || (op == POW && cases[c].p != floor(cases[c].p));
                dp_tensor *x = make(float_dtypes[d], shapes[s].ndim, shapes[s].shape, 100 + c,
                                    positive ? 0.05 : -3, 3, 0);
                check_unary_on("", op, x, cases[c].p, cases[c].q);
                dp_tensor_release(x);
            }
        }
    }
    /* A transposed input. */
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        int64_t shape[] = { 4, 6 };
        dp_tensor *base = make(float_dtypes[d], 2, shape, 7, 0.05, 3, 0);
        dp_tensor *xt = dp_transpose(base, 0, 1);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            check_unary_on("transposed", cases[c].op, xt, cases[c].p, cases[c].q);
        dp_tensor_release(xt);
        dp_tensor_release(base);
    }
}

/* ---------------------------------------------------------------- NaN and Inf */

static void test_nan_inf(void) {
    int64_t four[] = { 4 };
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        dp_dtype dt = float_dtypes[d];
        double va[] = { NAN, INFINITY, -INFINITY, 1 }, vb[] = { 1, 1, 2, NAN };
        dp_tensor *a = dp_tensor_from_f64(dt, 1, four, va), *b = dp_tensor_from_f64(dt, 1, four, vb);
        check_binary_pair("nan/inf", a, b);
        check_binary_pair("nan/inf", b, a);
        double ref_max[] = { NAN, INFINITY, 2, NAN };
        dp_tensor *m = dp_maximum(a, b);
        check_values("maximum nan", m, ref_max, 4);
        dp_tensor_release(m);

        double vx[] = { NAN, INFINITY, -INFINITY, 0 };
        dp_tensor *x = dp_tensor_from_f64(dt, 1, four, vx);
        int ops[] = { NEG, EXP, ABS, TANH, SIGMOID, RELU };
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) check_unary_on("nan/inf", ops[i], x, 0, 0);
        double vl[] = { NAN, INFINITY, 0, -1 };
        dp_tensor *y = dp_tensor_from_f64(dt, 1, four, vl);
        check_unary_on("nan/inf", LOG, y, 0, 0);    /* NaN, Inf, -Inf, NaN */
        check_unary_on("nan/inf", SQRT, y, 0, 0);   /* NaN, Inf, 0, NaN */
        double vg[] = { NAN, INFINITY, 0, -1 };
        dp_tensor *g = dp_tensor_from_f64(dt, 1, four, vg);
        check_unary_on("nan/inf", GELU, g, 0, 0);
        dp_tensor_release(g);
        dp_tensor_release(y);
        dp_tensor_release(x);
        dp_tensor_release(a);
        dp_tensor_release(b);
    }
}

/* ---------------------------------------------------------------- masked_fill */

static void test_masked_fill(void) {
    int64_t xs[] = { 2, 3, 4 }, ms[] = { 3, 1 };
    double mv[] = { 1, 0, 1 };
    dp_tensor *mask = dp_tensor_from_f64(DP_U8, 2, ms, mv);
    const dp_dtype dts[] = { DP_F32, DP_F64, DP_BF16, DP_F16, DP_I32 };
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        dp_tensor *x = make(dts[d], 3, xs, 3, -5, 5, 0);
        double value = dts[d] == DP_I32 ? -7 : 1.0 / 3;
        double *vx = values(x), ref[24];
        for (int k = 0; k < 24; k++) ref[k] = mv[(k / 4) % 3] ? round_to(dts[d], value) : vx[k];
        dp_tensor *out = dp_masked_fill(x, mask, value);
        char name[64];
        snprintf(name, sizeof name, "masked_fill %s", dp_dtype_name(dts[d]));
        check_values(name, out, ref, 24);
        if (out) CHECK(out->dtype == dts[d], "masked_fill keeps the dtype: %s", dp_tensor_desc(out));
        dp_tensor_release(out);
        /* On a transposed x: out follows x's logical (transposed) shape. */
        dp_tensor *xt = dp_transpose(x, 0, 2);   /* (4, 3, 2) */
        int64_t ms2[] = { 3, 1 };
        dp_tensor *mask2 = dp_tensor_from_f64(DP_U8, 2, ms2, mv);
        out = dp_masked_fill(xt, mask2, value);
        double *vt = values(xt), ref_t[24];
        for (int k = 0; k < 24; k++) ref_t[k] = mv[(k / 2) % 3] ? round_to(dts[d], value) : vt[k];
        check_values("masked_fill transposed", out, ref_t, 24);
        dp_tensor_release(out);
        dp_tensor_release(mask2);
        dp_tensor_release(xt);
        free(vt);
        free(vx);
        dp_tensor_release(x);
    }
    /* Errors: a float mask, and a mask that does not broadcast. */
    dp_tensor *x = make(DP_F32, 3, xs, 3, -5, 5, 0);
    dp_tensor *fm = dp_tensor_zeros(DP_F32, DP_CPU, 2, ms);
    dp_clear_error();
    CHECK(dp_masked_fill(x, fm, 0) == NULL, "float mask rejected");
    CHECK(contains(dp_last_error(), "masked_fill") && contains(dp_last_error(), "u8") &&
          contains(dp_last_error(), "[3,1] f32 cpu"), "message: %s", dp_last_error());
    int64_t bad_shape[] = { 2, 4 };
    dp_tensor *bm = dp_tensor_zeros(DP_U8, DP_CPU, 2, bad_shape);
    CHECK(dp_masked_fill(x, bm, 0) == NULL, "mask shape rejected");
    CHECK(contains(dp_last_error(), "masked_fill") && contains(dp_last_error(), "[2,4]") &&
          contains(dp_last_error(), "[2,3,4]"), "message: %s", dp_last_error());
    dp_tensor_release(bm);
    dp_tensor_release(fm);
    dp_tensor_release(x);
    dp_tensor_release(mask);
}

/* ---------------------------------------------------------------- fill_, copy_, axpy_, scale_ */

static const dp_dtype all_dtypes[] = { DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2,
                                       DP_I32, DP_I64, DP_U8 };
enum { N_ALL_DTYPES = 9 };

static void test_fill(void) {
    int64_t shape[] = { 3, 5 };
    for (int d = 0; d < N_ALL_DTYPES; d++) {
        dp_dtype dt = all_dtypes[d];
        dp_tensor *x = dp_tensor_zeros(dt, DP_CPU, 2, shape);
        CHECK_OK(dp_fill_(x, 3));
        double ref[15];
        for (int i = 0; i < 15; i++) ref[i] = 3;
        check_values("fill_", x, ref, 15);
        /* A strided window: only its elements change. */
        dp_tensor *win = dp_slice(x, 1, 1, 2, 2);   /* columns 1 and 3 */
        CHECK_OK(dp_fill_(win, 5));
        for (int i = 0; i < 15; i++) ref[i] = (i % 5 == 1 || i % 5 == 3) ? 5 : 3;
        check_values("fill_ window", x, ref, 15);
        dp_tensor_release(win);
        dp_tensor_release(x);
    }
    /* One rounding from double: 1/3 in bf16, and a fill of a 0-d tensor. */
    dp_tensor *s = dp_tensor_scalar(DP_BF16, DP_CPU, 0);
    CHECK_OK(dp_fill_(s, 1.0 / 3));
    uint16_t raw = 0;
    dp_tensor_to_raw(s, &raw);
    CHECK(raw == dp_f64_to_bf16(1.0 / 3), "bf16 fill bits %04x vs %04x", raw, dp_f64_to_bf16(1.0 / 3));
    dp_tensor_release(s);
}

/* Values every dtype holds exactly. */
static const double exact_values[] = { 0, 1, 2, 3, 5, 7, 12, 16 };

static void test_copy_dtypes(void) {
    int64_t shape[] = { 2, 4 }, tshape[] = { 4, 2 };
    for (int s = 0; s < N_ALL_DTYPES; s++) {
        for (int d = 0; d < N_ALL_DTYPES; d++) {
            dp_tensor *src = dp_tensor_from_f64(all_dtypes[s], 2, shape, exact_values);
            dp_tensor *dst = dp_tensor_zeros(all_dtypes[d], DP_CPU, 2, shape);
            char name[64];
            snprintf(name, sizeof name, "copy_ %s -> %s", dp_dtype_name(all_dtypes[s]),
                     dp_dtype_name(all_dtypes[d]));
            CHECK_OK(dp_copy_(dst, src));
            check_values(name, dst, exact_values, 8);
            /* Into a transposed destination, and from a transposed source. */
            dp_tensor *base = dp_tensor_zeros(all_dtypes[d], DP_CPU, 2, tshape);
            dp_tensor *dt = dp_transpose(base, 0, 1);
            CHECK_OK(dp_copy_(dt, src));
            check_values(name, dt, exact_values, 8);
            dp_tensor *back = dp_tensor_zeros(all_dtypes[s], DP_CPU, 2, shape);
            CHECK_OK(dp_copy_(back, dt));
            check_values(name, back, exact_values, 8);
            dp_tensor_release(back);
            dp_tensor_release(dt);
            dp_tensor_release(base);
            dp_tensor_release(dst);
            dp_tensor_release(src);
        }
    }
}

static void test_copy_rounding(void) {
    /* Random f64 and f32 values to the narrow floats: one rounding, contiguous and strided,
     * small and large (threaded) tensors. */
    int64_t sizes[] = { 37, 70001 };
    const dp_dtype narrow[] = { DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2, DP_F32 };
    for (int z = 0; z < 2; z++) {
        int64_t n = sizes[z], shape[] = { n };
        for (int from = 0; from < 2; from++) {
            dp_tensor *src = make(from ? DP_F32 : DP_F64, 1, shape, 5 + z, -300, 300, 0);
            double *v = values(src);
            for (size_t k = 0; k < sizeof narrow / sizeof narrow[0]; k++) {
                dp_tensor *dst = dp_tensor_empty(narrow[k], DP_CPU, 1, shape);
                CHECK_OK(dp_copy_(dst, src));
                double *got = values(dst);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    double want;
                    switch (narrow[k]) {
                    case DP_BF16: want = dp_bf16_to_f32(dp_f64_to_bf16(v[i])); break;
                    case DP_F16: want = dp_f16_to_f32(dp_f64_to_f16(v[i])); break;
                    case DP_FP8_E4M3: want = dp_e4m3_to_f32(dp_f64_to_e4m3(v[i])); break;
                    case DP_FP8_E5M2: want = dp_e5m2_to_f32(dp_f64_to_e5m2(v[i])); break;
                    default: want = (float)v[i]; break;
                    }
                    bad += got[i] != want;
                }
                CHECK(bad == 0, "copy_ %s -> %s (%lld): %d values not rounded once to nearest even",
                      dp_dtype_name(src->dtype), dp_dtype_name(narrow[k]), (long long)n, bad);
                /* And back to f32 from the narrow dtype, through a strided (every other) view. */
                int64_t half = (n + 1) / 2, hs[] = { half };
                dp_tensor *every_other = dp_slice(dst, 0, 0, half, 2);
                dp_tensor *wide = dp_tensor_empty(DP_F32, DP_CPU, 1, hs);
                CHECK_OK(dp_copy_(wide, every_other));
                double *w = values(wide);
                int bad_back = 0;
                for (int64_t i = 0; i < half; i++) bad_back += w[i] != got[2 * i];
                CHECK(bad_back == 0, "copy_ %s -> f32 strided: %d differ", dp_dtype_name(narrow[k]), bad_back);
                free(w);
                dp_tensor_release(wide);
                dp_tensor_release(every_other);
                free(got);
                dp_tensor_release(dst);
            }
            free(v);
            dp_tensor_release(src);
        }
    }
    /* Ties to even: 1 + 2^-8 is halfway between two bf16 values and goes to 1. */
    int64_t two[] = { 2 };
    double ties[] = { 1 + 1.0 / 256, 1 + 3.0 / 256 };
    dp_tensor *src = dp_tensor_from_f64(DP_F32, 1, two, ties);
    dp_tensor *dst = dp_tensor_empty(DP_BF16, DP_CPU, 1, two);
    CHECK_OK(dp_copy_(dst, src));
    double want[] = { 1, 1 + 4.0 / 256 };
    check_values("copy_ ties to even", dst, want, 2);
    dp_tensor_release(dst);
    dp_tensor_release(src);
    /* Float to integer truncates; integers to floats are exact. */
    double fv[] = { 2.7, -3.5 };
    src = dp_tensor_from_f64(DP_F32, 1, two, fv);
    dst = dp_tensor_empty(DP_I32, DP_CPU, 1, two);
    CHECK_OK(dp_copy_(dst, src));
    double wi[] = { 2, -3 };
    check_values("copy_ f32 -> i32", dst, wi, 2);
    dp_tensor_release(dst);
    dp_tensor_release(src);
}

static void test_copy_broadcast_and_errors(void) {
    int64_t ds[] = { 2, 3 }, rs[] = { 3 }, bad[] = { 3, 4 };
    dp_tensor *dst = dp_tensor_zeros(DP_F32, DP_CPU, 2, ds);
    double rv[] = { 1, 2, 3 };
    dp_tensor *row = dp_tensor_from_f64(DP_BF16, 1, rs, rv);
    CHECK_OK(dp_copy_(dst, row));
    double want[] = { 1, 2, 3, 1, 2, 3 };
    check_values("copy_ broadcast", dst, want, 6);
    dp_tensor *scalar = dp_tensor_scalar(DP_F64, DP_CPU, -4);
    CHECK_OK(dp_copy_(dst, scalar));
    double fours[] = { -4, -4, -4, -4, -4, -4 };
    check_values("copy_ scalar", dst, fours, 6);

    dp_tensor *big = dp_tensor_zeros(DP_F32, DP_CPU, 2, bad);
    CHECK(dp_copy_(dst, big) == DP_ESHAPE, "shape mismatch rejected");
    CHECK(contains(dp_last_error(), "copy_") && contains(dp_last_error(), "[3,4]") &&
          contains(dp_last_error(), "[2,3]"), "message: %s", dp_last_error());
    int64_t es[] = { 4, 3 };
    dp_tensor *expanded = dp_expand(row, 2, es);
    dp_tensor *src43 = dp_tensor_zeros(DP_F32, DP_CPU, 2, es);
    CHECK(dp_copy_(expanded, src43) == DP_EARG, "copy into an expanded view rejected");
    CHECK(contains(dp_last_error(), "copy_") && contains(dp_last_error(), "[4,3]"), "message: %s",
          dp_last_error());
    CHECK(dp_copy_(NULL, row) == DP_EARG, "NULL dst rejected");

    /* Overlapping source and destination behave as if the source were read first. */
    int64_t five[] = { 5 };
    double seq[] = { 0, 1, 2, 3, 4 };
    dp_tensor *x = dp_tensor_from_f64(DP_F32, 1, five, seq);
    dp_tensor *head = dp_narrow(x, 0, 0, 4), *tail = dp_narrow(x, 0, 1, 4);
    CHECK_OK(dp_copy_(tail, head));
    double shifted[] = { 0, 0, 1, 2, 3 };
    check_values("copy_ overlapping", x, shifted, 5);
    CHECK_OK(dp_copy_(head, tail));
    double back[] = { 0, 1, 2, 3, 3 };
    check_values("copy_ overlapping back", x, back, 5);
    /* Onto itself, transposed: a (2,2) block becomes its transpose. */
    int64_t sq[] = { 2, 2 };
    double m[] = { 1, 2, 3, 4 };
    dp_tensor *mat = dp_tensor_from_f64(DP_F64, 2, sq, m);
    dp_tensor *mt = dp_transpose(mat, 0, 1);
    CHECK_OK(dp_copy_(mat, mt));
    double mtv[] = { 1, 3, 2, 4 };
    check_values("copy_ onto own transpose", mat, mtv, 4);
    dp_tensor_release(mt);
    dp_tensor_release(mat);
    dp_tensor_release(head);
    dp_tensor_release(tail);
    dp_tensor_release(x);
    dp_tensor_release(src43);
    dp_tensor_release(expanded);
    dp_tensor_release(big);
    dp_tensor_release(scalar);
    dp_tensor_release(row);
    dp_tensor_release(dst);
}

static void test_axpy_scale(void) {
    int64_t ds[] = { 2, 3 }, rs[] = { 3 };
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        dp_dtype dt = float_dtypes[d];
        double dv[] = { 1, 2, 3, 4, 5, 6 }, rv[] = { 2, -4, 8 };
        dp_tensor *dst = dp_tensor_from_f64(dt, 2, ds, dv), *row = dp_tensor_from_f64(dt, 1, rs, rv);
        CHECK_OK(dp_axpy_(dst, 0.5, row));
        double want[] = { 2, 0, 7, 5, 3, 10 };
        check_values("axpy_ broadcast", dst, want, 6);
        CHECK_OK(dp_axpy_(dst, -1, dst));   /* src is dst itself */
        double zeros[6] = { 0 };
        check_values("axpy_ self", dst, zeros, 6);
        CHECK_OK(dp_fill_(dst, 3));
        CHECK_OK(dp_scale_(dst, -2));
        double m6[] = { -6, -6, -6, -6, -6, -6 };
        check_values("scale_", dst, m6, 6);
        dp_tensor *t = dp_transpose(dst, 0, 1);
        CHECK_OK(dp_scale_(t, 0.5));
        double m3[] = { -3, -3, -3, -3, -3, -3 };
        check_values("scale_ strided", dst, m3, 6);
        CHECK(dp_axpy_(t, 1, t) == DP_EARG, "axpy_ into a strided dst rejected");
        CHECK(contains(dp_last_error(), "axpy_") && contains(dp_last_error(), "[3,2]"), "message: %s",
              dp_last_error());
        dp_tensor_release(t);
        dp_tensor_release(dst);
        dp_tensor_release(row);
    }
    /* Large, threaded: dst += 2 * (transposed src). */
    int64_t s[] = { 300, 200 }, st[] = { 200, 300 };
    dp_tensor *dst = make(DP_F32, 2, s, 1, -1, 1, 0), *srcb = make(DP_F32, 2, st, 2, -1, 1, 0);
    dp_tensor *src = dp_transpose(srcb, 0, 1);
    double *vd = values(dst), *vs = values(src);
    for (int64_t i = 0; i < 60000; i++) vd[i] += 2 * vs[i];
    CHECK_OK(dp_axpy_(dst, 2, src));
    check_values("axpy_ large strided", dst, vd, 60000);
    free(vd);
    free(vs);
    dp_tensor *i32 = dp_tensor_zeros(DP_I32, DP_CPU, 2, s), *f64 = dp_tensor_zeros(DP_F64, DP_CPU, 2, s);
    CHECK(dp_axpy_(dst, 1, f64) == DP_EDTYPE, "axpy_ dtype mismatch rejected");
    CHECK(contains(dp_last_error(), "axpy_") && contains(dp_last_error(), "f64"), "message: %s",
          dp_last_error());
    CHECK(dp_scale_(i32, 2) == DP_EDTYPE, "scale_ of an integer tensor rejected");
    dp_tensor_release(i32);
    dp_tensor_release(f64);
    dp_tensor_release(src);
    dp_tensor_release(srcb);
    dp_tensor_release(dst);
}

/* ---------------------------------------------------------------- argument errors */

static void test_errors(void) {
    int64_t s23[] = { 2, 3 }, s3[] = { 3 }, s4[] = { 4 };
    dp_tensor *a = dp_tensor_zeros(DP_F32, DP_CPU, 2, s23);
    dp_tensor *b16 = dp_tensor_zeros(DP_BF16, DP_CPU, 1, s3);
    dp_tensor *b4 = dp_tensor_zeros(DP_F32, DP_CPU, 1, s4);
    dp_tensor *ints = dp_tensor_zeros(DP_I32, DP_CPU, 1, s3);

    for (int op = 0; op < N_BINARY; op++) {
        const char *name = binary_names[op];
        char want[128];
        dp_clear_error();
        /* Float dtypes promote (test_precision_core.c); an integer/float mix is still refused. */
        CHECK(run_binary(op, a, ints) == NULL, "%s: dtype mismatch rejected", name);
        snprintf(want, sizeof want, "%s: dtypes differ (a is [2,3] f32 cpu, b is [3] i32 cpu)", name);
        CHECK(contains(dp_last_error(), want), "message: %s", dp_last_error());

        CHECK(run_binary(op, a, b4) == NULL, "%s: shape mismatch rejected", name);
        snprintf(want, sizeof want, "%s:", name);
        CHECK(contains(dp_last_error(), want) && contains(dp_last_error(), "[2,3]") &&
              contains(dp_last_error(), "[4]"), "message: %s", dp_last_error());

        /* A header claiming to live on the GPU: the device check must fire before any access. */
        dp_tensor fake = *b4;
        fake.device = DP_CUDA;
        CHECK(run_binary(op, a, &fake) == NULL, "%s: device mismatch rejected", name);
        CHECK(contains(dp_last_error(), want) && contains(dp_last_error(), "cuda") &&
              contains(dp_last_error(), "[2,3] f32 cpu"), "message: %s", dp_last_error());

        CHECK(run_binary(op, ints, ints) == NULL, "%s: integers rejected", name);
        CHECK(contains(dp_last_error(), want) && contains(dp_last_error(), "i32"), "message: %s",
              dp_last_error());
        CHECK(run_binary(op, a, NULL) == NULL, "%s: NULL rejected", name);
        CHECK(contains(dp_last_error(), want), "message: %s", dp_last_error());
    }
    for (int op = 0; op < N_UNARY; op++) {
        char want[64];
        snprintf(want, sizeof want, "%s:", unary_names[op]);
        CHECK(run_unary(op, ints, 2, 0) == NULL, "%s of integers rejected", unary_names[op]);
        CHECK(contains(dp_last_error(), want) && contains(dp_last_error(), "[3] i32 cpu"), "message: %s",
              dp_last_error());
        CHECK(run_unary(op, NULL, 2, 0) == NULL, "%s of NULL rejected", unary_names[op]);
    }
    dp_tensor fake = *a;
    fake.device = DP_CUDA;
    CHECK(dp_axpy_(a, 1, &fake) == DP_EDEVICE, "axpy_ across devices rejected");
    CHECK(contains(dp_last_error(), "axpy_"), "message: %s", dp_last_error());
    CHECK(dp_fill_(NULL, 0) == DP_EARG, "fill_ of NULL rejected");
    dp_tensor_release(a);
    dp_tensor_release(b16);
    dp_tensor_release(b4);
    dp_tensor_release(ints);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_binary_broadcast();
    test_binary_strided();
    test_binary_8d();
    test_unary();
    test_nan_inf();
    test_masked_fill();
    test_fill();
    test_copy_dtypes();
    test_copy_rounding();
    test_copy_broadcast_and_errors();
    test_axpy_scale();
    test_errors();
    CHECK(dp_live_tensors() == live, "%lld tensor headers leaked", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_elementwise");
}
