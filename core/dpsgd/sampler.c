/* sampler.c: which examples form a DP-SGD batch: Poisson subsampling (each example independently
 * with probability q, the sampling the accountant assumes) and uniform permutations for
 * shuffled fixed-size batches, both drawn from a dp_noise generator in either mode. */
#include <math.h>
#include "internal.h"
#include "philox.h"
#include "noise_internal.h"

/* Reads the generator's blocks in order, two draws per block (53-bit uniforms or 64-bit words);
 * a half-used last block is not revisited by the next call. */
typedef struct {
    dp_noise *noise;
    uint32_t w[4];
    int next;   /* 0 or 1: half of w to use next; 2: read a new block */
} block_reader;

static const uint32_t *next_half(block_reader *r) {
    if (r->next == 2) {
        dp_noise_next_block(r->noise, r->w);
        r->next = 0;
    }
    return r->w + 2 * r->next++;
}

static uint64_t next_bits53(block_reader *r) {
    const uint32_t *h = next_half(r);
    return dp_philox_bits53(h[0], h[1]);
}

static uint64_t next_u64(block_reader *r) {
    const uint32_t *h = next_half(r);
    return (uint64_t)h[0] << 32 | h[1];
}

/* Uniform in [0, bound) without modulo bias: draws below 2^64 mod bound are rejected, so the
 * accepted range holds a whole number of copies of [0, bound). */
static uint64_t next_below(block_reader *r, uint64_t bound) {
    uint64_t reject_below = (0 - bound) % bound;
    uint64_t x;
    do x = next_u64(r);
    while (x < reject_below);
    return x % bound;
}

/* The gaps between chosen indices are geometric: P(gap >= k) = (1 - q)^k = P(u <= (1 - q)^k), so
 * gap = floor(log u / log(1 - q)) and the work is O(q n) rather than O(n). log u is taken of the
 * exact 53-bit uniform (x + 1/2) 2^-53 with philox.h's fixed-operation log. q = 0 and q = 1
 * draw nothing. */
int dp_poisson_sample(dp_noise *noise, int64_t n, double q, int64_t *out, int64_t capacity,
                      int64_t *count) {
    if (count) *count = 0;
    if (!noise) return dp_fail(DP_EARG, "poisson_sample: noise is NULL");
    if (!count) return dp_fail(DP_EARG, "poisson_sample: count is NULL");
    if (n < 0) return dp_fail(DP_EARG, "poisson_sample: n must be >= 0, got %lld", (long long)n);
    if (!(q >= 0 && q <= 1))
        return dp_fail(DP_EARG, "poisson_sample: q must be in [0, 1], got %g", q);
    if (capacity < 0)
        return dp_fail(DP_EARG, "poisson_sample: capacity must be >= 0, got %lld",
                       (long long)capacity);
    if (capacity > 0 && !out)
        return dp_fail(DP_EARG, "poisson_sample: out is NULL but capacity is %lld",
                       (long long)capacity);
    if (n == 0 || q == 0) return 0;

    uint64_t start = dp_noise_position(noise);
    int64_t chosen = 0;
    if (q == 1) {
        for (; chosen < n; chosen++)
            if (chosen < capacity) out[chosen] = chosen;
    } else {
        double log_keep = log1p(-q);   /* log(1 - q) < 0 */
        block_reader r = {noise, {0}, 2};
        int64_t last = -1;             /* the last index chosen */
        for (;;) {
            double gap = floor(dp_philox_log_u53(next_bits53(&r)) / log_keep);
            if (!(gap < (double)(n - 1 - last))) break;   /* the next index would be >= n */
            last += 1 + (int64_t)gap;
            if (chosen < capacity) out[chosen] = last;
            chosen++;
        }
    }
    *count = chosen;
    if (chosen > capacity) {
        dp_noise_set_position(noise, start);
        return dp_fail(DP_EARG,
                       "poisson_sample: %lld of %lld examples were chosen but capacity is %lld; "
                       "the generator was left where it was, retry with capacity >= %lld",
                       (long long)chosen, (long long)n, (long long)capacity, (long long)chosen);
    }
    return 0;
}

/* Fisher-Yates (Durstenfeld's in-place form): position i, from the end, takes a uniform pick
 * among positions 0..i. */
int dp_shuffle(dp_noise *noise, int64_t *out, int64_t n) {
    if (!noise) return dp_fail(DP_EARG, "shuffle: noise is NULL");
    if (n < 0) return dp_fail(DP_EARG, "shuffle: n must be >= 0, got %lld", (long long)n);
    if (n > 0 && !out) return dp_fail(DP_EARG, "shuffle: out is NULL but n is %lld", (long long)n);
    for (int64_t i = 0; i < n; i++) out[i] = i;
    block_reader r = {noise, {0}, 2};
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)next_below(&r, (uint64_t)i + 1);
        int64_t tmp = out[i];
        out[i] = out[j];
        out[j] = tmp;
    }
    return 0;
}
