/* psg_fused.c: when the DP engine may use a backend's fused per-example products
 * (per_example_sq_norms, clipped_sum in core/backend.h) for a linear weight's taps, and the
 * self-check that guards them: the first call of each entry in a process also runs the composed
 * path (GEMMs) and compares, because the fused kernels are new GPU code. A disagreement disables
 * the entry for the rest of the process and fails the call. DP_CUDA_FUSED=0 turns them off. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "psg_internal.h"

static const char *const entry_names[DP_PSG_FUSED_ENTRIES] = {"per_example_sq_norms", "clipped_sum"};

static atomic_int env_state = -1;   /* -1: DP_CUDA_FUSED not read yet; else 0 off, 1 on */
static atomic_int checked[DP_PSG_FUSED_ENTRIES], disabled[DP_PSG_FUSED_ENTRIES];

int dp_psg_fused_env_allows(const char *value) {
    if (!value) return 1;
    while (*value == ' ' || *value == '\t') value++;
    static const char *const off[] = {"0", "off", "false", "no"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (!strcasecmp(value, off[i])) return 0;
    return 1;
}

static int env_allows(void) {
    int s = atomic_load(&env_state);
    if (s < 0) {
        s = dp_psg_fused_env_allows(getenv("DP_CUDA_FUSED"));
        atomic_store(&env_state, s);
    }
    return s;
}

void dp_psg_fused_reset(void) {
    atomic_store(&env_state, -1);
    for (int i = 0; i < DP_PSG_FUSED_ENTRIES; i++) {
        atomic_store(&checked[i], 0);
        atomic_store(&disabled[i], 0);
    }
}

static int is_taps_dtype(dp_dtype t) { return t == DP_BF16 || t == DP_F16; }

int dp_psg_fused_usable(const dp_ops *ops, int which, const dp_tensor *g, const dp_tensor *a,
                        const dp_tensor *acc) {
    if (!ops || which < 0 || which >= DP_PSG_FUSED_ENTRIES || !g || !a) return 0;
    if (!(which == DP_PSG_FUSED_SQ_NORMS ? ops->per_example_sq_norms != NULL : ops->clipped_sum != NULL))
        return 0;
    if (!env_allows() || atomic_load(&disabled[which])) return 0;
    if (g->dtype != a->dtype || !is_taps_dtype(g->dtype) || g->ndim != 3 || a->ndim != 3 ||
        g->shape[0] != a->shape[0] || g->shape[1] != a->shape[1] || g->device != a->device ||
        !dp_tensor_is_contiguous(g) || !dp_tensor_is_contiguous(a))
        return 0;
    if (which == DP_PSG_FUSED_CLIPPED_SUM &&
        (!acc || acc->dtype != DP_F32 || acc->device != g->device || !dp_tensor_is_contiguous(acc) ||
         dp_tensor_numel(acc) != g->shape[2] * a->shape[2]))
        return 0;
    return 1;
}

/* 1 for the one call per entry and process that runs the self-check. */
static int claim_check(int which) { return atomic_exchange(&checked[which], 1) == 0; }
/* The check could not run (the composed path failed): let a later call run it. */
static void unclaim_check(int which) { atomic_store(&checked[which], 0); }

static int disagree(int which, const char *device, double by, const char *detail) {
    atomic_store(&disabled[which], 1);
    return dp_fail(DP_EDEVICE, "%s on %s disagrees with the composed path by %.3g (%s); set "
                   "DP_CUDA_FUSED=0 to use the composed path", entry_names[which], device, by, detail);
}

static const char *device_name(const dp_ops *ops) { return ops->name ? ops->name : "this device"; }

/* ---------------------------------------------------------------- norms */

int dp_psg_fused_sq_norms(const dp_ops *ops, double *sq, dp_tensor *g, dp_tensor *a, const double *tol,
                          dp_psg_composed_norms composed, void *ctx) {
    int64_t B = g->shape[0];
    dp_tensor *out = dp_tensor_empty(DP_F64, g->device, 1, &B);
    int rc = out ? ops->per_example_sq_norms(out, g, a) : DP_ENOMEM;
    if (!rc) rc = dp_tensor_to_f64(out, sq);
    dp_tensor_release(out);
    if (rc || !claim_check(DP_PSG_FUSED_SQ_NORMS)) return rc;
    double *ref = malloc(sizeof(double) * (size_t)(B ? B : 1));
    rc = ref ? composed(ctx, ref) : dp_fail(DP_ENOMEM, "DP engine: out of memory for %lld norms", (long long)B);
    if (rc) {
        unclaim_check(DP_PSG_FUSED_SQ_NORMS);
        free(ref);
        return rc;
    }
    /* Norms (not squares) compared: within 1e-3 relative, plus both paths' rounding bounds. */
    int64_t worst = -1;
    double worst_by = 0;
    for (int64_t i = 0; i < B; i++) {
        int fin_f = isfinite(sq[i]), fin_c = isfinite(ref[i]);
        if (!fin_f && !fin_c) continue;   /* both say non-finite: the example gets factor 0 either way */
        double nf = sqrt(fmax(sq[i], 0)), nc = sqrt(fmax(ref[i], 0));
        double d = fin_f && fin_c ? fabs(nf - nc) : INFINITY;
        double allowed = 1e-3 * nc + (tol ? tol[i] : 0) + 1e-30;
        if (!(d <= allowed) && (worst < 0 || d / (nc + 1e-300) > worst_by)) {
            worst = i;
            worst_by = d / (nc + 1e-300);
        }
    }
    if (worst >= 0) {
        char detail[160];
        snprintf(detail, sizeof detail, "relative, example %lld: norm %.9g vs %.9g composed",
                 (long long)worst, sqrt(fmax(sq[worst], 0)), sqrt(fmax(ref[worst], 0)));
        /* Keep the engine's numbers the composed ones: the call fails, but nothing wrong leaks. */
        memcpy(sq, ref, sizeof(double) * (size_t)B);
        rc = disagree(DP_PSG_FUSED_SQ_NORMS, device_name(ops), worst_by, detail);
    }
    free(ref);
    return rc;
}

/* ---------------------------------------------------------------- clipped sum */

/* *out = sum of squares of t's elements (any float dtype, contiguous), in f64. */
static int sq_sum(const dp_ops *ops, dp_tensor *t, double *out) {
    int64_t one = 1, shape2[2] = {1, dp_tensor_numel(t)};
    dp_tensor *t2 = dp_reshape(t, 2, shape2), *s = t2 ? dp_tensor_empty(DP_F64, t->device, 1, &one) : NULL;
    int rc = s ? ops->row_sq_norms(s, t2) : DP_ENOMEM;
    if (!rc) rc = dp_tensor_to_f64(s, out);
    dp_tensor_release(s);
    dp_tensor_release(t2);
    return rc;
}

int dp_psg_fused_clipped_sum(const dp_ops *ops, dp_tensor *acc, dp_tensor *g, dp_tensor *a,
                             dp_tensor *factor, double scale, dp_psg_composed_sum composed, void *ctx) {
    int64_t shape2[2] = {g->shape[2], a->shape[2]};
    if (!claim_check(DP_PSG_FUSED_CLIPPED_SUM)) {
        dp_tensor *acc2 = dp_reshape(acc, 2, shape2);
        int rc = acc2 ? ops->clipped_sum(acc2, g, a, factor) : DP_ENOMEM;
        dp_tensor_release(acc2);
        return rc;
    }
    /* Both paths from zero, so the comparison does not depend on what acc already holds; then
     * acc += the fused sum, the same bits as the kernel adding into acc itself (one f32 add). */
    dp_tensor *ref = dp_tensor_zeros(acc->dtype, acc->device, acc->ndim, acc->shape);
    dp_tensor *fused = ref ? dp_tensor_zeros(acc->dtype, acc->device, acc->ndim, acc->shape) : NULL;
    dp_tensor *fused2 = fused ? dp_reshape(fused, 2, shape2) : NULL, *diff = NULL;
    int rc = fused2 ? composed(ctx, ref) : DP_ENOMEM;
    if (rc) unclaim_check(DP_PSG_FUSED_CLIPPED_SUM);
    if (!rc) rc = ops->clipped_sum(fused2, g, a, factor);
    double ref_sq = 0, fused_sq = 0, diff_sq = 0;
    if (!rc) rc = sq_sum(ops, ref, &ref_sq);
    if (!rc) rc = sq_sum(ops, fused, &fused_sq);
    if (!rc) rc = (diff = dp_clone(ref)) ? ops->axpy(diff, -1.0, fused) : DP_ENOMEM;
    if (!rc) rc = sq_sum(ops, diff, &diff_sq);
    if (!rc) {
        double nc = sqrt(ref_sq), nf = sqrt(fused_sq), d = sqrt(diff_sq);
        /* 1e-3 of the sum, or 1e-4 of the summed contributions' norms when the sum cancels. */
        double allowed = 1e-3 * nc + 1e-4 * scale + 1e-30;
        int both_nonfinite = !isfinite(ref_sq) && !isfinite(fused_sq);
        if (both_nonfinite || d <= allowed) {
            rc = ops->axpy(acc, 1.0, fused);
        } else {
            char detail[160];
            snprintf(detail, sizeof detail, "relative, Frobenius norm of the difference; sums' "
                     "norms %.9g vs %.9g composed", nf, nc);
            (void)ops->axpy(acc, 1.0, ref);   /* acc gets the composed sum; the call still fails */
            rc = disagree(DP_PSG_FUSED_CLIPPED_SUM, device_name(ops), d / (nc + 1e-300), detail);
        }
    }
    dp_tensor_release(diff);
    dp_tensor_release(fused2);
    dp_tensor_release(fused);
    dp_tensor_release(ref);
    return rc;
}
