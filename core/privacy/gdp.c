/* gdp.c: Gaussian-DP accountant (Dong, Roth, Su 2019, "Gaussian Differential Privacy"), by the
 * central limit theorem for Poisson subsampling: mu = sqrt(sum_runs steps q^2 (e^(1/s^2) - 1)).
 * It is an approximation (it can understate epsilon for few steps or large q), so its results
 * carry approximate = 1 and serve for comparison only. */
#include <math.h>
#include "internal.h"
#include "privacy/privacy.h"

double dp_gdp_mu(const dp_mech_run *runs, int32_t n_runs) {
    double mu2 = 0;
    for (int32_t r = 0; r < n_runs; r++) {
        double q = runs[r].q, s = runs[r].sigma;
        mu2 += (double)runs[r].steps * q * q * expm1(1 / (s * s));
    }
    return sqrt(mu2);
}

/* delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2), the second term in log space. */
double dp_gdp_delta_of(double mu, double epsilon) {
    if (mu == 0) return 0;
    if (!isfinite(mu)) return 1;
    double a = dp_normal_cdf(-epsilon / mu + mu / 2);
    double b = exp(epsilon + dp_log_normal_cdf(-epsilon / mu - mu / 2));
    double d = a - b;
    return d > 0 ? d : 0;
}

/* The smallest eps >= 0 with delta(eps) <= delta, by bisection (delta(eps) is decreasing). */
double dp_gdp_epsilon_of(double mu, double delta) {
    if (mu == 0) return 0;
    if (!isfinite(mu)) return INFINITY;
    if (dp_gdp_delta_of(mu, 0) <= delta) return 0;
    double lo = 0, hi = 1;
    while (dp_gdp_delta_of(mu, hi) > delta) {
        lo = hi;
        hi *= 2;
        if (hi > 1e300) return INFINITY;
    }
    for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (dp_gdp_delta_of(mu, mid) > delta) lo = mid; else hi = mid;
    }
    return hi;
}

int dp_gdp_epsilon(dp_eps_result *out, const dp_mech_run *runs, int32_t n_runs, double delta) {
    const char *fn = "dp_gdp_epsilon";
    int rc;
    if (!out) return dp_fail(DP_EARG, "%s: out must not be NULL", fn);
    if ((rc = dp_check_runs(fn, runs, n_runs))) return rc;
    if ((rc = dp_check_delta(fn, delta))) return rc;
    double eps = dp_gdp_epsilon_of(dp_gdp_mu(runs, n_runs), delta);
    out->epsilon = out->eps_estimate = out->eps_lower = eps;
    out->best_order = 0;
    out->approximate = 1;
    return 0;
}
