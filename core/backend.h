/* backend.h: the per-device op table. core/ops_*.c check arguments once, then call through it;
 * kernels (kernels/cpu, kernels/cuda) assume valid input and never allocate tensors.
 *
 * Conventions for every kernel:
 *  - All tensor arguments are on the table's device and already shaped; `out` arguments are
 *    allocated by the caller, contiguous, and never alias inputs unless stated.
 *  - Inputs may be strided (any strides, 0 for broadcast dims) unless stated.
 *  - Return 0, or a negative dp_status after dp_fail(...) naming the kernel.
 *  - Float dtypes: f32 and f64 compute natively; bf16, f16 and fp8 load to f32, compute in f32
 *    and round to nearest even on store.
 */
#ifndef DP_BACKEND_H
#define DP_BACKEND_H
#include "dp.h"

typedef enum {
    DP_BIN_ADD, DP_BIN_SUB, DP_BIN_MUL, DP_BIN_DIV, DP_BIN_MAX
} dp_binop;

typedef enum {
    DP_UN_NEG, DP_UN_EXP, DP_UN_LOG, DP_UN_SQRT, DP_UN_ABS, DP_UN_TANH, DP_UN_SIGMOID,
    DP_UN_RELU, DP_UN_GELU,
    DP_UN_AFFINE,   /* x * alpha + beta */
    DP_UN_POW       /* x ^ alpha */
} dp_unop;

typedef enum { DP_RED_SUM, DP_RED_MEAN, DP_RED_MAX } dp_redop;

