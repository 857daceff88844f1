// reduce.cu: CUDA sum / mean / max over any set of dims of a strided float tensor, and argmax
// along one dim of any dtype. Semantics of kernels/cpu/reduce.c: sums accumulate in double for
// every float dtype (f32 included), max propagates NaN (a NaN anywhere makes the max NaN), the
// result is rounded like the CPU's store (double -> f32 -> narrower dtype), argmax gives the first
// maximum or the first NaN. Long slices get one thread block each (shared-memory tree); short
// slices one thread each.
#include "ew.h"
#include "reduce_geometry.h"

enum { RED_THREADS = 256, SHORT_SLICE = 64 };

// x offset of row-major index i over n dims of sizes s and strides st.
static __device__ __forceinline__ int64_t dims_offset(int32_t n, const int64_t *s,
                                                      const int64_t *st, int64_t i) {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        off += (i % s[d]) * st[d];
        i /= s[d];
    }
    return off;
}

// The CPU's loads: f32 and f64 as they are, the narrower floats through f32.
static __device__ __forceinline__ double red_load(const void *p, dp_dtype t, int64_t i) {
    switch (t) {
    case DP_F32: return ((const float *)p)[i];
    case DP_F64: return ((const double *)p)[i];
    default: return dp_cu_load_f32(p, t, i);
    }
}

static __device__ __forceinline__ void red_store(void *p, dp_dtype t, int64_t i, double v) {
    switch (t) {
    case DP_F32: ((float *)p)[i] = (float)v; break;
    case DP_F64: ((double *)p)[i] = v; break;
    default: dp_cu_store_f32(p, t, i, (float)v); break;
    }
}

static __device__ __forceinline__ double max_nan(double acc, double v) {
    return (v > acc || v != v) ? v : acc;
}

static __device__ __forceinline__ double red_finish(double acc, dp_redop op, int64_t rn) {
    return op == DP_RED_MEAN ? acc / (double)rn : acc;
}

// One thread per output (short slices).
static __global__ void reduce_thread_kernel(dp_red_geom g, void *out, dp_dtype ot, const void *x,
                                     dp_dtype xt, dp_redop op) {
    int is_max = op == DP_RED_MAX;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < g.kn;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = dims_offset(g.nk, g.ks, g.kst, o);
        double acc = is_max ? -INFINITY : 0.0;
        for (int64_t r = 0; r < g.rn; r++) {
            double v = red_load(x, xt, base + dims_offset(g.nr, g.rs, g.rst, r));
            acc = is_max ? max_nan(acc, v) : acc + v;
        }
        red_store(out, ot, o, red_finish(acc, op, g.rn));
    }
}

// One block per output (long slices): strided partials, then a tree in shared memory.
static __global__ void reduce_block_kernel(dp_red_geom g, void *out, dp_dtype ot, const void *x,
                                    dp_dtype xt, dp_redop op) {
    __shared__ double part[RED_THREADS];
    int is_max = op == DP_RED_MAX;
    for (int64_t o = blockIdx.x; o < g.kn; o += gridDim.x) {
        int64_t base = dims_offset(g.nk, g.ks, g.kst, o);
        double acc = is_max ? -INFINITY : 0.0;
        for (int64_t r = threadIdx.x; r < g.rn; r += blockDim.x) {
            double v = red_load(x, xt, base + dims_offset(g.nr, g.rs, g.rst, r));
            acc = is_max ? max_nan(acc, v) : acc + v;
        }
        part[threadIdx.x] = acc;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w /= 2) {
            if ((int)threadIdx.x < w) {
                double a = part[threadIdx.x], b = part[threadIdx.x + w];
                part[threadIdx.x] = is_max ? max_nan(a, b) : a + b;
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) red_store(out, ot, o, red_finish(part[0], op, g.rn));
        __syncthreads();   // part[] is reused by the next output
    }
}

