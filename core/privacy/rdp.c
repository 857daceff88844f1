/* rdp.c: Renyi-DP accountant for the Poisson-subsampled Gaussian mechanism.
 *
 * Per-step RDP at order a is log(A_a)/(a-1) with A_a = E_{z~N(0,s^2)}[(1-q + q x)^a],
 * x = exp((2z-1)/(2 s^2)) (Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the
 * Sampled Gaussian Mechanism"). We compute log(A_a - 1) rather than log(A_a): A_a - 1 is a sum
 * of positive terms at integer orders and keeps its digits when q is tiny, where A_a itself
 * rounds to 1. Conversion to (epsilon, delta) uses the bound of Balle et al. 2020 (Thm 21) and
 * Canonne, Kamath, Steinke 2020: eps = rdp + log1p(-1/a) - (log delta + log a)/(a-1). */
#include <math.h>
#include <stdlib.h>
#include "internal.h"
#include "privacy/privacy.h"

/* ---------------------------------------------------------------- default orders */

/* Finer and wider than the usual [1.1, 1.2, ..., 10.9] + [12..63] (+ a few powers of two):
 * orders near 1 for huge-epsilon runs, steps of 0.1 to 11 and 0.5 to 20, every integer to 64,
 * about 3% spacing to 1024 and 8 orders per doubling to 16384 for tiny-q, large-sigma runs. */
static int32_t fill_default_orders(double *out) {
    int32_t n = 0;
    static const double near_one[] = { 1.001, 1.002, 1.005 };
    for (int i = 0; i < 3; i++) out[n++] = near_one[i];
    for (int i = 1; i <= 9; i++) out[n++] = 1.0 + i / 100.0;
    for (int i = 1; i <= 100; i++) out[n++] = 1.0 + i / 10.0;
    for (int i = 23; i <= 40; i++) out[n++] = i / 2.0;
    for (int a = 21; a <= 64; a++) out[n++] = a;
    for (int a = 66, step = 2; a <= 1024; a += step) {
        out[n++] = a;
        if (a == 128 || a == 256 || a == 512) step *= 2;
    }
    for (int a = 1024 + 128, step = 128; a <= 16384; a += step) {
        out[n++] = a;
        if (a == 2048 || a == 4096 || a == 8192) step *= 2;
    }
    return n;
}

int32_t dp_rdp_default_orders(double *out, int32_t capacity) {
    double all[512];
    int32_t n = fill_default_orders(all);
    if (out)
        for (int32_t i = 0; i < n && i < capacity; i++) out[i] = all[i];
    return n;
}

/* ---------------------------------------------------------------- integer orders */

/* Scratch shared by the orders of one (q, sigma), for k = 0..max_order: log k, the part of
 * each term that does not depend on the order, k log(q/(1-q)) + log(expm1(k(k-1)/(2 s^2))),
 * and the terms of the order at hand. */
typedef struct rdp_scratch {
    int64_t max_order;
    double *log_k;
    double *base;
    double *terms;
} rdp_scratch;

static int scratch_init(rdp_scratch *s, int64_t max_order, double q, double sigma) {
    s->max_order = max_order;
    size_t n = (size_t)max_order + 2;
    s->log_k = malloc(n * sizeof(double));
    s->base = malloc(n * sizeof(double));
    s->terms = malloc(n * sizeof(double));
    if (!s->log_k || !s->base || !s->terms) return DP_ENOMEM;
    double inv = 1.0 / (2.0 * sigma * sigma), lr = log(q) - log1p(-q);
    for (size_t k = 0; k < n; k++) {
        s->log_k[k] = k ? log((double)k) : -INFINITY;
        double x = (double)k * ((double)k - 1.0) * inv;
        s->base[k] = x > 0 ? (double)k * lr + (x > 40 ? x : dp_log_expm1(x)) : -INFINITY;
    }
    return 0;
}

static void scratch_free(rdp_scratch *s) {
    free(s->log_k);
    free(s->base);
    free(s->terms);
}

/* log(A_a - 1) = log sum_{k>=2} C(a,k) q^k (1-q)^(a-k) (exp(k(k-1)/(2 s^2)) - 1): every term
 * is positive. The log-binomial is accumulated in long double so thousands of steps keep it
 * exact to ~1e-16. */
