/* test_matmul_fp8.c: dp_matmul_fp8 and the CPU gemm_fp8 kernel against a float64 reference loop
 * that decodes the fp8 codes itself (fp_ref.h, from the formats' definitions): every allowed
 * operand pair (e4m3 x e4m3, e4m3 x e5m2, e5m2 x e4m3), outputs bf16, f16 and f32, scales 2^-7
 * and 3.0 (not a power of two), operands stored transposed, batched, broadcast over batch dims
 * and in a layout no GEMM reads (copied first), the kernel's trans flags with alpha and beta, K = 0,
 * and the argument errors.
 *
 * Tolerance of each element, with r = scale_a scale_b sum_k a_k b_k in float64 and
 * S = scale_a scale_b sum_k |a_k b_k|: |got - r| <= u |r| + 2 (K + 2) 2^-24 S + floor, where u is
 * the output's rounding unit (2^-8 bf16, 2^-11 f16, 2^-24 f32), the middle term bounds the f32
 * accumulation in any order, and floor is half f16's smallest subnormal (2^-25) for f16 out.
 * With small-integer operands every f32 sum is exact, so there the result must equal r rounded
 * once to nearest even in the output format, bit for bit. */
#include "dp_test.h"
#include "fp_ref.h"
#include "internal.h"

enum { MAXN = 4096 };

/* Random finite fp8 codes: sign, an exponent field from {0 (zero/subnormal), lo..hi} and any
 * mantissa, so products and sums stay far from every output format's overflow. */
static void random_codes(uint8_t *codes, int64_t n, dp_dtype dt, uint64_t *state) {
    int man = dt == DP_FP8_E4M3 ? 3 : 2, lo = dt == DP_FP8_E4M3 ? 3 : 11, hi = lo + 6;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = (uint64_t)((dp_test_uniform(state) + 1.0) * 1e6);
        int e = (int)(r % (uint64_t)(hi - lo + 2));
        e = e == 0 ? 0 : lo + e - 1;
        uint32_t m = (uint32_t)((r / 13) % (1u << man)), s = (uint32_t)((r / 7) & 1);
        codes[i] = (uint8_t)((s << 7) | ((uint32_t)e << man) | m);
    }
}

/* Codes of small integers in [-6, 6] (exact in both formats). */
static void integer_codes(uint8_t *codes, int64_t n, dp_dtype dt, uint64_t *state) {
    const fp_format *f = fp_format_of(dt);
    for (int64_t i = 0; i < n; i++) {
        int v = (int)((dp_test_uniform(state) + 1.0) * 6.5) - 6;
        for (uint32_t c = 0; c < 256; c++)
            if (fp_decode(f, c) == (double)v && !(v == 0 && c != 0)) {
                codes[i] = (uint8_t)c;
                break;
            }
    }
}

/* An operand holding codes in storage (count, rows, cols) row-major; *v gets the logical
 * (count, r, c) view, transposed in its last two dims when stored_t (storage (count, c, r)). */
typedef struct {
    dp_tensor *store, *view;
    uint8_t codes[MAXN];
    int stored_t;
    int64_t count, r, c;
} operand;

static void make_operand(operand *o, dp_dtype dt, int32_t nd, int64_t count, int64_t r, int64_t c,
                         int stored_t, int integers, uint64_t *state) {
    o->stored_t = stored_t;
    o->count = count;
    o->r = r;
    o->c = c;
    int64_t n = count * r * c;
    if (integers) integer_codes(o->codes, n, dt, state);
    else random_codes(o->codes, n, dt, state);
    int64_t sshape[3] = {count, stored_t ? c : r, stored_t ? r : c};
    o->store = dp_tensor_from_raw(dt, nd, nd == 3 ? sshape : sshape + 1, o->codes);
    CHECK_PTR(o->store);
    o->view = stored_t && o->store ? dp_transpose(o->store, nd - 2, nd - 1) : o->store;
    if (stored_t) CHECK_PTR(o->view);
    else if (o->store) dp_tensor_retain(o->store);
}

static void free_operand(operand *o) {
    dp_tensor_release(o->view);
    dp_tensor_release(o->store);
}

/* Logical element (m, i, j) of o, decoded from its code. */
static double value(const operand *o, dp_dtype dt, int64_t m, int64_t i, int64_t j) {
    int64_t k = o->stored_t ? (m * o->c + j) * o->r + i : (m * o->r + i) * o->c + j;
    return fp_decode(fp_format_of(dt), o->codes[k]);
}

