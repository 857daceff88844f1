/* test_gdp.c: the Gaussian-DP (central limit) accountant: the mu formula, the delta(eps) duality
 * and its inverse against an independent long-double evaluation, the exact Gaussian at q = 1
 * for large sigma, the approximate flag, monotonicity and argument checks. */
#include "dp_test.h"

static long double phi_c(long double x) { return 0.5L * erfcl(x / sqrtl(2.0L)); }

/* delta(eps) of mu-GDP (Dong, Roth, Su 2019, Cor. 2.13), in long double. */
static long double gdp_delta(long double mu, long double eps) {
    return phi_c(eps / mu - mu / 2) - expl(eps) * phi_c(eps / mu + mu / 2);
}

static double gdp_epsilon(long double mu, double delta) {
    long double lo = 0, hi = 1;
    while (gdp_delta(mu, hi) > delta) { lo = hi; hi *= 2; }
    for (int i = 0; i < 100; i++) {
        long double mid = (lo + hi) / 2;
        if (gdp_delta(mu, mid) > delta) lo = mid; else hi = mid;
    }
    return (double)hi;
}

static void test_formula(void) {
    static const double cases[][4] = {   /* q, sigma, steps, delta */
        { 0.01, 1.1, 10000, 1e-5 }, { 256.0 / 60000, 1.1, 14063, 1e-5 }, { 0.1, 2.0, 100, 1e-6 },
        { 0.001, 0.7, 100000, 1e-5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double q = cases[i][0], s = cases[i][1], t = cases[i][2];
        long double mu = q * sqrtl(t * expm1l(1.0L / (s * s)));   /* Poisson CLT mu */
        dp_mech_run run = { q, s, (int64_t)t };
        dp_eps_result r;
        CHECK_OK(dp_gdp_epsilon(&r, &run, 1, cases[i][3]));
        CHECK_CLOSE(r.epsilon, gdp_epsilon(mu, cases[i][3]), 1e-10);
        CHECK(r.approximate == 1 && r.eps_lower == r.epsilon && r.eps_estimate == r.epsilon,
              "approximate flag and single value");
        double d;   /* delta at that epsilon comes back */
        CHECK_OK(dp_accountant_delta(&d, DP_ACCT_GDP, &run, 1, r.epsilon));
        CHECK_CLOSE(d / cases[i][3], 1.0, 1e-8);
    }
    /* heterogeneous runs add mu^2 */
    dp_mech_run runs[2] = { { 0.01, 1.0, 3000 }, { 0.02, 2.0, 500 } };
    long double mu = sqrtl(3000 * 1e-4L * expm1l(1.0L) + 500 * 4e-4L * expm1l(0.25L));
    dp_eps_result r;
    CHECK_OK(dp_gdp_epsilon(&r, runs, 2, 1e-5));
    CHECK_CLOSE(r.epsilon, gdp_epsilon(mu, 1e-5), 1e-10);
}

static void test_large_sigma_gaussian(void) {
    /* q = 1, large sigma: e^(1/s^2) - 1 ~ 1/s^2, so mu ~ sqrt(T)/s, the exact Gaussian */
    dp_mech_run run = { 1.0, 100.0, 10000 };
    dp_eps_result r;
    CHECK_OK(dp_gdp_epsilon(&r, &run, 1, 1e-5));
    CHECK(fabs(r.epsilon - gdp_epsilon(1.0L, 1e-5)) < 1e-3, "%.9g", r.epsilon);
}

static void test_properties(void) {
    dp_mech_run a = { 0.01, 1.0, 1000 }, b = { 0.01, 1.0, 4000 }, c = { 0.01, 2.0, 1000 };
    dp_eps_result ra, rb, rc;
    CHECK_OK(dp_gdp_epsilon(&ra, &a, 1, 1e-5));
    CHECK_OK(dp_gdp_epsilon(&rb, &b, 1, 1e-5));
    CHECK_OK(dp_gdp_epsilon(&rc, &c, 1, 1e-5));
    CHECK(rb.epsilon > ra.epsilon && rc.epsilon < ra.epsilon, "monotone");
    dp_eps_result g;
    CHECK_OK(dp_accountant_epsilon(&g, DP_ACCT_GDP, &a, 1, 1e-5));
    CHECK(g.epsilon == ra.epsilon && g.approximate == 1, "generic entry");
}

static void test_bad_arguments(void) {
    dp_mech_run bad_sigma = { 0.01, NAN, 10 }, ok = { 0.01, 1, 10 };
    dp_eps_result r;
    CHECK(dp_gdp_epsilon(&r, &bad_sigma, 1, 1e-5) == DP_EARG &&
          strstr(dp_last_error(), "runs[0].sigma (noise multiplier) must be finite and > 0"),
          "%s", dp_last_error());
    CHECK(dp_gdp_epsilon(&r, &ok, 1, 0) == DP_EARG && strstr(dp_last_error(), "delta must be in (0, 1)"),
          "%s", dp_last_error());
    CHECK(dp_accountant_epsilon(&r, (dp_accountant_kind)7, &ok, 1, 1e-5) == DP_EARG &&
          strstr(dp_last_error(), "kind must be 0 (rdp), 1 (prv) or 2 (gdp), got 7"), "%s", dp_last_error());
}

int main(void) {
    test_formula();
    test_large_sigma_gaussian();
    test_properties();
    test_bad_arguments();
    return dp_test_finish("test_gdp");
}
