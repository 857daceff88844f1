/* dp.h: the one public header of dprun's C core (tensors, ops, autograd, RNG, privacy accountant).
 *
 * LuaJIT reads this file through ffi.cdef once lines starting with '#' are dropped, so the
 * declarations below use no macros, no inline code and no computed sizes.
 *
 * Conventions
 *  - A call that can fail returns 0 on success or a negative dp_status; a call that returns a
 *    pointer returns NULL on failure. Either way dp_last_error() then names the op, the shapes and
 *    dtypes involved, and what was expected. The core never exits, aborts or calls back into Lua.
 *  - Tensors are reference counted. Every function returning a dp_tensor* hands the caller one
 *    reference, to be dropped with dp_tensor_release(). Arguments are borrowed, never stolen.
 *  - Ops returning a new tensor record an autograd node when grad mode is on and an input
 *    requires grad. Functions ending in '_' write into their first argument and record nothing.
 *  - Lua reads struct fields; only C writes them.
 */
#ifndef DP_H
#define DP_H
#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ dtypes, devices, errors */

typedef enum {
    DP_F32 = 0,
    DP_F64 = 1,        /* for references and gradient checks */
    DP_BF16 = 2,
    DP_F16 = 3,
    DP_FP8_E4M3 = 4,   /* OCP 8-bit float, saturating: max 448, no inf */
    DP_FP8_E5M2 = 5,   /* OCP 8-bit float, IEEE-like: max 57344, has inf */
    DP_I32 = 6,
    DP_I64 = 7,
    DP_U8 = 8,         /* booleans and masks */
    DP_NUM_DTYPES = 9
} dp_dtype;

typedef enum { DP_CPU = 0, DP_CUDA = 1, DP_NUM_DEVICES = 2 } dp_device;

typedef enum {
    DP_OK = 0,
    DP_ESHAPE = -1,        /* shapes do not fit the op */
    DP_EDTYPE = -2,        /* dtype not supported by the op */
    DP_EDEVICE = -3,       /* device unavailable or tensors on different devices */
    DP_ENOMEM = -4,        /* allocation failed */
    DP_EINDEX = -5,        /* index out of range */
    DP_EARG = -6,          /* bad scalar argument */
    DP_EUNSUPPORTED = -7,  /* valid request this build cannot do */
    DP_EIO = -8,           /* file or stream error */
    DP_EGRAPH = -9,        /* autograd misuse (backward twice, non-scalar root, ...) */
    DP_EINTERNAL = -10
} dp_status;

/* Message for the last failure on this thread (never NULL; "" when none). */
const char *dp_last_error(void);
/* Forget the last message. */
void dp_clear_error(void);
/* Version string of the library, e.g. "0.1.0". */
const char *dp_version(void);

/* Name ("f32", "bf16", "fp8_e4m3", ...), element size in bytes, and whether the dtype is a float. */
const char *dp_dtype_name(dp_dtype dtype);
int32_t dp_dtype_size(dp_dtype dtype);
int32_t dp_dtype_is_float(dp_dtype dtype);
/* Dtype for a name, also accepting aliases ("float32", "e4m3", "bool"); -1 when unknown. */
int32_t dp_dtype_from_name(const char *name);
const char *dp_device_name(dp_device device);

/* Scalar conversions. Narrowing ones round to nearest, ties to even; NaN stays NaN, and Inf stays
 * Inf except in e4m3, which has no Inf and saturates to +-448 (as do finite overflows). f16 and
 * e5m2 overflow to Inf; bf16 overflows to Inf. Subnormals are kept. Converting from double rounds
 * once (no double rounding through f32). */
uint16_t dp_f64_to_bf16(double x);
uint16_t dp_f64_to_f16(double x);
uint8_t dp_f64_to_e4m3(double x);
uint8_t dp_f64_to_e5m2(double x);
float dp_bf16_to_f32(uint16_t h);
float dp_f16_to_f32(uint16_t h);
float dp_e4m3_to_f32(uint8_t b);
float dp_e5m2_to_f32(uint8_t b);
/* Array forms (n elements, contiguous), float input rounding once. */
void dp_f32_to_bf16_array(uint16_t *out, const float *in, int64_t n);
void dp_bf16_to_f32_array(float *out, const uint16_t *in, int64_t n);

/* ------------------------------------------------------------------ tensors */

typedef struct dp_storage dp_storage;
typedef struct dp_node dp_node;

typedef struct dp_tensor {
    dp_dtype dtype;
    dp_device device;
    int32_t ndim;                /* 0 (scalar) .. 8 */
    int32_t requires_grad;       /* 1: gradients flow to (a leaf) or through (a result) it */
    int64_t shape[8];
    int64_t stride[8];           /* in elements; 0 for expanded dims */
    int64_t offset;              /* in elements, from the start of the storage */
    void *data;                  /* address of element [0,...,0] */
    dp_storage *storage;         /* shared by views, reference counted */
    int32_t refcount;
    int32_t is_param;            /* set by the Lua library for trainable parameters */
    struct dp_tensor *grad;      /* accumulated gradient of a leaf, or NULL */
    dp_node *grad_fn;            /* node that produced a result, NULL for leaves */
} dp_tensor;

/* New contiguous tensor; _empty leaves memory uninitialised, _zeros clears it. */
dp_tensor *dp_tensor_empty(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape);
dp_tensor *dp_tensor_zeros(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape);
dp_tensor *dp_tensor_full(dp_dtype dtype, dp_device device, int32_t ndim, const int64_t *shape,
                          double value);
