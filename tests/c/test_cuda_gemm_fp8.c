/* test_cuda_gemm_fp8.c: the CUDA fp8 GEMMs (kernels/cuda/gemm_fp8.cu) against the CPU kernel and a
 * float64 reference that decodes the fp8 codes itself (fp_ref.h): dp_ops.gemm_fp8 for every
 * operand pair (e4m3 x e4m3, e4m3 x e5m2, e5m2 x e4m3) and output (bf16, f16, f32), every
 * (trans_a, trans_b), operands stored column-major, sizes cuBLASLt's fp8 kernels take as they are
 * (M 32, N 48, K 64) and sizes that need repacking (K 19), batches (both batched, shared b folded,
 * shared a one call per matrix), scales 2^-7 and 3.0, alpha and beta; the gemm entry's fp8 dtypes
 * (fp8 out); dp_matmul_fp8 on CUDA tensors. Each runs with DP_CUDA_FP8=widen, auto and native
 * (native is skipped, with a note, on GPUs below compute capability 8.9).
 *
 * Bounds, with r the float64 reference and S = |alpha scale_a scale_b| sum |a b| (+ |beta c|):
 * |got - r| <= u |r| + 2 (K + 2) u_acc S + floor, u the output's rounding unit. u_acc = 2^-24
 * (f32 accumulation) for the CPU and the widened path; 2^-13 when cuBLASLt's fp8 kernels may have
 * run, whose accumulation on Hopper is documented only as "promoted periodically" to f32 (with
 * fast accumulation off, the default kept here). Small-integer operands make every sum exact in
 * either: there CPU and CUDA must both give r correctly rounded, bit for bit. Exits 77 with a SKIP
 * line when no CUDA device is usable. */
#define _GNU_SOURCE   /* dladdr */
#include <dlfcn.h>
#include "dp_test.h"
#include "fp_ref.h"
#include "internal.h"
#include "cuda_test.h"

static const dp_ops *cpu_ops;
static const char *(*last_path)(void);
static int native_ok = 1;

static void find_last_path(void) {
    void *h = dlopen("libdpcuda.so", RTLD_NOW | RTLD_NOLOAD);
    Dl_info info;
    if (!h && dladdr((void *)dp_ops_for, &info) && info.dli_fname) {
        char path[4096];
        const char *slash = strrchr(info.dli_fname, '/');
        snprintf(path, sizeof path, "%.*s/libdpcuda.so", slash ? (int)(slash - info.dli_fname) : 1,
                 slash ? info.dli_fname : ".");
        h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    }
    if (h) last_path = (const char *(*)(void))dlsym(h, "dp_cuda_gemm_fp8_last_path");
}

static double unit_of(dp_dtype dt, double *floor_abs) {
    switch (dt) {
    case DP_BF16: *floor_abs = 0; return 0x1p-8;
    case DP_F16: *floor_abs = 0x1p-25; return 0x1p-11;
    case DP_F32: *floor_abs = 0; return 0x1p-24;
    case DP_FP8_E4M3: *floor_abs = 0x1p-10; return 0x1p-4;
    default: *floor_abs = 0x1p-17; return 0x1p-3;
    }
}

/* Random finite codes of moderate magnitude, or small integers in [-6, 6]. */
static uint8_t code_for(dp_dtype dt, uint64_t *state, int integers) {
    const fp_format *f = fp_format_of(dt);
    for (;;) {
        uint32_t c = (uint32_t)((dp_test_uniform(state) + 1.0) * 128.0) & 0xFF;
        double v = fp_decode(f, c);
        if (isnan(v) || isinf(v)) continue;
        if (integers ? (v == floor(v) && fabs(v) <= 6) : ((fabs(v) <= 8 && fabs(v) >= 1.0 / 64) || v == 0))
            return (uint8_t)c;
    }
}

/* Logical (count, r, c) operand stored row-major or (colmajor) as its transpose; views on the CPU
 * (*hv) and on CUDA (returned); *vals its logical values decoded here. */
