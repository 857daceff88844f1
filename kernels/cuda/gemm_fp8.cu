// gemm_fp8.cu: fp8 GEMMs on CUDA: dp_ops.gemm_fp8 (out bf16/f16/f32 = alpha * (scale_a op(a)) @
// (scale_b op(b)) + beta * out) and the gemm entry's fp8 dtypes (gemm_fp8_same_dtype), with f32
// accumulation either way.
//
// Native path (compute capability 8.9 or newer, not e5m2 x e5m2): cuBLASLt's fp8 kernels, which
// accept only the "TN" layout (in cuBLASLt's column-major terms A transposed, B not: here, both
// op(a) (M, K) and op(b)^T (N, K) with unit stride along K), leading dimensions and matrix starts
// 16-byte aligned, CUBLAS_COMPUTE_32F with f32 scale type, and f32 scale factors through device
// pointers (CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER). An operand that is not so laid out is
// repacked into scratch with K padded by zeros to a multiple of 16 (zeros add nothing to a sum).
// The f32 scale factors are written by a one-thread kernel on the stream, so no host buffer has
// to outlive the call.
//
// Fallback (older GPUs, e5m2 x e5m2, or no cuBLASLt algorithm for the problem): the operands are
// widened to bf16 (exact: every e4m3 and e5m2 value is a bf16 value), the bf16 x bf16 -> f32
// cuBLASLt GEMM runs with alpha * scale_a * scale_b (the f32 scale factors multiplied in double,
// rounded once to f32: exactly the product when the scales are powers of two), and each result is
// rounded once, to nearest even, into out's dtype.
//
// DP_CUDA_FP8=native|widen|auto (read on every call, default auto) forces a path for tests and
// benchmarks; dp_cuda_gemm_fp8_last_path() (exported) names the path the last call took.
//
// Scratch comes from the caching allocator (allocator.h) and is freed as soon as the work using
// it is queued: the one stream orders any later use of the block behind that work.
#include <stdlib.h>
#include <atomic>
#include <mutex>
#include "gemm_lt.h"
#include "allocator.h"

// ---------------------------------------------------------------- path choice

static int device_has_fp8(void) {
    static std::once_flag once;
    static int has = 0;
    std::call_once(once, [] {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess)
            has = major > 8 || (major == 8 && minor >= 9);
    });
    return has;
}

enum fp8_mode { MODE_AUTO, MODE_NATIVE, MODE_WIDEN };

static int read_mode(fp8_mode *mode, const char *op) {
    const char *env = getenv("DP_CUDA_FP8");
    if (!env || !*env || !strcmp(env, "auto")) *mode = MODE_AUTO;
    else if (!strcmp(env, "native")) *mode = MODE_NATIVE;
    else if (!strcmp(env, "widen")) *mode = MODE_WIDEN;
    else return dp_fail(DP_EARG, "%s: DP_CUDA_FP8 must be native, widen or auto (got \"%s\")", op, env);
    return 0;
}

static std::atomic<int> last_path(0);   // 0 none yet, 1 native, 2 widened

extern "C" __attribute__((visibility("default"))) const char *dp_cuda_gemm_fp8_last_path(void) {
    int p = last_path.load();
    return p == 1 ? "native" : p == 2 ? "widened" : "";
}

// ---------------------------------------------------------------- kernels

__global__ void set_scales_kernel(float *dst, float sa, float sb) {
    dst[0] = sa;
    dst[1] = sb;
}

// dst (count, R, Kp) row-major = rows of op(src) (or columns for the right operand) with K
// contiguous, zero beyond K. k_contig: src reads element (r, k) at r * ld + k, else at k * ld + r.
__global__ void repack_kernel(uint8_t *dst, const uint8_t *src, int64_t count, int64_t R,
                              int64_t K, int64_t Kp, int64_t batch_stride, int64_t ld,
                              int k_contig) {
    int64_t n = count * R * Kp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t k = i % Kp, t = i / Kp, r = t % R, m = t / R;
        const uint8_t *mat = src + m * batch_stride;
        dst[i] = k < K ? (k_contig ? mat[r * ld + k] : mat[k * ld + r]) : 0;
    }
}

