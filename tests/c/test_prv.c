/* test_prv.c: the PRV accountant's bounds against exact privacy curves (the Gaussian mechanism
 * at q = 1, including heterogeneous runs; one and two steps of the subsampled Gaussian by
 * long-double integration written here), against RDP and published values, plus the bounded
 * grid at q = 1 with 10^4 steps and argument checks. */
#include "dp_test.h"

static long double phic(long double x) { return 0.5L * erfcl(x / sqrtl(2.0L)); }

/* delta(eps) of the Gaussian mechanism with mu = 1/sigma_eff, second term in log space. */
static long double gauss_delta(long double mu, long double eps) {
    long double a = phic(eps / mu - mu / 2);
    long double b = expl(eps + logl(phic(eps / mu + mu / 2)));
    return a - b;
}

/* One step of the subsampled Gaussian, at any real eps. */
static long double step_delta(long double q, long double s, long double eps) {
    if (eps <= log1pl(-q)) return -expm1l(eps);
    long double x = s * s * logl((expm1l(eps) + q) / q) + 0.5L;
    return (1 - q) * phic(x / s) + q * phic((x - 1) / s) - expl(eps) * phic(x / s);
}

/* Two steps: E_{x ~ P}[delta_1(eps - y(x))], Simpson on a fine grid. */
static long double two_step_delta(long double q, long double s, long double eps) {
    long double lo = -30 * s, hi = 1 + 30 * s, sum = 0;
    int n = 20000;
    long double h = (hi - lo) / n;
    for (int i = 0; i <= n; i++) {
        long double x = lo + i * h, w = (i == 0 || i == n) ? 1 : (i % 2 ? 4 : 2);
        long double dens = ((1 - q) * expl(-x * x / (2 * s * s)) +
                            q * expl(-(x - 1) * (x - 1) / (2 * s * s))) /
                           (s * 2.506628274631000502415765L);
        long double y = logl(1 - q + q * expl((2 * x - 1) / (2 * s * s)));
        sum += w * dens * step_delta(q, s, eps - y);
    }
    return sum * h / 3;
}

typedef long double (*curve_fn)(const long double *params, long double eps);

static long double gauss_curve(const long double *p, long double eps) { return gauss_delta(p[0], eps); }
static long double one_step_curve(const long double *p, long double eps) { return step_delta(p[0], p[1], eps); }
static long double two_step_curve(const long double *p, long double eps) { return two_step_delta(p[0], p[1], eps); }

/* The smallest eps with delta(eps) <= delta, by bisection. */
static double exact_epsilon(curve_fn f, const long double *params, double delta) {
    long double lo = 0, hi = 1;
    while (f(params, hi) > delta) { lo = hi; hi *= 2; }
    for (int i = 0; i < 100; i++) {
        long double mid = (lo + hi) / 2;
        if (f(params, mid) > delta) lo = mid; else hi = mid;
    }
    return (double)hi;
}

static void check_bracket(const char *name, const dp_eps_result *r, double exact, double eps_error) {
    CHECK(r->eps_lower <= exact && exact <= r->epsilon, "%s: exact %.9g outside [%.9g, %.9g]",
          name, exact, r->eps_lower, r->epsilon);
    CHECK(r->eps_lower <= r->eps_estimate && r->eps_estimate <= r->epsilon, "%s: estimate %.9g",
          name, r->eps_estimate);
    CHECK(fabs(r->eps_estimate - exact) <= eps_error, "%s: estimate %.9g vs exact %.9g", name,
          r->eps_estimate, exact);
}

