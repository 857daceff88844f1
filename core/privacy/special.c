/* special.c: log-space arithmetic, Gaussian tail probabilities and argument checks shared by the
 * privacy accountants. Everything that can underflow in double is computed as a logarithm. */
#include <math.h>
#include <stdio.h>
#include "internal.h"
#include "privacy/privacy.h"

double dp_log_add(double a, double b) {
    if (a < b) { double t = a; a = b; b = t; }
    if (b == -INFINITY || a == INFINITY) return a;
    return a + log1p(exp(b - a));
}

double dp_log_sub(double a, double b) {
    if (b == -INFINITY) return a;
    if (a <= b) return -INFINITY;
    double d = b - a;   /* < 0 */
    return a + (d > -0.6931471805599453 ? log(-expm1(d)) : log1p(-exp(d)));
}

double dp_log1p_exp(double x) {
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

double dp_log_expm1(double x) {
    return x < 1 ? log(expm1(x)) : x + log1p(-exp(-x));
}

/* Beyond this point erfc underflows soon; the asymptotic series of the Mills ratio takes over
 * (its first omitted term is below 1e-17 there). */
static const double tail_switch = 30.0;

double dp_log_normal_sf(double x) {
    if (x < 0) return log1p(-0.5 * erfc(-x * DP_SQRT1_2));
    if (x < tail_switch) return log(0.5 * erfc(x * DP_SQRT1_2));
    /* P(N > x) = phi(x)/x * (1 - 1/x^2 + 3/x^4 - 15/x^6 + ...) */
    double inv2 = 1.0 / (x * x), term = 1.0, series = 1.0;
    for (int k = 1; k <= 8; k++) {
        term *= -(2.0 * k - 1.0) * inv2;
        series += term;
    }
    return -0.5 * x * x - 0.9189385332046728 - log(x) + log(series);
}

double dp_log_normal_cdf(double x) { return dp_log_normal_sf(-x); }

double dp_normal_sf(double x) { return 0.5 * erfc(x * DP_SQRT1_2); }

double dp_normal_cdf(double x) { return 0.5 * erfc(-x * DP_SQRT1_2); }

void dp_sls_init(dp_signed_log_sum *s) {
    s->log_pos = -INFINITY;
    s->log_neg = -INFINITY;
}

void dp_sls_add(dp_signed_log_sum *s, int sign, double log_abs) {
    if (sign > 0) s->log_pos = dp_log_add(s->log_pos, log_abs);
    else if (sign < 0) s->log_neg = dp_log_add(s->log_neg, log_abs);
}

/* ---------------------------------------------------------------- argument checks */

int dp_check_q(const char *fn, const char *what, double q) {
    if (!(q > 0 && q <= 1))
        return dp_fail(DP_EARG, "%s: %s (sampling rate) must be in (0, 1], got %g", fn, what, q);
    return 0;
}

int dp_check_sigma(const char *fn, const char *what, double sigma) {
    if (!(sigma > 0 && isfinite(sigma)))
        return dp_fail(DP_EARG, "%s: %s (noise multiplier) must be finite and > 0, got %g", fn,
                       what, sigma);
    return 0;
}

int dp_check_delta(const char *fn, double delta) {
    if (!(delta > 0 && delta < 1))
        return dp_fail(DP_EARG, "%s: delta must be in (0, 1), got %g", fn, delta);
    return 0;
}

int dp_check_epsilon(const char *fn, double epsilon) {
    if (!(epsilon >= 0 && isfinite(epsilon)))
        return dp_fail(DP_EARG, "%s: epsilon must be finite and >= 0, got %g", fn, epsilon);
    return 0;
}

int dp_check_runs(const char *fn, const dp_mech_run *runs, int32_t n_runs) {
    if (n_runs < 1) return dp_fail(DP_EARG, "%s: n_runs must be >= 1, got %d", fn, (int)n_runs);
    if (!runs) return dp_fail(DP_EARG, "%s: runs must not be NULL", fn);
    char what[48];
    for (int32_t i = 0; i < n_runs; i++) {
        int rc;
        snprintf(what, sizeof what, "runs[%d].q", (int)i);
        if ((rc = dp_check_q(fn, what, runs[i].q))) return rc;
        snprintf(what, sizeof what, "runs[%d].sigma", (int)i);
        if ((rc = dp_check_sigma(fn, what, runs[i].sigma))) return rc;
        if (runs[i].steps < 1)
            return dp_fail(DP_EARG, "%s: runs[%d].steps must be >= 1, got %lld", fn, (int)i,
                           (long long)runs[i].steps);
    }
    return 0;
}
