/* test_cuda_elementwise.c: the CUDA elementwise family (kernels/cuda/{binary,unary,copy_cast,
 * reduce,quant}.cu) against the CPU table (dp_cpu_ops, itself checked against float64 loops in
 * test_elementwise.c, test_reduce.c, test_quant.c) on the same strided / broadcast operands, plus
 * known answers computed here:
 *  - bytes equal to the CPU: binary (add/sub/mul/div/max, NaN and Inf included), neg/abs/relu,
 *    copy for all 81 dtype pairs (NaN, Inf, overflow, integer saturation), strided fill,
 *    masked_fill, max and argmax (ties, NaN), quant_amax and fake_quant (both fp8 formats);
 *  - within a stated tolerance (CUDA's libm and multiply-add contraction differ by an ulp or two;
 *    sums add the same doubles in another order): the other unary ops, unary_backward, axpy, sum
 *    and mean. Tolerance per output dtype, relative to 1 + |cpu|: f32 4e-6, f64 1e-13, and one
 *    rounding step for the narrow formats (bf16 2^-7, f16 2^-10, e4m3 2^-3, e5m2 2^-2);
 *  - sum of 1..1000 in f32 is 500500 exactly; argmax of a row with a known maximum.
 * Without a CUDA device it prints SKIP and exits with DP_TEST_SKIP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "internal.h"
#include "cuda_test.h"

static const dp_ops *cpu;
static const dp_dtype floats[] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
enum { N_FLOATS = 6 };

/* ---------------------------------------------------------------- helpers */

/* CPU tensor of values in [lo, hi) (|v| >= gap when gap > 0), stored with dtype's rounding. */
static dp_tensor *make(dp_dtype dt, int32_t ndim, const int64_t *shape, uint64_t seed, double lo,
                       double hi, double gap) {
    dp_tensor *t = empty(dt, DP_CPU, ndim, shape);
    uint64_t s = seed * 7919 + 17;
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) {
        double v = lo + (hi - lo) * (dp_test_uniform(&s) + 1) / 2;
        if (gap > 0 && fabs(v) < gap) v = v < 0 ? -gap : gap;
        dp_store_f64(t->data, dt, i, v);
    }
    return t;
}

/* A view of contiguous t with its dims reversed (a transpose: no dim is unit-stride but one). */
static dp_tensor *reversed(const dp_tensor *t) {
    int64_t shape[8], stride[8];
    for (int d = 0; d < t->ndim; d++) {
        shape[d] = t->shape[t->ndim - 1 - d];
        stride[d] = t->stride[t->ndim - 1 - d];
    }
    dp_tensor *v = dp_tensor_view_of(t, t->ndim, shape, stride, 0);
    CHECK_PTR(v);
    if (!v) exit(1);
    return v;
}

/* A view of t broadcast to out_shape: its size-1 dims get stride 0. */
static dp_tensor *bcast(const dp_tensor *t, const int64_t *out_shape) {
    int64_t stride[8];
    for (int d = 0; d < t->ndim; d++) stride[d] = t->shape[d] == 1 ? 0 : t->stride[d];
    dp_tensor *v = dp_tensor_view_of(t, t->ndim, out_shape, stride, 0);
    CHECK_PTR(v);
    if (!v) exit(1);
    return v;
}

/* The tolerances of the header comment, relative to 1 + |cpu|. */
static double ulp_tol(dp_dtype dt) {
    switch (dt) {
    case DP_F32: return 4e-6;
    case DP_F64: return 1e-13;
    case DP_BF16: return 0x1p-7 * 1.01;
    case DP_F16: return 0x1p-10 * 1.01;
    case DP_FP8_E4M3: return 0x1p-3 * 1.01;
    default: return 0x1p-2 * 1.01;
    }
}

/* ---------------------------------------------------------------- binary, axpy, masked_fill */

