/* psg.c: the per-sample gradient engine's registry and the hooks that parameterised ops call from
 * their backward ("taps"). Which engine is active is per thread, like grad mode. The numerics
 * live in psg_norms.c (norms) and psg_clip.c (clipping, sums, noise). What the taps keep (contiguous
 * inputs, output gradients, per-sample gradients) is allocated under DP_MEM_PER_SAMPLE. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "psg_internal.h"

static _Thread_local dp_psg *active_engine;

dp_psg *dp_psg_new(void) {
    dp_psg *psg = calloc(1, sizeof *psg);
    if (!psg) return dp_fail_null(DP_ENOMEM, "dp_psg_new: out of memory");
    psg->loss_scale = psg->batch_loss_scale = 1.0;
    return psg;
}

void dp_psg_clear_taps(dp_psg_param *p) {
    for (int32_t i = 0; i < p->n_taps; i++) {
        dp_tensor_release(p->taps[i].a);
        dp_tensor_release(p->taps[i].g);
        dp_tensor_release(p->taps[i].psg);
    }
    p->n_taps = 0;
}

static void clear_batch(dp_psg *psg) {
    for (int32_t i = 0; i < psg->n; i++) {
        dp_psg_param *p = psg->params[i];
        dp_psg_clear_taps(p);
        free(p->sq);
        free(p->sq_bound);
        p->sq = p->sq_bound = NULL;
    }
    free(psg->factors);
    psg->factors = NULL;
    psg->n_factor_groups = 0;
    psg->norms_ready = psg->factors_ready = 0;
}

void dp_psg_free(dp_psg *psg) {
    if (!psg) return;
    if (active_engine == psg) active_engine = NULL;
    clear_batch(psg);
    for (int32_t i = 0; i < psg->n; i++) {
        dp_psg_param *p = psg->params[i];
        dp_tensor_release(p->param);
        dp_tensor_release(p->accum);
        free(p->taps);
        free(p->name);
        free(p);
    }
    free(psg->params);
    free(psg);
}

int32_t dp_psg_add_param(dp_psg *psg, dp_tensor *param, const char *name, int32_t group) {
    const char *fn = "dp_psg_add_param";
    if (!psg || !param) return dp_fail(DP_EARG, "%s: engine or parameter is NULL", fn);
    if (!name || !*name) return dp_fail(DP_EARG, "%s: parameter %s needs a name", fn, dp_tensor_desc(param));
    if (group < 0) return dp_fail(DP_EARG, "%s: group of '%s' is %d, expected >= 0", fn, name, group);
    if (!dp_dtype_is_float(param->dtype) || param->grad_fn)
        return dp_fail(DP_EARG, "%s: '%s' is %s%s; parameters are float leaves", fn, name,
                       dp_tensor_desc(param), param->grad_fn ? " (the result of an op)" : "");
    for (int32_t i = 0; i < psg->n; i++) {
        if (psg->params[i]->param == param)
            return dp_fail(DP_EARG, "%s: '%s' is already registered as '%s'", fn, name, psg->params[i]->name);
        if (!strcmp(psg->params[i]->name, name))
            return dp_fail(DP_EARG, "%s: the name '%s' is already taken", fn, name);
    }
    if (psg->n == psg->cap) {
        int32_t cap = psg->cap ? psg->cap * 2 : 16;
        dp_psg_param **params = realloc(psg->params, sizeof *params * (size_t)cap);
        if (!params) return dp_fail(DP_ENOMEM, "%s: out of memory for %d parameters", fn, cap);
        psg->params = params;
        psg->cap = cap;
    }
    dp_psg_param *p = calloc(1, sizeof *p);
    char *copy = strdup(name);
    if (!p || !copy) {
        free(p);
        free(copy);
        return dp_fail(DP_ENOMEM, "%s: out of memory for '%s'", fn, name);
    }
    p->owner = psg;
    p->param = param;
    dp_tensor_retain(param);
    p->name = copy;
    p->index = psg->n;
    p->group = group;
    p->trainable = param->requires_grad;
    p->input_dtype = p->grad_dtype = p->norm_dtype = p->accum_dtype = -1;
    p->sum_norm = p->noise_norm = -1;
    psg->params[psg->n++] = p;
    return p->index;
}

int32_t dp_psg_num_params(const dp_psg *psg) { return psg ? psg->n : 0; }

static dp_psg_param *param_at(const dp_psg *psg, int32_t index, const char *fn) {
    if (!psg) return dp_fail_null(DP_EARG, "%s: engine is NULL", fn);
    if (index < 0 || index >= psg->n)
        return dp_fail_null(DP_EINDEX, "%s: parameter index %d out of range (the engine has %d)", fn, index, psg->n);
    return psg->params[index];
}

int dp_psg_describe(const dp_psg *psg, int32_t index, dp_psg_param_info *out) {
    dp_psg_param *p = param_at(psg, index, "dp_psg_describe");
    if (!p) return DP_EINDEX;
    if (!out) return dp_fail(DP_EARG, "dp_psg_describe: out is NULL");
    *out = (dp_psg_param_info){
        .name = p->name, .group = p->group, .trainable = p->trainable, .kind = p->kind,
        .taps = p->n_taps, .form_request = p->form_request, .form_used = p->form_used,
        .seq_len = p->seq_len, .ghost_flops = p->ghost_flops, .materialise_flops = p->materialise_flops,
        .input_dtype = p->input_dtype, .grad_dtype = p->grad_dtype, .norm_dtype = p->norm_dtype,
        .accum_dtype = p->accum_dtype, .sum_norm = p->sum_norm, .noise_norm = p->noise_norm,
    };
    return 0;
}

int dp_psg_set_form(dp_psg *psg, int32_t index, int32_t form) {
    if (form < DP_PSG_AUTO || form > DP_PSG_MATERIALISE)
        return dp_fail(DP_EARG, "dp_psg_set_form: form %d, expected 0 (auto), 1 (ghost) or 2 (materialise)", form);
    if (!psg) return dp_fail(DP_EARG, "dp_psg_set_form: engine is NULL");
    if (index == -1) {
        for (int32_t i = 0; i < psg->n; i++) psg->params[i]->form_request = form;
        return 0;
    }
    dp_psg_param *p = param_at(psg, index, "dp_psg_set_form");
    if (!p) return DP_EINDEX;
    p->form_request = form;
    return 0;
}

int dp_psg_set_loss_scale(dp_psg *psg, double scale) {
    if (!psg) return dp_fail(DP_EARG, "dp_psg_set_loss_scale: engine is NULL");
    int e;
    /* A power of two divides out exactly; below 2^-24 the scaled gradients would lose bits. */
    if (!isfinite(scale) || frexp(scale, &e) != 0.5 || scale < 0x1p-24)
        return dp_fail(DP_EARG, "dp_psg_set_loss_scale: scale must be a power of two >= 2^-24, got %g", scale);
    psg->loss_scale = scale;
    return 0;
}

