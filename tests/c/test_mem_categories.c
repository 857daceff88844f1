/* test_mem_categories.c: memory accounting by category: exact byte arithmetic of current, peak
 * and the make-up of the device peak (at_peak) while tensors are allocated under categories,
 * moved and freed; peak resets; the thread's category; and GEMM scratch counted while a low-
 * precision matmul holds it. */
#include <stdlib.h>
#include "dp_test.h"

enum { NC = DP_MEM_NUM_CATEGORIES };

typedef struct { int64_t total, peak, cur[NC], cpeak[NC], at[NC]; } snap;

static snap take(void) {
    snap s = { dp_mem_current(DP_CPU), dp_mem_peak(DP_CPU), {0}, {0}, {0} };
    for (int c = 0; c < NC; c++) {
        s.cur[c] = dp_mem_category_current(DP_CPU, c);
        s.cpeak[c] = dp_mem_category_peak(DP_CPU, c);
        s.at[c] = dp_mem_category_at_peak(DP_CPU, c);
    }
    return s;
}

/* n f32 elements allocated under category c. */
static dp_tensor *alloc_in(int32_t c, int64_t n) {
    int32_t prev = dp_mem_set_category(c);
    dp_tensor *t = dp_tensor_zeros(DP_F32, DP_CPU, 1, &n);
    CHECK(dp_mem_set_category(prev) == c, "set_category returns the previous category");
    CHECK_PTR(t);
    return t;
}

static void test_names_and_thread_category(void) {
    const char *want[NC] = { "other", "parameters", "master", "optimizer", "activations", "per_sample",
                             "gradients", "scratch" };
    for (int c = 0; c < NC; c++) CHECK(!strcmp(dp_mem_category_name(c), want[c]), "name %d", c);
    CHECK(!strcmp(dp_mem_category_name(NC), "") && !strcmp(dp_mem_category_name(-1), ""), "bad ids");
    CHECK(dp_mem_get_category() == DP_MEM_OTHER, "default category");
    CHECK(dp_mem_set_category(NC) == DP_EARG && strstr(dp_last_error(), "mem_set_category"), "%s",
          dp_last_error());
    CHECK(dp_mem_get_category() == DP_MEM_OTHER, "a refused set changes nothing");
    dp_tensor *t = alloc_in(DP_MEM_OTHER, 4);
    CHECK(dp_tensor_set_mem_category(t, -1) == DP_EARG && strstr(dp_last_error(), "[4] f32 cpu"), "%s",
          dp_last_error());
    dp_tensor_release(t);
}

static void test_arithmetic(void) {
    dp_mem_reset_peak(DP_CPU);
    snap s0 = take();
    CHECK(s0.peak == s0.total, "reset: peak = current");
    int64_t sum = 0;
    for (int c = 0; c < NC; c++) {
        CHECK(s0.cpeak[c] == s0.cur[c] && s0.at[c] == s0.cur[c], "reset category %d", c);
        sum += s0.cur[c];
    }
    CHECK(sum == s0.total, "categories add up to the device total (%lld vs %lld)", (long long)sum,
          (long long)s0.total);

    dp_tensor *a = alloc_in(DP_MEM_PARAMETERS, 100);    /* 400 bytes */
    dp_tensor *b = alloc_in(DP_MEM_ACTIVATIONS, 200);   /* 800 */
    dp_tensor_release(b);
    dp_tensor *c = alloc_in(DP_MEM_OPTIMIZER, 50);      /* 200 */
    snap s1 = take();
    CHECK(s1.total == s0.total + 600 && s1.peak == s0.total + 1200, "total %lld peak %lld",
          (long long)(s1.total - s0.total), (long long)(s1.peak - s0.total));
    CHECK(s1.cur[DP_MEM_PARAMETERS] == s0.cur[DP_MEM_PARAMETERS] + 400, "parameters now");
    CHECK(s1.cur[DP_MEM_ACTIVATIONS] == s0.cur[DP_MEM_ACTIVATIONS], "activations freed");
    CHECK(s1.cpeak[DP_MEM_ACTIVATIONS] == s0.cur[DP_MEM_ACTIVATIONS] + 800, "activations peak");
    CHECK(s1.cpeak[DP_MEM_OPTIMIZER] == s0.cur[DP_MEM_OPTIMIZER] + 200, "optimizer peak");
    /* The device peaked with a and b live, before c existed. */
    CHECK(s1.at[DP_MEM_PARAMETERS] == s0.cur[DP_MEM_PARAMETERS] + 400 &&
          s1.at[DP_MEM_ACTIVATIONS] == s0.cur[DP_MEM_ACTIVATIONS] + 800 &&
          s1.at[DP_MEM_OPTIMIZER] == s0.cur[DP_MEM_OPTIMIZER], "at_peak make-up");

    /* A new device peak takes a new snapshot. */
    dp_tensor *d = alloc_in(DP_MEM_OPTIMIZER, 250);     /* 1000: total +1600 */
    snap s2 = take();
    CHECK(s2.peak == s0.total + 1600, "new peak %lld", (long long)(s2.peak - s0.total));
    CHECK(s2.at[DP_MEM_ACTIVATIONS] == s0.cur[DP_MEM_ACTIVATIONS] &&
          s2.at[DP_MEM_OPTIMIZER] == s0.cur[DP_MEM_OPTIMIZER] + 1200 &&
          s2.at[DP_MEM_PARAMETERS] == s0.cur[DP_MEM_PARAMETERS] + 400, "second snapshot");

    /* Moving a storage (through a view: the whole storage moves) keeps the total and its peak. */
    dp_tensor *view = dp_narrow(a, 0, 10, 5);
    CHECK_OK(dp_tensor_set_mem_category(view, DP_MEM_MASTER));
    CHECK(dp_tensor_mem_category(a) == DP_MEM_MASTER, "the view's storage is a's");
    snap s3 = take();
    CHECK(s3.total == s2.total && s3.peak == s2.peak, "a move is not an allocation");
    CHECK(s3.cur[DP_MEM_PARAMETERS] == s0.cur[DP_MEM_PARAMETERS] &&
          s3.cur[DP_MEM_MASTER] == s0.cur[DP_MEM_MASTER] + 400 &&
          s3.cpeak[DP_MEM_MASTER] == s0.cur[DP_MEM_MASTER] + 400 &&
          s3.cpeak[DP_MEM_PARAMETERS] == s0.cur[DP_MEM_PARAMETERS] + 400, "move arithmetic");
    CHECK_OK(dp_tensor_set_mem_category(a, DP_MEM_MASTER));   /* no-op */
    CHECK(dp_mem_category_current(DP_CPU, DP_MEM_MASTER) == s3.cur[DP_MEM_MASTER], "same-category move");
    dp_tensor_release(view);
    /* Freed after the move: the bytes leave the category they are in now. */
    dp_tensor_release(a);
    CHECK(dp_mem_category_current(DP_CPU, DP_MEM_MASTER) == s0.cur[DP_MEM_MASTER], "freed from master");

    dp_mem_reset_peak(DP_CPU);
    snap s4 = take();
    CHECK(s4.peak == s0.total + 1200 && s4.total == s4.peak, "reset peak to current");
    CHECK(s4.cpeak[DP_MEM_ACTIVATIONS] == s0.cur[DP_MEM_ACTIVATIONS] &&
          s4.cpeak[DP_MEM_OPTIMIZER] == s0.cur[DP_MEM_OPTIMIZER] + 1200 &&
          s4.at[DP_MEM_OPTIMIZER] == s0.cur[DP_MEM_OPTIMIZER] + 1200 &&
          s4.at[DP_MEM_MASTER] == s0.cur[DP_MEM_MASTER], "category peaks reset");
    dp_tensor_release(c);
    dp_tensor_release(d);
    CHECK(dp_mem_current(DP_CPU) == s0.total, "all freed");
}

