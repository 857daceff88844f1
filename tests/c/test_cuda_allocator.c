/* test_cuda_allocator.c: the CUDA caching allocator (kernels/cuda/allocator.cu) through the op
 * table's alloc/free and the statistics libdpcuda.so exports: size classes (512 B below 1 MiB,
 * 2 MiB above), reuse of a freed block without cudaFree, release of the cache, the release-and-
 * retry when cudaMalloc fails with blocks cached, DP_ENOMEM naming the bytes, many threads at
 * once, and DP_CUDA_CACHE=0 (checked in a child process started with it). Without a CUDA device
 * it prints SKIP and exits 0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "dp_test.h"
#include "internal.h"

typedef int64_t (*stat_fn)(void);
static stat_fn free_bytes, live_bytes, release_cache;
static int32_t (*cache_enabled)(void);
static const dp_ops *gpu;

/* The already loaded libdpcuda.so, found next to libdpcore.so as core/device.c does. */
static int find_stats(void) {
    Dl_info info;
    char path[4096];
    if (!dladdr((void *)dp_ops_for, &info) || !info.dli_fname) return 0;
    const char *slash = strrchr(info.dli_fname, '/');
    snprintf(path, sizeof path, "%.*s/libdpcuda.so", slash ? (int)(slash - info.dli_fname) : 1,
             slash ? info.dli_fname : ".");
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen("libdpcuda.so", RTLD_NOW | RTLD_NOLOAD);
    if (!h) return 0;
    free_bytes = (stat_fn)dlsym(h, "dp_cuda_cache_free_bytes");
    live_bytes = (stat_fn)dlsym(h, "dp_cuda_cache_live_bytes");
    release_cache = (stat_fn)dlsym(h, "dp_cuda_cache_release");
    cache_enabled = (int32_t (*)(void))dlsym(h, "dp_cuda_cache_enabled");
    return free_bytes && live_bytes && release_cache && cache_enabled;
}

static void test_classes_and_reuse(void) {
    release_cache();
    int64_t live0 = live_bytes();
    void *a = gpu->alloc(1000);
    CHECK_PTR(a);
    CHECK(live_bytes() - live0 == 1024, "1000 bytes take a 1024-byte class, got %lld",
          (long long)(live_bytes() - live0));
    gpu->free(a);
    CHECK(free_bytes() == 1024 && live_bytes() == live0, "freed block cached: %lld",
          (long long)free_bytes());
    void *b = gpu->alloc(1024);   /* same class: the same block comes back */
    CHECK(b == a && free_bytes() == 0, "block reused (%p vs %p)", b, a);
    void *c = gpu->alloc(3u << 20);   /* 3 MiB -> 4 MiB class */
    CHECK_PTR(c);
    CHECK(live_bytes() - live0 == 1024 + (4 << 20), "3 MiB takes a 4 MiB class");
    gpu->free(b);
    gpu->free(c);
    CHECK(free_bytes() == 1024 + (4 << 20), "both cached");
    CHECK(release_cache() == 1024 + (4 << 20) && free_bytes() == 0, "release returns everything");
    gpu->free(NULL);   /* ignored */
}

static void test_oom_and_retry(void) {
    size_t huge = (size_t)1 << 50;
    CHECK(gpu->alloc(huge) == NULL, "a petabyte fails");
    CHECK(strstr(dp_last_error(), "1125899906842624") && strstr(dp_last_error(), "cudaMalloc"),
          "message names the bytes and the call: %s", dp_last_error());
    /* Fill the device with 1 GiB blocks, free them into the cache, then ask for a size of another
     * class: cudaMalloc fails until the cache is released, and the allocator must retry. */
    enum { MAXB = 512 };
    void *blocks[MAXB];
    int nb = 0;
    size_t gib = (size_t)1 << 30;
    while (nb < MAXB && (blocks[nb] = gpu->alloc(gib)) != NULL) nb++;
    CHECK(nb > 0 && nb < MAXB, "filled the device with %d GiB blocks", nb);
    for (int i = 0; i < nb; i++) gpu->free(blocks[i]);
    CHECK(free_bytes() == (int64_t)nb * (int64_t)gib, "all cached");
    void *other = gpu->alloc(gib + ((size_t)2 << 20));
    CHECK(other != NULL, "retry after releasing the cache: %s", other ? "" : dp_last_error());
    CHECK(free_bytes() == 0, "the cache was released for the retry (%lld left)",
          (long long)free_bytes());
    gpu->free(other);
    release_cache();
}

static void *churn(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    void *held[8] = {0};
    for (int i = 0; i < 2000; i++) {
        int slot = (int)((i * 7 + id) % 8);
        if (held[slot]) gpu->free(held[slot]);
        held[slot] = gpu->alloc((size_t)(1 + ((i * 131 + id * 17) % 5000)) * 64);
        if (!held[slot]) return (void *)1;
    }
    for (int i = 0; i < 8; i++) gpu->free(held[i]);
    return NULL;
}

static void test_threads(void) {
    int64_t live0 = live_bytes();
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&th[i], NULL, churn, (void *)i);
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        failed += r != NULL;
    }
    CHECK(failed == 0 && live_bytes() == live0, "4 threads: %d failed, live %lld -> %lld", failed,
          (long long)live0, (long long)live_bytes());
    release_cache();
}

/* In the child started with DP_CUDA_CACHE=0: freed blocks go straight back to CUDA. */
static int child_no_cache(void) {
    CHECK(cache_enabled() == 0, "DP_CUDA_CACHE=0 disables the cache");
    void *a = gpu->alloc(4096);
    CHECK_PTR(a);
    gpu->free(a);
    CHECK(free_bytes() == 0, "nothing cached with the cache off");
    return dp_test_finish("test_cuda_allocator (DP_CUDA_CACHE=0)");
}

static void test_env_knob(const char *self) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("DP_CUDA_CACHE", "0", 1);
        execl(self, self, "nocache", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child with DP_CUDA_CACHE=0 passed (%d)",
          status);
}

int main(int argc, char **argv) {
    if (!dp_device_available(DP_CUDA)) {
        dp_ops_for(DP_CUDA);
        printf("SKIP: no CUDA device (%s)\n", dp_last_error());
        return DP_TEST_SKIP;
    }
    gpu = dp_ops_for(DP_CUDA);
    if (!find_stats()) {
        CHECK(0, "libdpcuda.so statistics not found: %s", dlerror());
        return dp_test_finish("test_cuda_allocator");
    }
    if (argc > 1 && strcmp(argv[1], "nocache") == 0) return child_no_cache();
    const char *env = getenv("DP_CUDA_CACHE");
    if (env && strcmp(env, "0") == 0) {
        printf("SKIP: DP_CUDA_CACHE=0 in the environment\n");
        return 0;
    }
    CHECK(cache_enabled() == 1, "cache on by default");
    test_classes_and_reuse();
    test_oom_and_retry();
    test_threads();
    test_env_knob("/proc/self/exe");
    return dp_test_finish("test_cuda_allocator");
}