static void test_binary(void) {
    int64_t base_a[3] = {5, 4, 3}, shape[3] = {3, 4, 5}, shape_b[3] = {1, 4, 1};
    for (int k = 0; k < N_FLOATS; k++) {
        dp_dtype dt = floats[k];
        dp_tensor *a0 = make(dt, 3, base_a, 1 + k, -3, 3, 0), *b0 = make(dt, 3, shape_b, 2 + k, -2, 2, 0.25);
        dp_store_f64(a0->data, dt, 0, NAN);
        dp_store_f64(a0->data, dt, 1, INFINITY);
        dp_store_f64(b0->data, dt, 2, NAN);
        dp_tensor *a0g = to_cuda(a0), *b0g = to_cuda(b0);
        dp_tensor *a = reversed(a0), *b = bcast(b0, shape), *ag = reversed(a0g), *bg = bcast(b0g, shape);
        for (int op = DP_BIN_ADD; op <= DP_BIN_MAX; op++) {
            dp_tensor *oc = empty(dt, DP_CPU, 3, shape), *og = empty(dt, DP_CUDA, 3, shape);
            CHECK_OK(cpu->binary(oc, a, b, (dp_binop)op));
            CHECK_OK(cuda_ops->binary(og, ag, bg, (dp_binop)op));
            CHECK(same_bytes(og, oc), "binary op %d %s: cuda differs from cpu", op, dp_dtype_name(dt));
            dp_tensor_release(oc);
            dp_tensor_release(og);
        }
        /* axpy: dst contiguous, src broadcast. */
        dp_tensor *dc = make(dt, 3, shape, 9 + k, -1, 1, 0), *dg = to_cuda(dc);
        CHECK_OK(cpu->axpy(dc, 0.75, b));
        CHECK_OK(cuda_ops->axpy(dg, 0.75, bg));
        double w = worst_rel_diff(dg, dc, 1);
        CHECK(w <= ulp_tol(dt), "axpy %s: worst %g", dp_dtype_name(dt), w);
        /* masked_fill: mask (1, 4, 5) broadcast over dim 0, x strided. */
        int64_t ms[3] = {1, 4, 5};
        dp_tensor *m0 = empty(DP_U8, DP_CPU, 3, ms);
        for (int i = 0; i < 20; i++) ((uint8_t *)m0->data)[i] = (uint8_t)(i % 3 == 0);
        dp_tensor *m0g = to_cuda(m0), *m = bcast(m0, shape), *mg = bcast(m0g, shape);
        dp_tensor *oc = empty(dt, DP_CPU, 3, shape), *og = empty(dt, DP_CUDA, 3, shape);
        CHECK_OK(cpu->masked_fill(oc, a, m, -1.5));
        CHECK_OK(cuda_ops->masked_fill(og, ag, mg, -1.5));
        CHECK(same_bytes(og, oc), "masked_fill %s: cuda differs from cpu", dp_dtype_name(dt));
        double got;
        dp_tensor *oh = to_cpu(og);
        got = dp_load_f64(oh->data, dt, 0);   /* mask[0] is set */
        CHECK(got == -1.5, "masked_fill %s: element 0 is %g, want -1.5", dp_dtype_name(dt), got);
        dp_tensor *rel[] = {a0, b0, a0g, b0g, a, b, ag, bg, dc, dg, m0, m0g, m, mg, oc, og, oh};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
    }
    /* Refusals, not crashes. */
    int64_t n = 4;
    dp_tensor *ig = empty(DP_I32, DP_CUDA, 1, &n), *fg = empty(DP_F32, DP_CUDA, 1, &n);
    CHECK(cuda_ops->binary(ig, ig, ig, DP_BIN_ADD) == DP_EDTYPE, "binary on i32 refused");
    CHECK(cuda_ops->unary(fg, fg, (dp_unop)99, 0, 0) == DP_EARG, "unknown unary op refused");
    CHECK(cuda_ops->reduce(ig, ig, 1, (int32_t[]){0}, DP_RED_SUM) == DP_EDTYPE, "reduce on i32 refused");
    dp_tensor_release(ig);
    dp_tensor_release(fg);
}

/* ---------------------------------------------------------------- unary and its backward */

