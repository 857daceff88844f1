/* test_precision_core.c: the C core's precision support: storage write versions (every in-place
 * writer bumps once, reads and new-tensor ops do not), dp_cast_into (refresh semantics, gradient
 * back in x's dtype, the DP engine seeing a registered f32 weight through a bf16 copy), in-place
 * dp_tensor_retype_ against an independent round-to-nearest-even reference, and float dtype
 * promotion in the binary ops with finite-difference gradients. */
#include "dp_test.h"

static int contains(const char *s, const char *part) { return strstr(s, part) != NULL; }

/* x rounded to `bits` significant bits, ties to even (rint under the default rounding mode), for
 * normal-range values: the reference the conversions must match. */
static double rne_bits(double x, int bits) {
    if (x == 0) return x;
    int e;
    frexp(x, &e);
    double scale = ldexp(1.0, bits - e);
    return rint(x * scale) / scale;
}

static double get(const dp_tensor *t, int64_t i) {
    double v = NAN;
    dp_tensor_get_flat(t, i, &v);
    return v;
}

/* ---------------------------------------------------------------- versions */

static void test_versions(void) {
    int64_t s23[] = { 2, 3 }, s3[] = { 3 };
    dp_tensor *a = dp_tensor_zeros(DP_F32, DP_CPU, 2, s23);
    dp_tensor *b = dp_test_random(DP_F32, 2, s23, 1);
    dp_tensor *row = dp_tensor_zeros(DP_F32, DP_CPU, 1, s3);
    CHECK_PTR(a);
    CHECK(dp_tensor_version(a) == 0 && dp_tensor_version(b) == 0, "new tensors start at version 0");
    uint64_t v = 0;
#define BUMPED(expr, what)                                                                       \
    do {                                                                                         \
        CHECK_OK(expr);                                                                          \
        v++;                                                                                     \
        CHECK(dp_tensor_version(a) == v, "%s: version %llu, expected %llu", what,                \
              (unsigned long long)dp_tensor_version(a), (unsigned long long)v);                   \
    } while (0)
    BUMPED(dp_fill_(a, 2.0), "fill_");
    BUMPED(dp_copy_(a, b), "copy_");
    BUMPED(dp_copy_(a, row), "copy_ broadcast");
    BUMPED(dp_axpy_(a, 0.5, b), "axpy_");
    BUMPED(dp_scale_(a, 3.0), "scale_");
    int64_t idx[2] = { 1, 2 };
    BUMPED(dp_tensor_set(a, idx, 4.0), "tensor_set");
    dp_rng rng;
    dp_rng_init(&rng, 7);
    BUMPED(dp_rand_(a, &rng), "rand_");
    BUMPED(dp_randn_(a, &rng, 0.0, 1.0), "randn_");
    dp_noise *noise = dp_noise_new_seeded(3, 0, 0);
    CHECK_PTR(noise);
    BUMPED(dp_noise_add_(noise, a, 0.1), "noise_add_");
    dp_noise_free(noise);
    dp_tensor_bump_version(a);
    v++;
    CHECK(dp_tensor_version(a) == v, "bump_version");

    /* Views share the count; a strided write (through a temporary) still counts once. */
    dp_tensor *col = dp_select(a, 1, 1);   /* stride 3 */
    CHECK_PTR(col);
    CHECK(dp_tensor_version(col) == v, "a view reads its storage's version");
    BUMPED(dp_fill_(col, 1.0), "fill_ of a view");
    BUMPED(dp_scale_(col, 2.0), "strided scale_");
    BUMPED(dp_randn_(col, &rng, 0.0, 1.0), "strided randn_");
    BUMPED(dp_rand_(col, &rng), "strided rand_");
    dp_tensor *det = dp_detach(a);
    BUMPED(dp_axpy_(det, 1.0, b), "axpy_ through a detached alias");
    dp_tensor_release(det);
    dp_tensor_release(col);
#undef BUMPED

    /* Reads and ops making new tensors leave both operands alone. */
    uint64_t vb = dp_tensor_version(b);
    double tmp[6], one;
    CHECK_OK(dp_tensor_to_f64(a, tmp));
    CHECK_OK(dp_tensor_get(a, idx, &one));
    dp_tensor *outs[5] = { dp_add(a, b), dp_mul(a, b), dp_cast(a, DP_BF16), dp_clone(a),
                           dp_sum(a, 0, NULL, 0) };
    int64_t is[1] = { 2 };
    double iv[2] = { 1, 0 };
    dp_tensor *ind = dp_tensor_from_f64(DP_I64, 1, is, iv);
    dp_tensor *added = dp_index_add(a, ind, b);
    CHECK_PTR(added);
    for (int i = 0; i < 5; i++) {
        CHECK_PTR(outs[i]);
        CHECK(outs[i] && dp_tensor_version(outs[i]) == 0, "result %d starts at 0", i);
        dp_tensor_release(outs[i]);
    }
    CHECK(dp_tensor_version(a) == v && dp_tensor_version(b) == vb, "reads and new-tensor ops: %llu %llu",
          (unsigned long long)dp_tensor_version(a), (unsigned long long)dp_tensor_version(b));
    /* A failed check writes nothing and counts nothing. */
    dp_tensor *ints = dp_tensor_zeros(DP_I32, DP_CPU, 2, s23);
    CHECK(dp_axpy_(a, 1.0, ints) == DP_EDTYPE && dp_tensor_version(a) == v, "refused axpy_");
    CHECK(dp_tensor_set(a, (int64_t[]){ 5, 0 }, 1.0) == DP_EINDEX && dp_tensor_version(a) == v,
          "refused set");
    dp_tensor_release(ints);
    dp_tensor_release(added);
    dp_tensor_release(ind);
    dp_tensor_release(row);
    dp_tensor_release(b);
    dp_tensor_release(a);
}

