/* gemm.c: the CPU batched GEMM behind dp_ops.gemm. f32 and f64 run through OpenBLAS; bf16 runs
 * through oneDNN's matmul where this CPU has one (AMX or AVX-512 BF16) and is otherwise converted
 * to f32 (gemm_lowp.c), as are f16 and fp8. DP_GEMM_ENGINE=openblas|onednn|auto forces the engine
 * for benchmarks and tests; dp_matmul_engine() reports the engine that ran last per dtype. */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <cblas.h>
#include "cpu_kernels.h"
#include "gemm_impl.h"

/* A batch of at least two matrices per thread runs one single-threaded BLAS call per OpenMP
 * thread rather than one multi-threaded call after another when the matrices are small or the
 * batch splits evenly over the threads. On 2 cores, 384 x (128x128x64), as in BERT attention, ran
 * 25% faster on an idle machine and 3x faster beside another busy process (OpenBLAS's threads
 * wait on each other at every call); 24 x (512x768x64) ran 30% faster. */
#define SMALL_GEMM_MACS (1 << 22)

/* ---------------------------------------------------------------- engine bookkeeping */

static const char *_Atomic last_engine[DP_NUM_DTYPES];

const char *dp_matmul_engine(dp_dtype dtype) {
    if ((unsigned)dtype >= DP_NUM_DTYPES) return "";
    const char *name = atomic_load(&last_engine[dtype]);
    return name ? name : "";
}

typedef enum { ENGINE_AUTO, ENGINE_OPENBLAS, ENGINE_ONEDNN } engine_choice;

/* Read on every call so tests can switch engines with setenv. */
static int read_engine_choice(engine_choice *choice) {
    const char *env = getenv("DP_GEMM_ENGINE");
    if (!env || !*env || !strcmp(env, "auto")) *choice = ENGINE_AUTO;
    else if (!strcmp(env, "openblas")) *choice = ENGINE_OPENBLAS;
    else if (!strcmp(env, "onednn")) *choice = ENGINE_ONEDNN;
    else
        return dp_fail(DP_EARG, "gemm: DP_GEMM_ENGINE must be openblas, onednn or auto (got \"%s\")",
                       env);
    return 0;
}

/* ---------------------------------------------------------------- scratch pool */

enum { SCRATCH_SLOTS = 8 };

static struct {
    void *ptr;
    size_t bytes;
    int busy;
} scratch[SCRATCH_SLOTS];
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;

static void *aligned_bytes(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) == 0 ? p : NULL;
}

/* Buffers stay allocated between calls: re-faulting tens of megabytes of fresh pages on every
 * bf16 GEMM costs several percent at BERT sizes. While a buffer is handed out its whole size counts
 * as DP_MEM_SCRATCH (memory in use); idle pooled buffers are not counted, like the allocator's
 * cache of freed blocks. */
void *dp_gemm_scratch_get(size_t bytes) {
    if (bytes == 0) bytes = 64;
    pthread_mutex_lock(&scratch_lock);
    int best = -1;
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        if (scratch[i].busy) continue;
        if (best < 0) { best = i; continue; }
        int fits = scratch[i].bytes >= bytes, best_fits = scratch[best].bytes >= bytes;
        /* Prefer the smallest buffer that fits, else grow the largest one. */
        if ((fits && (!best_fits || scratch[i].bytes < scratch[best].bytes)) ||
            (!fits && !best_fits && scratch[i].bytes > scratch[best].bytes))
            best = i;
    }
    void *ptr = NULL;
    size_t held = 0;
    if (best >= 0) {
        if (scratch[best].bytes < bytes) {
            free(scratch[best].ptr);
            scratch[best].ptr = aligned_bytes(bytes);
            scratch[best].bytes = scratch[best].ptr ? bytes : 0;
        }
        if (scratch[best].ptr) {
            scratch[best].busy = 1;
            ptr = scratch[best].ptr;
            held = scratch[best].bytes;
        }
    }
    pthread_mutex_unlock(&scratch_lock);
    if (best >= 0) {
        if (ptr) dp_mem_scratch(DP_CPU, (int64_t)held);
        return ptr;
    }
    /* Every slot busy (many threads at once): a one-off buffer, freed by put. Its size goes in a
     * 64-byte prefix (keeping the alignment) so that put can uncount it. */
    char *raw = aligned_bytes(bytes + 64);
    if (!raw) return NULL;
    memcpy(raw, &bytes, sizeof bytes);
    dp_mem_scratch(DP_CPU, (int64_t)bytes);
    return raw + 64;
}

