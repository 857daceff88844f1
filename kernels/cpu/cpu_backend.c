/* cpu_backend.c: the CPU op table. Each entry is one kernel file's function (see cpu_kernels.h);
 * storage is 64-byte aligned host memory so vector loads never straddle cache lines. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "cpu_kernels.h"

static void *cpu_alloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return posix_memalign(&p, 64, rounded) == 0 ? p : NULL;
}

static void cpu_free(void *ptr) { free(ptr); }

static int cpu_memcpy(void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return 0;
}

const dp_ops dp_cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy_h2d = cpu_memcpy,
    .memcpy_d2h = cpu_memcpy,
    .fill = dp_cpu_fill,
    .copy = dp_cpu_copy,
    .binary = dp_cpu_binary,
    .unary = dp_cpu_unary,
    .unary_backward = dp_cpu_unary_backward,
    .axpy = dp_cpu_axpy,
    .reduce = dp_cpu_reduce,
    .argmax = dp_cpu_argmax,
    .softmax = dp_cpu_softmax,
    .softmax_backward = dp_cpu_softmax_backward,
    .layer_norm = dp_cpu_layer_norm,
    .layer_norm_backward = dp_cpu_layer_norm_backward,
    .gather_rows = dp_cpu_gather_rows,
    .scatter_add_rows = dp_cpu_scatter_add_rows,
    .cross_entropy = dp_cpu_cross_entropy,
    .cross_entropy_backward = dp_cpu_cross_entropy_backward,
    .masked_fill = dp_cpu_masked_fill,
    .gemm = dp_cpu_gemm,
    .rand_uniform = dp_cpu_rand_uniform,
    .rand_normal = dp_cpu_rand_normal,
    .dropout = dp_cpu_dropout,
};