/* ---------------------------------------------------------------- cast_into */

static void test_cast_into(void) {
    int64_t s[] = { 3, 4 };
    dp_tensor *w = dp_test_random(DP_F32, 2, s, 11);
    dp_tensor *cache = dp_tensor_full(DP_BF16, DP_CPU, 2, s, 7.0);
    dp_tensor_set_requires_grad(w, 1);

    /* refresh = 0 trusts the cache: its values, untouched, no version change. */
    dp_tensor *y = dp_cast_into(w, cache, 0);
    CHECK_PTR(y);
    CHECK(y->dtype == DP_BF16 && y->storage == cache->storage, "result views the cache");
    CHECK(dp_tensor_version(cache) == 0 && get(y, 5) == 7.0, "refresh 0 keeps the cache");
    CHECK(!strcmp(dp_tensor_op_name(y), "cast"), "node named cast: %s", dp_tensor_op_name(y));
    dp_tensor_release(y);

    /* refresh = 1 converts with round to nearest even and counts one write of the cache. */
    y = dp_cast_into(w, cache, 1);
    CHECK_PTR(y);
    CHECK(dp_tensor_version(cache) == 1 && dp_tensor_version(w) == 0, "refresh bumps the cache only");
    for (int64_t i = 0; i < 12; i++) CHECK(get(cache, i) == rne_bits(get(w, i), 8), "cache[%lld]", (long long)i);

    /* The gradient comes back in w's dtype (the bf16 upstream values, exactly). */
    dp_tensor *r = dp_test_random(DP_BF16, 2, s, 12);
    dp_tensor *yr = dp_mul(y, r);
    dp_tensor *loss = dp_sum(yr, 0, NULL, 0);
    CHECK_OK(dp_backward(loss, NULL, 0));
    CHECK(w->grad && w->grad->dtype == DP_F32, "grad in f32: %s", dp_tensor_desc(w->grad));
    for (int64_t i = 0; w->grad && i < 12; i++) CHECK(get(w->grad, i) == get(r, i), "grad[%lld]", (long long)i);
    dp_tensor_release(loss);
    dp_tensor_release(yr);
    dp_tensor_release(r);
    dp_tensor_release(y);

    /* Without grad mode there is no node, only the view. */
    dp_set_grad_enabled(0);
    y = dp_cast_into(w, cache, 0);
    CHECK(y && y->grad_fn == NULL && !y->requires_grad, "no node under no_grad");
    dp_tensor_release(y);
    dp_set_grad_enabled(1);

    /* Bad arguments name the op and what was expected. */
    int64_t s43[] = { 4, 3 };
    dp_tensor *wrong = dp_tensor_zeros(DP_BF16, DP_CPU, 2, s43);
    dp_tensor *strided = dp_transpose(wrong, 0, 1);
    dp_tensor *ints = dp_tensor_zeros(DP_I32, DP_CPU, 2, s);
    CHECK(dp_cast_into(w, wrong, 1) == NULL && contains(dp_last_error(), "cast_into: cache [4,3] bf16 cpu must "
          "have x's shape"), "%s", dp_last_error());
    CHECK(dp_cast_into(w, strided, 1) == NULL && contains(dp_last_error(), "must be contiguous"), "%s",
          dp_last_error());
    CHECK(dp_cast_into(w, ints, 1) == NULL && contains(dp_last_error(), "float"), "%s", dp_last_error());
    CHECK(dp_cast_into(w, cache, 2) == NULL && contains(dp_last_error(), "refresh"), "%s", dp_last_error());
    CHECK(dp_cast_into(NULL, cache, 1) == NULL && contains(dp_last_error(), "NULL"), "%s", dp_last_error());
    CHECK(dp_tensor_version(cache) == 1, "refused calls leave the cache");
    dp_tensor_release(ints);
    dp_tensor_release(strided);
    dp_tensor_release(wrong);
    dp_tensor_release(cache);
    dp_tensor_release(w);
}

