// allocator.cu: a caching allocator for device memory. cudaMalloc and cudaFree are slow and
// cudaFree synchronises the device, so freed blocks go to per-size free lists and are reused.
// Sizes round up to 512 B below 1 MiB and to 2 MiB above, so a request only reuses a block of its
// exact size class (no splitting: simple, and waste is at most 512 B or 2 MiB per block).
// Peak and live tracking of tensors stays with the core (core/memory.c counts requested bytes);
// this file only reports what it holds in its cache.
#include <stdlib.h>
#include <string.h>
#include <mutex>
#include <unordered_map>
#include <vector>
#include "cuda_common.h"
#include "allocator.h"

namespace {

const size_t SMALL_LIMIT = (size_t)1 << 20, SMALL_ROUND = 512, LARGE_ROUND = (size_t)2 << 20;

size_t size_class(size_t bytes) {
    if (bytes == 0) bytes = 1;
    size_t r = bytes <= SMALL_LIMIT ? SMALL_ROUND : LARGE_ROUND;
    if (bytes > SIZE_MAX - r) return 0;   // overflow: no class, the caller fails cleanly
    return (bytes + r - 1) / r * r;
}

// Never destroyed: freeing device memory from a static destructor can run after the CUDA runtime
// has shut down. The process exit returns everything to the driver anyway.
struct cache {
    std::mutex lock;
    std::unordered_map<size_t, std::vector<void *>> free_lists;   // size class -> blocks
    std::unordered_map<void *, size_t> live;                      // handed-out block -> class
    int64_t free_bytes = 0, live_bytes = 0;
    int enabled = 1;
};

cache *the_cache() {
    static cache *c = [] {
        cache *n = new cache;
        const char *env = getenv("DP_CUDA_CACHE");
        n->enabled = !(env && strcmp(env, "0") == 0);
        return n;
    }();
    return c;
}

// cudaFree of every cached block; caller holds the lock.
int64_t release_locked(cache *c) {
    int64_t released = 0;
    for (auto &entry : c->free_lists) {
        for (void *p : entry.second) {
            cudaFree(p);
            released += (int64_t)entry.first;
        }
        entry.second.clear();
    }
    c->free_lists.clear();
    c->free_bytes -= released;
    return released;
}

}  // namespace

void *dp_cuda_alloc(size_t bytes, const char *op) {
    cache *c = the_cache();
    size_t cls = size_class(bytes);
    if (cls == 0) {
        dp_fail(DP_ENOMEM, "%s: cannot allocate %zu bytes on cuda (size overflows)", op, bytes);
        return NULL;
    }
    std::lock_guard<std::mutex> guard(c->lock);
    if (c->enabled) {
        auto it = c->free_lists.find(cls);
        if (it != c->free_lists.end() && !it->second.empty()) {
            void *p = it->second.back();
            it->second.pop_back();
            c->free_bytes -= (int64_t)cls;
            c->live[p] = cls;
            c->live_bytes += (int64_t)cls;
            return p;
        }
    }
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, cls);
    if (err == cudaErrorMemoryAllocation && c->free_bytes > 0) {
        cudaGetLastError();   // clear the recorded error before retrying
        release_locked(c);
        p = NULL;
        err = cudaMalloc(&p, cls);
    }
    if (err != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaGetLastError();
        dp_fail(DP_ENOMEM, "%s: cudaMalloc(%zu bytes, class %zu) failed: %s (device has %zu of %zu "
                "bytes free, %lld held by this process)", op, bytes, cls, cudaGetErrorString(err),
                free_b, total_b, (long long)c->live_bytes);
        return NULL;
    }
    try {
        c->live[p] = cls;
    } catch (...) {
        cudaFree(p);
        dp_fail(DP_ENOMEM, "%s: out of host memory tracking a %zu-byte cuda block", op, bytes);
        return NULL;
    }
    c->live_bytes += (int64_t)cls;
    return p;
}

void dp_cuda_free(void *ptr) {
    if (!ptr) return;
    cache *c = the_cache();
    std::lock_guard<std::mutex> guard(c->lock);
    auto it = c->live.find(ptr);
    if (it == c->live.end()) {   // not ours (should not happen): hand it straight back to CUDA
        cudaFree(ptr);
        return;
    }
    size_t cls = it->second;
    c->live.erase(it);
    c->live_bytes -= (int64_t)cls;
    if (c->enabled) {
        try {
            c->free_lists[cls].push_back(ptr);
            c->free_bytes += (int64_t)cls;
            return;
        } catch (...) {
            // no host memory for the list entry: fall through and free it for real
        }
    }
    cudaFree(ptr);
}

extern "C" __attribute__((visibility("default"))) int64_t dp_cuda_cache_free_bytes(void) {
    cache *c = the_cache();
    std::lock_guard<std::mutex> guard(c->lock);
    return c->free_bytes;
}

extern "C" __attribute__((visibility("default"))) int64_t dp_cuda_cache_live_bytes(void) {
    cache *c = the_cache();
    std::lock_guard<std::mutex> guard(c->lock);
    return c->live_bytes;
}

extern "C" __attribute__((visibility("default"))) int32_t dp_cuda_cache_enabled(void) {
    return the_cache()->enabled;
}

extern "C" __attribute__((visibility("default"))) int64_t dp_cuda_cache_release(void) {
    cache *c = the_cache();
    std::lock_guard<std::mutex> guard(c->lock);
    return release_locked(c);
}
