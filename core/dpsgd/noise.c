/* noise.c: the DP noise generator (dp_noise of dp.h): Gaussian noise and uniforms for DP-SGD from
 * a reproducible Philox4x32-10 stream or a secure ChaCha20 stream keyed by the OS CSPRNG.
 *
 * Both modes read their stream in 128-bit blocks and count the position (dp_noise_state's
 * counter) in those blocks; the four 32-bit words of a block become two 53-bit uniforms or one
 * pair of normals the same way in either mode (philox.h: dp_philox_box_muller53), so n normals
 * or n uniforms use ceil(n/2) blocks whichever the mode.
 *  - reproducible: block c is dp_philox4x32(seed, ctr_lo = c, ctr_hi = stream). Gaussian noise is
 *    added on the tensor's own device by the backend kernel noise_add_philox, bit-identical on
 *    every backend.
 *  - secure: block c is words 4(c % 4) .. 4(c % 4) + 3 of the ChaCha20 block B = c / 4 (RFC 8439)
 *    under a 256-bit key from getrandom(), with state word 12 = the low 32 bits of B and the
 *    nonce words (13, 14, 15) = (high 32 bits of B, low and high 32 bits of stream): the RFC's
 *    layout carrying Bernstein's original 64-bit block counter, so one key serves 2^64 streams
 *    of 2^64 blocks without reusing keystream. Draws are made on the host; a CUDA tensor is
 *    copied to the host, noised there and copied back (exact, but two transfers per call).
 * The key and the cached keystream never leave this file and are wiped when the generator is
 * freed. */
#define _DEFAULT_SOURCE   /* explicit_bzero */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "internal.h"
#include "philox.h"
#include "chacha20.h"
#include "noise_internal.h"

struct dp_noise {
    int32_t mode;            /* dp_noise_mode */
    uint64_t seed;           /* reproducible mode only */
    uint64_t stream;
    uint64_t counter;        /* blocks consumed */
    uint32_t key[8];         /* secure mode only */
    int32_t cached;          /* cache holds ChaCha20 block cache_index (for sequential reads) */
    uint64_t cache_index;
    uint32_t cache[16];
};

/* Below this many blocks a draw is not worth waking the thread team. */
enum { NOISE_PARALLEL_MIN = 1 << 13 };

static void chacha_block(const dp_noise *noise, uint64_t index, uint32_t out[16]) {
    uint32_t nonce[3] = {(uint32_t)(index >> 32), (uint32_t)noise->stream,
                         (uint32_t)(noise->stream >> 32)};
    dp_chacha20_block(out, noise->key, (uint32_t)index, nonce);
}

/* Work on block j (0-based from the position) of a draw; it may write only what j owns. */
typedef void (*block_fn)(void *ctx, int64_t j, const uint32_t w[4]);

/* fn on blocks 0 .. nb-1 from the position, in parallel; the position is not advanced here.
 * Secure mode walks whole ChaCha20 blocks (four of ours each) so none is computed twice. */
static void for_each_block(const dp_noise *noise, int64_t nb, block_fn fn, void *ctx) {
    uint64_t c = noise->counter;
    if (noise->mode == DP_NOISE_REPRODUCIBLE) {
        uint64_t seed = noise->seed, stream = noise->stream;
#pragma omp parallel for schedule(static) if (nb > NOISE_PARALLEL_MIN)
        for (int64_t j = 0; j < nb; j++) {
            uint32_t w[4];
            dp_philox_block(w, seed, c + (uint64_t)j, stream);
            fn(ctx, j, w);
        }
        return;
    }
    int64_t skip = (int64_t)(c & 3), groups = (skip + nb + 3) / 4;
#pragma omp parallel for schedule(static) if (nb > NOISE_PARALLEL_MIN / 4)
    for (int64_t g = 0; g < groups; g++) {
        uint32_t w[16];
        chacha_block(noise, (c >> 2) + (uint64_t)g, w);
        for (int q = 0; q < 4; q++) {
            int64_t j = 4 * g + q - skip;
            if (j >= 0 && j < nb) fn(ctx, j, w + 4 * q);
        }
    }
}

/* ---------------------------------------------------------------- construction and state */

dp_noise *dp_noise_new_seeded(uint64_t seed, uint64_t stream, uint64_t counter) {
    dp_noise *noise = calloc(1, sizeof *noise);
    if (!noise) return dp_fail_null(DP_ENOMEM, "noise_new_seeded: out of memory");
    noise->mode = DP_NOISE_REPRODUCIBLE;
    noise->seed = seed;
    noise->stream = stream;
    noise->counter = counter;
    return noise;
}

