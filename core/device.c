/* device.c: the op table for each device. CPU kernels are linked in; the CUDA backend is a separate
 * library (DP_CUDA_LIBNAME) loaded on first use, so libdpcore builds and runs without CUDA. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "internal.h"

#ifndef DP_CUDA_LIBNAME
#define DP_CUDA_LIBNAME "libdpcuda.so"
#endif

/* Exported by the CUDA backend: its table, or NULL with the reason in err (no driver, no GPU). */
typedef const dp_ops *(*cuda_backend_fn)(char *err, size_t errlen);

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static const dp_ops *cuda_ops;
static char cuda_error[512];

/* dlopen the backend next to this library first (build tree and install dir), then by name on
 * the default search path. */
static void *open_cuda_library(void) {
    Dl_info info;
    char path[4096], first_error[256] = "";
    if (dladdr((void *)dp_ops_for, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash) {
            int dir_len = (int)(slash - info.dli_fname);
            snprintf(path, sizeof path, "%.*s/%s", dir_len, info.dli_fname, DP_CUDA_LIBNAME);
            void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (handle) return handle;
            const char *e = dlerror();
            snprintf(first_error, sizeof first_error, "%s", e ? e : "dlopen failed");
        }
    }
    void *handle = dlopen(DP_CUDA_LIBNAME, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        if (first_error[0] && strstr(first_error, "No such file") == NULL)
            snprintf(cuda_error, sizeof cuda_error, "cannot load the CUDA backend: %s", first_error);
        else
            snprintf(cuda_error, sizeof cuda_error,
                     "cannot load the CUDA backend %s (%s); build with -DDP_CUDA=ON", DP_CUDA_LIBNAME,
                     e ? e : "dlopen failed");
    }
    return handle;
}

static void load_cuda(void) {
    void *handle = open_cuda_library();
    if (!handle) return;
    cuda_backend_fn entry = (cuda_backend_fn)dlsym(handle, "dp_cuda_backend");
    if (!entry) {
        snprintf(cuda_error, sizeof cuda_error, "%s has no dp_cuda_backend symbol", DP_CUDA_LIBNAME);
        dlclose(handle);
        return;
    }
    char reason[256] = "";
    cuda_ops = entry(reason, sizeof reason);
    /* The handle stays open even without a device: the CUDA runtime inside may have registered
     * exit handlers, and unloading it under them is not worth the few pages it holds. */
    if (!cuda_ops) snprintf(cuda_error, sizeof cuda_error, "%s", reason[0] ? reason : "no usable device");
}

const dp_ops *dp_ops_for(dp_device device) {
    switch (device) {
    case DP_CPU: return &dp_cpu_ops;
    case DP_CUDA:
        pthread_once(&cuda_once, load_cuda);
        if (!cuda_ops) return dp_fail_null(DP_EDEVICE, "cuda: %s", cuda_error);
        return cuda_ops;
    default: return dp_fail_null(DP_EDEVICE, "unknown device %d", (int)device);
    }
}

int32_t dp_device_available(dp_device device) {
    switch (device) {
    case DP_CPU: return 1;
    case DP_CUDA:
        pthread_once(&cuda_once, load_cuda);
        return cuda_ops != NULL;
    default: return 0;
    }
}

/* Tables without a sync entry (the CPU) finish every op before returning: nothing to wait for. */
int dp_device_sync(dp_device device) {
    const dp_ops *ops = dp_ops_for(device);
    if (!ops) {
        dp_error_prefix("device_sync");
        return DP_EDEVICE;
    }
    return ops->sync ? ops->sync() : 0;
}
