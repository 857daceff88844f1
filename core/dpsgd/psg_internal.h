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

#endif
