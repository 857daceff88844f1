/* optim.c: CPU kernels of the optimizer updates (SGD with momentum, Adam/AdamW; see dp_sgd_step_
 * and dp_adam_step_ in dp.h). Arguments are already checked (core/dpsgd/optim.c): everything is
 * contiguous with param's shape, state is f32 (f64 for f64 params). The arithmetic is f32, or f64
 * for f64 params; bf16/f16 params are widened to f32 a block at a time and rounded once (RNE) on
 * the way back, so an update is never rounded twice (or, on request, rounded stochastically: see
 * store_stochastic). Blocks are split between OpenMP threads. dp_cpu_update_pass (update_pass.h)
 * runs the same block code with a caller's pass before each block (the fused noisy update). */
#include <math.h>
#include "cpu_kernels.h"
#include "ew_loop.h"
#include "philox.h"
#include "update_pass.h"
#include "stochastic_round.h"

/* Elements per block (the widening buffers live on each thread's stack), and the size below
 * which one thread does it all (a thread team costs more than the update). */
enum { BLOCK = DP_CPU_UPDATE_BLOCK, PAR_MIN = 1 << 15 };

typedef struct {
    double lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
} sgd_args;

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled;
    double step_size;    /* lr / (1 - beta1^step) */
    double inv_bias2;    /* 1 / sqrt(1 - beta2^step) */
    double decay;        /* AdamW: 1 - lr * weight_decay */
} adam_args;

/* Each block is updated in short passes, one decision per pass rather than per element, so every
 * pass is a plain loop the compiler vectorises; the block stays in L1 between passes. sqrt gets a
 * pass of its own: with errno semantics (no -fno-math-errno) it does not vectorise, and kept apart
 * it does not stop the other loops from doing so. w is scratch for g + wd * p, d for sqrt(v). */

/* ---------------------------------------------------------------- one block, f32 arithmetic */

/* p, g, buf: n elements (buf NULL when momentum is 0). */
static void sgd_f32(float *p, const float *g, float *buf, float *w, int64_t n, const sgd_args *a) {
    float lr = (float)a->lr, mom = (float)a->momentum, keep = (float)(1.0 - a->dampening);
    float wd = (float)a->weight_decay;
    /* wd == 0 skips the term rather than adding 0 * p, so an Inf param does not turn into NaN. */
    if (a->weight_decay != 0) {
        DP_SIMD for (int64_t i = 0; i < n; i++) w[i] = g[i] + wd * p[i];
        g = w;
    }
    if (!buf) {
        DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];
        return;
    }
    if (a->first_step) DP_SIMD for (int64_t i = 0; i < n; i++) buf[i] = g[i];
    else DP_SIMD for (int64_t i = 0; i < n; i++) buf[i] = mom * buf[i] + keep * g[i];
    if (a->nesterov) DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * (g[i] + mom * buf[i]);
    else DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * buf[i];
}

static void adam_f32(float *p, const float *g, float *m, float *v, float *w, float *d, int64_t n,
                     const adam_args *a) {
    float b1 = (float)a->beta1, b2 = (float)a->beta2, c1 = (float)(1.0 - a->beta1),
          c2 = (float)(1.0 - a->beta2), eps = (float)a->eps, wd = (float)a->weight_decay;
    float step_size = (float)a->step_size, inv_bias2 = (float)a->inv_bias2, decay = (float)a->decay;
    if (a->weight_decay != 0) {
        if (a->decoupled) {
            DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] * decay;
        } else {
            DP_SIMD for (int64_t i = 0; i < n; i++) w[i] = g[i] + wd * p[i];
            g = w;
        }
    }
    DP_SIMD for (int64_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + c1 * g[i];
        v[i] = b2 * v[i] + c2 * (g[i] * g[i]);
    }
    for (int64_t i = 0; i < n; i++) d[i] = sqrtf(v[i]);
    DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - step_size * m[i] / (d[i] * inv_bias2 + eps);
}

/* ---------------------------------------------------------------- one block, f64 arithmetic */

