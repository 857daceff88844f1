// per_example.cu: per-example products of the DP engine's linear taps on tensor cores, never
// materialised in memory: per_example_sq_norms (||S_b||_F^2) and clipped_sum (acc += sum_b
// factor[b] S_b), with S_b = G_b^T A_b for g (B, T, P) and a (B, T, D) bf16 or f16 (core/backend.h).
//
// One block of 4 warps owns a TILE x TILE tile of the (P, D) product. For each example it walks
// t in chunks of 16 rows, staging g[b, t0:t0+16, p-tile] and a[b, t0:t0+16, d-tile] in shared
// memory (zero-padded past T, P and D) and accumulating S_b's tile in WMMA fragments (16x16x16,
// bf16/f16 in, f32 accumulate): S = G^T A makes P the M dim and t the K dim, so the staged g chunk
// [t][p] is WMMA's A operand in column-major order and the a chunk [t][d] its B operand row-major.
// Padding makes tile entries outside (P, D) zero: the clipped sum never stores them, and they add
// nothing to a norm (a NaN there needs a NaN or Inf among the example's g or a values, which
// already makes its own product, and so its norm, non-finite).
// Nothing here adds with atomics: partial results go to scratch slots and are summed in a fixed
// order, so a result depends only on the inputs, the shapes and the GPU's SM count.
#include <stdint.h>
#include <mma.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "cuda_common.h"
#include "allocator.h"

using namespace nvcuda;

namespace {

constexpr int TILE = 64;          // output tile: TILE rows of P by TILE columns of D
constexpr int KC = 16;            // rows t per chunk: WMMA's K
constexpr int LDS = TILE + 8;     // staged chunk row length (16-bit elements, a multiple of 8)
constexpr int LDC = TILE + 4;     // f32 staging row length (a multiple of 4)
constexpr int WARPS = 4;          // 2 x 2 warps, each owning a 32 x 32 quarter: 2 x 2 fragments
constexpr int THREADS = WARPS * 32;
static_assert(THREADS == KC * (TILE / 8), "one 8-element vector per thread fills a chunk");

// Scratch caps: per-(example, tile) norm partials and per-group f32 sums stay under these.
constexpr int64_t NORM_SCRATCH_BYTES = (int64_t)64 << 20;
constexpr int64_t SUM_SCRATCH_BYTES = (int64_t)256 << 20;

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc_frag;

struct chunks {
    __align__(128) uint16_t g[KC][LDS];   // g[b, t0 + r, p0 + c] at [r][c]
    __align__(128) uint16_t a[KC][LDS];   // a[b, t0 + r, d0 + c] at [r][c]
};

// Stage rows t0..t0+15, columns c0..c0+63 of one example's (T, N) matrix, zeros outside. Each
// thread moves one 8-element vector: a 16-byte load when it lies inside and is aligned (vec).
__device__ __forceinline__ void stage(uint16_t (*dst)[LDS], const uint16_t *src, int64_t T,
                                      int64_t N, int64_t t0, int64_t c0, int vec) {
    int r = threadIdx.x / (TILE / 8), v = threadIdx.x % (TILE / 8);
    int64_t t = t0 + r, c = c0 + 8 * v;
    uint16_t *d = &dst[r][8 * v];
    if (vec && t < T && c + 8 <= N) {
        *(uint4 *)d = __ldg((const uint4 *)(src + t * N + c));
        return;
    }
    for (int e = 0; e < 8; e++) d[e] = (t < T && c + e < N) ? src[t * N + c + e] : (uint16_t)0;
}

// ex += this example's S over every chunk of its T rows (callers zero ex first). Begins with a
// barrier, so the chunks of a previous example or tile are no longer being read.
template <typename E>
__device__ void example_product(acc_frag (&ex)[2][2], chunks &s, const uint16_t *gb,
                                const uint16_t *ab, int64_t T, int64_t P, int64_t D, int64_t p0,
                                int64_t d0, int vec_g, int vec_a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();   // bf16 fragments need sm_80; never launched there (see the registration)
#else
    int warp = threadIdx.x / 32, wr = (warp / 2) * 32, wc = (warp % 2) * 32;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::col_major> fa[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major> fb[2];
    for (int64_t t0 = 0; t0 < T; t0 += KC) {
        __syncthreads();
        stage(s.g, gb, T, P, t0, p0, vec_g);
        stage(s.a, ab, T, D, t0, d0, vec_a);
        __syncthreads();
        for (int i = 0; i < 2; i++)
            wmma::load_matrix_sync(fa[i], (const E *)&s.g[0][wr + 16 * i], LDS);
        for (int j = 0; j < 2; j++)
            wmma::load_matrix_sync(fb[j], (const E *)&s.a[0][wc + 16 * j], LDS);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) wmma::mma_sync(ex[i][j], fa[i], fb[j], ex[i][j]);
    }
#endif
}

__device__ __forceinline__ void zero(acc_frag (&f)[2][2]) {
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) wmma::fill_fragment(f[i][j], 0.0f);
}

