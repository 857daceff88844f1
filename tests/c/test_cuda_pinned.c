/* test_cuda_pinned.c: pinned host memory with a CUDA device (kernels/cuda/host_memory.cu and the
 * core's use of it). A pinned tensor is flagged and counted on the CPU; a host-to-device copy
 * from it is asynchronous, and a write through the dp API right after it (dp_fill_, dp_copy_,
 * dp_tensor_set) must wait for the copy, so the device holds the values from before the write.
 * The copies are made late on purpose (64 MiB, queued behind tens of ms of GEMMs) so that a
 * missing wait would let the host write first. Also: copies from the middle of a block, from a
 * block freed right after, into a pinned tensor (synchronous), host_wait on memory that is not
 * pinned, and dp_device_sync. Without a CUDA device it prints SKIP and exits 77. */
#include <stdlib.h>
#include "dp_test.h"
#include "internal.h"
#include "cuda_test.h"

enum { N = 16 << 20 };   /* floats per buffer: 64 MiB, a few ms for any copy */

static float pattern(int64_t i) { return (float)(i % 1021) - 510.0f; }

/* Queues tens of ms of GEMMs (20 of 4096^3) on the stream, so a copy queued next starts late. */
static void keep_device_busy(void) {
    int64_t shape[2] = { 4096, 4096 };
    dp_tensor *a = dp_tensor_full(DP_F32, DP_CUDA, 2, shape, 0.5);
    CHECK_PTR(a);
    if (!a) return;
    for (int k = 0; k < 20; k++) {
        dp_tensor *c = dp_matmul(a, a);
        CHECK_PTR(c);
        dp_tensor_release(c);
    }
    dp_tensor_release(a);
}

/* A pinned f32 buffer of N elements holding pattern(i). */
static dp_tensor *pinned_pattern(void) {
    int64_t n = N;
    dp_tensor *t = dp_tensor_empty_pinned(DP_F32, 1, &n);
    CHECK_PTR(t);
    if (!t) return NULL;
    float *p = t->data;
    for (int64_t i = 0; i < N; i++) p[i] = pattern(i);
    return t;
}

/* Count of elements of the device tensor d (count elements from first) that differ from
 * pattern(first + i). */
static int64_t mismatches(const dp_tensor *d, int64_t first, int64_t count) {
    float *back = malloc(sizeof(float) * (size_t)count);
    if (!back) return -1;
    int rc = dp_tensor_to_raw(d, back);
    CHECK(rc == 0, "read back: %s", dp_last_error());
    int64_t bad = 0;
    for (int64_t i = 0; i < count; i++) bad += back[i] != pattern(first + i);
    free(back);
    return bad;
}

static void test_flag_and_accounting(void) {
    int64_t cur0 = dp_mem_current(DP_CPU), n = 1000;
    dp_tensor *t = dp_tensor_empty_pinned(DP_F32, 1, &n);
    CHECK_PTR(t);
    CHECK(t && dp_tensor_is_pinned(t) == 1 && t->device == DP_CPU, "page-locked CPU tensor");
    CHECK(dp_mem_current(DP_CPU) - cur0 == 4000, "counted on the CPU");
    dp_tensor_release(t);
    CHECK(dp_mem_current(DP_CPU) == cur0, "given back");
    CHECK(cuda_ops->host_alloc && cuda_ops->host_free && cuda_ops->host_wait && cuda_ops->sync,
          "table entries set");
}

/* The raw table copy, then each writer at once: the device must keep the old values. */
static void test_write_after_async_copy(const char *writer) {
    dp_tensor *h = pinned_pattern();
    int64_t n = N;
    dp_tensor *d = dp_tensor_empty(DP_F32, DP_CUDA, 1, &n);
    CHECK_PTR(d);
    if (!h || !d) goto done;
    keep_device_busy();
    CHECK_OK(cuda_ops->memcpy_h2d(d->data, h->data, sizeof(float) * (size_t)N));
    if (!strcmp(writer, "fill_")) {
        CHECK_OK(dp_fill_(h, 12345.0));
    } else if (!strcmp(writer, "copy_")) {
        dp_tensor *z = dp_tensor_zeros(DP_F32, DP_CPU, 1, &n);
        CHECK_OK(dp_copy_(h, z));
        dp_tensor_release(z);
    } else {
        int64_t idx = 7;
        CHECK_OK(dp_tensor_set(h, &idx, 99.0));
    }
    int64_t bad = mismatches(d, 0, N);
    CHECK(bad == 0, "%s right after the copy changed %lld device values", writer, (long long)bad);
    /* ... while the host buffer does hold the new values. */
    double first = 0;
    int64_t at = 7;
    CHECK_OK(dp_tensor_get(h, &at, &first));
    CHECK(first == (!strcmp(writer, "fill_") ? 12345.0 : !strcmp(writer, "copy_") ? 0.0 : 99.0),
          "%s wrote the host buffer (%g)", writer, first);
done:
    dp_tensor_release(d);
    dp_tensor_release(h);
}

