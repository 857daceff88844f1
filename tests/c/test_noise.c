/* test_noise.c: the DP noise generators: ChaCha20 against RFC 8439's vectors, the 53-bit Philox
 * normals against an independent Box-Muller (libm in double, and long double for accuracy),
 * reproducibility across generators and split draws, noise_add_ = dst + std * z in f32 and f64,
 * the secure mode's stream layout and privacy of its key, distribution tests in both modes, and
 * the error paths. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dp_test.h"
#include "internal.h"
#include "philox.h"
#include "dpsgd/chacha20.h"
#include "dpsgd/noise_internal.h"

static const long double PI_L = 3.141592653589793238462643383279502884L;

/* ---------------------------------------------------------------- ChaCha20 (RFC 8439) */

static void chacha_bytes(uint8_t out[64], const uint32_t key[8], uint32_t counter,
                         const uint32_t nonce[3]) {
    uint32_t w[16];
    dp_chacha20_block(w, key, counter, nonce);
    for (int i = 0; i < 16; i++)
        for (int b = 0; b < 4; b++) out[4 * i + b] = (uint8_t)(w[i] >> (8 * b));
}

/* Little-endian words of 4k bytes. */
static void le_words(uint32_t *w, const uint8_t *bytes, int nwords) {
    for (int i = 0; i < nwords; i++)
        w[i] = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
               (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
}

static void test_chacha20_rfc(void) {
    uint8_t key_bytes[32];
    for (int i = 0; i < 32; i++) key_bytes[i] = (uint8_t)i;   /* 00:01:02:...:1f */
    uint32_t key[8];
    le_words(key, key_bytes, 8);

    /* Section 2.3.2: nonce 00:00:00:09:00:00:00:4a:00:00:00:00, block count 1. */
    static const uint8_t nonce232[12] = {0, 0, 0, 0x09, 0, 0, 0, 0x4a, 0, 0, 0, 0};
    static const uint8_t want232[64] = {
        0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20, 0x71, 0xc4,
        0xc7, 0xd1, 0xf4, 0xc7, 0x33, 0xc0, 0x68, 0x03, 0x04, 0x22, 0xaa, 0x9a, 0xc3, 0xd4, 0x6c, 0x4e,
        0xd2, 0x82, 0x64, 0x46, 0x07, 0x9f, 0xaa, 0x09, 0x14, 0xc2, 0xd7, 0x05, 0xd9, 0x8b, 0x02, 0xa2,
        0xb5, 0x12, 0x9c, 0xd1, 0xde, 0x16, 0x4e, 0xb9, 0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50, 0x3c, 0x4e};
    uint32_t nonce[3];
    le_words(nonce, nonce232, 3);
    uint8_t got[64];
    chacha_bytes(got, key, 1, nonce);
    CHECK(memcmp(got, want232, 64) == 0, "RFC 8439 2.3.2 block: first bytes %02x %02x %02x %02x",
          got[0], got[1], got[2], got[3]);

    /* Section 2.4.2: the same key, nonce 00:00:00:00:00:00:00:4a:00:00:00:00, initial counter 1;
     * keystream blocks 1 and 2 XOR the sunscreen plaintext give the ciphertext. */
    static const uint8_t nonce242[12] = {0, 0, 0, 0, 0, 0, 0, 0x4a, 0, 0, 0, 0};
    static const char plaintext[] =
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
        "future, sunscreen would be it.";
    static const uint8_t cipher[114] = {
        0x6e, 0x2e, 0x35, 0x9a, 0x25, 0x68, 0xf9, 0x80, 0x41, 0xba, 0x07, 0x28, 0xdd, 0x0d, 0x69, 0x81,
        0xe9, 0x7e, 0x7a, 0xec, 0x1d, 0x43, 0x60, 0xc2, 0x0a, 0x27, 0xaf, 0xcc, 0xfd, 0x9f, 0xae, 0x0b,
        0xf9, 0x1b, 0x65, 0xc5, 0x52, 0x47, 0x33, 0xab, 0x8f, 0x59, 0x3d, 0xab, 0xcd, 0x62, 0xb3, 0x57,
        0x16, 0x39, 0xd6, 0x24, 0xe6, 0x51, 0x52, 0xab, 0x8f, 0x53, 0x0c, 0x35, 0x9f, 0x08, 0x61, 0xd8,
        0x07, 0xca, 0x0d, 0xbf, 0x50, 0x0d, 0x6a, 0x61, 0x56, 0xa3, 0x8e, 0x08, 0x8a, 0x22, 0xb6, 0x5e,
        0x52, 0xbc, 0x51, 0x4d, 0x16, 0xcc, 0xf8, 0x06, 0x81, 0x8c, 0xe9, 0x1a, 0xb7, 0x79, 0x37, 0x36,
        0x5a, 0xf9, 0x0b, 0xbf, 0x74, 0xa3, 0x5b, 0xe6, 0xb4, 0x0b, 0x8e, 0xed, 0xf2, 0x78, 0x5e, 0x42,
        0x87, 0x4d};
    CHECK(sizeof plaintext - 1 == 114, "plaintext length %zu", sizeof plaintext - 1);
    le_words(nonce, nonce242, 3);
    uint8_t stream[128];
    chacha_bytes(stream, key, 1, nonce);
    chacha_bytes(stream + 64, key, 2, nonce);
    int bad = 0;
    for (int i = 0; i < 114; i++) bad += (uint8_t)(plaintext[i] ^ stream[i]) != cipher[i];
    CHECK(bad == 0, "RFC 8439 2.4.2 ciphertext: %d bytes differ", bad);
}

/* ---------------------------------------------------------------- the 53-bit normals */

static uint64_t bits53(uint32_t hi, uint32_t lo) { return ((uint64_t)hi << 21) | (lo >> 11); }

/* Box-Muller as a reader of the contract would write it, with libm in double on
 * u = (x + 1/2) 2^-53. Above 1/2 that u is not a double, so log u is taken as log1p of the exact
 * complement -(2^54 - 2x - 1) 2^-54: rounding u itself would cost up to 2^-54 / |log u| relative
 * in r, which is large as u nears 1. */
static void reference_pair_f64(double z[2], uint64_t seed, uint64_t stream, uint64_t counter) {
    uint32_t w[4];
    dp_philox4x32(w, seed, counter, stream);
    uint64_t x1 = bits53(w[0], w[1]);
    double log_u1 = x1 < (UINT64_C(1) << 52)
                        ? log(((double)x1 + 0.5) * 0x1p-53)
                        : log1p(-(double)((UINT64_C(1) << 54) - 2 * x1 - 1) * 0x1p-54);
    double u2 = ((double)bits53(w[2], w[3]) + 0.5) * 0x1p-53;
    double r = sqrt(-2.0 * log_u1);
    z[0] = r * cos(2.0 * M_PI * u2);
    z[1] = r * sin(2.0 * M_PI * u2);
}

static void test_normal_pair_reference(void) {
    /* Against the double reference: the two differ only by the roundings of each, mostly of the
     * angle 2 pi u2 in the reference (up to ~2e-15 of z seen), so |z - ref| <= 5e-15 (1 + |ref|). */
    const uint64_t seed = 0x9e3779b97f4a7c15ull, stream = 3;
    int bad = 0;
    double worst = 0;
    for (uint64_t c = 0; c < 20000; c++) {
        double z[2], ref[2];
        dp_philox_normal_pair(z, seed, stream, c);
        reference_pair_f64(ref, seed, stream, c);
        for (int k = 0; k < 2; k++) {
            double err = fabs(z[k] - ref[k]) / (1 + fabs(ref[k]));
            if (err > worst) worst = err;
            bad += err > 5e-15;
        }
    }
    CHECK(bad == 0, "normal pair vs f64 libm Box-Muller: %d mismatches, worst %g", bad, worst);

    /* The stream id goes in ctr_hi: another stream gives other numbers. */
    double a[2], b[2];
    dp_philox_normal_pair(a, seed, 1, 7);
    dp_philox_normal_pair(b, seed, 2, 7);
    CHECK(a[0] != b[0] && a[1] != b[1], "streams 1 and 2 coincide");
}

/* The fixed-operation log, sin and cos at 53 bits against long double libm, including the ends
 * x = 0 (u = 2^-54) and x = 2^53 - 1 (u = 1 - 2^-54) and around 2^52 where u stops being a
 * double: relative error of log u below 1e-15, absolute error of sin and cos below 1e-15, and so
 * |z - z_ref| <= 2e-15 (1 + r). */
static void test_helpers_accuracy(void) {
    uint64_t state = 12345;
    double worst_log = 0, worst_trig = 0, worst_z = 0;
    for (int i = 0; i < 300000; i++) {
        uint64_t x, y;
        if (i < 64) {
            x = i < 32 ? (uint64_t)i : (UINT64_C(1) << 53) - 1 - (uint64_t)(i - 32);
            y = (uint64_t)i * 0x1000000000000ull / 64;
        } else if (i < 128) {
            x = (UINT64_C(1) << 52) - 32 + (uint64_t)(i - 64);
            y = (UINT64_C(1) << 51) - 32 + (uint64_t)(i - 64);   /* near pi/4 of a turn */
        } else {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            x = state >> 11;
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            y = state >> 11;
        }
        long double u1 = ((long double)x + 0.5L) / 9007199254740992.0L;
        long double u2 = ((long double)y + 0.5L) / 9007199254740992.0L;
        long double log_ref = logl(u1);
        double lg = dp_philox_log_u53(x);
        double e = (double)fabsl((lg - log_ref) / log_ref);
        if (e > worst_log) worst_log = e;
        double s, c;
        dp_philox_sincos_turn54(2 * y + 1, &s, &c);
        long double phi = 2 * PI_L * u2;
        e = (double)fmaxl(fabsl(s - sinl(phi)), fabsl(c - cosl(phi)));
        if (e > worst_trig) worst_trig = e;
        uint32_t w[4] = {(uint32_t)(x >> 21), (uint32_t)(x << 11), (uint32_t)(y >> 21),
                         (uint32_t)(y << 11)};
        double z[2];
        dp_philox_box_muller53(z, w);
        long double r = sqrtl(-2 * log_ref);
        e = (double)fmaxl(fabsl(z[0] - r * cosl(phi)), fabsl(z[1] - r * sinl(phi))) / (1 + (double)r);
        if (e > worst_z) worst_z = e;
    }
    CHECK(worst_log < 1e-15, "log u relative error %g", worst_log);
    CHECK(worst_trig < 1e-15, "sin/cos absolute error %g", worst_trig);
    CHECK(worst_z < 2e-15, "z error %g * (1 + r)", worst_z);

    /* The extremes: u = 2^-54 gives r = sqrt(108 log 2); u = 1 - 2^-54 gives r ~ 2^-26.5. */
    uint32_t lo[4] = {0, 0, 0, 0}, hi[4] = {0xffffffffu, 0xffffffffu, 0, 0};
    double z[2];
    dp_philox_box_muller53(z, lo);
    CHECK_CLOSE(hypot(z[0], z[1]), sqrt(108 * log(2.0)), 1e-15);
    dp_philox_box_muller53(z, hi);
    CHECK_CLOSE(hypot(z[0], z[1]), sqrt(2.0) * 0x1p-27, 1e-9);
    CHECK(z[0] > 0, "r > 0 at the top uniform");
}

/* ---------------------------------------------------------------- reproducible generator */

static void test_reproducible_stream(void) {
    const uint64_t seed = 42, stream = 9, c0 = 1000;
    dp_noise *a = dp_noise_new_seeded(seed, stream, c0);
    dp_noise *b = dp_noise_new_seeded(seed, stream, c0);
    CHECK_PTR(a);
    CHECK_PTR(b);
    CHECK(dp_noise_mode_of(a) == DP_NOISE_REPRODUCIBLE, "mode");
    enum { N = 1001 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    CHECK_OK(dp_noise_normals(a, x, N));
    uint64_t s = 0, st = 0, ctr = 0;
    CHECK_OK(dp_noise_state(a, &s, &st, &ctr));
    CHECK(s == seed && st == stream && ctr == c0 + (N + 1) / 2, "state after %d normals: %llu %llu %llu",
          N, (unsigned long long)s, (unsigned long long)st, (unsigned long long)ctr);
    /* Element i is z[i % 2] of block c0 + i / 2. */
    int bad = 0;
    for (int i = 0; i < N; i++) {
        double z[2];
        dp_philox_normal_pair(z, seed, stream, c0 + (uint64_t)(i / 2));
        bad += x[i] != z[i % 2];
    }
    CHECK(bad == 0, "normals mapping: %d mismatches", bad);
    /* Split draws (first part even) continue the same stream, bit for bit. */
    CHECK_OK(dp_noise_normals(b, y, 400));
    CHECK_OK(dp_noise_normals(b, y + 400, N - 400));
    CHECK(memcmp(x, y, N * sizeof *x) == 0, "split draw differs");
    /* An odd first part leaves the rest of its block unused: the next draw starts a block. */
    dp_noise *c = dp_noise_new_seeded(seed, stream, c0);
    CHECK_OK(dp_noise_normals(c, y, 3));
    CHECK_OK(dp_noise_normals(c, y, 2));
    CHECK(y[0] == x[4] && y[1] == x[5], "a draw after an odd one starts at the next block");
    dp_noise_free(c);

    /* Uniforms: element i from lanes (2(i%2), 2(i%2)+1) of block c + i/2, (x + 1/2) 2^-53. */
    dp_noise *u = dp_noise_new_seeded(seed, stream, 5);
    CHECK_OK(dp_noise_uniforms(u, x, 9));
    bad = 0;
    for (int i = 0; i < 9; i++) {
        uint32_t w[4];
        dp_philox4x32(w, seed, 5 + (uint64_t)(i / 2), stream);
        uint64_t v = bits53(w[2 * (i % 2)], w[2 * (i % 2) + 1]);
        double want = v < (UINT64_C(1) << 52) ? ((double)v + 0.5) / 9007199254740992.0
                                              : (double)v / 9007199254740992.0;
        bad += x[i] != want;
    }
    CHECK(bad == 0, "uniform mapping: %d mismatches", bad);
    CHECK(dp_noise_position(u) == 10, "9 uniforms use 5 blocks");
    dp_noise_free(u);
    /* The documented rounding of the uniform at its ends: never 0 nor 1. */
    CHECK(dp_noise_uniform53(0) == 0x1p-54, "smallest uniform %a", dp_noise_uniform53(0));
    CHECK(dp_noise_uniform53((UINT64_C(1) << 53) - 1) == 1 - 0x1p-53, "largest uniform %a",
          dp_noise_uniform53((UINT64_C(1) << 53) - 1));
    free(x);
    free(y);
    dp_noise_free(a);
    dp_noise_free(b);
}

/* dst + std * z, formed in double with one rounding, against the generator's own normals drawn
 * by a twin; f32 and f64; sizes below and above the kernel's parallel threshold. */
static void test_noise_add(void) {
    const int64_t sizes[] = {1, 7, 100000};
    const double std = 0.75;
    for (int si = 0; si < 3; si++) {
        int64_t n = sizes[si];
        for (int d = 0; d < 2; d++) {
            dp_dtype dt = d ? DP_F64 : DP_F32;
            dp_tensor *t = dp_test_random(dt, 1, &n, 11 + (uint64_t)si);
            double *before = malloc((size_t)n * sizeof *before), *after = malloc((size_t)n * sizeof *after);
            double *z = malloc((size_t)n * sizeof *z);
            CHECK_OK(dp_tensor_to_f64(t, before));
            dp_noise *g = dp_noise_new_seeded(7, 2, 33), *twin = dp_noise_new_seeded(7, 2, 33);
            CHECK_OK(dp_noise_add_(g, t, std));
            CHECK_OK(dp_noise_normals(twin, z, n));
            CHECK_OK(dp_tensor_to_f64(t, after));
            int bad = 0;
            for (int64_t i = 0; i < n; i++) {
                double want = fma(std, z[i], before[i]);
                if (dt == DP_F32) want = (double)(float)want;
                bad += after[i] != want;
            }
            CHECK(bad == 0, "noise_add_ %s n=%lld: %d elements differ from dst + std z",
                  dp_dtype_name(dt), (long long)n, bad);
            CHECK(dp_noise_position(g) == 33 + (uint64_t)(n + 1) / 2, "add advances ceil(n/2)");
            dp_noise_free(g);
            dp_noise_free(twin);
            free(before);
            free(after);
            free(z);
            dp_tensor_release(t);
        }
    }
    /* The CPU table carries the kernel the reproducible mode dispatches to. */
    CHECK(dp_cpu_ops.noise_add_philox != NULL, "cpu table lacks noise_add_philox");
    /* A multi-dimensional tensor is filled in row-major order, and an empty one draws nothing. */
    int64_t shape[2] = {3, 4}, zero = 0;
    dp_tensor *m = dp_tensor_zeros(DP_F64, DP_CPU, 2, shape);
    dp_tensor *e = dp_tensor_zeros(DP_F32, DP_CPU, 1, &zero);
    dp_noise *g = dp_noise_new_seeded(1, 1, 0);
    CHECK_OK(dp_noise_add_(g, e, 1.0));
    CHECK(dp_noise_position(g) == 0, "empty add advanced the counter");
    CHECK_OK(dp_noise_add_(g, m, 2.0));
    double z[2], v;
    dp_philox_normal_pair(z, 1, 1, 5);
    CHECK_OK(dp_tensor_get_flat(m, 11, &v));
    CHECK(v == 2.0 * z[1], "element 11 is 2 z[1] of block 5: %g vs %g", v, 2.0 * z[1]);
    dp_noise_free(g);
    dp_tensor_release(m);
    dp_tensor_release(e);
}

/* ---------------------------------------------------------------- secure generator */

static void test_secure(void) {
    dp_noise *a = dp_noise_new_secure(5), *b = dp_noise_new_secure(5);
    CHECK_PTR(a);
    CHECK_PTR(b);
    if (!a || !b) return;
    CHECK(dp_noise_mode_of(a) == DP_NOISE_SECURE, "mode");
    double x[8], y[8];
    CHECK_OK(dp_noise_normals(a, x, 8));
    CHECK_OK(dp_noise_normals(b, y, 8));
    int same = 0;
    for (int i = 0; i < 8; i++) same += x[i] == y[i];
    CHECK(same == 0, "two secure generators agree on %d of 8 normals", same);
    /* The state reveals no key: seed 0, the stream, and the position. */
    uint64_t seed = 99, stream = 0, counter = 0;
    CHECK_OK(dp_noise_state(a, &seed, &stream, &counter));
    CHECK(seed == 0 && stream == 5 && counter == 4, "secure state %llu %llu %llu",
          (unsigned long long)seed, (unsigned long long)stream, (unsigned long long)counter);
    CHECK_OK(dp_noise_state(a, NULL, NULL, NULL));

    /* The bulk draw (whole ChaCha20 blocks, four of ours each) agrees with reading the stream
     * block by block, from an unaligned position and across several ChaCha20 blocks. */
    enum { N = 37 };
    double bulk[N], normals[N];
    dp_noise_set_position(a, 3);
    CHECK_OK(dp_noise_uniforms(a, bulk, N));
    CHECK(dp_noise_position(a) == 3 + (N + 1) / 2, "uniforms advance ceil(n/2)");
    dp_noise_set_position(a, 3);
    int bad = 0;
    for (int i = 0; i < N; i += 2) {
        uint32_t w[4];
        dp_noise_next_block(a, w);
        bad += bulk[i] != dp_noise_uniform53(bits53(w[0], w[1]));
        if (i + 1 < N) bad += bulk[i + 1] != dp_noise_uniform53(bits53(w[2], w[3]));
    }
    CHECK(bad == 0, "secure bulk vs sequential: %d mismatches", bad);
    /* Normals are the same transform of the same words, and noise_add_ adds exactly them, in f64
     * and (rounded once) in f32. */
    dp_noise_set_position(a, 3);
    CHECK_OK(dp_noise_normals(a, normals, N));
    dp_noise_set_position(a, 3);
    bad = 0;
    for (int i = 0; i < N; i += 2) {
        uint32_t w[4];
        double z[2];
        dp_noise_next_block(a, w);
        dp_philox_box_muller53(z, w);
        bad += normals[i] != z[0];
        if (i + 1 < N) bad += normals[i + 1] != z[1];
    }
    CHECK(bad == 0, "secure normals vs their words: %d mismatches", bad);
    int64_t n = N;
    dp_tensor *t64 = dp_test_random(DP_F64, 1, &n, 3), *t32 = dp_test_random(DP_F32, 1, &n, 4);
    double b64[N], b32[N], a64[N], a32[N];
    CHECK_OK(dp_tensor_to_f64(t64, b64));
    CHECK_OK(dp_tensor_to_f64(t32, b32));
    dp_noise_set_position(a, 3);
    CHECK_OK(dp_noise_add_(a, t64, 1.5));
    dp_noise_set_position(a, 3);
    CHECK_OK(dp_noise_add_(a, t32, 1.5));
    CHECK_OK(dp_tensor_to_f64(t64, a64));
    CHECK_OK(dp_tensor_to_f64(t32, a32));
    bad = 0;
    for (int i = 0; i < N; i++) {
        bad += a64[i] != fma(1.5, normals[i], b64[i]);
        bad += a32[i] != (double)(float)fma(1.5, normals[i], b32[i]);
    }
    CHECK(bad == 0, "secure noise_add_: %d elements differ from dst + std z", bad);
    dp_tensor_release(t64);
    dp_tensor_release(t32);
    dp_noise_free(a);
    dp_noise_free(b);
    dp_noise_free(NULL);
}

/* ---------------------------------------------------------------- distributions */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

/* Kolmogorov-Smirnov statistic of v[n] (sorted in place) against cdf. */
static double ks_stat(double *v, int64_t n, double (*cdf)(double)) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double f = cdf(v[i]);
        d = fmax(d, fmax(f - (double)i / n, (double)(i + 1) / n - f));
    }
    return d;
}

