/* calibrate.c: the generic accountant entry points (epsilon, delta by kind) and the calibration
 * of sigma for a target (epsilon, delta). Epsilon falls as sigma grows, so sigma is bracketed by
 * growing steps from the Gaussian-DP estimate, then narrowed in log(sigma) by regula falsi on
 * log(epsilon) with the Illinois fix, falling back to bisection whenever a step does not cut the
 * bracket by 30%; the answer is the bracket's upper end, which meets the target, within a
 * relative tolerance. */
#include <math.h>
#include "internal.h"
#include "privacy/privacy.h"

static const double sigma_min = 1e-3, sigma_max = 1e6;

static int check_kind(const char *fn, dp_accountant_kind kind) {
    if (kind != DP_ACCT_RDP && kind != DP_ACCT_PRV && kind != DP_ACCT_GDP)
        return dp_fail(DP_EARG, "%s: kind must be 0 (rdp), 1 (prv) or 2 (gdp), got %d", fn,
                       (int)kind);
    return 0;
}

int dp_accountant_epsilon(dp_eps_result *out, dp_accountant_kind kind, const dp_mech_run *runs,
                          int32_t n_runs, double delta) {
    int rc = check_kind("dp_accountant_epsilon", kind);
    if (rc) return rc;
    switch (kind) {
    case DP_ACCT_RDP: return dp_rdp_epsilon(out, runs, n_runs, delta, NULL, 0);
    case DP_ACCT_PRV: return dp_prv_epsilon(out, runs, n_runs, delta, 0, 0);
    default: return dp_gdp_epsilon(out, runs, n_runs, delta);
    }
}

int dp_accountant_delta(double *out, dp_accountant_kind kind, const dp_mech_run *runs,
                        int32_t n_runs, double epsilon) {
    const char *fn = "dp_accountant_delta";
    int rc;
    if (!out) return dp_fail(DP_EARG, "%s: out must not be NULL", fn);
    if ((rc = check_kind(fn, kind))) return rc;
    if ((rc = dp_check_runs(fn, runs, n_runs))) return rc;
    if ((rc = dp_check_epsilon(fn, epsilon))) return rc;
    double estimate, lower;
    switch (kind) {
    case DP_ACCT_RDP: return dp_rdp_delta(out, runs, n_runs, epsilon);
    case DP_ACCT_PRV: return dp_prv_delta(out, &estimate, &lower, runs, n_runs, epsilon, 0, 0);
    default: *out = dp_gdp_delta_of(dp_gdp_mu(runs, n_runs), epsilon); return 0;
    }
}

typedef struct calib {
    dp_accountant_kind kind;
    double q, delta;
    int64_t steps;
} calib;

static int eps_at(double *eps, const calib *c, double sigma) {
    dp_mech_run run = { c->q, sigma, c->steps };
    dp_eps_result r;
    int rc = dp_accountant_epsilon(&r, c->kind, &run, 1, c->delta);
    if (rc) {
        dp_error_prefix("dp_calibrate_sigma");
        return rc;
    }
    *eps = r.epsilon;
    return 0;
}

/* log(eps) - log(target): close to linear in log(sigma), so secant steps converge fast. */
static double gap(double eps, double target) { return log(eps) - log(target); }

/* Narrow [lo, hi] (eps(lo) > target >= eps(hi)) to a relative width tol; returns hi. */
static int narrow(double *out, const calib *c, double lo, double e_lo, double hi, double e_hi,
                  double target, double tol) {
    double x_lo = log(lo), x_hi = log(hi), g_lo = gap(e_lo, target), g_hi = gap(e_hi, target);
    int side = 0, rc;
    for (int iter = 0; iter < 200 && x_hi - x_lo > log1p(tol); iter++) {
        double width = x_hi - x_lo, x, e;
        if (isfinite(g_lo) && isfinite(g_hi) && g_lo - g_hi > 0) {
            x = x_hi - g_hi * (x_hi - x_lo) / (g_hi - g_lo);
            double margin = 0.1 * log1p(tol);   /* stay strictly inside */
            if (x < x_lo + margin) x = x_lo + margin;
            if (x > x_hi - margin) x = x_hi - margin;
        } else {
            x = 0.5 * (x_lo + x_hi);
        }
        if ((rc = eps_at(&e, c, exp(x)))) return rc;
        double g = gap(e, target);
        if (g > 0) {
            x_lo = x;
            g_lo = g;
            if (side == -1) g_hi *= 0.5;   /* Illinois: the stale end loses weight */
            side = -1;
        } else {
            x_hi = x;
            g_hi = g;
            if (side == 1) g_lo *= 0.5;
            side = 1;
        }
        if (x_hi - x_lo > 0.7 * width && x_hi - x_lo > log1p(tol)) {   /* too slow: bisect */
            double xm = 0.5 * (x_lo + x_hi);
            if ((rc = eps_at(&e, c, exp(xm)))) return rc;
            if (gap(e, target) > 0) { x_lo = xm; g_lo = gap(e, target); }
            else { x_hi = xm; g_hi = gap(e, target); }
            side = 0;
        }
    }
    *out = exp(x_hi);
    return 0;
}