// ---------------------------------------------------------------- per_example_sq_norms

// partial[(b - b0) * ntiles + tile] = sum of squares of S_b over the block's tile, for examples
// b0 <= b < b1 (grid-stride over blockIdx.y). Squares are summed in double: each thread in a
// fixed order, then the warp (fixed shuffle tree), then the 4 warps in order.
template <typename E>
__global__ void __launch_bounds__(THREADS)
sq_norms_kernel(double *partial, const uint16_t *g, const uint16_t *a, int64_t b0, int64_t b1,
                int64_t T, int64_t P, int64_t D, int tiles_d, int vec_g, int vec_a) {
    __shared__ chunks s;
    __shared__ double warp_sum[WARPS];
    int64_t ntiles = (int64_t)gridDim.x, tile = blockIdx.x;
    int64_t p0 = (tile / tiles_d) * TILE, d0 = (tile % tiles_d) * TILE;
    for (int64_t b = b0 + blockIdx.y; b < b1; b += gridDim.y) {
        acc_frag ex[2][2];
        zero(ex);
        example_product<E>(ex, s, g + b * T * P, a + b * T * D, T, P, D, p0, d0, vec_g, vec_a);
        double sum = 0;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < ex[i][j].num_elements; e++) {
                    double v = ex[i][j].x[e];
                    sum += v * v;
                }
        for (int w = 16; w > 0; w /= 2) sum += __shfl_down_sync(0xffffffffu, sum, w);
        if (threadIdx.x % 32 == 0) warp_sum[threadIdx.x / 32] = sum;
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0;
            for (int w = 0; w < WARPS; w++) total += warp_sum[w];
            partial[(b - b0) * ntiles + tile] = total;
        }
        __syncthreads();   // warp_sum is rewritten for the next example
    }
}

// out[b0 + i] = sum over tiles of partial[i * ntiles + tile], tiles in order.
__global__ void sum_partials_kernel(double *out, const double *partial, int64_t n, int64_t ntiles) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        double s = 0;
        for (int64_t k = 0; k < ntiles; k++) s += partial[i * ntiles + k];
        out[i] = s;
    }
}

// ---------------------------------------------------------------- clipped_sum