static double log_am1_int(int64_t a, double l1q, const rdp_scratch *s) {
    long double lc = 0;   /* log C(a, k) */
    double mx = -INFINITY, *t = s->terms;
    const double *log_k = s->log_k, *base = s->base;
    for (int64_t k = 0; k < a; k++) {
        lc += (long double)log_k[a - k] - (long double)log_k[k + 1];
        double tk = (double)lc + base[k + 1];
        t[k + 1] = tk;
        if (tk > mx) mx = tk;
    }
    double sum = 0;
    for (int64_t k = 2; k <= a; k++)
        if (t[k] > mx - 45) sum += exp(t[k] - mx);
    return mx + log(sum) + (double)a * l1q;
}

/* ---------------------------------------------------------------- fractional orders */

/* (1-q)^a - 1 + a q, which is ~ a(a-1)q^2/2: by its binomial series when that converges fast,
 * else directly (no cancellation left to fear then). */
static double c0_term(double a, double q) {
    if (a * q < 0.5 && q < 0.5) {
        double term = a * (a - 1) / 2 * q * q, sum = 0;
        for (int k = 2; k < 200 && fabs(term) > 1e-18 * fabs(sum); k++) {
            sum += term;
            term *= -(a - k) / (k + 1) * q;
        }
        return sum;
    }
    return expm1(a * log1p(-q)) + a * q;
}

/* Sum of (-1)^m a_m, m = 0..n-1, for a totally monotone a (a Hausdorff moment sequence), by
 * Cohen, Rodriguez Villegas and Zagier 2000 ("Convergence acceleration of alternating series",
 * Algorithm 1): the error is below 2 a_0 / 5.828^n. */
static double alternating_sum(const double *a, int n) {
    double d = pow(3.0 + sqrt(8.0), n);
    d = (d + 1.0 / d) / 2.0;
    double b = -1.0, c = -d, s = 0.0;
    for (int k = 0; k < n; k++) {
        c = b - c;
        s += c * a[k];
        b *= ((double)k + n) * ((double)k - n) / (((double)k + 0.5) * ((double)k + 1.0));
    }
    return s / d;
}

enum { TAIL_TERMS = 32 };

/* log(A_a - 1) at fractional a: the two series of Mironov et al. 2019 (Sec. 3.3), split at
 * z0 where q x = 1 - q, applied to g = (1-q+qx)^a - 1 - a q (x-1) (E[g] = A_a - 1 since
 * E[x] = 1), so the O(1) parts cancel analytically instead of numerically:
 *   z < z0: sum_{k>=2} C(a,k)(1-q)^(a-k) q^k M_k Phi_k + c0 Phi_0 + c1 Phi_1
 *   z > z0: sum_{k>=0} C(a,k) q^(a-k) (1-q)^k M_(a-k) Psi_(a-k) - (1-aq) Psi_0 - aq Psi_1
 * with M_j = exp((j^2-j)/(2s^2)), Phi_j = P(N(j,s^2) < z0), Psi_j = P(N(j,s^2) > z0),
 * c0 = (1-q)^a - 1 + aq, c1 = aq((1-q)^(a-1) - 1).
 * From k = ceil(a) on, the terms of both series alternate in sign and decay only polynomially
 * (like k^(-a-2)), too slowly to sum directly when z0/s is small. Their magnitudes are products
 * of moment sequences (|C(a,k)| is a Beta moment in k; the rest is E[r^k] for an r in (0,1)),
 * so the tail is summed with the alternating-series acceleration above. */
