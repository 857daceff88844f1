/* rng.c: the counter-based generator's state and the raw Philox4x32-10 block. The mapping from
 * (seed, counter) to tensor elements is documented and implemented in philox.h. */
#include "internal.h"
#include "philox.h"

void dp_rng_init(dp_rng *rng, uint64_t seed) {
    if (!rng) return;
    rng->seed = seed;
    rng->counter = 0;
}

void dp_philox4x32(uint32_t out[4], uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi) {
    dp_philox_block(out, seed, ctr_lo, ctr_hi);
}