/* New CPU tensor holding a copy of n = numel doubles converted to dtype. */
dp_tensor *dp_tensor_from_f64(dp_dtype dtype, int32_t ndim, const int64_t *shape, const double *src);
/* New CPU tensor holding a copy of raw elements already in dtype's layout (row-major). */
dp_tensor *dp_tensor_from_raw(dp_dtype dtype, int32_t ndim, const int64_t *shape, const void *src);
/* 0-d tensor. */
dp_tensor *dp_tensor_scalar(dp_dtype dtype, dp_device device, double value);

void dp_tensor_retain(dp_tensor *t);
void dp_tensor_release(dp_tensor *t);   /* NULL is allowed */

int64_t dp_tensor_numel(const dp_tensor *t);
int32_t dp_tensor_is_contiguous(const dp_tensor *t);
/* Copy all elements, in row-major order, as doubles into out[numel]. */
int dp_tensor_to_f64(const dp_tensor *t, double *out);
/* Copy all elements, row-major, in the tensor's own dtype into out[numel * dtype size]. */
int dp_tensor_to_raw(const dp_tensor *t, void *out);
/* Element at a flat row-major index, or at a multi-index idx[ndim], as a double. */
int dp_tensor_get_flat(const dp_tensor *t, int64_t index, double *out);
int dp_tensor_get(const dp_tensor *t, const int64_t *idx, double *out);
int dp_tensor_set(dp_tensor *t, const int64_t *idx, double value);
/* Human-readable "[2,3] f32 cpu" into a thread-local buffer valid until the next 8 calls. */
const char *dp_tensor_desc(const dp_tensor *t);

/* ------------------------------------------------------------------ views (no copy; autograd-aware) */

/* Same elements, new shape; one entry may be -1. Copies only when the strides do not allow a view. */
dp_tensor *dp_reshape(dp_tensor *x, int32_t ndim, const int64_t *shape);
/* perm[ndim] is a permutation of 0..ndim-1. */
dp_tensor *dp_permute(dp_tensor *x, const int32_t *perm);
dp_tensor *dp_transpose(dp_tensor *x, int32_t dim0, int32_t dim1);
/* Elements start..start+length-1 along dim. */
dp_tensor *dp_narrow(dp_tensor *x, int32_t dim, int64_t start, int64_t length);
/* Every step-th element from start along dim, count of them (step >= 1). */
dp_tensor *dp_slice(dp_tensor *x, int32_t dim, int64_t start, int64_t count, int64_t step);
/* Drop dim by taking index along it. */
dp_tensor *dp_select(dp_tensor *x, int32_t dim, int64_t index);
/* Broadcast size-1 dims (and new leading dims) to shape; -1 keeps a size. */
dp_tensor *dp_expand(dp_tensor *x, int32_t ndim, const int64_t *shape);
dp_tensor *dp_unsqueeze(dp_tensor *x, int32_t dim);
dp_tensor *dp_squeeze(dp_tensor *x, int32_t dim);
/* x itself (retained) when contiguous, else a contiguous copy. */
dp_tensor *dp_contiguous(dp_tensor *x);
/* A new tensor sharing storage with x, cut from the graph. */
dp_tensor *dp_detach(dp_tensor *x);
/* A contiguous copy of x (always a copy), in the graph. */
dp_tensor *dp_clone(dp_tensor *x);
/* Cast to dtype (RNE), in the graph: the gradient is cast back. Returns x retained if same dtype. */
dp_tensor *dp_cast(dp_tensor *x, dp_dtype dtype);

/* ------------------------------------------------------------------ precision: versions, copies, fp8 */

/* How many in-place writes t's storage has had (dp_copy_, dp_fill_, dp_axpy_, dp_scale_,
 * dp_tensor_set, dp_rand_, dp_randn_, dp_noise_add_, the optimizer steps, dp_tensor_retype_,
 * dp_cast_into's refresh of its cache). Views share the count. A low-precision weight copy made at
 * version v is stale once the master's version differs. */
uint64_t dp_tensor_version(const dp_tensor *t);
/* Count a write made through t->data directly (from Lua's FFI, say). Call it before the write: on
 * a pinned tensor it first waits for any copy to the device still reading the storage. */
void dp_tensor_bump_version(dp_tensor *t);

/* Binary elementwise ops (add, sub, mul, div, maximum) on two float tensors of different dtypes
 * promote the narrower operand first (through dp_cast, so gradients flow): fp8 < bf16, f16 < f32 <
 * f64, and bf16 with f16 (or e4m3 with e5m2) gives f32. Integer/float mixes are still an error. */

/* x cast into cache's dtype as an autograd node "cast" from x: the gradient is cast back to x's
 * dtype, and the DP engine sees x through it as through dp_cast. cache: contiguous, x's shape, a
 * float dtype. refresh = 1 first converts x into cache (round to nearest even; bumps cache's
 * version), 0 trusts cache's values (the caller checked dp_tensor_version). The result shares
 * cache's storage. Lets a low-precision weight copy be made once per update, not per forward. */
dp_tensor *dp_cast_into(dp_tensor *x, dp_tensor *cache, int32_t refresh);

/* Convert a contiguous leaf in place to another float dtype (new storage, round to nearest even).
 * The dp_tensor pointer stays, so DP-engine registrations and optimizer state stay valid. Clears
 * its .grad and bumps the version. Fails (DP_EGRAPH) when it has a grad_fn or when other tensors
 * view its storage. The storage keeps its memory category. */
int dp_tensor_retype_(dp_tensor *t, dp_dtype dtype);

/* fp8 compute, emulated: GEMMs then run on the rounded values, which is what an fp8 tensor core
 * multiplies before accumulating in f32 (Micikevicius et al., "FP8 formats for deep learning",
 * 2022). Quantisation rounds x * s to nearest even in dtype (DP_FP8_E4M3 or DP_FP8_E5M2) and
 * saturates to the largest finite value (+-448, +-57344); NaN stays NaN. scale: f32 tensor of
 * shape (1) (one scale per tensor) or (x.shape[0]) (one per example, dim 0). */