/* Bracket from sigma0 with steps that grow (x1.25, then squared), then narrow. */
static int calibrate(double *out, const calib *c, double sigma0, double target, double tol) {
    const char *fn = "dp_calibrate_sigma";
    double lo, hi, e_lo, e_hi, factor = 1.25, e0;
    int rc;
    if ((rc = eps_at(&e0, c, sigma0))) return rc;
    if (e0 > target) {
        lo = sigma0;
        e_lo = e0;
        for (;;) {
            hi = lo * factor;
            if ((rc = eps_at(&e_hi, c, hi))) return rc;
            if (e_hi <= target) break;
            if (hi >= sigma_max)
                return dp_fail(DP_EARG,
                               "%s: target_epsilon %g is out of reach: sigma = %g still gives "
                               "epsilon %g (q %g, %lld steps, delta %g)",
                               fn, target, hi, e_hi, c->q, (long long)c->steps, c->delta);
            lo = hi;
            e_lo = e_hi;
            factor *= factor;
        }
    } else {
        hi = sigma0;
        e_hi = e0;
        for (;;) {
            lo = hi / factor;
            if ((rc = eps_at(&e_lo, c, lo))) return rc;
            if (e_lo > target) break;
            if (lo <= sigma_min)
                return dp_fail(DP_EARG,
                               "%s: target_epsilon %g is met by every sigma >= %g (epsilon %g "
                               "there; q %g, %lld steps, delta %g)",
                               fn, target, lo, e_lo, c->q, (long long)c->steps, c->delta);
            hi = lo;
            e_hi = e_lo;
            factor *= factor;
        }
    }
    return narrow(out, c, lo, e_lo, hi, e_hi, target, tol);
}

int dp_calibrate_sigma(double *out_sigma, dp_accountant_kind kind, double q, int64_t steps,
                       double target_epsilon, double delta, double tol) {
    const char *fn = "dp_calibrate_sigma";
    int rc;
    if (!out_sigma) return dp_fail(DP_EARG, "%s: out_sigma must not be NULL", fn);
    if ((rc = check_kind(fn, kind))) return rc;
    if ((rc = dp_check_q(fn, "q", q))) return rc;
    if (steps < 1) return dp_fail(DP_EARG, "%s: steps must be >= 1, got %lld", fn, (long long)steps);
    if (!(target_epsilon > 0 && isfinite(target_epsilon)))
        return dp_fail(DP_EARG, "%s: target_epsilon must be finite and > 0, got %g", fn,
                       target_epsilon);
    if ((rc = dp_check_delta(fn, delta))) return rc;
    if (isnan(tol) || tol >= 1)
        return dp_fail(DP_EARG, "%s: tol must be in (0, 1) (<= 0 selects 1e-3), got %g", fn, tol);
    if (tol <= 0) tol = 1e-3;
    /* Start where the (microsecond) Gaussian-DP approximation puts sigma: close to the answer,
     * which spares the expensive accountants most of the bracketing. */
    double sigma0 = 1;
    calib g = { DP_ACCT_GDP, q, delta, steps };
    if (kind != DP_ACCT_GDP && calibrate(&sigma0, &g, 1.0, target_epsilon, 1e-2) != 0) sigma0 = 1;
    if (!(sigma0 > sigma_min && sigma0 < sigma_max)) sigma0 = 1;
    calib c = { kind, q, delta, steps };
    dp_clear_error();
    return calibrate(out_sigma, &c, sigma0, target_epsilon, tol);
}
