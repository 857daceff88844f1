// host_memory.h: page-locked host memory for the CUDA backend (host_memory.cu): the op table's
// host_alloc, host_free and host_wait entries, and the hook backend.cu's memcpy_h2d calls so a
// later host write can wait for the copies still reading a block.
#ifndef DP_CUDA_HOST_MEMORY_H
#define DP_CUDA_HOST_MEMORY_H
#include <stddef.h>

// bytes of pinned host memory (cudaHostAlloc, portable), or NULL after dp_fail(DP_ENOMEM, ...).
void *dp_cuda_host_alloc(size_t bytes);
// Waits for the copies still reading the block, then cudaFreeHost. NULL is ignored.
void dp_cuda_host_free(void *ptr);
// Waits until no queued copy reads host bytes [ptr, ptr + bytes) of a pinned block; 0 at once
// when the range lies in no block or none of its copies is pending.
int dp_cuda_host_wait(const void *ptr, size_t bytes);
// After a host-to-device copy from src was queued on dp_cuda_stream(): when src lies in a pinned
// block, records the block's event behind the copy (a later dp_cuda_host_wait waits for it).
int dp_cuda_host_note_read(const void *src, size_t bytes);

#endif
