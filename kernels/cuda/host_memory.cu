// host_memory.cu: page-locked (pinned) host memory. Copies from it to the device are truly
// asynchronous, so the host must not rewrite a block while a queued copy still reads it. Each
// block keeps an event recorded on the stream behind the last host-to-device copy reading it;
// host_wait synchronises that event (not the whole stream), so rewriting one staging buffer
// waits only for its own copy while the kernels queued after it keep running.
#include <algorithm>
#include <mutex>
#include <vector>
#include "cuda_common.h"
#include "host_memory.h"

namespace {

struct block {
    char *base;
    size_t bytes;
    cudaEvent_t event;     // recorded behind the last copy reading the block
    uint64_t recorded;     // records so far
    uint64_t waited;       // records known to have completed (== recorded: nothing pending)
};

// Blocks sorted by base, so the block holding an address is found by binary search (a copy's
// source is usually a view inside a block, not its base). Never destroyed, as in allocator.cu:
// a static destructor could run after the CUDA runtime has shut down.
struct registry {
    std::mutex lock;
    std::vector<block> blocks;
};

registry *the_registry() {
    static registry *r = new registry;
    return r;
}

// Index of the first block whose bytes end after p (it may start after p too); caller holds the lock.
size_t first_reaching(const registry *r, const char *p) {
    auto it = std::upper_bound(r->blocks.begin(), r->blocks.end(), p,
                               [](const char *q, const block &b) { return q < b.base; });
    size_t i = (size_t)(it - r->blocks.begin());
    if (i > 0 && p < r->blocks[i - 1].base + r->blocks[i - 1].bytes) return i - 1;
    return i;
}

}  // namespace

void *dp_cuda_host_alloc(size_t bytes) {
    size_t n = bytes ? bytes : 1;
    void *p = NULL;
    cudaError_t err = cudaHostAlloc(&p, n, cudaHostAllocPortable);
    if (err != cudaSuccess) {
        cudaGetLastError();   // an allocation failure must not look like a later kernel's error
        dp_fail(DP_ENOMEM, "host_alloc: cudaHostAlloc(%zu bytes, portable) failed: %s", bytes,
                cudaGetErrorString(err));
        return NULL;
    }
    cudaEvent_t ev = NULL;
    err = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (err != cudaSuccess) {
        cudaFreeHost(p);
        dp_cuda_check(err, "host_alloc", "cudaEventCreateWithFlags");
        return NULL;
    }
    registry *r = the_registry();
    std::lock_guard<std::mutex> guard(r->lock);
    try {
        block b = { (char *)p, n, ev, 0, 0 };
        size_t i = first_reaching(r, b.base);
        r->blocks.insert(r->blocks.begin() + (ptrdiff_t)i, b);
    } catch (...) {
        cudaEventDestroy(ev);
        cudaFreeHost(p);
        dp_fail(DP_ENOMEM, "host_alloc: out of host memory tracking a %zu-byte pinned block", bytes);
        return NULL;
    }
    return p;
}

void dp_cuda_host_free(void *ptr) {
    if (!ptr) return;
    registry *r = the_registry();
    block b = { NULL, 0, NULL, 0, 0 };
    {
        std::lock_guard<std::mutex> guard(r->lock);
        size_t i = first_reaching(r, (const char *)ptr);
        if (i < r->blocks.size() && r->blocks[i].base == (char *)ptr) {
            b = r->blocks[i];
            r->blocks.erase(r->blocks.begin() + (ptrdiff_t)i);
        }
    }
    if (b.event) {
        // A copy still reading the block would read freed memory: wait for it first. Nothing
        // can report an error from here (free returns void); a failed wait leaves the error
        // sticky in the runtime, where the next checked call reports it.
        if (b.recorded != b.waited) cudaEventSynchronize(b.event);
        cudaEventDestroy(b.event);
    }
    cudaFreeHost(ptr);
}

int dp_cuda_host_note_read(const void *src, size_t bytes) {
    registry *r = the_registry();
    const char *lo = (const char *)src, *hi = lo + (bytes ? bytes : 1);
    std::lock_guard<std::mutex> guard(r->lock);
    for (size_t i = first_reaching(r, lo); i < r->blocks.size() && r->blocks[i].base < hi; i++) {
        block &b = r->blocks[i];
        int rc = dp_cuda_check(cudaEventRecord(b.event, dp_cuda_stream()), "memcpy_h2d",
                               "cudaEventRecord(pinned source)");
        if (rc) return rc;
        b.recorded++;
    }
    return 0;
}

int dp_cuda_host_wait(const void *ptr, size_t bytes) {
    registry *r = the_registry();
    const char *lo = (const char *)ptr, *hi = lo + (bytes ? bytes : 1);
    const char *cursor = lo;
    // One block at a time, waiting outside the lock so copies of other blocks can be queued
    // meanwhile. Each block is waited for once: a copy another thread queues during the wait is
    // that thread's race with this writer, not something waiting could order.
    for (;;) {
        cudaEvent_t ev = NULL;
        const char *base = NULL;
        size_t size = 0;
        uint64_t gen = 0;
        {
            std::lock_guard<std::mutex> guard(r->lock);
            for (size_t i = first_reaching(r, cursor); i < r->blocks.size() && r->blocks[i].base < hi; i++) {
                const block &b = r->blocks[i];
                if (b.recorded != b.waited) {
                    ev = b.event, base = b.base, size = b.bytes, gen = b.recorded;
                    break;
                }
            }
        }
        if (!ev) return 0;
        int rc = dp_cuda_check(cudaEventSynchronize(ev), "host_wait", "cudaEventSynchronize");
        if (rc) return rc;
        {
            std::lock_guard<std::mutex> guard(r->lock);
            size_t i = first_reaching(r, base);
            if (i < r->blocks.size() && r->blocks[i].base == base && r->blocks[i].waited < gen)
                r->blocks[i].waited = gen;
        }
        cursor = base + size;
    }
}
