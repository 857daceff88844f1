/* test_rdp.c: the RDP accountant against closed forms, an independent long-double numerical
 * integration of the Renyi divergence, an independent long-double binomial sum at large integer
 * orders, the standard implementations' epsilons (Opacus order list), monotonicity properties
 * and argument checks. */
#include <float.h>
#include "dp_test.h"

/* ---------------------------------------------------------------- reference by integration */

enum { GL_N = 20 };
static long double gl_x[GL_N], gl_w[GL_N];

/* Gauss-Legendre nodes on [-1, 1] by Newton's method on P_n. */
static void gl_init(void) {
    for (int i = 0; i < GL_N; i++) {
        long double x = cosl(3.14159265358979323846264L * (i + 0.75L) / (GL_N + 0.5L)), dp = 1;
        for (int it = 0; it < 100; it++) {
            long double p0 = 1, p1 = x;
            for (int k = 2; k <= GL_N; k++) {
                long double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = GL_N * (x * p1 - p0) / (x * x - 1);
            long double dx = p1 / dp;
            x -= dx;
            if (fabsl(dx) < 1e-21L) break;
        }
        gl_x[i] = x;
        gl_w[i] = 2 / ((1 - x * x) * dp * dp);
    }
}

/* log g(z) + log phi_s(z) with g = (1+u)^a - 1 - a u, u = q (exp((2z-1)/(2 s^2)) - 1) >= -q:
 * E[g] = A_a - 1 since E[x] = 1. */
static long double log_integrand(long double z, long double q, long double s, long double a) {
    long double u = q * expm1l((2 * z - 1) / (2 * s * s)), lg;
    long double la = a * log1pl(u);
    if (la > 20) {
        lg = la + log1pl(-(1 + a * u) * expl(-la));
    } else if (fabsl(a * u) < 0.1L) {
        long double term = a * (a - 1) / 2 * u * u, sum = 0;
        for (int k = 2; k < 400 && term != 0; k++) {
            sum += term;
            if (fabsl(term) < 1e-22L * fabsl(sum)) break;
            term *= (a - k) / (k + 1) * u;
        }
        lg = logl(sum);
    } else {
        lg = logl(expm1l(la) - a * u);
    }
    return lg - z * z / (2 * s * s) - logl(s) - 0.918938533204672741780329736L;
}

static double rdp_by_integration(double q, double sigma, double alpha) {
    long double s = sigma, a = alpha, top = (alpha > 2 ? alpha : 2) + 40 * sigma;
    long double lo = -40 * s, width = s / 4;
    if (2 * s * s / a < width) width = 2 * s * s / a;
    long panels = (long)ceill((top - lo) / width);
    width = (top - lo) / panels;
    long double mx = -LDBL_MAX;
    for (long p = 0; p < panels; p++) {   /* pass 1: the largest log term, for scaling */
        long double v = log_integrand(lo + (p + 0.5L) * width, q, s, a);
        if (v > mx) mx = v;
    }
    long double sum = 0;
    for (long p = 0; p < panels; p++)
        for (int i = 0; i < GL_N; i++) {
            long double z = lo + (p + 0.5L + gl_x[i] / 2) * width;
            sum += gl_w[i] / 2 * width * expl(log_integrand(z, q, s, a) - mx);
        }
    long double log_am1 = mx + logl(sum);
    long double log_a = log_am1 > 0 ? log_am1 + log1pl(expl(-log_am1)) : log1pl(expl(log_am1));
    return (double)(log_a / (a - 1));
}

/* Integer orders: log sum_k C(a,k) q^k (1-q)^(a-k) exp((k^2-k)/(2 s^2)) directly, with lgammal. */
static double rdp_by_binomial_sum(double q, double sigma, int a) {
    long double mx = -LDBL_MAX, *t = malloc(sizeof(long double) * (size_t)(a + 1)), sum = 0;
    for (int k = 0; k <= a; k++) {
        t[k] = lgammal(a + 1.0L) - lgammal(k + 1.0L) - lgammal(a - k + 1.0L) + k * logl(q) +
               (a - k) * log1pl(-(long double)q) + ((long double)k * k - k) / (2.0L * sigma * sigma);
        if (t[k] > mx) mx = t[k];
    }
    for (int k = 0; k <= a; k++) sum += expl(t[k] - mx);
    free(t);
    return (double)((mx + logl(sum)) / (a - 1));
}

/* ---------------------------------------------------------------- tests */

static void test_closed_forms(void) {
    double orders[] = { 1.001, 1.5, 2, 7.3, 64, 4096 }, out[6];
    double sigmas[] = { 0.3, 1.1, 20 };
    for (int s = 0; s < 3; s++) {
        CHECK_OK(dp_rdp_step(out, 1.0, sigmas[s], orders, 6));
        for (int i = 0; i < 6; i++)   /* q = 1: exactly alpha / (2 sigma^2) */
            CHECK(out[i] == orders[i] / (2 * sigmas[s] * sigmas[s]), "q=1 order %g: %.17g", orders[i], out[i]);
    }
    /* order 2: A_2 = 1 + q^2 (e^(1/s^2) - 1), exact even for q = 1e-8 */
    double qs[] = { 1e-8, 1e-3, 0.3 }, two = 2;
    for (int i = 0; i < 3; i++) {
        double r, want = log1p(qs[i] * qs[i] * expm1(1 / (1.3 * 1.3)));
        CHECK_OK(dp_rdp_step(&r, qs[i], 1.3, &two, 1));
        CHECK_CLOSE(r / want, 1.0, 1e-13);
    }
    /* q -> 1 approaches the Gaussian from below */
    double r, a = 10;
    CHECK_OK(dp_rdp_step(&r, 1 - 1e-9, 0.9, &a, 1));
    CHECK(r <= a / (2 * 0.81) && r > 0.999999 * a / (2 * 0.81), "q -> 1: %.17g", r);
}

static void test_integration_reference(void) {
    static const double cases[][3] = {
        { 0.01, 1.1, 1.001 }, { 0.01, 1.1, 1.5 }, { 0.01, 1.1, 2.5 }, { 0.01, 1.1, 3 },
        { 0.01, 1.1, 10.5 }, { 0.01, 1.1, 32 }, { 1e-8, 1.0, 1.5 }, { 1e-8, 1.0, 5.5 },
        { 0.1, 0.8, 1.01 }, { 0.1, 0.8, 7.3 }, { 0.5, 10, 1.5 }, { 0.5, 10, 7.3 },
        { 0.999, 5, 2.5 }, { 0.3, 0.5, 2.7 }, { 0.9, 0.7, 1.3 }, { 0.05, 1, 11.5 },
        { 0.01, 50, 19.5 }, { 1e-4, 0.6, 2.5 }, { 1e-4, 0.6, 40 }, { 1e-6, 0.7, 5.5 },
        { 0.02, 0.7, 63 }, { 0.2, 3, 17.25 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got, want = rdp_by_integration(cases[i][0], cases[i][1], cases[i][2]);
        CHECK_OK(dp_rdp_step(&got, cases[i][0], cases[i][1], &cases[i][2], 1));
        CHECK(fabs(got - want) <= 1e-9 * want, "q %g sigma %g order %g: %.15g, integration %.15g",
              cases[i][0], cases[i][1], cases[i][2], got, want);
    }
}

static void test_large_orders(void) {
    static const double cases[][3] = {
        { 0.01, 1.0, 256 }, { 0.01, 1.0, 4096 }, { 0.3, 2.0, 1024 }, { 1e-5, 30, 8192 },
        { 0.5, 0.5, 512 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got, want = rdp_by_binomial_sum(cases[i][0], cases[i][1], (int)cases[i][2]);
        CHECK_OK(dp_rdp_step(&got, cases[i][0], cases[i][1], &cases[i][2], 1));
        CHECK(fabs(got - want) <= 1e-10 * want, "q %g sigma %g order %g: %.15g, sum %.15g",
              cases[i][0], cases[i][1], cases[i][2], got, want);
    }
}

/* Opacus' (and prv_accountant's) order list and RDP code (Mironov et al., as in TF Privacy):
 * epsilon and optimal order computed offline with that code; we must agree to 6 significant
 * digits when given the same orders. */
static void test_standard_implementation(void) {
    double orders[151];
    int n = 0;
    for (int x = 1; x < 100; x++) orders[n++] = 1 + x / 10.0;
    for (int a = 12; a < 64; a++) orders[n++] = a;
    static const double cases[][6] = {   /* q, sigma, steps, delta, epsilon, order */
        { 0.01, 1.1, 10000, 1e-5, 5.63199236854841, 4.7 },
        { 256.0 / 60000, 1.1, 14063, 1e-5, 2.59665552868837, 8.1 },
        { 0.001, 0.8, 100000, 1e-6, 3.18780445899463, 7.4 },
        { 0.1, 2.0, 1000, 1e-5, 8.94385012803736, 3.5 },
        { 0.02, 0.7, 500, 1e-5, 7.66408776781746, 3 },
        { 0.05, 5.0, 20000, 1e-6, 7.87986651166142, 4.5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dp_mech_run run = { cases[i][0], cases[i][1], (int64_t)cases[i][2] };
        dp_eps_result r, rd;
        CHECK_OK(dp_rdp_epsilon(&r, &run, 1, cases[i][3], orders, n));
        CHECK(fabs(r.epsilon - cases[i][4]) <= 1e-6 * cases[i][4], "case %d: %.12g vs %.12g",
              (int)i, r.epsilon, cases[i][4]);
        CHECK(r.best_order == cases[i][5], "case %d: order %g vs %g", (int)i, r.best_order, cases[i][5]);
        /* the default orders include Opacus' list, so they can only do better */
        CHECK_OK(dp_rdp_epsilon(&rd, &run, 1, cases[i][3], NULL, 0));
        CHECK(rd.epsilon <= r.epsilon, "default orders %.12g > %.12g", rd.epsilon, r.epsilon);
    }
}

static void test_default_orders(void) {
    int32_t n = dp_rdp_default_orders(NULL, 0);
    double *o = malloc(sizeof(double) * (size_t)n);
    CHECK(dp_rdp_default_orders(o, n) == n, "count");
    int near_one = 0, past_1024 = 0, sorted = 1;
    for (int32_t i = 0; i < n; i++) {
        near_one += o[i] < 1.1;
        past_1024 += o[i] > 1024;
        if (i) sorted &= o[i] > o[i - 1];
    }
    CHECK(sorted && near_one >= 5 && past_1024 >= 4 && o[n - 1] >= 4096,
          "near 1: %d, past 1024: %d, last %g", near_one, past_1024, o[n - 1]);
    for (int x = 1; x < 100; x++) {   /* Opacus' orders are all there */
        int found = 0;
        for (int32_t i = 0; i < n; i++) found |= fabs(o[i] - (1 + x / 10.0)) < 1e-12;
        CHECK(found, "order %g missing", 1 + x / 10.0);
    }
    free(o);
}

static double eps_of(double q, double sigma, int64_t steps, double delta) {
    dp_mech_run run = { q, sigma, steps };
    dp_eps_result r;
    if (dp_rdp_epsilon(&r, &run, 1, delta, NULL, 0)) return NAN;
    return r.epsilon;
}

static void test_properties(void) {
    CHECK(eps_of(0.01, 1.1, 1000, 1e-5) < eps_of(0.01, 1.1, 2000, 1e-5), "grows with steps");
    CHECK(eps_of(0.01, 1.1, 1000, 1e-5) < eps_of(0.02, 1.1, 1000, 1e-5), "grows with q");
    CHECK(eps_of(0.01, 1.1, 1000, 1e-5) > eps_of(0.01, 1.3, 1000, 1e-5), "falls with sigma");
    CHECK(eps_of(0.01, 1.1, 1000, 1e-5) > eps_of(0.01, 1.1, 1000, 1e-4), "falls with delta");
    /* RDP grows with the order */
    int32_t n = dp_rdp_default_orders(NULL, 0);
    double *o = malloc(sizeof(double) * (size_t)n), *r = malloc(sizeof(double) * (size_t)n);
    dp_rdp_default_orders(o, n);
    double qs[] = { 1e-6, 0.01, 0.3, 0.9 }, ss[] = { 0.7, 1.1, 4, 40 };
    for (int c = 0; c < 4; c++) {
        CHECK_OK(dp_rdp_step(r, qs[c], ss[c], o, n));
        int ok = 1;
        for (int32_t i = 1; i < n; i++) ok &= r[i] >= r[i - 1] * (1 - 1e-12) && isfinite(r[i]);
        CHECK(ok, "RDP not increasing in the order at q %g sigma %g", qs[c], ss[c]);
    }
    free(o);
    free(r);
    /* tiny q, huge step count: finite, and no worse than the q = 1e-7 run */
    double e8 = eps_of(1e-8, 1.0, 1000000000, 1e-5), e7 = eps_of(1e-7, 1.0, 1000000000, 1e-5);
    CHECK(isfinite(e8) && e8 > 0 && e8 < e7, "tiny q: %g %g", e8, e7);
}

static void test_heterogeneous(void) {
    dp_mech_run runs[2] = { { 0.01, 1.1, 3000 }, { 0.02, 1.5, 2000 } };
    double orders[] = { 2, 4, 8.5, 16, 32 }, r1[5], r2[5], total[5];
    CHECK_OK(dp_rdp_step(r1, 0.01, 1.1, orders, 5));
    CHECK_OK(dp_rdp_step(r2, 0.02, 1.5, orders, 5));
    double best = INFINITY, best_order = 0;
    for (int i = 0; i < 5; i++) {
        total[i] = 3000 * r1[i] + 2000 * r2[i];
        double e = total[i] + log1p(-1 / orders[i]) - (log(1e-5) + log(orders[i])) / (orders[i] - 1);
        if (e < best) { best = e; best_order = orders[i]; }
    }
    dp_eps_result r;
    CHECK_OK(dp_rdp_epsilon(&r, runs, 2, 1e-5, orders, 5));
    CHECK_CLOSE(r.epsilon, best, 1e-13);
    CHECK(r.best_order == best_order, "order %g vs %g", r.best_order, best_order);
    /* a run split in two is the same run */
    dp_mech_run split[2] = { { 0.01, 1.1, 1234 }, { 0.01, 1.1, 766 } }, whole = { 0.01, 1.1, 2000 };
    dp_eps_result a, b;
    CHECK_OK(dp_rdp_epsilon(&a, split, 2, 1e-5, NULL, 0));
    CHECK_OK(dp_rdp_epsilon(&b, &whole, 1, 1e-5, NULL, 0));
    CHECK_CLOSE(a.epsilon, b.epsilon, 1e-14);
    /* delta for the epsilon found comes back at or below delta */
    double d;
    CHECK_OK(dp_accountant_delta(&d, DP_ACCT_RDP, &whole, 1, b.epsilon));
    CHECK(d <= 1e-5 * (1 + 1e-9) && d > 0.5e-5, "delta round trip %g", d);
}

static void expect_error(int rc, const char *needle) {
    CHECK(rc == DP_EARG, "rc %d for '%s'", rc, needle);
    CHECK(strstr(dp_last_error(), needle) != NULL, "message '%s' lacks '%s'", dp_last_error(), needle);
}

static void test_bad_arguments(void) {
    double out[2], orders[2] = { 2, 3 }, bad_orders[2] = { 2, 1.0 };
    dp_eps_result r;
    expect_error(dp_rdp_step(out, 0, 1, orders, 2), "q (sampling rate) must be in (0, 1], got 0");
    expect_error(dp_rdp_step(out, 1.5, 1, orders, 2), "must be in (0, 1], got 1.5");
    expect_error(dp_rdp_step(out, NAN, 1, orders, 2), "got nan");
    expect_error(dp_rdp_step(out, 0.1, 0, orders, 2), "sigma (noise multiplier) must be finite and > 0");
    expect_error(dp_rdp_step(out, 0.1, INFINITY, orders, 2), "sigma");
    expect_error(dp_rdp_step(out, 0.1, 1, bad_orders, 2), "orders[1] must be in (1, 1e6], got 1");
    dp_mech_run run = { 0.01, 1, 100 }, bad_steps = { 0.01, 1, 0 }, bad_sigma = { 0.01, -1, 10 };
    expect_error(dp_rdp_epsilon(&r, &run, 1, 0, NULL, 0), "delta must be in (0, 1), got 0");
    expect_error(dp_rdp_epsilon(&r, &run, 1, 1, NULL, 0), "delta must be in (0, 1), got 1");
    expect_error(dp_rdp_epsilon(&r, &run, 1, NAN, NULL, 0), "delta must be in (0, 1)");
    expect_error(dp_rdp_epsilon(&r, &bad_steps, 1, 1e-5, NULL, 0), "runs[0].steps must be >= 1, got 0");
    expect_error(dp_rdp_epsilon(&r, &bad_sigma, 1, 1e-5, NULL, 0), "runs[0].sigma");
    expect_error(dp_rdp_epsilon(&r, &run, 0, 1e-5, NULL, 0), "n_runs must be >= 1");
    expect_error(dp_rdp_epsilon(&r, &run, 1, 1e-5, orders, 0), "n_orders must be >= 1");
}

int main(void) {
    gl_init();
    test_closed_forms();
    test_integration_reference();
    test_large_orders();
    test_standard_implementation();
    test_default_orders();
    test_properties();
    test_heterogeneous();
    test_bad_arguments();
    return dp_test_finish("test_rdp");
}