/* A bf16 (and f16) GEMM converts through pooled f32 scratch: counted while held, not after. */
static void test_scratch(void) {
    setenv("DP_GEMM_ENGINE", "openblas", 1);   /* the convert path even where oneDNN has bf16 */
    int64_t as[] = { 16, 32 }, bs[] = { 32, 8 };
    dp_dtype dts[2] = { DP_BF16, DP_F16 };
    for (int k = 0; k < 2; k++) {
        dp_tensor *a = dp_test_random(dts[k], 2, as, 1), *b = dp_test_random(dts[k], 2, bs, 2);
        dp_mem_reset_peak(DP_CPU);
        int64_t before = dp_mem_current(DP_CPU);
        CHECK(dp_mem_category_current(DP_CPU, DP_MEM_SCRATCH) == 0, "no scratch held between ops");
        dp_tensor *y = dp_matmul(a, b);
        CHECK_PTR(y);
        CHECK(!strcmp(dp_matmul_engine(dts[k]), "convert+openblas"), "engine %s", dp_matmul_engine(dts[k]));
        /* a, b and the product as f32 at least (the pool may hand out larger buffers). */
        int64_t need = (16 * 32 + 32 * 8 + 16 * 8) * 4;
        int64_t peak = dp_mem_category_peak(DP_CPU, DP_MEM_SCRATCH);
        CHECK(peak >= need, "%s scratch peak %lld, expected >= %lld", dp_dtype_name(dts[k]), (long long)peak,
              (long long)need);
        CHECK(dp_mem_category_current(DP_CPU, DP_MEM_SCRATCH) == 0, "scratch handed back");
        /* The device total counts scratch too: its peak covers scratch plus the output. */
        CHECK(dp_mem_peak(DP_CPU) >= before + peak + 16 * 8 * dp_dtype_size(dts[k]), "device peak %lld",
              (long long)(dp_mem_peak(DP_CPU) - before));
        CHECK(dp_mem_category_at_peak(DP_CPU, DP_MEM_SCRATCH) == peak, "the device peaked with scratch held");
        dp_tensor_release(y);
        dp_tensor_release(a);
        dp_tensor_release(b);
    }
    unsetenv("DP_GEMM_ENGINE");
}

int main(void) {
    int64_t live = dp_live_tensors();
    test_names_and_thread_category();
    test_arithmetic();
    test_scratch();
    CHECK(dp_live_tensors() == live, "leaked %lld tensor headers", (long long)(dp_live_tensors() - live));
    return dp_test_finish("test_mem_categories");
}