void dp_gemm_scratch_put(void *ptr) {
    if (!ptr) return;
    pthread_mutex_lock(&scratch_lock);
    int found = 0;
    size_t held = 0;
    for (int i = 0; i < SCRATCH_SLOTS && !found; i++)
        if (scratch[i].ptr == ptr) {
            scratch[i].busy = 0;
            held = scratch[i].bytes;
            found = 1;
        }
    pthread_mutex_unlock(&scratch_lock);
    if (!found) {
        char *raw = (char *)ptr - 64;
        memcpy(&held, raw, sizeof held);
        free(raw);
    }
    dp_mem_scratch(DP_CPU, -(int64_t)held);
}

__attribute__((destructor)) static void scratch_release(void) {
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        free(scratch[i].ptr);
        scratch[i].ptr = NULL;
        scratch[i].bytes = 0;
    }
}

/* ---------------------------------------------------------------- problem description */

/* Describe tensor t ((batch, r, c) or (r, c)) as a BLAS operand; op(t) is t itself, or its
 * transpose when trans. Sets op_rows x op_cols to op(t)'s shape. */
static int describe_operand(dp_gemm_operand *op, int64_t *op_rows, int64_t *op_cols,
                            const dp_tensor *t, int32_t trans, int64_t batch, const char *name) {
    int32_t nd = t->ndim;
    if (nd != 2 && nd != 3)
        return dp_fail(DP_ESHAPE, "gemm: %s must be 2-D or 3-D, got %s", name, dp_tensor_desc(t));
    int64_t count = nd == 3 ? t->shape[0] : 1;
    if (count != 1 && count != batch)
        return dp_fail(DP_ESHAPE, "gemm: %s has batch %lld, out has %lld", name,
                       (long long)count, (long long)batch);
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t s1 = t->stride[nd - 2], s2 = t->stride[nd - 1];
    int64_t rmin = r > 1 ? r : 1, cmin = c > 1 ? c : 1;
    op->data = t->data;
    op->batch_stride = count == 1 ? 0 : t->stride[0];
    if ((c <= 1 || s2 == 1) && (r <= 1 || s1 >= cmin)) {
        op->rows = r;
        op->cols = c;
        op->ld = r <= 1 ? cmin : s1;
        op->trans = trans != 0;
    } else if ((r <= 1 || s1 == 1) && (c <= 1 || s2 >= rmin)) {
        /* Unit stride down the columns: stored as the row-major transpose. */
        op->rows = c;
        op->cols = r;
        op->ld = c <= 1 ? rmin : s2;
        op->trans = trans == 0;
    } else {
        return dp_fail(DP_EINTERNAL,
                       "gemm: %s needs unit stride in one of its last two dims, got strides "
                       "[%lld,%lld] for %s", name, (long long)s1, (long long)s2, dp_tensor_desc(t));
    }
    *op_rows = trans ? c : r;
    *op_cols = trans ? r : c;
    return 0;
}

static int fits_blas_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* out = beta * out, for K = 0 (no products to add). */
static void scale_out(const dp_gemm_problem *p) {
    int64_t n = p->batch * p->M * p->N;
    if (p->beta == 0) {
        memset(p->out, 0, (size_t)n * (size_t)dp_dtype_size(p->dtype));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        dp_store_f64(p->out, p->dtype, i, p->beta * dp_load_f64(p->out, p->dtype, i));
}

/* ---------------------------------------------------------------- OpenBLAS */

static void blas_one(const dp_gemm_problem *p, int64_t i, int64_t M) {
    CBLAS_TRANSPOSE ta = p->a.trans ? CblasTrans : CblasNoTrans;
    CBLAS_TRANSPOSE tb = p->b.trans ? CblasTrans : CblasNoTrans;
    int64_t es = p->dtype == DP_F64 ? 8 : 4;
    const char *A = p->a.data + i * p->a.batch_stride * es;
    const char *B = p->b.data + i * p->b.batch_stride * es;
    char *C = p->out + i * M * p->N * es;
    if (p->dtype == DP_F64)
        cblas_dgemm(CblasRowMajor, ta, tb, (blasint)M, (blasint)p->N, (blasint)p->K, p->alpha,
                    (const double *)A, (blasint)p->a.ld, (const double *)B, (blasint)p->b.ld,
                    p->beta, (double *)C, (blasint)p->N);
    else
        cblas_sgemm(CblasRowMajor, ta, tb, (blasint)M, (blasint)p->N, (blasint)p->K,
                    (float)p->alpha, (const float *)A, (blasint)p->a.ld, (const float *)B,
                    (blasint)p->b.ld, (float)p->beta, (float *)C, (blasint)p->N);
}

int dp_gemm_blas(const dp_gemm_problem *p) {
    int64_t batch = p->batch, M = p->M;
    if (!fits_blas_int(M) || !fits_blas_int(p->N) || !fits_blas_int(p->K) ||
        !fits_blas_int(p->a.ld) || !fits_blas_int(p->b.ld))
        return dp_fail(DP_EUNSUPPORTED, "gemm: dims (M %lld, N %lld, K %lld) exceed BLAS's 32-bit "
                       "ints", (long long)M, (long long)p->N, (long long)p->K);
    /* A shared right operand and stacked left matrices make one tall GEMM: (batch*M, K). */
    if (batch > 1 && p->b.batch_stride == 0 && !p->a.trans &&
        p->a.batch_stride == M * p->a.ld && fits_blas_int(batch * M)) {
        M *= batch;
        batch = 1;
    }
    int threads = openblas_get_num_threads();
    if (threads > 1 && batch >= 2 * threads &&
        ((double)M * p->N * p->K <= SMALL_GEMM_MACS || batch % threads == 0)) {
        /* openblas_set_num_threads is global: another host thread's BLAS call running right now
         * would briefly get one thread too. */
        openblas_set_num_threads(1);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < batch; i++) blas_one(p, i, M);
        openblas_set_num_threads(threads);
    } else {
        for (int64_t i = 0; i < batch; i++) blas_one(p, i, M);
    }
    return 0;
}

