// softmax.cu: softmax and log-softmax along any dim of a contiguous tensor, their backward, and
// the masked softmax softmax(x + mask) over the last dim, as kernels/cpu/softmax.c computes them:
// x is viewed as (outer, D, inner), and each of the outer*inner slices of D elements (inner apart)
// is one row, reduced by one thread block with the row maximum subtracted first. f64 computes in
// double, other dtypes in float. The masked form is the same kernel reading x + mask (added as
// binary.cu adds, rounded to the dtype) wherever the plain one reads x, so the two agree bit for
// bit with binary add followed by softmax.
#include "nn.h"

enum { SM_THREADS = 256 };

static void split_at(const dp_tensor *x, int32_t dim, int64_t *outer, int64_t *D, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    *D = x->ndim ? x->shape[dim] : 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < dim) *outer *= x->shape[i];
        if (i > dim) *inner *= x->shape[i];
    }
}

// Where a masked row finds its mask: the strides (0 on broadcast dims) and sizes of x's leading
// dims, and the stride along the row. Passed by value (a kernel parameter).
struct sm_mask_geom {
    int32_t nlead;
    int64_t shape[8], stride[8];
    int64_t col;
};

// v as it reads back after a store into dtype: the sum as binary add leaves it in memory.
static __device__ __forceinline__ float sm_rounded(dp_dtype dtype, float v) {
    if (dtype == DP_F32) return v;
    uint64_t cell = 0;
    nn_store<float>(&cell, dtype, 0, v);
    return nn_load<float>(&cell, dtype, 0);
}
// Only f64 computes in double, and it stores exactly.
static __device__ __forceinline__ double sm_rounded(dp_dtype dtype, double v) { return v; }

// Element d of the row: x at i, or with MASKED (x + mask at j) rounded to the dtype.
template <typename A, bool MASKED>
static __device__ __forceinline__ A sm_value(const void *x, const void *mask, dp_dtype dtype,
                                             int64_t i, int64_t j) {
    A v = nn_load<A>(x, dtype, i);
    if (MASKED) v = sm_rounded(dtype, v + nn_load<A>(mask, dtype, j));
    return v;
}

template <typename A, bool MASKED>
__global__ void softmax_kernel(void *y, const void *x, dp_dtype dtype, int64_t rows, int64_t D,
                               int64_t inner, int use_log, const void *mask, sm_mask_geom g) {
    __shared__ A shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t off = (r / inner) * D * inner + r % inner, moff = 0;
        if (MASKED) {   // inner is 1: row r's index over the leading dims, through the strides
            int64_t rem = r;
            for (int d = g.nlead - 1; d >= 0; d--) {
                moff += (rem % g.shape[d]) * g.stride[d];
                rem /= g.shape[d];
            }
        }
        A m = -INFINITY;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            A v = sm_value<A, MASKED>(x, mask, dtype, off + d * inner, moff + d * g.col);
            m = v > m ? v : m;
        }
        m = nn_block_max<A>(m, shm);
        A s = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
            s += exp(sm_value<A, MASKED>(x, mask, dtype, off + d * inner, moff + d * g.col) - m);
        s = nn_block_sum<A>(s, shm);
        if (use_log) {
            A c = m + log(s);
            for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
                nn_store<A>(y, dtype, off + d * inner,
                            sm_value<A, MASKED>(x, mask, dtype, off + d * inner, moff + d * g.col) - c);
        } else {
            A inv = (A)1 / s;
            for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
                nn_store<A>(y, dtype, off + d * inner,
                            exp(sm_value<A, MASKED>(x, mask, dtype, off + d * inner, moff + d * g.col) - m) * inv);
        }
    }
}