// The block's tile of sum_b f_b S_b over its group of examples (blockIdx.z: examples
// [z * per_group, (z + 1) * per_group)), f_b = factor[b] rounded to f32; examples with f_b = 0
// are skipped before any load. Written through shared memory: added into acc (partial NULL), or
// stored in the group's slot partial[z] (P, D) for reduce_groups_kernel.
template <typename E>
__global__ void __launch_bounds__(THREADS)
clipped_sum_kernel(float *acc, float *partial, const uint16_t *g, const uint16_t *a,
                   const double *factor, int64_t B, int64_t T, int64_t P, int64_t D, int tiles_d,
                   int64_t per_group, int vec_g, int vec_a) {
    __shared__ chunks s;
    __shared__ __align__(128) float out[TILE][LDC];
    int64_t tile = blockIdx.x, p0 = (tile / tiles_d) * TILE, d0 = (tile % tiles_d) * TILE;
    int64_t b_begin = (int64_t)blockIdx.z * per_group;
    int64_t b_end = b_begin + per_group < B ? b_begin + per_group : B;
    acc_frag total[2][2], ex[2][2];
    zero(total);
    for (int64_t b = b_begin; b < b_end; b++) {
        float f = (float)factor[b];   // the same for the whole block: the barriers stay uniform
        if (f == 0.0f) continue;
        zero(ex);
        example_product<E>(ex, s, g + b * T * P, a + b * T * D, T, P, D, p0, d0, vec_g, vec_a);
        // Accumulator fragments of one type share their element mapping: elementwise is valid.
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < ex[i][j].num_elements; e++) total[i][j].x[e] += f * ex[i][j].x[e];
    }
    int warp = threadIdx.x / 32, wr = (warp / 2) * 32, wc = (warp % 2) * 32;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&out[wr + 16 * i][wc + 16 * j], total[i][j], LDC,
                                    wmma::mem_row_major);
    __syncthreads();
    float *slot = partial ? partial + (int64_t)blockIdx.z * P * D : NULL;
    for (int k = threadIdx.x; k < TILE * TILE; k += THREADS) {
        int r = k / TILE, c = k % TILE;
        int64_t p = p0 + r, d = d0 + c;
        if (p >= P || d >= D) continue;
        if (slot) slot[p * D + d] = out[r][c];
        else acc[p * D + d] += out[r][c];
    }
}

// acc[i] += (partial[0][i] + partial[1][i] + ...), the groups summed in order in f32.
__global__ void reduce_groups_kernel(float *acc, const float *partial, int64_t n, int64_t groups) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int64_t z = 0; z < groups; z++) s += partial[z * n + i];
        acc[i] += s;
    }
}

// ---------------------------------------------------------------- launchers

struct taps {
    int64_t B, T, P, D, tiles_d, ntiles;
    int vec_g, vec_a;
};

// Checks g (B, T, P) and a (B, T, D): contiguous, one dtype, bf16 or f16.
int check_taps(const char *op, const dp_tensor *g, const dp_tensor *a, taps *k) {
    if (g->dtype != a->dtype || (g->dtype != DP_BF16 && g->dtype != DP_F16))
        return dp_fail(DP_EDTYPE, "%s: g and a must both be bf16 or both f16 on cuda (the core "
                       "composes the other dtypes), got g %s, a %s", op, dp_tensor_desc(g),
                       dp_tensor_desc(a));
    if (g->ndim != 3 || a->ndim != 3 || g->shape[0] != a->shape[0] || g->shape[1] != a->shape[1])
        return dp_fail(DP_ESHAPE, "%s: expected g (B, T, P) and a (B, T, D), got g %s, a %s", op,
                       dp_tensor_desc(g), dp_tensor_desc(a));
    if (!dp_tensor_is_contiguous(g) || !dp_tensor_is_contiguous(a))
        return dp_fail(DP_ESHAPE, "%s: g and a must be contiguous, got g %s%s, a %s%s", op,
                       dp_tensor_desc(g), dp_tensor_is_contiguous(g) ? "" : " (strided)",
                       dp_tensor_desc(a), dp_tensor_is_contiguous(a) ? "" : " (strided)");
    k->B = g->shape[0];
    k->T = g->shape[1];
    k->P = g->shape[2];
    k->D = a->shape[2];
    k->tiles_d = (k->D + TILE - 1) / TILE;
    k->ntiles = ((k->P + TILE - 1) / TILE) * k->tiles_d;
    if (k->ntiles > INT32_MAX || k->tiles_d > INT32_MAX)
        return dp_fail(DP_EUNSUPPORTED, "%s: a (%lld, %lld) product has more tiles than one grid "
                       "holds", op, (long long)k->P, (long long)k->D);
    // 16-byte loads need 8-element rows and an aligned start (a tap may be a view at an offset).
    k->vec_g = k->P % 8 == 0 && (uintptr_t)g->data % 16 == 0;
    k->vec_a = k->D % 8 == 0 && (uintptr_t)a->data % 16 == 0;
    return 0;
}