__global__ void widen_kernel(uint16_t *dst, const uint8_t *src, dp_dtype dtype, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = dtype == DP_FP8_E4M3 ? dp_cast_e4m3_to_f32(src[i]) : dp_cast_e5m2_to_f32(src[i]);
        dst[i] = dp_cast_f32_to_bf16(v);   // exact
    }
}

// to_out: out (dtype) = wide rounded once to nearest even; else wide = out (exact).
__global__ void convert_kernel(float *wide, void *out, dp_dtype dtype, int64_t n, int to_out) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        if (to_out) nn_store<float>(out, dtype, i, wide[i]);
        else wide[i] = nn_load<float>(out, dtype, i);
    }
}

// ---------------------------------------------------------------- one problem, two paths

// c (batch, M, N) contiguous of c_dtype (bf16, f16 or f32) = alpha * (sa op(a)) @ (sb op(b)) +
// beta * c, a of dtype ta and b of tb (fp8).
struct fp8_problem {
    const char *op;
    dp_dtype ta, tb, c_dtype;
    gemm_operand a, b;
    void *c;
    int64_t batch, M, N, K;
    float sa, sb;
    double alpha, beta;
};

static cudaDataType_t cuda_type(dp_dtype dt) {
    switch (dt) {
    case DP_FP8_E4M3: return CUDA_R_8F_E4M3;
    case DP_FP8_E5M2: return CUDA_R_8F_E5M2;
    case DP_BF16: return CUDA_R_16BF;
    case DP_F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
    }
}

static int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Already as the fp8 kernels read it: unit stride along K (k_major), 16-byte aligned leading
// dimension, start and batch stride, K a multiple of 16.
static int native_ready(const gemm_operand &o, int k_major, int64_t K) {
    return k_major && o.ld % 16 == 0 && (uintptr_t)o.data % 16 == 0 && o.batch_stride % 16 == 0 &&
           K % 16 == 0;
}

// o (op(o) rows x K, R rows) repacked K-contiguous into dst with Kp = K rounded up to 16.
static gemm_operand repack(uint8_t *dst, const gemm_operand &o, int64_t count, int64_t R,
                           int64_t K, int64_t Kp, int k_contig, int trans_after) {
    repack_kernel<<<dp_cuda_grid(count * R * Kp), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
        dst, (const uint8_t *)o.data, count, R, K, Kp, o.batch_stride, o.ld, k_contig);
    gemm_operand r = {(const char *)dst, count > 1 ? R * Kp : 0, R, Kp, Kp, trans_after};
    return r;
}

// 0 done, 1 cuBLASLt has no fp8 algorithm (nothing written: fall back), < 0 an error.
static int run_native(const fp8_problem &p, int soft) {
    // a K-major: stored (M, K) untransposed; b K-major: stored (N, K) and transposed. Both ready
    // means K % 16 == 0, so Kp == K; otherwise both are repacked with K padded to Kp.
    int a_ok = native_ready(p.a, !p.a.trans, p.K), b_ok = native_ready(p.b, p.b.trans, p.K);
    int64_t Kp = round_up(p.K, 16);
    int64_t ca = p.a.batch_stride ? p.batch : 1, cb = p.b.batch_stride ? p.batch : 1;
    size_t a_bytes = a_ok ? 0 : (size_t)round_up(ca * p.M * Kp, 256);
    size_t b_bytes = b_ok ? 0 : (size_t)round_up(cb * p.N * Kp, 256);
    size_t bytes = 256 + a_bytes + b_bytes;
    char *scratch = (char *)dp_cuda_alloc(bytes, p.op);
    if (!scratch) return DP_ENOMEM;
    dp_mem_scratch(DP_CUDA, (int64_t)bytes);
    float *scales = (float *)scratch;
    set_scales_kernel<<<1, 1, 0, dp_cuda_stream()>>>(scales, p.sa, p.sb);
    gemm_operand a = p.a, b = p.b;
    if (!a_ok) a = repack((uint8_t *)scratch + 256, p.a, ca, p.M, p.K, Kp, !p.a.trans, 0);
    if (!b_ok) b = repack((uint8_t *)scratch + 256 + a_bytes, p.b, cb, p.N, p.K, Kp, p.b.trans, 1);
    int rc = dp_cuda_check_launch(p.op, "set_scales_kernel / repack_kernel");
    gemm_lt_types ty = {cuda_type(p.ta), cuda_type(p.tb), cuda_type(p.c_dtype), CUBLAS_COMPUTE_32F,
                        CUDA_R_32F, scales, scales + 1, p.op};
    if (!rc)
        rc = gemm_lt_run(ty, a, b, a.data, b.data, p.c, p.batch, p.M, p.N, Kp, p.alpha, p.beta, 1,
                         dp_dtype_size(p.c_dtype), soft);
    dp_cuda_free(scratch);
    dp_mem_scratch(DP_CUDA, -(int64_t)bytes);
    return rc;
}