static void test_unary(void) {
    int64_t base[2] = {37, 29}, shape[2] = {29, 37};
    struct { dp_unop op; double alpha, beta; int positive, exact; } cases[] = {
        {DP_UN_NEG, 0, 0, 0, 1},     {DP_UN_EXP, 0, 0, 0, 0},    {DP_UN_LOG, 0, 0, 1, 0},
        {DP_UN_SQRT, 0, 0, 1, 0},    {DP_UN_ABS, 0, 0, 0, 1},    {DP_UN_TANH, 0, 0, 0, 0},
        {DP_UN_SIGMOID, 0, 0, 0, 0}, {DP_UN_RELU, 0, 0, 0, 1},   {DP_UN_GELU, 0, 0, 0, 0},
        {DP_UN_AFFINE, 1.5, -0.25, 0, 0}, {DP_UN_POW, 2, 0, 0, 0}, {DP_UN_POW, 1, 0, 0, 1},
        {DP_UN_POW, 3, 0, 0, 0},     {DP_UN_POW, 0.5, 0, 1, 0},
    };
    for (int k = 0; k < N_FLOATS; k++) {
        dp_dtype dt = floats[k];
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            double lo = cases[c].positive ? 0.1 : -3, hi = cases[c].positive ? 4 : 3;
            dp_tensor *x0 = make(dt, 2, base, 30 + c, lo, hi, 0), *x0g = to_cuda(x0);
            dp_tensor *x = reversed(x0), *xg = reversed(x0g);
            dp_tensor *yc = empty(dt, DP_CPU, 2, shape), *yg = empty(dt, DP_CUDA, 2, shape);
            CHECK_OK(cpu->unary(yc, x, cases[c].op, cases[c].alpha, cases[c].beta));
            CHECK_OK(cuda_ops->unary(yg, xg, cases[c].op, cases[c].alpha, cases[c].beta));
            double w = worst_rel_diff(yg, yc, 1);
            if (cases[c].exact)
                CHECK(same_bytes(yg, yc), "unary %d %s: cuda differs from cpu", (int)cases[c].op,
                      dp_dtype_name(dt));
            else
                CHECK(w <= ulp_tol(dt), "unary %d (alpha %g) %s: worst %g", (int)cases[c].op,
                      cases[c].alpha, dp_dtype_name(dt), w);
            /* Backward: gy strided, x strided, y the CPU's forward output (same on both). */
            dp_tensor *g0 = make(dt, 2, base, 60 + c, -1, 1, 0), *g0g = to_cuda(g0);
            dp_tensor *gy = reversed(g0), *gyg = reversed(g0g), *ycg = to_cuda(yc);
            dp_tensor *gc = empty(dt, DP_CPU, 2, shape), *gg = empty(dt, DP_CUDA, 2, shape);
            CHECK_OK(cpu->unary_backward(gc, gy, x, yc, cases[c].op, cases[c].alpha, cases[c].beta));
            CHECK_OK(cuda_ops->unary_backward(gg, gyg, xg, ycg, cases[c].op, cases[c].alpha, cases[c].beta));
            w = worst_rel_diff(gg, gc, 1);
            CHECK(w <= ulp_tol(dt), "unary_backward %d (alpha %g) %s: worst %g", (int)cases[c].op,
                  cases[c].alpha, dp_dtype_name(dt), w);
            dp_tensor *rel[] = {x0, x0g, x, xg, yc, yg, g0, g0g, gy, gyg, ycg, gc, gg};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
        }
    }
}

/* ---------------------------------------------------------------- copy and fill */

