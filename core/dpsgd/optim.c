/* optim.c: the checked entry points of the optimizers (dp_sgd_step_, dp_adam_step_). Every
 * argument is validated here once, with a message naming the function, the argument and what was
 * expected; the update itself runs in the device's kernel (dp_ops sgd_step / adam_step). The
 * checks and the rounding counter's advance are shared with the fused end of a DP step
 * (psg_update.c) through psg_internal.h. */
#include <math.h>
#include "psg_internal.h"

/* param: a float tensor, contiguous (kernels walk it as a flat array). */
static int check_param(const char *fn, const dp_tensor *param) {
    if (!param) return dp_fail(DP_EARG, "%s: param must not be NULL", fn);
    if (!dp_dtype_is_float(param->dtype))
        return dp_fail(DP_EDTYPE, "%s: param must be a float tensor, got %s", fn, dp_tensor_desc(param));
    if (!dp_tensor_is_contiguous(param))
        return dp_fail(DP_EARG, "%s: param %s must be contiguous (optimizers update it as a flat array)",
                       fn, dp_tensor_desc(param));
    return 0;
}

static int same_shape(const dp_tensor *a, const dp_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* t (argument `what`): dtype one of `dtype` / `alt` (alt < 0: none), param's shape and device,
 * contiguous. expected describes the dtypes for the message. */
static int check_like_param(const char *fn, const char *what, const dp_tensor *t,
                            const dp_tensor *param, int dtype, int alt, const char *expected) {
    if (!t) return dp_fail(DP_EARG, "%s: %s must not be NULL", fn, what);
    if ((int)t->dtype != dtype && (int)t->dtype != alt)
        return dp_fail(DP_EDTYPE, "%s: %s must be %s, got %s (param is %s)", fn, what, expected,
                       dp_tensor_desc(t), dp_tensor_desc(param));
    if (!same_shape(t, param))
        return dp_fail(DP_ESHAPE, "%s: %s must have param's shape, got %s (param is %s)", fn, what,
                       dp_tensor_desc(t), dp_tensor_desc(param));
    if (t->device != param->device)
        return dp_fail(DP_EDEVICE, "%s: %s must be on param's device, got %s (param is %s)", fn, what,
                       dp_tensor_desc(t), dp_tensor_desc(param));
    if (!dp_tensor_is_contiguous(t))
        return dp_fail(DP_EARG, "%s: %s %s must be contiguous", fn, what, dp_tensor_desc(t));
    return 0;
}

/* Byte ranges of two contiguous tensors intersect. */
static int overlap(const dp_tensor *a, const dp_tensor *b) {
    int64_t na = dp_tensor_numel(a), nb = dp_tensor_numel(b);
    if (na == 0 || nb == 0) return 0;
    uintptr_t a0 = (uintptr_t)a->data, a1 = a0 + (uintptr_t)(na * dp_dtype_size(a->dtype));
    uintptr_t b0 = (uintptr_t)b->data, b1 = b0 + (uintptr_t)(nb * dp_dtype_size(b->dtype));
    return a0 < b1 && b0 < a1;
}

/* A state tensor is written in place: it must share no memory with param, grad or other state. */
static int check_distinct(const char *fn, const char *what, const dp_tensor *state,
                          const dp_tensor *param, const dp_tensor *grad, const dp_tensor *other,
                          const char *other_name) {
    if (overlap(state, param) || overlap(state, grad))
        return dp_fail(DP_EARG, "%s: %s shares memory with %s; state must be its own tensor", fn, what,
                       overlap(state, param) ? "param" : "grad");
    if (other && overlap(state, other))
        return dp_fail(DP_EARG, "%s: %s shares memory with %s; state must be its own tensor", fn, what,
                       other_name);
    return 0;
}

/* The state dtype for param: f64 state for f64 params, f32 for every other float. */
static int state_dtype(const dp_tensor *param) { return param->dtype == DP_F64 ? DP_F64 : DP_F32; }

static int check_grad(const char *fn, const dp_tensor *grad, const dp_tensor *param) {
    return check_like_param(fn, "grad", grad, param, DP_F32, DP_F64, "f32 or f64");
}

static int check_state(const char *fn, const char *what, const dp_tensor *t, const dp_tensor *param) {
    int dt = state_dtype(param);
    return check_like_param(fn, what, t, param, dt, -1,
                            dt == DP_F64 ? "f64 (the state dtype of f64 params)"
                                         : "f32 (the state dtype of non-f64 params)");
}

/* lo <= x < hi (hi_open) or lo <= x <= hi, and finite. */
static int check_range(const char *fn, const char *what, double x, double lo, double hi, int hi_open) {
    int ok = isfinite(x) && x >= lo && (hi_open ? x < hi : x <= hi);
    if (!ok)
        return dp_fail(DP_EARG, "%s: %s must be in [%g, %g%c, got %g", fn, what, lo, hi,
                       hi_open ? ')' : ']', x);
    return 0;
}

static int check_nonneg(const char *fn, const char *what, double x) {
    if (!(isfinite(x) && x >= 0))
        return dp_fail(DP_EARG, "%s: %s must be finite and >= 0, got %g", fn, what, x);
    return 0;
}

static int check_flag(const char *fn, const char *what, int32_t x) {
    if (x != 0 && x != 1) return dp_fail(DP_EARG, "%s: %s must be 0 or 1, got %d", fn, what, (int)x);
    return 0;
}

/* rounding: NULL, or stochastic 0 or 1. */
static int check_rounding(const char *fn, const dp_rounding *rounding) {
    if (rounding && rounding->stochastic != 0 && rounding->stochastic != 1)
        return dp_fail(DP_EARG, "%s: rounding->stochastic must be 0 or 1, got %d", fn,
                       (int)rounding->stochastic);
    return 0;
}

/* After a successful update: stochastic rounding of a bf16/f16/fp8 param used ceil(numel / 4)
 * Philox blocks; f32/f64 params ignore the rounding, counter included. */
void dp_optim_advance_rounding(dp_rounding *rounding, const dp_tensor *param) {
    if (!rounding || !rounding->stochastic || param->dtype == DP_F32 || param->dtype == DP_F64) return;
    rounding->counter += (uint64_t)((dp_tensor_numel(param) + 3) / 4);
}

/* The device table into *ops; DP_EUNSUPPORTED when it lacks the kernel (sgd: 1 for sgd_step, 0 for
 * adam_step), the device's own error when its backend cannot load. */
static int ops_with(const char *fn, const dp_tensor *param, int sgd, const dp_ops **ops) {
    *ops = dp_ops_for(param->device);
    if (!*ops) {
        dp_error_prefix(fn);
        return DP_EDEVICE;
    }
    if (sgd ? (*ops)->sgd_step == NULL : (*ops)->adam_step == NULL)
        return dp_fail(DP_EUNSUPPORTED, "%s: the %s backend has no %s kernel (param is %s)", fn,
                       (*ops)->name, sgd ? "sgd_step" : "adam_step", dp_tensor_desc(param));
    return 0;
}

int dp_optim_check_sgd(const char *fn, const dp_tensor *param, const dp_tensor *grad,
                       const dp_tensor *momentum_buf, const char *buf_name, double lr, double momentum,
                       double dampening, double weight_decay, int32_t nesterov, int32_t first_step,
                       const dp_rounding *rounding) {
    int rc;
    if ((rc = check_param(fn, param)) || (rc = check_grad(fn, grad, param))) return rc;
    if ((rc = check_nonneg(fn, "lr", lr)) || (rc = check_range(fn, "momentum", momentum, 0, 1, 1)) ||
        (rc = check_range(fn, "dampening", dampening, 0, 1, 0)) ||
        (rc = check_nonneg(fn, "weight_decay", weight_decay)) ||
        (rc = check_flag(fn, "nesterov", nesterov)) || (rc = check_flag(fn, "first_step", first_step)) ||
        (rc = check_rounding(fn, rounding)))
        return rc;
    if (nesterov && (momentum <= 0 || dampening != 0))
        return dp_fail(DP_EARG, "%s: nesterov needs momentum > 0 and dampening 0, got momentum %g, "
                       "dampening %g", fn, momentum, dampening);
    if (momentum_buf) {
        if ((rc = check_state(fn, buf_name, momentum_buf, param)) ||
            (rc = check_distinct(fn, buf_name, momentum_buf, param, grad, NULL, NULL)))
            return rc;
    } else if (momentum != 0) {
        return dp_fail(DP_EARG, "%s: %s may be NULL only when momentum is 0, got momentum %g", fn,
                       buf_name, momentum);
    }
    return 0;
}

int dp_sgd_step_(dp_tensor *param, const dp_tensor *grad, dp_tensor *momentum_buf, double lr,
                 double momentum, double dampening, double weight_decay, int32_t nesterov,
                 int32_t first_step, dp_rounding *rounding) {
    const char *fn = "dp_sgd_step_";
    int rc = dp_optim_check_sgd(fn, param, grad, momentum_buf, "momentum_buf", lr, momentum, dampening,
                                weight_decay, nesterov, first_step, rounding);
    if (rc) return rc;
    const dp_ops *ops;
    if ((rc = ops_with(fn, param, 1, &ops))) return rc;
    if (dp_tensor_numel(param) == 0) return 0;
    rc = ops->sgd_step(param, grad, momentum_buf, lr, momentum, dampening, weight_decay, nesterov,
                       first_step, rounding);
    if (rc) return rc;
    dp_optim_advance_rounding(rounding, param);
    dp_tensor_bump_version(param);
    return 0;
}

int dp_optim_check_adam(const char *fn, const dp_tensor *param, const dp_tensor *grad,
                        const dp_tensor *m, const char *m_name, const dp_tensor *v, const char *v_name,
                        double lr, double beta1, double beta2, double eps, double weight_decay,
                        int32_t decoupled, int64_t step, const dp_rounding *rounding) {
    int rc;
    if ((rc = check_param(fn, param)) || (rc = check_grad(fn, grad, param)) ||
        (rc = check_state(fn, m_name, m, param)) || (rc = check_state(fn, v_name, v, param)) ||
        (rc = check_distinct(fn, m_name, m, param, grad, v, v_name)) ||
        (rc = check_distinct(fn, v_name, v, param, grad, NULL, NULL)))
        return rc;
    if ((rc = check_nonneg(fn, "lr", lr)) || (rc = check_range(fn, "beta1", beta1, 0, 1, 1)) ||
        (rc = check_range(fn, "beta2", beta2, 0, 1, 1)) ||
        (rc = check_nonneg(fn, "weight_decay", weight_decay)) ||
        (rc = check_flag(fn, "decoupled", decoupled)) || (rc = check_rounding(fn, rounding)))
        return rc;
    if (!(isfinite(eps) && eps > 0)) return dp_fail(DP_EARG, "%s: eps must be finite and > 0, got %g", fn, eps);
    if (step < 1)
        return dp_fail(DP_EARG, "%s: step must be >= 1 (it counts from 1), got %lld", fn, (long long)step);
    return 0;
}

int dp_adam_step_(dp_tensor *param, const dp_tensor *grad, dp_tensor *m, dp_tensor *v, double lr,
                  double beta1, double beta2, double eps, double weight_decay, int32_t decoupled,
                  int64_t step, dp_rounding *rounding) {
    const char *fn = "dp_adam_step_";
    int rc = dp_optim_check_adam(fn, param, grad, m, "m", v, "v", lr, beta1, beta2, eps, weight_decay,
                                 decoupled, step, rounding);
    if (rc) return rc;
    const dp_ops *ops;
    if ((rc = ops_with(fn, param, 0, &ops))) return rc;
    if (dp_tensor_numel(param) == 0) return 0;
    rc = ops->adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step, rounding);
    if (rc) return rc;
    dp_optim_advance_rounding(rounding, param);
    dp_tensor_bump_version(param);
    return 0;
}
