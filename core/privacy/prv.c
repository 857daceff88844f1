/* prv.c: PRV accountant (Gopi, Lee, Wutschitz 2021, "Numerical Composition of Differential
 * Privacy") for the Poisson-subsampled Gaussian mechanism.
 *
 * Privacy loss: Y = log(1 - q + q exp((2x-1)/(2 s^2))) with x ~ P = (1-q) N(0,s^2) + q N(1,s^2),
 * i.e. the "remove" pair (P, Q = N(0,s^2)). Under add/remove adjacency the other ("add") pair,
 * (Q, P), has a privacy curve below this one at every epsilon >= 0 (Zhu, Dong, Wang 2022; checked
 * numerically against a two-sided PLD), so this pair alone gives the guarantee, as in the
 * reference prv_accountant and Opacus. delta(eps) = E[(1 - exp(eps - sum Y))_+].
 *
 * Steps: (1) clamp each step's Y to [t_lo, t_hi] outside which it has mass <= tau;
 * (2) discretise on the grid j*h (cell-centred) and shift by a Simpson estimate of the lost mean,
 * so each step's rounding error e has mean ~0 and range h; Hoeffding then bounds the composed
 * error by eta = h sqrt(K log(1/d_h)/2) except with probability d_h; (3) compose all steps with
 * one FFT per distinct (q, sigma), raising the spectrum to the number of steps, on a circular
 * window of the sum's index chosen from Chernoff bounds of the discrete steps (mass outside the
 * window aliases; it is at most d_w); (4) bound the FFT rounding from the spectrum itself.
 * Then eps_upper = eps~(delta - d) + eta and eps_lower = eps~(delta + d) - eta, where
 * d = d_h + K tau + d_w + fft error and eps~ inverts the computed curve (paper, Thm 5.5 and
 * Sec. 5.2). The grid is capped at 2^22 points: when K, q, sigma need more, h grows and the
 * reported bounds widen instead of memory exploding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "privacy/privacy.h"

enum { PRV_MAX_POINTS = 1 << 22, PRV_MIN_POINTS = 64 };

typedef struct prv_mech {   /* one distinct (q, sigma) */
    double q, sigma;
    int64_t steps;
    double t_mid;           /* loss at x = q: F and S are both sizeable there */
    double t_lo, t_hi;      /* clamp points */
    int64_t j_lo, n;        /* grid points j_lo..j_lo+n-1 (values j*h + shift) */
    double shift;
    double *pmf;
} prv_mech;

/* ---------------------------------------------------------------- one step's distribution */

static double x_of_t(const prv_mech *m, double t) {
    double q = m->q, u;
    if (q == 1) u = t;
    else if (t > 1) u = t + log1p(-(1 - q) * exp(-t)) - log(q);
    else u = log(expm1(t) + q) - log(q);
    return m->sigma * m->sigma * u + 0.5;
}

static int below_support(const prv_mech *m, double t) { return m->q < 1 && t <= log1p(-m->q); }

static double step_cdf(const prv_mech *m, double t) {
    if (below_support(m, t)) return 0;
    double x = x_of_t(m, t), s = m->sigma;
    return (1 - m->q) * dp_normal_cdf(x / s) + m->q * dp_normal_cdf((x - 1) / s);
}

static double step_sf(const prv_mech *m, double t) {
    if (below_support(m, t)) return 1;
    double x = x_of_t(m, t), s = m->sigma;
    return (1 - m->q) * dp_normal_sf(x / s) + m->q * dp_normal_sf((x - 1) / s);
}

/* Clamp points with at most tau of mass beyond each. */
static void find_clamps(prv_mech *m, double tau) {
    double q = m->q, s2 = m->sigma * m->sigma, e = (2 * q - 1) / (2 * s2);
    m->t_mid = q == 1 ? e : dp_log_add(log1p(-q), log(q) + e);
    double a = m->t_mid, step = 1, b = a + step;
    while (step_sf(m, b) > tau) { a = b; step *= 2; b = m->t_mid + step; }
    for (int i = 0; i < 80; i++) {
        double c = 0.5 * (a + b);
        if (step_sf(m, c) > tau) a = c; else b = c;
    }
    m->t_hi = b;
    b = m->t_mid;
    if (q < 1) {
        a = log1p(-q);
    } else {
        step = 1;
        a = b - step;
        while (step_cdf(m, a) > tau) { b = a; step *= 2; a = m->t_mid - step; }
    }
    for (int i = 0; i < 80; i++) {
        double c = 0.5 * (a + b);
        if (step_cdf(m, c) > tau) b = c; else a = c;
    }
    m->t_lo = a;
}

