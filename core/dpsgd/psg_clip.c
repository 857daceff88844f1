/* psg_clip.c: clip factors from the per-example norm bounds, the clipped sums (book-keeping: one
 * GEMM over per-example scaled output gradients per linear weight, Bu et al. 2023), and the end of
 * a logical batch (Gaussian noise once, then .grad; per parameter in dp_psg_finish_param, which
 * the fused end of a step, psg_update.c, composes with the optimizer where it has no kernel).
 *
 * The clip bound holds after rounding: factors come from upper bounds on the exact norms
 * (psg_norms.c), and a factor below 1 is shrunk by 2^-20 so that rounding C / n and rounding
 * c * g to f32 (at most 2^-24 each, relative) cannot lift a contribution above C (by 2^-48 when
 * every accumulator is f64). An example whose
 * norm is NaN or Inf gets factor 0, and its rows are zeroed exactly (0 * Inf would be NaN).
 * A loss scale L (a power of two) rides on the factors applied to the taps: c_i / L on values that
 * carry L gives the same bits as c_i on unscaled ones. Scaled copies are per-sample memory
 * (DP_MEM_PER_SAMPLE); accumulators and the .grad they become are DP_MEM_GRADIENTS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "psg_internal.h"

/* The shrink covers rounding C / n in f64 and c * g to the accumulator's dtype: 2^-20 when any
 * accumulator is f32, 2^-48 when all are f64. */
static double shrink_for(const dp_psg *psg) {
    for (int32_t k = 0; k < psg->n; k++)
        if (psg->params[k]->trainable && psg->params[k]->param->dtype != DP_F64) return 1.0 - 0x1p-20;
    return 1.0 - 0x1p-48;
}

static double clip_factor(int32_t mode, double C, double gamma, double norm_bound, double shrink) {
    if (!isfinite(norm_bound)) return 0.0;
    if (mode == DP_CLIP_AUTOMATIC) return C / (norm_bound + gamma) * shrink;
    if (norm_bound <= C) return 1.0;
    return C / norm_bound * shrink;
}

static int check_config(const dp_psg *psg, const dp_clip_config *cfg, int32_t groups) {
    const char *fn = "dp_psg_clip_accumulate";
    if (!cfg) return dp_fail(DP_EARG, "%s: config is NULL", fn);
    if (cfg->mode == DP_CLIP_PER_LAYER) {
        if (cfg->n_groups < groups || !cfg->thresholds)
            return dp_fail(DP_EARG, "%s: per-layer clipping needs %d thresholds (one per group), got %d", fn,
                           groups, cfg->thresholds ? cfg->n_groups : 0);
        for (int32_t g = 0; g < groups; g++)
            if (!(cfg->thresholds[g] > 0) || !isfinite(cfg->thresholds[g]))
                return dp_fail(DP_EARG, "%s: threshold of group %d is %g, expected finite and > 0", fn, g,
                               cfg->thresholds[g]);
        return 0;
    }
    if (cfg->mode != DP_CLIP_FLAT && cfg->mode != DP_CLIP_AUTOMATIC)
        return dp_fail(DP_EARG, "%s: clipping mode %d, expected 0 (flat), 1 (per-layer) or 2 (automatic)", fn,
                       cfg->mode);
    if (!(cfg->max_norm > 0) || !isfinite(cfg->max_norm))
        return dp_fail(DP_EARG, "%s: max_norm %g, expected finite and > 0", fn, cfg->max_norm);
    if (cfg->gamma < 0 || !isfinite(cfg->gamma))
        return dp_fail(DP_EARG, "%s: gamma %g, expected finite and >= 0", fn, cfg->gamma);
    return 0;
}