/* The engine reaches a registered f32 weight through its bf16 copy: per-example norms of
 * y = x W^T with loss sum(y * r) are ||r_i|| ||x_i||, computed here in f64 from the bf16 values. */
static void test_cast_into_engine(void) {
    enum { NB = 4, IN = 5, OUT = 3 };
    int64_t ws[] = { OUT, IN }, xs[] = { NB, IN }, ys[] = { NB, OUT };
    dp_tensor *w = dp_test_random(DP_F32, 2, ws, 21);
    dp_tensor *cache = dp_tensor_zeros(DP_BF16, DP_CPU, 2, ws);
    dp_tensor *x = dp_test_random(DP_BF16, 2, xs, 22);
    dp_tensor *r = dp_test_random(DP_BF16, 2, ys, 23);
    dp_tensor_set_requires_grad(w, 1);
    w->is_param = 1;
    dp_psg *psg = dp_psg_new();
    CHECK(dp_psg_add_param(psg, w, "w", 0) == 0, "%s", dp_last_error());
    CHECK_OK(dp_psg_begin(psg, NB));
    CHECK_OK(dp_psg_activate(psg));
    dp_tensor *wc = dp_cast_into(w, cache, 1);
    dp_tensor *y = dp_linear(x, wc, NULL);
    dp_tensor *yr = y ? dp_mul(y, r) : NULL;
    dp_tensor *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
    CHECK_PTR(loss);
    CHECK_OK(dp_backward(loss, NULL, 0));
    CHECK_OK(dp_psg_activate(NULL));
    CHECK(w->grad == NULL, "the engine, not autograd, took the weight's gradient");
    CHECK_OK(dp_psg_compute_norms(psg));
    double got[NB];
    CHECK_OK(dp_psg_sample_norms(psg, 0, 0, got));
    for (int i = 0; i < NB; i++) {
        double nx = 0, nr = 0;
        for (int j = 0; j < IN; j++) nx += get(x, i * IN + j) * get(x, i * IN + j);
        for (int j = 0; j < OUT; j++) nr += get(r, i * OUT + j) * get(r, i * OUT + j);
        CHECK_CLOSE(got[i], sqrt(nx * nr), 1e-6);
    }
    dp_tensor_release(loss);
    dp_tensor_release(yr);
    dp_tensor_release(y);
    dp_tensor_release(wc);
    dp_psg_free(psg);
    dp_tensor_release(r);
    dp_tensor_release(x);
    dp_tensor_release(cache);
    dp_tensor_release(w);
}