static double unit_of(dp_dtype dt) { return dt == DP_BF16 ? 0x1p-8 : dt == DP_F16 ? 0x1p-11 : 0x1p-24; }

/* Checks got (batch, M, N) against the reference for batch element p using matrices pa of a and
 * pb of b; exact = 1 asks for the correctly rounded r. Returns the first bad index or -1. */
static int64_t check_block(const double *got, dp_dtype odt, const operand *a, dp_dtype ta,
                           int64_t pa, const operand *b, dp_dtype tb, int64_t pb, int64_t M,
                           int64_t N, int64_t K, double sa, double sb, double alpha, double beta,
                           const double *old, int exact, double *want) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, sabs = 0;
            for (int64_t k = 0; k < K; k++) {
                double x = value(a, ta, pa, i, k), y = value(b, tb, pb, k, j);
                s += x * y;
                sabs += fabs(x * y);
            }
            double c = old ? old[i * N + j] : 0;
            double r = alpha * sa * sb * s + beta * c;
            double g = got[i * N + j];
            *want = r;
            if (exact) {
                double rr = fp_round(fp_format_of(odt), r);
                *want = rr;
                if (!(g == rr)) return i * N + j;
                continue;
            }
            double bound = unit_of(odt) * fabs(r) + 2.0 * (double)(K + 2) * 0x1p-24 *
                           (fabs(alpha) * sa * sb * sabs + fabs(beta * c)) +
                           (odt == DP_F16 ? 0x1p-25 : 0);
            if (!(fabs(g - r) <= bound)) return i * N + j;
        }
    return -1;
}

static const char *name_of(dp_dtype dt) { return dp_dtype_name(dt); }

/* One dp_matmul_fp8 case: a logical (ca, M, K) (nda dims), b (cb, K, N) (ndb dims); the batch of
 * the result is max(ca, cb) with a count of 1 broadcasting. */
static void run_matmul(dp_dtype ta, dp_dtype tb, dp_dtype odt, int32_t nda, int64_t ca,
                       int32_t ndb, int64_t cb, int64_t M, int64_t K, int64_t N, int at, int bt,
                       double sa, double sb, int integers, const char *label) {
    uint64_t state = 12345 + (uint64_t)(M * 7 + K * 3 + N + at * 2 + bt + nda * 11);
    operand a, b;
    make_operand(&a, ta, nda, ca, M, K, at, integers, &state);
    make_operand(&b, tb, ndb, cb, K, N, bt, integers, &state);
    dp_tensor *out = a.view && b.view ? dp_matmul_fp8(a.view, b.view, sa, sb, odt) : NULL;
    CHECK(out != NULL, "%s: %s", label, dp_last_error());
    int64_t batch = ca > cb ? ca : cb;
    if (out) {
        CHECK(out->dtype == odt, "%s: out dtype %s", label, name_of(out->dtype));
        double *got = malloc(sizeof(double) * (size_t)(batch * M * N));
        CHECK_OK(dp_tensor_to_f64(out, got));
        int64_t bad = -1, p = 0;
        double want = 0;
        for (p = 0; p < batch && bad < 0; p++)
            bad = check_block(got + p * M * N, odt, &a, ta, ca == 1 ? 0 : p, &b, tb,
                              cb == 1 ? 0 : p, M, N, K, sa, sb, 1.0, 0.0, NULL, integers, &want);
        CHECK(bad < 0, "%s (%s x %s -> %s, scales %g %g): batch %lld element %lld is %.9g, want %.9g",
              label, name_of(ta), name_of(tb), name_of(odt), sa, sb, (long long)(p - 1),
              (long long)bad, bad >= 0 ? got[(p - 1) * M * N + bad] : 0.0, want);
        free(got);
    }
    dp_tensor_release(out);
    free_operand(&a);
    free_operand(&b);
}

