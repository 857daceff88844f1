// layernorm.cu: layer norm over the last dim of a contiguous tensor and its backward, with
// kernels/cpu/layernorm.c's conventions: two-pass population variance (divide by D), rstd =
// 1/sqrt(var + eps), mean and rstd stored in their tensors' dtype (f32, or f64 for f64 input),
// weight and bias 1-D with any stride (NULL = 1 and 0). One thread block per row; the parameter
// gradients are column sums, one thread column per feature. f64 computes in double, other
// dtypes in float.
#include "nn.h"

enum { LN_THREADS = 256, COL_X = 32, COL_Y = 8 };

// Where weight or bias is NULL, w = 1 and b = 0.
struct ln_param {
    const void *data;
    dp_dtype dtype;
    int64_t stride;
};

static ln_param param_of(const dp_tensor *t) {
    ln_param p;
    p.data = t ? t->data : NULL;
    p.dtype = t ? t->dtype : DP_F32;
    p.stride = t && t->ndim ? t->stride[0] : 1;
    return p;
}

template <typename A>
__device__ __forceinline__ A param_at(ln_param p, int64_t d, A fill) {
    return p.data ? nn_load<A>(p.data, p.dtype, d * p.stride) : fill;
}

template <typename A>
__global__ void layer_norm_kernel(void *y, void *mean, dp_dtype mdtype, void *rstd,
                                  dp_dtype rdtype, const void *x, dp_dtype dtype, int64_t R,
                                  int64_t D, ln_param w, ln_param b, double eps) {
    __shared__ A shm[32];
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        int64_t off = r * D;
        A s = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) s += nn_load<A>(x, dtype, off + d);
        A mu = nn_block_sum<A>(s, shm) / (A)D;
        A q = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            A c = nn_load<A>(x, dtype, off + d) - mu;
            q += c * c;
        }
        A var = nn_block_sum<A>(q, shm) / (A)D;
        A rs = (A)1 / sqrt(var + (A)eps);
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
            nn_store<A>(y, dtype, off + d,
                        (nn_load<A>(x, dtype, off + d) - mu) * rs * param_at<A>(w, d, 1) +
                            param_at<A>(b, d, 0));
        if (threadIdx.x == 0) {
            nn_store<A>(mean, mdtype, r, mu);
            nn_store<A>(rstd, rdtype, r, rs);
        }
    }
}

// gx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with xhat = (x - mean) * rstd, g = gy * w.
template <typename A>
__global__ void layer_norm_gx_kernel(void *gx, dp_dtype gxdtype, const void *gy, dp_dtype gydtype,
                                     const void *x, dp_dtype xdtype, const void *mean,
                                     dp_dtype mdtype, const void *rstd, dp_dtype rdtype,
                                     ln_param w, int64_t R, int64_t D) {
    __shared__ A shm[32];
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        int64_t off = r * D;
        A mu = nn_load<A>(mean, mdtype, r), rs = nn_load<A>(rstd, rdtype, r);
        A sa = 0, sc = 0;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            A g = nn_load<A>(gy, gydtype, off + d) * param_at<A>(w, d, 1);
            A xh = (nn_load<A>(x, xdtype, off + d) - mu) * rs;
            sa += g;
            sc += g * xh;
        }
        A a = nn_block_sum<A>(sa, shm) / (A)D;
        A c = nn_block_sum<A>(sc, shm) / (A)D;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            A g = nn_load<A>(gy, gydtype, off + d) * param_at<A>(w, d, 1);
            A xh = (nn_load<A>(x, xdtype, off + d) - mu) * rs;
            nn_store<A>(gx, gxdtype, off + d, rs * (g - a - xh * c));
        }
    }
}

// gweight[d] = sum_r gy[r,d] * xhat[r,d], gbias[d] = sum_r gy[r,d]. Block (COL_X, COL_Y): the x
// threads take adjacent columns (coalesced), the y threads interleaved rows; the COL_Y partial
// sums are added in a fixed order, so the result is deterministic.
template <typename A>
__global__ void layer_norm_params_kernel(void *gw, dp_dtype gwdtype, void *gb, dp_dtype gbdtype,
                                         const void *gy, dp_dtype gydtype, const void *x,
                                         dp_dtype xdtype, const void *mean, dp_dtype mdtype,
                                         const void *rstd, dp_dtype rdtype, int64_t R, int64_t D) {
    __shared__ A pw[COL_Y][COL_X], pb[COL_Y][COL_X];
    for (int64_t d0 = (int64_t)blockIdx.x * COL_X; d0 < D; d0 += (int64_t)gridDim.x * COL_X) {
        int64_t d = d0 + threadIdx.x;
        A sw = 0, sb = 0;
        if (d < D) {
            for (int64_t r = threadIdx.y; r < R; r += COL_Y) {
                A g = nn_load<A>(gy, gydtype, r * D + d);
                A xh = (nn_load<A>(x, xdtype, r * D + d) - nn_load<A>(mean, mdtype, r)) *
                       nn_load<A>(rstd, rdtype, r);
                sw += g * xh;
                sb += g;
            }
        }
        pw[threadIdx.y][threadIdx.x] = sw;
        pb[threadIdx.y][threadIdx.x] = sb;
        __syncthreads();
        if (threadIdx.y == 0 && d < D) {
            for (int k = 1; k < COL_Y; k++) {
                sw += pw[k][threadIdx.x];
                sb += pb[k][threadIdx.x];
            }
            if (gw) nn_store<A>(gw, gwdtype, d, sw);
            if (gb) nn_store<A>(gb, gbdtype, d, sb);
        }
        __syncthreads();
    }
}