/* The power of two s with amax * s <= max_finite(dtype) * 2^-margin, as large as possible; 1 when
 * amax is 0, NaN or Inf. */
double dp_fp8_scale_for(double amax, dp_dtype dtype, int32_t margin);
/* out = round(x * s) / s in x's dtype; straight-through gradient (identity). amax_out (NULL or
 * f32 of scale's shape) receives max |x| over each scale's elements (NaN ignored; Inf counts).
 * just_in_time = 1: first set each scale from that amax with dp_fp8_scale_for(., dtype, 0)
 * (written into scale), 0: use scale as given. */
dp_tensor *dp_fake_quant(dp_tensor *x, dp_dtype dtype, dp_tensor *scale, dp_tensor *amax_out,
                         int32_t just_in_time);
/* Identity forward; in backward the incoming gradient g becomes dp_fake_quant(g, dtype, scale,
 * amax_out, just_in_time) (E5M2 for fp8 training). scale and amax_out are retained by the node
 * and read at backward time, so the caller may update a delayed scale after the forward. */
dp_tensor *dp_grad_quant(dp_tensor *x, dp_dtype dtype, dp_tensor *scale, dp_tensor *amax_out,
                         int32_t just_in_time);

/* ------------------------------------------------------------------ ops (autograd-aware) */

/* Elementwise binary ops broadcast NumPy-style; a and b must share a device. Two float dtypes
 * promote (see "precision" above); a float with an integer dtype is an error. */
dp_tensor *dp_add(dp_tensor *a, dp_tensor *b);
dp_tensor *dp_sub(dp_tensor *a, dp_tensor *b);
dp_tensor *dp_mul(dp_tensor *a, dp_tensor *b);
dp_tensor *dp_div(dp_tensor *a, dp_tensor *b);
/* max(a, b) elementwise; ties send the gradient to a. */
dp_tensor *dp_maximum(dp_tensor *a, dp_tensor *b);
/* x*scale + shift, and x^p (p a constant). */
dp_tensor *dp_affine(dp_tensor *x, double scale, double shift);
dp_tensor *dp_pow_scalar(dp_tensor *x, double p);
/* Unary functions. gelu is the erf form 0.5 x (1 + erf(x / sqrt 2)). */
dp_tensor *dp_neg(dp_tensor *x);
dp_tensor *dp_exp(dp_tensor *x);
dp_tensor *dp_log(dp_tensor *x);
dp_tensor *dp_sqrt(dp_tensor *x);
dp_tensor *dp_abs(dp_tensor *x);
dp_tensor *dp_tanh(dp_tensor *x);
dp_tensor *dp_sigmoid(dp_tensor *x);
dp_tensor *dp_relu(dp_tensor *x);
dp_tensor *dp_gelu(dp_tensor *x);

/* a (..., M, K) @ b (..., K, N) -> (..., M, N); leading batch dims broadcast. 1-D operands are
 * promoted as in NumPy. f32/f64 through BLAS; bf16/f16/fp8 with f32 accumulation, result in a's
 * dtype. */
dp_tensor *dp_matmul(dp_tensor *a, dp_tensor *b);
/* x (..., in) @ w(out, in)^T + bias(out) -> (..., out); bias may be NULL. */
dp_tensor *dp_linear(dp_tensor *x, dp_tensor *w, dp_tensor *bias);
/* act(dp_linear(x, w, bias)) as one op: the GEMM, then bias and activation in one fused pass
 * (backend bias_act), one autograd node "linear_act" saving x, w and the pre-activation (gelu,
 * relu) or its own output (tanh). The DP engine taps w and bias exactly as for dp_linear (with the
 * gradient at the pre-activation). Values may differ from the unfused ops in the last bit (the
 * bias is added after the GEMM, not inside it). DP_ACT_NONE is dp_linear itself. */
typedef enum { DP_ACT_NONE = 0, DP_ACT_GELU = 1, DP_ACT_RELU = 2, DP_ACT_TANH = 3 } dp_activation;
dp_tensor *dp_linear_act(dp_tensor *x, dp_tensor *w, dp_tensor *bias, int32_t act);
/* (scale_a * a) @ (scale_b * b) for fp8 a (..., M, K) and b (..., K, N) (e4m3 or e5m2, not both
 * e5m2; at least 2-D, batch dims broadcast), f32 accumulation, result in out_dtype (bf16, f16 or
 * f32). cuBLASLt's fp8 kernels on sm_89+ (their accumulation may be coarser than f32; set
 * DP_CUDA_FP8=widen for exact f32), exact widening elsewhere (the CPU). The scales are used
 * as f32 factors: finite, > 0 and within f32's normal range. Not differentiable: fails while grad
 * mode is on and an input requires grad. */
dp_tensor *dp_matmul_fp8(dp_tensor *a, dp_tensor *b, double scale_a, double scale_b, dp_dtype out_dtype);

/* Reductions over dims[ndims] (ndims = 0: all dims). keepdim keeps them as size 1. */
dp_tensor *dp_sum(dp_tensor *x, int32_t ndims, const int32_t *dims, int32_t keepdim);
dp_tensor *dp_mean(dp_tensor *x, int32_t ndims, const int32_t *dims, int32_t keepdim);
/* Max over one dim (values, in the graph; the gradient goes to the first maximum). */
dp_tensor *dp_max(dp_tensor *x, int32_t dim, int32_t keepdim);
/* Index (i64) of the first maximum along dim; not differentiable. */
dp_tensor *dp_argmax(dp_tensor *x, int32_t dim, int32_t keepdim);