/* len bytes from the kernel's CSPRNG; getrandom may be interrupted or, in principle, return
 * fewer bytes than asked. */
static int os_random(uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = getrandom(buf + got, len - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return dp_fail(DP_EUNSUPPORTED,
                           "noise_new_secure: cannot key the generator: getrandom() failed (%s); "
                           "secure noise needs the operating system's CSPRNG (Linux >= 3.17)",
                           strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

dp_noise *dp_noise_new_secure(uint64_t stream) {
    dp_noise *noise = calloc(1, sizeof *noise);
    if (!noise) return dp_fail_null(DP_ENOMEM, "noise_new_secure: out of memory");
    uint8_t bytes[32];
    if (os_random(bytes, sizeof bytes)) {
        explicit_bzero(bytes, sizeof bytes);
        free(noise);
        return NULL;
    }
    for (int i = 0; i < 8; i++)   /* RFC 8439: the key as eight little-endian words */
        noise->key[i] = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                        (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
    explicit_bzero(bytes, sizeof bytes);
    noise->mode = DP_NOISE_SECURE;
    noise->stream = stream;
    return noise;
}

void dp_noise_free(dp_noise *noise) {
    if (!noise) return;
    explicit_bzero(noise, sizeof *noise);   /* key and cached keystream */
    free(noise);
}

int32_t dp_noise_mode_of(const dp_noise *noise) {
    if (!noise) return dp_fail(DP_EARG, "noise_mode_of: noise is NULL");
    return noise->mode;
}

int dp_noise_state(const dp_noise *noise, uint64_t *seed, uint64_t *stream, uint64_t *counter) {
    if (!noise) return dp_fail(DP_EARG, "noise_state: noise is NULL");
    if (seed) *seed = noise->mode == DP_NOISE_SECURE ? 0 : noise->seed;
    if (stream) *stream = noise->stream;
    if (counter) *counter = noise->counter;
    return 0;
}

/* ---------------------------------------------------------------- sequential reads (samplers) */

void dp_noise_next_block(dp_noise *noise, uint32_t w[4]) {
    uint64_t c = noise->counter++;
    if (noise->mode == DP_NOISE_REPRODUCIBLE) {
        dp_philox_block(w, noise->seed, c, noise->stream);
        return;
    }
    if (!noise->cached || noise->cache_index != c >> 2) {
        chacha_block(noise, c >> 2, noise->cache);
        noise->cache_index = c >> 2;
        noise->cached = 1;
    }
    memcpy(w, noise->cache + 4 * (c & 3), 4 * sizeof *w);
}

uint64_t dp_noise_position(const dp_noise *noise) { return noise->counter; }

void dp_noise_set_position(dp_noise *noise, uint64_t counter) { noise->counter = counter; }

double dp_noise_uniform53(uint64_t x) {
    /* Below 2^52, x + 1/2 is exact; above, (x + 1/2) 2^-53 falls between two doubles and is
     * rounded down, so the largest value is 1 - 2^-53 rather than 1. */
    return x < (UINT64_C(1) << 52) ? ((double)x + 0.5) * 0x1p-53 : (double)x * 0x1p-53;
}

/* ---------------------------------------------------------------- draws */

typedef struct {
    double *out;
    int64_t n;
} draw_ctx;

static void normals_block(void *ctx, int64_t j, const uint32_t w[4]) {
    const draw_ctx *d = ctx;
    double z[2];
    dp_philox_box_muller53(z, w);
    d->out[2 * j] = z[0];
    if (2 * j + 1 < d->n) d->out[2 * j + 1] = z[1];
}

static void uniforms_block(void *ctx, int64_t j, const uint32_t w[4]) {
    const draw_ctx *d = ctx;
    d->out[2 * j] = dp_noise_uniform53(dp_philox_bits53(w[0], w[1]));
    if (2 * j + 1 < d->n) d->out[2 * j + 1] = dp_noise_uniform53(dp_philox_bits53(w[2], w[3]));
}

typedef struct {
    void *data;
    dp_dtype dtype;
    int64_t n;
    double std;
} add_ctx;

/* Same arithmetic as dp_philox_noise_add_block: one fma in double, rounded once. */
static void add_block(void *ctx, int64_t j, const uint32_t w[4]) {
    const add_ctx *a = ctx;
    double z[2];
    dp_philox_box_muller53(z, w);
    for (int k = 0; k < 2 && 2 * j + k < a->n; k++) {
        int64_t i = 2 * j + k;
        if (a->dtype == DP_F64)
            ((double *)a->data)[i] = fma(a->std, z[k], ((double *)a->data)[i]);
        else
            ((float *)a->data)[i] = (float)fma(a->std, z[k], (double)((float *)a->data)[i]);
    }
}

/* n doubles into out, two per block (fn turns a block into its pair), advancing the counter. */
static int draw_pairs(const char *op, dp_noise *noise, double *out, int64_t n, block_fn fn) {
    if (!noise) return dp_fail(DP_EARG, "%s: noise is NULL", op);
    if (n < 0) return dp_fail(DP_EARG, "%s: n must be >= 0, got %lld", op, (long long)n);
    if (n > 0 && !out) return dp_fail(DP_EARG, "%s: out is NULL but n = %lld", op, (long long)n);
    int64_t nb = (n + 1) / 2;
    draw_ctx d = {out, n};
    for_each_block(noise, nb, fn, &d);
    noise->counter += (uint64_t)nb;
    return 0;
}

int dp_noise_normals(dp_noise *noise, double *out, int64_t n) {
    return draw_pairs("noise_normals", noise, out, n, normals_block);
}

int dp_noise_uniforms(dp_noise *noise, double *out, int64_t n) {
    return draw_pairs("noise_uniforms", noise, out, n, uniforms_block);
}

/* Secure noise into a tensor on another device: through a host copy of its elements. */
static int secure_add_device(dp_noise *noise, dp_tensor *dst, double std, int64_t n) {
    const dp_ops *ops = dp_ops_for(dst->device);
    if (!ops) return DP_EDEVICE;
    size_t bytes = (size_t)n * (size_t)dp_dtype_size(dst->dtype);
    void *host = malloc(bytes);
    if (!host)
        return dp_fail(DP_ENOMEM, "noise_add_: out of memory for a %zu-byte host copy of %s", bytes,
                       dp_tensor_desc(dst));
    int rc = ops->memcpy_d2h(host, dst->data, bytes);
    if (!rc) {
        add_ctx a = {host, dst->dtype, n, std};
        for_each_block(noise, (n + 1) / 2, add_block, &a);
        rc = ops->memcpy_h2d(dst->data, host, bytes);
    }
    free(host);
    return rc;
}

int dp_noise_add_(dp_noise *noise, dp_tensor *dst, double std) {
    if (!noise) return dp_fail(DP_EARG, "noise_add_: noise is NULL");
    if (!dst) return dp_fail(DP_EARG, "noise_add_: dst is NULL");
    if (dst->dtype != DP_F32 && dst->dtype != DP_F64)
        return dp_fail(DP_EDTYPE, "noise_add_: dst must be f32 or f64, got %s",
                       dp_tensor_desc(dst));
    if (!dp_tensor_is_contiguous(dst))
        return dp_fail(DP_EARG, "noise_add_: dst must be contiguous, got a strided %s",
                       dp_tensor_desc(dst));
    if (!(std >= 0) || !isfinite(std))
        return dp_fail(DP_EARG, "noise_add_: std must be finite and >= 0, got %g", std);
    int64_t n = dp_tensor_numel(dst);
    if (n == 0) return 0;
    int64_t nb = (n + 1) / 2;
    int rc = 0;
    dp_tensor_bump_version(dst);
    if (noise->mode == DP_NOISE_REPRODUCIBLE) {
        const dp_ops *ops = dp_ops_for(dst->device);
        if (!ops) return DP_EDEVICE;
        if (!ops->noise_add_philox)
            return dp_fail(DP_EUNSUPPORTED,
                           "noise_add_: the %s backend has no noise_add_philox kernel, so "
                           "reproducible noise cannot be added to %s (use a CPU tensor)",
                           ops->name, dp_tensor_desc(dst));
        rc = ops->noise_add_philox(dst, std, noise->seed, noise->stream, noise->counter);
    } else if (dst->device == DP_CPU) {
        add_ctx a = {dst->data, dst->dtype, n, std};
        for_each_block(noise, nb, add_block, &a);
    } else {
        rc = secure_add_device(noise, dst, std, n);
    }
    if (rc) return rc;
    noise->counter += (uint64_t)nb;
    return 0;
}