typedef struct dp_ops {
    const char *name;

    /* Storage: raw bytes on the device, and copies between host and device. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *ptr);
    int (*memcpy_h2d)(void *dst, const void *src, size_t bytes);
    int (*memcpy_d2h)(void *dst, const void *src, size_t bytes);

    /* out[...] = value. out may be strided. */
    int (*fill)(dp_tensor *out, double value);
    /* out = src converted to out's dtype; same shape (src may be broadcast-strided). out may be
     * strided (but does not overlap src). Any dtype to any dtype, integers included. */
    int (*copy)(dp_tensor *out, const dp_tensor *src);
    /* out = a op b, all the same shape (a, b may be broadcast-strided), same float dtype. */
    int (*binary)(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, dp_binop op);
    /* out = f(x) (see dp_unop; alpha, beta are its constants). */
    int (*unary)(dp_tensor *out, const dp_tensor *x, dp_unop op, double alpha, double beta);
    /* gx = gy * f'(x): x is the op's input, y its output (either may be NULL when the op's
     * derivative does not need it: exp and tanh and sigmoid and sqrt use y, the rest use x). */
    int (*unary_backward)(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *x,
                          const dp_tensor *y, dp_unop op, double alpha, double beta);
    /* dst += alpha * src; same shape, src may be broadcast-strided; dst contiguous. */
    int (*axpy)(dp_tensor *dst, double alpha, const dp_tensor *src);

    /* out has x's ndim with reduced dims of size 1; dims[] lists them (ndims >= 1). f32 sums
     * accumulate in f64. */
    int (*reduce)(dp_tensor *out, const dp_tensor *x, int32_t ndims, const int32_t *dims,
                  dp_redop op);
    /* out (i64) has x's ndim with dim of size 1: index of the first maximum. */
    int (*argmax)(dp_tensor *out, const dp_tensor *x, int32_t dim);
    /* y = softmax or log-softmax (log = 1) of contiguous x along dim. */
    int (*softmax)(dp_tensor *y, const dp_tensor *x, int32_t dim, int32_t log);
    /* gx from gy and y (the forward output), contiguous. */
    int (*softmax_backward)(dp_tensor *gx, const dp_tensor *gy, const dp_tensor *y, int32_t dim,
                            int32_t log);
    /* Over the last dim of contiguous x (rows R = numel / D): y, and per-row mean and rstd
     * (f32, shape [R]). weight and bias may be NULL. */
    int (*layer_norm)(dp_tensor *y, dp_tensor *mean, dp_tensor *rstd, const dp_tensor *x,
                      const dp_tensor *weight, const dp_tensor *bias, double eps);
    /* gx (may be NULL), gweight and gbias (may be NULL; written, not accumulated). */
    int (*layer_norm_backward)(dp_tensor *gx, dp_tensor *gweight, dp_tensor *gbias,
                               const dp_tensor *gy, const dp_tensor *x, const dp_tensor *mean,
                               const dp_tensor *rstd, const dp_tensor *weight);
    /* out (n, D) = weight rows at indices (n, i32 or i64, contiguous); weight (V, D) contiguous.
     * Indices are already range-checked. */
    int (*gather_rows)(dp_tensor *out, const dp_tensor *weight, const dp_tensor *indices);
    /* dst (V, D) rows at indices (n) += src (n, D); dst and src contiguous. Repeated indices add. */
    int (*scatter_add_rows)(dp_tensor *dst, const dp_tensor *indices, const dp_tensor *src);
    /* Per-row loss (N, f32/f64 like logits) and logsumexp (N) for contiguous logits (N, C) and
     * labels (N, i32/i64, checked in range or equal to ignore_index). Ignored rows give 0. */
    int (*cross_entropy)(dp_tensor *loss, dp_tensor *lse, const dp_tensor *logits,
                         const dp_tensor *labels, int64_t ignore_index);
    /* glogits (N, C) = gloss[n] * (softmax - onehot); ignored rows 0. gloss is (N). */
    int (*cross_entropy_backward)(dp_tensor *glogits, const dp_tensor *gloss,
                                  const dp_tensor *logits, const dp_tensor *lse,
                                  const dp_tensor *labels, int64_t ignore_index);
    /* out = mask ? value : x; same shape (x, mask may be broadcast-strided), mask u8. */
    int (*masked_fill)(dp_tensor *out, const dp_tensor *x, const dp_tensor *mask, double value);

    /* Batched GEMM: out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b] for b < batch.
     * a is (batch, M, K) or, with trans_a, (batch, K, M) viewed transposed; likewise b with
     * (K, N) / (N, K). Each matrix has unit stride in its last dim or its second-to-last dim
     * (the caller makes it so); batch strides may be 0. out (batch, M, N) contiguous.
     * Float dtypes; a, b, out share a dtype; accumulation is at least f32. */
    int (*gemm)(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                int32_t trans_b, double alpha, double beta);

    /* Counter-based random fills (see dp_rng); advance rng->counter by the blocks consumed. */
    int (*rand_uniform)(dp_tensor *out, dp_rng *rng);
    int (*rand_normal)(dp_tensor *out, dp_rng *rng, double mean, double std);
    /* mask (u8, contiguous, numel of x) = 1 where kept (probability 1-p); out = x*mask/(1-p). */
    int (*dropout)(dp_tensor *out, dp_tensor *mask, const dp_tensor *x, double p, dp_rng *rng);

    /* ---- per-sample gradients (core/dpsgd). f64 outputs accumulate in f64. */
    /* out (B, T, T) = x[b] @ x[b]^T for contiguous x (B, T, K), f32 or f64 (out has x's dtype).
     * At least the upper triangle (s >= t) is written; the engine reads only that. */
    int (*gram)(dp_tensor *out, const dp_tensor *x);
    /* Ghost norm of each example from the Gram matrices ga, gg (B, T, T), contiguous, same dtype
     * f32/f64, upper triangles read (symmetric): sq[b] = sum_{t,s} ga[t,s] * gg[t,s] and
     * bound[b] = sum_{t,s} (ka * ra_t * ra_s * |gg[t,s]| + kg * |ga[t,s]| * rg_t * rg_s), with
     * ra_t = sqrt(ga[t,t]), rg_t = sqrt(gg[t,t]). sq, bound f64 (B). */
    int (*ghost_norm)(dp_tensor *sq, dp_tensor *bound, const dp_tensor *ga, const dp_tensor *gg,
                      double ka, double kg);
    /* out (B, R, N) f32/f64 = factor[b] * x[b, :, :], computed in f64 and rounded once; where
     * factor[b] is 0 the rows are exact zeros even if x holds NaN or Inf. x contiguous (B, R, N),
     * any float dtype; factor f64 (B). */
    int (*scale_rows)(dp_tensor *out, const dp_tensor *x, const dp_tensor *factor);
    /* out (B, N) f64 = sum_t g[b, t, :], or with x (non-NULL) sum_t g[b,t,:] * xhat[b,t,:] where
     * xhat = (x - mean[b*T + t]) * rstd[b*T + t]. g, x contiguous (B, T, N), any float dtype;
     * mean, rstd (B*T) f32/f64. */
    int (*row_sums)(dp_tensor *out, const dp_tensor *g, const dp_tensor *x, const dp_tensor *mean,
                    const dp_tensor *rstd);
    /* out (R) f64 = sum of squares of each row of contiguous x (R, N), any float dtype. */
    int (*row_sq_norms)(dp_tensor *out, const dp_tensor *x);
    /* out (B) f64: for each example b, sum over distinct values v in idx[b, :] of
     * || sum_{t : idx[b,t] = v} g[b, t, :] ||^2 (the squared norm of its embedding gradient).
     * idx (B, T) i32/i64 contiguous, g (B, T, D) contiguous any float dtype. */
    int (*embedding_sq_norms)(dp_tensor *out, const dp_tensor *idx, const dp_tensor *g);
    /* dst (contiguous f32/f64) += std * z_i, z_i the normals of dp_philox_normal_pair (philox.h)
     * at block counter + i/2 of stream `stream` (element 2k from cos, 2k+1 from sin), added in
     * double and rounded once. */
    int (*noise_add_philox)(dp_tensor *dst, double std, uint64_t seed, uint64_t stream,
                            uint64_t counter);

    /* ---- optimizers (see dp_sgd_step_, dp_adam_step_ in dp.h; arguments already checked).
     * rounding: NULL or stochastic 0 = nearest even; else stochastic rounding of bf16/f16/fp8 params
     * from rounding's seed and counter (the caller advances the counter afterwards). */
    int (*sgd_step)(dp_tensor *param, const dp_tensor *grad, dp_tensor *buf, double lr,
                    double momentum, double dampening, double weight_decay, int32_t nesterov,
                    int32_t first_step, const dp_rounding *rounding);
    int (*adam_step)(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v,
                     double lr, double beta1, double beta2, double eps, double weight_decay,
                     int32_t decoupled, int64_t step, const dp_rounding *rounding);

    /* ---- emulated fp8 (see dp_fake_quant in dp.h; arguments already checked). x is contiguous,
     * any float dtype, split into G equal groups of consecutive elements, G = numel of amax or
     * scale (1, or x.shape[0]: one per example). */
    /* amax (f64, (G)) = max |x| over each group; NaN ignored (0 for a group of NaN only), Inf counts. */
    int (*quant_amax)(dp_tensor *amax, const dp_tensor *x);
    /* out (contiguous, x's dtype and shape) = q(x * s) / s with s = scale[group] (f32, finite,
     * > 0), q rounding to nearest even in dtype (DP_FP8_E4M3 or E5M2) after saturating at its
     * largest finite value, NaN kept. Product and quotient in f64, stored with one RNE. */
    int (*fake_quant)(dp_tensor *out, const dp_tensor *x, const dp_tensor *scale, dp_dtype dtype);

    /* ---- fused kernels. An entry may be NULL where a backend has no fused form: the core then
     * composes the ops above (same contract, possibly different rounding where stated). */

    /* Linear epilogue (dp_linear_act): pre = x + bias (bias (N) along the last dim, may be NULL),
     * y = act(pre) with act one of DP_UN_GELU (erf form), DP_UN_RELU, DP_UN_TANH; pre (may be
     * NULL: not kept) and y rounded once each to their dtype. x, y, pre contiguous, same shape and
     * float dtype; bias that dtype too (any stride). y or pre may be x itself (written in place;
     * never each other). The add and act are computed as the unary/binary kernels compute them
     * (f32 for bf16/f16/f32/fp8, f64 for f64), so y == unary(act, binary(add, x, bias)) and
     * pre == binary(add, x, bias) bit for bit on the same backend. */
    int (*bias_act)(dp_tensor *y, dp_tensor *pre, const dp_tensor *x, const dp_tensor *bias,
                    dp_unop act);

    /* Per-example products of the DP engine's linear taps, never materialised in memory.
     * g (B, T, P) and a (B, T, D) contiguous, the same dtype, bf16 or f16 (the core composes
     * scale_rows + gemm for f32/f64). Each example's product S_b = sum_t g[b,t,:]^T a[b,t,:]
     * (P, D) is formed with f32 accumulation. */
    /* out (B) f64 = ||S_b||_F^2, the squares summed in f64 (materialised-form norms). */
    int (*per_example_sq_norms)(dp_tensor *out, const dp_tensor *g, const dp_tensor *a);
    /* acc (P, D) f32 += sum_b factor[b] * S_b: each S_b scaled by factor[b] (f64 (B), rounded to
     * f32) in registers and summed in f32, deterministically (no atomics in the sum). An example
     * whose factor is 0 adds nothing at all, even if its g or a hold NaN or Inf. */
    int (*clipped_sum)(dp_tensor *acc, const dp_tensor *g, const dp_tensor *a,
                       const dp_tensor *factor);

    /* The end of a DP step for one parameter in one pass (dp_psg_finish_update_param): with z_i
     * the normals of noise_add_philox at (seed, stream, counter),
     *   n_i = acc_i + std * z_i   (in double, rounded once to acc's dtype, as noise_add_philox)
     *   g_i = n_i * scale          (as dp_scale_ computes it on acc's dtype: dp_cpu_unary AFFINE)
     * acc := g (it becomes .grad), then param is updated from g exactly as sgd_step (rule->kind
     * DP_UPDATE_SGD, state0 = momentum buffer or NULL) or adam_step (DP_UPDATE_ADAM, state0 = m,
     * state1 = v) would, rounding included. sums (f64 (2), same device) receives [0] = sum acc_i^2
     * before the noise and [1] = sum (n_i - acc_i)^2, both in f64 (what dp_psg_finish reports as
     * sum_norm and noise_norm, squared). acc f32 (f64 for f64 params), contiguous, param's numel. */
    int (*noisy_update)(dp_tensor *param, dp_tensor *acc, dp_tensor *state0, dp_tensor *state1,
                        dp_tensor *sums, double std, uint64_t seed, uint64_t stream,
                        uint64_t counter, double scale, const dp_update_rule *rule,
                        const dp_rounding *rounding);

    /* ---- fp8 GEMM with scale factors. out (batch, M, N) bf16, f16 or f32 = alpha *
     * (scale_a * op(a)) @ (scale_b * op(b)) + beta * out, a and b fp8 (e4m3 or e5m2, not both
     * e5m2; they may differ), layouts as gemm, f32 accumulation. (cuBLASLt on sm_89+.) The scales
     * are rounded to f32 (the core keeps them finite, > 0 and normal in f32). */
    int (*gemm_fp8)(dp_tensor *out, const dp_tensor *a, const dp_tensor *b, int32_t trans_a,
                    int32_t trans_b, double scale_a, double scale_b, double alpha, double beta);

    /* ---- page-locked host memory and ordering (NULL on backends without asynchronous copies:
     * the core then uses plain host memory and treats every copy as finished). */
    /* Host memory the device can copy from asynchronously; NULL (with dp_fail) on failure. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *ptr);
    /* Wait until no queued copy still reads or writes host bytes [ptr, ptr + bytes) of a
     * host_alloc block (called before the host writes a pinned buffer again). */
    int (*host_wait)(const void *ptr, size_t bytes);
    /* Wait until everything queued on the device has finished. */
    int (*sync)(void);

    /* Masked softmax (dp_softmax_masked): y = softmax(x + mask) along the last dim. x and y
     * contiguous, same float dtype, rows of D = x->shape[ndim - 1] elements; mask has x's dtype and
     * ndim and x's shape, broadcast-strided (stride 0 on broadcast dims, any strides otherwise):
     * element (r, c) of the mask is at the offset its strides give for row r's index and column c.
     * Arithmetic: each sum x + mask is computed as the binary add kernel computes it (f32 for
     * bf16/f16/f32/fp8, f64 for f64) and rounded to x's dtype, then the row goes through the
     * softmax kernel's arithmetic unchanged (log = 0), so y == softmax(binary(add, x, mask))
     * bit for bit on the same backend. NULL: the core composes binary + softmax (same values). */
    int (*softmax_masked)(dp_tensor *y, const dp_tensor *x, const dp_tensor *mask);
} dp_ops;

/* The table for a device, or NULL (with dp_fail) when that backend is not available. */
const dp_ops *dp_ops_for(dp_device device);
/* The CPU table (kernels/cpu/cpu_backend.c). */
extern const dp_ops dp_cpu_ops;

#endif
