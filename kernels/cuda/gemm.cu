// gemm.cu: the CUDA batched GEMM behind dp_ops.gemm, through cuBLASLt. f32 runs with
// CUBLAS_COMPUTE_32F (true f32, not TF32, for parity with the CPU), f64 with CUBLAS_COMPUTE_64F,
// bf16 and f16 natively with f32 accumulation (CUBLAS_COMPUTE_32F, one rounding of each result).
// fp8 (e4m3, e5m2) goes to gemm_fp8.cu: cuBLASLt's fp8 kernels on sm_89+, exact widening to bf16
// elsewhere, f32 accumulation either way and one rounding into fp8. The cuBLASLt wrapper here
// (gemm_lt_run) serves both files; see gemm_lt.h for how row-major problems map onto it.
#include <pthread.h>
#include "gemm_lt.h"

enum { WORKSPACE_BYTES = 32 << 20 };

// ---------------------------------------------------------------- handle and workspace

static pthread_mutex_t lt_lock = PTHREAD_MUTEX_INITIALIZER;
static cublasLtHandle_t lt_handle;
static void *lt_workspace;

static int lt_check(cublasStatus_t st, const char *op, const char *call) {
    if (st == CUBLAS_STATUS_SUCCESS) return 0;
    return dp_fail(DP_EDEVICE, "%s: %s failed: %s (%d)", op, call, cublasLtGetStatusString(st),
                   (int)st);
}

