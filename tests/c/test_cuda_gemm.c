/* test_cuda_gemm.c: the CUDA GEMM (cuBLASLt) against float64 loops written here, for f32, f64,
 * bf16, f16, fp8 e4m3 and e5m2: every (trans_a, trans_b), alpha and beta (out read), batches with
 * both operands batched (one strided-batched call), a shared b (folded into one tall GEMM), a
 * shared a (one call per matrix), operands stored column-major (unit stride down the columns),
 * and K = 0. Each element must lie within the rounding bound of its dtype: the output rounding
 * |ref| * u plus 2 K u_acc sum |alpha a b| (+ |beta c|) for the f32 (f64) accumulation. Exits 77
 * (DP_TEST_SKIP) with a SKIP line when no CUDA device is usable. */
#include <stdlib.h>
#include "dp_test.h"
#include "internal.h"
#include "cuda_test.h"

/* Relative rounding unit of each output dtype, and the smallest subnormal's half (absolute). */
static void units(dp_dtype dt, double *u, double *abs_floor) {
    switch (dt) {
    case DP_F64: *u = 0x1p-53; *abs_floor = 0; break;
    case DP_F32: *u = 0x1p-24; *abs_floor = 0; break;
    case DP_BF16: *u = 0x1p-8; *abs_floor = 0; break;
    case DP_F16: *u = 0x1p-11; *abs_floor = 0x1p-25; break;
    case DP_FP8_E4M3: *u = 0x1p-4; *abs_floor = 0x1p-10; break;
    default: *u = 0x1p-3; *abs_floor = 0x1p-17; break;
    }
}

/* An operand of logical shape (count, r, c) (count 0: 2-D), stored row-major or, with colmajor,
 * as the transpose (unit stride down the columns). *cpu gets its logical values as doubles. */
static dp_tensor *operand(dp_dtype dt, int64_t count, int64_t r, int64_t c, int colmajor,
                          uint64_t seed, double **cpu) {
    int64_t st_shape[3] = {count ? count : 1, colmajor ? c : r, colmajor ? r : c};
    dp_tensor *h = rnd(dt, count ? 3 : 2, count ? st_shape : st_shape + 1, seed, 1.0), *d = to_cuda(h), *hv, *dv;
    operand_views(h, d, count, r, c, colmajor, &hv, &dv);
    *cpu = malloc(sizeof(double) * (size_t)(st_shape[0] * r * c));
    CHECK(hv && dv && *cpu, "operand: %s", dp_last_error());
    if (hv && *cpu) CHECK_OK(dp_tensor_to_f64(hv, *cpu));
    dp_tensor_release(h);
    dp_tensor_release(d);
    dp_tensor_release(hv);
    return dv;
}

typedef struct {
    int64_t batch, a_count, b_count, M, N, K;   /* batch 0: 2-D out; counts 0: 2-D operand */
    int ta, tb, a_col, b_col;
    double alpha, beta;
} gemm_case;

