/* test_sampler.c: Poisson subsampling (batch sizes against Binomial(N, q) by moments and a
 * chi-square goodness of fit, per-example inclusion rates, order and range, the q = 0 / q = 1 /
 * n = 0 edges, the capacity retry) and Fisher-Yates shuffles (permutations, uniform over all
 * orders by chi-square), in both generator modes, and the error paths.
 *
 * Chi-square thresholds use the Wilson-Hilferty approximation of the chi-square quantile. Fixed-seed
 * (reproducible) checks use the upper 1e-4 point; checks in secure mode, whose key is fresh each
 * run, use about 1e-7 so that the test does not flake. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "dpsgd/noise_internal.h"

static const double Z_1E4 = 3.719;   /* upper 1e-4 point of N(0, 1) */
static const double Z_1E7 = 5.199;   /* upper 1e-7 point */

static double chi2_quantile(double df, double z) {
    double a = 2.0 / (9.0 * df);
    return df * pow(1 - a + z * sqrt(a), 3);
}

/* Binomial(n, q) pmf at k, through lgamma (n up to a few thousand: relative error ~1e-12). */
static double binom_pmf(int64_t n, int64_t k, double q) {
    return exp(lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1) +
               (double)k * log(q) + (double)(n - k) * log1p(-q));
}

/* ---------------------------------------------------------------- Poisson */

static void test_poisson_statistics(dp_noise *g, const char *name, double z) {
    enum { N = 1000, T = 4000 };
    const double q = 0.05;
    int64_t *out = malloc(N * sizeof *out);
    int64_t *sizes = malloc(T * sizeof *sizes);
    int64_t *hits = calloc(N, sizeof *hits);
    int disorder = 0, out_of_range = 0, failed = 0;
    for (int t = 0; t < T; t++) {
        int64_t count = -1;
        uint64_t before = dp_noise_position(g);
        failed += dp_poisson_sample(g, N, q, out, N, &count) != 0;
        sizes[t] = count;
        /* count + 1 uniforms were drawn (the last one overshoots n), two per block. */
        if (dp_noise_position(g) - before != (uint64_t)(count + 2) / 2) disorder += 1000000;
        for (int64_t i = 0; i < count; i++) {
            out_of_range += out[i] < 0 || out[i] >= N;
            if (i > 0) disorder += out[i] <= out[i - 1];
            if (out[i] >= 0 && out[i] < N) hits[out[i]]++;
        }
    }
    CHECK(failed == 0, "%s: %d samples failed: %s", name, failed, dp_last_error());
    CHECK(disorder == 0, "%s: indices not strictly ascending or counter off (%d)", name, disorder);
    CHECK(out_of_range == 0, "%s: %d indices out of range", name, out_of_range);

    /* Batch sizes: mean and variance of Binomial(N, q), within z standard errors. */
    double mean = 0, var = 0;
    for (int t = 0; t < T; t++) mean += (double)sizes[t];
    mean /= T;
    for (int t = 0; t < T; t++) var += ((double)sizes[t] - mean) * ((double)sizes[t] - mean);
    var /= T - 1;
    double mu = N * q, sigma2 = N * q * (1 - q);
    CHECK(fabs(mean - mu) < z * sqrt(sigma2 / T), "%s: batch size mean %g vs %g", name, mean, mu);
    /* sd of a sample variance ~ sigma^2 sqrt(2 / (T - 1)) for a near-normal law. */
    CHECK(fabs(var - sigma2) < z * sigma2 * sqrt(2.0 / (T - 1)), "%s: batch size variance %g vs %g",
          name, var, sigma2);

    /* Goodness of fit of the size histogram to Binomial(N, q); a bin closes once it expects at
     * least 5 and so does everything above it (the last bin takes the rest). */
    static int64_t observed[N + 1];
    static double expected[N + 1], above[N + 2];
    memset(observed, 0, sizeof observed);
    for (int t = 0; t < T; t++) observed[sizes[t]]++;
    for (int k = 0; k <= N; k++) expected[k] = T * binom_pmf(N, k, q);
    above[N + 1] = 0;
    for (int k = N; k >= 0; k--) above[k] = above[k + 1] + expected[k];
    double chi2 = 0, exp_acc = 0, obs_acc = 0;
    int bins = 0;
    for (int k = 0; k <= N; k++) {
        exp_acc += expected[k];
        obs_acc += (double)observed[k];
        if (k == N || (exp_acc >= 5 && above[k + 1] >= 5)) {
            chi2 += (obs_acc - exp_acc) * (obs_acc - exp_acc) / exp_acc;
            bins++;
            exp_acc = obs_acc = 0;
        }
    }
    double crit = chi2_quantile(bins - 1, z);
    CHECK(chi2 < crit, "%s: batch size chi-square %g over %d bins (threshold %g)", name, chi2, bins, crit);

    /* Each example is included independently with probability q: the N inclusion counts are
     * Binomial(T, q), so sum (h - Tq)^2 / (Tq(1-q)) is chi-square with N degrees of freedom. */
    double chi2_idx = 0;
    int64_t worst = 0;
    for (int i = 0; i < N; i++) {
        double d = (double)hits[i] - T * q;
        chi2_idx += d * d / (T * q * (1 - q));
        if (llabs(hits[i] - (int64_t)(T * q)) > worst) worst = llabs(hits[i] - (int64_t)(T * q));
    }
    crit = chi2_quantile(N, z);
    CHECK(chi2_idx < crit, "%s: inclusion chi-square %g (threshold %g)", name, chi2_idx, crit);
    CHECK(worst < 7 * sqrt(T * q * (1 - q)), "%s: an example included %lld times off T q", name,
          (long long)worst);
    free(out);
    free(sizes);
    free(hits);
}

