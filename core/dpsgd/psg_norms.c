/* psg_norms.c: each example's squared gradient norm per parameter, from the taps of one backward,
 * together with an upper bound on the exact squared norm that covers the rounding of the
 * computation, so that clipping by the bound keeps every clipped contribution within C.
 *
 * Linear weights on sequences, per example i with inputs A (T, d) and output gradients G (T, p):
 *   ghost form:        ||A^T G||^2 = sum_{t,s} (a_t . a_s)(g_t . g_s), two Gram matrices, about
 *                      T^2 (d + p) multiply-adds (Li et al. 2022, "Large language models can be
 *                      strong differentially private learners"; Bu et al. 2023);
 *   materialised form: A^T G formed (p x d) and squared, about 2 T d p; on a backend with a fused
 *                      per_example_sq_norms (CUDA, bf16/f16 taps) never stored (psg_fused.c).
 * The cheaper is chosen per parameter (or forced by dp_psg_set_form; see GHOST_COST_BESIDE_FUSED).
 * Rounding bounds (Higham, "Accuracy and stability of numerical algorithms", 3.1): an inner product
 * of length n accumulated in precision u errs by at most gamma_n = n u / (1 - n u) times the sum of
 * the absolute products; Cauchy-Schwarz turns those sums into products of row norms.
 * With a loss scale L (a power of two) every tapped gradient carries L, so each squared norm and
 * bound carries L^2 exactly; they are divided by L^2 at the end (exact too). The work buffers
 * (Grams, per-example products) are allocated under DP_MEM_PER_SAMPLE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "psg_internal.h"

enum { MATERIALISE_CHUNK_BYTES = 32 << 20 };

/* Where the fused kernel can take a tap, the materialised form runs on tensor cores on the
 * bf16/f16 taps and stores nothing, while the ghost form builds its Gram matrices in f32 from
 * copies of the taps (no tensor cores): the automatic choice weighs the ghost FLOPs by this
 * throughput gap. An estimate (H100: about 15x between dense bf16 and f32), not yet measured. */
enum { GHOST_COST_BESIDE_FUSED = 8 };

/* gamma_n with margin for the f64 sums that follow. */
static double gamma_n(double n, dp_dtype dtype) {
    double u = dtype == DP_F64 ? 0x1p-53 : 0x1p-24;
    return 1.01 * (n + 2) * u / (1 - (n + 2) * u);
}

/* x as f32 (f64 stays f64), contiguous: the Gram and GEMM kernels take those two. */
static dp_tensor *as_compute(dp_tensor *x) {
    if (x->dtype == DP_F64 || x->dtype == DP_F32) {
        dp_tensor_retain(x);
        return x;
    }
    return dp_cast(x, DP_F32);
}

static dp_tensor *new_f64(dp_device device, int32_t ndim, const int64_t *shape) {
    return dp_tensor_empty(DP_F64, device, ndim, shape);
}

/* Host copy of an f64 vector tensor. */
static double *to_host(const dp_tensor *t) {
    int64_t n = dp_tensor_numel(t);
    double *out = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!out) return dp_fail_null(DP_ENOMEM, "DP engine: out of memory for %lld norms", (long long)n);
    if (dp_tensor_to_f64(t, out)) {
        free(out);
        return NULL;
    }
    return out;
}

/* Per-row squared norms of x viewed as (rows, n), on the host. */
static double *row_sq_norms(const dp_ops *ops, dp_tensor *x, int64_t rows) {
    int64_t n = rows ? dp_tensor_numel(x) / rows : 0, shape2[2] = {rows, n};
    dp_tensor *x2 = dp_reshape(x, 2, shape2);
    dp_tensor *out = x2 ? new_f64(x->device, 1, &rows) : NULL;
    double *host = out && !ops->row_sq_norms(out, x2) ? to_host(out) : NULL;
    dp_tensor_release(out);
    dp_tensor_release(x2);
    return host;
}