/* ---------------------------------------------------------------- retype_ */

static void test_retype(void) {
    /* Ties and near-ties for bf16 (8 bits) and f16 (11 bits), plus random values. */
    /* 1 + 2^-8 + 2^-30 catches double rounding of f64 through f32 (f32 makes it a bf16 tie). */
    double vals[12] = { 1 + 0x1p-8, 1 + 3 * 0x1p-8, -(1 + 0x1p-8), 1 + 0x1p-8 + 0x1p-20, 1 + 0x1p-11,
                        1 + 3 * 0x1p-11, 3.14159265, -2.71828183, 1e-3, 12345.678, 0.1,
                        1 + 0x1p-8 + 0x1p-30 };
    int64_t s[] = { 3, 4 };
    struct { dp_dtype from, to; int bits; } cases[] = {
        { DP_F32, DP_BF16, 8 }, { DP_F32, DP_F16, 11 }, { DP_F64, DP_F32, 24 }, { DP_F64, DP_BF16, 8 },
    };
    for (int c = 0; c < 4; c++) {
        dp_tensor *t = dp_tensor_from_f64(cases[c].from, 2, s, vals);
        dp_tensor_set_requires_grad(t, 1);
        dp_tensor *g = dp_tensor_zeros(cases[c].from, DP_CPU, 2, s);
        CHECK_OK(dp_tensor_set_grad(t, g));
        dp_tensor_release(g);
        CHECK_OK(dp_tensor_set_mem_category(t, DP_MEM_MASTER));
        int64_t master = dp_mem_category_current(DP_CPU, DP_MEM_MASTER);
        dp_tensor *before = t;
        uint64_t v = dp_tensor_version(t);
        CHECK_OK(dp_tensor_retype_(t, cases[c].to));
        CHECK(t == before && t->dtype == cases[c].to && t->requires_grad, "same header, new dtype");
        CHECK(t->grad == NULL && dp_tensor_version(t) == v + 1, "grad cleared, version bumped");
        CHECK(dp_tensor_mem_category(t) == DP_MEM_MASTER, "category kept");
        CHECK(dp_mem_category_current(DP_CPU, DP_MEM_MASTER) ==
                  master + 12 * (dp_dtype_size(cases[c].to) - dp_dtype_size(cases[c].from)),
              "master bytes follow the new size");
        for (int64_t i = 0; i < 12; i++) {
            double src = cases[c].from == DP_F32 ? (double)(float)vals[i] : vals[i];
            CHECK(get(t, i) == rne_bits(src, cases[c].bits), "case %d [%lld]: %.17g vs %.17g", c,
                  (long long)i, get(t, i), rne_bits(src, cases[c].bits));
        }
        CHECK_OK(dp_tensor_retype_(t, cases[c].to));   /* same dtype: nothing to do */
        CHECK(dp_tensor_version(t) == v + 1, "a no-op retype writes nothing");
        dp_tensor_release(t);
    }

    /* Refusals name the tensor and the reason. */
    int64_t s3[] = { 3 };
    dp_tensor *a = dp_test_random(DP_F32, 1, s3, 5), *b = dp_test_random(DP_F32, 1, s3, 6);
    dp_tensor_set_requires_grad(a, 1);
    dp_tensor *prod = dp_mul(a, b);
    CHECK(dp_tensor_retype_(prod, DP_BF16) == DP_EGRAPH && contains(dp_last_error(), "tensor_retype_") &&
          contains(dp_last_error(), "[3] f32 cpu") && contains(dp_last_error(), "not a leaf"), "%s",
          dp_last_error());
    dp_tensor *view = dp_narrow(b, 0, 1, 2);
    CHECK(dp_tensor_retype_(b, DP_BF16) == DP_EGRAPH && contains(dp_last_error(), "view the storage of [3] f32"),
          "%s", dp_last_error());
    CHECK(b->dtype == DP_F32 && get(view, 0) == get(b, 1), "a refused retype changes nothing");
    dp_tensor_release(view);
    CHECK(dp_tensor_retype_(b, DP_I32) == DP_EDTYPE && contains(dp_last_error(), "float dtype"), "%s",
          dp_last_error());
    CHECK_OK(dp_tensor_retype_(b, DP_BF16));   /* the view is gone */
    dp_tensor_release(prod);
    dp_tensor_release(a);
    dp_tensor_release(b);
}