static void test_gaussian(void) {
    static const double cases[][3] = {   /* sigma, steps, delta */
        { 100, 10000, 1e-5 }, { 5, 100, 1e-5 }, { 2, 1, 1e-6 }, { 0.8, 50, 1e-3 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dp_mech_run run = { 1.0, cases[i][0], (int64_t)cases[i][1] };
        long double mu = sqrtl(cases[i][1]) / cases[i][0];
        double exact = exact_epsilon(gauss_curve, &mu, cases[i][2]);
        dp_eps_result r;
        CHECK_OK(dp_prv_epsilon(&r, &run, 1, cases[i][2], 0, 0));
        char name[64];
        snprintf(name, sizeof name, "gaussian sigma %g steps %g", cases[i][0], cases[i][1]);
        check_bracket(name, &r, exact, 0.01);
        CHECK(r.epsilon - r.eps_lower <= 3 * 0.01, "%s: width %g", name, r.epsilon - r.eps_lower);
    }
}

/* q = 1 with 10^4 steps at sigma 1 (mu = 100): the grid is capped, the bounds widen, and the
 * answer stays finite and correct. */
static void test_bounded_grid(void) {
    dp_mech_run run = { 1.0, 1.0, 10000 };
    long double mu = 100;
    double exact = exact_epsilon(gauss_curve, &mu, 1e-5);
    dp_eps_result r;
    CHECK_OK(dp_prv_epsilon(&r, &run, 1, 1e-5, 0, 0));
    CHECK(isfinite(r.epsilon), "finite: %g", r.epsilon);
    check_bracket("q=1 10^4 steps", &r, exact, 0.5);
    CHECK(r.epsilon - r.eps_lower < 1.0, "width %g", r.epsilon - r.eps_lower);
}

static void test_heterogeneous_gaussian(void) {
    dp_mech_run ab[2] = { { 1.0, 2.0, 30 }, { 1.0, 5.0, 200 } }, ba[2] = { ab[1], ab[0] };
    long double mu = sqrtl(30.0L / 4 + 200.0L / 25);
    double exact = exact_epsilon(gauss_curve, &mu, 1e-5);
    dp_eps_result r1, r2;
    CHECK_OK(dp_prv_epsilon(&r1, ab, 2, 1e-5, 0, 0));
    CHECK_OK(dp_prv_epsilon(&r2, ba, 2, 1e-5, 0, 0));
    check_bracket("two gaussian runs", &r1, exact, 0.01);
    CHECK_CLOSE(r1.eps_estimate, r2.eps_estimate, 1e-9);
}

static void test_subsampled_exact(void) {
    long double p1[2] = { 0.1L, 0.8L }, p2[2] = { 0.01L, 0.5L }, p3[2] = { 0.2L, 1.0L };
    struct { const char *name; curve_fn f; const long double *p; int steps; double delta; } cases[] = {
        { "one step q 0.1 sigma 0.8", one_step_curve, p1, 1, 1e-5 },
        { "one step q 0.01 sigma 0.5", one_step_curve, p2, 1, 1e-5 },
        { "two steps q 0.2 sigma 1", two_step_curve, p3, 2, 1e-5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double exact = exact_epsilon(cases[i].f, cases[i].p, cases[i].delta);
        dp_mech_run run = { (double)cases[i].p[0], (double)cases[i].p[1], cases[i].steps };
        dp_eps_result r;
        CHECK_OK(dp_prv_epsilon(&r, &run, 1, cases[i].delta, 0, 0));
        check_bracket(cases[i].name, &r, exact, 0.01);
    }
}

static void test_against_rdp_and_published(void) {
    static const double cases[][4] = {
        { 0.01, 1.0, 10000, 1e-5 }, { 0.1, 0.8, 100, 1e-6 }, { 0.001, 0.6, 20000, 1e-5 },
        { 0.5, 2.0, 50, 1e-3 }, { 0.02, 3.0, 3000, 1e-7 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dp_mech_run run = { cases[i][0], cases[i][1], (int64_t)cases[i][2] };
        dp_eps_result p, r;
        CHECK_OK(dp_prv_epsilon(&p, &run, 1, cases[i][3], 0, 0));
        CHECK_OK(dp_rdp_epsilon(&r, &run, 1, cases[i][3], NULL, 0));
        CHECK(p.eps_lower <= r.epsilon, "case %d: PRV lower %.9g above RDP %.9g", (int)i,
              p.eps_lower, r.epsilon);
        if (i == 0)   /* prv_accountant / Opacus PRV estimate for these settings */
            CHECK(fabs(p.eps_estimate - 6.18771357) < 1e-3 && p.eps_lower <= 6.18771357 &&
                  6.18771357 <= p.epsilon, "published 6.18771357 vs [%.9g %.9g %.9g]",
                  p.eps_lower, p.eps_estimate, p.epsilon);
        if (i == 1)   /* Google dp_accounting PLD at a 1e-4 grid */
            CHECK(p.eps_lower <= 12.525339 && 12.525339 <= p.epsilon && fabs(p.eps_estimate - 12.525339) < 1e-3,
                  "published 12.525339 vs [%.9g %.9g %.9g]", p.eps_lower, p.eps_estimate, p.epsilon);
    }
    /* a finer eps_error narrows the bounds around the same estimate */
    dp_mech_run run = { 0.1, 0.8, 100 };
    dp_eps_result coarse, fine;
    CHECK_OK(dp_prv_epsilon(&coarse, &run, 1, 1e-6, 0.05, 0));
    CHECK_OK(dp_prv_epsilon(&fine, &run, 1, 1e-6, 0.002, 0));
    CHECK(fine.epsilon - fine.eps_lower < coarse.epsilon - coarse.eps_lower, "narrower");
    CHECK(fabs(fine.eps_estimate - coarse.eps_estimate) < 0.01, "estimates %g %g",
          fine.eps_estimate, coarse.eps_estimate);
}

static void test_properties_and_delta(void) {
    dp_mech_run a = { 0.01, 1.0, 1000 }, more = { 0.01, 1.0, 2000 }, noisier = { 0.01, 1.3, 1000 };
    dp_eps_result ra, rm, rn;
    CHECK_OK(dp_prv_epsilon(&ra, &a, 1, 1e-5, 0, 0));
    CHECK_OK(dp_prv_epsilon(&rm, &more, 1, 1e-5, 0, 0));
    CHECK_OK(dp_prv_epsilon(&rn, &noisier, 1, 1e-5, 0, 0));
    CHECK(rm.eps_estimate > ra.eps_estimate && rn.eps_estimate < ra.eps_estimate, "monotone");
    double d;
    CHECK_OK(dp_accountant_delta(&d, DP_ACCT_PRV, &a, 1, ra.epsilon));
    CHECK(d <= 1.05e-5 && d > 1e-6, "delta at the epsilon upper bound: %g", d);
}

static void expect_error(int rc, const char *needle) {
    CHECK(rc == DP_EARG, "rc %d for '%s'", rc, needle);
    CHECK(strstr(dp_last_error(), needle) != NULL, "message '%s' lacks '%s'", dp_last_error(), needle);
}

static void test_bad_arguments(void) {
    dp_mech_run run = { 0.01, 1, 100 }, bad_q = { 2, 1, 100 };
    dp_eps_result r;
    expect_error(dp_prv_epsilon(&r, &run, 1, 1e-5, NAN, 0), "eps_error must be finite");
    expect_error(dp_prv_epsilon(&r, &run, 1, 1e-5, 0, 1e-4), "delta_error must be below delta");
    expect_error(dp_prv_epsilon(&r, &run, 1, 1.5, 0, 0), "delta must be in (0, 1), got 1.5");
    expect_error(dp_prv_epsilon(&r, &bad_q, 1, 1e-5, 0, 0), "runs[0].q (sampling rate) must be in (0, 1], got 2");
    double d;
    expect_error(dp_accountant_delta(&d, DP_ACCT_PRV, &run, 1, -1), "epsilon must be finite and >= 0");
}

int main(void) {
    test_gaussian();
    test_bounded_grid();
    test_heterogeneous_gaussian();
    test_subsampled_exact();
    test_against_rdp_and_published();
    test_properties_and_delta();
    test_bad_arguments();
    return dp_test_finish("test_prv");
}
