/* test_pinned.c: pinned host tensors and device sync as every build sees them. Without a CUDA
 * device dp_tensor_empty_pinned gives plain host memory (flag 0); with one, page-locked memory
 * (flag 1: test_cuda_pinned.c checks the asynchronous copies). Either way the tensor is a
 * contiguous CPU tensor that every writer of the dp API writes (bumping its version), that the
 * CPU memory statistics count under the current category, that keeps its kind through
 * retype_, and that frees cleanly; dp_device_sync is a no-op on the CPU and an error naming
 * the device where there is none. */
#include "dp_test.h"

static int has_cuda;

static void test_geometry_and_flag(void) {
    int64_t shape[3] = { 2, 3, 4 };
    dp_tensor *t = dp_tensor_empty_pinned(DP_F32, 3, shape);
    CHECK_PTR(t);
    if (!t) return;
    CHECK(t->device == DP_CPU && t->dtype == DP_F32 && t->ndim == 3, "a CPU f32 3-d tensor: %s",
          dp_tensor_desc(t));
    CHECK(t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 4, "shape kept");
    CHECK(t->stride[0] == 12 && t->stride[1] == 4 && t->stride[2] == 1, "row-major strides");
    CHECK(dp_tensor_is_contiguous(t) && t->data != NULL, "contiguous with data");
    CHECK(dp_tensor_is_pinned(t) == has_cuda, "pinned flag %d with cuda available %d",
          dp_tensor_is_pinned(t), has_cuda);
    /* A view shares the storage, so it is pinned exactly when its base is. */
    dp_tensor *v = dp_narrow(t, 0, 1, 1);
    CHECK_PTR(v);
    CHECK(v && dp_tensor_is_pinned(v) == dp_tensor_is_pinned(t), "views share the flag");
    dp_tensor_release(v);
    dp_tensor_release(t);

    dp_tensor *plain = dp_tensor_empty(DP_F32, DP_CPU, 1, shape);
    CHECK(plain && dp_tensor_is_pinned(plain) == 0, "dp_tensor_empty is never pinned");
    dp_tensor_release(plain);
    CHECK(dp_tensor_is_pinned(NULL) == 0, "NULL is not pinned");

    int64_t none[2] = { 0, 5 };
    dp_tensor *e = dp_tensor_empty_pinned(DP_I64, 2, none);
    CHECK(e && e->data != NULL && dp_tensor_numel(e) == 0, "zero rows still has a data pointer");
    dp_tensor_release(e);
    dp_tensor *s = dp_tensor_empty_pinned(DP_F64, 0, NULL);
    CHECK(s && dp_tensor_numel(s) == 1, "0-d tensor");
    dp_tensor_release(s);
}