static dp_tensor *operand(dp_dtype dt, int64_t count, int64_t r, int64_t c, int colmajor,
                          uint64_t seed, int integers, dp_tensor **hv, double **vals) {
    int64_t cnt = count ? count : 1, n = cnt * r * c;
    uint8_t *codes = malloc((size_t)(n ? n : 1));
    *vals = malloc(sizeof(double) * (size_t)(n ? n : 1));
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) codes[i] = code_for(dt, &s, integers);
    int64_t st_shape[3] = {cnt, colmajor ? c : r, colmajor ? r : c};
    dp_tensor *h = dp_tensor_from_raw(dt, count ? 3 : 2, count ? st_shape : st_shape + 1, codes);
    dp_tensor *d = h ? to_cuda(h) : NULL, *dv = NULL;
    *hv = NULL;
    if (h) operand_views(h, d, count, r, c, colmajor, hv, &dv);
    for (int64_t m = 0; m < cnt; m++)
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++)
                (*vals)[(m * r + i) * c + j] = fp_decode(fp_format_of(dt),
                    codes[m * r * c + (colmajor ? j * r + i : i * c + j)]);
    CHECK(*hv && dv, "operand: %s", dp_last_error());
    free(codes);
    dp_tensor_release(h);
    dp_tensor_release(d);
    return dv;
}

typedef struct {
    int64_t batch, a_count, b_count, M, N, K;   /* batch 0: 2-D out; counts 0: 2-D operand */
    int ta, tb, a_col, b_col, integers;
    double sa, sb, alpha, beta;
} gcase;

/* First element of got outside its bound (or, exact, not equal to r correctly rounded), or -1. */
static int64_t check(const double *got, dp_dtype odt, const gcase *g, const double *av,
                     const double *bv, const double *cv, double u_acc, double *want) {
    int64_t M = g->M, N = g->N, K = g->K, nb = g->batch ? g->batch : 1;
    double floor_abs, u = unit_of(odt, &floor_abs), f = g->alpha * g->sa * g->sb;
    for (int64_t p = 0; p < nb; p++) {
        const double *A = av + (g->a_count ? p : 0) * M * K, *B = bv + (g->b_count ? p : 0) * K * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s, sa;
                ref_dot(A, B, M, N, K, g->ta, g->tb, i, j, &s, &sa);
                int64_t e = (p * M + i) * N + j;
                double r = f * s + g->beta * cv[e];
                *want = g->integers ? fp_round(fp_format_of(odt), r) : r;
                if (g->integers ? !(got[e] == *want)
                                : !(fabs(got[e] - r) <= u * fabs(r) + floor_abs +
                                    2.0 * (double)(K + 2) * u_acc * (fabs(f) * sa + fabs(g->beta * cv[e]))))
                    return e;
            }
    }
    return -1;
}

