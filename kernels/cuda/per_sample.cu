// per_sample.cu: the CUDA kernels behind the per-sample-gradient entries of dp_ops (gram,
// ghost_norm, scale_rows, row_sums, row_sq_norms, embedding_sq_norms); semantics in core/backend.h,
// reference kernels/cpu/per_sample.c. Sums accumulate in double like the CPU's, but in a different
// order (tree reductions), so results agree to rounding, not bit for bit. gram goes through
// cuBLAS (f32 accumulation for f32, f64 for f64) on the legacy default stream like every kernel.
#include <limits.h>
#include <mutex>
#include <cublas_v2.h>
#include "dpsgd.h"
#include "per_sample_checks.h"
#include "allocator.h"

// ---------------------------------------------------------------- helpers

// Sum of v over the block (blockDim.x == DP_CUDA_THREADS, a power of two); valid in thread 0.
// sh: DP_CUDA_THREADS doubles of shared memory. Ends with a barrier, so sh can be reused.
static __device__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int w = DP_CUDA_THREADS / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    double total = sh[0];
    __syncthreads();
    return total;
}

// Grid of one block per item (rows, examples), capped; the kernels loop over the rest.
static unsigned grid_per_item(int64_t items) {
    return (unsigned)(items < 1 ? 1 : items > 65535 ? 65535 : items);
}

static const char *cublas_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}

static int cublas_check(cublasStatus_t s, const char *op, const char *call) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    return dp_fail(DP_EDEVICE, "%s: %s failed: %s (%d)", op, call, cublas_name(s), (int)s);
}

// This file's cuBLAS handle, created on first use (on the backend's stream, default math mode: no
// TF32 for f32 unless NVIDIA_TF32_OVERRIDE asks for it). Never destroyed (see allocator.cu).
static int gram_handle(cublasHandle_t *out) {
    static std::mutex lock;
    static cublasHandle_t handle = NULL;
    std::lock_guard<std::mutex> guard(lock);
    if (!handle) {
        cublasHandle_t h = NULL;
        int rc = cublas_check(cublasCreate(&h), "gram", "cublasCreate");
        if (!rc) rc = cublas_check(cublasSetStream(h, dp_cuda_stream()), "gram", "cublasSetStream");
        if (rc) {
            if (h) cublasDestroy(h);
            return rc;
        }
        handle = h;
    }
    *out = handle;
    return 0;
}

// ---------------------------------------------------------------- gram

int dp_cuda_gram(dp_tensor *out, const dp_tensor *x) {
    int rc = dp_ps_check_gram(out, x);
    if (rc) return rc;
    int64_t B = x->shape[0], T = x->shape[1], K = x->shape[2];
    if (T > INT_MAX || K > INT_MAX || B > INT_MAX)
        return dp_fail(DP_EUNSUPPORTED, "gram: B %lld, T %lld or K %lld exceeds cuBLAS's 32-bit ints",
                       (long long)B, (long long)T, (long long)K);
    if (B == 0 || T == 0) return 0;
    int64_t es = dp_dtype_size(x->dtype);
    if (K == 0)
        return dp_cuda_check(cudaMemsetAsync(out->data, 0, (size_t)(B * T * T * es), dp_cuda_stream()), "gram", "cudaMemsetAsync");
    cublasHandle_t h;
    rc = gram_handle(&h);
    if (rc) return rc;
    // Row-major x[b] (T, K) is column-major X (K, T) with ld K; X^T X (T, T) is x x^T, symmetric,
    // so its column-major layout is also the row-major one the engine reads.
    if (x->dtype == DP_F32) {
        const float one = 1.0f, zero = 0.0f;
        return cublas_check(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)T, (int)T,
                                                      (int)K, &one, (const float *)x->data, (int)K,
                                                      T * K, (const float *)x->data, (int)K, T * K,
                                                      &zero, (float *)out->data, (int)T, T * T,
                                                      (int)B),
                            "gram", "cublasSgemmStridedBatched");
    }
    const double one = 1.0, zero = 0.0;
    return cublas_check(cublasDgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)T, (int)T, (int)K,
                                                  &one, (const double *)x->data, (int)K, T * K,
                                                  (const double *)x->data, (int)K, T * K, &zero,
                                                  (double *)out->data, (int)T, T * T, (int)B),
                        "gram", "cublasDgemmStridedBatched");
}

// ---------------------------------------------------------------- ghost_norm

