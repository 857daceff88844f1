/* privacy.h: what the accountant's files share: log-space arithmetic, Gaussian tails, argument
 * checks, the FFT and the per-accountant entry points behind dp.h. Never seen by Lua. */
#ifndef DP_PRIVACY_H
#define DP_PRIVACY_H
#include <stdint.h>
#include "dp.h"

/* Constants (strict C11 has no M_PI and friends). */
#define DP_LN2 0.69314718055994530942
#define DP_SQRT1_2 0.70710678118654752440
#define DP_PI 3.14159265358979323846

/* ---------------------------------------------------------------- log space (special.c) */

/* log(exp(a) + exp(b)), with -INFINITY as log(0). */
double dp_log_add(double a, double b);
/* log(exp(a) - exp(b)) for a >= b; -INFINITY when equal. */
double dp_log_sub(double a, double b);
/* log(1 + exp(x)) without overflow. */
double dp_log1p_exp(double x);
/* log(exp(x) - 1) for x > 0. */
double dp_log_expm1(double x);
/* log P(N(0,1) > x) and log P(N(0,1) <= x), accurate in both tails. */
double dp_log_normal_sf(double x);
double dp_log_normal_cdf(double x);
/* P(N(0,1) > x) and P(N(0,1) <= x) (no cancellation in either tail). */
double dp_normal_sf(double x);
double dp_normal_cdf(double x);

/* A signed sum kept as log(positive part) and log(negative part). */
typedef struct dp_signed_log_sum {
    double log_pos;
    double log_neg;
} dp_signed_log_sum;
void dp_sls_init(dp_signed_log_sum *s);
/* Add sign * exp(log_abs). */
void dp_sls_add(dp_signed_log_sum *s, int sign, double log_abs);

/* ---------------------------------------------------------------- argument checks (special.c) */

/* Each returns 0 or DP_EARG with a message "<fn>: <what> must be in <range>, got <value>". */
int dp_check_q(const char *fn, const char *what, double q);
int dp_check_sigma(const char *fn, const char *what, double sigma);
int dp_check_delta(const char *fn, double delta);
int dp_check_epsilon(const char *fn, double epsilon);
int dp_check_runs(const char *fn, const dp_mech_run *runs, int32_t n_runs);

/* ---------------------------------------------------------------- RDP (rdp.c) */

/* Largest order accepted (integer orders cost one term per unit of order). */
#define DP_RDP_MAX_ORDER 1.0e6
/* Total RDP of runs at each order into out[n_orders] (orders already validated). */
int dp_rdp_total(double *out, const dp_mech_run *runs, int32_t n_runs, const double *orders,
                 int32_t n_orders);
/* Best (epsilon, order) from total RDP values; epsilon is >= 0, +INFINITY if no order works. */
void dp_rdp_to_epsilon(double *eps, double *order, const double *rdp, const double *orders,
                       int32_t n_orders, double delta);
/* delta for epsilon from RDP of runs at the default orders. */
int dp_rdp_delta(double *out, const dp_mech_run *runs, int32_t n_runs, double epsilon);

/* ---------------------------------------------------------------- PRV (prv.c) */

/* delta bounds for a given epsilon: *upper is what dp_accountant_delta reports. */
int dp_prv_delta(double *upper, double *estimate, double *lower, const dp_mech_run *runs,
                 int32_t n_runs, double epsilon, double eps_error, double delta_error);

/* ---------------------------------------------------------------- GDP (gdp.c) */

/* mu of the composed runs (central-limit approximation, Poisson subsampling). */
double dp_gdp_mu(const dp_mech_run *runs, int32_t n_runs);
/* delta(eps) of mu-GDP and its inverse. */
double dp_gdp_delta_of(double mu, double epsilon);
double dp_gdp_epsilon_of(double mu, double delta);

/* ---------------------------------------------------------------- FFT (fft.c) */

/* In-place complex FFT of n = 2^k points stored as re,im pairs in x[2n]. inverse = 1 computes
 * the unnormalised inverse transform. Returns 0, or DP_ENOMEM. */
int dp_fft(double *x, int64_t n, int inverse);
/* Real FFT of n = 2^k >= 4 points. Forward: x[n + 2] holds n reals and becomes the spectrum
 * X_0..X_(n/2) as re,im pairs (the rest follows by conjugate symmetry). Inverse: the reverse,
 * real output times n (unnormalised, like dp_fft). */
int dp_fft_real(double *x, int64_t n, int inverse);

#endif
