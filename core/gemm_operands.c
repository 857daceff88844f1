/* gemm_operands.c: GEMM kernel arguments as views of the callers' memory, and the stride layouts
 * a kernel reads (gemm_operands.h). */
#include "gemm_operands.h"

void dp_gemm_raw_view(dp_tensor *v, const dp_tensor *x, int32_t ndim, const int64_t *shape,
                      const int64_t *stride, int64_t offset) {
    memset(v, 0, sizeof *v);
    v->dtype = x->dtype;
    v->device = x->device;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->stride[i] = stride[i];
    }
    v->offset = x->offset + offset;
    v->data = (char *)x->data + offset * dp_dtype_size(x->dtype);
    v->storage = x->storage;
    v->refcount = 1;
}

/* The test the kernels' own operand checks make (kernels/cpu/gemm.c, kernels/cuda/gemm.cu). */
int dp_gemm_layout(int64_t r, int64_t c, int64_t s1, int64_t s2) {
    int64_t rmin = r > 1 ? r : 1, cmin = c > 1 ? c : 1;
    if ((c <= 1 || s2 == 1) && (r <= 1 || s1 >= cmin)) return 0;
    if ((r <= 1 || s1 == 1) && (c <= 1 || s2 >= rmin)) return 1;
    return -1;
}

int dp_gemm_matrix_layout(const dp_tensor *x) {
    int32_t n = x->ndim;
    int64_t r = x->shape[n - 2], c = x->shape[n - 1];
    if (r == 0 || c == 0) return 0;
    return dp_gemm_layout(r, c, x->stride[n - 2], x->stride[n - 1]);
}

void dp_gemm_operand(dp_tensor *v, int32_t *trans, const dp_tensor *x, int64_t batch,
                     int64_t batch_stride, int64_t off) {
    int32_t n = x->ndim;
    int64_t r = x->shape[n - 2], c = x->shape[n - 1], s1 = x->stride[n - 2], s2 = x->stride[n - 1];
    *trans = dp_gemm_matrix_layout(x) == 1;
    if (r == 0 || c == 0) {
        s1 = c > 1 ? c : 1;
        s2 = 1;
    }
    int64_t shape[3] = {batch, *trans ? c : r, *trans ? r : c};
    int64_t stride[3] = {batch_stride, *trans ? s2 : s1, *trans ? s1 : s2};
    dp_gemm_raw_view(v, x, 3, shape, stride, off);
}

dp_tensor *dp_gemm_contiguous(const dp_ops *ops, const dp_tensor *x) {
    dp_tensor *c = dp_empty_like(x);
    if (c && ops->copy(c, x)) {
        dp_tensor_release(c);
        return NULL;
    }
    return c;
}

int dp_gemm_readable(const dp_ops *ops, const dp_tensor *x, dp_tensor **copy) {
    *copy = NULL;
    if (dp_gemm_matrix_layout(x) >= 0) return 0;
    *copy = dp_gemm_contiguous(ops, x);
    return *copy ? 0 : DP_ENOMEM;
}