/* One case through gemm_fp8 (fp8_out = 0) or the gemm entry (fp8_out: a, b and out all ta). */
static void run(dp_dtype ta, dp_dtype tb, dp_dtype odt, const gcase *g, const char *mode,
                const char *label) {
    int64_t nb = g->batch ? g->batch : 1, n = nb * g->M * g->N;
    double *av, *bv, *cv = malloc(sizeof(double) * (size_t)n), *got = malloc(sizeof(double) * (size_t)n);
    dp_tensor *ha, *hb;
    dp_tensor *a = operand(ta, g->a_count, g->ta ? g->K : g->M, g->ta ? g->M : g->K, g->a_col,
                           61 + (uint64_t)g->K, g->integers, &ha, &av);
    dp_tensor *b = operand(tb, g->b_count, g->tb ? g->N : g->K, g->tb ? g->K : g->N, g->b_col,
                           67 + (uint64_t)g->N, g->integers, &hb, &bv);
    int64_t os[3] = {nb, g->M, g->N};
    dp_tensor *hc = rnd(odt, g->batch ? 3 : 2, g->batch ? os : os + 1, 71, 1.0);
    dp_tensor *dc = hc ? to_cuda(hc) : NULL;
    int fp8_out = odt == ta;
    if (a && b && dc && !dp_tensor_to_f64(hc, cv)) {
        setenv("DP_CUDA_FP8", mode, 1);
        int rc = fp8_out ? cuda_ops->gemm(dc, a, b, g->ta, g->tb, g->alpha, g->beta)
                         : cuda_ops->gemm_fp8(dc, a, b, g->ta, g->tb, g->sa, g->sb, g->alpha, g->beta);
        int native = !strcmp(mode, "native");
        int aligned = g->M % 16 == 0 && g->N % 16 == 0 && g->K % 16 == 0;
        if (rc && native && strstr(dp_last_error(), "compute capability")) {
            if (native_ok) printf("note: %s\n", dp_last_error());
            native_ok = 0;
        } else if (native && ta == DP_FP8_E5M2 && tb == DP_FP8_E5M2) {
            CHECK(rc != 0 && strstr(dp_last_error(), "e5m2 x e5m2"), "%s: forced native e5m2 x e5m2 "
                  "should be refused, got rc %d (%s)", label, rc, dp_last_error());
        } else if (rc && native && !aligned && strstr(dp_last_error(), "no algorithm")) {
            /* Forced native where cuBLASLt has no fp8 kernel (auto falls back): a note, not a failure. */
            printf("note: %s (%s x %s -> %s): %s\n", label, dp_dtype_name(ta), dp_dtype_name(tb),
                   dp_dtype_name(odt), dp_last_error());
        } else {
            const char *path = last_path ? last_path() : "?";
            CHECK(rc == 0, "%s %s: cuda failed: %s", label, mode, dp_last_error());
            dp_tensor *back = rc ? NULL : to_cpu(dc);
            double want = 0, u_acc = strcmp(path, "native") ? 0x1p-24 : 0x1p-13;
            if (back && !dp_tensor_to_f64(back, got)) {
                int64_t bad = check(got, odt, g, av, bv, cv, u_acc, &want);
                CHECK(bad < 0, "%s (%s x %s -> %s, DP_CUDA_FP8=%s, path %s): cuda element %lld is "
                      "%.9g, want %.9g", label, dp_dtype_name(ta), dp_dtype_name(tb),
                      dp_dtype_name(odt), mode, path, (long long)bad, bad >= 0 ? got[bad] : 0.0, want);
            }
            dp_tensor_release(back);
        }
        /* The CPU twin on the same operands and starting out. */
        rc = fp8_out ? cpu_ops->gemm(hc, ha, hb, g->ta, g->tb, g->alpha, g->beta)
                     : cpu_ops->gemm_fp8(hc, ha, hb, g->ta, g->tb, g->sa, g->sb, g->alpha, g->beta);
        CHECK(rc == 0, "%s: cpu failed: %s", label, dp_last_error());
        double want = 0;
        if (!rc && !dp_tensor_to_f64(hc, got)) {
            int64_t bad = check(got, odt, g, av, bv, cv, 0x1p-24, &want);
            CHECK(bad < 0, "%s (%s x %s -> %s): cpu element %lld is %.9g, want %.9g", label,
                  dp_dtype_name(ta), dp_dtype_name(tb), dp_dtype_name(odt), (long long)bad,
                  bad >= 0 ? got[bad] : 0.0, want);
        }
    } else {
        CHECK(0, "%s: setup failed: %s", label, dp_last_error());
    }
    free(av);
    free(bv);
    free(cv);
    free(got);
    dp_tensor_release(a);
    dp_tensor_release(b);
    dp_tensor_release(ha);
    dp_tensor_release(hb);
    dp_tensor_release(hc);
    dp_tensor_release(dc);
}