static void test_pairs_layouts_scales(void) {
    const dp_dtype pairs[3][2] = {{DP_FP8_E4M3, DP_FP8_E4M3},
                                  {DP_FP8_E4M3, DP_FP8_E5M2},
                                  {DP_FP8_E5M2, DP_FP8_E4M3}};
    const dp_dtype outs[3] = {DP_BF16, DP_F16, DP_F32};
    const double scales[2][2] = {{0x1p-7, 3.0}, {3.0, 1.0}};
    for (int p = 0; p < 3; p++)
        for (int o = 0; o < 3; o++)
            for (int s = 0; s < 2; s++) {
                dp_dtype ta = pairs[p][0], tb = pairs[p][1], od = outs[o];
                double sa = scales[s][0], sb = scales[s][1];
                for (int t = 0; t < 4; t++)
                    run_matmul(ta, tb, od, 2, 1, 2, 1, 5, 19, 7, t & 1, t >> 1, sa, sb, 0,
                               "2-D, stored transposed as flagged");
                run_matmul(ta, tb, od, 3, 3, 3, 3, 4, 16, 6, 0, 1, sa, sb, 0, "3-D, both batched");
                run_matmul(ta, tb, od, 3, 3, 2, 1, 4, 9, 6, 1, 0, sa, sb, 0, "3-D a, shared 2-D b");
                run_matmul(ta, tb, od, 2, 1, 3, 2, 4, 9, 6, 0, 0, sa, sb, 0, "shared 2-D a, 3-D b");
                run_matmul(ta, tb, od, 2, 1, 2, 1, 6, 12, 5, s, 1 - s, sa, sb, 1,
                           "small integers: correctly rounded");
            }
}

/* a (2, 1, M, K) @ b (1, 3, K, N) -> (2, 3, M, N): both broadcast, one kernel call per outer index. */
static void test_broadcast_4d(void) {
    uint64_t state = 99;
    uint8_t ac[2 * 4 * 8], bc[3 * 8 * 5];
    random_codes(ac, 64, DP_FP8_E4M3, &state);
    random_codes(bc, 120, DP_FP8_E5M2, &state);
    int64_t as[4] = {2, 1, 4, 8}, bs[4] = {1, 3, 8, 5};
    dp_tensor *a = dp_tensor_from_raw(DP_FP8_E4M3, 4, as, ac);
    dp_tensor *b = dp_tensor_from_raw(DP_FP8_E5M2, 4, bs, bc);
    dp_tensor *out = dp_matmul_fp8(a, b, 0x1p-7, 3.0, DP_F32);
    CHECK(out && out->ndim == 4 && out->shape[0] == 2 && out->shape[1] == 3 && out->shape[2] == 4 &&
          out->shape[3] == 5, "4-D broadcast: %s", out ? dp_tensor_desc(out) : dp_last_error());
    if (out) {
        double got[2 * 3 * 4 * 5];
        CHECK_OK(dp_tensor_to_f64(out, got));
        int bad = 0;
        for (int x = 0; x < 2; x++)
            for (int y = 0; y < 3; y++)
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 5; j++) {
                        double s = 0, sabs = 0;
                        for (int k = 0; k < 8; k++) {
                            double p = fp_decode(&FP_E4M3, ac[(x * 4 + i) * 8 + k]) *
                                       fp_decode(&FP_E5M2, bc[(y * 8 + k) * 5 + j]);
                            s += p;
                            sabs += fabs(p);
                        }
                        double r = 0x1p-7 * 3.0 * s, g = got[((x * 3 + y) * 4 + i) * 5 + j];
                        if (!(fabs(g - r) <= 0x1p-24 * fabs(r) + 20 * 0x1p-24 * 0x1p-7 * 3.0 * sabs)) bad++;
                    }
        CHECK(bad == 0, "4-D broadcast: %d elements off", bad);
    }
    dp_tensor_release(out);
    dp_tensor_release(a);
    dp_tensor_release(b);
}

/* A view with no unit stride in its last two dims (every other column of a wider matrix) is
 * copied before the kernel sees it. */
