// backend.cu: the CUDA op table and its entry point dp_cuda_backend(), which core/device.c
// finds with dlsym. Storage and the random kernels live here; the kernel
// families register their entries from their own files (dp_cuda_register_*).
#include <stdio.h>
#include "cuda_common.h"
#include "allocator.h"

// ---------------------------------------------------------------- storage

// The caching allocator (allocator.cu) keeps freed blocks for reuse (DP_CUDA_CACHE=0: off).
static void *cuda_alloc(size_t bytes) { return dp_cuda_alloc(bytes, "alloc"); }

static void cuda_free(void *ptr) { dp_cuda_free(ptr); }

static int cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
    return dp_cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "memcpy_h2d",
                         "cudaMemcpy(host to device)");
}

static int cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
    return dp_cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "memcpy_d2h",
                         "cudaMemcpy(device to host)");
}

// ---------------------------------------------------------------- not yet on cuda

static int unsupported(const char *op) {
    return dp_fail(DP_EUNSUPPORTED, "%s: not implemented on cuda yet", op);
}

static int cuda_binary(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, dp_binop op) {
    return unsupported("binary");
}
static int cuda_unary(dp_tensor *out, const dp_tensor *x, dp_unop op, double alpha, double beta) {
    return unsupported("unary");
}
static int cuda_unary_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *x,
                               const dp_tensor *y, dp_unop op, double alpha, double beta) {
    return unsupported("unary_backward");
}
static int cuda_axpy(dp_tensor *dst, double alpha, const dp_tensor *src) {
    return unsupported("axpy");
}
static int cuda_reduce(dp_tensor *out, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                       dp_redop op) {
    return unsupported("reduce");
}
static int cuda_argmax(dp_tensor *out, const dp_tensor *x, int32_t dim) {
    return unsupported("argmax");
}
static int cuda_softmax(dp_tensor *y, const dp_tensor *x, int32_t dim, int32_t log) {
    return unsupported("softmax");
}
static int cuda_softmax_backward(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *y, int32_t dim,
                                 int32_t log) {
    return unsupported("softmax_backward");
}
static int cuda_layer_norm(dp_tensor *y, dp_tensor *mean, dp_tensor *rstd, const dp_tensor *x,
                           const dp_tensor *weight, const dp_tensor *bias, double eps) {
    return unsupported("layer_norm");
}
static int cuda_layer_norm_backward(dp_tensor *gx, dp_tensor *gweight, dp_tensor *gbias,
                                    const dp_tensor *gy, const dp_tensor *x, const dp_tensor *mean,
                                    const dp_tensor *rstd, const dp_tensor *weight) {
    return unsupported("layer_norm_backward");
}
static int cuda_gather_rows(dp_tensor *out, const dp_tensor *weight, const dp_tensor *indices) {
    return unsupported("gather_rows");
}
static int cuda_scatter_add_rows(dp_tensor *dst, const dp_tensor *indices, const dp_tensor *src) {
    return unsupported("scatter_add_rows");
}
static int cuda_cross_entropy(dp_tensor *loss, dp_tensor *lse, const dp_tensor *logits,
                              const dp_tensor *labels, int64_t ignore_index) {
    return unsupported("cross_entropy");
}
static int cuda_cross_entropy_backward(dp_tensor *glogits, const dp_tensor *gloss,
                                       const dp_tensor *logits, const dp_tensor *lse,
                                       const dp_tensor *labels, int64_t ignore_index) {
    return unsupported("cross_entropy_backward");
}
static int cuda_masked_fill(dp_tensor *out, const dp_tensor *x, const dp_tensor *mask,
                            double value) {
    return unsupported("masked_fill");
}
static int cuda_gemm(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                     int32_t trans_b, double alpha, double beta) {
    return unsupported("gemm");
}

// ---------------------------------------------------------------- entry point

static dp_ops cuda_table;

// Filled field by field (C++17 has no designated initialisers) so the order of dp_ops does not
// matter and a forgotten entry is easy to spot.
static void build_table(void) {
    dp_ops *t = &cuda_table;
    t->name = "cuda";
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->memcpy_h2d = cuda_memcpy_h2d;
    t->memcpy_d2h = cuda_memcpy_d2h;
    t->binary = cuda_binary;
    t->unary = cuda_unary;
    t->unary_backward = cuda_unary_backward;
    t->axpy = cuda_axpy;
    t->reduce = cuda_reduce;
    t->argmax = cuda_argmax;
    t->softmax = cuda_softmax;
    t->softmax_backward = cuda_softmax_backward;
    t->layer_norm = cuda_layer_norm;
    t->layer_norm_backward = cuda_layer_norm_backward;
    t->gather_rows = cuda_gather_rows;
    t->scatter_add_rows = cuda_scatter_add_rows;
    t->cross_entropy = cuda_cross_entropy;
    t->cross_entropy_backward = cuda_cross_entropy_backward;
    t->masked_fill = cuda_masked_fill;
    t->gemm = cuda_gemm;
    t->rand_uniform = dp_cuda_rand_uniform;
    t->rand_normal = dp_cuda_rand_normal;
    t->dropout = dp_cuda_dropout;
    // Each kernel family fills its own entries (one file each, see cuda_common.h); anything left
    // at the stubs above answers DP_EUNSUPPORTED, and entries left NULL are refused by the core.
    dp_cuda_register_elementwise(t);
    dp_cuda_register_nn(t);
    dp_cuda_register_gemm(t);
    dp_cuda_register_dpsgd(t);
}

// The table when a CUDA device is usable, else NULL with the reason in err. core/device.c calls
// this once (under pthread_once).
extern "C" __attribute__((visibility("default"))) const dp_ops *dp_cuda_backend(char *err,
                                                                                size_t errlen) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        if (err && errlen) snprintf(err, errlen, "cudaGetDeviceCount failed: %s", cudaGetErrorString(status));
        return NULL;
    }
    if (count == 0) {
        if (err && errlen) snprintf(err, errlen, "no CUDA device found");
        return NULL;
    }
    status = cudaSetDevice(0);
    if (status != cudaSuccess) {
        if (err && errlen) snprintf(err, errlen, "cudaSetDevice(0) failed: %s", cudaGetErrorString(status));
        return NULL;
    }
    build_table();
    return &cuda_table;
}