static double log_am1_frac(double a, double q, double sigma) {
    double s2 = sigma * sigma, lq = log(q), l1q = log1p(-q);
    double z0 = s2 * (l1q - lq) + 0.5;
    dp_signed_log_sum sum;
    dp_sls_init(&sum);

    double c0 = c0_term(a, q), c1 = a * q * expm1((a - 1) * l1q);
    if (c0 != 0) dp_sls_add(&sum, c0 > 0 ? 1 : -1, log(fabs(c0)) + dp_log_normal_sf(-z0 / sigma));
    if (c1 != 0)
        dp_sls_add(&sum, c1 > 0 ? 1 : -1, log(fabs(c1)) + dp_log_normal_sf((1 - z0) / sigma));
    double c2 = 1 - a * q;   /* region-2 constant: -(1-aq) Psi_0 - aq Psi_1 */
    if (c2 != 0) dp_sls_add(&sum, c2 > 0 ? -1 : 1, log(fabs(c2)) + dp_log_normal_sf(z0 / sigma));
    dp_sls_add(&sum, -1, log(a * q) + dp_log_normal_sf((z0 - 1) / sigma));

    int k0 = (int)ceil(a);
    double lc = 0;   /* log |C(a, k)|; C(a, k) > 0 for k <= k0 */
    double tail[TAIL_TERMS], tail_max = -INFINITY;
    for (int k = 0; k < k0 + TAIL_TERMS; k++) {
        double j = a - k;
        double t2 = lc + j * lq + k * l1q + (j * j - j) / (2 * s2) +
                    dp_log_normal_sf((z0 - j) / sigma);
        double t1 = -INFINITY;
        if (k >= 2)
            t1 = lc + k * lq + j * l1q + ((double)k * k - k) / (2 * s2) +
                 dp_log_normal_sf((k - z0) / sigma);
        if (k < k0) {
            dp_sls_add(&sum, 1, t1);
            dp_sls_add(&sum, 1, t2);
        } else {
            double t = dp_log_add(t1, t2);
            tail[k - k0] = t;
            if (t > tail_max) tail_max = t;
        }
        lc += log(fabs(a - k)) - log(k + 1.0);
    }
    if (tail_max > -INFINITY) {
        double scaled[TAIL_TERMS];
        for (int m = 0; m < TAIL_TERMS; m++) scaled[m] = exp(tail[m] - tail_max);
        double t = alternating_sum(scaled, TAIL_TERMS);
        if (t > 0) dp_sls_add(&sum, 1, log(t) + tail_max);
        else if (t < 0) dp_sls_add(&sum, -1, log(-t) + tail_max);
    }
    return dp_log_sub(sum.log_pos, sum.log_neg);
}

/* ---------------------------------------------------------------- per-step RDP */

static int check_orders(const char *fn, const double *orders, int32_t n_orders) {
    if (n_orders < 1) return dp_fail(DP_EARG, "%s: n_orders must be >= 1, got %d", fn, (int)n_orders);
    if (!orders) return dp_fail(DP_EARG, "%s: orders must not be NULL", fn);
    for (int32_t i = 0; i < n_orders; i++)
        if (!(orders[i] > 1 && orders[i] <= DP_RDP_MAX_ORDER))
            return dp_fail(DP_EARG, "%s: orders[%d] must be in (1, 1e6], got %g", fn, (int)i,
                           orders[i]);
    return 0;
}

static int is_integer(double a) { return a == floor(a); }

/* RDP of one step at each order; orders validated. */
static int rdp_step(double *out, double q, double sigma, const double *orders, int32_t n) {
    if (q == 1) {   /* plain Gaussian: exactly a / (2 sigma^2) */
        for (int32_t i = 0; i < n; i++) out[i] = orders[i] / (2 * sigma * sigma);
        return 0;
    }
    int64_t max_int = 2;
    for (int32_t i = 0; i < n; i++) {
        double a = is_integer(orders[i]) ? orders[i] : ceil(orders[i]);
        if (a > max_int) max_int = (int64_t)a;
    }
    rdp_scratch s;
    if (scratch_init(&s, max_int, q, sigma)) {
        scratch_free(&s);
        return dp_fail(DP_ENOMEM, "dp_rdp_step: out of memory for orders up to %lld",
                       (long long)max_int);
    }
    double l1q = log1p(-q);
    for (int32_t i = 0; i < n; i++) {
        double a = orders[i], lam;
        if (is_integer(a)) {
            lam = log_am1_int((int64_t)a, l1q, &s);
        } else {
            lam = log_am1_frac(a, q, sigma);
            /* RDP grows with the order, so the next integer order is a safe stand-in when the
             * series lost its digits (never seen in tests; kept for the guarantee). */
            if (!isfinite(lam))
                lam = log_am1_int((int64_t)ceil(a), l1q, &s);
        }
        out[i] = dp_log1p_exp(lam) / (a - 1);
    }
    scratch_free(&s);
    return 0;
}

int dp_rdp_step(double *out, double q, double sigma, const double *orders, int32_t n_orders) {
    int rc;
    if (!out) return dp_fail(DP_EARG, "dp_rdp_step: out must not be NULL");
    if ((rc = dp_check_q("dp_rdp_step", "q", q))) return rc;
    if ((rc = dp_check_sigma("dp_rdp_step", "sigma", sigma))) return rc;
    if ((rc = check_orders("dp_rdp_step", orders, n_orders))) return rc;
    return rdp_step(out, q, sigma, orders, n_orders);
}