static void test_copy_fill(void) {
    static const double special[] = {NAN, INFINITY, -INFINITY, 2.5, -2.5, 1e10, -3e9, 65520.0,
                                     300.7, -0.0, 1e-9, 448.5, 57344.0, 9.3e18, 255.9, -1.0};
    enum { NSPECIAL = sizeof special / sizeof special[0] };
    int64_t base[2] = {13, 6}, shape[2] = {6, 13};
    for (int s = 0; s < DP_NUM_DTYPES; s++) {
        dp_dtype st = (dp_dtype)s;
        dp_tensor *x0 = make(st, 2, base, 70 + s, -400, 400, 0);
        for (int i = 0; i < NSPECIAL; i++) dp_store_f64(x0->data, st, 5 * i, special[i]);
        dp_tensor *x0g = to_cuda(x0), *x = reversed(x0), *xg = reversed(x0g);
        for (int o = 0; o < DP_NUM_DTYPES; o++) {
            dp_dtype ot = (dp_dtype)o;
            dp_tensor *oc = empty(ot, DP_CPU, 2, shape), *og = empty(ot, DP_CUDA, 2, shape);
            CHECK_OK(cpu->copy(oc, x));
            CHECK_OK(cuda_ops->copy(og, xg));
            CHECK(same_bytes(og, oc), "copy %s -> %s: cuda differs from cpu", dp_dtype_name(st),
                  dp_dtype_name(ot));
            dp_tensor_release(oc);
            dp_tensor_release(og);
        }
        /* A strided destination (every other column of a zeroed (6, 26)), same dtype. */
        int64_t wide[2] = {6, 26}, dst_stride[2] = {26, 2};
        dp_tensor *wc = empty(st, DP_CPU, 2, wide), *wg = empty(st, DP_CUDA, 2, wide);
        CHECK_OK(cpu->fill(wc, 0.0));
        CHECK_OK(cuda_ops->fill(wg, 0.0));
        dp_tensor *vc = dp_tensor_view_of(wc, 2, shape, dst_stride, 1);
        dp_tensor *vg = dp_tensor_view_of(wg, 2, shape, dst_stride, 1);
        CHECK_PTR(vc);
        CHECK_PTR(vg);
        CHECK_OK(cpu->copy(vc, x));
        CHECK_OK(cuda_ops->copy(vg, xg));
        CHECK(same_bytes(wg, wc), "strided copy %s: cuda differs from cpu", dp_dtype_name(st));
        /* Strided fill of the other columns. */
        dp_tensor *fc = dp_tensor_view_of(wc, 2, shape, dst_stride, 0);
        dp_tensor *fg = dp_tensor_view_of(wg, 2, shape, dst_stride, 0);
        CHECK_OK(cpu->fill(fc, 1.3));
        CHECK_OK(cuda_ops->fill(fg, 1.3));
        CHECK(same_bytes(wg, wc), "strided fill %s: cuda differs from cpu", dp_dtype_name(st));
        dp_tensor *wh = to_cpu(wg);
        double want = dp_dtype_is_float(st) ? dp_load_f64(wc->data, st, 0) : 1.0;
        CHECK(dp_load_f64(wh->data, st, 0) == want && (!dp_dtype_is_float(st) || fabs(want - 1.3) < 0.2),
              "fill %s: element 0 is %g", dp_dtype_name(st), dp_load_f64(wh->data, st, 0));
        dp_tensor *rel[] = {x0, x0g, x, xg, wc, wg, vc, vg, fc, fg, wh};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
    }
}

/* ---------------------------------------------------------------- reduce and argmax */