/* factors[g * B + i]; fills stats. */
static int compute_factors(dp_psg *psg, const dp_clip_config *cfg, int32_t groups, dp_clip_stats *stats) {
    int64_t B = psg->batch;
    int32_t nf = cfg->mode == DP_CLIP_PER_LAYER ? groups : 1;
    double *f = calloc((size_t)(nf * B), sizeof(double)), *gb = calloc((size_t)groups, sizeof(double));
    if (!f || !gb) {
        free(f);
        free(gb);
        return dp_fail(DP_ENOMEM, "dp_psg_clip_accumulate: out of memory for %lld factors", (long long)(nf * B));
    }
    double gamma = cfg->gamma > 0 ? cfg->gamma : 0.01, shrink = shrink_for(psg);
    dp_clip_stats st = {.samples = B};
    double norm_sum = 0;
    for (int64_t i = 0; i < B; i++) {
        double total = 0, total_sq = 0;
        for (int32_t g = 0; g < groups; g++) gb[g] = 0;
        for (int32_t k = 0; k < psg->n; k++) {
            dp_psg_param *p = psg->params[k];
            if (!p->trainable || !p->sq_bound) continue;
            gb[p->group] += p->sq_bound[i];
            total += p->sq_bound[i];
            total_sq += fmax(p->sq[i], 0);
        }
        int finite = isfinite(total);
        int clipped = 0;
        for (int32_t g = 0; g < nf; g++) {
            double C = nf > 1 ? cfg->thresholds[g] : cfg->max_norm;
            double bound = sqrt(nf > 1 ? gb[g] : total) * (1 + 1e-12);
            f[g * B + i] = finite ? clip_factor(cfg->mode, C, gamma, bound, shrink) : 0.0;
            clipped |= f[g * B + i] < 1.0;
        }
        if (!finite) {
            st.nonfinite++;
            continue;
        }
        st.clipped += clipped;
        double n = sqrt(total_sq);
        norm_sum += n;
        if (n > st.norm_max) st.norm_max = n;
    }
    int64_t finite_n = B - st.nonfinite;
    st.norm_mean = finite_n ? norm_sum / (double)finite_n : 0;
    free(gb);
    free(psg->factors);
    psg->factors = f;
    psg->n_factor_groups = nf;
    if (stats) *stats = st;
    return 0;
}

/* ---------------------------------------------------------------- the clipped sums */

static dp_tensor *device_f64(dp_device device, const double *src, int64_t n) {
    const dp_ops *ops = dp_ops_for(device);
    dp_tensor *t = ops ? dp_tensor_empty(DP_F64, device, 1, &n) : NULL;
    if (t && ops->memcpy_h2d(t->data, src, sizeof(double) * (size_t)n)) {
        dp_tensor_release(t);
        return NULL;
    }
    return t;
}

