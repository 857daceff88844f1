/* test_calibrate.c: sigma calibration for each accountant round-trips (the returned sigma meets
 * the target, and sigma smaller by more than the tolerance does not), agrees with a known
 * value, reports unreachable targets and bad arguments; delta for epsilon round-trips. */
#include "dp_test.h"

static double eps_at(dp_accountant_kind kind, double q, double sigma, int64_t steps, double delta) {
    dp_mech_run run = { q, sigma, steps };
    dp_eps_result r;
    if (dp_accountant_epsilon(&r, kind, &run, 1, delta)) return NAN;
    return r.epsilon;
}

static void test_round_trips(void) {
    static const double cases[][5] = {   /* kind, q, steps, target, delta */
        { DP_ACCT_RDP, 0.01, 10000, 8, 1e-5 }, { DP_ACCT_RDP, 0.004, 14063, 1, 1e-5 },
        { DP_ACCT_RDP, 1.0, 100, 10, 1e-6 }, { DP_ACCT_GDP, 0.01, 10000, 2, 1e-5 },
        { DP_ACCT_GDP, 0.1, 50, 0.5, 1e-5 }, { DP_ACCT_PRV, 0.01, 2000, 3, 1e-5 },
        { DP_ACCT_PRV, 1.0, 20, 4, 1e-5 },
    };
    double tol = 1e-3;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dp_accountant_kind kind = (dp_accountant_kind)cases[i][0];
        double q = cases[i][1], target = cases[i][3], delta = cases[i][4], sigma;
        int64_t steps = (int64_t)cases[i][2];
        CHECK_OK(dp_calibrate_sigma(&sigma, kind, q, steps, target, delta, tol));
        double e = eps_at(kind, q, sigma, steps, delta);
        double below = eps_at(kind, q, sigma / (1 + 2 * tol), steps, delta);
        CHECK(e <= target, "case %d: eps %.9g at sigma %.9g above target %g", (int)i, e, sigma, target);
        CHECK(below > target, "case %d: sigma/(1+2 tol) still meets the target (%.9g)", (int)i, below);
    }
    /* q = 1 RDP: eps(sigma) = min_a T a/(2 s^2) + log1p(-1/a) - (log d + log a)/(a-1), smooth
     * in sigma; a loose tolerance still brackets the fine answer */
    double fine, loose;
    CHECK_OK(dp_calibrate_sigma(&fine, DP_ACCT_RDP, 0.01, 1000, 2, 1e-5, 1e-6));
    CHECK_OK(dp_calibrate_sigma(&loose, DP_ACCT_RDP, 0.01, 1000, 2, 1e-5, 0));   /* default 1e-3 */
    CHECK(loose >= fine && loose <= fine * 1.001, "loose %.9g fine %.9g", loose, fine);
    /* accountants order: tighter accounting needs less noise */
    double s_rdp, s_prv;
    CHECK_OK(dp_calibrate_sigma(&s_rdp, DP_ACCT_RDP, 0.01, 2000, 3, 1e-5, 1e-3));
    CHECK_OK(dp_calibrate_sigma(&s_prv, DP_ACCT_PRV, 0.01, 2000, 3, 1e-5, 1e-3));
    CHECK(s_prv < s_rdp, "PRV sigma %.6g should be below RDP sigma %.6g", s_prv, s_rdp);
}

static void test_delta_round_trip(void) {
    dp_mech_run run = { 0.01, 1.1, 5000 };
    for (int k = 0; k < 3; k++) {
        dp_eps_result r;
        double d;
        CHECK_OK(dp_accountant_epsilon(&r, (dp_accountant_kind)k, &run, 1, 1e-5));
        CHECK_OK(dp_accountant_delta(&d, (dp_accountant_kind)k, &run, 1, r.epsilon));
        CHECK(d <= 1e-5 * (k == DP_ACCT_PRV ? 1.05 : 1 + 1e-8) && d > 1e-6, "kind %d: delta %g", k, d);
    }
}

static void expect_error(int rc, const char *needle) {
    CHECK(rc == DP_EARG, "rc %d for '%s'", rc, needle);
    CHECK(strstr(dp_last_error(), needle) != NULL, "message '%s' lacks '%s'", dp_last_error(), needle);
}

static void test_errors(void) {
    double s;
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 1.0, 1000000, 1e-6, 1e-5, 0),
                 "target_epsilon 1e-06 is out of reach");
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 0, 1000, 1, 1e-5, 0), "q (sampling rate) must be in (0, 1]");
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 0.01, 0, 1, 1e-5, 0), "steps must be >= 1, got 0");
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 0.01, 10, -1, 1e-5, 0), "target_epsilon must be finite and > 0");
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 0.01, 10, NAN, 1e-5, 0), "target_epsilon");
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 0.01, 10, 1, 2, 0), "delta must be in (0, 1), got 2");
    expect_error(dp_calibrate_sigma(&s, DP_ACCT_RDP, 0.01, 10, 1, 1e-5, 1.5), "tol must be in (0, 1)");
    expect_error(dp_calibrate_sigma(&s, (dp_accountant_kind)3, 0.01, 10, 1, 1e-5, 0), "kind must be");
}

int main(void) {
    test_round_trips();
    test_delta_round_trip();
    test_errors();
    return dp_test_finish("test_calibrate");
}