// softmax: gx = y * (gy - sum(gy * y)); log-softmax: gx = gy - exp(y) * sum(gy).
template <typename A>
__global__ void softmax_backward_kernel(void *gx, const void *gy, dp_dtype gdtype, const void *y,
                                        dp_dtype ydtype, dp_dtype xdtype, int64_t rows, int64_t D,
                                        int64_t inner, int use_log) {
    __shared__ A shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t off = (r / inner) * D * inner + r % inner;
        A s = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            int64_t i = off + d * inner;
            A g = nn_load<A>(gy, gdtype, i);
            s += use_log ? g : g * nn_load<A>(y, ydtype, i);
        }
        s = nn_block_sum<A>(s, shm);
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            int64_t i = off + d * inner;
            A g = nn_load<A>(gy, gdtype, i), v = nn_load<A>(y, ydtype, i);
            nn_store<A>(gx, xdtype, i, use_log ? g - exp(v) * s : v * (g - s));
        }
    }
}

int dp_cuda_softmax(dp_tensor *y, const dp_tensor *x, int32_t dim, int32_t use_log) {
    if (!dp_dtype_is_float(x->dtype) || y->dtype != x->dtype)
        return dp_fail(DP_EUNSUPPORTED, "softmax: %s into %s on cuda (float dtypes, the same for "
                       "x and y)", dp_tensor_desc(x), dp_tensor_desc(y));
    int64_t outer, D, inner;
    split_at(x, dim, &outer, &D, &inner);
    int64_t rows = outer * inner;
    if (rows == 0 || D == 0) return 0;
    sm_mask_geom g = {};
    if (x->dtype == DP_F64)
        softmax_kernel<double, false><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(
            y->data, x->data, x->dtype, rows, D, inner, use_log, NULL, g);
    else
        softmax_kernel<float, false><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(
            y->data, x->data, x->dtype, rows, D, inner, use_log, NULL, g);
    return dp_cuda_check_launch("softmax", "softmax_kernel");
}

int dp_cuda_softmax_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *y, int32_t dim,
                             int32_t use_log) {
    if (!dp_dtype_is_float(y->dtype) || !dp_dtype_is_float(gy->dtype) ||
        !dp_dtype_is_float(gx->dtype))
        return dp_fail(DP_EUNSUPPORTED, "softmax_backward: gy %s, y %s, gx %s on cuda (float "
                       "dtypes only)", dp_tensor_desc(gy), dp_tensor_desc(y), dp_tensor_desc(gx));
    int64_t outer, D, inner;
    split_at(y, dim, &outer, &D, &inner);
    int64_t rows = outer * inner;
    if (rows == 0 || D == 0) return 0;
    if (y->dtype == DP_F64 || gy->dtype == DP_F64)
        softmax_backward_kernel<double><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(
            gx->data, gy->data, gy->dtype, y->data, y->dtype, gx->dtype, rows, D, inner, use_log);
    else
        softmax_backward_kernel<float><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(
            gx->data, gy->data, gy->dtype, y->data, y->dtype, gx->dtype, rows, D, inner, use_log);
    return dp_cuda_check_launch("softmax_backward", "softmax_backward_kernel");
}

int dp_cuda_softmax_masked(dp_tensor *y, const dp_tensor *x, const dp_tensor *mask) {
    if (!dp_dtype_is_float(x->dtype) || y->dtype != x->dtype || mask->dtype != x->dtype ||
        mask->ndim != x->ndim || x->ndim < 1)
        return dp_fail(DP_EUNSUPPORTED, "softmax_masked: x %s, mask %s into %s on cuda (float dtypes, "
                       "the same for x, mask and y; mask of x's ndim)", dp_tensor_desc(x),
                       dp_tensor_desc(mask), dp_tensor_desc(y));
    int32_t last = x->ndim - 1;
    int64_t D = x->shape[last], numel = dp_tensor_numel(x);
    if (numel == 0 || D == 0) return 0;
    int64_t rows = numel / D;
    sm_mask_geom g = {};
    g.nlead = last;
    for (int d = 0; d < last; d++) {
        g.shape[d] = x->shape[d];
        g.stride[d] = mask->stride[d];
    }
    g.col = mask->stride[last];
    if (x->dtype == DP_F64)
        softmax_kernel<double, true><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(
            y->data, x->data, x->dtype, rows, D, 1, 0, mask->data, g);
    else
        softmax_kernel<float, true><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(
            y->data, x->data, x->dtype, rows, D, 1, 0, mask->data, g);
    return dp_cuda_check_launch("softmax_masked", "softmax_kernel<masked>");
}
