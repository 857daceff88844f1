// gemm.cu: the CUDA batched GEMM behind dp_ops.gemm, through cuBLASLt. f32 runs with
// CUBLAS_COMPUTE_32F (true f32, not TF32, for parity with the CPU), f64 with CUBLAS_COMPUTE_64F,
// bf16 and f16 natively with f32 accumulation (CUBLAS_COMPUTE_32F, one rounding of each result).
// fp8 (e4m3, e5m2) is converted: cuBLASLt's fp8 matmul wants the TN layout, per-tensor scales and
// a wider output, while the table asks for out in the operands' dtype; so the operands are widened
// to bf16 (exact: every fp8 value is a bf16 value) and out to f32, the bf16 x bf16 -> f32 GEMM
// runs, and each result is rounded once into fp8 — what kernels/cpu/gemm_lowp.c does.
//
// Row-major out (M, N) is column-major out^T (N, M) = op(b)^T op(a)^T, so cuBLASLt gets b as its
// first operand and a as its second, each described as the column-major view of its storage.
#include <pthread.h>
#include <cublasLt.h>
#include "nn.h"

enum { WORKSPACE_BYTES = 32 << 20 };

// ---------------------------------------------------------------- handle and workspace

static pthread_mutex_t lt_lock = PTHREAD_MUTEX_INITIALIZER;
static cublasLtHandle_t lt_handle;
static void *lt_workspace;

static int lt_check(cublasStatus_t st, const char *call) {
    if (st == CUBLAS_STATUS_SUCCESS) return 0;
    return dp_fail(DP_EDEVICE, "gemm: %s failed: %s (%d)", call, cublasLtGetStatusString(st),
                   (int)st);
}

// The shared handle and 32 MiB workspace, created on first use. Calls on the backend's one stream (dp_cuda_stream) run
// one after another, so sharing the workspace between host threads is safe.
static int lt_setup(cublasLtHandle_t *h, void **ws) {
    int rc = 0;
    pthread_mutex_lock(&lt_lock);
    if (!lt_handle) rc = lt_check(cublasLtCreate(&lt_handle), "cublasLtCreate");
    if (!rc && !lt_workspace) {
        void *p = NULL;
        rc = dp_cuda_check(cudaMalloc(&p, WORKSPACE_BYTES), "gemm",
                           "cudaMalloc(32 MiB cuBLASLt workspace)");
        if (!rc) {
            lt_workspace = p;
            dp_mem_scratch(DP_CUDA, WORKSPACE_BYTES);
        }
    }
    *h = lt_handle;
    *ws = lt_workspace;
    pthread_mutex_unlock(&lt_lock);
    return rc;
}

// ---------------------------------------------------------------- problem description

// One operand as stored: a row-major matrix rows x cols with leading dimension ld (so the
// column-major matrix cols x rows); trans = 1 when op(operand) is its transpose.
struct operand {
    const char *data;
    int64_t batch_stride;   // elements; 0 = one matrix shared by the batch
    int64_t rows, cols, ld;
    int trans;
};

// The CPU's describe_operand (kernels/cpu/gemm.c): t is (batch, r, c) or (r, c) with unit stride
// in one of its last two dims. op_rows x op_cols gets op(t)'s shape.
static int describe(operand *op, int64_t *op_rows, int64_t *op_cols, const dp_tensor *t,
                    int32_t trans, int64_t batch, const char *name) {
    int32_t nd = t->ndim;
    if (nd != 2 && nd != 3)
        return dp_fail(DP_ESHAPE, "gemm: %s must be 2-D or 3-D, got %s", name, dp_tensor_desc(t));
    int64_t count = nd == 3 ? t->shape[0] : 1;
    if (count != 1 && count != batch)
        return dp_fail(DP_ESHAPE, "gemm: %s has batch %lld, out has %lld", name, (long long)count,
                       (long long)batch);
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t s1 = t->stride[nd - 2], s2 = t->stride[nd - 1];
    int64_t rmin = r > 1 ? r : 1, cmin = c > 1 ? c : 1;
    op->data = (const char *)t->data;
    op->batch_stride = count == 1 ? 0 : t->stride[0];
    if ((c <= 1 || s2 == 1) && (r <= 1 || s1 >= cmin)) {
        op->rows = r;
        op->cols = c;
        op->ld = r <= 1 ? cmin : s1;
        op->trans = trans != 0;
    } else if ((r <= 1 || s1 == 1) && (c <= 1 || s2 >= rmin)) {
        op->rows = c;   // unit stride down the columns: the row-major transpose
        op->cols = r;
        op->ld = c <= 1 ? rmin : s2;
        op->trans = trans == 0;
    } else {
        return dp_fail(DP_EINTERNAL, "gemm: %s needs unit stride in one of its last two dims, got "
                       "strides [%lld,%lld] for %s", name, (long long)s1, (long long)s2,
                       dp_tensor_desc(t));
    }
    *op_rows = trans ? c : r;
    *op_cols = trans ? r : c;
    return 0;
}