/* F below t_mid, S above: each kept where it is small, so tail masses keep their digits. */
typedef struct side_value { double v; int upper; } side_value;

static side_value eval_side(const prv_mech *m, double t) {
    side_value r;
    r.upper = t >= m->t_mid;
    r.v = r.upper ? step_sf(m, t) : step_cdf(m, t);
    return r;
}

static double as_cdf(side_value s) { return s.upper ? 1 - s.v : s.v; }

/* Cell-centred masses of the clamped step on the grid h, plus the mean shift. */
static int discretise(prv_mech *m, double h) {
    m->j_lo = (int64_t)floor(m->t_lo / h);
    int64_t j_hi = (int64_t)ceil(m->t_hi / h);
    m->n = j_hi - m->j_lo + 1;
    m->shift = 0;
    free(m->pmf);
    m->pmf = malloc(sizeof(double) * (size_t)m->n);
    if (!m->pmf) return DP_ENOMEM;
    if (m->n == 1) { m->pmf[0] = 1; return 0; }
    side_value prev = eval_side(m, ((double)m->j_lo + 0.5) * h);
    m->pmf[0] = as_cdf(prev);
    double shift = 0;
    for (int64_t i = 1; i < m->n; i++) {
        double tc = (double)(m->j_lo + i) * h, mass;
        if (i == m->n - 1) {
            mass = prev.upper ? prev.v : 1 - prev.v;
        } else {
            side_value next = eval_side(m, tc + 0.5 * h), mid = eval_side(m, tc);
            if (prev.upper == next.upper) {
                mass = prev.upper ? prev.v - next.v : next.v - prev.v;
                /* Simpson: E[(Y - tc) 1{cell}] = (h/3)(F(a) + F(b) - 2 F(tc)) + O(h^5) */
                double sgn = prev.upper ? -1 : 1;
                if (mid.upper == prev.upper) shift += sgn * h / 3 * (prev.v + next.v - 2 * mid.v);
            } else {
                mass = as_cdf(next) - as_cdf(prev);
                shift += h / 3 * (as_cdf(prev) + as_cdf(next) - 2 * as_cdf(mid));
            }
            prev = next;
        }
        m->pmf[i] = mass > 0 ? mass : 0;
    }
    m->shift = shift;
    if (!(fabs(shift) < 0.5 * h))
        return dp_fail(DP_EINTERNAL, "prv: discretisation mean shift %g exceeds half the mesh %g",
                       shift, h);
    return 0;
}

/* log sum_j pmf_j exp(lam j) for |lam| <= 2 (lam in index units), summed from the end that
 * lam weights most, rescaled so that nothing overflows or underflows; -inf for an empty pmf. */
static double log_mgf(const prv_mech *m, double lam) {
    double decay = exp(-fabs(lam)), f = 1, sum = 0, log_scale = 0;
    for (int64_t c = 0; c < m->n; c++) {
        int64_t i = lam > 0 ? m->n - 1 - c : c;
        sum += m->pmf[i] * f;
        f *= decay;
        if (f < 1e-200) {
            if (sum > 1e-100) break;   /* the rest is below 1e-100 of the sum */
            sum *= 1e200;
            f *= 1e200;
            log_scale -= 200 * 2.302585092994046;
        }
    }
    int64_t ref = lam > 0 ? m->j_lo + m->n - 1 : m->j_lo;
    return sum > 0 ? log(sum) + log_scale + lam * (double)ref : -INFINITY;
}

/* ---------------------------------------------------------------- composition */

typedef struct prv_curve {
    double *p;        /* composed pmf at values v0 + s h, s < n */
    int64_t n;
    double v0, h;
    double eta;       /* Hoeffding slack in epsilon */
    double slack;     /* total slack in delta */
} prv_curve;

/* Window [lo, hi] of the composed index holding all but tau_side of the mass on each side, by
 * Chernoff bounds on the discrete steps, within the deterministic range of the sum. Rates in
 * value units run over powers of two from 2^-14 while they stay below 2 per grid cell (beyond
 * that the bound is already at the range's end). */