int sm_count(void) {
    static int count = 0;   // benign race: every thread computes the same value
    if (!count) {
        int dev = 0, n = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n < 1)
            n = 1;
        count = n;
    }
    return count;
}

// Device scratch counted as DP_MEM_SCRATCH while held. Freed with kernels still queued: the
// cache hands a block out again only to work queued behind them on the same stream.
void *scratch_alloc(size_t bytes, const char *op) {
    void *p = dp_cuda_alloc(bytes, op);
    if (p) dp_mem_scratch(DP_CUDA, (int64_t)bytes);
    return p;
}

void scratch_free(void *p, size_t bytes) {
    if (!p) return;
    dp_cuda_free(p);
    dp_mem_scratch(DP_CUDA, -(int64_t)bytes);
}

int dp_cuda_per_example_sq_norms(dp_tensor *out, const dp_tensor *g, const dp_tensor *a) {
    const char *op = "per_example_sq_norms";
    taps k;
    int rc = check_taps(op, g, a, &k);
    if (rc) return rc;
    if (out->dtype != DP_F64 || dp_tensor_numel(out) != k.B || !dp_tensor_is_contiguous(out))
        return dp_fail(out->dtype != DP_F64 ? DP_EDTYPE : DP_ESHAPE, "%s: expected out (%lld) "
                       "f64 contiguous, got %s", op, (long long)k.B, dp_tensor_desc(out));
    if (k.B == 0) return 0;
    if (k.T == 0 || k.P == 0 || k.D == 0)
        return dp_cuda_check(cudaMemsetAsync(out->data, 0, sizeof(double) * (size_t)k.B,
                                             dp_cuda_stream()), op, "cudaMemsetAsync");
    // Examples in runs whose partials fit the scratch cap (at least one example per run).
    int64_t run = NORM_SCRATCH_BYTES / (k.ntiles * (int64_t)sizeof(double));
    if (run < 1) run = 1;
    if (run > k.B) run = k.B;
    size_t bytes = sizeof(double) * (size_t)(run * k.ntiles);
    double *partial = (double *)scratch_alloc(bytes, op);
    if (!partial) return DP_ENOMEM;
    const uint16_t *gp = (const uint16_t *)g->data, *ap = (const uint16_t *)a->data;
    for (int64_t b0 = 0; !rc && b0 < k.B; b0 += run) {
        int64_t b1 = b0 + run < k.B ? b0 + run : k.B, n = b1 - b0;
        dim3 grid((unsigned)k.ntiles, (unsigned)(n < 65535 ? n : 65535));
        if (g->dtype == DP_BF16)
            sq_norms_kernel<__nv_bfloat16><<<grid, THREADS, 0, dp_cuda_stream()>>>(
                partial, gp, ap, b0, b1, k.T, k.P, k.D, (int)k.tiles_d, k.vec_g, k.vec_a);
        else
            sq_norms_kernel<__half><<<grid, THREADS, 0, dp_cuda_stream()>>>(
                partial, gp, ap, b0, b1, k.T, k.P, k.D, (int)k.tiles_d, k.vec_g, k.vec_a);
        rc = dp_cuda_check_launch(op, "sq_norms_kernel");
        if (rc) break;
        sum_partials_kernel<<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            (double *)out->data + b0, partial, n, k.ntiles);
        rc = dp_cuda_check_launch(op, "sum_partials_kernel");
    }
    scratch_free(partial, bytes);
    return rc;
}

