/* psg_inspect.c: reading what the per-sample gradient engine computed: per-example norms, the
 * accumulators, and one example's full gradient rebuilt in f64 from the taps (for tests that
 * check the clip bound, and for the REPL). These are raw per-example statistics: not private. */
#include <math.h>
#include <stdlib.h>
#include "psg_internal.h"

static dp_psg_param *param_at(const dp_psg *psg, int32_t index, const char *fn) {
    if (!psg) return dp_fail_null(DP_EARG, "%s: engine is NULL", fn);
    if (index < 0 || index >= psg->n)
        return dp_fail_null(DP_EINDEX, "%s: parameter index %d out of range (the engine has %d)", fn, index, psg->n);
    return psg->params[index];
}

static double nonneg(double v) { return v < 0 ? 0 : v; }

int dp_psg_sample_norms(const dp_psg *psg, int32_t index, int32_t bound, double *out) {
    const char *fn = "dp_psg_sample_norms";
    if (!psg || !out) return dp_fail(DP_EARG, "%s: engine or out is NULL", fn);
    if (!psg->norms_ready) return dp_fail(DP_EGRAPH, "%s: no norms for this micro-batch yet (call dp_psg_compute_norms)", fn);
    int64_t B = psg->batch;
    if (index >= 0) {
        dp_psg_param *p = param_at(psg, index, fn);
        if (!p) return DP_EINDEX;
        if (!p->sq) return dp_fail(DP_EARG, "%s: '%s' is frozen: it has no per-sample norms", fn, p->name);
        for (int64_t i = 0; i < B; i++) out[i] = sqrt(nonneg(bound ? p->sq_bound[i] : p->sq[i]));
        return 0;
    }
    if (index != -1) return dp_fail(DP_EINDEX, "%s: index %d, expected a parameter index or -1 (all)", fn, index);
    for (int64_t i = 0; i < B; i++) {
        double s = 0;
        for (int32_t k = 0; k < psg->n; k++)
            if (psg->params[k]->sq) s += nonneg(bound ? psg->params[k]->sq_bound[i] : psg->params[k]->sq[i]);
        out[i] = sqrt(s);
    }
    return 0;
}

dp_tensor *dp_psg_accumulator(const dp_psg *psg, int32_t index) {
    dp_psg_param *p = param_at(psg, index, "dp_psg_accumulator");
    if (!p) return NULL;
    if (!p->accum) return dp_fail_null(DP_EARG, "dp_psg_accumulator: '%s' has no accumulator yet", p->name);
    dp_tensor_retain(p->accum);
    return p->accum;
}

/* Row `sample` of a (B, ...) tensor as host doubles (count = the row's numel). */
static double *host_row(dp_tensor *t, int64_t sample) {
    dp_tensor *row = dp_select(t, 0, sample);
    dp_tensor *c = row ? dp_contiguous(row) : NULL;
    int64_t n = c ? dp_tensor_numel(c) : 0;
    double *out = c ? malloc(sizeof(double) * (size_t)(n ? n : 1)) : NULL;
    if (out && dp_tensor_to_f64(c, out)) {
        free(out);
        out = NULL;
    }
    dp_tensor_release(c);
    dp_tensor_release(row);
    return out;
}

dp_tensor *dp_psg_sample_grad(const dp_psg *psg, int32_t index, int64_t sample) {
    const char *fn = "dp_psg_sample_grad";
    dp_psg_param *p = param_at(psg, index, fn);
    if (!p) return NULL;
    if (!psg->norms_ready || p->n_taps == 0)
        return dp_fail_null(DP_EGRAPH, "%s: no per-sample data for '%s' (call it after dp_psg_compute_norms and "
                            "before dp_psg_clip_accumulate)", fn, p->name);
    if (sample < 0 || sample >= psg->batch)
        return dp_fail_null(DP_EINDEX, "%s: sample %lld out of range (micro-batch of %lld)", fn, (long long)sample,
                            (long long)psg->batch);
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    psg_tap *tap = &p->taps[0];
    int64_t n = dp_tensor_numel(p->param);
    double *out = calloc((size_t)(n ? n : 1), sizeof(double));
    double *a = NULL, *g = NULL;
    int ok = out != NULL;
    if (ok && tap->psg) {
        double *row = host_row(tap->psg, sample);
        if ((ok = row != NULL)) memcpy(out, row, sizeof(double) * (size_t)n);
        free(row);
    } else if (ok) {
        a = host_row(tap->a, sample);
        g = a ? host_row(tap->g, sample) : NULL;
        ok = g != NULL;
        int64_t T = tap->a->shape[1], cols = tap->g->shape[2];
        if (ok && tap->kind == DP_PSG_LINEAR_WEIGHT) {
            int64_t d = tap->a->shape[2];   /* out (p, d) = sum_t g_t a_t^T */
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < cols; j++)
                    for (int64_t k = 0; k < d; k++) out[j * d + k] += g[t * cols + j] * a[t * d + k];
        } else if (ok) {
            for (int64_t t = 0; t < T; t++) {
                int64_t row = (int64_t)a[t];
                for (int64_t k = 0; k < cols; k++) out[row * cols + k] += g[t * cols + k];
            }
        }
    }
    /* The taps carry the loss scale (a power of two): divide it out, exactly. */
    double unscale = 1.0 / psg->batch_loss_scale;
    for (int64_t k = 0; ok && unscale != 1.0 && k < n; k++) out[k] *= unscale;
    dp_tensor *result = ok ? dp_tensor_from_f64(DP_F64, p->param->ndim, p->param->shape, out) : NULL;
    if (!ok && out) dp_fail(DP_ENOMEM, "%s: out of memory for '%s'", fn, p->name);
    free(out);
    free(a);
    free(g);
    dp_set_grad_enabled(prev);
    return result;
}
