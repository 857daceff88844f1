/* cpu_backend.c: the CPU op table. Each entry is one kernel file's function (see cpu_kernels.h);
 * storage is 64-byte aligned host memory so vector loads never straddle cache lines. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "cpu_kernels.h"

/* Large blocks are kept for reuse. glibc serves blocks above its mmap threshold (32 MiB at most)
 * straight from the kernel and unmaps them on free, so every fresh activation of that size faults
 * in new zeroed pages: about 30 ms for a 4096x3072 f32 GEMM result, a quarter of the GEMM. A
 * training step allocates the same sizes every time, so a freed block of the exact size is handed
 * back warm. The cache is bounded (DP_CPU_CACHE_MB, default 1024; 0 disables it) and emptied at
 * exit so leak checkers see nothing. */
enum { CACHE_MIN_BYTES = 1 << 20, CACHE_SLOTS = 64 };

typedef struct { void *ptr; size_t bytes; } cached_block;

static cached_block cache[CACHE_SLOTS];
static size_t cache_bytes, cache_limit = (size_t)-1;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Size classes: exact to 64 bytes below 1 MiB; above, rounded up to 1/8 of the power of two, so
 * nearly equal shapes share blocks and the waste stays under 12.5%. */
static size_t block_size(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < CACHE_MIN_BYTES) return rounded;
    size_t step = (size_t)1 << (63 - __builtin_clzll(rounded) - 3);
    return (rounded + step - 1) & ~(step - 1);
}

static size_t cache_limit_bytes(void) {
    if (cache_limit == (size_t)-1) {
        const char *env = getenv("DP_CPU_CACHE_MB");
        cache_limit = (env ? (size_t)strtoull(env, NULL, 10) : 1024) << 20;
#if defined(__SANITIZE_ADDRESS__)
        cache_limit = 0;   /* let AddressSanitizer see every use after free */
#endif
    }
    return cache_limit;
}

static void *cache_take(size_t bytes) {
    void *p = NULL;
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        if (cache[i].ptr && cache[i].bytes == bytes) {
            p = cache[i].ptr;
            cache[i].ptr = NULL;
            cache_bytes -= bytes;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return p;
}

/* 1 when the cache took the block. */
static int cache_put(void *p, size_t bytes) {
    int kept = 0;
    pthread_mutex_lock(&cache_lock);
    if (cache_bytes + bytes <= cache_limit_bytes()) {
        for (int i = 0; i < CACHE_SLOTS && !kept; i++) {
            if (!cache[i].ptr) {
                cache[i] = (cached_block){p, bytes};
                cache_bytes += bytes;
                kept = 1;
            }
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return kept;
}

__attribute__((destructor)) static void cache_empty(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++) { free(cache[i].ptr); cache[i].ptr = NULL; }
    cache_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
}

/* Each block carries its size class in a 64-byte header so free knows where it belongs. */
static void *cpu_alloc(size_t bytes) {
    size_t size = block_size(bytes);
    void *p = size >= CACHE_MIN_BYTES ? cache_take(size) : NULL;
    if (!p && posix_memalign(&p, 64, size + 64) != 0) return NULL;
    *(size_t *)p = size;
    return (char *)p + 64;
}

static void cpu_free(void *ptr) {
    if (!ptr) return;
    void *block = (char *)ptr - 64;
    size_t size = *(size_t *)block;
    if (size >= CACHE_MIN_BYTES && cache_put(block, size)) return;
    free(block);
}

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
    .noise_add_philox = dp_cpu_noise_add_philox,
    .gram = dp_cpu_gram,
    .ghost_norm = dp_cpu_ghost_norm,
    .scale_rows = dp_cpu_scale_rows,
    .row_sums = dp_cpu_row_sums,
    .row_sq_norms = dp_cpu_row_sq_norms,
    .embedding_sq_norms = dp_cpu_embedding_sq_norms,
    .sgd_step = dp_cpu_sgd_step,
    .adam_step = dp_cpu_adam_step,
    .quant_amax = dp_cpu_quant_amax,
    .fake_quant = dp_cpu_fake_quant,
    .bias_act = dp_cpu_bias_act,
    .noisy_update = dp_cpu_noisy_update,
    .gemm_fp8 = dp_cpu_gemm_fp8,
    .softmax_masked = dp_cpu_softmax_masked,
    /* per_example_sq_norms, clipped_sum: composed by the core from BLAS GEMMs, faster here.
     * host_alloc, host_free, host_wait, sync: nothing is asynchronous on the CPU. */
};