double dp_psg_loss_scale(const dp_psg *psg) { return psg ? psg->loss_scale : 1.0; }

int dp_psg_activate(dp_psg *psg) {
    active_engine = psg;
    return 0;
}

dp_psg *dp_psg_active(void) { return active_engine; }

int dp_psg_begin(dp_psg *psg, int64_t batch) {
    if (!psg) return dp_fail(DP_EARG, "dp_psg_begin: engine is NULL");
    if (batch < 1) return dp_fail(DP_EARG, "dp_psg_begin: micro-batch of %lld examples, expected >= 1", (long long)batch);
    clear_batch(psg);
    psg->batch = batch;
    for (int32_t i = 0; i < psg->n; i++) psg->params[i]->trainable = psg->params[i]->param->requires_grad;
    return 0;
}

int dp_psg_reset(dp_psg *psg) {
    if (!psg) return dp_fail(DP_EARG, "dp_psg_reset: engine is NULL");
    clear_batch(psg);
    for (int32_t i = 0; i < psg->n; i++) {
        dp_tensor_release(psg->params[i]->accum);
        psg->params[i]->accum = NULL;
    }
    return 0;
}

int32_t dp_psg_num_groups(const dp_psg *psg) {
    int32_t g = 0;
    for (int32_t i = 0; i < psg->n; i++)
        if (psg->params[i]->group + 1 > g) g = psg->params[i]->group + 1;
    return g ? g : 1;
}

/* ---------------------------------------------------------------- hooks for the ops */

/* Views and copies that keep a parameter's identity: a gradient through them is the
 * parameter's gradient. fake_quant too: its gradient is straight-through, so a weight used in
 * emulated fp8 is still the parameter. */
static int passes_identity(const dp_node *n) {
    return n->n_inputs == 1 && (!strcmp(n->op, "cast") || !strcmp(n->op, "contiguous") ||
                                !strcmp(n->op, "clone") || !strcmp(n->op, "fake_quant"));
}

static dp_psg_param *find(const dp_psg *psg, const dp_tensor *t) {
    for (int32_t i = 0; i < psg->n; i++)
        if (psg->params[i]->param == t) return psg->params[i];
    return NULL;
}

