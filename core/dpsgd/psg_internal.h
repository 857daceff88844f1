/* psg_internal.h: the per-sample gradient engine's records, shared by core/dpsgd/psg*.c.
 *
 * Life of a micro-batch: dp_psg_begin -> forward -> backward (ops call the dp_psg_tap_* hooks,
 * psg.c stores the taps) -> dp_psg_compute_norms (psg_norms.c: squared norms and their rounding
 * bounds per example and parameter) -> dp_psg_clip_accumulate (psg_clip.c: factors, clipped sums
 * into the accumulators, taps released). dp_psg_finish (psg_clip.c) ends the logical batch. */
#ifndef DP_PSG_INTERNAL_H
#define DP_PSG_INTERNAL_H
#include "internal.h"

/* One use of a parameter by an op in the backward. */
typedef struct psg_tap {
    int32_t kind;       /* dp_psg_kind */
    dp_tensor *a;       /* linear: the input (B, T, in); embedding: the indices (B, T) */
    dp_tensor *g;       /* linear, embedding: the output gradient (B, T, out) / (B, T, D) */
    dp_tensor *psg;     /* bias and norm kinds: the per-sample gradient itself, f64 (B, N) */
} psg_tap;

struct dp_psg_param {
    dp_psg *owner;
    dp_tensor *param;   /* retained */
    char *name;
    int32_t index, group, trainable, kind, form_request, form_used;
    int64_t seq_len;
    double ghost_flops, materialise_flops;
    psg_tap *taps;      /* after dp_psg_compute_norms, taps[0] holds all uses merged */
    int32_t n_taps, cap_taps;
    double *sq;         /* (batch) squared norm as computed */
    double *sq_bound;   /* (batch) upper bound on the exact squared norm of the tapped values */
    dp_tensor *accum;   /* clipped sum over the logical batch so far, f32 (f64 for f64 params) */
    /* What dp_psg_describe reports: dtypes seen at the last tap / norms / accumulator (-1 before),
     * norms of the clipped sum and of its noise at the last finish (-1 before). */
    int32_t input_dtype, grad_dtype, norm_dtype, accum_dtype;
    double sum_norm, noise_norm;
};

struct dp_psg {
    dp_psg_param **params;
    int32_t n, cap;
    int64_t batch;          /* examples in the current micro-batch */
    int32_t norms_ready;    /* compute_norms ran for this micro-batch */
    int32_t factors_ready;  /* clip_accumulate ran */
    int32_t n_factor_groups;
    double *factors;        /* (n_factor_groups, batch) clip factors */
    double loss_scale;      /* the factor the tapped output gradients carry (dp_psg_set_loss_scale) */
    double batch_loss_scale;/* loss_scale when this micro-batch's norms were computed: the one its
                             * norms, sample_grad and clipped sums divide out */
};

/* The accumulator's dtype for a parameter: f64 for f64 params, f32 otherwise. */
static inline dp_dtype dp_psg_accum_dtype(const dp_tensor *param) {
    return param->dtype == DP_F64 ? DP_F64 : DP_F32;
}

/* Drop a parameter's taps (and its norms when all = 1). */
void dp_psg_clear_taps(dp_psg_param *p);
/* The group count a configuration needs: max group + 1 over registered parameters. */
int32_t dp_psg_num_groups(const dp_psg *psg);

/* ---- the end of a logical batch per parameter (psg_clip.c), for the fused end of a step
 * (psg_update.c: dp_psg_finish_update_param). */
/* p's accumulator, created zero (DP_MEM_GRADIENTS) when it has none. */
int dp_psg_prepare_accum(dp_psg_param *p);
/* dp_psg_finish for one parameter (arguments checked by the caller, grad mode off): frozen, .grad
 * cleared and the accumulator dropped; trainable, noise added (sum_norm and noise_norm recorded),
 * scaled, made .grad, and the accumulator dropped. */
int dp_psg_finish_param(dp_psg_param *p, dp_noise *noise, double std, double scale);