// Example groups for the clipped sum: several when the tiles alone would leave most SMs idle
// (fewer than 2 per SM) and there are enough rows to share, each group at least 64 rows and
// their f32 slots within SUM_SCRATCH_BYTES.
int64_t group_count(const taps &k) {
    int64_t want_blocks = 2 * (int64_t)sm_count();
    if (k.ntiles >= want_blocks || k.B < 2) return 1;
    int64_t groups = (want_blocks + k.ntiles - 1) / k.ntiles;
    int64_t by_rows = k.B * k.T / 64, by_bytes = SUM_SCRATCH_BYTES / (k.P * k.D * (int64_t)sizeof(float));
    if (groups > k.B) groups = k.B;
    if (groups > by_rows) groups = by_rows;
    if (groups > by_bytes) groups = by_bytes;
    if (groups > 65535) groups = 65535;
    return groups < 1 ? 1 : groups;
}

int dp_cuda_clipped_sum(dp_tensor *acc, const dp_tensor *g, const dp_tensor *a,
                        const dp_tensor *factor) {
    const char *op = "clipped_sum";
    taps k;
    int rc = check_taps(op, g, a, &k);
    if (rc) return rc;
    if (acc->dtype != DP_F32 || factor->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "%s: expected acc f32 and factor f64, got acc %s, factor %s", op,
                       dp_tensor_desc(acc), dp_tensor_desc(factor));
    if (dp_tensor_numel(acc) != k.P * k.D || !dp_tensor_is_contiguous(acc) ||
        dp_tensor_numel(factor) != k.B || !dp_tensor_is_contiguous(factor))
        return dp_fail(DP_ESHAPE, "%s: expected acc (%lld, %lld) and factor (%lld), contiguous, "
                       "got acc %s, factor %s", op, (long long)k.P, (long long)k.D,
                       (long long)k.B, dp_tensor_desc(acc), dp_tensor_desc(factor));
    if (k.B == 0 || k.T == 0 || k.P == 0 || k.D == 0) return 0;
    int64_t groups = group_count(k), per_group = (k.B + groups - 1) / groups;
    groups = (k.B + per_group - 1) / per_group;   // no empty group
    size_t bytes = groups > 1 ? sizeof(float) * (size_t)(groups * k.P * k.D) : 0;
    float *partial = NULL;
    if (groups > 1 && !(partial = (float *)scratch_alloc(bytes, op))) return DP_ENOMEM;
    dim3 grid((unsigned)k.ntiles, 1, (unsigned)groups);
    const uint16_t *gp = (const uint16_t *)g->data, *ap = (const uint16_t *)a->data;
    float *accp = (float *)acc->data;
    const double *fp = (const double *)factor->data;
    if (g->dtype == DP_BF16)
        clipped_sum_kernel<__nv_bfloat16><<<grid, THREADS, 0, dp_cuda_stream()>>>(
            accp, partial, gp, ap, fp, k.B, k.T, k.P, k.D, (int)k.tiles_d, per_group, k.vec_g,
            k.vec_a);
    else
        clipped_sum_kernel<__half><<<grid, THREADS, 0, dp_cuda_stream()>>>(
            accp, partial, gp, ap, fp, k.B, k.T, k.P, k.D, (int)k.tiles_d, per_group, k.vec_g,
            k.vec_a);
    rc = dp_cuda_check_launch(op, "clipped_sum_kernel");
    if (!rc && partial) {
        int64_t n = k.P * k.D;
        reduce_groups_kernel<<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            accp, partial, n, groups);
        rc = dp_cuda_check_launch(op, "reduce_groups_kernel");
    }
    scratch_free(partial, bytes);
    return rc;
}

}   // namespace

// bf16 WMMA needs sm_80 or later (the build's default architectures are 80 and 90): on an older
// device the entries stay NULL and the core composes scale_rows and GEMMs instead.
void dp_cuda_register_per_example(dp_ops *t) {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major < 8)
        return;
    t->per_example_sq_norms = dp_cuda_per_example_sq_norms;
    t->clipped_sum = dp_cuda_clipped_sum;
}