// Largest power of two (at most 256) dividing every matrix's address.
static uint32_t alignment_of(const void *p, int64_t batch_stride_bytes) {
    uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)batch_stride_bytes | 256u;
    return (uint32_t)(v & (~v + 1));
}

struct lt_types {
    cudaDataType_t ab, c;         // operand and output storage types
    cublasComputeType_t compute;
    cudaDataType_t scale;
};

// One cuBLASLt matmul: count matrices (strided batch), column-major C (N x M) = op(B) op(A)
// as described above. Every descriptor is destroyed whatever happens.
static int lt_matmul(const lt_types &ty, const operand &a, const operand &b, int64_t a_stride,
                     int64_t b_stride, const void *a_data, const void *b_data, void *c_data,
                     int64_t M, int64_t N, int64_t K, int64_t count, double alpha, double beta,
                     int32_t ab_size, int32_t c_size) {
    cublasLtHandle_t h;
    void *ws;
    int rc = lt_setup(&h, &ws);
    if (rc) return rc;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t opb = b.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opa = a.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    int32_t batch = (int32_t)count;
    int64_t c_stride = M * N;
    uint64_t ws_bytes = WORKSPACE_BYTES;
    uint32_t al_a = alignment_of(a_data, a_stride * ab_size);
    uint32_t al_b = alignment_of(b_data, b_stride * ab_size);
    uint32_t al_c = alignment_of(c_data, c_stride * c_size);
    float alpha_f = (float)alpha, beta_f = (float)beta;
    const void *alpha_p = ty.scale == CUDA_R_64F ? (const void *)&alpha : (const void *)&alpha_f;
    const void *beta_p = ty.scale == CUDA_R_64F ? (const void *)&beta : (const void *)&beta_f;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;

#define LT(call, name) do { if (!rc) rc = lt_check((call), name); } while (0)
    LT(cublasLtMatmulDescCreate(&desc, ty.compute, ty.scale), "cublasLtMatmulDescCreate");
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb),
       "cublasLtMatmulDescSetAttribute(TRANSA)");
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa),
       "cublasLtMatmulDescSetAttribute(TRANSB)");
    // The column-major view of a stored row-major rows x cols matrix is cols x rows.
    LT(cublasLtMatrixLayoutCreate(&lb, ty.ab, (uint64_t)b.cols, (uint64_t)b.rows, b.ld),
       "cublasLtMatrixLayoutCreate(b)");
    LT(cublasLtMatrixLayoutCreate(&la, ty.ab, (uint64_t)a.cols, (uint64_t)a.rows, a.ld),
       "cublasLtMatrixLayoutCreate(a)");
    LT(cublasLtMatrixLayoutCreate(&lc, ty.c, (uint64_t)N, (uint64_t)M, N),
       "cublasLtMatrixLayoutCreate(out)");
    if (batch > 1) {
        LT(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                            sizeof batch), "cublasLtMatrixLayoutSetAttribute(b batch)");
        LT(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                            &b_stride, sizeof b_stride),
           "cublasLtMatrixLayoutSetAttribute(b batch stride)");
        LT(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                            sizeof batch), "cublasLtMatrixLayoutSetAttribute(a batch)");
        LT(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                            &a_stride, sizeof a_stride),
           "cublasLtMatrixLayoutSetAttribute(a batch stride)");
        LT(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                            sizeof batch), "cublasLtMatrixLayoutSetAttribute(out batch)");
        LT(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                            &c_stride, sizeof c_stride),
           "cublasLtMatrixLayoutSetAttribute(out batch stride)");
    }
    LT(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &ws_bytes, sizeof ws_bytes),
       "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
    // Views may start anywhere: tell the heuristic the real alignments (it assumes 256 bytes).
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                            &al_b, sizeof al_b),
       "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_A_BYTES)");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                            &al_a, sizeof al_a),
       "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_B_BYTES)");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                            &al_c, sizeof al_c),
       "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_C_BYTES)");
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                            &al_c, sizeof al_c),
       "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_D_BYTES)");
    LT(cublasLtMatmulAlgoGetHeuristic(h, desc, lb, la, lc, lc, pref, 1, &heur, &found),
       "cublasLtMatmulAlgoGetHeuristic");
    if (!rc && found == 0)
        rc = dp_fail(DP_EUNSUPPORTED, "gemm: cublasLtMatmulAlgoGetHeuristic found no algorithm for "
                     "M %lld, N %lld, K %lld, batch %lld (alignments a %u, b %u, out %u bytes)",
                     (long long)M, (long long)N, (long long)K, (long long)count, al_a, al_b, al_c);
    LT(cublasLtMatmul(h, desc, alpha_p, b_data, lb, a_data, la, beta_p, c_data, lc, c_data, lc,
                      &heur.algo, ws, WORKSPACE_BYTES, dp_cuda_stream()), "cublasLtMatmul");