static void test_reduce(void) {
    int64_t base[3] = {130, 7, 6};   /* viewed reversed as (6, 7, 130) */
    struct { int n; int32_t dims[3]; } sets[] = {{1, {0}}, {1, {1}}, {1, {2}}, {2, {0, 2}}, {3, {0, 1, 2}}};
    for (int k = 0; k < N_FLOATS; k++) {
        dp_dtype dt = floats[k];
        dp_tensor *x0 = make(dt, 3, base, 90 + k, -2, 2, 0), *x0g = to_cuda(x0);
        dp_tensor *x = reversed(x0), *xg = reversed(x0g);
        for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
            int64_t os[3] = {6, 7, 130};
            for (int i = 0; i < sets[si].n; i++) os[sets[si].dims[i]] = 1;
            for (int op = DP_RED_SUM; op <= DP_RED_MAX; op++) {
                dp_tensor *oc = empty(dt, DP_CPU, 3, os), *og = empty(dt, DP_CUDA, 3, os);
                CHECK_OK(cpu->reduce(oc, x, sets[si].n, sets[si].dims, (dp_redop)op));
                CHECK_OK(cuda_ops->reduce(og, xg, sets[si].n, sets[si].dims, (dp_redop)op));
                if (op == DP_RED_MAX) {
                    CHECK(same_bytes(og, oc), "max over set %d %s: cuda differs", (int)si,
                          dp_dtype_name(dt));
                } else {
                    /* f32: the double sums differ in order only, so the f32 results are within
                     * one rounding of each other. */
                    double w = worst_rel_diff(og, oc, 1), tol = dt == DP_F32 ? 2e-7 : ulp_tol(dt);
                    CHECK(w <= tol, "reduce %d over set %d %s: worst %g", op, (int)si,
                          dp_dtype_name(dt), w);
                }
                dp_tensor_release(oc);
                dp_tensor_release(og);
            }
        }
        dp_tensor *rel[] = {x0, x0g, x, xg};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
    }
    /* Known answers: 1..1000 sums to 500500 (exact in f32); a NaN makes its slice's max NaN. */
    int64_t n = 1000, one = 1;
    dp_tensor *c = empty(DP_F32, DP_CPU, 1, &n);
    for (int i = 0; i < 1000; i++) ((float *)c->data)[i] = (float)(i + 1);
    ((float *)c->data)[500] = 1000.0f;   /* replaced 501: the sum drops by 501 - 1000 */
    dp_tensor *g = to_cuda(c), *og = empty(DP_F32, DP_CUDA, 1, &one);
    CHECK_OK(cuda_ops->reduce(og, g, 1, (int32_t[]){0}, DP_RED_SUM));
    dp_tensor *h = to_cpu(og);
    CHECK(((float *)h->data)[0] == 500999.0f, "sum is %.9g, want 500999", ((float *)h->data)[0]);
    dp_tensor_release(h);
    /* argmax: the first of the two 1000s (index 500). */
    dp_tensor *ag = empty(DP_I64, DP_CUDA, 1, &one);
    CHECK_OK(cuda_ops->argmax(ag, g, 0));
    h = to_cpu(ag);
    CHECK(((int64_t *)h->data)[0] == 500, "argmax is %lld, want 500", (long long)((int64_t *)h->data)[0]);
    dp_tensor_release(h);
    float nan = NAN;
    CHECK_OK(cuda_ops->memcpy_h2d((float *)g->data + 700, &nan, sizeof nan));
    CHECK_OK(cuda_ops->reduce(og, g, 1, (int32_t[]){0}, DP_RED_MAX));
    CHECK_OK(cuda_ops->argmax(ag, g, 0));
    h = to_cpu(og);
    CHECK(isnan(((float *)h->data)[0]), "max over a NaN is %g", ((float *)h->data)[0]);
    dp_tensor_release(h);
    h = to_cpu(ag);
    CHECK(((int64_t *)h->data)[0] == 700, "argmax with NaN at 700 is %lld", (long long)((int64_t *)h->data)[0]);
    dp_tensor *rel[] = {c, g, og, ag, h};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
}

static void test_argmax(void) {
    static const dp_dtype dts[] = {DP_F32, DP_F64, DP_BF16, DP_FP8_E4M3, DP_I32, DP_I64, DP_U8};
    int64_t base[2] = {300, 5};   /* viewed reversed as (5, 300) */
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        dp_dtype dt = dts[k];
        /* Few distinct values so ties are common; row 3 gets a NaN (floats) at two places. */
        dp_tensor *x0 = make(dt, 2, base, 110 + k, 0, 8, 0);
        for (int64_t i = 0; i < 1500; i++) dp_store_f64(x0->data, dt, i, floor(dp_load_f64(x0->data, dt, i)));
        if (dp_dtype_is_float(dt)) {
            dp_store_f64(x0->data, dt, 200 * 5 + 3, NAN);
            dp_store_f64(x0->data, dt, 250 * 5 + 3, NAN);
        }
        dp_tensor *x0g = to_cuda(x0), *x = reversed(x0), *xg = reversed(x0g);
        for (int32_t dim = 0; dim < 2; dim++) {
            int64_t os[2] = {5, 300};
            os[dim] = 1;
            dp_tensor *oc = empty(DP_I64, DP_CPU, 2, os), *og = empty(DP_I64, DP_CUDA, 2, os);
            CHECK_OK(cpu->argmax(oc, x, dim));
            CHECK_OK(cuda_ops->argmax(og, xg, dim));
            CHECK(same_bytes(og, oc), "argmax %s dim %d: cuda differs", dp_dtype_name(dt), dim);
            if (dim == 1 && dp_dtype_is_float(dt)) {
                dp_tensor *h = to_cpu(og);
                CHECK(((int64_t *)h->data)[3] == 200, "argmax %s row 3 is %lld, want the first NaN (200)",
                      dp_dtype_name(dt), (long long)((int64_t *)h->data)[3]);
                dp_tensor_release(h);
            }
            dp_tensor_release(oc);
            dp_tensor_release(og);
        }
        dp_tensor *rel[] = {x0, x0g, x, xg};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
    }
}