static void sgd_f64(double *p, const double *g, double *buf, double *w, int64_t n, const sgd_args *a) {
    double lr = a->lr, mom = a->momentum, keep = 1.0 - a->dampening, wd = a->weight_decay;
    if (wd != 0) {
        DP_SIMD for (int64_t i = 0; i < n; i++) w[i] = g[i] + wd * p[i];
        g = w;
    }
    if (!buf) {
        DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];
        return;
    }
    if (a->first_step) DP_SIMD for (int64_t i = 0; i < n; i++) buf[i] = g[i];
    else DP_SIMD for (int64_t i = 0; i < n; i++) buf[i] = mom * buf[i] + keep * g[i];
    if (a->nesterov) DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * (g[i] + mom * buf[i]);
    else DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * buf[i];
}

static void adam_f64(double *p, const double *g, double *m, double *v, double *w, double *d,
                     int64_t n, const adam_args *a) {
    double b1 = a->beta1, b2 = a->beta2, c1 = 1.0 - b1, c2 = 1.0 - b2, eps = a->eps;
    double wd = a->weight_decay, step_size = a->step_size, inv_bias2 = a->inv_bias2, decay = a->decay;
    if (wd != 0) {
        if (a->decoupled) {
            DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] * decay;
        } else {
            DP_SIMD for (int64_t i = 0; i < n; i++) w[i] = g[i] + wd * p[i];
            g = w;
        }
    }
    DP_SIMD for (int64_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + c1 * g[i];
        v[i] = b2 * v[i] + c2 * (g[i] * g[i]);
    }
    for (int64_t i = 0; i < n; i++) d[i] = sqrt(v[i]);
    DP_SIMD for (int64_t i = 0; i < n; i++) p[i] = p[i] - step_size * m[i] / (d[i] * inv_bias2 + eps);
}

/* ---------------------------------------------------------------- stochastic rounding */

/* Store n f32 values (elements off .. off + n - 1 of the parameter, off a multiple of 4) into
 * p (dtype dt) rounded stochastically: element i uses lane i % 4 of Philox block counter + i / 4
 * of stream DP_SR_STREAM, so the result does not depend on how blocks are split between threads. */
static void store_stochastic(char *p, dp_dtype dt, const float *v, int64_t n, int64_t off,
                             const dp_rounding *r) {
    uint32_t words[4];
    for (int64_t i = 0; i < n; i++) {
        if (i % 4 == 0) dp_philox_block(words, r->seed, r->counter + (uint64_t)((off + i) / 4), DP_SR_STREAM);
        uint32_t code = dp_round_stochastic((double)v[i], dt, words[i % 4]);
        if (dt == DP_BF16 || dt == DP_F16) ((uint16_t *)p)[i] = (uint16_t)code;
        else ((uint8_t *)p)[i] = (uint8_t)code;
    }
}

/* ---------------------------------------------------------------- the block loop */

/* Runs one optimizer over all elements of param: for each block, param is widened (in place when
 * it already has the compute dtype), grad converted, the update applied, and param stored back. */
typedef struct {
    dp_tensor *param;
    const dp_tensor *grad;
    dp_tensor *s0, *s1;          /* state: buf (SGD, may be NULL) or m, v (Adam) */
    const sgd_args *sgd;         /* exactly one of sgd / adam is set */
    const adam_args *adam;
    const dp_rounding *rounding; /* NULL: round to nearest even */
    dp_cpu_block_fn pre;         /* NULL, or run on each block just before its update */
    void *pre_ctx;
    int64_t par_min;             /* numel above which blocks are split between threads */
} update;

static void block_f32(const update *u, int64_t off, int64_t n) {
    float pbuf[BLOCK], gbuf[BLOCK], w[BLOCK], d[BLOCK];
    dp_dtype pt = u->param->dtype;
    char *pdata = (char *)u->param->data + off * dp_dtype_size(pt);
    float *p = pt == DP_F32 ? (float *)pdata : pbuf;
    if (pt != DP_F32) dp_ew_load_f32(pbuf, pdata, pt, 1, n);
    const float *g = dp_ew_load_f32(gbuf, (const char *)u->grad->data + off * dp_dtype_size(u->grad->dtype),
                                    u->grad->dtype, 1, n);
    float *s0 = u->s0 ? (float *)u->s0->data + off : NULL;
    float *s1 = u->s1 ? (float *)u->s1->data + off : NULL;
    if (u->sgd) sgd_f32(p, g, s0, w, n, u->sgd);
    else adam_f32(p, g, s0, s1, w, d, n, u->adam);
    if (pt != DP_F32 && u->rounding) store_stochastic(pdata, pt, pbuf, n, off, u->rounding);
    else if (pt != DP_F32) dp_ew_store_f32(pdata, pt, 1, pbuf, n);
}