static void test_bad_input(void) {
    int64_t bad[1] = { -3 };
    CHECK(dp_tensor_empty_pinned(DP_F32, 1, bad) == NULL, "negative size refused");
    CHECK(strstr(dp_last_error(), "empty_pinned") && strstr(dp_last_error(), "negative"), "%s",
          dp_last_error());
    int64_t shape[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    CHECK(dp_tensor_empty_pinned(DP_F32, 9, shape) == NULL, "9 dims refused");
    CHECK(strstr(dp_last_error(), "empty_pinned") && strstr(dp_last_error(), "9 dims"), "%s",
          dp_last_error());
    CHECK(dp_tensor_empty_pinned(DP_F32, 2, NULL) == NULL && strstr(dp_last_error(), "shape is NULL"),
          "%s", dp_last_error());
    CHECK(dp_tensor_empty_pinned((dp_dtype)99, 1, shape) == NULL && strstr(dp_last_error(), "dtype"),
          "%s", dp_last_error());
}

/* Each writer bumps the version once and leaves the values an independent loop predicts. */
static void test_writes(void) {
    int64_t shape[2] = { 3, 5 };
    dp_tensor *t = dp_tensor_empty_pinned(DP_F64, 2, shape);
    CHECK_PTR(t);
    if (!t) return;
    uint64_t v0 = dp_tensor_version(t);

    CHECK_OK(dp_fill_(t, 2.5));
    CHECK(dp_tensor_version(t) == v0 + 1, "fill_ bumps once");
    double got[15];
    CHECK_OK(dp_tensor_to_f64(t, got));
    int same = 1;
    for (int i = 0; i < 15; i++) same &= got[i] == 2.5;
    CHECK(same, "fill_ wrote every element");

    double src_vals[15];
    for (int i = 0; i < 15; i++) src_vals[i] = i * 0.25 - 1.0;   /* exact in f32 and f64 */
    dp_tensor *src = dp_tensor_from_f64(DP_F32, 2, shape, src_vals);
    CHECK_OK(dp_copy_(t, src));   /* converting f32 -> f64: exact */
    CHECK(dp_tensor_version(t) == v0 + 2, "copy_ bumps once");
    CHECK_OK(dp_tensor_to_f64(t, got));
    same = 1;
    for (int i = 0; i < 15; i++) same &= got[i] == src_vals[i];
    CHECK(same, "copy_ wrote the source's values");

    int64_t idx[2] = { 2, 4 };
    CHECK_OK(dp_tensor_set(t, idx, 7.0));
    CHECK(dp_tensor_version(t) == v0 + 3, "set bumps once");
    double one = 0;
    CHECK_OK(dp_tensor_get(t, idx, &one));
    CHECK(one == 7.0, "set wrote %g", one);

    /* A write through a row view lands in the shared storage and counts there. */
    dp_tensor *row = dp_narrow(t, 0, 1, 1);
    CHECK_OK(dp_fill_(row, -4.0));
    CHECK(dp_tensor_version(t) == v0 + 4, "a view's write counts on the shared storage");
    CHECK_OK(dp_tensor_to_f64(t, got));
    same = 1;
    for (int i = 0; i < 15; i++) {
        double want = i >= 5 && i < 10 ? -4.0 : i == 14 ? 7.0 : src_vals[i];
        same &= got[i] == want;
    }
    CHECK(same, "only row 2 changed");

    CHECK_OK(dp_scale_(t, 2.0));
    CHECK(dp_tensor_version(t) == v0 + 5, "scale_ bumps once");
    CHECK_OK(dp_tensor_to_f64(t, got));
    CHECK(got[0] == -2.0 && got[5] == -8.0 && got[14] == 14.0, "scale_ doubled: %g %g %g", got[0],
          got[5], got[14]);

    /* retype_ keeps the kind of memory and the values (f64 -> f32: all exact here). */
    dp_tensor_release(row);
    int was_pinned = dp_tensor_is_pinned(t);
    CHECK_OK(dp_tensor_retype_(t, DP_F32));
    CHECK(t->dtype == DP_F32 && dp_tensor_is_pinned(t) == was_pinned, "retype_ keeps pinned %d",
          was_pinned);
    double after[15];
    CHECK_OK(dp_tensor_to_f64(t, after));
    same = 1;
    for (int i = 0; i < 15; i++) same &= after[i] == got[i];
    CHECK(same, "retype_ kept the values");
    dp_tensor_release(src);
    dp_tensor_release(t);
}

/* The bytes count on the CPU under the thread's category and are given back on release. */
static void test_accounting(void) {
    int64_t cur0 = dp_mem_current(DP_CPU);
    int64_t cat0 = dp_mem_category_current(DP_CPU, DP_MEM_ACTIVATIONS);
    int32_t prev = dp_mem_set_category(DP_MEM_ACTIVATIONS);
    int64_t shape[1] = { 1000 };
    dp_tensor *t = dp_tensor_empty_pinned(DP_F32, 1, shape);
    dp_mem_set_category(prev);
    CHECK_PTR(t);
    CHECK(dp_mem_current(DP_CPU) - cur0 == 4000, "4000 bytes on the CPU, got %lld",
          (long long)(dp_mem_current(DP_CPU) - cur0));
    CHECK(dp_mem_category_current(DP_CPU, DP_MEM_ACTIVATIONS) - cat0 == 4000,
          "counted under the category current at allocation");
    dp_tensor_release(t);
    CHECK(dp_mem_current(DP_CPU) == cur0, "released: %lld vs %lld", (long long)dp_mem_current(DP_CPU),
          (long long)cur0);
    CHECK(dp_mem_category_current(DP_CPU, DP_MEM_ACTIVATIONS) == cat0, "category back");
}

static void test_sync(void) {
    CHECK(dp_device_sync(DP_CPU) == 0, "CPU sync is a no-op: %s", dp_last_error());
    if (has_cuda) {
        CHECK_OK(dp_device_sync(DP_CUDA));
    } else {
        CHECK(dp_device_sync(DP_CUDA) == DP_EDEVICE, "no CUDA device: DP_EDEVICE");
        CHECK(strstr(dp_last_error(), "device_sync") && strstr(dp_last_error(), "cuda"),
              "the message names the call and the device: %s", dp_last_error());
    }
    CHECK(dp_device_sync((dp_device)7) == DP_EDEVICE && strstr(dp_last_error(), "unknown device"),
          "%s", dp_last_error());
}

int main(void) {
    has_cuda = dp_device_available(DP_CUDA);
    printf("test_pinned: cuda %s\n", has_cuda ? "available (page-locked memory)" : "not available (plain memory)");
    int64_t live0 = dp_live_tensors();
    test_geometry_and_flag();
    test_bad_input();
    test_writes();
    test_accounting();
    test_sync();
    CHECK(dp_live_tensors() == live0, "no tensor leaked: %lld live", (long long)(dp_live_tensors() - live0));
    return dp_test_finish("test_pinned");
}