// Elements an operand's matrices span in memory (its layout is kept when widened).
static int64_t span_of(const gemm_operand &o, int64_t batch) {
    int64_t last = o.batch_stride ? (batch - 1) * o.batch_stride : 0;
    return last + (o.rows - 1) * o.ld + o.cols;
}

static int run_widened(const fp8_problem &p) {
    int64_t na = span_of(p.a, p.batch), nb = span_of(p.b, p.batch), nc = p.batch * p.M * p.N;
    int direct = p.c_dtype == DP_F32;   // else an f32 result rounded into c afterwards
    size_t c_bytes = direct ? 0 : (size_t)round_up(nc * 4, 256);
    size_t a_bytes = (size_t)round_up(na * 2, 256), bytes = c_bytes + a_bytes + (size_t)nb * 2;
    char *scratch = (char *)dp_cuda_alloc(bytes, p.op);
    if (!scratch) return DP_ENOMEM;
    dp_mem_scratch(DP_CUDA, (int64_t)bytes);
    float *wc = direct ? (float *)p.c : (float *)scratch;
    uint16_t *wa = (uint16_t *)(scratch + c_bytes), *wb = (uint16_t *)(scratch + c_bytes + a_bytes);
    widen_kernel<<<dp_cuda_grid(na), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wa, (const uint8_t *)p.a.data, p.ta, na);
    widen_kernel<<<dp_cuda_grid(nb), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wb, (const uint8_t *)p.b.data, p.tb, nb);
    if (!direct && p.beta != 0)
        convert_kernel<<<dp_cuda_grid(nc), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wc, p.c, p.c_dtype, nc, 0);
    int rc = dp_cuda_check_launch(p.op, "widen_kernel");
    gemm_lt_types ty = {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, NULL,
                        NULL, p.op};
    double factor = (double)p.sa * (double)p.sb * p.alpha;
    if (!rc)
        rc = gemm_lt_run(ty, p.a, p.b, wa, wb, wc, p.batch, p.M, p.N, p.K, (double)(float)factor,
                         p.beta, 2, 4, 0);
    if (!rc && !direct) {
        convert_kernel<<<dp_cuda_grid(nc), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wc, p.c, p.c_dtype, nc, 1);
        rc = dp_cuda_check_launch(p.op, "convert_kernel");
    }
    dp_cuda_free(scratch);
    dp_mem_scratch(DP_CUDA, -(int64_t)bytes);
    return rc;
}

static int run_problem(const fp8_problem &p) {
    fp8_mode mode = MODE_AUTO;
    int rc = read_mode(&mode, p.op);
    if (rc) return rc;
    int native = device_has_fp8() && !(p.ta == DP_FP8_E5M2 && p.tb == DP_FP8_E5M2);
    if (mode == MODE_NATIVE && !native)
        return dp_fail(DP_EUNSUPPORTED, "%s: DP_CUDA_FP8=native, but %s", p.op,
                       device_has_fp8() ? "e5m2 x e5m2 has no fp8 kernel"
                                        : "this GPU has no fp8 tensor cores (compute capability < 8.9)");
    if (native && mode != MODE_WIDEN) {
        rc = run_native(p, mode == MODE_AUTO);
        if (rc <= 0) {
            if (rc == 0) last_path.store(1);
            return rc;
        }
    }
    rc = run_widened(p);
    if (rc == 0) last_path.store(2);
    return rc;
}