static void chernoff_window(double *lo, double *hi, const prv_mech *ms, int32_t n_m, double h,
                            double tau_side) {
    double det_lo = 0, det_hi = 0, w_lo = -INFINITY, w_hi = INFINITY, lt = -log(tau_side);
    for (int32_t r = 0; r < n_m; r++) {
        det_lo += (double)ms[r].steps * (double)ms[r].j_lo;
        det_hi += (double)ms[r].steps * (double)(ms[r].j_lo + ms[r].n - 1);
    }
    for (int i = -14; i <= 20; i++) {
        double lam = ldexp(1.0, i) * h, up = 0, down = 0;
        if (lam > 2) break;
        for (int32_t r = 0; r < n_m; r++) {
            up += (double)ms[r].steps * log_mgf(&ms[r], lam);
            down += (double)ms[r].steps * log_mgf(&ms[r], -lam);
        }
        double u = (up + lt) / lam, d = -(down + lt) / lam;
        if (isfinite(u) && u < w_hi) w_hi = u;
        if (isfinite(d) && d > w_lo) w_lo = d;
    }
    if (!(w_hi < det_hi)) w_hi = det_hi;
    if (!(w_lo > det_lo)) w_lo = det_lo;
    *lo = floor(w_lo) - 1;
    *hi = ceil(w_hi) + 1;
}

static int64_t mod_n(int64_t j, int64_t n) {
    int64_t r = j % n;
    return r < 0 ? r + n : r;
}

/* x^k for the complex x = (re, im) in place. Adds to *sum_pow |x|^(2(k-1)) and to *sum_phase
 * (k |arg x| + 2)^2 |x^k|^2, each times weight, for the rounding bound. */
static void complex_pow(double *re, double *im, int64_t k, double weight, double *sum_pow,
                        double *sum_phase) {
    double r2 = *re * *re + *im * *im;
    if (r2 == 0) return;
    double lr = 0.5 * log(r2), kl = (double)k * lr, pl = 2 * ((double)k - 1) * lr;
    if (pl > -745) *sum_pow += weight * exp(pl);
    if (kl < -745) { *re = *im = 0; return; }
    double mag = exp(kl), arg = atan2(*im, *re), ang = (double)k * arg;
    *re = mag * cos(ang);
    *im = mag * sin(ang);
    double ph = (double)k * fabs(arg) + 2;
    *sum_phase += weight * ph * ph * mag * mag;
}

/* Compose the steps' pmfs on a circular grid of n points (real FFTs: spectra of n/2 + 1
 * entries); fft_err gets a bound on the l1 error of out. The forward FFT of a pmf errs by at
 * most c = 4 log2(n) u per frequency (sum |pmf| = 1), which the power k scales by k |X|^(k-1);
 * by Parseval the l1 error of the inverse is at most the l2 norm of the spectrum's error. */
static int compose(double *out, const prv_mech *ms, int32_t n_m, int64_t n, int64_t j_lo,
                   double *fft_err) {
    int64_t half = n / 2;
    double *acc = calloc((size_t)(n + 2), sizeof(double));
    double *buf = n_m > 1 ? malloc(sizeof(double) * (size_t)(n + 2)) : acc;
    if (!acc || !buf) {
        free(acc);
        if (n_m > 1) free(buf);
        return dp_fail(DP_ENOMEM, "dp_prv_epsilon: out of memory for a grid of %lld points",
                       (long long)n);
    }
    int rc = 0, log2n = 0;
    while ((1LL << log2n) < n) log2n++;
    const double u = 1.12e-16;
    double c = 4.0 * log2n * u, err = 0, norm2 = 0;
    for (int32_t r = 0; r < n_m && !rc; r++) {
        const prv_mech *m = &ms[r];
        if (n_m > 1) memset(buf, 0, sizeof(double) * (size_t)(n + 2));
        for (int64_t i = 0; i < m->n; i++) buf[mod_n(m->j_lo + i, n)] += m->pmf[i];
        if ((rc = dp_fft_real(buf, n, 0))) break;
        double sum_pow = 0, sum_phase = 0;
        for (int64_t f = 0; f <= half; f++) {
            double re = buf[2 * f], im = buf[2 * f + 1];
            double weight = f == 0 || f == half ? 1 : 2;   /* conjugate twins */
            complex_pow(&re, &im, m->steps, weight, &sum_pow, &sum_phase);
            if (r == 0) {
                acc[2 * f] = re;
                acc[2 * f + 1] = im;
            } else {
                double ar = acc[2 * f], ai = acc[2 * f + 1];
                acc[2 * f] = ar * re - ai * im;
                acc[2 * f + 1] = ar * im + ai * re;
            }
        }
        err += c * (double)m->steps * sqrt(sum_pow) + u * sqrt(sum_phase);
    }
    if (!rc) {
        for (int64_t f = 0; f <= half; f++) {
            double weight = f == 0 || f == half ? 1 : 2;
            norm2 += weight * (acc[2 * f] * acc[2 * f] + acc[2 * f + 1] * acc[2 * f + 1]);
        }
        rc = dp_fft_real(acc, n, 1);
    }
    if (!rc)
        for (int64_t s = 0; s < n; s++) out[s] = acc[mod_n(j_lo + s, n)] / (double)n;
    *fft_err = err + c * sqrt(norm2);
    free(acc);
    if (n_m > 1) free(buf);
    return rc;
}