/* ---------------------------------------------------------------- promotion */

static const dp_dtype floats[6] = { DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2 };

/* The expected result of mixing floats[i] with floats[j], written out in full. */
static const dp_dtype table[6][6] = {
    /*            f32     f64     bf16     f16     e4m3         e5m2 */
    /* f32  */ { DP_F32, DP_F64, DP_F32,  DP_F32, DP_F32,      DP_F32 },
    /* f64  */ { DP_F64, DP_F64, DP_F64,  DP_F64, DP_F64,      DP_F64 },
    /* bf16 */ { DP_F32, DP_F64, DP_BF16, DP_F32, DP_BF16,     DP_BF16 },
    /* f16  */ { DP_F32, DP_F64, DP_F32,  DP_F16, DP_F16,      DP_F16 },
    /* e4m3 */ { DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_F32 },
    /* e5m2 */ { DP_F32, DP_F64, DP_BF16, DP_F16, DP_F32,      DP_FP8_E5M2 },
};

typedef dp_tensor *(*binop)(dp_tensor *, dp_tensor *);
static const binop ops[5] = { dp_add, dp_sub, dp_mul, dp_div, dp_maximum };
static const char *op_names[5] = { "add", "sub", "mul", "div", "maximum" };

static void test_promotion_table(void) {
    int64_t s[] = { 2, 3 }, s3[] = { 3 };
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            dp_tensor *a = dp_tensor_full(floats[i], DP_CPU, 2, s, 1.5);
            dp_tensor *b = dp_tensor_full(floats[j], DP_CPU, 1, s3, 0.5);
            dp_tensor_set_requires_grad(a, 1);
            dp_tensor_set_requires_grad(b, 1);
            dp_tensor *y = dp_mul(a, b);
            dp_tensor *loss = y ? dp_sum(y, 0, NULL, 0) : NULL;
            CHECK(y && y->dtype == table[i][j], "%s * %s gave %s", dp_dtype_name(floats[i]),
                  dp_dtype_name(floats[j]), y ? dp_dtype_name(y->dtype) : dp_last_error());
            CHECK(y && get(y, 4) == 0.75, "value");
            CHECK_OK(dp_backward(loss, NULL, 0));
            /* d/da = b = 0.5 everywhere; d/db sums a over the broadcast rows: 3.0. */
            CHECK(a->grad && a->grad->dtype == floats[i] && get(a->grad, 5) == 0.5, "a's grad in its dtype");
            CHECK(b->grad && b->grad->dtype == floats[j] && get(b->grad, 2) == 3.0, "b's grad in its dtype");
            dp_tensor_release(loss);
            dp_tensor_release(y);
            dp_tensor_release(a);
            dp_tensor_release(b);
        }
    dp_tensor *f = dp_tensor_zeros(DP_F32, DP_CPU, 1, s3), *n = dp_tensor_zeros(DP_I64, DP_CPU, 1, s3);
    for (int k = 0; k < 5; k++) {
        CHECK(ops[k](f, n) == NULL && contains(dp_last_error(), "dtypes differ") &&
              contains(dp_last_error(), op_names[k]), "%s: int/float mix: %s", op_names[k], dp_last_error());
    }
    dp_tensor_release(f);
    dp_tensor_release(n);
}