static void test_gemm_fp8(const char *mode) {
    const dp_dtype pairs[3][2] = {{DP_FP8_E4M3, DP_FP8_E4M3}, {DP_FP8_E4M3, DP_FP8_E5M2},
                                  {DP_FP8_E5M2, DP_FP8_E4M3}};
    const dp_dtype outs[3] = {DP_BF16, DP_F16, DP_F32};
    char label[96];
    for (int p = 0; p < 3; p++)
        for (int o = 0; o < 3; o++) {
            dp_dtype ta = pairs[p][0], tb = pairs[p][1], od = outs[o];
            for (int t = 0; t < 4; t++) {
                gcase g = {0, 0, 0, 32, 48, 64, t & 1, t >> 1, 0, 0, 0, 0x1p-7, 3.0, 1.0, 0.0};
                snprintf(label, sizeof label, "aligned 2-D ta %d tb %d", g.ta, g.tb);
                run(ta, tb, od, &g, mode, label);
                gcase odd = {0, 0, 0, 5, 7, 19, t & 1, t >> 1, t & 1, 0, 0, 3.0, 0.5, 1.5, 0.5};
                snprintf(label, sizeof label, "odd 2-D ta %d tb %d, a column-major, beta", g.ta, g.tb);
                run(ta, tb, od, &odd, mode, label);
            }
            gcase both = {4, 4, 4, 16, 32, 48, 0, 1, 0, 0, 0, 0x1p-7, 3.0, 1.0, 0.0};
            run(ta, tb, od, &both, mode, "batch 4, both batched, b transposed");
            gcase shared_b = {3, 3, 0, 5, 7, 6, 0, 0, 0, 1, 0, 1.0, 3.0, 1.0, 1.0};
            run(ta, tb, od, &shared_b, mode, "batch 3, shared column-major b, beta 1");
            gcase shared_a = {3, 0, 3, 16, 16, 32, 1, 0, 0, 0, 0, 0x1p-7, 1.0, -2.0, 0.0};
            run(ta, tb, od, &shared_a, mode, "batch 3, shared transposed a");
            gcase ints = {2, 2, 2, 16, 24, 32, 0, 1, 0, 0, 1, 0x1p-7, 3.0, 1.0, 0.0};
            run(ta, tb, od, &ints, mode, "small integers: exact sums, correctly rounded");
        }
    /* The gemm entry with fp8 out (e5m2 x e5m2 always widens). */
    const dp_dtype fp8s[2] = {DP_FP8_E4M3, DP_FP8_E5M2};
    for (int d = 0; d < 2; d++) {
        /* alpha 2^-4 keeps the results well inside e4m3's range (no saturation at 448). */
        gcase g = {0, 0, 0, 32, 48, 64, 0, 1, 0, 0, 0, 1.0, 1.0, 0x1p-4, 0.0};
        run(fp8s[d], fp8s[d], fp8s[d], &g, mode, "gemm entry, fp8 out");
        gcase h = {2, 2, 0, 5, 7, 19, 1, 0, 0, 0, 0, 1.0, 1.0, 0x1p-4, 0.5};
        run(fp8s[d], fp8s[d], fp8s[d], &h, mode, "gemm entry, fp8 out, shared b, beta");
    }
}

/* dp_matmul_fp8 on CUDA tensors (batch broadcast, a transposed view) against the CPU op. */
static void test_matmul_op(void) {
    setenv("DP_CUDA_FP8", "auto", 1);
    int64_t as[3] = {2, 64, 32}, bs[2] = {64, 48};   /* a stored (2, K, M), used transposed */
    dp_tensor *ha = rnd(DP_FP8_E4M3, 3, as, 5, 4.0), *hb = rnd(DP_FP8_E5M2, 2, bs, 6, 4.0);
    dp_tensor *da = ha ? to_cuda(ha) : NULL, *db = hb ? to_cuda(hb) : NULL;
    dp_tensor *hat = ha ? dp_transpose(ha, 1, 2) : NULL, *dat = da ? dp_transpose(da, 1, 2) : NULL;
    dp_tensor *want = hat && hb ? dp_matmul_fp8(hat, hb, 0x1p-7, 3.0, DP_BF16) : NULL;
    dp_tensor *got = dat && db ? dp_matmul_fp8(dat, db, 0x1p-7, 3.0, DP_BF16) : NULL;
    CHECK(want && got && got->device == DP_CUDA && got->ndim == 3 && got->shape[2] == 48,
          "dp_matmul_fp8 on cuda: %s", dp_last_error());
    /* Two roundings into bf16 (2^-8 each, relative) of sums that may differ by the fp8 kernels'
     * accumulation: an allowance of 2^-6 * (1 + |cpu|) in all. */
    if (want && got) compare("dp_matmul_fp8 cuda vs cpu", got, want, 0x1p-6);
    dp_tensor *ts[] = {ha, hb, da, db, hat, dat, want, got};
    for (int i = 0; i < 8; i++) dp_tensor_release(ts[i]);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    cpu_ops = dp_ops_for(DP_CPU);
    find_last_path();
    CHECK(last_path != NULL, "dp_cuda_gemm_fp8_last_path not found in libdpcuda.so");
    test_gemm_fp8("widen");
    test_gemm_fp8("auto");
    test_gemm_fp8("native");
    test_matmul_op();
    unsetenv("DP_CUDA_FP8");
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_cuda_gemm_fp8");
}