/* sum_t sqrt(ra[i,t] * rb[i,t]) per example: the Cauchy-Schwarz bound on sum_t |a_t| |g_t|. */
static void pair_sums(double *out, const double *ra, const double *rb, int64_t B, int64_t T) {
    for (int64_t i = 0; i < B; i++) {
        double s = 0;
        for (int64_t t = 0; t < T; t++) s += sqrt(ra[i * T + t]) * (rb ? sqrt(rb[i * T + t]) : 1.0);
        out[i] = s * (1 + 1e-12);
    }
}

/* ---------------------------------------------------------------- merging several uses */

/* Concatenate (B, T_k, ...) tensors along dim 1. */
static dp_tensor *concat_tokens(psg_tap *taps, int32_t n, int use_a) {
    dp_tensor *first = use_a ? taps[0].a : taps[0].g;
    int64_t shape[8], T = 0;
    for (int32_t k = 0; k < n; k++) T += (use_a ? taps[k].a : taps[k].g)->shape[1];
    for (int32_t d = 0; d < first->ndim; d++) shape[d] = first->shape[d];
    shape[1] = T;
    dp_tensor *out = dp_tensor_empty(first->dtype, first->device, first->ndim, shape);
    int64_t at = 0;
    for (int32_t k = 0; out && k < n; k++) {
        dp_tensor *src = use_a ? taps[k].a : taps[k].g;
        if (src->dtype != first->dtype || src->ndim != first->ndim ||
            (src->ndim == 3 && src->shape[2] != first->shape[2])) {
            dp_tensor_release(out);
            return dp_fail_null(DP_EDTYPE, "DP engine: uses of one parameter differ (%s vs %s)",
                                dp_tensor_desc(src), dp_tensor_desc(first));
        }
        dp_tensor *dst = dp_narrow(out, 1, at, src->shape[1]);
        int rc = dst ? dp_copy_(dst, src) : DP_ENOMEM;
        dp_tensor_release(dst);
        if (rc) { dp_tensor_release(out); return NULL; }
        at += src->shape[1];
    }
    return out;
}

/* Fold every use of p into taps[0]: per-sample gradients add; token sequences concatenate
 * (the gradient of a weight used twice is A1^T G1 + A2^T G2 = [A1;A2]^T [G1;G2]). */
static int merge_taps(dp_psg_param *p) {
    if (p->n_taps < 2) return 0;
    psg_tap *t0 = &p->taps[0];
    for (int32_t k = 1; k < p->n_taps; k++)
        if (p->taps[k].kind != t0->kind && !(t0->psg && p->taps[k].psg))
            return dp_fail(DP_EGRAPH, "DP engine: parameter '%s' is used both as a linear weight and as an "
                           "embedding table; the engine cannot combine those", p->name);
    if (t0->psg) {
        for (int32_t k = 1; k < p->n_taps; k++) {
            int rc = dp_axpy_(t0->psg, 1.0, p->taps[k].psg);
            if (rc) return rc;
        }
    } else {
        dp_tensor *a = concat_tokens(p->taps, p->n_taps, 1);
        dp_tensor *g = a ? concat_tokens(p->taps, p->n_taps, 0) : NULL;
        if (!g) { dp_tensor_release(a); return DP_ENOMEM; }
        dp_tensor_release(t0->a);
        dp_tensor_release(t0->g);
        t0->a = a;
        t0->g = g;
    }
    for (int32_t k = 1; k < p->n_taps; k++) {
        dp_tensor_release(p->taps[k].a);
        dp_tensor_release(p->taps[k].g);
        dp_tensor_release(p->taps[k].psg);
    }
    p->n_taps = 1;
    return 0;
}

/* ---------------------------------------------------------------- the forms */

/* A one-entry cache of the input Gram matrix: the query, key and value projections of a layer
 * read the same input, so its Gram is formed once for the three (they are registered in a row).
 * The key is the data of the tap's own input, which stays alive until the taps are released. */
typedef struct {
    void *data;
    int64_t B, T, d;
    dp_tensor *gram;
} gram_cache;