dp_tensor *dp_softmax(dp_tensor *x, int32_t dim);
dp_tensor *dp_log_softmax(dp_tensor *x, int32_t dim);
/* softmax(x + mask) along dim, as one op (one kernel, no (x + mask) tensor): BERT's attention
 * probabilities under an additive padding mask. Only the last dim is supported (dim = -1 or
 * ndim - 1; anything else fails with DP_EARG). mask is an additive bias of x's float dtype (no
 * promotion: cast it first), broadcastable to x (e.g. (B, 1, 1, T) for x (B, H, T, T)); -inf
 * entries give weight 0 (a row of only -inf gives NaN, as the composed ops do). The sum is
 * rounded to x's dtype before the softmax, so the result equals dp_softmax(dp_add(x, mask), dim)
 * bit for bit on the same backend. Differentiable in x only (one node "softmax_masked", whose
 * backward is softmax's); while grad mode is on, a mask that requires grad fails with DP_EARG. */
dp_tensor *dp_softmax_masked(dp_tensor *x, dp_tensor *mask, int32_t dim);
/* Normalise over the last dim: (x - mean) / sqrt(var + eps) * weight + bias; weight and bias
 * (shape [last]) may be NULL. */
dp_tensor *dp_layer_norm(dp_tensor *x, dp_tensor *weight, dp_tensor *bias, double eps);
/* Rows of weight (V, D) picked by integer indices of any shape -> (..., D). The backward
 * scatter-adds into weight's gradient (repeated indices add). */
dp_tensor *dp_embedding(dp_tensor *weight, dp_tensor *indices);
/* out = x with rows index[i] of dim 0 increased by src[i] (functional scatter-add). */
dp_tensor *dp_index_add(dp_tensor *x, dp_tensor *indices, dp_tensor *src);
/* Cross-entropy of logits (N, C) against integer labels (N); labels equal to ignore_index add
 * nothing. reduction: 0 none (N), 1 mean over non-ignored rows, 2 sum. */
dp_tensor *dp_cross_entropy(dp_tensor *logits, dp_tensor *labels, int64_t ignore_index,
                            int32_t reduction);
/* x where mask (u8, broadcast to x) is 0, value where it is nonzero. */
dp_tensor *dp_masked_fill(dp_tensor *x, dp_tensor *mask, double value);

/* ------------------------------------------------------------------ random numbers */

/* Counter-based generator: Philox4x32-10 keyed by seed. Stream position = counter (in blocks of
 * four 32-bit outputs). Every draw is a pure function of (seed, counter), so the CUDA backend can
 * reproduce it, and saving the two fields saves the state. */
typedef struct dp_rng {
    uint64_t seed;
    uint64_t counter;
} dp_rng;

void dp_rng_init(dp_rng *rng, uint64_t seed);
/* One Philox4x32-10 block: out[4] for key (seed) and 128-bit counter (ctr_lo, ctr_hi). */
void dp_philox4x32(uint32_t out[4], uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi);
/* Fill x with U[0,1) / N(mean, std^2) and advance rng->counter by the blocks used. */
int dp_rand_(dp_tensor *x, dp_rng *rng);
int dp_randn_(dp_tensor *x, dp_rng *rng, double mean, double std);
/* Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p). With
 * train = 0 or p = 0 returns x retained. */
dp_tensor *dp_dropout(dp_tensor *x, double p, int32_t train, dp_rng *rng);

/* ------------------------------------------------------------------ in-place and no-grad helpers */

int dp_fill_(dp_tensor *x, double value);
/* dst = src, converting dtype (RNE) and broadcasting src to dst's shape. */
int dp_copy_(dp_tensor *dst, const dp_tensor *src);
/* dst += alpha * src, with src broadcast to dst's shape (used for gradient accumulation and
 * optimizer updates). */
int dp_axpy_(dp_tensor *dst, double alpha, const dp_tensor *src);
/* dst *= alpha. */
int dp_scale_(dp_tensor *dst, double alpha);

/* ------------------------------------------------------------------ autograd */

/* Backpropagate from root. grad_root may be NULL when root has one element (then it is 1).
 * Leaves with requires_grad accumulate into ->grad. Saved tensors are freed afterwards unless
 * retain_graph is 1. */
int dp_backward(dp_tensor *root, const dp_tensor *grad_root, int32_t retain_graph);
void dp_set_grad_enabled(int32_t enabled);
int32_t dp_is_grad_enabled(void);
int dp_tensor_set_requires_grad(dp_tensor *t, int32_t requires_grad);
/* Replace t->grad by g (retained; NULL clears). */
int dp_tensor_set_grad(dp_tensor *t, dp_tensor *g);
/* Name of the op that produced t ("" for leaves). */
const char *dp_tensor_op_name(const dp_tensor *t);

/* ------------------------------------------------------------------ memory and threads */

/* Bytes currently held by tensor storage on a device, and the peak since the last reset. */
int64_t dp_mem_current(dp_device device);
int64_t dp_mem_peak(dp_device device);
void dp_mem_reset_peak(dp_device device);
/* Memory by category. Each storage is tagged when allocated with its thread's current category
 * (DP_MEM_OTHER unless set) and can be moved later; kernels' pooled scratch (low-precision GEMM
 * conversions, ...) counts as DP_MEM_SCRATCH. dp_mem_reset_peak resets every category's peak. */
