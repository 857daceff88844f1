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

/* ------------------------------------------------------------------ ops (autograd-aware) */

/* Elementwise binary ops broadcast NumPy-style; a and b must share dtype and device. */
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

/* Reductions over dims[ndims] (ndims = 0: all dims). keepdim keeps them as size 1. */
dp_tensor *dp_sum(dp_tensor *x, int32_t ndims, const int32_t *dims, int32_t keepdim);
dp_tensor *dp_mean(dp_tensor *x, int32_t ndims, const int32_t *dims, int32_t keepdim);
/* Max over one dim (values, in the graph; the gradient goes to the first maximum). */
dp_tensor *dp_max(dp_tensor *x, int32_t dim, int32_t keepdim);
/* Index (i64) of the first maximum along dim; not differentiable. */
dp_tensor *dp_argmax(dp_tensor *x, int32_t dim, int32_t keepdim);

dp_tensor *dp_softmax(dp_tensor *x, int32_t dim);
dp_tensor *dp_log_softmax(dp_tensor *x, int32_t dim);
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
/* Live tensor headers (for leak checks in tests). */
int64_t dp_live_tensors(void);
/* Threads used by CPU kernels and BLAS. */
void dp_set_num_threads(int32_t n);
int32_t dp_get_num_threads(void);
/* 1 when a backend for the device is loaded and has a usable device. */
int32_t dp_device_available(dp_device device);
/* Name of the GEMM engine that ran the last CPU matmul of a dtype ("openblas", "onednn",
 * "convert+openblas"), for benchmarks and tests. */
const char *dp_matmul_engine(dp_dtype dtype);

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