/* 1e6 normals per mode. Thresholds sit at about 6 standard errors (false alarm below 1e-8, so the
 * secure mode, whose key is fresh every run, does not flake): mean within 6/sqrt(n), sample
 * variance within 6 sqrt(2/n) of 1, KS statistic below 2.7/sqrt(n) (P(D > 2.7/sqrt n) ~ 9e-7),
 * the fraction beyond 3 sigma within 6 sqrt(p(1-p)/n) of p = 0.0026998, and |z| <= 8.66. */
static void test_distribution(dp_noise *g, const char *name) {
    const int64_t n = 1000000;
    double *v = malloc((size_t)n * sizeof *v);
    CHECK_OK(dp_noise_normals(g, v, n));
    double sum = 0, sq = 0, maxabs = 0;
    int64_t tail = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        sq += v[i] * v[i];
        tail += fabs(v[i]) > 3.0;
        maxabs = fmax(maxabs, fabs(v[i]));
    }
    double mean = sum / n, var = sq / n - mean * mean;
    CHECK(fabs(mean) < 6 / sqrt((double)n), "%s mean %g", name, mean);
    CHECK(fabs(var - 1) < 6 * sqrt(2.0 / n), "%s variance %g", name, var);
    const double p3 = 0.0026997960632601866;   /* 2 (1 - Phi(3)) */
    double frac = (double)tail / n;
    CHECK(fabs(frac - p3) < 6 * sqrt(p3 * (1 - p3) / n), "%s tail beyond 3 sigma %g vs %g", name, frac, p3);
    CHECK(maxabs <= 8.66, "%s max |z| %g", name, maxabs);
    double d = ks_stat(v, n, normal_cdf);
    CHECK(d < 2.7 / sqrt((double)n), "%s KS statistic %g", name, d);

    /* Uniforms: in (0, 1), mean 1/2 and variance 1/12 within 6 standard errors, KS as above. */
    CHECK_OK(dp_noise_uniforms(g, v, n));
    double lo = 1, hi = 0;
    sum = sq = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
        sum += v[i];
        sq += (v[i] - 0.5) * (v[i] - 0.5);
    }
    CHECK(lo > 0 && hi < 1, "%s uniforms in [%g, %g]", name, lo, hi);
    CHECK(fabs(sum / n - 0.5) < 6 * sqrt(1 / 12.0 / n), "%s uniform mean %g", name, sum / n);
    CHECK(fabs(sq / n - 1 / 12.0) < 6 * sqrt(1 / 180.0 / n), "%s uniform variance %g", name, sq / n);
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fmax(v[i] - (double)i / n, (double)(i + 1) / n - v[i]));
    CHECK(d < 2.7 / sqrt((double)n), "%s uniform KS statistic %g", name, d);
    free(v);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
    dp_noise *g = dp_noise_new_seeded(1, 1, 0);
    double out[4];
    int64_t n = 4;
    dp_tensor *ints = dp_tensor_zeros(DP_I32, DP_CPU, 1, &n);
    int64_t shape[2] = {2, 3};
    dp_tensor *mat = dp_tensor_zeros(DP_F32, DP_CPU, 2, shape);
    dp_tensor *tr = dp_transpose(mat, 0, 1);
    dp_tensor *ok = dp_tensor_zeros(DP_F64, DP_CPU, 1, &n);

    CHECK(dp_noise_normals(NULL, out, 4) == DP_EARG && strstr(dp_last_error(), "noise_normals: noise"),
          "%s", dp_last_error());
    CHECK(dp_noise_normals(g, out, -1) == DP_EARG && strstr(dp_last_error(), "n must be >= 0"), "%s",
          dp_last_error());
    CHECK(dp_noise_uniforms(g, NULL, 4) == DP_EARG && strstr(dp_last_error(), "noise_uniforms: out"),
          "%s", dp_last_error());
    CHECK_OK(dp_noise_uniforms(g, NULL, 0));
    CHECK(dp_noise_add_(g, NULL, 1.0) == DP_EARG && strstr(dp_last_error(), "dst is NULL"), "%s",
          dp_last_error());
    CHECK(dp_noise_add_(NULL, ok, 1.0) == DP_EARG && strstr(dp_last_error(), "noise is NULL"), "%s",
          dp_last_error());
    CHECK(dp_noise_add_(g, ints, 1.0) == DP_EDTYPE && strstr(dp_last_error(), "f32 or f64"), "%s",
          dp_last_error());
    CHECK(dp_noise_add_(g, tr, 1.0) == DP_EARG && strstr(dp_last_error(), "contiguous"), "%s",
          dp_last_error());
    CHECK(dp_noise_add_(g, ok, -1.0) == DP_EARG && strstr(dp_last_error(), "std must be finite"),
          "%s", dp_last_error());
    CHECK(dp_noise_add_(g, ok, NAN) == DP_EARG, "NaN std accepted");
    CHECK(dp_noise_add_(g, ok, INFINITY) == DP_EARG, "Inf std accepted");
    CHECK(dp_noise_position(g) == 0, "failed calls moved the generator");
    CHECK(dp_noise_state(NULL, NULL, NULL, NULL) == DP_EARG, "state of NULL");
    CHECK(dp_noise_mode_of(NULL) < 0, "mode of NULL");
    dp_noise_free(g);
    dp_tensor_release(ints);
    dp_tensor_release(tr);
    dp_tensor_release(mat);
    dp_tensor_release(ok);
}

int main(void) {
    test_chacha20_rfc();
    test_normal_pair_reference();
    test_helpers_accuracy();
    test_reproducible_stream();
    test_noise_add();
    test_secure();
    dp_noise *r = dp_noise_new_seeded(20240611, 1, 0);
    test_distribution(r, "reproducible");
    dp_noise_free(r);
    dp_noise *s = dp_noise_new_secure(1);
    CHECK_PTR(s);
    if (s) test_distribution(s, "secure");
    dp_noise_free(s);
    test_errors();
    CHECK(dp_live_tensors() == 0, "%lld tensors leaked", (long long)dp_live_tensors());
    return dp_test_finish("test_noise");
}
