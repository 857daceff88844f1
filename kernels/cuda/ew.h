/* ew.h: what the CUDA elementwise family (binary.cu, unary.cu, copy_cast.cu, reduce.cu, quant.cu)
 * shares: the strided N-d geometry of up to three same-shaped operands (dims merged like the CPU's
 * ew_loop.c), element loads and stores of every dtype that round exactly like core/dtype.c (the
 * casts themselves come from core/dtype_cast.h, compiled for the device), and the launchers. */
#ifndef DP_CUDA_EW_H
#define DP_CUDA_EW_H
#include <math.h>
#include "cuda_common.h"
#include "dtype_cast.h"

enum { DP_CU_EW_MAX_OPS = 3 };

/* Operands 0..nop-1 share shape[ndim]; stride[k][d] is operand k's step (elements) along dim d.
 * Element i (row-major) of the loop is at sum_d idx_d(i) * stride[k][d] in operand k. Passed to
 * kernels by value. */
typedef struct dp_cu_geom {
    int32_t nop, ndim;
    int64_t numel;
    int64_t shape[8];
    int64_t stride[DP_CU_EW_MAX_OPS][8];
} dp_cu_geom;

/* Geometry of ts[0]'s shape over ts[0..nop-1] (host). Size-1 dims are dropped and a dim merges
 * into the one before it when every operand steps over it exactly, as in kernels/cpu/ew_loop.c. */
static inline void dp_cu_geom_init(dp_cu_geom *g, int32_t nop, const dp_tensor *const *ts) {
    const dp_tensor *o = ts[0];
    g->nop = nop;
    g->numel = dp_tensor_numel(o);
    int n = 0;
    for (int d = 0; d < o->ndim; d++) {
        if (o->shape[d] == 1) continue;
        int merge = n > 0;
        for (int k = 0; k < nop && merge; k++)
            merge = g->stride[k][n - 1] == ts[k]->stride[d] * o->shape[d];
        if (merge) {
            g->shape[n - 1] *= o->shape[d];
            for (int k = 0; k < nop; k++) g->stride[k][n - 1] = ts[k]->stride[d];
            continue;
        }
        g->shape[n] = o->shape[d];
        for (int k = 0; k < nop; k++) g->stride[k][n] = ts[k]->stride[d];
        n++;
    }
    if (n == 0) {
        g->shape[0] = 1;
        for (int k = 0; k < nop; k++) g->stride[k][0] = 0;
        n = 1;
    }
    g->ndim = n;
}

/* Offsets (elements) of loop element i in each operand. */
static __device__ __forceinline__ void dp_cu_offsets(const dp_cu_geom &g, int64_t i, int64_t *off) {
    for (int k = 0; k < g.nop; k++) off[k] = 0;
    if (g.ndim == 1) {
        for (int k = 0; k < g.nop; k++) off[k] = i * g.stride[k][0];
        return;
    }
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t idx = i % g.shape[d];
        i /= g.shape[d];
        for (int k = 0; k < g.nop; k++) off[k] += idx * g.stride[k][d];
    }
}

/* ---------------------------------------------------------------- element access (device)
 * Same results as dp_load_f64 / dp_store_f64 / dp_load_f32 / dp_store_f32 in core/dtype.c. */

static __device__ __forceinline__ double dp_cu_load_f64(const void *p, dp_dtype t, int64_t i) {
    return dp_cast_load(p, t, i);
}

static __device__ __forceinline__ float dp_cu_load_f32(const void *p, dp_dtype t, int64_t i) {
    switch (t) {
    case DP_F32: return ((const float *)p)[i];
    case DP_BF16: return dp_cast_bf16_to_f32(((const uint16_t *)p)[i]);
    case DP_F16: return dp_cast_f16_to_f32(((const uint16_t *)p)[i]);
    case DP_FP8_E4M3: return dp_cast_e4m3_to_f32(((const uint8_t *)p)[i]);
    case DP_FP8_E5M2: return dp_cast_e5m2_to_f32(((const uint8_t *)p)[i]);
    default: return (float)dp_cu_load_f64(p, t, i);
    }
}

static __device__ __forceinline__ void dp_cu_store_f64(void *p, dp_dtype t, int64_t i, double v) {
    dp_cast_store(p, t, i, v);
}

/* f32 -> f16 and fp8 round once from the exact double, like the CPU's F16C path. */
static __device__ __forceinline__ void dp_cu_store_f32(void *p, dp_dtype t, int64_t i, float v) {
    switch (t) {
    case DP_F32: ((float *)p)[i] = v; break;
    case DP_BF16: ((uint16_t *)p)[i] = dp_cast_f32_to_bf16(v); break;
    default: dp_cu_store_f64(p, t, i, (double)v); break;
    }
}

/* Typed access for the kernels templated on their compute type (float, or double for f64). */
static __device__ __forceinline__ void dp_cu_load(float *v, const void *p, dp_dtype t, int64_t i) {
    *v = dp_cu_load_f32(p, t, i);
}
static __device__ __forceinline__ void dp_cu_load(double *v, const void *p, dp_dtype t, int64_t i) {
    *v = dp_cu_load_f64(p, t, i);
}
static __device__ __forceinline__ void dp_cu_store(void *p, dp_dtype t, int64_t i, float v) {
    dp_cu_store_f32(p, t, i, v);
}
static __device__ __forceinline__ void dp_cu_store(void *p, dp_dtype t, int64_t i, double v) {
    dp_cu_store_f64(p, t, i, v);
}

/* ---------------------------------------------------------------- entries (op table) */

/* binary.cu */
int dp_cuda_binary(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, dp_binop op);
int dp_cuda_axpy(dp_tensor *dst, double alpha, const dp_tensor *src);
int dp_cuda_masked_fill(dp_tensor *out, const dp_tensor *x, const dp_tensor *mask, double value);
/* unary.cu */
int dp_cuda_unary(dp_tensor *out, const dp_tensor *x, dp_unop op, double alpha, double beta);
int dp_cuda_unary_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *x,
                           const dp_tensor *y, dp_unop op, double alpha, double beta);
/* copy_cast.cu */
int dp_cuda_fill(dp_tensor *out, double value);
int dp_cuda_copy(dp_tensor *out, const dp_tensor *src);
/* reduce.cu */
int dp_cuda_reduce(dp_tensor *out, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                   dp_redop op);
int dp_cuda_argmax(dp_tensor *out, const dp_tensor *x, int32_t dim);
/* quant.cu */
int dp_cuda_quant_amax(dp_tensor *amax, const dp_tensor *x);
int dp_cuda_fake_quant(dp_tensor *out, const dp_tensor *x, const dp_tensor *scale, dp_dtype dtype);

#endif
