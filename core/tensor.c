/* tensor.c: tensor headers, reference-counted storage (counted by core/memory.c; pinned host
 * storage from the CUDA table), write versions and element access. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static int64_t live_tensors;

int64_t dp_live_tensors(void) { return __atomic_load_n(&live_tensors, __ATOMIC_RELAXED); }

/* ---------------------------------------------------------------- shapes */

int64_t dp_shape_numel(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void dp_contiguous_strides(int64_t *stride, int32_t ndim, const int64_t *shape) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

void dp_shape_str(char *buf, size_t size, int32_t ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

const char *dp_tensor_desc(const dp_tensor *t) {
    static _Thread_local char ring[8][160];
    static _Thread_local int next;
    char *buf = ring[next++ & 7];
    if (!t) return strcpy(buf, "(null)");
    char shape[128];
    dp_shape_str(shape, sizeof shape, t->ndim, t->shape);
    snprintf(buf, 160, "%s %s %s", shape, dp_dtype_name(t->dtype), dp_device_name(t->device));
    return buf;
}

int64_t dp_tensor_numel(const dp_tensor *t) { return dp_shape_numel(t->ndim, t->shape); }

int32_t dp_tensor_is_contiguous(const dp_tensor *t) {
    if (dp_tensor_numel(t) == 0) return 1;   /* no element to be out of place */
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int64_t dp_tensor_flat_offset(const dp_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t n = t->shape[d];
        off += (i % n) * t->stride[d];
        i /= n;
    }
    return off;
}

static int check_geometry(const char *op, dp_dtype dtype, dp_device device, int32_t ndim,
                          const int64_t *shape) {
    if ((unsigned)dtype >= DP_NUM_DTYPES)
        return dp_fail(DP_EDTYPE, "%s: unknown dtype %d", op, (int)dtype);
    if ((unsigned)device >= DP_NUM_DEVICES)
        return dp_fail(DP_EDEVICE, "%s: unknown device %d", op, (int)device);
    if (ndim < 0 || ndim > 8)
        return dp_fail(DP_ESHAPE, "%s: %d dims requested, tensors have 0 to 8", op, ndim);
    if (ndim > 0 && !shape) return dp_fail(DP_EARG, "%s: shape is NULL", op);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return dp_fail(DP_ESHAPE, "%s: dim %d has negative size %lld", op, i, (long long)shape[i]);
        if (shape[i] && n > INT64_MAX / 16 / shape[i])
            return dp_fail(DP_ENOMEM, "%s: %d-dim shape is too large", op, ndim);
        n *= shape[i];
    }
    return 0;
}

/* ---------------------------------------------------------------- headers and storage */

static dp_tensor *header_new(void) {
    dp_tensor *t = calloc(1, sizeof *t);
    if (!t) return dp_fail_null(DP_ENOMEM, "tensor: out of memory for a tensor header");
    t->refcount = 1;
    __atomic_add_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
    return t;
}

/* The CUDA table when pinned host memory can be had from it, else NULL (no error set). */
static const dp_ops *pinned_source(void) {
    if (!dp_device_available(DP_CUDA)) return NULL;
    const dp_ops *cuda = dp_ops_for(DP_CUDA);
    return cuda && cuda->host_alloc && cuda->host_free ? cuda : NULL;
}

static void storage_release(dp_storage *s) {
    if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    /* A pinned block goes back to the table that made it, which first waits for any copy still
     * reading it. */
    const dp_ops *ops = s->pinned ? dp_ops_for(DP_CUDA) : dp_ops_for(s->device);
    if (ops && s->base) (s->pinned ? ops->host_free : ops->free)(s->base);
    dp_mem_account(s->device, __atomic_load_n(&s->category, __ATOMIC_RELAXED), -(int64_t)s->bytes);
    free(s);
}

/* A new contiguous tensor on device; its storage from pinned->host_alloc when pinned is given
 * (a CPU tensor then), else from the device's allocator. */
static dp_tensor *new_tensor(const char *op, dp_dtype dtype, dp_device device, int32_t ndim,
                             const int64_t *shape, const dp_ops *pinned) {
    if (check_geometry(op, dtype, device, ndim, shape)) return NULL;
    const dp_ops *ops = pinned ? pinned : dp_ops_for(device);
    if (!ops) return NULL;
    int64_t n = dp_shape_numel(ndim, shape);
    size_t bytes = (size_t)n * (size_t)dp_dtype_size(dtype);
    dp_storage *s = calloc(1, sizeof *s);
    if (!s) return dp_fail_null(DP_ENOMEM, "%s: out of memory for storage header", op);
    /* Allocate at least one byte so every tensor has a valid data pointer. */
    s->base = pinned ? pinned->host_alloc(bytes ? bytes : 1) : ops->alloc(bytes ? bytes : 1);
    if (!s->base) {
        free(s);
        char shp[128], ctx[256];
        dp_shape_str(shp, sizeof shp, ndim, shape);
        if (pinned) {   /* keep host_alloc's reason (the CUDA call and its error) */
            snprintf(ctx, sizeof ctx, "%s: no page-locked memory for %s %s (%zu bytes)", op, shp,
                     dp_dtype_name(dtype), bytes);
            dp_error_prefix(ctx);
            return NULL;
        }
        return dp_fail_null(DP_ENOMEM, "%s: out of memory allocating %s %s on %s (%zu bytes)", op,
                            shp, dp_dtype_name(dtype), dp_device_name(device), bytes);
    }
    s->bytes = bytes;
    s->device = device;
    s->refcount = 1;
    s->pinned = pinned != NULL;
    s->category = dp_mem_get_category();
    dp_mem_account(device, s->category, (int64_t)bytes);
    dp_tensor *t = header_new();
    if (!t) { storage_release(s); return NULL; }
    t->dtype = dtype;
    t->device = device;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    dp_contiguous_strides(t->stride, ndim, t->shape);
    t->storage = s;
    t->data = s->base;
    return t;
}

dp_tensor *dp_tensor_empty(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape) {
    return new_tensor("empty", dtype, device, ndim, shape, NULL);
}

/* Pinned bytes count on the CPU under the current category, like any host tensor. */
dp_tensor *dp_tensor_empty_pinned(dp_dtype dtype, int32_t ndim, const int64_t *shape) {
    return new_tensor("empty_pinned", dtype, DP_CPU, ndim, shape, pinned_source());
}

int32_t dp_tensor_is_pinned(const dp_tensor *t) {
    return t && t->storage && t->storage->pinned ? 1 : 0;
}

dp_tensor *dp_tensor_full(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape,
                          double value) {
    dp_tensor *t = dp_tensor_empty(dtype, device, ndim, shape);
    if (t && dp_ops_for(device)->fill(t, value)) { dp_tensor_release(t); return NULL; }
    return t;
}

dp_tensor *dp_tensor_zeros(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape) {
    if (device == DP_CPU) {
        dp_tensor *t = dp_tensor_empty(dtype, device, ndim, shape);
        if (t) memset(t->data, 0, t->storage->bytes);
        return t;
    }
    return dp_tensor_full(dtype, device, ndim, shape, 0.0);
}

dp_tensor *dp_tensor_from_f64(dp_dtype dtype, int32_t ndim, const int64_t *shape, const double *src) {
    dp_tensor *t = dp_tensor_empty(dtype, DP_CPU, ndim, shape);
    if (!t) return NULL;
    int64_t n = dp_tensor_numel(t);
    if (n && !src) { dp_tensor_release(t); return dp_fail_null(DP_EARG, "from_f64: source is NULL"); }
    for (int64_t i = 0; i < n; i++) dp_store_f64(t->data, dtype, i, src[i]);
    return t;
}

dp_tensor *dp_tensor_from_raw(dp_dtype dtype, int32_t ndim, const int64_t *shape, const void *src) {
    dp_tensor *t = dp_tensor_empty(dtype, DP_CPU, ndim, shape);
    if (!t) return NULL;
    size_t bytes = (size_t)dp_tensor_numel(t) * (size_t)dp_dtype_size(dtype);
    if (bytes && !src) { dp_tensor_release(t); return dp_fail_null(DP_EARG, "from_raw: source is NULL"); }
    if (bytes) memcpy(t->data, src, bytes);
    return t;
}

dp_tensor *dp_tensor_scalar(dp_dtype dtype, dp_device device, double value) {
    return dp_tensor_full(dtype, device, 0, NULL, value);
}

dp_tensor *dp_tensor_view_of(const dp_tensor *x, int32_t ndim, const int64_t *shape,
                             const int64_t *stride, int64_t offset) {
    dp_tensor *t = header_new();
    if (!t) return NULL;
    t->dtype = x->dtype;
    t->device = x->device;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) { t->shape[i] = shape[i]; t->stride[i] = stride[i]; }
    t->offset = offset;
    t->storage = x->storage;
    __atomic_add_fetch(&x->storage->refcount, 1, __ATOMIC_RELAXED);
    t->data = (char *)x->storage->base + offset * dp_dtype_size(x->dtype);
    return t;
}