typedef enum {
    DP_MEM_OTHER = 0, DP_MEM_PARAMETERS = 1,   /* weights as the model computes with them */
    DP_MEM_MASTER = 2,                         /* fp32 masters kept beside low-precision copies */
    DP_MEM_OPTIMIZER = 3, DP_MEM_ACTIVATIONS = 4,
    DP_MEM_PER_SAMPLE = 5,                     /* the DP engine's norms, Grams, scaled inputs */
    DP_MEM_GRADIENTS = 6,                      /* .grad and the clipped-sum accumulators */
    DP_MEM_SCRATCH = 7, DP_MEM_NUM_CATEGORIES = 8
} dp_mem_category;
/* Set this thread's category for new storage; returns the previous one (or DP_EARG). */
int32_t dp_mem_set_category(int32_t category);
int32_t dp_mem_get_category(void);
const char *dp_mem_category_name(int32_t category);   /* "parameters", "master", ... */
/* Move t's whole storage to another category; the category t's storage is in. */
int dp_tensor_set_mem_category(dp_tensor *t, int32_t category);
int32_t dp_tensor_mem_category(const dp_tensor *t);
/* Bytes of a category now, its own peak, and its bytes at the moment the device total peaked. */
int64_t dp_mem_category_current(dp_device device, int32_t category);
int64_t dp_mem_category_peak(dp_device device, int32_t category);
int64_t dp_mem_category_at_peak(dp_device device, int32_t category);
/* Live tensor headers (for leak checks in tests). */
int64_t dp_live_tensors(void);
/* Threads used by CPU kernels and BLAS. */
void dp_set_num_threads(int32_t n);
int32_t dp_get_num_threads(void);
/* 1 when a backend for the device is loaded and has a usable device. */
int32_t dp_device_available(dp_device device);
/* Wait until every op queued on the device has finished (a no-op on the CPU). */
int dp_device_sync(dp_device device);
/* A new CPU tensor in page-locked memory when a CUDA device is available (copies from it to the
 * device are asynchronous), in plain memory otherwise; contiguous, uninitialised. Writers through
 * the dp API wait for any copy still reading it; reads are never blocked. */
dp_tensor *dp_tensor_empty_pinned(dp_dtype dtype, int32_t ndim, const int64_t *shape);
/* 1 when t's storage is page-locked host memory. */
int32_t dp_tensor_is_pinned(const dp_tensor *t);
/* Name of the GEMM engine that ran the last CPU matmul of a dtype ("openblas", "onednn",
 * "convert+openblas"), for benchmarks and tests. */
const char *dp_matmul_engine(dp_dtype dtype);

/* ------------------------------------------------------------------ DP-SGD: ops the engine sees */

/* x (B, ..., p) + bias (p): a standalone bias whose per-sample gradient the DP engine sees (a bias
 * added with dp_add is an ordinary op, and a registered parameter reaching it fails backward). */
dp_tensor *dp_bias_add(dp_tensor *x, dp_tensor *bias);
/* Rows of x (any dtype, any device) along dim 0 at indices (1-D i32/i64): (n, ...). For batching
 * data; not differentiable. Indices are range-checked. */
dp_tensor *dp_index_select_rows(dp_tensor *x, dp_tensor *indices);

/* ------------------------------------------------------------------ DP-SGD: noise and sampling */

/* Generators for DP noise and Poisson sampling.
 *  - reproducible: Philox4x32-10 keyed by seed, 128-bit counter (block counter, stream). The
 *    same (seed, stream, counter) gives the same draws on every backend.
 *  - secure: ChaCha20 (RFC 8439) keyed with 256 bits from the operating system's CSPRNG
 *    (getrandom). The key stays in C memory, is never returned, and is wiped when freed.
 * Normals are drawn in double: Box-Muller on two 53-bit uniforms in (0, 1), so |z| reaches about
 * 8.65 (the tail beyond has probability below 1e-17). */
typedef enum { DP_NOISE_REPRODUCIBLE = 0, DP_NOISE_SECURE = 1 } dp_noise_mode;
typedef struct dp_noise dp_noise;

dp_noise *dp_noise_new_seeded(uint64_t seed, uint64_t stream, uint64_t counter);
/* NULL with a message when the OS has no CSPRNG to key it. */
dp_noise *dp_noise_new_secure(uint64_t stream);
void dp_noise_free(dp_noise *noise);
int32_t dp_noise_mode_of(const dp_noise *noise);
/* Position (blocks consumed) and, in reproducible mode, the seed and stream (secure mode reports
 * seed 0: the key is never revealed). */
int dp_noise_state(const dp_noise *noise, uint64_t *seed, uint64_t *stream, uint64_t *counter);
/* dst (contiguous f32/f64, any device) += std * N(0, 1): drawn and added in double, rounded once
 * to dst's dtype. Advances the counter by ceil(n / 2) blocks. */
int dp_noise_add_(dp_noise *noise, dp_tensor *dst, double std);
/* n standard normals / uniforms in (0, 1), doubles, into out[n] (for tests and samplers). */
int dp_noise_normals(dp_noise *noise, double *out, int64_t n);
int dp_noise_uniforms(dp_noise *noise, double *out, int64_t n);
/* Poisson subsampling: each of 0..n-1 independently with probability q. The chosen indices go
 * in ascending order to out[capacity]; *count receives how many were chosen. When count exceeds
 * capacity nothing is lost: the call fails with DP_EARG, *count says the size needed, and the
 * generator is left where it was so the caller can retry with a larger buffer. */
int dp_poisson_sample(dp_noise *noise, int64_t n, double q, int64_t *out, int64_t capacity,
                      int64_t *count);
/* A uniform random permutation of 0..n-1 into out[n] (Fisher-Yates). */
int dp_shuffle(dp_noise *noise, int64_t *out, int64_t n);

/* ------------------------------------------------------------------ DP-SGD: per-sample gradients */

