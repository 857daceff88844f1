/* psg_update.c: the end of a DP step fused with the optimizer (dp_psg_finish_update_param): for
 * one parameter, the noise of dp_psg_finish, the scale and the SGD / Adam update in one pass over
 * its memory where the device has the noisy_update kernel and the noise is reproducible (Philox:
 * the kernel draws it itself at the generator's position); composed from dp_psg_finish's own
 * per-parameter step and dp_sgd_step_ / dp_adam_step_ otherwise (secure noise is drawn on the
 * host, std 0 draws nothing). Both give the same bits, and both leave the generator, the rounding
 * counter, .grad, the accumulator and the reported norms as dp_psg_finish followed by the
 * optimizer would; dp_psg_noise_blocks says beforehand where the generator will stand, so the
 * ledger can record the step before any parameter changes. */
#include <math.h>
#include <stdio.h>
#include "psg_internal.h"
#include "noise_internal.h"

static const char *FN = "dp_psg_finish_update_param";

/* The rule and the state as dp_sgd_step_ / dp_adam_step_ would check them, with acc as the grad. */
static int check_update(const dp_psg_param *p, const dp_tensor *acc, const dp_update_rule *rule,
                        const dp_tensor *state0, const dp_tensor *state1, const dp_rounding *rounding) {
    if (!rule) return dp_fail(DP_EARG, "%s: rule is NULL for trainable parameter '%s'", FN, p->name);
    if (rule->kind == DP_UPDATE_SGD) {
        if (state1)
            return dp_fail(DP_EARG, "%s: state1 must be NULL for an SGD rule (parameter '%s')", FN, p->name);
        return dp_optim_check_sgd(FN, p->param, acc, state0, "state0 (momentum buffer)", rule->lr,
                                  rule->momentum, rule->dampening, rule->weight_decay, rule->nesterov,
                                  rule->first_step, rounding);
    }
    if (rule->kind == DP_UPDATE_ADAM)
        return dp_optim_check_adam(FN, p->param, acc, state0, "state0 (m)", state1, "state1 (v)", rule->lr,
                                   rule->beta1, rule->beta2, rule->eps, rule->weight_decay, rule->decoupled,
                                   rule->step, rounding);
    return dp_fail(DP_EARG, "%s: rule->kind %d, expected %d (DP_UPDATE_SGD) or %d (DP_UPDATE_ADAM)", FN,
                   (int)rule->kind, DP_UPDATE_SGD, DP_UPDATE_ADAM);
}

/* "ctx '<name>': " before the last error; returns rc. */
static int name_error(int rc, const char *ctx, const dp_psg_param *p) {
    char buf[200];
    snprintf(buf, sizeof buf, "%s '%s'", ctx, p->name);
    dp_error_prefix(buf);
    return rc;
}

/* The composed form: dp_psg_finish's step for this parameter (its errors name the parameter),
 * then the optimizer on its .grad. */
static int composed(dp_psg_param *p, dp_noise *noise, double std, double scale, const dp_update_rule *rule,
                    dp_tensor *state0, dp_tensor *state1, dp_rounding *rounding) {
    int rc = dp_psg_finish_param(p, noise, std, scale);
    if (rc) return rc;
    dp_tensor *param = p->param, *grad = param->grad;
    if (rule->kind == DP_UPDATE_SGD)
        rc = dp_sgd_step_(param, grad, state0, rule->lr, rule->momentum, rule->dampening,
                          rule->weight_decay, rule->nesterov, rule->first_step, rounding);
    else
        rc = dp_adam_step_(param, grad, state0, state1, rule->lr, rule->beta1, rule->beta2, rule->eps,
                           rule->weight_decay, rule->decoupled, rule->step, rounding);
    return rc ? name_error(rc, "update of", p) : 0;
}

/* The fused form: one noisy_update at the generator's position, which then moves on by the blocks
 * the noise used (ceil(numel / 2), as dp_noise_add_ over the whole accumulator). */