static void test_poisson_edges(void) {
    dp_noise *g = dp_noise_new_seeded(3, 4, 10);
    int64_t out[64], count = -1;
    CHECK_OK(dp_poisson_sample(g, 50, 0.0, out, 64, &count));
    CHECK(count == 0 && dp_noise_position(g) == 10, "q = 0 chose %lld", (long long)count);
    CHECK_OK(dp_poisson_sample(g, 50, 1.0, out, 64, &count));
    int bad = count != 50;
    for (int i = 0; i < 50 && !bad; i++) bad += out[i] != i;
    CHECK(!bad && dp_noise_position(g) == 10, "q = 1 must choose 0..49, got %lld", (long long)count);
    CHECK_OK(dp_poisson_sample(g, 0, 0.5, NULL, 0, &count));
    CHECK(count == 0, "n = 0 chose %lld", (long long)count);
    /* out may be NULL with capacity 0: a way to ask for the size. */
    CHECK(dp_poisson_sample(g, 50, 0.5, NULL, 0, &count) == DP_EARG && count > 0,
          "asking the size: count %lld", (long long)count);
    /* Capacity too small: fails, says how many, leaves the generator where it was; the retry
     * gives what a twin generator with room to spare gives. */
    uint64_t pos = dp_noise_position(g);
    int64_t needed = -1;
    int rc = dp_poisson_sample(g, 200, 0.3, out, 5, &needed);
    CHECK(rc == DP_EARG && needed > 5 && strstr(dp_last_error(), "capacity"), "rc %d needed %lld: %s",
          rc, (long long)needed, dp_last_error());
    CHECK(dp_noise_position(g) == pos, "a failed sample moved the generator");
    int64_t *big = malloc(200 * sizeof *big), *twin_out = malloc(200 * sizeof *twin_out);
    CHECK_OK(dp_poisson_sample(g, 200, 0.3, big, needed, &count));
    dp_noise *twin = dp_noise_new_seeded(3, 4, pos);
    int64_t twin_count = -1;
    CHECK_OK(dp_poisson_sample(twin, 200, 0.3, twin_out, 200, &twin_count));
    CHECK(count == needed && twin_count == count && memcmp(big, twin_out, (size_t)count * sizeof *big) == 0,
          "retry differs: %lld vs twin %lld", (long long)count, (long long)twin_count);
    CHECK(dp_noise_position(g) == dp_noise_position(twin), "retry ends elsewhere");
    /* A tiny rate on a huge n stays O(q n): one draw overshoots without looping over n. */
    CHECK_OK(dp_poisson_sample(g, INT64_C(1) << 60, 1e-300, out, 64, &count));
    CHECK(count == 0, "q = 1e-300 chose %lld", (long long)count);
    free(big);
    free(twin_out);
    dp_noise_free(twin);
    dp_noise_free(g);
}

/* The gaps follow the documented rule gap = floor(log u / log(1 - q)) on the generator's
 * uniforms, here recomputed with libm from a twin's uniforms (two per block, in order). */
static void test_poisson_rule(void) {
    const double q = 0.2;
    dp_noise *g = dp_noise_new_seeded(77, 1, 0), *twin = dp_noise_new_seeded(77, 1, 0);
    int64_t out[300], count = 0;
    CHECK_OK(dp_poisson_sample(g, 300, q, out, 300, &count));
    double u[302];
    CHECK_OK(dp_noise_uniforms(twin, u, count + 1));
    int bad = 0;
    int64_t last = -1;
    for (int64_t i = 0; i < count; i++) {
        last += 1 + (int64_t)floor(log(u[i]) / log1p(-q));
        bad += out[i] != last;
    }
    bad += last + 1 + (int64_t)floor(log(u[count]) / log1p(-q)) < 300 ? 1 : 0;
    CHECK(bad == 0 && count > 30, "Poisson gaps differ from the rule in %d places (count %lld)", bad,
          (long long)count);
    dp_noise_free(g);
    dp_noise_free(twin);
}

/* ---------------------------------------------------------------- shuffle */