static dp_tensor *gram_of(const dp_ops *ops, dp_tensor *x) {
    int64_t shape[3] = {x->shape[0], x->shape[1], x->shape[1]};
    dp_tensor *out = dp_tensor_empty(x->dtype, x->device, 3, shape);
    if (out && ops->gram(out, x)) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

static int ghost(const dp_ops *ops, dp_psg_param *p, dp_tensor *a, dp_tensor *g, gram_cache *cache) {
    int64_t B = a->shape[0], T = a->shape[1], d = a->shape[2], pp = g->shape[2];
    void *key = p->taps[0].a->data;
    if (cache->data != key || cache->B != B || cache->T != T || cache->d != d || !cache->gram) {
        dp_tensor_release(cache->gram);
        *cache = (gram_cache){key, B, T, d, gram_of(ops, a)};
        if (!cache->gram) return DP_ENOMEM;
    }
    dp_tensor *gg = gram_of(ops, g);
    dp_tensor *sq = gg ? new_f64(a->device, 1, &B) : NULL, *bound = sq ? new_f64(a->device, 1, &B) : NULL;
    /* Gram entries err by gamma_d |a_t||a_s| and gamma_p |g_t||g_s|; their product adds the cross
     * term, folded into ka. The f64 sum over T^2 terms is covered by counting T^2 in gamma. */
    double gp = gamma_n((double)pp + (double)T * T, a->dtype);
    double ka = gamma_n((double)d + (double)T * T, a->dtype) * (1 + gp), kg = gp;
    int rc = bound ? ops->ghost_norm(sq, bound, cache->gram, gg, ka, kg) : DP_ENOMEM;
    double *hs = rc ? NULL : to_host(sq), *hb = hs ? to_host(bound) : NULL;
    if (hb) {
        for (int64_t i = 0; i < B; i++) {
            p->sq[i] = hs[i];
            p->sq_bound[i] = (fmax(hs[i], 0) + hb[i]) * (1 + 1e-12);
        }
    }
    rc = hb ? 0 : rc ? rc : DP_ENOMEM;
    free(hs);
    free(hb);
    dp_tensor_release(gg);
    dp_tensor_release(sq);
    dp_tensor_release(bound);
    return rc;
}

/* sq (B) = ||A_i^T G_i||^2, the products formed by GEMMs (a, g f32 or f64) in chunks of examples
 * that fit MATERIALISE_CHUNK_BYTES. */
static int materialise_sq(const dp_ops *ops, dp_tensor *a, dp_tensor *g, double *out) {
    int64_t B = a->shape[0], d = a->shape[2], pp = g->shape[2];
    int64_t per = pp * d * dp_dtype_size(a->dtype), chunk = per ? MATERIALISE_CHUNK_BYTES / per : B;
    if (chunk < 1) chunk = 1;
    if (chunk > B) chunk = B;
    int64_t shape[3] = {chunk, pp, d};
    dp_tensor *buf = dp_tensor_empty(a->dtype, a->device, 3, shape);
    int rc = buf ? 0 : DP_ENOMEM;
    for (int64_t i0 = 0; !rc && i0 < B; i0 += chunk) {
        int64_t n = B - i0 < chunk ? B - i0 : chunk;
        dp_tensor *ac = dp_narrow(a, 0, i0, n), *gc = dp_narrow(g, 0, i0, n), *oc = dp_narrow(buf, 0, 0, n);
        rc = ac && gc && oc ? ops->gemm(oc, gc, ac, 1, 0, 1.0, 0.0) : DP_ENOMEM;
        double *sq = rc ? NULL : row_sq_norms(ops, oc, n);
        if (sq) memcpy(out + i0, sq, sizeof(double) * (size_t)n);
        else if (!rc) rc = DP_ENOMEM;
        free(sq);
        dp_tensor_release(ac);
        dp_tensor_release(gc);
        dp_tensor_release(oc);
    }
    dp_tensor_release(buf);
    return rc;
}

/* u (B, malloc'd) = sum_t |a_t| |g_t| per example, any float dtype. */
static double *abs_product_sums(const dp_ops *ops, dp_tensor *a, dp_tensor *g) {
    int64_t B = a->shape[0], T = a->shape[1];
    double *ra = row_sq_norms(ops, a, B * T), *rg = ra ? row_sq_norms(ops, g, B * T) : NULL;
    double *u = rg ? malloc(sizeof(double) * (size_t)(B ? B : 1)) : NULL;
    if (u) pair_sums(u, ra, rg, B, T);
    else if (rg) dp_fail(DP_ENOMEM, "DP engine: out of memory for %lld norms", (long long)B);
    free(ra);
    free(rg);
    return u;
}

/* Each entry of A^T G errs by gt sum_t |a_tk g_tj|: in norm, gt sum_t |a_t||g_t| = gt u. */
static void materialise_bounds(dp_psg_param *p, const double *u, double gt, int64_t B) {
    for (int64_t i = 0; i < B; i++) {
        double n = sqrt(fmax(p->sq[i], 0)) * (1 + 1e-12) + gt * u[i];
        p->sq_bound[i] = n * n * (1 + 1e-12);
    }
}

/* Per-example A^T G formed by GEMMs accumulating in a's dtype (f32 or f64). */
static int materialise(const dp_ops *ops, dp_psg_param *p, dp_tensor *a, dp_tensor *g) {
    int rc = materialise_sq(ops, a, g, p->sq);
    if (rc) return rc;
    double *u = abs_product_sums(ops, a, g);
    if (!u) return DP_ENOMEM;
    materialise_bounds(p, u, gamma_n((double)a->shape[1], a->dtype), a->shape[0]);
    free(u);
    return 0;
}

/* The fused form's products S_i = G_i^T A_i come from tensor cores (bf16/f16 taps, f32
 * accumulation), which add each block of k exact products to the running sum after aligning them
 * to the largest exponent and truncating (Fasi, Higham, Mikaitis and Pranesh 2021, "Numerical
 * behavior of NVIDIA tensor cores"): a block errs by at most (k + 2) 2u times its terms' absolute
 * sum, below 6u per product for any k >= 1, so gamma over 6 (T + 16) roundings (16: the zero-padded
 * last chunk of rows) bounds each entry's error by that factor times sum_t |a_tk g_tj|, as gamma_T
 * does for the round-to-nearest GEMM. The squares are summed in f64 (covered by the 1e-12). */
static double tensor_core_gamma(int64_t T) { return gamma_n(6.0 * ((double)T + 16), DP_F32); }

typedef struct {
    const dp_ops *ops;
    dp_tensor *a, *g;
} composed_norms_ctx;

/* The self-check's reference: the GEMM form on f32 copies of the taps. */
static int composed_norms(void *vctx, double *sq) {
    composed_norms_ctx *c = vctx;
    dp_tensor *a = as_compute(c->a), *g = a ? as_compute(c->g) : NULL;
    int rc = g ? materialise_sq(c->ops, a, g, sq) : DP_ENOMEM;
    dp_tensor_release(a);
    dp_tensor_release(g);
    return rc;
}

/* The materialised form through the backend's fused per_example_sq_norms on the bf16/f16 taps
 * themselves: no f32 copies of the taps, no per-example products in memory. */
static int fused_materialise(const dp_ops *ops, dp_psg_param *p, dp_tensor *a, dp_tensor *g) {
    int64_t B = a->shape[0], T = a->shape[1];
    double *u = abs_product_sums(ops, a, g), *tol = u ? malloc(sizeof(double) * (size_t)(B ? B : 1)) : NULL;
    double gt = tensor_core_gamma(T);
    int rc = tol ? 0 : DP_ENOMEM;
    if (!rc) {
        /* The self-check allows both paths' rounding bounds (gamma_T for the GEMM, gt here). */
        for (int64_t i = 0; i < B; i++) tol[i] = (gt + gamma_n((double)T, DP_F32)) * u[i];
        composed_norms_ctx ctx = {ops, a, g};
        rc = dp_psg_fused_sq_norms(ops, p->sq, g, a, tol, composed_norms, &ctx);
    }
    if (!rc) materialise_bounds(p, u, gt, B);
    free(u);
    free(tol);
    return rc;
}

/* Linear weight: T = 1 (2-D inputs) is the outer product a g^T, norm |a| |g|. */
static int linear_norms(const dp_ops *ops, dp_psg_param *p, gram_cache *cache) {
    dp_tensor *ta = p->taps[0].a, *tg = p->taps[0].g;
    int64_t B = ta->shape[0], T = ta->shape[1], d = ta->shape[2], pp = tg->shape[2];
    p->seq_len = T;
    p->ghost_flops = (double)B * T * T * (double)(d + pp);
    p->materialise_flops = 2.0 * B * T * (double)d * pp;
    int fused = T != 1 && dp_psg_fused_usable(ops, DP_PSG_FUSED_SQ_NORMS, tg, ta, NULL);
    int form = p->form_request;
    if (form == DP_PSG_AUTO) {
        double ghost_cost = p->ghost_flops * (fused ? GHOST_COST_BESIDE_FUSED : 1);
        form = ghost_cost <= p->materialise_flops ? DP_PSG_GHOST : DP_PSG_MATERIALISE;
    }
    if (fused && form == DP_PSG_MATERIALISE) {
        p->form_used = form;
        p->norm_dtype = DP_F32;   /* the tensor cores accumulate in f32 */
        return fused_materialise(ops, p, ta, tg);
    }
    dp_tensor *a = as_compute(ta), *g = a ? as_compute(tg) : NULL;
    if (!g) { dp_tensor_release(a); return DP_ENOMEM; }
    int rc;
    if (T == 1) {
        p->form_used = DP_PSG_MATERIALISE;
        p->norm_dtype = DP_F64;   /* products of row norms summed in f64 */
        double *ra = row_sq_norms(ops, a, B), *rg = ra ? row_sq_norms(ops, g, B) : NULL;
        for (int64_t i = 0; rg && i < B; i++) {
            p->sq[i] = ra[i] * rg[i];
            p->sq_bound[i] = p->sq[i] * (1 + 1e-9);
        }
        rc = rg ? 0 : DP_ENOMEM;
        free(ra);
        free(rg);
    } else {
        p->form_used = form;
        p->norm_dtype = (int32_t)a->dtype;   /* the Grams / the GEMM accumulate in it */
        rc = form == DP_PSG_GHOST ? ghost(ops, p, a, g, cache) : materialise(ops, p, a, g);
    }
    dp_tensor_release(a);
    dp_tensor_release(g);
    return rc;
}

static int embedding_norms(const dp_ops *ops, dp_psg_param *p) {
    dp_tensor *idx = p->taps[0].a, *g = p->taps[0].g;
    int64_t B = idx->shape[0], T = idx->shape[1];
    p->seq_len = T;
    p->norm_dtype = DP_F64;
    dp_tensor *sq = new_f64(g->device, 1, &B);
    int rc = sq ? ops->embedding_sq_norms(sq, idx, g) : DP_ENOMEM;
    double *hs = rc ? NULL : to_host(sq);
    /* Rows with equal indices are summed in f64: error at most 2T 2^-53 sum_t |g_t| in norm. */
    double *rg = hs ? row_sq_norms(ops, g, B * T) : NULL, *u = rg ? malloc(sizeof(double) * (size_t)B) : NULL;
    if (u) {
        pair_sums(u, rg, NULL, B, T);
        for (int64_t i = 0; i < B; i++) {
            p->sq[i] = hs[i];
            double n = sqrt(fmax(hs[i], 0)) * (1 + 1e-12) + 2.0 * (double)T * 0x1p-53 * u[i];
            p->sq_bound[i] = n * n * (1 + 1e-12);
        }
    }
    rc = u ? 0 : rc ? rc : DP_ENOMEM;
    free(hs);
    free(rg);
    free(u);
    dp_tensor_release(sq);
    return rc;
}

/* Bias and norm parameters: the per-sample gradient is the tap itself, (B, N) f64. */
static int direct_norms(const dp_ops *ops, dp_psg_param *p) {
    dp_tensor *psg = p->taps[0].psg;
    int64_t B = psg->shape[0];
    p->seq_len = 0;
    p->norm_dtype = DP_F64;   /* the per-sample gradient itself is f64 */
    double *sq = row_sq_norms(ops, psg, B);
    if (!sq) return DP_ENOMEM;
    for (int64_t i = 0; i < B; i++) {
        p->sq[i] = sq[i];
        p->sq_bound[i] = sq[i] * (1 + 1e-12);
    }
    free(sq);
    return 0;
}

static int check_kernels(const dp_ops *ops) {
    if (!ops->gram || !ops->ghost_norm || !ops->row_sq_norms || !ops->embedding_sq_norms || !ops->gemm)
        return dp_fail(DP_EUNSUPPORTED, "DP engine: the %s backend lacks the per-sample norm kernels", ops->name);
    return 0;
}

int dp_psg_compute_norms(dp_psg *psg) {
    if (!psg) return dp_fail(DP_EARG, "dp_psg_compute_norms: engine is NULL");
    if (psg->batch < 1) return dp_fail(DP_EGRAPH, "dp_psg_compute_norms: no micro-batch begun (call dp_psg_begin)");
    if (psg->norms_ready) return dp_fail(DP_EGRAPH, "dp_psg_compute_norms: norms of this micro-batch are already computed");
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    int32_t prev_cat = dp_mem_set_category(DP_MEM_PER_SAMPLE);
    psg->batch_loss_scale = psg->loss_scale;
    double unscale = 1.0 / (psg->loss_scale * psg->loss_scale);
    gram_cache cache = {0};
    int rc = 0;
    for (int32_t i = 0; !rc && i < psg->n; i++) {
        dp_psg_param *p = psg->params[i];
        if (!p->trainable) continue;
        if (p->n_taps == 0) {
            rc = dp_fail(DP_EGRAPH, "DP engine: trainable parameter '%s' %s got no per-sample gradient in this "
                         "micro-batch: the forward did not use it, or used it only through ops the engine cannot "
                         "see (use linear, embedding, layer_norm or bias_add), or backward was not run; freeze it "
                         "if it should not train", p->name, dp_tensor_desc(p->param));
            break;
        }
        const dp_ops *ops = dp_ops_for(p->param->device);
        if (!ops || (rc = check_kernels(ops))) { rc = rc ? rc : DP_EDEVICE; break; }
        free(p->sq);
        free(p->sq_bound);
        p->sq = malloc(sizeof(double) * (size_t)psg->batch);
        p->sq_bound = malloc(sizeof(double) * (size_t)psg->batch);
        if (!p->sq || !p->sq_bound) { rc = dp_fail(DP_ENOMEM, "DP engine: out of memory for norms"); break; }
        if ((rc = merge_taps(p))) break;
        p->form_used = 0;
        switch (p->taps[0].kind) {
        case DP_PSG_LINEAR_WEIGHT: rc = linear_norms(ops, p, &cache); break;
        case DP_PSG_EMBEDDING: rc = embedding_norms(ops, p); break;
        default: rc = direct_norms(ops, p); break;
        }
        if (rc) {
            char ctx[160];
            snprintf(ctx, sizeof ctx, "per-sample norms of '%s'", p->name);
            dp_error_prefix(ctx);
        } else if (unscale != 1.0) {
            for (int64_t b = 0; b < psg->batch; b++) {
                p->sq[b] *= unscale;
                p->sq_bound[b] *= unscale;
            }
        }
    }
    dp_tensor_release(cache.gram);
    dp_mem_set_category(prev_cat);
    dp_set_grad_enabled(prev);
    if (!rc) psg->norms_ready = 1;
    return rc;
}