static void run_case(dp_dtype dt, const gemm_case *g, const char *label) {
    int64_t M = g->M, N = g->N, K = g->K, nb = g->batch ? g->batch : 1;
    double *av = NULL, *bv = NULL;
    dp_tensor *a = operand(dt, g->a_count, g->ta ? K : M, g->ta ? M : K, g->a_col, 61, &av);
    dp_tensor *b = operand(dt, g->b_count, g->tb ? N : K, g->tb ? K : N, g->b_col, 62, &bv);
    int64_t os[3] = {nb, M, N};
    int32_t ond = g->batch ? 3 : 2;
    dp_tensor *c0 = rnd(dt, ond, g->batch ? os : os + 1, 63, 1.0);
    double *cv = malloc(sizeof(double) * (size_t)(nb * M * N));
    double *got = malloc(sizeof(double) * (size_t)(nb * M * N));
    dp_tensor *dc = c0 ? to_cuda(c0) : NULL;
    if (!a || !b || !dc || !cv || !got || !av || !bv) {
        CHECK(0, "%s: setup failed: %s", label, dp_last_error());
    } else {
        CHECK_OK(dp_tensor_to_f64(c0, cv));
        int rc = cuda_ops->gemm(dc, a, b, g->ta, g->tb, g->alpha, g->beta);
        CHECK(rc == 0, "%s %s: gemm failed: %s", label, dp_dtype_name(dt), dp_last_error());
        dp_tensor *hc = to_cpu(dc);
        CHECK_OK(dp_tensor_to_f64(hc, got));
        dp_tensor_release(hc);
        double u, floor_abs, uacc = dt == DP_F64 ? 0x1p-53 : 0x1p-24;
        units(dt, &u, &floor_abs);
        int64_t bad = -1;
        double bad_ref = 0;
        for (int64_t p = 0; p < nb && bad < 0 && rc == 0; p++) {
            const double *A = av + (g->a_count ? p : 0) * M * K, *B = bv + (g->b_count ? p : 0) * K * N;
            for (int64_t i = 0; i < M && bad < 0; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s, sa;
                    ref_dot(A, B, M, N, K, g->ta, g->tb, i, j, &s, &sa);
                    double cold = cv[(p * M + i) * N + j];
                    double ref = g->alpha * s + g->beta * cold;
                    double bound = fabs(ref) * u + 2.0 * (double)(K + 2) * uacc *
                                   (fabs(g->alpha) * sa + fabs(g->beta * cold)) + floor_abs;
                    if (!(fabs(got[(p * M + i) * N + j] - ref) <= bound)) {
                        bad = (p * M + i) * N + j;
                        bad_ref = ref;
                        break;
                    }
                }
        }
        CHECK(bad < 0, "%s %s: element %lld is %.9g, float64 reference %.9g", label,
              dp_dtype_name(dt), (long long)bad, bad >= 0 ? got[bad] : 0.0, bad_ref);
    }
    free(av);
    free(bv);
    free(cv);
    free(got);
    dp_tensor_release(a);
    dp_tensor_release(b);
    dp_tensor_release(c0);
    dp_tensor_release(dc);
}

int main(void) {
    /* The fp8 cases here hold CUDA to exact f32 accumulation, which the widening path gives; the
     * native fp8 tensor-core path (sm_89+) accumulates differently and is checked against its own
     * bound in test_cuda_gemm_fp8.c. */
    setenv("DP_CUDA_FP8", "widen", 1);
    if (cuda_skip()) return DP_TEST_SKIP;
    const dp_dtype dts[] = {DP_F32, DP_F64, DP_BF16, DP_F16, DP_FP8_E4M3, DP_FP8_E5M2};
    char label[96];
    for (int k = 0; k < 6; k++) {
        dp_dtype dt = dts[k];
        for (int t = 0; t < 4; t++) {
            gemm_case g = {0, 0, 0, 17, 9, 23, t & 1, t >> 1, 0, 0, 1.5, 0.0};
            snprintf(label, sizeof label, "2-D ta %d tb %d", g.ta, g.tb);
            run_case(dt, &g, label);
            g.beta = 0.5;
            g.a_col = 1;
            snprintf(label, sizeof label, "2-D ta %d tb %d, a column-major, beta 0.5", g.ta, g.tb);
            run_case(dt, &g, label);
            g.a_col = 0;
            g.b_col = 1;
            snprintf(label, sizeof label, "2-D ta %d tb %d, b column-major, beta 0.5", g.ta, g.tb);
            run_case(dt, &g, label);
        }
        gemm_case both = {4, 4, 4, 8, 12, 16, 0, 1, 0, 0, 1.0, 0.0};
        run_case(dt, &both, "batch 4, both batched, b transposed");
        gemm_case shared_b = {3, 3, 0, 5, 7, 6, 0, 0, 0, 0, 1.0, 1.0};
        run_case(dt, &shared_b, "batch 3, shared b (folded), beta 1");
        gemm_case shared_a = {3, 0, 3, 5, 7, 6, 1, 0, 0, 0, -2.0, 0.0};
        run_case(dt, &shared_a, "batch 3, shared transposed a (per-matrix calls)");
        gemm_case k0 = {2, 2, 2, 4, 3, 0, 0, 0, 0, 0, 1.0, 0.5};
        run_case(dt, &k0, "K = 0, beta 0.5");
        k0.beta = 0.0;
        run_case(dt, &k0, "K = 0, beta 0");
    }
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_cuda_gemm");
}