/* The per-sample gradient engine (book-keeping DP-SGD; Bu, Wang, Zha, Karypis, "Differentially
 * private optimization on large model at small cost", ICML 2023). Parameters are registered once.
 * While the engine is active, the backward of dp_linear, dp_embedding, dp_layer_norm and
 * dp_bias_add does not write a registered parameter's .grad: it hands the engine the op's input
 * and output gradient (a "tap"). After the backward the engine computes each example's gradient
 * norm, its clip factor, and the clipped sum as one GEMM over scaled output gradients, into f32
 * (f64 for f64 parameters) accumulators that span the micro-batches of a logical batch; noise is
 * then added once and written to .grad. Any other op reaching a registered parameter fails the
 * backward, as does a trainable parameter (is_param) that is not registered.
 * Dim 0 of every tapped input is the example. */
typedef struct dp_psg dp_psg;

typedef enum { DP_PSG_AUTO = 0, DP_PSG_GHOST = 1, DP_PSG_MATERIALISE = 2 } dp_psg_form;
typedef enum {
    DP_PSG_NONE = 0, DP_PSG_LINEAR_WEIGHT = 1, DP_PSG_LINEAR_BIAS = 2, DP_PSG_EMBEDDING = 3,
    DP_PSG_NORM_WEIGHT = 4, DP_PSG_NORM_BIAS = 5, DP_PSG_BIAS = 6
} dp_psg_kind;
typedef enum { DP_CLIP_FLAT = 0, DP_CLIP_PER_LAYER = 1, DP_CLIP_AUTOMATIC = 2 } dp_clip_mode;

typedef struct dp_psg_param_info {
    const char *name;          /* valid while the engine lives */
    int32_t group;             /* clipping group (per-layer clipping) */
    int32_t trainable;         /* requires_grad when the micro-batch began */
    int32_t kind;              /* dp_psg_kind of its last tap */
    int32_t taps;              /* uses seen in the current micro-batch */
    int32_t form_request;      /* dp_psg_form asked for */
    int32_t form_used;         /* GHOST or MATERIALISE for linear weights in the last norms; else 0 */
    int64_t seq_len;           /* tokens per example in its last norms (1 for 2-D inputs) */
    double ghost_flops, materialise_flops;   /* estimated cost of each form for those shapes */
    int32_t input_dtype;       /* dp_dtype of its last tap's input (activations), -1 before any */
    int32_t grad_dtype;        /* dp_dtype of its last tap's output gradient, -1 before any */
    int32_t norm_dtype;        /* dtype its last norms were accumulated in (F32 or F64), -1 before */
    int32_t accum_dtype;       /* dtype of its clipped-sum accumulator (where noise is added), -1 if none yet */
    double sum_norm;           /* L2 norm of its clipped sum (before noise, loss scale divided out)
                                * at the last dp_psg_finish, in f64; -1 before */
    double noise_norm;         /* L2 norm of the noise added to it at that finish; -1 before */
} dp_psg_param_info;

typedef struct dp_clip_config {
    int32_t mode;              /* dp_clip_mode */
    double max_norm;           /* C for flat and automatic */
    int32_t n_groups;          /* per-layer: thresholds[g] for group g */
    const double *thresholds;
    double gamma;              /* automatic: c_i = C / (norm_i + gamma); 0 selects 0.01 */
} dp_clip_config;

typedef struct dp_clip_stats {
    int64_t samples;           /* examples in the micro-batch */
    int64_t clipped;           /* examples whose factor is below 1 (any group) */
    int64_t nonfinite;         /* examples with a NaN or Inf gradient: zeroed, not summed */
    double norm_mean, norm_max;/* of the finite per-example total norms */
} dp_clip_stats;

dp_psg *dp_psg_new(void);
void dp_psg_free(dp_psg *psg);   /* deactivates it if active */
/* Register a float leaf (retained) under name (copied) in clipping group >= 0. Returns its index
 * (0, 1, ...) or a negative status. Registering twice is an error. */
int32_t dp_psg_add_param(dp_psg *psg, dp_tensor *param, const char *name, int32_t group);
int32_t dp_psg_num_params(const dp_psg *psg);
int dp_psg_describe(const dp_psg *psg, int32_t index, dp_psg_param_info *out);
/* Force the norm form of a linear weight (index -1: every parameter); AUTO picks the cheaper. */
int dp_psg_set_form(dp_psg *psg, int32_t index, int32_t form);
/* Make psg this thread's active engine (NULL: none). */
int dp_psg_activate(dp_psg *psg);
dp_psg *dp_psg_active(void);
/* Start a micro-batch of `batch` examples (>= 1): forget the previous micro-batch's taps,
 * norms and factors (accumulators are kept). */
int dp_psg_begin(dp_psg *psg, int64_t batch);
/* After the backward: every example's squared norm per parameter. Fails, naming it, when a
 * trainable registered parameter got no tap. */
int dp_psg_compute_norms(dp_psg *psg);
/* Per-example norms (not squared) into out[batch]: of parameter index, or of everything (index
 * -1). Upper bounds (rounding included) when bound = 1, the computed values when 0. */
int dp_psg_sample_norms(const dp_psg *psg, int32_t index, int32_t bound, double *out);
/* Clip factors, add sum_i c_i g_i into the accumulators, release the taps. factors of the
 * group (flat/automatic: group 0) are then readable with dp_psg_clip_factors. */
int dp_psg_clip_accumulate(dp_psg *psg, const dp_clip_config *config, dp_clip_stats *stats);
int dp_psg_clip_factors(const dp_psg *psg, int32_t group, double *out);
/* Example `sample`'s unclipped gradient of parameter index, recomputed in f64 from the taps
 * (call between compute_norms and clip_accumulate). New f64 tensor of the parameter's shape. */
