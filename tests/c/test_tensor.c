/* test_tensor.c: construction, reference counting, memory accounting and element access. */
#include "dp_test.h"

static void test_construct(void) {
    int64_t shape[3] = {2, 3, 4};
    dp_tensor *z = dp_tensor_zeros(DP_F32, DP_CPU, 3, shape);
    CHECK_PTR(z);
    CHECK(dp_tensor_numel(z) == 24, "numel %lld", (long long)dp_tensor_numel(z));
    CHECK(z->stride[0] == 12 && z->stride[1] == 4 && z->stride[2] == 1, "row-major strides");
    CHECK(dp_tensor_is_contiguous(z), "new tensors are contiguous");
    double v[24];
    CHECK_OK(dp_tensor_to_f64(z, v));
    int zero = 1;
    for (int i = 0; i < 24; i++) zero &= v[i] == 0.0;
    CHECK(zero, "zeros are zero");
    dp_tensor_release(z);

    dp_tensor *f = dp_tensor_full(DP_BF16, DP_CPU, 3, shape, 1.5);
    double x;
    int64_t idx[3] = {1, 2, 3};
    CHECK_OK(dp_tensor_get(f, idx, &x));
    CHECK(x == 1.5, "full value %g", x);
    CHECK_OK(dp_tensor_set(f, idx, -2.0));
    CHECK_OK(dp_tensor_get_flat(f, 23, &x));
    CHECK(x == -2.0, "set then get flat %g", x);
    dp_tensor_release(f);

    dp_tensor *s = dp_tensor_scalar(DP_F64, DP_CPU, 3.25);
    CHECK(s->ndim == 0 && dp_tensor_numel(s) == 1, "scalar is 0-d with one element");
    CHECK_OK(dp_tensor_get_flat(s, 0, &x));
    CHECK(x == 3.25, "scalar value");
    dp_tensor_release(s);

    int64_t empty_shape[2] = {0, 5};
    dp_tensor *e = dp_tensor_empty(DP_F32, DP_CPU, 2, empty_shape);
    CHECK(e && dp_tensor_numel(e) == 0, "empty dims allowed");
    dp_tensor_release(e);

    int32_t raw[4] = {1, -2, 3, 2147483647};
    int64_t four = 4;
    dp_tensor *r = dp_tensor_from_raw(DP_I32, 1, &four, raw);
    int32_t back[4];
    CHECK_OK(dp_tensor_to_raw(r, back));
    CHECK(memcmp(raw, back, sizeof raw) == 0, "raw round trip");
    CHECK_OK(dp_tensor_get_flat(r, 3, &x));
    CHECK(x == 2147483647.0, "i32 loads exactly");
    dp_tensor_release(r);
}

static void test_errors(void) {
    int64_t bad[2] = {2, -1};
    CHECK(dp_tensor_empty(DP_F32, DP_CPU, 2, bad) == NULL, "negative size rejected");
    CHECK(strstr(dp_last_error(), "negative size") != NULL, "message: %s", dp_last_error());
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(dp_tensor_empty(DP_F32, DP_CPU, 9, nine) == NULL, "9 dims rejected");
    CHECK(strstr(dp_last_error(), "0 to 8") != NULL, "message: %s", dp_last_error());
    int64_t huge[2] = {1LL << 40, 1LL << 30};
    CHECK(dp_tensor_empty(DP_F32, DP_CPU, 2, huge) == NULL, "absurd size rejected, not crashed");
    int64_t big[1] = {1LL << 42};
    CHECK(dp_tensor_empty(DP_F32, DP_CPU, 1, big) == NULL, "out of memory reported");
    CHECK(strstr(dp_last_error(), "out of memory") != NULL, "message: %s", dp_last_error());
    int64_t shape[2] = {2, 3};
    dp_tensor *t = dp_tensor_zeros(DP_F32, DP_CPU, 2, shape);
    int64_t idx[2] = {2, 0};
    double x;
    CHECK(dp_tensor_get(t, idx, &x) == DP_EINDEX, "index out of range");
    CHECK(strstr(dp_last_error(), "[2,3] f32 cpu") != NULL, "message names the tensor: %s", dp_last_error());
    CHECK(dp_tensor_get_flat(t, 6, &x) == DP_EINDEX, "flat index out of range");
    dp_tensor_release(t);
}

static void test_memory(void) {
    int64_t before = dp_mem_current(DP_CPU);
    dp_mem_reset_peak(DP_CPU);
    int64_t shape[1] = {1000};
    dp_tensor *a = dp_tensor_empty(DP_F32, DP_CPU, 1, shape);
    CHECK(dp_mem_current(DP_CPU) == before + 4000, "current grows by the storage size");
    dp_tensor *v = dp_narrow(a, 0, 10, 20);
    CHECK(dp_mem_current(DP_CPU) == before + 4000, "a view allocates no storage");
    dp_tensor_release(a);
    CHECK(dp_mem_current(DP_CPU) == before + 4000, "storage lives while a view holds it");
    dp_tensor_release(v);
    CHECK(dp_mem_current(DP_CPU) == before, "storage freed with its last view");
    CHECK(dp_mem_peak(DP_CPU) >= before + 4000, "peak remembers");
}

static void test_desc(void) {
    int64_t shape[2] = {2, 3};
    dp_tensor *t = dp_tensor_zeros(DP_FP8_E4M3, DP_CPU, 2, shape);
    CHECK(strcmp(dp_tensor_desc(t), "[2,3] fp8_e4m3 cpu") == 0, "desc: %s", dp_tensor_desc(t));
    dp_tensor_release(t);
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_construct();
    test_errors();
    test_memory();
    test_desc();
    CHECK(dp_live_tensors() == live, "no tensor headers leak (%lld live)", (long long)dp_live_tensors());
    return dp_test_finish("test_tensor");
}
