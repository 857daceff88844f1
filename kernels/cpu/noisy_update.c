/* noisy_update.c: the end of a DP step for one parameter in one sweep over its memory (backend
 * noisy_update, core/backend.h): Gaussian noise into the clipped sum, the scale, and the
 * optimizer update. Each block of the optimizer's loop (update_pass.h) first gets its noise and
 * scale here, while it is in cache, then the update runs on it with the very code of
 * dp_cpu_sgd_step / dp_cpu_adam_step. Every element is computed as the unfused ops compute it:
 *   noise: dp_philox_noise_add_block, the function kernels/cpu/random.c runs (one fma in double,
 *          rounded once to the accumulator's dtype);
 *   scale: x * alpha + beta with beta = 0 in the accumulator's dtype, the expression of the unary
 *          AFFINE kernel (kernels/cpu/unary.c) that dp_scale_ runs, written the same way so the
 *          compiler contracts it the same way; skipped when the scale is 1, as dp_psg_finish does;
 *   update: optim.c's block code itself.
 * The two sums (the clipped sum's squares before the noise and the added noise's squares) are
 * formed per block in f64 and added in block order, so they do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include "cpu_kernels.h"
#include "ew_loop.h"
#include "philox.h"
#include "update_pass.h"

/* The noise is the costly part (a Box-Muller pair per two elements): threads pay off sooner than
 * for the update alone. */
enum { FUSED_PAR_MIN = 1 << 13 };

typedef struct {
    void *acc;
    dp_dtype dtype;     /* f32 or f64 */
    int64_t n;          /* numel */
    double std, scale;
    uint64_t seed, stream, counter;
    double *partial;    /* 2 per block: sum acc^2 before the noise, sum (noise actually added)^2 */
} noisy_ctx;

/* The scale as dp_scale_ applies it (dp_cpu_unary AFFINE with alpha = scale, beta = 0). */
static void scale_f32(float *x, int64_t n, double scale) {
    float alpha = (float)scale, beta = (float)0.0;
    DP_SIMD for (int64_t i = 0; i < n; i++) x[i] = x[i] * alpha + beta;
}

static void scale_f64(double *x, int64_t n, double scale) {
    double alpha = scale, beta = 0.0;
    DP_SIMD for (int64_t i = 0; i < n; i++) x[i] = x[i] * alpha + beta;
}

static void noisy_block(void *vctx, int64_t off, int64_t n) {
    const noisy_ctx *c = vctx;
    double before[DP_CPU_UPDATE_BLOCK];
    int f64 = c->dtype == DP_F64;
    for (int64_t i = 0; i < n; i++)
        before[i] = f64 ? ((const double *)c->acc)[off + i] : (double)((const float *)c->acc)[off + i];
    /* off is even (a multiple of the block size): noise block b feeds elements 2b and 2b + 1. */
    for (int64_t b = off / 2; 2 * b < off + n; b++)
        dp_philox_noise_add_block(c->acc, c->dtype, c->n, c->std, c->seed, c->stream, c->counter, b);
    double sum = 0, noise = 0;
    for (int64_t i = 0; i < n; i++) {
        double after = f64 ? ((const double *)c->acc)[off + i] : (double)((const float *)c->acc)[off + i];
        double d = after - before[i];
        sum += before[i] * before[i];
        noise += d * d;
    }
    int64_t k = off / DP_CPU_UPDATE_BLOCK;
    c->partial[2 * k] = sum;
    c->partial[2 * k + 1] = noise;
    if (c->scale != 1.0) {
        if (f64) scale_f64((double *)c->acc + off, n, c->scale);
        else scale_f32((float *)c->acc + off, n, c->scale);
    }
}

int dp_cpu_noisy_update(dp_tensor *param, dp_tensor *acc, dp_tensor *state0, dp_tensor *state1,
                        dp_tensor *sums, double std, uint64_t seed, uint64_t stream, uint64_t counter,
                        double scale, const dp_update_rule *rule, const dp_rounding *rounding) {
    if (acc->dtype != DP_F32 && acc->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "noisy_update: the accumulator must be f32 or f64, got %s",
                       dp_tensor_desc(acc));
    int64_t numel = dp_tensor_numel(param);
    int64_t blocks = (numel + DP_CPU_UPDATE_BLOCK - 1) / DP_CPU_UPDATE_BLOCK;
    double *out = sums->data;
    out[0] = out[1] = 0;
    if (numel == 0) return 0;
    double *partial = malloc(sizeof(double) * 2 * (size_t)blocks);
    if (!partial)
        return dp_fail(DP_ENOMEM, "noisy_update: out of memory for the sums of %lld blocks",
                       (long long)blocks);
    noisy_ctx c = { acc->data, acc->dtype, numel, std, scale, seed, stream, counter, partial };
    dp_cpu_update_pass(param, acc, state0, state1, rule, rounding, noisy_block, &c, FUSED_PAR_MIN);
    double sum = 0, noise = 0;
    for (int64_t k = 0; k < blocks; k++) {
        sum += partial[2 * k];
        noise += partial[2 * k + 1];
    }
    out[0] = sum;
    out[1] = noise;
    free(partial);
    return 0;
}
