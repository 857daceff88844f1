// backend.cu: the CUDA op table and its entry point dp_cuda_backend(), which core/device.c
// finds with dlsym. Storage, the stream and the random kernels live here; the kernel
// families register their entries from their own files (dp_cuda_register_*).
#include <stdio.h>
#include <mutex>
#include "cuda_common.h"
#include "allocator.h"
#include "host_memory.h"

// ---------------------------------------------------------------- storage

// The caching allocator (allocator.cu) keeps freed blocks for reuse (DP_CUDA_CACHE=0: off).
static void *cuda_alloc(size_t bytes) { return dp_cuda_alloc(bytes, "alloc"); }

static void cuda_free(void *ptr) { dp_cuda_free(ptr); }

cudaStream_t dp_cuda_stream(void) {
    static std::once_flag once;
    static cudaStream_t stream = NULL;
    std::call_once(once, [] {
        cudaStream_t s = NULL;
        // On failure the legacy default stream (NULL) still orders everything; the error comes
        // back from the first launch or copy that cannot run.
        if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess) stream = s;
    });
    return stream;
}

// Host to device: queued on the stream. From pageable memory the call returns once the source
// has been staged, so the caller may reuse it at once; from pinned memory (host_alloc) it is
// truly asynchronous: the block's event is recorded behind the copy, and the core calls
// host_wait before the host writes that block again.
static int cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
    int rc = dp_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, dp_cuda_stream()),
                           "memcpy_h2d", "cudaMemcpyAsync(host to device)");
    return rc ? rc : dp_cuda_host_note_read(src, bytes);
}

// Device to host: queued behind every op already on the stream, then waited for, because the
// caller reads the bytes as soon as this returns.
static int cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
    int rc = dp_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, dp_cuda_stream()),
                           "memcpy_d2h", "cudaMemcpyAsync(device to host)");
    if (!rc) rc = dp_cuda_check(cudaStreamSynchronize(dp_cuda_stream()), "memcpy_d2h",
                                "cudaStreamSynchronize");
    return rc;
}

// Everything queued so far has finished (dp_device_sync).
static int cuda_sync(void) {
    return dp_cuda_check(cudaStreamSynchronize(dp_cuda_stream()), "sync", "cudaStreamSynchronize");
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
    // Pinned host memory (host_memory.cu); device-to-host copies stay synchronous, so only
    // host-to-device copies ever leave a pinned block pending.
    t->host_alloc = dp_cuda_host_alloc;
    t->host_free = dp_cuda_host_free;
    t->host_wait = dp_cuda_host_wait;
    t->sync = cuda_sync;
    t->rand_uniform = dp_cuda_rand_uniform;
    t->rand_normal = dp_cuda_rand_normal;
    t->dropout = dp_cuda_dropout;
    // Each kernel family fills its own entries (one file each, see cuda_common.h); entries left
    // NULL are refused by the core with DP_EUNSUPPORTED naming the op.
    dp_cuda_register_elementwise(t);
    dp_cuda_register_nn(t);
    dp_cuda_register_gemm(t);
    dp_cuda_register_dpsgd(t);
    dp_cuda_register_per_example(t);
    dp_cuda_register_noisy_update(t);
    dp_cuda_register_bias_act(t);
    dp_cuda_register_gemm_fp8(t);
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