// ---------------------------------------------------------------- entry points

static int is_fp8(dp_dtype dt) { return dt == DP_FP8_E4M3 || dt == DP_FP8_E5M2; }

int dp_cuda_gemm_fp8(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                     int32_t trans_b, double scale_a, double scale_b, double alpha, double beta) {
    const char *op = "gemm_fp8";
    if (!is_fp8(a->dtype) || !is_fp8(b->dtype) ||
        (a->dtype == DP_FP8_E5M2 && b->dtype == DP_FP8_E5M2))
        return dp_fail(DP_EDTYPE, "%s: a and b must be fp8 (e4m3 or e5m2, not both e5m2), got a "
                       "%s, b %s", op, dp_tensor_desc(a), dp_tensor_desc(b));
    dp_dtype odt = out->dtype;
    if (odt != DP_BF16 && odt != DP_F16 && odt != DP_F32)
        return dp_fail(DP_EDTYPE, "%s: out must be bf16, f16 or f32, got %s", op, dp_tensor_desc(out));
    if ((out->ndim != 2 && out->ndim != 3) || !dp_tensor_is_contiguous(out))
        return dp_fail(DP_ESHAPE, "%s: out must be contiguous (batch, M, N) or (M, N), got %s", op,
                       dp_tensor_desc(out));
    fp8_problem p;
    p.op = op;
    p.ta = a->dtype;
    p.tb = b->dtype;
    p.c_dtype = odt;
    p.c = out->data;
    p.batch = out->ndim == 3 ? out->shape[0] : 1;
    int64_t K_b;
    int rc = gemm_describe(&p.a, &p.M, &p.K, a, trans_a, p.batch, op, "a");
    if (!rc) rc = gemm_describe(&p.b, &K_b, &p.N, b, trans_b, p.batch, op, "b");
    if (rc) return rc;
    if (K_b != p.K || out->shape[out->ndim - 2] != p.M || out->shape[out->ndim - 1] != p.N)
        return dp_fail(DP_ESHAPE, "%s: shapes do not fit (a is %s%s, b is %s%s, out is %s)", op,
                       dp_tensor_desc(a), trans_a ? " transposed" : "", dp_tensor_desc(b),
                       trans_b ? " transposed" : "", dp_tensor_desc(out));
    if (p.batch == 0 || p.M == 0 || p.N == 0) return 0;
    if (p.K == 0) return gemm_scale_out(p.c, odt, p.batch * p.M * p.N, beta, op);
    p.sa = (float)scale_a;
    p.sb = (float)scale_b;
    p.alpha = alpha;
    p.beta = beta;
    return run_problem(p);
}

int gemm_fp8_same_dtype(dp_dtype dtype, const gemm_operand &a, const gemm_operand &b, void *out,
                        int64_t batch, int64_t M, int64_t N, int64_t K, double alpha, double beta) {
    // The f32 products into scratch (holding out widened when beta reads it), then one rounding.
    int64_t nc = batch * M * N;
    float *wide = (float *)dp_cuda_alloc((size_t)nc * 4, "gemm");
    if (!wide) return DP_ENOMEM;
    dp_mem_scratch(DP_CUDA, nc * 4);
    int rc = 0;
    if (beta != 0) {
        convert_kernel<<<dp_cuda_grid(nc), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wide, out, dtype, nc, 0);
        rc = dp_cuda_check_launch("gemm", "convert_kernel");
    }
    fp8_problem p = {"gemm", dtype, dtype, DP_F32, a, b, wide, batch, M, N, K, 1.0f, 1.0f, alpha, beta};
    if (!rc) rc = run_problem(p);
    if (!rc) {
        convert_kernel<<<dp_cuda_grid(nc), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(wide, out, dtype, nc, 1);
        rc = dp_cuda_check_launch("gemm", "convert_kernel");
    }
    dp_cuda_free(wide);
    dp_mem_scratch(DP_CUDA, -nc * 4);
    return rc;
}

void dp_cuda_register_gemm_fp8(dp_ops *t) { t->gemm_fp8 = dp_cuda_gemm_fp8; }