static void test_unreadable_layout(void) {
    uint64_t state = 7;
    uint8_t ac[5 * 12], bc[6 * 3];
    random_codes(ac, 60, DP_FP8_E4M3, &state);
    random_codes(bc, 18, DP_FP8_E4M3, &state);
    int64_t as[2] = {5, 12}, bs[2] = {6, 3};
    dp_tensor *wide = dp_tensor_from_raw(DP_FP8_E4M3, 2, as, ac);
    dp_tensor *b = dp_tensor_from_raw(DP_FP8_E4M3, 2, bs, bc);
    int64_t vshape[2] = {5, 6}, vstride[2] = {12, 2};
    dp_tensor *a = wide ? dp_tensor_view_of(wide, 2, vshape, vstride, 0) : NULL;
    dp_tensor *out = a && b ? dp_matmul_fp8(a, b, 1.0, 1.0, DP_F32) : NULL;
    CHECK(out != NULL, "strided view: %s", dp_last_error());
    if (out) {
        double got[15];
        CHECK_OK(dp_tensor_to_f64(out, got));
        int bad = 0;
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 3; j++) {
                double s = 0, sabs = 0;
                for (int k = 0; k < 6; k++) {
                    double p = fp_decode(&FP_E4M3, ac[i * 12 + 2 * k]) * fp_decode(&FP_E4M3, bc[k * 3 + j]);
                    s += p;
                    sabs += fabs(p);
                }
                if (!(fabs(got[i * 3 + j] - s) <= 0x1p-24 * fabs(s) + 16 * 0x1p-24 * sabs)) bad++;
            }
        CHECK(bad == 0, "strided view: %d elements off", bad);
    }
    dp_tensor_release(out);
    dp_tensor_release(a);
    dp_tensor_release(b);
    dp_tensor_release(wide);
}

/* The CPU kernel itself: trans flags set (operands stored (K, M) and (N, K)), alpha and beta with
 * out read, a batch whose b is one matrix shared with batch stride 0. */
static void test_kernel_flags(void) {
    const dp_ops *cpu = dp_ops_for(DP_CPU);
    const dp_dtype outs[3] = {DP_BF16, DP_F16, DP_F32};
    int64_t B = 3, M = 6, K = 11, N = 5;
    for (int o = 0; o < 3; o++) {
        uint64_t state = 500 + (uint64_t)o;
        operand a, b;
        /* Stored transposed and passed with the trans flags (kernel views (B, K, M) and
         * (B, N, K), the latter with batch stride 0). */
        make_operand(&a, DP_FP8_E5M2, 3, B, M, K, 1, 0, &state);
        make_operand(&b, DP_FP8_E4M3, 2, 1, K, N, 1, 0, &state);
        int64_t ash[3] = {B, K, M}, ast[3] = {K * M, M, 1}, bsh[3] = {B, N, K}, bst[3] = {0, K, 1};
        dp_tensor *av = dp_tensor_view_of(a.store, 3, ash, ast, 0);
        dp_tensor *bv = dp_tensor_view_of(b.store, 3, bsh, bst, 0);
        int64_t osh[3] = {B, M, N};
        dp_tensor *out = dp_test_random(outs[o], 3, osh, 31);
        double *old = malloc(sizeof(double) * (size_t)(B * M * N));
        double *got = malloc(sizeof(double) * (size_t)(B * M * N));
        CHECK_OK(dp_tensor_to_f64(out, old));
        CHECK_OK(cpu->gemm_fp8(out, av, bv, 1, 1, 0x1p-7, 3.0, 1.5, 0.5));
        CHECK_OK(dp_tensor_to_f64(out, got));
        int64_t bad = -1, p;
        double want = 0;
        for (p = 0; p < B && bad < 0; p++)
            bad = check_block(got + p * M * N, outs[o], &a, DP_FP8_E5M2, p, &b, DP_FP8_E4M3, 0, M,
                              N, K, 0x1p-7, 3.0, 1.5, 0.5, old + p * M * N, 0, &want);
        CHECK(bad < 0, "kernel trans flags, alpha 1.5, beta 0.5, out %s: batch %lld element %lld is "
              "%.9g, want %.9g", name_of(outs[o]), (long long)(p - 1), (long long)bad,
              bad >= 0 ? got[(p - 1) * M * N + bad] : 0.0, want);
        free(old);
        free(got);
        dp_tensor_release(out);
        dp_tensor_release(av);
        dp_tensor_release(bv);
        free_operand(&a);
        free_operand(&b);
    }
}

static void test_k_zero(void) {
    int64_t as[2] = {3, 0}, bs[2] = {0, 4};
    dp_tensor *a = dp_tensor_empty(DP_FP8_E4M3, DP_CPU, 2, as);
    dp_tensor *b = dp_tensor_empty(DP_FP8_E4M3, DP_CPU, 2, bs);
    dp_tensor *out = dp_matmul_fp8(a, b, 1.0, 1.0, DP_BF16);
    CHECK(out && out->shape[0] == 3 && out->shape[1] == 4, "K = 0: %s", dp_last_error());
    if (out) {
        double got[12];
        CHECK_OK(dp_tensor_to_f64(out, got));
        int nonzero = 0;
        for (int i = 0; i < 12; i++) nonzero += got[i] != 0;
        CHECK(nonzero == 0, "K = 0: %d nonzero results", nonzero);
    }
    dp_tensor_release(out);
    dp_tensor_release(a);
    dp_tensor_release(b);
}