static int is_permutation(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)(n ? n : 1), 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_shuffle(dp_noise *g, const char *name, double z) {
    int64_t *p = malloc(10000 * sizeof *p);
    CHECK_OK(dp_shuffle(g, p, 10000));
    CHECK(is_permutation(p, 10000), "%s: not a permutation of 0..9999", name);
    int fixed = 0;
    for (int i = 0; i < 10000; i++) fixed += p[i] == i;
    CHECK(fixed < 10, "%s: %d fixed points (about 1 expected)", name, fixed);

    /* All 120 orders of 5 items equally likely: chi-square with 119 degrees of freedom; and each
     * (position, value) cell near T/5 (a 5x5 table, 16 degrees of freedom). */
    enum { T = 60000 };
    int counts[120] = {0}, cells[5][5] = {{0}}, failed = 0;
    for (int t = 0; t < T; t++) {
        int64_t q[5];
        failed += dp_shuffle(g, q, 5) != 0;
        /* Lehmer code of the permutation as its index in 0..119 */
        int code = 0;
        for (int i = 0; i < 5; i++) {
            int smaller = 0;
            for (int j = i + 1; j < 5; j++) smaller += q[j] < q[i];
            code = code * (5 - i) + smaller;
            cells[i][q[i]]++;
        }
        counts[code]++;
    }
    CHECK(failed == 0, "%s: %d shuffles failed", name, failed);
    double chi2 = 0, e = T / 120.0;
    for (int k = 0; k < 120; k++) chi2 += (counts[k] - e) * (counts[k] - e) / e;
    CHECK(chi2 < chi2_quantile(119, z), "%s: orders chi-square %g (threshold %g)", name, chi2,
          chi2_quantile(119, z));
    double chi2_cells = 0, ec = T / 5.0;
    for (int i = 0; i < 5; i++)
        for (int v = 0; v < 5; v++) chi2_cells += (cells[i][v] - ec) * (cells[i][v] - ec) / ec;
    CHECK(chi2_cells < chi2_quantile(16, z), "%s: position chi-square %g (threshold %g)", name,
          chi2_cells, chi2_quantile(16, z));

    int64_t one = -1;
    CHECK_OK(dp_shuffle(g, &one, 1));
    CHECK(one == 0, "%s: shuffle of one", name);
    CHECK_OK(dp_shuffle(g, NULL, 0));
    free(p);
}

static void test_errors(void) {
    dp_noise *g = dp_noise_new_seeded(1, 1, 0);
    int64_t out[4], count = 7;
    struct { int64_t n; double q; int64_t cap; int use_out; const char *msg; } bad[] = {
        {-1, 0.5, 4, 1, "n must be >= 0"},
        {10, -0.1, 4, 1, "q must be in [0, 1]"},
        {10, 1.5, 4, 1, "q must be in [0, 1]"},
        {10, NAN, 4, 1, "q must be in [0, 1]"},
        {10, 0.5, -1, 1, "capacity must be >= 0"},
        {10, 0.5, 4, 0, "out is NULL but capacity is 4"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        count = 7;
        int rc = dp_poisson_sample(g, bad[k].n, bad[k].q, bad[k].use_out ? out : NULL, bad[k].cap, &count);
        CHECK(rc == DP_EARG && strstr(dp_last_error(), "poisson_sample: ") &&
                  strstr(dp_last_error(), bad[k].msg) && count == 0,
              "case %zu: rc %d count %lld: %s", k, rc, (long long)count, dp_last_error());
    }
    CHECK(dp_poisson_sample(NULL, 10, 0.5, out, 4, &count) == DP_EARG &&
              strstr(dp_last_error(), "noise is NULL"), "%s", dp_last_error());
    CHECK(dp_poisson_sample(g, 10, 0.5, out, 4, NULL) == DP_EARG &&
              strstr(dp_last_error(), "count is NULL"), "%s", dp_last_error());
    CHECK(dp_shuffle(g, NULL, 3) == DP_EARG && strstr(dp_last_error(), "shuffle: out"), "%s",
          dp_last_error());
    CHECK(dp_shuffle(g, out, -2) == DP_EARG && strstr(dp_last_error(), "n must be >= 0"), "%s",
          dp_last_error());
    CHECK(dp_shuffle(NULL, out, 2) == DP_EARG, "shuffle without a generator");
    CHECK(dp_noise_position(g) == 0, "failed calls moved the generator");
    dp_noise_free(g);
}

int main(void) {
    dp_noise *r = dp_noise_new_seeded(2024, 7, 0);
    test_poisson_statistics(r, "reproducible", Z_1E4);
    test_shuffle(r, "reproducible", Z_1E4);
    dp_noise_free(r);
    dp_noise *s = dp_noise_new_secure(7);
    CHECK_PTR(s);
    if (s) {
        test_poisson_statistics(s, "secure", Z_1E7);
        test_shuffle(s, "secure", Z_1E7);
    }
    dp_noise_free(s);
    test_poisson_edges();
    test_poisson_rule();
    test_errors();
    return dp_test_finish("test_sampler");
}
