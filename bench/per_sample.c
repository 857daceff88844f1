/* per_sample.c: what the per-sample-norm kernels (kernels/cpu/per_sample.c) cost next to the GEMMs
 * of a non-private step, at BERT-style shapes (B = 32, T = 128, width K). Prints one JSON object
 * per K with median milliseconds (7 runs after 2 warm-ups, variants taking turns):
 *   gram_ms            dp_cpu_ops.gram of x (B, T, K), f32 (one single-threaded syrk per thread)
 *   gram_blas_threads  the same syrks one after another, each threaded by OpenBLAS
 *   gram_gemm_ms       the full x x^T through dp_cpu_ops.gemm (what syrk halves)
 *   ghost_norm_ms      dp_cpu_ops.ghost_norm of two (B, T, T) f32 Grams
 *   weight_grad_ms     cblas_sgemm x^T gy for a K x K linear layer ((K, B*T) @ (B*T, K)), the
 *                      GEMM a non-private backward runs for the same layer
 *   row_sums_ms, row_sq_norms_ms, scale_rows_ms, embedding_ms: the other kernels on (B, T, K).
 * Usage: per_sample [threads] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "internal.h"
#include "bench_timing.h"

enum { WARMUP = 2, REPS = 7, NV = 10 };

static dp_tensor *random_tensor(dp_dtype dtype, int32_t ndim, const int64_t *shape, uint64_t seed,
                                int64_t modulo) {
    dp_tensor *t = dp_tensor_empty(dtype, DP_CPU, ndim, shape);
    if (!t) return NULL;
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; i < dp_tensor_numel(t); i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 40) / (double)(1 << 24);
        if (modulo) dp_store_f64(t->data, dtype, i, (double)((int64_t)(u * (double)modulo)));
        else dp_store_f64(t->data, dtype, i, u - 0.5);
    }
    return t;
}

static int ok(int rc) {
    if (rc) fprintf(stderr, "per_sample: %s\n", dp_last_error());
    return rc == 0;
}

int main(int argc, char **argv) {
    if (argc > 1) dp_set_num_threads(atoi(argv[1]));
    const dp_ops *ops = dp_ops_for(DP_CPU);
    const int64_t B = 32, T = 128, Ks[2] = {256, 1024};
    for (int k = 0; k < 2; k++) {
        int64_t K = Ks[k], xs[3] = {B, T, K}, ts[3] = {B, T, T}, bs[1] = {B}, os[2] = {B, K};
        int64_t is[2] = {B, T}, ws[2] = {K, K}, rs[1] = {B * T};
        dp_tensor *x = random_tensor(DP_F32, 3, xs, 1, 0), *gy = random_tensor(DP_F32, 3, xs, 2, 0);
        dp_tensor *ga = dp_tensor_empty(DP_F32, DP_CPU, 3, ts), *gg = dp_tensor_empty(DP_F32, DP_CPU, 3, ts);
        dp_tensor *sq = dp_tensor_empty(DP_F64, DP_CPU, 1, bs), *bd = dp_tensor_empty(DP_F64, DP_CPU, 1, bs);
        dp_tensor *sums = dp_tensor_empty(DP_F64, DP_CPU, 2, os), *w = dp_tensor_empty(DP_F32, DP_CPU, 2, ws);
        dp_tensor *scaled = dp_tensor_empty(DP_F32, DP_CPU, 3, xs), *rows = dp_tensor_empty(DP_F64, DP_CPU, 1, rs);
        dp_tensor *fac = random_tensor(DP_F64, 1, bs, 3, 0), *idx = random_tensor(DP_I64, 2, is, 4, 3000);
        dp_tensor *mean = random_tensor(DP_F32, 1, rs, 5, 0), *rstd = random_tensor(DP_F32, 1, rs, 6, 0);
        dp_tensor *xr = dp_reshape(x, 2, (int64_t[]){B * T, K});
        if (!x || !gy || !ga || !gg || !sq || !bd || !sums || !w || !scaled || !rows || !fac || !idx ||
            !mean || !rstd || !xr) {
            fprintf(stderr, "per_sample: out of memory\n");
            return 1;
        }
        int threads = dp_get_num_threads();
        double t[NV][REPS];
        for (int r = 0; r < WARMUP + REPS; r++) {
            double ms[NV], t0 = now_ms();
            if (!ok(ops->gram(ga, x))) return 1;
            ms[0] = now_ms() - t0;
            t0 = now_ms();
            openblas_set_num_threads(threads);
            for (int64_t b = 0; b < B; b++)
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)T, (int)K, 1.0f,
                            (const float *)x->data + b * T * K, (int)K, 0.0f,
                            (float *)gg->data + b * T * T, (int)T);
            ms[1] = now_ms() - t0;
            t0 = now_ms();
            if (!ok(ops->gemm(gg, x, x, 0, 1, 1.0, 0.0))) return 1;
            ms[2] = now_ms() - t0;
            if (!ok(ops->gram(gg, gy))) return 1;
            t0 = now_ms();
            if (!ok(ops->ghost_norm(sq, bd, ga, gg, 1e-5, 1e-5))) return 1;
            ms[3] = now_ms() - t0;
            t0 = now_ms();
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)K, (int)(B * T), 1.0f,
                        x->data, (int)K, gy->data, (int)K, 0.0f, w->data, (int)K);
            ms[4] = now_ms() - t0;
            t0 = now_ms();
            if (!ok(ops->row_sums(sums, gy, NULL, NULL, NULL))) return 1;
            ms[5] = now_ms() - t0;
            t0 = now_ms();
            if (!ok(ops->row_sums(sums, gy, x, mean, rstd))) return 1;
            ms[6] = now_ms() - t0;
            t0 = now_ms();
            if (!ok(ops->row_sq_norms(rows, xr))) return 1;
            ms[7] = now_ms() - t0;
            t0 = now_ms();
            if (!ok(ops->scale_rows(scaled, gy, fac))) return 1;
            ms[8] = now_ms() - t0;
            t0 = now_ms();
            if (!ok(ops->embedding_sq_norms(sq, idx, gy))) return 1;
            ms[9] = now_ms() - t0;
            if (r >= WARMUP)
                for (int v = 0; v < NV; v++) t[v][r - WARMUP] = ms[v];
        }
        double m[NV];
        for (int v = 0; v < NV; v++) m[v] = median(t[v], REPS);
        printf("{\"B\":%lld,\"T\":%lld,\"K\":%lld,\"threads\":%d,\"gram_ms\":%.3f,"
               "\"gram_blas_threads_ms\":%.3f,\"gram_gemm_ms\":%.3f,\"ghost_norm_ms\":%.3f,"
               "\"weight_grad_ms\":%.3f,\"row_sums_ms\":%.3f,\"row_sums_ln_ms\":%.3f,"
               "\"row_sq_norms_ms\":%.3f,\"scale_rows_ms\":%.3f,\"embedding_ms\":%.3f}\n",
               (long long)B, (long long)T, (long long)K, threads, m[0], m[1], m[2], m[3], m[4],
               m[5], m[6], m[7], m[8], m[9]);
        fflush(stdout);
        dp_tensor *all[] = {x, gy, ga, gg, sq, bd, sums, w, scaled, rows, fac, idx, mean, rstd, xr};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dp_tensor_release(all[i]);
    }
    return 0;
}
