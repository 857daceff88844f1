/* fft.c: in-place iterative radix-2 FFTs for the PRV accountant's compositions: complex, and
 * real-input/real-output through a complex FFT of half the length. Twiddle factors are computed
 * directly (not by recurrence) so their error stays at one rounding. */
#include <math.h>
#include <stdlib.h>
#include "internal.h"
#include "privacy/privacy.h"

/* cos and sin of 2 pi k / n for k < n/2, from direct evaluation on the first octant and the
 * symmetries of the circle beyond it. */
static void twiddles(double *c, double *s, int64_t n) {
    int64_t quarter = n / 4, eighth = n / 8;
    if (n < 8) {
        for (int64_t k = 0; k < n / 2; k++) {
            c[k] = cos(2 * DP_PI * (double)k / (double)n);
            s[k] = sin(2 * DP_PI * (double)k / (double)n);
        }
        return;
    }
    for (int64_t k = 0; k <= eighth; k++) {
        double angle = 2 * DP_PI * (double)k / (double)n;
        c[k] = cos(angle);
        s[k] = sin(angle);
    }
    for (int64_t k = eighth + 1; k < quarter; k++) {   /* angle = pi/2 - angle(quarter - k) */
        c[k] = s[quarter - k];
        s[k] = c[quarter - k];
    }
    for (int64_t k = quarter; k < n / 2; k++) {        /* angle = pi/2 + angle(k - quarter) */
        c[k] = -s[k - quarter];
        s[k] = c[k - quarter];
    }
}

/* m-point complex FFT of x[2m]; the twiddle of angle 2 pi j / m is entry j * stride of tables
 * built for m * stride points. sign is -1 (forward) or +1 (unnormalised inverse). */
static void fft_core(double *x, int64_t m, const double *c, const double *s, int64_t stride,
                     double sign) {
    for (int64_t i = 1, j = 0; i < m; i++) {   /* bit-reversal permutation */
        int64_t bit = m >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            double tr = x[2 * i], ti = x[2 * i + 1];
            x[2 * i] = x[2 * j];
            x[2 * i + 1] = x[2 * j + 1];
            x[2 * j] = tr;
            x[2 * j + 1] = ti;
        }
    }
    for (int64_t i = 0; i + 1 < m; i += 2) {   /* length-2 butterflies need no twiddle */
        double ar = x[2 * i], ai = x[2 * i + 1], br = x[2 * i + 2], bi = x[2 * i + 3];
        x[2 * i] = ar + br;
        x[2 * i + 1] = ai + bi;
        x[2 * i + 2] = ar - br;
        x[2 * i + 3] = ai - bi;
    }
    for (int64_t len = 4; len <= m; len <<= 1) {
        int64_t half = len / 2, step = (m / len) * stride;
        for (int64_t start = 0; start < m; start += len) {
            double *lo = x + 2 * start, *hi = x + 2 * (start + half);
            for (int64_t j = 0; j < half; j++) {
                double wr = c[j * step], wi = sign * s[j * step];
                double br = hi[2 * j] * wr - hi[2 * j + 1] * wi;
                double bi = hi[2 * j] * wi + hi[2 * j + 1] * wr;
                double ar = lo[2 * j], ai = lo[2 * j + 1];
                lo[2 * j] = ar + br;
                lo[2 * j + 1] = ai + bi;
                hi[2 * j] = ar - br;
                hi[2 * j + 1] = ai - bi;
            }
        }
    }
}

static int tables(double **c, double **s, int64_t n) {
    *c = malloc(sizeof(double) * (size_t)(n / 2 + 1));
    *s = malloc(sizeof(double) * (size_t)(n / 2 + 1));
    if (!*c || !*s) {
        free(*c);
        free(*s);
        return dp_fail(DP_ENOMEM, "dp_fft: out of memory for %lld points", (long long)n);
    }
    twiddles(*c, *s, n);
    return 0;
}

int dp_fft(double *x, int64_t n, int inverse) {
    if (n < 2) return 0;
    double *c, *s;
    int rc = tables(&c, &s, n);
    if (rc) return rc;
    fft_core(x, n, c, s, 1, inverse ? 1.0 : -1.0);
    free(c);
    free(s);
    return 0;
}

/* Real FFT through the complex FFT of z_m = x_2m + i x_2m+1 (m < M = n/2): with Z = FFT(z),
 * the even and odd halves are E_k = (Z_k + conj Z_(M-k))/2 and O_k = (Z_k - conj Z_(M-k))/(2i),
 * and X_k = E_k + w^k O_k, X_(M-k) = conj(E_k - w^k O_k), w = exp(-2 pi i/n). The inverse runs
 * the same steps backwards. */
int dp_fft_real(double *x, int64_t n, int inverse) {
    if (n < 4) return dp_fail(DP_EARG, "dp_fft_real: n must be a power of two >= 4, got %lld",
                              (long long)n);
    int64_t m = n / 2;
    double *c, *s;
    int rc = tables(&c, &s, n);
    if (rc) return rc;
    if (!inverse) {
        fft_core(x, m, c, s, 2, -1.0);
        double z0r = x[0], z0i = x[1];
        x[0] = z0r + z0i;
        x[1] = 0;
        x[2 * m] = z0r - z0i;
        x[2 * m + 1] = 0;
        for (int64_t k = 1; k <= m / 2; k++) {
            double ar = x[2 * k], ai = x[2 * k + 1];            /* Z_k */
            double br = x[2 * (m - k)], bi = -x[2 * (m - k) + 1];  /* conj Z_(M-k) */
            double er = 0.5 * (ar + br), ei = 0.5 * (ai + bi);
            double or_ = 0.5 * (ai - bi), oi = -0.5 * (ar - br);  /* (Z_k - conj Z_(M-k))/(2i) */
            double wr = c[k], wi = -s[k];
            double tr = wr * or_ - wi * oi, ti = wr * oi + wi * or_;
            x[2 * k] = er + tr;
            x[2 * k + 1] = ei + ti;
            x[2 * (m - k)] = er - tr;
            x[2 * (m - k) + 1] = -(ei - ti);
        }
    } else {
        double x0 = x[0], xm = x[2 * m];
        /* Without the halvings of E and O the result carries the factor n, like dp_fft. */
        x[0] = x0 + xm;
        x[1] = x0 - xm;
        for (int64_t k = 1; k <= m / 2; k++) {
            double ar = x[2 * k], ai = x[2 * k + 1];            /* X_k */
            double br = x[2 * (m - k)], bi = -x[2 * (m - k) + 1];  /* conj X_(M-k) */
            double er = ar + br, ei = ai + bi;                  /* 2 E_k */
            double dr = ar - br, di = ai - bi;                  /* 2 w^k O_k */
            double wr = c[k], wi = s[k];                        /* w^-k */
            double or_ = wr * dr - wi * di, oi = wr * di + wi * dr;
            /* Z_k = E_k + i O_k; Z_(M-k) = conj(E_k) + i conj(O_k) */
            x[2 * k] = er - oi;
            x[2 * k + 1] = ei + or_;
            x[2 * (m - k)] = er + oi;
            x[2 * (m - k) + 1] = -ei + or_;
        }
        fft_core(x, m, c, s, 2, 1.0);
    }
    free(c);
    free(s);
    return 0;
}