int dp_cuda_reduce(dp_tensor *out, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                   dp_redop op) {
    if (!dp_dtype_is_float(x->dtype) || !dp_dtype_is_float(out->dtype))
        return dp_fail(DP_EDTYPE, "reduce: cuda kernel needs float tensors, got %s into %s",
                       dp_tensor_desc(x), dp_tensor_desc(out));
    if ((unsigned)op > DP_RED_MAX) return dp_fail(DP_EARG, "cuda reduce: unknown op %d", (int)op);
    int reduced[8] = {0};
    for (int i = 0; i < ndims; i++) reduced[dims[i]] = 1;
    dp_red_geom g;
    dp_red_geom_build(&g, x, reduced);
    if (g.kn == 0) return 0;
    if (g.rn < SHORT_SLICE) {
        reduce_thread_kernel<<<dp_cuda_grid(g.kn), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(g, out->data, out->dtype,
                                                                      x->data, x->dtype, op);
        return dp_cuda_check_launch("reduce", "reduce_thread_kernel");
    }
    unsigned blocks = (unsigned)(g.kn < 65535 ? g.kn : 65535);
    reduce_block_kernel<<<blocks, RED_THREADS, 0, dp_cuda_stream()>>>(g, out->data, out->dtype, x->data, x->dtype, op);
    return dp_cuda_check_launch("reduce", "reduce_block_kernel");
}

// ---------------------------------------------------------------- argmax

// A candidate: index (-1 for none), and its value (v, or iv for i64, compared exactly).
typedef struct {
    int64_t idx;
    double v;
    int64_t iv;
    int nan;
} arg_best;

// The better of two candidates: a NaN beats any number and the first NaN wins; otherwise the
// larger value, and on a tie the smaller index (the first maximum).
static __device__ __forceinline__ arg_best arg_pick(arg_best a, arg_best b, int is_i64) {
    if (a.idx < 0) return b;
    if (b.idx < 0) return a;
    if (a.nan || b.nan) {
        if (a.nan && b.nan) return a.idx < b.idx ? a : b;
        return a.nan ? a : b;
    }
    int b_gt = is_i64 ? b.iv > a.iv : b.v > a.v;
    int eq = is_i64 ? b.iv == a.iv : b.v == a.v;
    if (b_gt || (eq && b.idx < a.idx)) return b;
    return a;
}

static __device__ __forceinline__ arg_best arg_at(const void *x, dp_dtype t, int64_t off, int64_t i) {
    arg_best c;
    c.idx = i;
    c.iv = 0;
    if (t == DP_I64) {
        c.iv = ((const int64_t *)x)[off];
        c.v = 0;
        c.nan = 0;
    } else {
        c.v = dp_cu_load_f64(x, t, off);   // exact for every dtype but i64, handled above
        c.nan = c.v != c.v;
    }
    return c;
}

static __global__ void argmax_kernel(dp_red_geom g, int64_t *out, const void *x, dp_dtype xt, int64_t len,
                              int64_t s) {
    __shared__ arg_best part[RED_THREADS];
    int is_i64 = xt == DP_I64;
    for (int64_t o = blockIdx.x; o < g.kn; o += gridDim.x) {
        int64_t base = dims_offset(g.nk, g.ks, g.kst, o);
        arg_best best;
        best.idx = -1;
        best.v = 0;
        best.iv = 0;
        best.nan = 0;
        // Each thread's indices increase, so it can stop at its first NaN.
        for (int64_t i = threadIdx.x; i < len && !best.nan; i += blockDim.x)
            best = arg_pick(best, arg_at(x, xt, base + i * s, i), is_i64);
        part[threadIdx.x] = best;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w /= 2) {
            if ((int)threadIdx.x < w)
                part[threadIdx.x] = arg_pick(part[threadIdx.x], part[threadIdx.x + w], is_i64);
            __syncthreads();
        }
        if (threadIdx.x == 0) out[o] = part[0].idx < 0 ? 0 : part[0].idx;
        __syncthreads();
    }
}

int dp_cuda_argmax(dp_tensor *out, const dp_tensor *x, int32_t dim) {
    if ((unsigned)x->dtype >= DP_NUM_DTYPES)
        return dp_fail(DP_EDTYPE, "cuda argmax: unknown dtype of %s", dp_tensor_desc(x));
    int64_t len = x->ndim ? x->shape[dim] : 1, s = x->ndim ? x->stride[dim] : 0;
    int reduced[8] = {0};
    if (x->ndim) reduced[dim] = 1;
    dp_red_geom g;
    dp_red_geom_build(&g, x, reduced);
    if (g.kn == 0) return 0;
    unsigned blocks = (unsigned)(g.kn < 65535 ? g.kn : 65535);
    // Short rows waste most of a 256-thread block; 32 threads (one warp) still reduce correctly.
    unsigned threads = len < RED_THREADS ? 32 : RED_THREADS;
    argmax_kernel<<<blocks, threads, 0, dp_cuda_stream()>>>(g, (int64_t *)out->data, x->data, x->dtype, len, s);
    return dp_cuda_check_launch("argmax", "argmax_kernel");
}