// The shared handle and 32 MiB workspace, created on first use. Calls on the backend's one stream (dp_cuda_stream) run
// one after another, so sharing the workspace between host threads is safe.
static int lt_setup(cublasLtHandle_t *h, void **ws, const char *op) {
    int rc = 0;
    pthread_mutex_lock(&lt_lock);
    if (!lt_handle) rc = lt_check(cublasLtCreate(&lt_handle), op, "cublasLtCreate");
    if (!rc && !lt_workspace) {
        void *p = NULL;
        rc = dp_cuda_check(cudaMalloc(&p, WORKSPACE_BYTES), op,
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

int gemm_describe(gemm_operand *o, int64_t *op_rows, int64_t *op_cols, const dp_tensor *t,
                  int32_t trans, int64_t batch, const char *op, const char *name) {
    int32_t nd = t->ndim;
    if (nd != 2 && nd != 3)
        return dp_fail(DP_ESHAPE, "%s: %s must be 2-D or 3-D, got %s", op, name, dp_tensor_desc(t));
    int64_t count = nd == 3 ? t->shape[0] : 1;
    if (count != 1 && count != batch)
        return dp_fail(DP_ESHAPE, "%s: %s has batch %lld, out has %lld", op, name,
                       (long long)count, (long long)batch);
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t s1 = t->stride[nd - 2], s2 = t->stride[nd - 1];
    int64_t rmin = r > 1 ? r : 1, cmin = c > 1 ? c : 1;
    o->data = (const char *)t->data;
    o->batch_stride = count == 1 ? 0 : t->stride[0];
    if ((c <= 1 || s2 == 1) && (r <= 1 || s1 >= cmin)) {
        o->rows = r;
        o->cols = c;
        o->ld = r <= 1 ? cmin : s1;
        o->trans = trans != 0;
    } else if ((r <= 1 || s1 == 1) && (c <= 1 || s2 >= rmin)) {
        o->rows = c;   // unit stride down the columns: the row-major transpose
        o->cols = r;
        o->ld = c <= 1 ? rmin : s2;
        o->trans = trans == 0;
    } else {
        return dp_fail(DP_EINTERNAL, "%s: %s needs unit stride in one of its last two dims, got "
                       "strides [%lld,%lld] for %s", op, name, (long long)s1, (long long)s2,
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

// cuBLASLt statuses that mean "no kernel for this problem" rather than a failure: a soft
// caller falls back to another path instead.
static int unsupported(cublasStatus_t st) {
    return st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE;
}

// One cuBLASLt matmul: count matrices (strided batch), column-major C (N x M) = op(B) op(A)
// as described in gemm_lt.h. a_stride and b_stride are the operands' batch strides (also passed
// for count = 1: they enter the alignment, so every matrix of a batch run one call at a time gets
// the same algorithm). Every descriptor is destroyed whatever happens.
static int lt_matmul(const gemm_lt_types &ty, const gemm_operand &a, const gemm_operand &b,
                     int64_t a_stride, int64_t b_stride, const void *a_data, const void *b_data,
                     void *c_data, int64_t M, int64_t N, int64_t K, int64_t count, double alpha,
                     double beta, int32_t ab_size, int32_t c_size, int soft) {
    cublasLtHandle_t h;
    void *ws;
    int rc = lt_setup(&h, &ws, ty.op);
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
    int found = 0, no_kernel = 0;
    cublasStatus_t st;

#define LT(call, name) do { if (!rc) rc = lt_check((call), ty.op, name); } while (0)
    LT(cublasLtMatmulDescCreate(&desc, ty.compute, ty.scale), "cublasLtMatmulDescCreate");
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opb, sizeof opb),
       "cublasLtMatmulDescSetAttribute(TRANSA)");
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opa, sizeof opa),
       "cublasLtMatmulDescSetAttribute(TRANSB)");
    // cuBLASLt's A is our b, its B our a: the scale factors swap with them.
    if (ty.scale_b)
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ty.scale_b,
                                          sizeof ty.scale_b),
           "cublasLtMatmulDescSetAttribute(A_SCALE_POINTER)");
    if (ty.scale_a)
        LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &ty.scale_a,
                                          sizeof ty.scale_a),
           "cublasLtMatmulDescSetAttribute(B_SCALE_POINTER)");
    // The column-major view of a stored row-major rows x cols matrix is cols x rows.
    LT(cublasLtMatrixLayoutCreate(&lb, ty.b, (uint64_t)b.cols, (uint64_t)b.rows, b.ld),
       "cublasLtMatrixLayoutCreate(b)");
    LT(cublasLtMatrixLayoutCreate(&la, ty.a, (uint64_t)a.cols, (uint64_t)a.rows, a.ld),
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
    if (!rc) {
        st = cublasLtMatmulAlgoGetHeuristic(h, desc, lb, la, lc, lc, pref, 1, &heur, &found);
        if (soft && (unsupported(st) || (st == CUBLAS_STATUS_SUCCESS && found == 0))) no_kernel = 1;
        else rc = lt_check(st, ty.op, "cublasLtMatmulAlgoGetHeuristic");
    }
    if (!rc && !no_kernel && found == 0)
        rc = dp_fail(DP_EUNSUPPORTED, "%s: cublasLtMatmulAlgoGetHeuristic found no algorithm for "
                     "M %lld, N %lld, K %lld, batch %lld (alignments a %u, b %u, out %u bytes)",
                     ty.op, (long long)M, (long long)N, (long long)K, (long long)count, al_a, al_b,
                     al_c);
    if (!rc && !no_kernel) {
        // The arguments are checked before anything is queued: a refusal here wrote nothing.
        st = cublasLtMatmul(h, desc, alpha_p, b_data, lb, a_data, la, beta_p, c_data, lc, c_data,
                            lc, &heur.algo, ws, WORKSPACE_BYTES, dp_cuda_stream());
        if (soft && unsupported(st)) no_kernel = 1;
        else rc = lt_check(st, ty.op, "cublasLtMatmul");
    }
#undef LT
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return rc ? rc : no_kernel;
}