// One block per example: threads walk the upper triangle row by row (off-diagonal terms count
// twice), each accumulating the three sums in double, then reduce.
__global__ void ghost_norm_kernel(double *sq, double *bound, const void *ga, const void *gg,
                                  dp_dtype dt, int64_t B, int64_t T, double ka, double kg) {
    __shared__ double sh[DP_CUDA_THREADS];
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        int64_t base = b * T * T;
        double s_sq = 0, s_ba = 0, s_bg = 0;
        for (int64_t i = 0; i < T; i++) {
            double ra_i = sqrt(dp_cuda_load_f64(ga, dt, base + i * T + i));
            double rg_i = sqrt(dp_cuda_load_f64(gg, dt, base + i * T + i));
            for (int64_t s = i + threadIdx.x; s < T; s += blockDim.x) {
                double a = dp_cuda_load_f64(ga, dt, base + i * T + s);
                double g = dp_cuda_load_f64(gg, dt, base + i * T + s);
                double ra_s = sqrt(dp_cuda_load_f64(ga, dt, base + s * T + s));
                double rg_s = sqrt(dp_cuda_load_f64(gg, dt, base + s * T + s));
                double w = s == i ? 1.0 : 2.0;
                s_sq += w * (a * g);
                s_ba += w * (ra_i * ra_s * fabs(g));
                s_bg += w * (fabs(a) * rg_i * rg_s);
            }
        }
        double t_sq = block_sum(s_sq, sh), t_ba = block_sum(s_ba, sh), t_bg = block_sum(s_bg, sh);
        if (threadIdx.x == 0) {
            sq[b] = t_sq;
            bound[b] = ka * t_ba + kg * t_bg;
        }
    }
}

int dp_cuda_ghost_norm(dp_tensor *sq, dp_tensor *bound, const dp_tensor *ga, const dp_tensor *gg,
                       double ka, double kg) {
    int64_t B = 0, T = 0;
    int rc = dp_ps_check_ghost_norm(sq, bound, ga, gg, &B, &T);
    if (rc) return rc;
    if (B == 0) return 0;
    ghost_norm_kernel<<<grid_per_item(B), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>((double *)sq->data,
                                                             (double *)bound->data, ga->data,
                                                             gg->data, ga->dtype, B, T, ka, kg);
    return dp_cuda_check_launch("ghost_norm", "ghost_norm_kernel");
}

// ---------------------------------------------------------------- scale_rows

// out[i] = factor[i / n] * x[i] in double, rounded once; a zero factor writes +0 whatever x holds.
__global__ void scale_rows_kernel(void *out, dp_dtype ot, const void *x, dp_dtype xt,
                                  const double *factor, int64_t total, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        double f = factor[i / n];
        dp_cast_store_float(out, ot, i, f == 0 ? 0.0 : f * dp_cuda_load_f64(x, xt, i));
    }
}

int dp_cuda_scale_rows(dp_tensor *out, const dp_tensor *x, const dp_tensor *factor) {
    int64_t B = 1, total = 0;
    int rc = dp_ps_check_scale_rows(out, x, factor, &B, &total);
    if (rc) return rc;
    if (total == 0) return 0;
    scale_rows_kernel<<<dp_cuda_grid(total), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
        out->data, out->dtype, x->data, x->dtype, (const double *)factor->data, total, total / B);
    return dp_cuda_check_launch("scale_rows", "scale_rows_kernel");
}

// ---------------------------------------------------------------- row_sums

// One thread per (example, column): sums its column over the T rows in order (coalesced across
// the threads of a warp, which hold neighbouring columns).
__global__ void row_sums_kernel(double *out, const void *g, dp_dtype gt, const void *x,
                                dp_dtype xt, const void *mean, dp_dtype mt, const void *rstd,
                                dp_dtype rt, int64_t B, int64_t T, int64_t N) {
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < B * N;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = k / N, c = k % N;
        double acc = 0;
        for (int64_t t = 0; t < T; t++) {
            int64_t off = (b * T + t) * N + c;
            double gv = dp_cuda_load_f64(g, gt, off);
            if (x) {
                double m = dp_cuda_load_f64(mean, mt, b * T + t), r = dp_cuda_load_f64(rstd, rt, b * T + t);
                gv *= (dp_cuda_load_f64(x, xt, off) - m) * r;
            }
            acc += gv;
        }
        out[k] = acc;
    }
}

int dp_cuda_row_sums(dp_tensor *out, const dp_tensor *g, const dp_tensor *x, const dp_tensor *mean,
                     const dp_tensor *rstd) {
    int64_t B = 0, T = 0, N = 0;
    int rc = dp_ps_check_row_sums(out, g, x, mean, rstd, &B, &T, &N);
    if (rc) return rc;
    if (B * N == 0) return 0;
    row_sums_kernel<<<dp_cuda_grid(B * N), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
        (double *)out->data, g->data, g->dtype, x ? x->data : NULL, x ? x->dtype : DP_F32,
        x ? mean->data : NULL, x ? mean->dtype : DP_F32, x ? rstd->data : NULL,
        x ? rstd->dtype : DP_F32, B, T, N);
    return dp_cuda_check_launch("row_sums", "row_sums_kernel");
}

