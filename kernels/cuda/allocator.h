// allocator.h: the CUDA backend's caching device allocator (allocator.cu). backend.cu's alloc and
// free entries call it; kernels needing scratch memory may too. One (legacy default) stream: a
// block freed while kernels that use it are still queued can be handed out again at once, because
// any later use is queued behind them on the same stream.
#ifndef DP_CUDA_ALLOCATOR_H
#define DP_CUDA_ALLOCATOR_H
#include <stddef.h>
#include <stdint.h>

// bytes of device memory (rounded up to a size class), or NULL after dp_fail(DP_ENOMEM, ...)
// naming `op` and the bytes. A cudaMalloc failure releases every cached block and retries once.
void *dp_cuda_alloc(size_t bytes, const char *op);
// Back to the cache (or cudaFree when caching is off). NULL is ignored.
void dp_cuda_free(void *ptr);

// For benchmarks and tests (exported from libdpcuda.so, so they can be found with dlsym):
// bytes held in the cache (freed by the core but not returned to CUDA), bytes handed out and not
// yet freed (rounded sizes), whether caching is on (DP_CUDA_CACHE=0 turns it off), and a call
// that returns every cached block to CUDA (cudaFree) and gives the bytes released.
extern "C" {
int64_t dp_cuda_cache_free_bytes(void);
int64_t dp_cuda_cache_live_bytes(void);
int32_t dp_cuda_cache_enabled(void);
int64_t dp_cuda_cache_release(void);
}

#endif