static int check_float(const char *op, const dp_tensor *t) {
    if (t && !dp_dtype_is_float(t->dtype))
        return dp_fail(DP_EUNSUPPORTED, "%s: %s on cuda (float dtypes only)", op, dp_tensor_desc(t));
    return 0;
}

int dp_cuda_layer_norm(dp_tensor *y, dp_tensor *mean, dp_tensor *rstd, const dp_tensor *x,
                       const dp_tensor *weight, const dp_tensor *bias, double eps) {
    int rc = check_float("layer_norm", x);
    if (!rc) rc = check_float("layer_norm", mean);
    if (!rc) rc = check_float("layer_norm", rstd);
    if (!rc) rc = check_float("layer_norm", weight);
    if (!rc) rc = check_float("layer_norm", bias);
    if (rc) return rc;
    int64_t D = x->ndim ? x->shape[x->ndim - 1] : 1, R = dp_tensor_numel(mean);
    if (R == 0) return 0;
    if (D == 0)   // the CPU gives mean 0/0 and rstd of NaN; so do these (no row to write)
        return dp_fail(DP_EUNSUPPORTED, "layer_norm: rows of 0 features (%s) on cuda",
                       dp_tensor_desc(x));
    ln_param w = param_of(weight), b = param_of(bias);
    if (x->dtype == DP_F64)
        layer_norm_kernel<double><<<nn_row_grid(R), LN_THREADS, 0, dp_cuda_stream()>>>(
            y->data, mean->data, mean->dtype, rstd->data, rstd->dtype, x->data, x->dtype, R, D, w,
            b, eps);
    else
        layer_norm_kernel<float><<<nn_row_grid(R), LN_THREADS, 0, dp_cuda_stream()>>>(
            y->data, mean->data, mean->dtype, rstd->data, rstd->dtype, x->data, x->dtype, R, D, w,
            b, eps);
    return dp_cuda_check_launch("layer_norm", "layer_norm_kernel");
}

int dp_cuda_layer_norm_backward(dp_tensor *gx, dp_tensor *gweight, dp_tensor *gbias,
                                const dp_tensor *gy, const dp_tensor *x, const dp_tensor *mean,
                                const dp_tensor *rstd, const dp_tensor *weight) {
    const dp_tensor *all[] = {gx, gweight, gbias, gy, x, mean, rstd, weight};
    for (int i = 0; i < 8; i++) {
        int rc = check_float("layer_norm_backward", all[i]);
        if (rc) return rc;
    }
    int64_t D = x->ndim ? x->shape[x->ndim - 1] : 1, R = dp_tensor_numel(mean);
    int f64 = x->dtype == DP_F64 || gy->dtype == DP_F64;
    if (gx && R > 0 && D > 0) {
        ln_param w = param_of(weight);
        if (f64)
            layer_norm_gx_kernel<double><<<nn_row_grid(R), LN_THREADS, 0, dp_cuda_stream()>>>(
                gx->data, gx->dtype, gy->data, gy->dtype, x->data, x->dtype, mean->data,
                mean->dtype, rstd->data, rstd->dtype, w, R, D);
        else
            layer_norm_gx_kernel<float><<<nn_row_grid(R), LN_THREADS, 0, dp_cuda_stream()>>>(
                gx->data, gx->dtype, gy->data, gy->dtype, x->data, x->dtype, mean->data,
                mean->dtype, rstd->data, rstd->dtype, w, R, D);
        int rc = dp_cuda_check_launch("layer_norm_backward", "layer_norm_gx_kernel");
        if (rc) return rc;
    }
    if ((gweight || gbias) && D > 0) {
        // R = 0 still writes zeros, as the CPU does.
        int64_t tiles = (D + COL_X - 1) / COL_X;
        unsigned grid = (unsigned)(tiles > 65535 ? 65535 : tiles);
        dim3 block(COL_X, COL_Y);
        void *gw = gweight ? gweight->data : NULL, *gb = gbias ? gbias->data : NULL;
        dp_dtype gwt = gweight ? gweight->dtype : DP_F32, gbt = gbias ? gbias->dtype : DP_F32;
        if (f64)
            layer_norm_params_kernel<double><<<grid, block, 0, dp_cuda_stream()>>>(
                gw, gwt, gb, gbt, gy->data, gy->dtype, x->data, x->dtype, mean->data, mean->dtype,
                rstd->data, rstd->dtype, R, D);
        else
            layer_norm_params_kernel<float><<<grid, block, 0, dp_cuda_stream()>>>(
                gw, gwt, gb, gbt, gy->data, gy->dtype, x->data, x->dtype, mean->data, mean->dtype,
                rstd->data, rstd->dtype, R, D);
        int rc = dp_cuda_check_launch("layer_norm_backward", "layer_norm_params_kernel");
        if (rc) return rc;
    }
    return 0;
}
