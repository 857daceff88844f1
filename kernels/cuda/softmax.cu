// softmax.cu: softmax and log-softmax along any dim of a contiguous tensor, and their backward,
// as kernels/cpu/softmax.c computes them: x is viewed as (outer, D, inner), and each of the
// outer*inner slices of D elements (inner apart) is one row, reduced by one thread block with
// the row maximum subtracted first. f64 computes in double, other dtypes in float.
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

template <typename A>
__global__ void softmax_kernel(void *y, const void *x, dp_dtype dtype, int64_t rows, int64_t D,
                               int64_t inner, int use_log) {
    __shared__ A shm[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t off = (r / inner) * D * inner + r % inner;
        A m = -INFINITY;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            A v = nn_load<A>(x, dtype, off + d * inner);
            m = v > m ? v : m;
        }
        m = nn_block_max<A>(m, shm);
        A s = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
            s += exp(nn_load<A>(x, dtype, off + d * inner) - m);
        s = nn_block_sum<A>(s, shm);
        if (use_log) {
            A c = m + log(s);
            for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
                nn_store<A>(y, dtype, off + d * inner, nn_load<A>(x, dtype, off + d * inner) - c);
        } else {
            A inv = (A)1 / s;
            for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
                nn_store<A>(y, dtype, off + d * inner,
                            exp(nn_load<A>(x, dtype, off + d * inner) - m) * inv);
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
    if (x->dtype == DP_F64)
        softmax_kernel<double><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(y->data, x->data, x->dtype, rows,
                                                                  D, inner, use_log);
    else
        softmax_kernel<float><<<nn_row_grid(rows), SM_THREADS, 0, dp_cuda_stream()>>>(y->data, x->data, x->dtype, rows,
                                                                 D, inner, use_log);
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