#undef LT
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return rc;
}

// The whole batch: one strided-batched call when every operand has its own matrices; a shared
// right operand with stacked, untransposed left matrices folds into one tall GEMM; any other
// shared operand runs one call per matrix (stride-0 batches are not relied on).
static int run_batch(const lt_types &ty, const operand &a, const operand &b, const void *a_data,
                     const void *b_data, void *c_data, int64_t batch, int64_t M, int64_t N,
                     int64_t K, double alpha, double beta, int32_t ab_size, int32_t c_size) {
    if (batch == 1 || (a.batch_stride != 0 && b.batch_stride != 0 && batch <= INT32_MAX))
        return lt_matmul(ty, a, b, a.batch_stride, b.batch_stride, a_data, b_data, c_data, M, N, K,
                         batch, alpha, beta, ab_size, c_size);
    if (b.batch_stride == 0 && !a.trans && a.batch_stride == M * a.ld && a.batch_stride != 0) {
        operand tall = a;
        tall.rows = a.rows * batch;
        return lt_matmul(ty, tall, b, 0, 0, a_data, b_data, c_data, M * batch, N, K, 1, alpha,
                         beta, ab_size, c_size);
    }
    for (int64_t i = 0; i < batch; i++) {
        int rc = lt_matmul(ty, a, b, 0, 0, (const char *)a_data + i * a.batch_stride * ab_size,
                           (const char *)b_data + i * b.batch_stride * ab_size,
                           (char *)c_data + i * M * N * c_size, M, N, K, 1, alpha, beta, ab_size,
                           c_size);
        if (rc) return rc;
    }
    return 0;
}

// ---------------------------------------------------------------- fp8 by widening

__global__ void widen_fp8_kernel(uint16_t *dst, const uint8_t *src, dp_dtype dtype, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = dtype == DP_FP8_E4M3 ? dp_cast_e4m3_to_f32(src[i]) : dp_cast_e5m2_to_f32(src[i]);
        dst[i] = dp_cast_f32_to_bf16(v);   // exact
    }
}

__global__ void fp8_out_kernel(float *wide, uint8_t *out, dp_dtype dtype, int64_t n, int to_fp8) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        if (to_fp8) dp_cast_store_float(out, dtype, i, (double)wide[i]);
        else wide[i] = dtype == DP_FP8_E4M3 ? dp_cast_e4m3_to_f32(out[i]) : dp_cast_e5m2_to_f32(out[i]);
    }
}

// Elements an operand's matrices span in memory (its layout is kept when copied).
static int64_t span_of(const operand &o, int64_t batch) {
    int64_t last = o.batch_stride ? (batch - 1) * o.batch_stride : 0;
    return last + (o.rows - 1) * o.ld + o.cols;
}