int dp_rdp_total(double *out, const dp_mech_run *runs, int32_t n_runs, const double *orders,
                 int32_t n_orders) {
    double *step = malloc(sizeof(double) * (size_t)n_orders);
    if (!step) return dp_fail(DP_ENOMEM, "dp_rdp_epsilon: out of memory");
    for (int32_t i = 0; i < n_orders; i++) out[i] = 0;
    for (int32_t r = 0; r < n_runs; r++) {
        /* Runs repeating an earlier (q, sigma) add the same per-step vector. */
        int64_t steps = runs[r].steps;
        int seen = 0;
        for (int32_t p = 0; p < r && !seen; p++)
            seen = runs[p].q == runs[r].q && runs[p].sigma == runs[r].sigma;
        if (seen) continue;
        for (int32_t p = r + 1; p < n_runs; p++)
            if (runs[p].q == runs[r].q && runs[p].sigma == runs[r].sigma) steps += runs[p].steps;
        int rc = rdp_step(step, runs[r].q, runs[r].sigma, orders, n_orders);
        if (rc) { free(step); return rc; }
        for (int32_t i = 0; i < n_orders; i++) out[i] += (double)steps * step[i];
    }
    free(step);
    return 0;
}

/* ---------------------------------------------------------------- conversion */

void dp_rdp_to_epsilon(double *eps, double *order, const double *rdp, const double *orders,
                       int32_t n_orders, double delta) {
    double best = INFINITY, best_order = 0, log_delta = log(delta);
    for (int32_t i = 0; i < n_orders; i++) {
        double a = orders[i], r = rdp[i], e;
        if (!(r >= 0) || !isfinite(r)) continue;
        if (delta * delta + expm1(-r) > 0)
            e = 0;   /* TV <= sqrt(1 - exp(-KL)) <= delta already: (0, delta)-DP */
        else
            e = r + log1p(-1 / a) - (log_delta + log(a)) / (a - 1);
        if (e < 0) e = 0;
        if (e < best) { best = e; best_order = a; }
    }
    *eps = best;
    *order = best_order;
}

int dp_rdp_epsilon(dp_eps_result *out, const dp_mech_run *runs, int32_t n_runs, double delta,
                   const double *orders, int32_t n_orders) {
    const char *fn = "dp_rdp_epsilon";
    int rc;
    if (!out) return dp_fail(DP_EARG, "%s: out must not be NULL", fn);
    if ((rc = dp_check_runs(fn, runs, n_runs))) return rc;
    if ((rc = dp_check_delta(fn, delta))) return rc;
    double defaults[512];
    if (!orders) {
        n_orders = fill_default_orders(defaults);
        orders = defaults;
    } else if ((rc = check_orders(fn, orders, n_orders))) {
        return rc;
    }
    double *rdp = malloc(sizeof(double) * (size_t)n_orders);
    if (!rdp) return dp_fail(DP_ENOMEM, "%s: out of memory", fn);
    if ((rc = dp_rdp_total(rdp, runs, n_runs, orders, n_orders))) { free(rdp); return rc; }
    double eps, order;
    dp_rdp_to_epsilon(&eps, &order, rdp, orders, n_orders, delta);
    free(rdp);
    out->epsilon = out->eps_estimate = out->eps_lower = eps;
    out->best_order = order;
    out->approximate = 0;
    return 0;
}

int dp_rdp_delta(double *out, const dp_mech_run *runs, int32_t n_runs, double epsilon) {
    double orders[512], rdp[512];
    int32_t n = fill_default_orders(orders);
    int rc = dp_rdp_total(rdp, runs, n_runs, orders, n);
    if (rc) return rc;
    double best = 0;   /* log delta; delta = 1 always holds */
    for (int32_t i = 0; i < n; i++) {
        double a = orders[i], r = rdp[i];
        if (!(r >= 0) || !isfinite(r)) continue;
        double ld = (a - 1) * (r - epsilon + log1p(-1 / a)) - log(a);
        double tv = 0.5 * log(-expm1(-r));   /* delta <= TV for any epsilon >= 0 */
        if (tv < ld) ld = tv;
        if (ld < best) best = ld;
    }
    *out = exp(best);
    return 0;
}