/* ---------------------------------------------------------------- fp8 quantisation */

static void test_quant(void) {
    static const dp_dtype dts[] = {DP_F32, DP_F64, DP_BF16, DP_F16};
    int64_t shape[2] = {4, 777};
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        dp_dtype dt = dts[k];
        dp_tensor *x = make(dt, 2, shape, 130 + k, -600, 600, 0);
        dp_store_f64(x->data, dt, 5, NAN);
        dp_store_f64(x->data, dt, 777 + 9, INFINITY);
        dp_store_f64(x->data, dt, 2 * 777 + 1, 1e-7);
        dp_tensor *xg = to_cuda(x);
        for (int64_t groups = 1; groups <= 4; groups += 3) {
            dp_tensor *ac = empty(DP_F64, DP_CPU, 1, &groups), *agp = empty(DP_F64, DP_CUDA, 1, &groups);
            CHECK_OK(cpu->quant_amax(ac, x));
            CHECK_OK(cuda_ops->quant_amax(agp, xg));
            CHECK(same_bytes(agp, ac), "quant_amax %s groups %lld: cuda differs", dp_dtype_name(dt),
                  (long long)groups);
            dp_tensor *sc = empty(DP_F32, DP_CPU, 1, &groups);
            for (int64_t i = 0; i < groups; i++) ((float *)sc->data)[i] = 0.37f + 0.5f * (float)i;
            dp_tensor *scg = to_cuda(sc);
            for (int f = 0; f < 2; f++) {
                dp_dtype q = f ? DP_FP8_E5M2 : DP_FP8_E4M3;
                dp_tensor *oc = empty(dt, DP_CPU, 2, shape), *og = empty(dt, DP_CUDA, 2, shape);
                CHECK_OK(cpu->fake_quant(oc, x, sc, q));
                CHECK_OK(cuda_ops->fake_quant(og, xg, scg, q));
                CHECK(same_bytes(og, oc), "fake_quant %s -> %s groups %lld: cuda differs",
                      dp_dtype_name(dt), dp_dtype_name(q), (long long)groups);
                dp_tensor_release(oc);
                dp_tensor_release(og);
            }
            dp_tensor *rel[] = {ac, agp, sc, scg};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) dp_tensor_release(rel[i]);
        }
        /* Known answer: the whole tensor's amax is Inf (NaN ignored). */
        int64_t one = 1;
        dp_tensor *a1 = empty(DP_F64, DP_CUDA, 1, &one);
        CHECK_OK(cuda_ops->quant_amax(a1, xg));
        dp_tensor *h = to_cpu(a1);
        CHECK(isinf(((double *)h->data)[0]), "amax %s is %g, want Inf", dp_dtype_name(dt), ((double *)h->data)[0]);
        dp_tensor_release(h);
        dp_tensor_release(a1);
        dp_tensor_release(x);
        dp_tensor_release(xg);
    }
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    cpu = dp_ops_for(DP_CPU);
    int64_t live = dp_live_tensors();
    test_binary();
    test_unary();
    test_copy_fill();
    test_reduce();
    test_argmax();
    test_quant();
    CHECK(dp_live_tensors() == live, "leaked %lld tensors", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_cuda_elementwise");
}