dp_psg_param *dp_psg_lookup(const dp_tensor *t) {
    dp_psg *psg = active_engine;
    if (!psg || !t) return NULL;
    while (t->grad_fn && passes_identity(t->grad_fn) && t->grad_fn->inputs[0]) t = t->grad_fn->inputs[0];
    dp_psg_param *p = t->grad_fn ? NULL : find(psg, t);
    return p && p->trainable && t->requires_grad ? p : NULL;
}

int dp_psg_check_leaf(const dp_tensor *leaf, const char *op) {
    dp_psg *psg = active_engine;
    if (!psg) return 0;
    dp_psg_param *p = find(psg, leaf);
    if (p)
        return dp_fail(DP_EGRAPH, "DP engine: parameter '%s' %s receives a gradient through %s, which has no "
                       "per-sample rule; parameters must be used through linear, embedding, layer_norm or "
                       "bias_add", p->name, dp_tensor_desc(leaf), op);
    if (leaf->is_param)
        return dp_fail(DP_EGRAPH, "DP engine: trainable parameter %s (reached through %s) is not registered "
                       "with the DP engine; register it or freeze it", dp_tensor_desc(leaf), op);
    return 0;
}

static int push_tap(dp_psg_param *p, psg_tap tap) {
    if (p->n_taps == p->cap_taps) {
        int32_t cap = p->cap_taps ? p->cap_taps * 2 : 2;
        psg_tap *taps = realloc(p->taps, sizeof *taps * (size_t)cap);
        if (!taps) return dp_fail(DP_ENOMEM, "DP engine: out of memory recording a use of '%s'", p->name);
        p->taps = taps;
        p->cap_taps = cap;
    }
    p->taps[p->n_taps++] = tap;
    p->kind = tap.kind;
    return 0;
}

/* The dtypes a tap saw: the op's input (-1 when the op hands none over) and output gradient. */
static void note_dtypes(dp_psg_param *p, const dp_tensor *input, const dp_tensor *gy) {
    if (!p) return;
    p->input_dtype = input ? (int32_t)input->dtype : -1;
    p->grad_dtype = (int32_t)gy->dtype;
}

/* t (B, ..., n) as a contiguous (B, T, n) with B the micro-batch size, n = last dim (or 1 when
 * last_is_feature is 0: then t is (B, ...) and becomes (B, T, 1)... used for indices as (B, T)). */
static dp_tensor *as_btn(const dp_psg *psg, const char *op, const char *what, dp_tensor *t, int has_features) {
    int32_t need = has_features ? 2 : 1;
    if (t->ndim < need || t->shape[0] != psg->batch)
        return dp_fail_null(DP_ESHAPE, "DP engine: %s %s is %s, expected the micro-batch of %lld examples as "
                            "dim 0%s", op, what, dp_tensor_desc(t), (long long)psg->batch,
                            has_features ? " and a feature dim last" : "");
    int64_t B = t->shape[0], n = has_features ? t->shape[t->ndim - 1] : 1;
    int64_t T = B && n ? dp_tensor_numel(t) / (B * n) : 0;
    int64_t shape3[3] = {B, T, n}, shape2[2] = {B, T};
    dp_tensor *c = dp_contiguous(t);
    if (!c) return NULL;
    dp_tensor *r = has_features ? dp_reshape(c, 3, shape3) : dp_reshape(c, 2, shape2);
    dp_tensor_release(c);
    return r;
}

/* Per-sample gradient of a bias-like parameter: (B, N) f64 sums over tokens (of g * xhat for a
 * norm weight). */
static dp_tensor *row_sums(dp_tensor *g3, dp_tensor *x3, dp_tensor *mean, dp_tensor *rstd) {
    const dp_ops *ops = dp_ops_for(g3->device);
    if (!ops) return NULL;
    if (!ops->row_sums)
        return dp_fail_null(DP_EUNSUPPORTED, "DP engine: the %s backend has no row_sums kernel", ops->name);
    int64_t shape[2] = {g3->shape[0], g3->shape[2]};
    dp_tensor *out = dp_tensor_empty(DP_F64, g3->device, 2, shape);
    if (out && ops->row_sums(out, g3, x3, mean, rstd)) {
        dp_tensor_release(out);
        return NULL;
    }
    return out;
}

static int tap_bias_like(dp_psg_param *b, int32_t kind, dp_tensor *g3, dp_tensor *x3, dp_tensor *mean,
                         dp_tensor *rstd) {
    dp_tensor *psg = row_sums(g3, x3, mean, rstd);
    if (!psg) return DP_ENOMEM;
    int rc = push_tap(b, (psg_tap){.kind = kind, .psg = psg});
    if (rc) dp_tensor_release(psg);
    return rc;
}