static void free_mechs(prv_mech *ms, int32_t n_m) {
    for (int32_t r = 0; r < n_m; r++) free(ms[r].pmf);
    free(ms);
}

/* The composed curve of runs with its error terms (arguments already validated). */
static int prv_curve_build(prv_curve *cv, const dp_mech_run *runs, int32_t n_runs,
                           double eps_error, double delta_error) {
    const char *fn = "dp_prv_epsilon";
    prv_mech *ms = calloc((size_t)n_runs, sizeof(prv_mech));
    if (!ms) return dp_fail(DP_ENOMEM, "%s: out of memory", fn);
    int32_t n_m = 0;
    double total = 0;
    for (int32_t r = 0; r < n_runs; r++) {   /* runs sharing (q, sigma) compose as one */
        int32_t i = 0;
        while (i < n_m && !(ms[i].q == runs[r].q && ms[i].sigma == runs[r].sigma)) i++;
        if (i == n_m) { ms[i].q = runs[r].q; ms[i].sigma = runs[r].sigma; n_m++; }
        ms[i].steps += runs[r].steps;
        total += (double)runs[r].steps;
    }
    /* Error budget, a quarter each: Hoeffding, clamping, aliasing, and (checked) FFT rounding. */
    double d_h = delta_error / 4, tau = delta_error / 4 / total / 2, d_w = delta_error / 4;
    double spread = sqrt(total * log(1 / d_h) / 2);
    double h = eps_error / spread, widest = 0;
    for (int32_t r = 0; r < n_m; r++) {
        find_clamps(&ms[r], tau);
        if (ms[r].t_hi - ms[r].t_lo > widest) widest = ms[r].t_hi - ms[r].t_lo;
    }
    if (widest / h > PRV_MAX_POINTS / 2) h = widest / (PRV_MAX_POINTS / 2);
    double w_lo = 0, w_hi = 0;
    int64_t lo = 0, hi = 0, n = 0;
    int rc = 0;
    for (int attempt = 0; attempt < 6; attempt++) {
        for (int32_t r = 0; r < n_m && !rc; r++) rc = discretise(&ms[r], h);
        if (rc) break;
        chernoff_window(&w_lo, &w_hi, ms, n_m, h, d_w / 2);
        double width = w_hi - w_lo + 1;
        if (width <= PRV_MAX_POINTS) break;
        h *= width / PRV_MAX_POINTS * 1.05;
    }
    if (!rc && w_hi - w_lo + 1 > PRV_MAX_POINTS)
        rc = dp_fail(DP_EUNSUPPORTED, "%s: the composed loss does not fit in %d grid points",
                     fn, PRV_MAX_POINTS);
    if (rc) { free_mechs(ms, n_m); return rc == DP_ENOMEM ? dp_fail(rc, "%s: out of memory", fn) : rc; }
    lo = (int64_t)w_lo;
    hi = (int64_t)w_hi;
    for (n = PRV_MIN_POINTS; n < hi - lo + 1; n *= 2) {}
    cv->p = malloc(sizeof(double) * (size_t)n);
    if (!cv->p) { free_mechs(ms, n_m); return dp_fail(DP_ENOMEM, "%s: out of memory", fn); }
    double fft_err = 0, shift = 0;
    rc = compose(cv->p, ms, n_m, n, lo, &fft_err);
    for (int32_t r = 0; r < n_m; r++) shift += (double)ms[r].steps * ms[r].shift;
    free_mechs(ms, n_m);
    if (rc) { free(cv->p); cv->p = NULL; return rc; }
    cv->n = n;
    cv->h = h;
    cv->v0 = (double)lo * h + shift;
    cv->eta = h * spread;
    cv->slack = d_h + 2 * tau * total + d_w + fft_err;
    return 0;
}