static void block_f64(const update *u, int64_t off, int64_t n) {
    double gbuf[BLOCK], w[BLOCK], d[BLOCK];
    double *p = (double *)u->param->data + off;
    const double *g = dp_ew_load_f64(gbuf, (const char *)u->grad->data + off * dp_dtype_size(u->grad->dtype),
                                     u->grad->dtype, 1, n);
    double *s0 = u->s0 ? (double *)u->s0->data + off : NULL;
    double *s1 = u->s1 ? (double *)u->s1->data + off : NULL;
    if (u->sgd) sgd_f64(p, g, s0, w, n, u->sgd);
    else adam_f64(p, g, s0, s1, w, d, n, u->adam);
}

static void run(const update *u) {
    int64_t numel = dp_tensor_numel(u->param);
    int64_t blocks = (numel + BLOCK - 1) / BLOCK;
    int wide = u->param->dtype == DP_F64;
    #pragma omp parallel for schedule(static) if (numel > u->par_min)
    for (int64_t k = 0; k < blocks; k++) {
        int64_t off = k * BLOCK, n = numel - off < BLOCK ? numel - off : BLOCK;
        if (u->pre) u->pre(u->pre_ctx, off, n);
        if (wide) block_f64(u, off, n);
        else block_f32(u, off, n);
    }
}

/* The rounding to apply, or NULL for round to nearest. */
static const dp_rounding *stochastic(const dp_rounding *r) { return r && r->stochastic ? r : NULL; }

/* Adam's per-call constants: the bias corrections in double, on the host side of the loop. */
static adam_args adam_args_of(double lr, double beta1, double beta2, double eps, double weight_decay,
                              int32_t decoupled, int64_t step) {
    double bias1 = 1.0 - pow(beta1, (double)step), bias2 = 1.0 - pow(beta2, (double)step);
    return (adam_args){ lr, beta1, beta2, eps, weight_decay, decoupled, lr / bias1, 1.0 / sqrt(bias2),
                        1.0 - lr * weight_decay };
}

int dp_cpu_sgd_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *buf, double lr,
                    double momentum, double dampening, double weight_decay, int32_t nesterov,
                    int32_t first_step, const dp_rounding *rounding) {
    sgd_args a = { lr, momentum, dampening, weight_decay, nesterov, first_step };
    /* With momentum 0 the buffer plays no part (PyTorch keeps none). */
    update u = { .param = param, .grad = grad, .s0 = momentum != 0 ? buf : NULL, .sgd = &a,
                 .rounding = stochastic(rounding), .par_min = PAR_MIN };
    run(&u);
    return 0;
}

int dp_cpu_adam_step(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v,
                     double lr, double beta1, double beta2, double eps, double weight_decay,
                     int32_t decoupled, int64_t step, const dp_rounding *rounding) {
    adam_args a = adam_args_of(lr, beta1, beta2, eps, weight_decay, decoupled, step);
    update u = { .param = param, .grad = grad, .s0 = m, .s1 = v, .adam = &a,
                 .rounding = stochastic(rounding), .par_min = PAR_MIN };
    run(&u);
    return 0;
}

void dp_cpu_update_pass(dp_tensor *param, const dp_tensor *grad, dp_tensor *s0, dp_tensor *s1,
                        const dp_update_rule *rule, const dp_rounding *rounding, dp_cpu_block_fn pre,
                        void *ctx, int64_t par_min) {
    sgd_args sa = { rule->lr, rule->momentum, rule->dampening, rule->weight_decay, rule->nesterov,
                    rule->first_step };
    adam_args aa = { 0 };
    update u = { .param = param, .grad = grad, .rounding = stochastic(rounding), .pre = pre,
                 .pre_ctx = ctx, .par_min = par_min };
    if (rule->kind == DP_UPDATE_SGD) {
        u.sgd = &sa;
        u.s0 = rule->momentum != 0 ? s0 : NULL;
    } else {
        aa = adam_args_of(rule->lr, rule->beta1, rule->beta2, rule->eps, rule->weight_decay,
                          rule->decoupled, rule->step);
        u.adam = &aa;
        u.s0 = s0;
        u.s1 = s1;
    }
    run(&u);
}