static int tap_linear(dp_psg_param *w, dp_psg_param *b, dp_tensor *x, dp_tensor *gy) {
    dp_psg *psg = (w ? w : b)->owner;
    dp_tensor *g3 = as_btn(psg, "linear", "output gradient", gy, 1);
    dp_tensor *x3 = g3 && w ? as_btn(psg, "linear", "input", x, 1) : NULL;
    int rc = !g3 || (w && !x3) ? DP_ESHAPE : 0;
    if (!rc && b) rc = tap_bias_like(b, DP_PSG_LINEAR_BIAS, g3, NULL, NULL, NULL);
    if (!rc && w) {
        rc = push_tap(w, (psg_tap){.kind = DP_PSG_LINEAR_WEIGHT, .a = x3, .g = g3});
        if (!rc) return 0;   /* the tap owns x3 and g3 now */
    }
    dp_tensor_release(x3);
    dp_tensor_release(g3);
    return rc;
}

static int tap_embedding(dp_psg_param *w, dp_tensor *indices, dp_tensor *gy) {
    dp_psg *psg = w->owner;
    dp_tensor *i2 = as_btn(psg, "embedding", "indices", indices, 0);
    dp_tensor *g3 = i2 ? as_btn(psg, "embedding", "output gradient", gy, 1) : NULL;
    int rc = i2 && g3 ? push_tap(w, (psg_tap){.kind = DP_PSG_EMBEDDING, .a = i2, .g = g3}) : DP_ESHAPE;
    if (rc) {
        dp_tensor_release(i2);
        dp_tensor_release(g3);
    }
    return rc;
}

static int tap_layer_norm(dp_psg_param *w, dp_psg_param *b, dp_tensor *x, dp_tensor *mean, dp_tensor *rstd,
                          dp_tensor *gy) {
    dp_psg *psg = (w ? w : b)->owner;
    dp_tensor *g3 = as_btn(psg, "layer_norm", "output gradient", gy, 1);
    dp_tensor *x3 = g3 && w ? as_btn(psg, "layer_norm", "input", x, 1) : NULL;
    int rc = !g3 || (w && !x3) ? DP_ESHAPE : 0;
    if (!rc && w) rc = tap_bias_like(w, DP_PSG_NORM_WEIGHT, g3, x3, mean, rstd);
    if (!rc && b) rc = tap_bias_like(b, DP_PSG_NORM_BIAS, g3, NULL, NULL, NULL);
    dp_tensor_release(x3);
    dp_tensor_release(g3);
    return rc;
}

static int tap_bias(dp_psg_param *b, dp_tensor *gy) {
    dp_tensor *g3 = as_btn(b->owner, "bias_add", "output gradient", gy, 1);
    int rc = g3 ? tap_bias_like(b, DP_PSG_BIAS, g3, NULL, NULL, NULL) : DP_ESHAPE;
    dp_tensor_release(g3);
    return rc;
}

/* ---------------------------------------------------------------- the hooks: dtypes and memory */

/* Each hook notes the dtypes it saw and keeps its tensors under DP_MEM_PER_SAMPLE. */
int dp_psg_tap_linear(dp_psg_param *w, dp_psg_param *b, dp_tensor *x, dp_tensor *gy) {
    int32_t prev = dp_mem_set_category(DP_MEM_PER_SAMPLE);
    int rc = tap_linear(w, b, x, gy);
    dp_mem_set_category(prev);
    note_dtypes(w, x, gy);
    note_dtypes(b, x, gy);
    return rc;
}

int dp_psg_tap_embedding(dp_psg_param *w, dp_tensor *indices, dp_tensor *gy) {
    int32_t prev = dp_mem_set_category(DP_MEM_PER_SAMPLE);
    int rc = tap_embedding(w, indices, gy);
    dp_mem_set_category(prev);
    note_dtypes(w, indices, gy);
    return rc;
}

int dp_psg_tap_layer_norm(dp_psg_param *w, dp_psg_param *b, dp_tensor *x, dp_tensor *mean, dp_tensor *rstd,
                          dp_tensor *gy) {
    int32_t prev = dp_mem_set_category(DP_MEM_PER_SAMPLE);
    int rc = tap_layer_norm(w, b, x, mean, rstd, gy);
    dp_mem_set_category(prev);
    note_dtypes(w, x, gy);
    note_dtypes(b, x, gy);
    return rc;
}

/* bias_add hands over only the output gradient: no input dtype. */
int dp_psg_tap_bias(dp_psg_param *b, dp_tensor *gy) {
    int32_t prev = dp_mem_set_category(DP_MEM_PER_SAMPLE);
    int rc = tap_bias(b, gy);
    dp_mem_set_category(prev);
    note_dtypes(b, NULL, gy);
    return rc;
}