/* ---------------------------------------------------------------- entry point */

/* oneDNN was asked for but has no kernel: its reason (in dp_last_error) becomes the error. */
static int fail_forced_onednn(void) {
    char why[512];
    snprintf(why, sizeof why, "%s", dp_last_error());
    return dp_fail(DP_EUNSUPPORTED, "gemm: DP_GEMM_ENGINE=onednn, but %s", why);
}

int dp_cpu_gemm(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                int32_t trans_b, double alpha, double beta) {
    dp_gemm_problem p;
    memset(&p, 0, sizeof p);
    p.dtype = out->dtype;
    if (a->dtype != p.dtype || b->dtype != p.dtype || !dp_dtype_is_float(p.dtype))
        return dp_fail(DP_EDTYPE, "gemm: a, b and out must share a float dtype (a is %s, b is %s, "
                       "out is %s)", dp_tensor_desc(a), dp_tensor_desc(b), dp_tensor_desc(out));
    if ((out->ndim != 2 && out->ndim != 3) || !dp_tensor_is_contiguous(out))
        return dp_fail(DP_ESHAPE, "gemm: out must be contiguous (batch, M, N) or (M, N), got %s",
                       dp_tensor_desc(out));
    p.batch = out->ndim == 3 ? out->shape[0] : 1;
    int64_t K_b;
    int rc = describe_operand(&p.a, &p.M, &p.K, a, trans_a, p.batch, "a");
    if (!rc) rc = describe_operand(&p.b, &K_b, &p.N, b, trans_b, p.batch, "b");
    if (rc) return rc;
    if (K_b != p.K || out->shape[out->ndim - 2] != p.M || out->shape[out->ndim - 1] != p.N)
        return dp_fail(DP_ESHAPE, "gemm: shapes do not fit (a is %s%s, b is %s%s, out is %s)",
                       dp_tensor_desc(a), trans_a ? " transposed" : "", dp_tensor_desc(b),
                       trans_b ? " transposed" : "", dp_tensor_desc(out));
    p.out = out->data;
    p.alpha = alpha;
    p.beta = beta;

    engine_choice choice = ENGINE_AUTO;
    if ((rc = read_engine_choice(&choice))) return rc;
    if (p.batch == 0 || p.M == 0 || p.N == 0) return 0;
    if (p.K == 0) {
        scale_out(&p);
        return 0;
    }

    const char *engine = "openblas";
    switch (p.dtype) {
    case DP_F64:
        rc = dp_gemm_blas(&p);
        break;
    case DP_F32:
        if (choice == ENGINE_ONEDNN) {
            engine = "onednn";
            rc = dp_gemm_onednn(&p, 1);
            if (rc == 1) rc = fail_forced_onednn();
        } else {
            rc = dp_gemm_blas(&p);
        }
        break;
    case DP_BF16:
    case DP_F16:
        /* Auto tries oneDNN for bf16 only: that is where it beats converting (AMX); f16 uses it
         * only when forced. */
        rc = 1;
        if (choice == ENGINE_ONEDNN || (choice == ENGINE_AUTO && p.dtype == DP_BF16)) {
            engine = "onednn";
            rc = dp_gemm_onednn(&p, choice == ENGINE_ONEDNN);
            if (rc == 1 && choice == ENGINE_ONEDNN) rc = fail_forced_onednn();
        }
        if (rc == 1) {
            engine = "convert+openblas";
            rc = dp_gemm_lowp(&p);
        }
        break;
    default:
        /* fp8: oneDNN 2.6 has no fp8 matmul, so the variable does not apply. */
        engine = "convert+openblas";
        rc = dp_gemm_lowp(&p);
        break;
    }
    if (rc == 0) atomic_store(&last_engine[p.dtype], engine);
    return rc;
}
