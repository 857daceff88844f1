/* gemm_direct.c: what dp_matmul costs over calling OpenBLAS directly, at BERT-base shapes.
 * Prints one JSON object per line: first the engines this CPU offers, then per shape (M, N, K) the
 * median time of cblas_sgemm, of dp_matmul in f32 and in bf16 (7 runs after 2 warm-ups, the
 * variants taking turns), and of the f32 GEMM kernel writing into a preallocated output (what
 * dp_matmul costs apart from allocating its result). Usage: gemm_direct [threads]
 * bench/ops.lua compares the Lua side against these numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "internal.h"
#include "bench_timing.h"

enum { WARMUP = 2, REPS = 7 };

static dp_tensor *random_f32(int64_t rows, int64_t cols, uint64_t seed) {
    int64_t shape[2] = {rows, cols};
    dp_tensor *t = dp_tensor_empty(DP_F32, DP_CPU, 2, shape);
    if (!t) return NULL;
    float *p = t->data;
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; i < rows * cols; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5);
    }
    return t;
}

/* ms for one dp_matmul(a, b), or -1 with the error on stderr. */
static double time_matmul(dp_tensor *a, dp_tensor *b) {
    double t0 = now_ms();
    dp_tensor *y = dp_matmul(a, b);
    double t1 = now_ms();
    if (!y) {
        fprintf(stderr, "gemm_direct: %s\n", dp_last_error());
        return -1;
    }
    dp_tensor_release(y);
    return t1 - t0;
}

/* Whether oneDNN runs bf16 matmul here: ask for it explicitly on a small problem. */
static void print_engines(void) {
    dp_tensor *a = random_f32(64, 64, 1);
    dp_tensor *ab = dp_cast(a, DP_BF16);
    setenv("DP_GEMM_ENGINE", "onednn", 1);
    dp_tensor *y = dp_matmul(ab, ab);
    char detail[512] = "";
    if (!y) {
        const char *e = dp_last_error();
        size_t j = 0;
        for (size_t i = 0; e[i] && j + 2 < sizeof detail; i++)
            if (e[i] != '"' && e[i] != '\\') detail[j++] = e[i];
        detail[j] = '\0';
    }
    unsetenv("DP_GEMM_ENGINE");
    printf("{\"onednn_bf16_available\":%s,\"detail\":\"%s\",\"threads\":%d,\"openblas\":\"%s\"}\n",
           y ? "true" : "false", detail, dp_get_num_threads(), openblas_get_config());
    dp_tensor_release(y);
    dp_tensor_release(ab);
    dp_tensor_release(a);
}

int main(int argc, char **argv) {
    static const int64_t shapes[3][3] = {{4096, 768, 768}, {4096, 3072, 768}, {4096, 768, 3072}};
    if (argc > 1) dp_set_num_threads(atoi(argv[1]));
    const dp_ops *ops = dp_ops_for(DP_CPU);
    print_engines();
    fflush(stdout);
    for (int s = 0; s < 3; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        dp_tensor *a = random_f32(M, K, 2), *b = random_f32(K, N, 3);
        float *c = malloc(sizeof(float) * (size_t)(M * N));
        dp_tensor *ab = dp_cast(a, DP_BF16), *bb = dp_cast(b, DP_BF16);
        int64_t out_shape[2] = {M, N};
        dp_tensor *out = dp_tensor_empty(DP_F32, DP_CPU, 2, out_shape);
        if (!a || !b || !c || !ab || !bb || !out) {
            fprintf(stderr, "gemm_direct: out of memory\n");
            return 1;
        }
        /* The three variants take turns, so a busy machine slows them alike. */
        double t_direct[REPS], t_f32[REPS], t_bf16[REPS], t_kernel[REPS];
        for (int r = 0; r < WARMUP + REPS; r++) {
            double t0 = now_ms();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f,
                        a->data, (int)K, b->data, (int)N, 0.0f, c, (int)N);
            double direct = now_ms() - t0;
            double f32 = time_matmul(a, b), bf16 = time_matmul(ab, bb);
            if (f32 < 0 || bf16 < 0) return 1;
            t0 = now_ms();
            if (ops->gemm(out, a, b, 0, 0, 1.0, 0.0)) {
                fprintf(stderr, "gemm_direct: %s\n", dp_last_error());
                return 1;
            }
            double kernel = now_ms() - t0;
            if (r < WARMUP) continue;
            t_direct[r - WARMUP] = direct;
            t_f32[r - WARMUP] = f32;
            t_bf16[r - WARMUP] = bf16;
            t_kernel[r - WARMUP] = kernel;
        }
        double direct = median(t_direct, REPS), f32 = median(t_f32, REPS);
        double bf16 = median(t_bf16, REPS), kernel = median(t_kernel, REPS);
        printf("{\"shape\":[%lld,%lld,%lld],\"direct_openblas_ms\":%.2f,\"dp_f32_ms\":%.2f,"
               "\"dp_bf16_ms\":%.2f,\"bf16_engine\":\"%s\",\"gflops_direct\":%.1f,"
               "\"dp_f32_prealloc_ms\":%.2f,\"threads\":%d}\n",
               (long long)M, (long long)N, (long long)K, direct, f32, bf16,
               dp_matmul_engine(DP_BF16), 2.0 * M * N * K / direct * 1e-6, kernel,
               dp_get_num_threads());
        fflush(stdout);
        free(c);
        dp_tensor_release(a);
        dp_tensor_release(b);
        dp_tensor_release(ab);
        dp_tensor_release(bb);
        dp_tensor_release(out);
    }
    return 0;
}