/* Through the public copy (whatever path it takes): same property. */
static void test_public_copy_then_fill(void) {
    dp_tensor *h = pinned_pattern();
    int64_t n = N;
    dp_tensor *d = dp_tensor_empty(DP_F32, DP_CUDA, 1, &n);
    if (!h || !d) goto done;
    keep_device_busy();
    CHECK_OK(dp_copy_(d, h));
    CHECK_OK(dp_fill_(h, -7.0));
    int64_t bad = mismatches(d, 0, N);
    CHECK(bad == 0, "dp_copy_ then dp_fill_: %lld device values changed", (long long)bad);
done:
    dp_tensor_release(d);
    dp_tensor_release(h);
}

/* A copy from inside the block (a row view, say) is found by its interior address. */
static void test_interior_source(void) {
    dp_tensor *h = pinned_pattern();
    int64_t first = 1 << 20, count = N / 2, n = count;
    dp_tensor *d = dp_tensor_empty(DP_F32, DP_CUDA, 1, &n);
    if (!h || !d) goto done;
    keep_device_busy();
    CHECK_OK(cuda_ops->memcpy_h2d(d->data, (float *)h->data + first, sizeof(float) * (size_t)count));
    CHECK_OK(dp_fill_(h, 3.0));
    int64_t bad = mismatches(d, first, count);
    CHECK(bad == 0, "interior copy: %lld device values changed", (long long)bad);
done:
    dp_tensor_release(d);
    dp_tensor_release(h);
}

/* Releasing the last reference right after the copy: host_free waits before freeing. */
static void test_free_after_copy(void) {
    dp_tensor *h = pinned_pattern();
    int64_t n = N;
    dp_tensor *d = dp_tensor_empty(DP_F32, DP_CUDA, 1, &n);
    if (!h || !d) goto done;
    keep_device_busy();
    CHECK_OK(cuda_ops->memcpy_h2d(d->data, h->data, sizeof(float) * (size_t)N));
    dp_tensor_release(h);
    h = NULL;
    int64_t bad = mismatches(d, 0, N);
    CHECK(bad == 0, "freed right after the copy: %lld device values changed", (long long)bad);
done:
    dp_tensor_release(d);
    dp_tensor_release(h);
}

/* Device to host into pinned memory is synchronous: the values are there on return. */
static void test_d2h_into_pinned(void) {
    int64_t n = 4096;
    dp_tensor *d = dp_tensor_full(DP_F32, DP_CUDA, 1, &n, 2.25);
    dp_tensor *h = dp_tensor_empty_pinned(DP_F32, 1, &n);
    if (!d || !h) { CHECK(0, "alloc: %s", dp_last_error()); goto done; }
    CHECK_OK(dp_copy_(h, d));
    const float *p = h->data;
    int same = 1;
    for (int64_t i = 0; i < n; i++) same &= p[i] == 2.25f;
    CHECK(same, "device values in the pinned tensor");
done:
    dp_tensor_release(d);
    dp_tensor_release(h);
}

static void test_wait_and_sync(void) {
    float plain[16] = { 0 };
    CHECK(cuda_ops->host_wait(plain, sizeof plain) == 0, "not pinned: nothing to wait for");
    dp_tensor *h = pinned_pattern();
    CHECK(h && cuda_ops->host_wait(h->data, 4) == 0, "pinned, no copy pending");
    keep_device_busy();
    CHECK_OK(dp_device_sync(DP_CUDA));
    CHECK_OK(dp_device_sync(DP_CPU));
    dp_tensor_release(h);
}

int main(void) {
    if (cuda_skip()) return DP_TEST_SKIP;
    int64_t live0 = dp_live_tensors();
    test_flag_and_accounting();
    test_write_after_async_copy("fill_");
    test_write_after_async_copy("copy_");
    test_write_after_async_copy("set");
    test_public_copy_then_fill();
    test_interior_source();
    test_free_after_copy();
    test_d2h_into_pinned();
    test_wait_and_sync();
    CHECK(dp_live_tensors() == live0, "no tensor leaked");
    return dp_test_finish("test_cuda_pinned");
}