/* Finite differences of L = sum(op(a, b) * r) with a f64 and b f32 (and swapped). b's values sit
 * on a 2^-8 grid so b +- 2^-10 is exact in f32, and the loss is f64 after promotion. */
static void test_promotion_gradients(void) {
    int64_t s[] = { 2, 3 };
    const double h = 0x1p-10;
    for (int swap = 0; swap < 2; swap++)
        for (int k = 0; k < 5; k++) {
            double av[6], bv[6];
            uint64_t st = 100 + (uint64_t)k;
            for (int i = 0; i < 6; i++) {
                av[i] = 1.0 + dp_test_uniform(&st) * 0.5;
                bv[i] = (i % 2 ? 1 : -1) * (1.25 + round(dp_test_uniform(&st) * 64) / 256);
            }
            dp_tensor *a = dp_tensor_from_f64(swap ? DP_F32 : DP_F64, 2, s, swap ? bv : av);
            dp_tensor *b = dp_tensor_from_f64(swap ? DP_F64 : DP_F32, 2, s, swap ? av : bv);
            dp_tensor *r = dp_test_random(DP_F64, 2, s, 31);
            dp_tensor_set_requires_grad(a, 1);
            dp_tensor_set_requires_grad(b, 1);
            dp_tensor *y = ops[k](a, b), *yr = y ? dp_mul(y, r) : NULL;
            dp_tensor *loss = yr ? dp_sum(yr, 0, NULL, 0) : NULL;
            CHECK(loss && y->dtype == DP_F64, "%s: f64 result", op_names[k]);
            CHECK_OK(dp_backward(loss, NULL, 0));
            dp_tensor_release(loss);
            dp_tensor_release(yr);
            dp_tensor_release(y);
            dp_tensor *in[2] = { a, b };
            for (int which = 0; which < 2; which++) {
                dp_tensor *x = in[which];
                CHECK(x->grad && x->grad->dtype == x->dtype, "%s: grad %d in %s", op_names[k], which,
                      dp_dtype_name(x->dtype));
                if (!x->grad) continue;
                dp_set_grad_enabled(0);
                for (int64_t i = 0; i < 6; i++) {
                    int64_t idx[2] = { i / 3, i % 3 };
                    double x0 = get(x, i), side[2];
                    for (int sgn = 0; sgn < 2; sgn++) {
                        CHECK_OK(dp_tensor_set(x, idx, x0 + (sgn ? -h : h)));
                        dp_tensor *ys = ops[k](a, b), *ysr = dp_mul(ys, r), *ls = dp_sum(ysr, 0, NULL, 0);
                        side[sgn] = get(ls, 0);
                        dp_tensor_release(ls);
                        dp_tensor_release(ysr);
                        dp_tensor_release(ys);
                    }
                    CHECK_OK(dp_tensor_set(x, idx, x0));
                    double numeric = (side[0] - side[1]) / (2 * h);
                    /* the f32 gradient is the f64 one rounded once */
                    CHECK(fabs(get(x->grad, i) - numeric) <= 1e-5 * (1 + fabs(numeric)),
                          "%s d/d%s[%lld] (swap %d): %.10g vs %.10g", op_names[k], which ? "b" : "a",
                          (long long)i, swap, get(x->grad, i), numeric);
                }
                dp_set_grad_enabled(1);
            }
            dp_tensor_release(r);
            dp_tensor_release(a);
            dp_tensor_release(b);
        }
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_versions();
    test_cast_into();
    test_cast_into_engine();
    test_retype();
    test_promotion_table();
    test_promotion_gradients();
    CHECK(dp_live_tensors() == live, "leaked %lld tensor headers", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_precision_core");
}