/* A failing call: NULL and a message holding each of the two fragments. */
static void expect_error(dp_tensor *a, dp_tensor *b, double sa, double sb, dp_dtype odt,
                         const char *frag1, const char *frag2) {
    dp_tensor *out = dp_matmul_fp8(a, b, sa, sb, odt);
    const char *msg = dp_last_error();
    CHECK(out == NULL && strstr(msg, frag1) && strstr(msg, frag2),
          "expected an error with \"%s\" and \"%s\", got %s (\"%s\")", frag1, frag2,
          out ? "a result" : "NULL", msg);
    dp_tensor_release(out);
}

static void test_errors(void) {
    int64_t s34[2] = {3, 4}, s45[2] = {4, 5}, s55[2] = {5, 5}, s4[1] = {4};
    int64_t b234[3] = {2, 3, 4}, b345[3] = {3, 4, 5};
    dp_tensor *e4 = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 2, s34);
    dp_tensor *e4b = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 2, s45);
    dp_tensor *e5 = dp_tensor_zeros(DP_FP8_E5M2, DP_CPU, 2, s34);
    dp_tensor *e5b = dp_tensor_zeros(DP_FP8_E5M2, DP_CPU, 2, s45);
    dp_tensor *sq = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 2, s55);
    dp_tensor *v = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 1, s4);
    dp_tensor *bf = dp_tensor_zeros(DP_BF16, DP_CPU, 2, s45);
    dp_tensor *x2 = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 3, b234);
    dp_tensor *x3 = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 3, b345);
    expect_error(e5, e5b, 1, 1, DP_BF16, "dp_matmul_fp8", "both fp8_e5m2");
    expect_error(e4, bf, 1, 1, DP_BF16, "dp_matmul_fp8: b must be fp8_e4m3 or fp8_e5m2", "bf16");
    expect_error(NULL, e4b, 1, 1, DP_BF16, "dp_matmul_fp8: a is NULL", "fp8");
    expect_error(e4, e4b, 1, 1, DP_FP8_E4M3, "out_dtype must be bf16, f16 or f32", "fp8_e4m3");
    expect_error(e4, e4b, 1, 1, DP_F64, "out_dtype must be bf16, f16 or f32", "f64");
    expect_error(e4, e4b, 0.0, 1, DP_F32, "scale_a must be finite and > 0", "got 0");
    expect_error(e4, e4b, 1, -2.0, DP_F32, "scale_b must be finite and > 0", "got -2");
    expect_error(e4, e4b, NAN, 1, DP_F32, "scale_a must be finite", "nan");
    expect_error(e4, e4b, 1, INFINITY, DP_F32, "scale_b must be finite", "inf");
    expect_error(e4, e4b, 1e-40, 1, DP_F32, "scale_a", "normal range");
    expect_error(e4, sq, 1, 1, DP_F32, "dp_matmul_fp8: inner dims differ", "K = 4");
    expect_error(v, e4b, 1, 1, DP_F32, "need at least 2 dims", "[4]");
    expect_error(x2, x3, 1, 1, DP_F32, "batch dims do not broadcast", "[2,3,4]");
    /* Not differentiable: refused while grad mode is on, computed with it off. */
    CHECK_OK(dp_tensor_set_requires_grad(e4, 1));
    expect_error(e4, e4b, 1, 1, DP_F32, "dp_matmul_fp8: a requires grad", "not differentiable");
    dp_set_grad_enabled(0);
    dp_tensor *ok = dp_matmul_fp8(e4, e4b, 1, 1, DP_F32);
    CHECK(ok != NULL && !ok->requires_grad, "grad mode off: %s", dp_last_error());
    dp_tensor_release(ok);
    dp_set_grad_enabled(1);
    dp_tensor *all[] = {e4, e4b, e5, e5b, sq, v, bf, x2, x3};
    for (int i = 0; i < 9; i++) dp_tensor_release(all[i]);
}

int main(void) {
    test_pairs_layouts_scales();
    test_broadcast_4d();
    test_unreadable_layout();
    test_kernel_flags();
    test_k_zero();
    test_errors();
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_matmul_fp8");
}