static int fused(const dp_ops *ops, dp_psg_param *p, dp_noise *noise, double std, double scale,
                 const dp_update_rule *rule, dp_tensor *state0, dp_tensor *state1, dp_rounding *rounding) {
    dp_tensor *param = p->param, *acc = p->accum;
    uint64_t seed, stream, counter;
    int rc = dp_noise_state(noise, &seed, &stream, &counter);
    if (rc) return rc;
    int64_t two = 2, n = dp_tensor_numel(acc);
    int32_t prev = dp_mem_set_category(DP_MEM_GRADIENTS);
    dp_tensor *sums = dp_tensor_empty(DP_F64, param->device, 1, &two);
    dp_mem_set_category(prev);
    if (!sums) return DP_ENOMEM;
    /* With momentum 0 the buffer plays no part (as dp_sgd_step_'s kernels ignore it). */
    dp_tensor *s0 = rule->kind == DP_UPDATE_SGD && rule->momentum == 0 ? NULL : state0;
    dp_tensor_bump_version(acc);
    dp_tensor_bump_version(param);
    rc = ops->noisy_update(param, acc, s0, rule->kind == DP_UPDATE_ADAM ? state1 : NULL, sums, std, seed,
                           stream, counter, scale, rule, rounding);
    double s[2] = {0, 0};
    if (!rc) rc = ops->memcpy_d2h(s, sums->data, sizeof s);
    dp_tensor_release(sums);
    if (rc) return name_error(rc, "noisy update of", p);
    dp_noise_set_position(noise, counter + (uint64_t)((n + 1) / 2));
    dp_optim_advance_rounding(rounding, param);
    p->sum_norm = sqrt(s[0]);
    p->noise_norm = sqrt(s[1]);
    rc = dp_tensor_set_grad(param, acc);
    if (rc) return rc;
    dp_tensor_release(p->accum);
    p->accum = NULL;
    return 0;
}

int dp_psg_finish_update_param(dp_psg *psg, int32_t index, dp_noise *noise, double std, double scale,
                               const dp_update_rule *rule, dp_tensor *state0, dp_tensor *state1,
                               dp_rounding *rounding) {
    if (!psg) return dp_fail(DP_EARG, "%s: engine is NULL", FN);
    if (index < 0 || index >= psg->n)
        return dp_fail(DP_EINDEX, "%s: index %d out of range (the engine has %d parameters)", FN, (int)index,
                       (int)psg->n);
    if (!(std >= 0) || !isfinite(std)) return dp_fail(DP_EARG, "%s: std %g, expected finite and >= 0", FN, std);
    if (!isfinite(scale)) return dp_fail(DP_EARG, "%s: scale %g, expected finite", FN, scale);
    if (std > 0 && !noise) return dp_fail(DP_EARG, "%s: std %g needs a noise generator", FN, std);
    dp_psg_param *p = psg->params[index];
    int prev = dp_is_grad_enabled();
    dp_set_grad_enabled(0);
    int rc = 0;
    if (!p->param->requires_grad) {   /* frozen: as dp_psg_finish; rule and state are not read */
        rc = dp_psg_finish_param(p, noise, std, scale);
        dp_set_grad_enabled(prev);
        return rc;
    }
    rc = dp_psg_prepare_accum(p);
    if (!rc) rc = check_update(p, p->accum, rule, state0, state1, rounding);
    const dp_ops *ops = rc ? NULL : dp_ops_for(p->param->device);
    if (!rc && !ops) rc = DP_EDEVICE;
    if (!rc) {
        int can_fuse = std > 0 && ops->noisy_update && dp_tensor_numel(p->accum) > 0 &&
                       dp_noise_mode_of(noise) == DP_NOISE_REPRODUCIBLE;
        rc = can_fuse ? fused(ops, p, noise, std, scale, rule, state0, state1, rounding)
                      : composed(p, noise, std, scale, rule, state0, state1, rounding);
    }
    dp_set_grad_enabled(prev);
    return rc;
}

int64_t dp_psg_noise_blocks(const dp_psg *psg) {
    if (!psg) return dp_fail(DP_EARG, "dp_psg_noise_blocks: engine is NULL");
    /* dp_psg_finish noises the parameters that require grad, each in even-sized chunks whose
     * blocks add up to ceil(numel / 2). */
    int64_t blocks = 0;
    for (int32_t k = 0; k < psg->n; k++)
        if (psg->params[k]->param->requires_grad) blocks += (dp_tensor_numel(psg->params[k]->param) + 1) / 2;
    return blocks;
}