static dp_tensor *scaled(const dp_ops *ops, dp_tensor *x, dp_dtype dtype, dp_tensor *factor) {
    dp_tensor *out = dp_tensor_empty(dtype, x->device, x->ndim, x->shape);
    if (out && ops->scale_rows(out, x, factor)) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

/* c_i A_i for inputs shared by several weights (the query, key and value projections read one
 * input): scaled once. It pins the source so the address cannot be reused while cached. */
typedef struct {
    dp_tensor *src, *scaled;
    const double *factors;
} scaled_cache;

static void scaled_cache_clear(scaled_cache *c) {
    dp_tensor_release(c->src);
    dp_tensor_release(c->scaled);
    *c = (scaled_cache){0};
}

static int same_data(const dp_tensor *a, const dp_tensor *b) {
    if (!a || !b || a->data != b->data || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int32_t d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

static dp_tensor *as_dtype(dp_tensor *x, dp_dtype dtype) {
    if (x->dtype == dtype) {
        dp_tensor_retain(x);
        return x;
    }
    return dp_cast(x, dtype);
}

/* acc (p, d) += sum_i c_i G_i^T A_i as one GEMM over all B*T rows. The factor goes on the
 * smaller side (A when d <= p, or when A is already scaled for this group's factors); the other
 * side is used as it is, except that a zeroed example's rows are zeroed there too (its values may
 * be Inf or NaN, and 0 * Inf is NaN). acc: p's accumulator, or a zeroed one like it. */
static int sum_linear_composed(const dp_ops *ops, dp_psg_param *p, dp_tensor *acc, dp_tensor *factor,
                               const double *factors_host, dp_tensor *keep, scaled_cache *cache) {
    dp_tensor *a = p->taps[0].a, *g = p->taps[0].g;
    int64_t B = a->shape[0], T = a->shape[1], d = a->shape[2], pp = g->shape[2];
    int cached = cache->factors == factors_host && same_data(cache->src, a) && cache->scaled->dtype == acc->dtype;
    int scale_a = cached || d <= pp;
    dp_tensor *as = NULL, *gs = NULL;
    if (scale_a) {
        if (!cached) {
            scaled_cache_clear(cache);
            dp_tensor *s = scaled(ops, a, acc->dtype, factor);
            if (!s) return DP_ENOMEM;
            dp_tensor_retain(a);
            *cache = (scaled_cache){a, s, factors_host};
        }
        as = cache->scaled;
        dp_tensor_retain(as);
        gs = keep ? scaled(ops, g, acc->dtype, keep) : as_dtype(g, acc->dtype);
    } else {
        gs = scaled(ops, g, acc->dtype, factor);
        as = !gs ? NULL : keep ? scaled(ops, a, acc->dtype, keep) : as_dtype(a, acc->dtype);
    }
    int64_t gshape[3] = {1, B * T, pp}, ashape[3] = {1, B * T, d}, oshape[3] = {1, pp, d};
    dp_tensor *g1 = as && gs ? dp_reshape(gs, 3, gshape) : NULL, *a1 = g1 ? dp_reshape(as, 3, ashape) : NULL;
    dp_tensor *o1 = a1 ? dp_reshape(acc, 3, oshape) : NULL;
    int rc = o1 ? ops->gemm(o1, g1, a1, 1, 0, 1.0, 1.0) : DP_ENOMEM;
    dp_tensor_release(o1);
    dp_tensor_release(a1);
    dp_tensor_release(g1);
    dp_tensor_release(as);
    dp_tensor_release(gs);
    return rc;
}

typedef struct {
    const dp_ops *ops;
    dp_psg_param *p;
    dp_tensor *factor, *keep;
    const double *factors_host;
    scaled_cache *cache;
} composed_sum_ctx;

/* The self-check's reference for the fused clipped sum (psg_fused.c). */
static int composed_sum(void *vctx, dp_tensor *acc) {
    composed_sum_ctx *c = vctx;
    return sum_linear_composed(c->ops, c->p, acc, c->factor, c->factors_host, c->keep, c->cache);
}

/* p's accumulator += sum_i c_i G_i^T A_i: by the backend's fused clipped_sum where it serves these
 * taps (bf16/f16, f32 accumulator; the factor of a zeroed example is 0, so no keep mask is
 * needed), else composed from scale_rows and one GEMM. */
static int sum_linear(const dp_ops *ops, dp_psg_param *p, dp_tensor *factor, const double *factors_host,
                      dp_tensor *keep, scaled_cache *cache) {
    dp_tensor *a = p->taps[0].a, *g = p->taps[0].g;
    if (!dp_psg_fused_usable(ops, DP_PSG_FUSED_CLIPPED_SUM, g, a, p->accum))
        return sum_linear_composed(ops, p, p->accum, factor, factors_host, keep, cache);
    /* The contributions' summed norms, c_i ||S_i||, scale the self-check's tolerance. */
    double scale = 0, L = p->owner->batch_loss_scale;
    for (int64_t i = 0; p->sq && i < a->shape[0]; i++)
        if (factors_host[i] != 0 && isfinite(p->sq[i])) scale += fabs(factors_host[i]) * L * sqrt(fmax(p->sq[i], 0));
    composed_sum_ctx ctx = {ops, p, factor, keep, factors_host, cache};
    return dp_psg_fused_clipped_sum(ops, p->accum, g, a, factor, scale, composed_sum, &ctx);
}

/* accum (V, D) rows at the indices += c_i g rows. */
static int sum_embedding(const dp_ops *ops, dp_psg_param *p, dp_tensor *factor) {
    dp_tensor *idx = p->taps[0].a, *g = p->taps[0].g;
    int64_t n = idx->shape[0] * idx->shape[1], D = g->shape[2], g2shape[2] = {n, D};
    dp_tensor *gs = scaled(ops, g, p->accum->dtype, factor);
    dp_tensor *g2 = gs ? dp_reshape(gs, 2, g2shape) : NULL, *i1 = g2 ? dp_reshape(idx, 1, &n) : NULL;
    int rc = i1 ? ops->scatter_add_rows(p->accum, i1, g2) : DP_ENOMEM;
    dp_tensor_release(i1);
    dp_tensor_release(g2);
    dp_tensor_release(gs);
    return rc;
}

/* accum += sum_i c_i psg_i, the sum in f64. */
static int sum_direct(const dp_ops *ops, dp_psg_param *p, dp_tensor *factor) {
    dp_tensor *psg = p->taps[0].psg;
    dp_tensor *s = scaled(ops, psg, DP_F64, factor);
    int32_t dim0 = 0;
    dp_tensor *total = s ? dp_sum(s, 1, &dim0, 0) : NULL;
    dp_tensor *cast = total ? dp_cast(total, p->accum->dtype) : NULL;
    dp_tensor *shaped = cast ? dp_reshape(cast, p->accum->ndim, p->accum->shape) : NULL;
    int rc = shaped ? dp_axpy_(p->accum, 1.0, shaped) : DP_ENOMEM;
    dp_tensor_release(shaped);
    dp_tensor_release(cast);
    dp_tensor_release(total);
    dp_tensor_release(s);
    return rc;
}

/* p's accumulator, created (zero, under DP_MEM_GRADIENTS) when it has none. */
static int ensure_accum(dp_psg_param *p) {
    if (!p->accum) {
        int32_t prev = dp_mem_set_category(DP_MEM_GRADIENTS);
        p->accum = dp_tensor_zeros(dp_psg_accum_dtype(p->param), p->param->device, p->param->ndim,
                                   p->param->shape);
        dp_mem_set_category(prev);
        if (!p->accum) return DP_ENOMEM;
    }
    p->accum_dtype = (int32_t)p->accum->dtype;
    return 0;
}

int dp_psg_clip_accumulate(dp_psg *psg, const dp_clip_config *config, dp_clip_stats *stats) {
    const char *fn = "dp_psg_clip_accumulate";
    if (!psg) return dp_fail(DP_EARG, "%s: engine is NULL", fn);
    if (!psg->norms_ready) return dp_fail(DP_EGRAPH, "%s: per-sample norms not computed (call dp_psg_compute_norms)", fn);
    if (psg->factors_ready) return dp_fail(DP_EGRAPH, "%s: this micro-batch is already clipped and summed", fn);
    int32_t groups = dp_psg_num_groups(psg);
    dp_clip_stats st;
    int rc = check_config(psg, config, groups);
    if (!rc) rc = compute_factors(psg, config, groups, &st);
    if (rc) return rc;
    if (stats) *stats = st;
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    int32_t prev_cat = dp_mem_set_category(DP_MEM_PER_SAMPLE);
    int64_t B = psg->batch;
    double *keep_host = NULL;
    if (st.nonfinite) {
        keep_host = malloc(sizeof(double) * (size_t)B);
        if (!keep_host) rc = dp_fail(DP_ENOMEM, "%s: out of memory", fn);
        for (int64_t i = 0; keep_host && i < B; i++) keep_host[i] = psg->factors[i] == 0.0 ? 0.0 : 1.0;
    }
    /* The factors applied to the taps: c_i / L (exact, L a power of two). */
    int64_t nfac = (int64_t)psg->n_factor_groups * B;
    double *applied = malloc(sizeof(double) * (size_t)(nfac ? nfac : 1));
    if (!applied && !rc) rc = dp_fail(DP_ENOMEM, "%s: out of memory", fn);
    for (int64_t i = 0; applied && i < nfac; i++) applied[i] = psg->factors[i] / psg->batch_loss_scale;
    scaled_cache cache = {0};
    for (int32_t k = 0; !rc && k < psg->n; k++) {
        dp_psg_param *p = psg->params[k];
        if (!p->trainable || p->n_taps == 0) continue;
        const dp_ops *ops = dp_ops_for(p->param->device);
        if (!ops) { rc = DP_EDEVICE; break; }
        if (!ops->scale_rows || !ops->scatter_add_rows || !ops->gemm) {
            rc = dp_fail(DP_EUNSUPPORTED, "%s: the %s backend lacks the clipping kernels", fn, ops->name);
            break;
        }
        if ((rc = ensure_accum(p))) break;
        int32_t g = psg->n_factor_groups > 1 ? p->group : 0;
        dp_tensor *factor = device_f64(p->param->device, applied + g * B, B);
        dp_tensor *keep = keep_host ? device_f64(p->param->device, keep_host, B) : NULL;
        if (!factor || (keep_host && !keep)) rc = DP_ENOMEM;
        else if (p->taps[0].kind == DP_PSG_LINEAR_WEIGHT)
            rc = sum_linear(ops, p, factor, applied + g * B, keep, &cache);
        else if (p->taps[0].kind == DP_PSG_EMBEDDING) rc = sum_embedding(ops, p, factor);
        else rc = sum_direct(ops, p, factor);
        dp_tensor_release(factor);
        dp_tensor_release(keep);
        if (rc) {
            char ctx[160];
            snprintf(ctx, sizeof ctx, "clipped sum of '%s'", p->name);
            dp_error_prefix(ctx);
        }
        dp_psg_clear_taps(p);   /* the activations and output gradients are no longer needed */
    }
    scaled_cache_clear(&cache);
    free(keep_host);
    free(applied);
    dp_mem_set_category(prev_cat);
    dp_set_grad_enabled(prev);
    if (!rc) psg->factors_ready = 1;
    return rc;
}

int dp_psg_clip_factors(const dp_psg *psg, int32_t group, double *out) {
    if (!psg || !out) return dp_fail(DP_EARG, "dp_psg_clip_factors: engine or out is NULL");
    if (!psg->factors) return dp_fail(DP_EGRAPH, "dp_psg_clip_factors: no clip factors yet (call dp_psg_clip_accumulate)");
    if (group < 0 || group >= psg->n_factor_groups)
        return dp_fail(DP_EINDEX, "dp_psg_clip_factors: group %d, the factors have %d group(s)", group,
                       psg->n_factor_groups);
    memcpy(out, psg->factors + group * psg->batch, sizeof(double) * (size_t)psg->batch);
    return 0;
}

/* ---------------------------------------------------------------- the end of a logical batch */

/* *out = ||t|| in f64 (any float dtype, contiguous), by the device's row_sq_norms. */
static int norm_of(dp_tensor *t, double *out) {
    const dp_ops *ops = dp_ops_for(t->device);
    if (!ops) return DP_EDEVICE;
    if (!ops->row_sq_norms)
        return dp_fail(DP_EUNSUPPORTED, "DP engine: the %s backend has no row_sq_norms kernel", ops->name);
    int64_t one = 1, shape2[2] = {1, dp_tensor_numel(t)};
    dp_tensor *t2 = dp_reshape(t, 2, shape2), *sq = t2 ? dp_tensor_empty(DP_F64, t->device, 1, &one) : NULL;
    double v = 0;
    int rc = sq ? ops->row_sq_norms(sq, t2) : DP_ENOMEM;
    if (!rc) rc = dp_tensor_to_f64(sq, &v);
    *out = sqrt(v);
    dp_tensor_release(sq);
    dp_tensor_release(t2);
    return rc;
}

/* An f64 copy of t (a new tensor even when t is f64). */
static dp_tensor *f64_copy(dp_tensor *t) {
    return t->dtype == DP_F64 ? dp_clone(t) : dp_cast(t, DP_F64);
}

/* Noise goes in chunks of this many elements, so that measuring what was added needs two f64
 * copies of a chunk, not of a whole (embedding-sized) accumulator. Even: the generators draw two
 * normals per block, so chunked adds draw exactly the numbers one whole add would. */
#define NOISE_CHUNK ((int64_t)1 << 18)

/* Add the noise to p's accumulator, recording the norms of the clipped sum before it and of what
 * was added (the accumulator after minus before, in f64: it includes the rounding of the add). */
static int add_noise(dp_psg_param *p, dp_noise *noise, double std) {
    if (std == 0) {
        p->noise_norm = 0;
        return norm_of(p->accum, &p->sum_norm);
    }
    int32_t prev = dp_mem_set_category(DP_MEM_GRADIENTS);
    int64_t n = dp_tensor_numel(p->accum);
    dp_tensor *flat = dp_reshape(p->accum, 1, &n);
    double sum_sq = 0, noise_sq = 0;
    int rc = flat ? 0 : DP_ENOMEM;
    for (int64_t start = 0; !rc && start < n; start += NOISE_CHUNK) {
        int64_t len = n - start < NOISE_CHUNK ? n - start : NOISE_CHUNK;
        dp_tensor *chunk = dp_narrow(flat, 0, start, len), *before = NULL, *after = NULL;
        double s = 0, d = 0;
        rc = chunk && (before = f64_copy(chunk)) ? norm_of(before, &s) : DP_ENOMEM;
        if (!rc) rc = dp_noise_add_(noise, chunk, std);
        if (!rc) rc = (after = f64_copy(chunk)) ? dp_axpy_(after, -1.0, before) : DP_ENOMEM;
        if (!rc) rc = norm_of(after, &d);
        sum_sq += s * s;
        noise_sq += d * d;
        dp_tensor_release(before);
        dp_tensor_release(after);
        dp_tensor_release(chunk);
    }
    dp_tensor_release(flat);
    p->sum_norm = sqrt(sum_sq);
    p->noise_norm = sqrt(noise_sq);
    dp_mem_set_category(prev);
    return rc;
}

int dp_psg_prepare_accum(dp_psg_param *p) { return ensure_accum(p); }

int dp_psg_finish_param(dp_psg_param *p, dp_noise *noise, double std, double scale) {
    if (!p->param->requires_grad) {
        int rc = dp_tensor_set_grad(p->param, NULL);
        dp_tensor_release(p->accum);
        p->accum = NULL;
        return rc;
    }
    /* An empty logical batch still takes a step: noise alone. */
    int rc = ensure_accum(p);
    if (rc) return rc;
    rc = add_noise(p, noise, std);
    if (!rc && scale != 1.0) rc = dp_scale_(p->accum, scale);
    if (!rc) rc = dp_tensor_set_grad(p->param, p->accum);
    if (rc) {
        char ctx[160];
        snprintf(ctx, sizeof ctx, "noise for '%s'", p->name);
        dp_error_prefix(ctx);
        return rc;
    }
    dp_tensor_release(p->accum);
    p->accum = NULL;
    return 0;
}

int dp_psg_finish(dp_psg *psg, dp_noise *noise, double std, double scale) {
    const char *fn = "dp_psg_finish";
    if (!psg) return dp_fail(DP_EARG, "%s: engine is NULL", fn);
    if (!(std >= 0) || !isfinite(std)) return dp_fail(DP_EARG, "%s: noise std %g, expected finite and >= 0", fn, std);
    if (!isfinite(scale)) return dp_fail(DP_EARG, "%s: scale %g, expected finite", fn, scale);
    if (std > 0 && !noise) return dp_fail(DP_EARG, "%s: noise std %g needs a generator", fn, std);
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    int rc = 0;
    for (int32_t k = 0; !rc && k < psg->n; k++) rc = dp_psg_finish_param(psg->params[k], noise, std, scale);
    dp_set_grad_enabled(prev);
    return rc;
}
