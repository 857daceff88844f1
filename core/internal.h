/* internal.h: what core/ and kernels/ share beyond the public header: errors, element access,
 * tensor construction helpers and the autograd node API. Never seen by Lua. */
#ifndef DP_INTERNAL_H
#define DP_INTERNAL_H
#include <stdint.h>
#include <string.h>
#include "dp.h"
#include "backend.h"

/* ---------------------------------------------------------------- errors (core/error.c) */

/* Set this thread's message (printf-style) and return code; use as `return dp_fail(...)`. */
int dp_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, returning NULL for constructors. */
void *dp_fail_null(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "ctx: " (used by containers such as the autograd engine). */
void dp_error_prefix(const char *ctx);

/* ---------------------------------------------------------------- dtype (core/dtype.c) */

/* Load element i (in elements, from p) of dtype as double / store with rounding. */
double dp_load_f64(const void *p, dp_dtype dtype, int64_t i);
void dp_store_f64(void *p, dp_dtype dtype, int64_t i, double v);
/* Float fast paths used by kernels for the low-precision dtypes. */
float dp_load_f32(const void *p, dp_dtype dtype, int64_t i);
void dp_store_f32(void *p, dp_dtype dtype, int64_t i, float v);
uint16_t dp_f32_to_bf16(float x);
uint16_t dp_f32_to_f16(float x);
uint8_t dp_f32_to_e4m3(float x);
uint8_t dp_f32_to_e5m2(float x);

/* ---------------------------------------------------------------- storage and tensors */

struct dp_storage {
    void *base;
    size_t bytes;
    dp_device device;
    int32_t refcount;
    int32_t category;    /* dp_mem_category its bytes count under (atomic: may be moved) */
    uint64_t version;    /* in-place writes so far (atomic), see dp_tensor_version */
    int32_t pinned;      /* 1: a CPU storage from the CUDA table's host_alloc (freed by host_free;
                          * writers wait for copies still reading it: dp_tensor_bump_version) */
};

/* ---------------------------------------------------------------- memory accounting (core/memory.c) */

/* Count delta bytes (negative when freed) on device under category: the device total, the
 * category's current and peak, and the snapshot taken when the total peaks. */
void dp_mem_account(dp_device device, int32_t category, int64_t delta);
/* Kernel scratch held (delta > 0) or handed back (delta < 0): DP_MEM_SCRATCH on device. */
void dp_mem_scratch(dp_device device, int64_t delta);

/* New tensor header viewing x's storage with the given geometry (retains the storage). */
dp_tensor *dp_tensor_view_of(const dp_tensor *x, int32_t ndim, const int64_t *shape,
                             const int64_t *stride, int64_t offset);
dp_tensor *dp_empty_like(const dp_tensor *x);           /* contiguous, same dtype and device */
dp_tensor *dp_empty_as(const dp_tensor *x, dp_dtype dtype, int32_t ndim, const int64_t *shape);
/* Row-major contiguous strides for shape. */
void dp_contiguous_strides(int64_t *stride, int32_t ndim, const int64_t *shape);
int64_t dp_shape_numel(int32_t ndim, const int64_t *shape);
/* "[2,3]" into buf. */
void dp_shape_str(char *buf, size_t size, int32_t ndim, const int64_t *shape);
/* Offset in elements of the flat row-major index i in t. */
int64_t dp_tensor_flat_offset(const dp_tensor *t, int64_t i);
/* Broadcast shapes of a and b into out_shape (ndim out); DP_ESHAPE naming op when they clash. */
int dp_broadcast_shapes(const char *op, const dp_tensor *a, const dp_tensor *b, int32_t *ndim,
                        int64_t *out_shape);
/* A stride-0 view of x broadcast to shape (no autograd); NULL on failure. */
dp_tensor *dp_broadcast_view(const dp_tensor *x, int32_t ndim, const int64_t *shape);
/* Raw no-grad ops used inside other ops and backward functions. */
int dp_check_same_device(const char *op, const dp_tensor *a, const dp_tensor *b);
int dp_check_float(const char *op, const dp_tensor *x);
/* Normalise a possibly negative dim; DP_EINDEX naming op when out of range. */
int dp_norm_dim(const char *op, int32_t *dim, int32_t ndim);

/* ---------------------------------------------------------------- autograd (core/autograd.c) */

/* Compute input gradients from the gradient of the node's output. grad_inputs[i] is NULL on
 * entry; the function sets a new reference for each input that requires grad (it may leave
 * others NULL). The gradient must have the input's shape (use dp_sum_to_shape after
 * broadcasting). Grad mode is off while it runs, so it may use the public ops. */
typedef int (*dp_backward_fn)(dp_node *node, dp_tensor *grad_out, dp_tensor **grad_inputs);

enum { DP_NODE_MAX_INPUTS = 4, DP_NODE_MAX_SAVED = 6 };

struct dp_node {
    const char *op;                             /* op name, for errors and dp_tensor_op_name */
    dp_backward_fn backward;
    int32_t refcount;
    int32_t n_inputs;
    dp_tensor *inputs[DP_NODE_MAX_INPUTS];      /* retained until the graph is freed */
    dp_tensor *saved[DP_NODE_MAX_SAVED];        /* retained tensors backward needs */
    double scalars[4];                          /* op constants (eps, p, alpha, ...) */
    int64_t ints[8];                            /* op integer arguments (dims, perm, ...) */
    int32_t out_ndim;                           /* output geometry, to check gradients */
    int64_t out_shape[8];
    dp_dtype out_dtype;
    int32_t freed;                              /* saved tensors already released */
    /* engine bookkeeping */
    dp_tensor *grad_accum;
    int32_t pending;
    int32_t visit_mark;
};

/* 1 when grad mode is on and any of inputs[n] requires grad. */
int dp_autograd_wanted(int32_t n, dp_tensor *const *inputs);
/* Create a node for out with the given inputs (retained) and attach it: out->grad_fn = node,
 * out->requires_grad = 1. Returns the node so the caller can save tensors and constants, or NULL
 * on allocation failure (out is then left untouched). */
dp_node *dp_autograd_record(dp_tensor *out, const char *op, dp_backward_fn backward, int32_t n,
                            dp_tensor *const *inputs);
/* Save t (retained) in slot. When t is the node's own output, pass a dp_detach'd alias to avoid
 * a reference cycle. */
void dp_node_save(dp_node *node, int32_t slot, dp_tensor *t);
/* Drop one reference to a node (frees it, its inputs and saved tensors at zero). */
void dp_node_release(dp_node *node);
/* Sum g over broadcast dims so it has shape[ndim]; returns a new reference. */
dp_tensor *dp_sum_to_shape(dp_tensor *g, int32_t ndim, const int64_t *shape);

/* ---------------------------------------------------------------- reductions and NN ops
 * (added for core/ops_embedding.c, core/ops_loss.c) */

/* The values of a contiguous i32/i64 tensor on any device, as a malloc'd int64 array of numel
 * entries that the caller frees; NULL (with the message naming op) on failure. Ops use it to
 * range-check indices and labels before a kernel trusts them. */
int64_t *dp_index_values(const char *op, const dp_tensor *idx);

/* ---------------------------------------------------------------- DP engine hooks (core/dpsgd/psg.c)
 * The backward functions of the ops that own parameters call these. */

typedef struct dp_psg_param dp_psg_param;
/* The active engine's record for parameter input t (looking through cast/contiguous/clone nodes to
 * the leaf), or NULL when no engine is active, t is not registered, or t is frozen. */
dp_psg_param *dp_psg_lookup(const dp_tensor *t);
/* Hand the engine one use of a parameter. x, gy: the op's input and output gradient with the
 * example as dim 0; w, b: the records of its weight and bias (either may be NULL). */
int dp_psg_tap_linear(dp_psg_param *w, dp_psg_param *b, dp_tensor *x, dp_tensor *gy);
int dp_psg_tap_embedding(dp_psg_param *w, dp_tensor *indices, dp_tensor *gy);
int dp_psg_tap_layer_norm(dp_psg_param *w, dp_psg_param *b, dp_tensor *x, dp_tensor *mean,
                          dp_tensor *rstd, dp_tensor *gy);
int dp_psg_tap_bias(dp_psg_param *b, dp_tensor *gy);
/* Called by the autograd engine before a gradient is accumulated into a leaf: fails (naming op and
 * parameter) when an engine is active and the leaf is a registered parameter (its gradient must
 * come through a tap) or an unregistered trainable one (is_param). */
int dp_psg_check_leaf(const dp_tensor *leaf, const char *op);

#endif