// The whole batch: one strided-batched call when every operand has its own matrices; a shared
// right operand with stacked, untransposed left matrices folds into one tall GEMM; any other
// shared operand runs one call per matrix (stride-0 batches are not relied on). Only the first
// call may answer "no kernel" (soft): the others have the same descriptors and alignments.
int gemm_lt_run(const gemm_lt_types &ty, const gemm_operand &a, const gemm_operand &b,
                const void *a_data, const void *b_data, void *c_data, int64_t batch, int64_t M,
                int64_t N, int64_t K, double alpha, double beta, int32_t ab_size, int32_t c_size,
                int soft) {
    if (batch == 1 || (a.batch_stride != 0 && b.batch_stride != 0 && batch <= INT32_MAX))
        return lt_matmul(ty, a, b, a.batch_stride, b.batch_stride, a_data, b_data, c_data, M, N, K,
                         batch, alpha, beta, ab_size, c_size, soft);
    if (b.batch_stride == 0 && !a.trans && a.batch_stride == M * a.ld && a.batch_stride != 0) {
        gemm_operand tall = a;
        tall.rows = a.rows * batch;
        return lt_matmul(ty, tall, b, 0, 0, a_data, b_data, c_data, M * batch, N, K, 1, alpha,
                         beta, ab_size, c_size, soft);
    }
    for (int64_t i = 0; i < batch; i++) {
        int rc = lt_matmul(ty, a, b, a.batch_stride, b.batch_stride,
                           (const char *)a_data + i * a.batch_stride * ab_size,
                           (const char *)b_data + i * b.batch_stride * ab_size,
                           (char *)c_data + i * M * N * c_size, M, N, K, 1, alpha, beta, ab_size,
                           c_size, soft && i == 0);
        if (rc) return rc;
    }
    return 0;
}

// ---------------------------------------------------------------- K = 0 and the entry point

// out = beta * out (no products to add); beta = 0 writes exact zeros, as the CPU does.
template <typename A>
__global__ void scale_kernel(void *out, dp_dtype dtype, int64_t n, double beta) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dp_cast_store_float(out, dtype, i, beta * (double)nn_load<A>(out, dtype, i));
}

int gemm_scale_out(void *out, dp_dtype dtype, int64_t n, double beta, const char *op) {
    if (beta == 0)
        return dp_cuda_check(cudaMemsetAsync(out, 0, (size_t)n * dp_dtype_size(dtype),
                                             dp_cuda_stream()), op, "cudaMemsetAsync(out)");
    if (dtype == DP_F64)
        scale_kernel<double><<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out, dtype, n, beta);
    else
        scale_kernel<float><<<dp_cuda_grid(n), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(out, dtype, n, beta);
    return dp_cuda_check_launch(op, "scale_kernel");
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
    gemm_operand oa, ob;
    int rc = gemm_describe(&oa, &M, &K, a, trans_a, batch, "gemm", "a");
    if (!rc) rc = gemm_describe(&ob, &K_b, &N, b, trans_b, batch, "gemm", "b");
    if (rc) return rc;
    if (K_b != K || out->shape[out->ndim - 2] != M || out->shape[out->ndim - 1] != N)
        return dp_fail(DP_ESHAPE, "gemm: shapes do not fit (a is %s%s, b is %s%s, out is %s)",
                       dp_tensor_desc(a), trans_a ? " transposed" : "", dp_tensor_desc(b),
                       trans_b ? " transposed" : "", dp_tensor_desc(out));
    if (batch == 0 || M == 0 || N == 0) return 0;
    if (K == 0) return gemm_scale_out(out->data, dtype, batch * M * N, beta, "gemm");
    gemm_lt_types ty = {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, NULL,
                        NULL, "gemm"};
    switch (dtype) {
    case DP_F32: break;
    case DP_F64:
        ty.a = ty.b = ty.c = CUDA_R_64F;
        ty.compute = CUBLAS_COMPUTE_64F;
        ty.scale = CUDA_R_64F;
        break;
    case DP_BF16: ty.a = ty.b = ty.c = CUDA_R_16BF; break;
    case DP_F16: ty.a = ty.b = ty.c = CUDA_R_16F; break;
    default: return gemm_fp8_same_dtype(dtype, oa, ob, out->data, batch, M, N, K, alpha, beta);
    }
    int32_t es = dp_dtype_size(dtype);
    return gemm_lt_run(ty, oa, ob, oa.data, ob.data, out->data, batch, M, N, K, alpha, beta, es, es, 0);
}