dp_tensor *dp_empty_like(const dp_tensor *x) {
    return dp_tensor_empty(x->dtype, x->device, x->ndim, x->shape);
}

dp_tensor *dp_empty_as(const dp_tensor *x, dp_dtype dtype, int32_t ndim, const int64_t *shape) {
    return dp_tensor_empty(dtype, x->device, ndim, shape);
}

void dp_tensor_retain(dp_tensor *t) {
    if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
}

void dp_tensor_release(dp_tensor *t) {
    if (!t || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    dp_tensor_release(t->grad);
    if (t->grad_fn) dp_node_release(t->grad_fn);
    storage_release(t->storage);
    __atomic_sub_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
    free(t);
}

/* ---------------------------------------------------------------- element access */

/* A contiguous host copy of t (t itself, retained, when it already is one). */
static dp_tensor *host_contiguous(const dp_tensor *t) {
    dp_tensor *c = dp_contiguous((dp_tensor *)t);
    if (!c || c->device == DP_CPU) return c;
    dp_tensor *h = dp_tensor_empty(c->dtype, DP_CPU, c->ndim, c->shape);
    if (h && dp_ops_for(c->device)->memcpy_d2h(h->data, c->data, h->storage->bytes)) {
        dp_tensor_release(h);
        h = NULL;
    }
    dp_tensor_release(c);
    return h;
}

int dp_tensor_to_f64(const dp_tensor *t, double *out) {
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    dp_tensor *h = host_contiguous(t);
    dp_set_grad_enabled(prev);
    if (!h) return DP_ENOMEM;
    int64_t n = dp_tensor_numel(h);
    for (int64_t i = 0; i < n; i++) out[i] = dp_load_f64(h->data, h->dtype, i);
    dp_tensor_release(h);
    return 0;
}

int dp_tensor_to_raw(const dp_tensor *t, void *out) {
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    dp_tensor *h = host_contiguous(t);
    dp_set_grad_enabled(prev);
    if (!h) return DP_ENOMEM;
    memcpy(out, h->data, (size_t)dp_tensor_numel(h) * (size_t)dp_dtype_size(h->dtype));
    dp_tensor_release(h);
    return 0;
}

static int check_host(const char *op, const dp_tensor *t) {
    if (!t) return dp_fail(DP_EARG, "%s: tensor is NULL", op);
    if (t->device != DP_CPU)
        return dp_fail(DP_EDEVICE, "%s: element access needs a cpu tensor, got %s", op, dp_tensor_desc(t));
    return 0;
}

int dp_tensor_get_flat(const dp_tensor *t, int64_t index, double *out) {
    if (check_host("get", t)) return DP_EDEVICE;
    int64_t n = dp_tensor_numel(t);
    if (index < 0 || index >= n)
        return dp_fail(DP_EINDEX, "get: flat index %lld out of range for %s (%lld elements)",
                       (long long)index, dp_tensor_desc(t), (long long)n);
    *out = dp_load_f64(t->data, t->dtype, dp_tensor_flat_offset(t, index));
    return 0;
}

static int offset_of(const char *op, const dp_tensor *t, const int64_t *idx, int64_t *off) {
    *off = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (idx[d] < 0 || idx[d] >= t->shape[d])
            return dp_fail(DP_EINDEX, "%s: index %lld out of range for dim %d of size %lld (%s)", op,
                           (long long)idx[d], d, (long long)t->shape[d], dp_tensor_desc(t));
        *off += idx[d] * t->stride[d];
    }
    return 0;
}

