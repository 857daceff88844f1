// cross_entropy.cu: per-row cross-entropy of logits (N, C) against integer labels and its
// backward, as kernels/cpu/cross_entropy.c defines them: loss = logsumexp(row) - row[label],
// with the row maximum subtracted inside the logsumexp; glogits = gloss * (softmax - onehot);
// rows labelled ignore_index give loss 0 and gradient 0. One thread block per row forward, one
// thread per element backward. f64 computes in double, other dtypes in float.
#include "nn.h"

enum { CE_THREADS = 256 };

template <typename A>
__global__ void cross_entropy_kernel(void *loss, dp_dtype ldtype, void *lse, dp_dtype sdtype,
                                     const void *logits, dp_dtype dtype, const void *labels,
                                     dp_dtype labdtype, int64_t N, int64_t C,
                                     int64_t ignore_index) {
    __shared__ A shm[32];
    for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
        int64_t off = r * C;
        A m = -INFINITY;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            A v = nn_load<A>(logits, dtype, off + c);
            m = v > m ? v : m;
        }
        m = nn_block_max<A>(m, shm);
        A s = 0;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            s += exp(nn_load<A>(logits, dtype, off + c) - m);
        s = nn_block_sum<A>(s, shm);
        if (threadIdx.x == 0) {
            A l = m + log(s);
            int64_t label = nn_index(labels, labdtype, r);
            nn_store<A>(lse, sdtype, r, l);
            nn_store<A>(loss, ldtype, r,
                        label == ignore_index ? (A)0 : l - nn_load<A>(logits, dtype, off + label));
        }
    }
}

template <typename A>
__global__ void cross_entropy_backward_kernel(void *glogits, dp_dtype gdtype, const void *gloss,
                                              dp_dtype gldtype, int64_t gstride,
                                              const void *logits, dp_dtype dtype, const void *lse,
                                              dp_dtype sdtype, const void *labels,
                                              dp_dtype labdtype, int64_t N, int64_t C,
                                              int64_t ignore_index) {
    int64_t total = N * C;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / C, c = k - r * C;
        int64_t label = nn_index(labels, labdtype, r);
        A v = 0;
        if (label != ignore_index) {
            A g = nn_load<A>(gloss, gldtype, r * gstride);
            v = g * exp(nn_load<A>(logits, dtype, k) - nn_load<A>(lse, sdtype, r));
            if (c == label) v -= g;
        }
        nn_store<A>(glogits, gdtype, k, v);
    }
}

static int check_args(const char *op, const dp_tensor *const *floats, int n,
                      const dp_tensor *labels) {
    for (int i = 0; i < n; i++)
        if (!dp_dtype_is_float(floats[i]->dtype))
            return dp_fail(DP_EUNSUPPORTED, "%s: %s on cuda (float dtypes only)", op,
                           dp_tensor_desc(floats[i]));
    if (labels->dtype != DP_I32 && labels->dtype != DP_I64)
        return dp_fail(DP_EUNSUPPORTED, "%s: labels %s on cuda (i32 or i64)", op,
                       dp_tensor_desc(labels));
    return 0;
}

int dp_cuda_cross_entropy(dp_tensor *loss, dp_tensor *lse, const dp_tensor *logits,
                          const dp_tensor *labels, int64_t ignore_index) {
    const dp_tensor *f[] = {loss, lse, logits};
    int rc = check_args("cross_entropy", f, 3, labels);
    if (rc) return rc;
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (N == 0) return 0;
    if (logits->dtype == DP_F64)
        cross_entropy_kernel<double><<<nn_row_grid(N), CE_THREADS, 0, dp_cuda_stream()>>>(
            loss->data, loss->dtype, lse->data, lse->dtype, logits->data, logits->dtype,
            labels->data, labels->dtype, N, C, ignore_index);
    else
        cross_entropy_kernel<float><<<nn_row_grid(N), CE_THREADS, 0, dp_cuda_stream()>>>(
            loss->data, loss->dtype, lse->data, lse->dtype, logits->data, logits->dtype,
            labels->data, labels->dtype, N, C, ignore_index);
    return dp_cuda_check_launch("cross_entropy", "cross_entropy_kernel");
}

int dp_cuda_cross_entropy_backward(dp_tensor *glogits, const dp_tensor *gloss,
                                   const dp_tensor *logits, const dp_tensor *lse,
                                   const dp_tensor *labels, int64_t ignore_index) {
    const dp_tensor *f[] = {glogits, gloss, logits, lse};
    int rc = check_args("cross_entropy_backward", f, 4, labels);
    if (rc) return rc;
    int64_t N = logits->shape[0], C = logits->shape[1];
    int64_t gs = gloss->ndim ? gloss->stride[0] : 0;   // 0: one scalar read by every row
    if (N == 0 || C == 0) return 0;
    if (logits->dtype == DP_F64)
        cross_entropy_backward_kernel<double><<<dp_cuda_grid(N * C), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            glogits->data, glogits->dtype, gloss->data, gloss->dtype, gs, logits->data,
            logits->dtype, lse->data, lse->dtype, labels->data, labels->dtype, N, C, ignore_index);
    else
        cross_entropy_backward_kernel<float><<<dp_cuda_grid(N * C), DP_CUDA_THREADS, 0, dp_cuda_stream()>>>(
            glogits->data, glogits->dtype, gloss->data, gloss->dtype, gs, logits->data,
            logits->dtype, lse->data, lse->dtype, labels->data, labels->dtype, N, C, ignore_index);
    return dp_cuda_check_launch("cross_entropy_backward", "cross_entropy_backward_kernel");
}