// ---------------------------------------------------------------- row_sq_norms

// One block per row.
__global__ void row_sq_norms_kernel(double *out, const void *x, dp_dtype xt, int64_t R, int64_t N) {
    __shared__ double sh[DP_CUDA_THREADS];
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        double s = 0;
        for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
            double v = dp_cuda_load_f64(x, xt, r * N + j);
            s += v * v;
        }
        double total = block_sum(s, sh);
        if (threadIdx.x == 0) out[r] = total;
    }
}

int dp_cuda_row_sq_norms(dp_tensor *out, const dp_tensor *x) {
    int64_t R = 0, N = 0;
    int rc = dp_ps_check_row_sq_norms(out, x, &R, &N);
    if (rc) return rc;
    if (R == 0) return 0;
    row_sq_norms_kernel<<<grid_per_item(R), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>((double *)out->data, x->data,
                                                               x->dtype, R, N);
    return dp_cuda_check_launch("row_sq_norms", "row_sq_norms_kernel");
}

// ---------------------------------------------------------------- embedding_sq_norms

static __device__ __forceinline__ int64_t index_at(const void *idx, dp_dtype t, int64_t i) {
    return t == DP_I32 ? ((const int32_t *)idx)[i] : ((const int64_t *)idx)[i];
}

// Pass 1, one thread per position (b, t): lead[b*T + t] = 1 when no earlier position of example b
// holds the same index; next[b*T + t] = the following position holding it, or -1. O(T) compares
// per thread, no hash tables: the groups come out in position order, as on the CPU.
__global__ void emb_group_kernel(int32_t *lead, int32_t *next, const void *idx, dp_dtype it,
                                 int64_t B, int64_t T) {
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < B * T;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = k / T, t = k % T, v = index_at(idx, it, k);
        int32_t first = 1, nx = -1;
        for (int64_t s = 0; s < T; s++) {
            if (s == t || index_at(idx, it, b * T + s) != v) continue;
            if (s < t) {
                first = 0;
            } else {   // every earlier position has been seen: both answers are final
                nx = (int32_t)s;
                break;
            }
        }
        lead[k] = first;
        next[k] = nx;
    }
}

// Pass 2, one block per example: for each group leader, threads own columns d and sum the group's
// rows there in position order, then add the squares; one reduction at the end.
__global__ void emb_norm_kernel(double *out, const int32_t *lead, const int32_t *next,
                                const void *g, dp_dtype gt, int64_t B, int64_t T, int64_t D) {
    __shared__ double sh[DP_CUDA_THREADS];
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        double s = 0;
        for (int64_t t = 0; t < T; t++) {
            if (!lead[b * T + t]) continue;
            for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
                double acc = 0;
                for (int64_t u = t; u >= 0; u = next[b * T + u])
                    acc += dp_cuda_load_f64(g, gt, (b * T + u) * D + d);
                s += acc * acc;
            }
        }
        double total = block_sum(s, sh);
        if (threadIdx.x == 0) out[b] = total;
    }
}

int dp_cuda_embedding_sq_norms(dp_tensor *out, const dp_tensor *idx, const dp_tensor *g) {
    int64_t B = 0, T = 0, D = 0;
    int rc = dp_ps_check_embedding_sq_norms(out, idx, g, &B, &T, &D);
    if (rc) return rc;
    if (B == 0) return 0;
    if (T == 0)
        return dp_cuda_check(cudaMemsetAsync(out->data, 0, sizeof(double) * (size_t)B, dp_cuda_stream()),
                             "embedding_sq_norms", "cudaMemsetAsync");
    int32_t *scratch = (int32_t *)dp_cuda_alloc(sizeof(int32_t) * 2 * (size_t)(B * T),
                                                "embedding_sq_norms");
    if (!scratch) return DP_ENOMEM;
    int32_t *lead = scratch, *next = scratch + B * T;
    emb_group_kernel<<<dp_cuda_grid(B * T), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(lead, next, idx->data, idx->dtype, B, T);
    rc = dp_cuda_check_launch("embedding_sq_norms", "emb_group_kernel");
    if (!rc) {
        emb_norm_kernel<<<grid_per_item(B), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>((double *)out->data, lead, next,
                                                               g->data, g->dtype, B, T, D);
        rc = dp_cuda_check_launch("embedding_sq_norms", "emb_norm_kernel");
    }
    // Safe to free with the kernels still queued: the cache hands the block out again only to
    // work queued behind them on the same (default) stream.
    dp_cuda_free(scratch);
    return rc;
}