int dp_tensor_get(const dp_tensor *t, const int64_t *idx, double *out) {
    int64_t off;
    if (check_host("get", t) || offset_of("get", t, idx, &off)) return DP_EINDEX;
    *out = dp_load_f64(t->data, t->dtype, off);
    return 0;
}

int dp_tensor_set(dp_tensor *t, const int64_t *idx, double value) {
    int64_t off;
    if (check_host("set", t) || offset_of("set", t, idx, &off)) return DP_EINDEX;
    dp_tensor_bump_version(t);   /* first: it waits for copies still reading a pinned t */
    dp_store_f64(t->data, t->dtype, off, value);
    return 0;
}

/* ---------------------------------------------------------------- write versions */

uint64_t dp_tensor_version(const dp_tensor *t) {
    return t && t->storage ? __atomic_load_n(&t->storage->version, __ATOMIC_RELAXED) : 0;
}

/* Every in-place writer of the dp API counts its write here before writing, so this is where a
 * pinned storage waits for the asynchronous copies still reading it (a staging buffer rewritten
 * for the next batch must not change under the previous batch's copy). The wait can only fail
 * on a broken device; its message is then set, and the device's next op reports the failure. */
void dp_tensor_bump_version(dp_tensor *t) {
    if (!t || !t->storage) return;
    dp_storage *s = t->storage;
    if (s->pinned) {
        const dp_ops *cuda = dp_ops_for(DP_CUDA);
        if (cuda && cuda->host_wait) cuda->host_wait(s->base, s->bytes ? s->bytes : 1);
    }
    __atomic_add_fetch(&s->version, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- checks shared by ops */

int dp_check_same_device(const char *op, const dp_tensor *a, const dp_tensor *b) {
    if (a->device != b->device)
        return dp_fail(DP_EDEVICE, "%s: tensors on different devices (%s and %s)", op,
                       dp_tensor_desc(a), dp_tensor_desc(b));
    return 0;
}

int dp_check_float(const char *op, const dp_tensor *x) {
    if (!dp_dtype_is_float(x->dtype))
        return dp_fail(DP_EDTYPE, "%s: expected a float tensor, got %s", op, dp_tensor_desc(x));
    return 0;
}

int dp_norm_dim(const char *op, int32_t *dim, int32_t ndim) {
    int32_t d = *dim < 0 ? *dim + ndim : *dim;
    if (d < 0 || d >= (ndim ? ndim : 1) || (ndim == 0 && d != 0))
        return dp_fail(DP_EINDEX, "%s: dim %d out of range for a %d-dim tensor", op, *dim, ndim);
    *dim = d;
    return 0;
}

int dp_broadcast_shapes(const char *op, const dp_tensor *a, const dp_tensor *b, int32_t *ndim,
                        int64_t *out_shape) {
    int32_t n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return dp_fail(DP_ESHAPE, "%s: shapes do not broadcast (%s and %s: dim %d is %lld vs %lld)",
                           op, dp_tensor_desc(a), dp_tensor_desc(b), i, (long long)sa, (long long)sb);
        out_shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return 0;
}

dp_tensor *dp_broadcast_view(const dp_tensor *x, int32_t ndim, const int64_t *shape) {
    if (ndim < x->ndim)
        return dp_fail_null(DP_ESHAPE, "broadcast: cannot broadcast %s to %d dims", dp_tensor_desc(x), ndim);
    int64_t stride[8];
    int lead = ndim - x->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        if (j < 0) { stride[i] = 0; continue; }
        if (x->shape[j] == shape[i]) stride[i] = x->stride[j];
        else if (x->shape[j] == 1) stride[i] = 0;
        else {
            char shp[128];
            dp_shape_str(shp, sizeof shp, ndim, shape);
            return dp_fail_null(DP_ESHAPE, "broadcast: cannot broadcast %s to %s", dp_tensor_desc(x), shp);
        }
    }
    return dp_tensor_view_of(x, ndim, shape, stride, x->offset);
}

/* ---------------------------------------------------------------- dtype change in place */

int dp_tensor_retype_(dp_tensor *t, dp_dtype dtype) {
    const char *op = "tensor_retype_";
    if (!t) return dp_fail(DP_EARG, "%s: tensor is NULL", op);
    if ((unsigned)dtype >= DP_NUM_DTYPES || !dp_dtype_is_float(dtype))
        return dp_fail(DP_EDTYPE, "%s: target dtype must be a float dtype, got %s (tensor %s)", op,
                       (unsigned)dtype < DP_NUM_DTYPES ? dp_dtype_name(dtype) : "unknown",
                       dp_tensor_desc(t));
    if (!dp_dtype_is_float(t->dtype))
        return dp_fail(DP_EDTYPE, "%s: tensor %s is not a float tensor", op, dp_tensor_desc(t));
    if (t->grad_fn)
        return dp_fail(DP_EGRAPH, "%s: tensor %s is the result of %s, not a leaf; retype the leaf it "
                       "came from", op, dp_tensor_desc(t), t->grad_fn->op);
    if (__atomic_load_n(&t->storage->refcount, __ATOMIC_ACQUIRE) > 1)
        return dp_fail(DP_EGRAPH, "%s: other tensors view the storage of %s (views, detached "
                       "copies or saved graph tensors); release them first", op, dp_tensor_desc(t));
    if (!dp_tensor_is_contiguous(t))
        return dp_fail(DP_EARG, "%s: tensor %s must be contiguous", op, dp_tensor_desc(t));
    if (t->dtype == dtype) return 0;   /* nothing changes, so no write to count */
    const dp_ops *ops = dp_ops_for(t->device);
    if (!ops) return DP_EDEVICE;
    dp_storage *old = t->storage;
    /* The new storage belongs where the old one was counted. */
    int32_t prev = dp_mem_set_category(__atomic_load_n(&old->category, __ATOMIC_RELAXED));
    dp_tensor *tmp = old->pinned ? dp_tensor_empty_pinned(dtype, t->ndim, t->shape)   /* stays pinned */
                                 : dp_tensor_empty(dtype, t->device, t->ndim, t->shape);
    dp_mem_set_category(prev);
    if (!tmp) { dp_error_prefix(op); return DP_ENOMEM; }
    int rc = ops->copy(tmp, t);   /* converts, rounding to nearest even */
    if (rc) { dp_tensor_release(tmp); dp_error_prefix(op); return rc; }
    /* Swap storages: tmp's header takes the old one away with it. */
    dp_storage *fresh = tmp->storage;
    fresh->version = __atomic_load_n(&old->version, __ATOMIC_RELAXED) + 1;
    tmp->storage = old;
    t->storage = fresh;
    t->dtype = dtype;
    t->offset = 0;
    t->data = fresh->base;
    dp_contiguous_strides(t->stride, t->ndim, t->shape);
    dp_tensor_release(tmp);
    dp_tensor_release(t->grad);
    t->grad = NULL;
    return 0;
}
