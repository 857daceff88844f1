/* memory.c: byte accounting of tensor storage and kernel scratch per device and per memory
 * category (parameters, activations, per-sample buffers, ...): current bytes, peaks, and which
 * categories made up the device's peak. The allocator (tensor.c) and the kernels' scratch pools
 * report here. */
#include <pthread.h>
#include "internal.h"

enum { NCAT = DP_MEM_NUM_CATEGORIES };

static int64_t mem_current[DP_NUM_DEVICES];
static int64_t mem_peak[DP_NUM_DEVICES];
static int64_t cat_current[DP_NUM_DEVICES][NCAT];
static int64_t cat_peak[DP_NUM_DEVICES][NCAT];
static int64_t cat_at_peak[DP_NUM_DEVICES][NCAT];
/* Serialises the snapshots only (taken when the total sets a new peak, rare in steady state);
 * the counters themselves are atomics, as the allocator runs on many threads. */
static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local int32_t current_category = DP_MEM_OTHER;

static const char *const category_names[NCAT] = {
    "other", "parameters", "master", "optimizer", "activations", "per_sample", "gradients",
    "scratch",
};

static int valid_device(dp_device device) { return (unsigned)device < DP_NUM_DEVICES; }
static int valid_category(int32_t c) { return c >= 0 && c < NCAT; }

static int64_t load(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* Raise *peak to now if now is larger; 1 when this call raised it. */
static int raise_peak(int64_t *peak, int64_t now) {
    int64_t old = load(peak);
    while (now > old) {
        if (__atomic_compare_exchange_n(peak, &old, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return 1;
    }
    return 0;
}

/* Record every category's bytes as the make-up of the device's peak. Under concurrent
 * allocation the snapshot is of a moment near the peak, not necessarily summing to it exactly;
 * with one allocating thread it is exact. The re-check keeps a late snapshot from overwriting
 * one taken for a higher peak. */
static void snapshot(dp_device d, int64_t total) {
    pthread_mutex_lock(&snapshot_lock);
    if (total >= load(&mem_peak[d]))
        for (int c = 0; c < NCAT; c++)
            __atomic_store_n(&cat_at_peak[d][c], load(&cat_current[d][c]), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&snapshot_lock);
}

void dp_mem_account(dp_device device, int32_t category, int64_t delta) {
    if (!valid_device(device)) return;
    if (!valid_category(category)) category = DP_MEM_OTHER;
    /* The category first, so that a snapshot triggered by this change includes it. */
    int64_t cat_now = __atomic_add_fetch(&cat_current[device][category], delta, __ATOMIC_RELAXED);
    if (delta > 0) raise_peak(&cat_peak[device][category], cat_now);
    int64_t now = __atomic_add_fetch(&mem_current[device], delta, __ATOMIC_RELAXED);
    if (delta > 0 && raise_peak(&mem_peak[device], now)) snapshot(device, now);
}

void dp_mem_scratch(dp_device device, int64_t delta) { dp_mem_account(device, DP_MEM_SCRATCH, delta); }

int64_t dp_mem_current(dp_device device) { return valid_device(device) ? load(&mem_current[device]) : 0; }
int64_t dp_mem_peak(dp_device device) { return valid_device(device) ? load(&mem_peak[device]) : 0; }

void dp_mem_reset_peak(dp_device device) {
    if (!valid_device(device)) return;
    pthread_mutex_lock(&snapshot_lock);
    __atomic_store_n(&mem_peak[device], load(&mem_current[device]), __ATOMIC_RELAXED);
    for (int c = 0; c < NCAT; c++) {
        int64_t now = load(&cat_current[device][c]);
        __atomic_store_n(&cat_peak[device][c], now, __ATOMIC_RELAXED);
        __atomic_store_n(&cat_at_peak[device][c], now, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&snapshot_lock);
}

int64_t dp_mem_category_current(dp_device device, int32_t category) {
    return valid_device(device) && valid_category(category) ? load(&cat_current[device][category]) : 0;
}
int64_t dp_mem_category_peak(dp_device device, int32_t category) {
    return valid_device(device) && valid_category(category) ? load(&cat_peak[device][category]) : 0;
}
int64_t dp_mem_category_at_peak(dp_device device, int32_t category) {
    return valid_device(device) && valid_category(category) ? load(&cat_at_peak[device][category]) : 0;
}

/* ---------------------------------------------------------------- categories of new and old storage */

int32_t dp_mem_set_category(int32_t category) {
    if (!valid_category(category))
        return dp_fail(DP_EARG, "mem_set_category: category must be in [0, %d) (DP_MEM_OTHER .. "
                       "DP_MEM_SCRATCH), got %d", NCAT, (int)category);
    int32_t prev = current_category;
    current_category = category;
    return prev;
}

int32_t dp_mem_get_category(void) { return current_category; }

const char *dp_mem_category_name(int32_t category) {
    return valid_category(category) ? category_names[category] : "";
}

int dp_tensor_set_mem_category(dp_tensor *t, int32_t category) {
    if (!t || !t->storage) return dp_fail(DP_EARG, "tensor_set_mem_category: tensor is NULL");
    if (!valid_category(category))
        return dp_fail(DP_EARG, "tensor_set_mem_category: category must be in [0, %d), got %d (tensor %s)",
                       NCAT, (int)category, dp_tensor_desc(t));
    dp_storage *s = t->storage;
    int32_t old = __atomic_exchange_n(&s->category, category, __ATOMIC_RELAXED);
    if (old == category) return 0;
    int64_t bytes = (int64_t)s->bytes;
    /* Moving bytes between categories leaves the device total, and so its peak, unchanged. */
    __atomic_sub_fetch(&cat_current[s->device][old], bytes, __ATOMIC_RELAXED);
    raise_peak(&cat_peak[s->device][category],
               __atomic_add_fetch(&cat_current[s->device][category], bytes, __ATOMIC_RELAXED));
    return 0;
}

int32_t dp_tensor_mem_category(const dp_tensor *t) {
    if (!t || !t->storage) return dp_fail(DP_EARG, "tensor_mem_category: tensor is NULL");
    return __atomic_load_n(&t->storage->category, __ATOMIC_RELAXED);
}