/* ---- the optimizers' argument checks and rounding advance (core/dpsgd/optim.c), shared with the
 * fused update: the checks of dp_sgd_step_ / dp_adam_step_ under the caller's name fn, with the
 * state arguments named in messages as given. */
int dp_optim_check_sgd(const char *fn, const dp_tensor *param, const dp_tensor *grad,
                       const dp_tensor *momentum_buf, const char *buf_name, double lr, double momentum,
                       double dampening, double weight_decay, int32_t nesterov, int32_t first_step,
                       const dp_rounding *rounding);
int dp_optim_check_adam(const char *fn, const dp_tensor *param, const dp_tensor *grad,
                        const dp_tensor *m, const char *m_name, const dp_tensor *v, const char *v_name,
                        double lr, double beta1, double beta2, double eps, double weight_decay,
                        int32_t decoupled, int64_t step, const dp_rounding *rounding);
/* After a successful update of param: stochastic rounding of a bf16/f16/fp8 param used
 * ceil(numel / 4) Philox blocks (f32/f64 params leave the counter alone). */
void dp_optim_advance_rounding(dp_rounding *rounding, const dp_tensor *param);

/* ---- fused per-example products (psg_fused.c): the backend's per_example_sq_norms and
 * clipped_sum for a linear weight's taps g (B, T, P), a (B, T, D), checked against the composed
 * path the first time each runs in a process; DP_CUDA_FUSED=0 turns them off. */
enum { DP_PSG_FUSED_SQ_NORMS = 0, DP_PSG_FUSED_CLIPPED_SUM = 1, DP_PSG_FUSED_ENTRIES = 2 };
/* The composed path for the self-check: squared norms into sq (B) / the clipped sum added into
 * acc (zero on entry, the accumulator's dtype and shape). */
typedef int (*dp_psg_composed_norms)(void *ctx, double *sq);
typedef int (*dp_psg_composed_sum)(void *ctx, dp_tensor *acc);
/* 0 when a DP_CUDA_FUSED value turns the fused paths off ("0", "off", "false", "no", any case),
 * 1 otherwise (NULL: unset). */
int dp_psg_fused_env_allows(const char *value);
/* 1 when entry `which` of ops may serve these taps (and acc, for the clipped sum): ops has it,
 * DP_CUDA_FUSED allows it, no failed self-check disabled it, g and a are contiguous (B, T, *) of
 * one dtype, bf16 or f16, and acc is contiguous f32 with P * D elements. */
int dp_psg_fused_usable(const dp_ops *ops, int which, const dp_tensor *g, const dp_tensor *a,
                        const dp_tensor *acc);
/* sq (B, host) = ||g_b^T a_b||_F^2 by ops->per_example_sq_norms. On the process's first call the
 * composed values are computed too; a norm differing by more than 1e-3 relative plus tol[b] (both
 * paths' rounding bounds; tol may be NULL) disables the entry, leaves the composed values in sq
 * and fails with DP_EDEVICE. */
int dp_psg_fused_sq_norms(const dp_ops *ops, double *sq, dp_tensor *g, dp_tensor *a, const double *tol,
                          dp_psg_composed_norms composed, void *ctx);
/* acc (param's shape, P * D elements) += sum_b factor[b] g_b^T a_b by ops->clipped_sum. On the
 * process's first call both paths run from zero and their Frobenius difference must be within 1e-3
 * of the composed sum's norm plus 1e-4 * scale (scale: the summed norms of the contributions);
 * otherwise the entry is disabled, acc gets the composed sum and the call fails with DP_EDEVICE. */
int dp_psg_fused_clipped_sum(const dp_ops *ops, dp_tensor *acc, dp_tensor *g, dp_tensor *a,
                             dp_tensor *factor, double scale, dp_psg_composed_sum composed, void *ctx);
/* Re-read DP_CUDA_FUSED and forget self-checks and disabled entries (for tests). */
void dp_psg_fused_reset(void);

#endif