dp_tensor *dp_psg_sample_grad(const dp_psg *psg, int32_t index, int64_t sample);
/* The accumulator of parameter index (new reference; NULL when it has none yet). */
dp_tensor *dp_psg_accumulator(const dp_psg *psg, int32_t index);
/* End the logical batch: for every trainable parameter (registration order) add std * N(0, 1)
 * to its accumulator (noise may be NULL only when std is 0), set .grad = accumulator * scale,
 * and zero the accumulator. Frozen parameters get no noise and their .grad is cleared. */
int dp_psg_finish(dp_psg *psg, dp_noise *noise, double std, double scale);
/* Zero the accumulators and drop taps (abandon a logical batch). */
int dp_psg_reset(dp_psg *psg);
/* Dynamic loss scaling: the tapped output gradients carry this factor (the loss was multiplied by
 * it before backward). Norms, bounds, sample_grad, factors and clipped sums divide it out; it must
 * be a power of two >= 2^-24 so that this is exact. Default 1. */
int dp_psg_set_loss_scale(dp_psg *psg, double scale);
double dp_psg_loss_scale(const dp_psg *psg);

/* ------------------------------------------------------------------ optimizers (fp32 state) */

/* One update of param (any float dtype; the arithmetic is in f64 for f64 params, f32 otherwise,
 * rounded once to param's dtype) from grad (f32 or f64, param's shape). State tensors are f32
 * (f64 for f64 params), contiguous, param's shape, zero before the first step.
 * SGD (PyTorch semantics): g' = g + wd*p; buf = momentum*buf + (1-dampening)*g' (buf = g' on the
 * first step); step = nesterov ? g' + momentum*buf : buf (g' when momentum is 0, buf may be NULL);
 * p -= lr*step.
 * Adam / AdamW (decoupled = 1): step counts from 1; Adam adds wd*p to g; AdamW multiplies p by
 * (1 - lr*wd) first; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps). */
/* How the new value is rounded into a bf16/f16/fp8 parameter: NULL or stochastic = 0, to nearest
 * even; stochastic = 1, up with probability (v - lo) / (hi - lo) between its neighbours lo < v < hi
 * (unbiased: E[round(v)] = v; Gupta et al. 2015), using Philox(seed, counter, stream 0x5352)
 * uniforms, one block per 4 elements in order; the call advances counter by ceil(numel / 4).
 * Ignored for f32/f64 parameters. */
typedef struct dp_rounding { int32_t stochastic; uint64_t seed; uint64_t counter; } dp_rounding;
/* An optimizer update for the fused end of a DP step (dp_psg_finish_update_param): the same
 * hyper-parameters as dp_sgd_step_ (kind DP_UPDATE_SGD) or dp_adam_step_ (DP_UPDATE_ADAM). */
typedef enum { DP_UPDATE_SGD = 1, DP_UPDATE_ADAM = 2 } dp_update_kind;
typedef struct dp_update_rule {
    int32_t kind;
    double lr, weight_decay;
    double momentum, dampening;     /* SGD */
    int32_t nesterov, first_step;   /* SGD */
    double beta1, beta2, eps;       /* Adam */
    int32_t decoupled;              /* Adam: 1 = AdamW */
    int64_t step;                   /* Adam: counts from 1 */
} dp_update_rule;
/* dp_psg_finish for one parameter followed by its optimizer update, in one pass over its memory
 * where the device's table has a fused kernel (noisy_update), composed (dp_noise_add_, dp_scale_,
 * dp_sgd_step_/dp_adam_step_) elsewhere or with secure noise; the result is the same bits either
 * way. Call it for index 0, 1, ... n-1 in order (frozen parameters too: they get no noise, no
 * update and their .grad cleared), so the noise stream is consumed exactly as dp_psg_finish
 * consumes it. Afterwards .grad = the noisy scaled gradient and the accumulator is zeroed;
 * describe() reports sum_norm and noise_norm as after dp_psg_finish. state0/state1: the
 * optimizer's state for this parameter (SGD: momentum buffer or NULL; Adam: m and v), contiguous,
 * f32 (f64 for f64 parameters); rounding as in dp_sgd_step_ (advanced by this call). rule and state
 * are not read for a frozen parameter (NULL is fine). Nothing is drawn or changed when a check fails. */
int dp_psg_finish_update_param(dp_psg *psg, int32_t index, dp_noise *noise, double std, double scale,
                               const dp_update_rule *rule, dp_tensor *state0,
                               dp_tensor *state1, dp_rounding *rounding);
/* The noise blocks (counter advance) dp_psg_finish would draw for the current parameters with
 * std > 0: lets a caller record the ledger's counter_after before the fused update runs. A negative
 * status when psg is NULL. */
int64_t dp_psg_noise_blocks(const dp_psg *psg);
int dp_sgd_step_(dp_tensor *param, const dp_tensor *grad, dp_tensor *momentum_buf, double lr,
                 double momentum, double dampening, double weight_decay, int32_t nesterov,
                 int32_t first_step, dp_rounding *rounding);
int dp_adam_step_(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int32_t decoupled,
                  int64_t step, dp_rounding *rounding);

/* ------------------------------------------------------------------ privacy accountant */

/* Poisson-subsampled Gaussian mechanism, composed over runs of equal steps.
 * RDP: Mironov, Talwar, Zhang 2019 (integer and fractional orders), conversion to (eps, delta)
 * by Balle et al. 2020 / Canonne, Kamath, Steinke 2020.
 * PRV: Gopi, Lee, Wutschitz 2021. GDP: Dong, Roth, Su 2019 (central-limit approximation). */

typedef enum { DP_ACCT_RDP = 0, DP_ACCT_PRV = 1, DP_ACCT_GDP = 2 } dp_accountant_kind;

/* A run of `steps` steps with sampling rate q and noise multiplier sigma. */
typedef struct dp_mech_run {
    double q;
    double sigma;
    int64_t steps;
} dp_mech_run;