static int gemm_fp8(dp_dtype dtype, const operand &a, const operand &b, void *out, int64_t batch,
                    int64_t M, int64_t N, int64_t K, double alpha, double beta) {
    int64_t na = span_of(a, batch), nb = span_of(b, batch), nc = batch * M * N;
    size_t bytes = (size_t)(na + nb) * 2 + (size_t)nc * 4;
    char *scratch = NULL;
    int rc = dp_cuda_check(cudaMalloc((void **)&scratch, bytes), "gemm",
                           "cudaMalloc(fp8 widening scratch)");
    if (rc) return rc;
    dp_mem_scratch(DP_CUDA, (int64_t)bytes);
    float *wc = (float *)scratch;
    uint16_t *wa = (uint16_t *)(scratch + (size_t)nc * 4), *wb = wa + na;
    widen_fp8_kernel<<<dp_cuda_grid(na), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wa, (const uint8_t *)a.data, dtype, na);
    widen_fp8_kernel<<<dp_cuda_grid(nb), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wb, (const uint8_t *)b.data, dtype, nb);
    if (beta != 0)
        fp8_out_kernel<<<dp_cuda_grid(nc), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wc, (uint8_t *)out, dtype, nc, 0);
    rc = dp_cuda_check_launch("gemm", "widen_fp8_kernel");
    lt_types ty = {CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    if (!rc) rc = run_batch(ty, a, b, wa, wb, wc, batch, M, N, K, alpha, beta, 2, 4);
    if (!rc) {
        fp8_out_kernel<<<dp_cuda_grid(nc), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wc, (uint8_t *)out, dtype, nc, 1);
        rc = dp_cuda_check_launch("gemm", "fp8_out_kernel");
    }
    // cudaFree waits for the queued work, so the scratch outlives the kernels that read it.
    int frc = dp_cuda_check(cudaFree(scratch), "gemm", "cudaFree(fp8 widening scratch)");
    dp_mem_scratch(DP_CUDA, -(int64_t)bytes);
    return rc ? rc : frc;
}

// ---------------------------------------------------------------- K = 0 and the entry point

// out = beta * out (no products to add); beta = 0 writes exact zeros, as the CPU does.
template <typename A>
__global__ void scale_kernel(void *out, dp_dtype dtype, int64_t n, double beta) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dp_cast_store_float(out, dtype, i, beta * (double)nn_load<A>(out, dtype, i));
}

int dp_cuda_gemm(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                 int32_t trans_b, double alpha, double beta) {
    dp_dtype dtype = out->dtype;
    if (a->dtype != dtype || b->dtype != dtype || !dp_dtype_is_float(dtype))
        return dp_fail(DP_EDTYPE, "gemm: a, b and out must share a float dtype (a is %s, b is %s, "
                       "out is %s)", dp_tensor_desc(a), dp_tensor_desc(b), dp_tensor_desc(out));
    if ((out->ndim != 2 && out->ndim != 3) || !dp_tensor_is_contiguous(out))
        return dp_fail(DP_ESHAPE, "gemm: out must be contiguous (batch, M, N) or (M, N), got %s",
                       dp_tensor_desc(out));
    int64_t batch = out->ndim == 3 ? out->shape[0] : 1, M, K, K_b, N;
    operand oa, ob;
    int rc = describe(&oa, &M, &K, a, trans_a, batch, "a");
    if (!rc) rc = describe(&ob, &K_b, &N, b, trans_b, batch, "b");
    if (rc) return rc;
    if (K_b != K || out->shape[out->ndim - 2] != M || out->shape[out->ndim - 1] != N)
        return dp_fail(DP_ESHAPE, "gemm: shapes do not fit (a is %s%s, b is %s%s, out is %s)",
                       dp_tensor_desc(a), trans_a ? " transposed" : "", dp_tensor_desc(b),
                       trans_b ? " transposed" : "", dp_tensor_desc(out));
    if (batch == 0 || M == 0 || N == 0) return 0;
    int64_t n = batch * M * N;
    if (K == 0) {
        if (beta == 0)
            return dp_cuda_check(cudaMemsetAsync(out->data, 0, (size_t)n * dp_dtype_size(dtype), dp_cuda_stream()), "gemm",
                                 "cudaMemsetAsync(out)");
        if (dtype == DP_F64)
            scale_kernel<double><<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out->data, dtype, n, beta);
        else
            scale_kernel<float><<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out->data, dtype, n, beta);
        return dp_cuda_check_launch("gemm", "scale_kernel");
    }
    lt_types ty;
    switch (dtype) {
    case DP_F32: ty = {CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F}; break;
    case DP_F64: ty = {CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F}; break;
    case DP_BF16: ty = {CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F}; break;
    case DP_F16: ty = {CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F}; break;
    default: return gemm_fp8(dtype, oa, ob, out->data, batch, M, N, K, alpha, beta);
    }
    int32_t es = dp_dtype_size(dtype);
    return run_batch(ty, oa, ob, oa.data, ob.data, out->data, batch, M, N, K, alpha, beta, es, es);
}