/* Smallest epsilon with computed delta(epsilon) <= target (may be negative; -inf if none). */
static double curve_epsilon(const prv_curve *cv, double target) {
    double d1 = 0, g = 0, eh = exp(-cv->h);
    for (int64_t s = cv->n - 1; s >= 0; s--) {
        double ps = cv->p[s] > 0 ? cv->p[s] : 0;
        d1 += ps;
        g = ps + eh * g;   /* sum_{r>=s} p_r exp(v_s - v_r) */
        if (d1 - eh * g >= target || s == 0) {
            if (d1 <= target) return -INFINITY;
            return cv->v0 + (double)s * cv->h + log((d1 - target) / g);
        }
    }
    return -INFINITY;
}

static double curve_delta(const prv_curve *cv, double eps) {
    double d = 0;
    for (int64_t s = cv->n - 1; s >= 0; s--) {
        double v = cv->v0 + (double)s * cv->h;
        if (v <= eps) break;
        if (cv->p[s] > 0) d += cv->p[s] * -expm1(eps - v);
    }
    return d;
}

static int prv_args(const char *fn, const dp_mech_run *runs, int32_t n_runs, double *eps_error,
                    double *delta_error, double delta_default) {
    int rc = dp_check_runs(fn, runs, n_runs);
    if (rc) return rc;
    if (isnan(*eps_error) || *eps_error == INFINITY)
        return dp_fail(DP_EARG, "%s: eps_error must be finite (<= 0 selects 0.01), got %g", fn,
                       *eps_error);
    if (isnan(*delta_error) || *delta_error >= 1)
        return dp_fail(DP_EARG, "%s: delta_error must be < 1 (<= 0 selects delta/1000), got %g",
                       fn, *delta_error);
    if (*eps_error <= 0) *eps_error = 0.01;
    if (*delta_error <= 0) *delta_error = delta_default;
    return 0;
}

int dp_prv_epsilon(dp_eps_result *out, const dp_mech_run *runs, int32_t n_runs, double delta,
                   double eps_error, double delta_error) {
    const char *fn = "dp_prv_epsilon";
    int rc;
    if (!out) return dp_fail(DP_EARG, "%s: out must not be NULL", fn);
    if ((rc = dp_check_delta(fn, delta))) return rc;
    if ((rc = prv_args(fn, runs, n_runs, &eps_error, &delta_error, delta / 1000))) return rc;
    if (delta_error >= delta)
        return dp_fail(DP_EARG, "%s: delta_error must be below delta (%g), got %g", fn, delta,
                       delta_error);
    prv_curve cv;
    if ((rc = prv_curve_build(&cv, runs, n_runs, eps_error, delta_error))) return rc;
    if (cv.slack >= delta) {
        free(cv.p);
        return dp_fail(DP_EUNSUPPORTED,
                       "%s: delta %g is below the accountant's error budget %g (rounding in a "
                       "grid of %lld points); use a larger delta or the RDP accountant",
                       fn, delta, cv.slack, (long long)cv.n);
    }
    double upper = curve_epsilon(&cv, delta - cv.slack) + cv.eta;
    double est = curve_epsilon(&cv, delta);
    double lower = curve_epsilon(&cv, delta + cv.slack) - cv.eta;
    free(cv.p);
    out->epsilon = upper > 0 ? upper : 0;
    out->eps_estimate = est > 0 ? est : 0;
    out->eps_lower = lower > 0 ? lower : 0;
    out->best_order = 0;
    out->approximate = 0;
    return 0;
}

int dp_prv_delta(double *upper, double *estimate, double *lower, const dp_mech_run *runs,
                 int32_t n_runs, double epsilon, double eps_error, double delta_error) {
    const char *fn = "dp_accountant_delta";
    int rc = dp_check_epsilon(fn, epsilon);
    if (rc) return rc;
    if ((rc = prv_args(fn, runs, n_runs, &eps_error, &delta_error, 1e-12))) return rc;
    prv_curve cv;
    if ((rc = prv_curve_build(&cv, runs, n_runs, eps_error, delta_error))) return rc;
    double up = curve_delta(&cv, epsilon - cv.eta) + cv.slack;
    double est = curve_delta(&cv, epsilon);
    double low = curve_delta(&cv, epsilon + cv.eta) - cv.slack;
    free(cv.p);
    *upper = up < 1 ? up : 1;
    *estimate = est;
    *lower = low > 0 ? low : 0;
    return 0;
}