typedef struct dp_eps_result {
    double epsilon;        /* the reported value: an upper bound for RDP and PRV */
    double eps_estimate;   /* PRV: point estimate; otherwise = epsilon */
    double eps_lower;      /* PRV: lower bound; otherwise = epsilon */
    double best_order;     /* RDP: optimal order; otherwise 0 */
    int32_t approximate;   /* 1 for GDP (central-limit approximation) */
} dp_eps_result;

/* Default RDP orders: count, and copy into out[count] (out may be NULL to ask the count). */
int32_t dp_rdp_default_orders(double *out, int32_t capacity);
/* RDP of one step of the subsampled Gaussian at each order, out[n_orders]. */
int dp_rdp_step(double *out, double q, double sigma, const double *orders, int32_t n_orders);
/* epsilon at delta for runs[n_runs]; orders NULL = default set. */
int dp_rdp_epsilon(dp_eps_result *out, const dp_mech_run *runs, int32_t n_runs, double delta,
                   const double *orders, int32_t n_orders);
/* PRV epsilon with error bounds; eps_error <= 0 and delta_error <= 0 select the defaults
 * (0.01 and delta/1000). */
int dp_prv_epsilon(dp_eps_result *out, const dp_mech_run *runs, int32_t n_runs, double delta,
                   double eps_error, double delta_error);
int dp_gdp_epsilon(dp_eps_result *out, const dp_mech_run *runs, int32_t n_runs, double delta);
/* Generic entry: kind selects the accountant, default parameters throughout. */
int dp_accountant_epsilon(dp_eps_result *out, dp_accountant_kind kind, const dp_mech_run *runs,
                          int32_t n_runs, double delta);
/* delta for a given epsilon. */
int dp_accountant_delta(double *out, dp_accountant_kind kind, const dp_mech_run *runs,
                        int32_t n_runs, double epsilon);
/* Smallest sigma (within tolerance tol, relative) whose epsilon after `steps` steps at rate q is
 * at most target_epsilon at delta. */
int dp_calibrate_sigma(double *out_sigma, dp_accountant_kind kind, double q, int64_t steps,
                       double target_epsilon, double delta, double tol);

/* The privacy ledger: an append-only list of runs, one per change of (q, sigma, clip). */
typedef struct dp_ledger dp_ledger;
dp_ledger *dp_ledger_new(void);
void dp_ledger_free(dp_ledger *ledger);
/* Record one step; lengthens the last run when q, sigma and clip are unchanged. */
int dp_ledger_step(dp_ledger *ledger, double q, double sigma, double clip);
int32_t dp_ledger_num_runs(const dp_ledger *ledger);
int64_t dp_ledger_total_steps(const dp_ledger *ledger);
/* Run i (0-based) into out, and its clipping norm into *clip. */
int dp_ledger_run(const dp_ledger *ledger, int32_t i, dp_mech_run *out);
int dp_ledger_run_clip(const dp_ledger *ledger, int32_t i, double *clip);
int dp_ledger_epsilon(const dp_ledger *ledger, dp_eps_result *out, dp_accountant_kind kind,
                      double delta);
/* A DP-SGD step with its book-keeping: lengthens the last run when q, sigma, clip, sampling,
 * noise mode and seed are unchanged and the counters continue where the run stopped; else
 * starts a run. */
typedef struct dp_ledger_step_info {
    double q, sigma, clip;
    int64_t batch_size;             /* realised logical batch size (0 for an empty batch) */
    int32_t sampling;               /* 0 Poisson, 1 shuffled fixed-size (accounted as Poisson) */
    int32_t noise_mode;             /* dp_noise_mode */
    uint64_t noise_seed;            /* reproducible mode; 0 when secure */
    uint64_t noise_counter_before, noise_counter_after;
    uint64_t sampler_counter_before, sampler_counter_after;
    int32_t skipped;                /* 1: data was touched but the update was not applied (f16
                                     * overflow): the step still counts */
    double aux_sigma;               /* std of the Gaussian noise on the overflow count released with
                                     * this step (sensitivity 1), 0 when none; sigma is then the
                                     * combined noise multiplier of both releases */
} dp_ledger_step_info;
typedef struct dp_ledger_run_info {
    double q, sigma, clip;
    int64_t steps;
    int64_t batch_total, batch_min, batch_max, empty_batches;   /* over steps with records */
    int32_t sampling, noise_mode;
    uint64_t noise_seed;
    uint64_t noise_counter_first, noise_counter_last;     /* before its first, after its last step */
    uint64_t sampler_counter_first, sampler_counter_last;
    int32_t detailed;               /* 0 for runs made by dp_ledger_step (no book-keeping) */
    int64_t skipped_steps;          /* of its steps, those recorded with skipped = 1 */
    double aux_sigma;               /* as in the step info; steps with different values form new runs */
} dp_ledger_run_info;
int dp_ledger_record(dp_ledger *ledger, const dp_ledger_step_info *info);
int dp_ledger_run_detail(const dp_ledger *ledger, int32_t i, dp_ledger_run_info *out);
/* Mark that raw per-sample statistics were read (a debugging inspection: the run is not clean);
 * what (copied) says which. Counted and kept in the JSON. */
int dp_ledger_mark_inspected(dp_ledger *ledger, const char *what);
int64_t dp_ledger_inspections(const dp_ledger *ledger);
/* JSON text (caller frees with dp_free), and a ledger rebuilt from it (NULL on malformed input,
 * with the reason in dp_last_error()). */
char *dp_ledger_to_json(const dp_ledger *ledger);
dp_ledger *dp_ledger_from_json(const char *json);
/* Free memory the core handed out (strings). */
void dp_free(void *p);

/* `dprun eps ...`: the command-line front of the accountant; returns the exit code. */
int dp_cli_eps(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
