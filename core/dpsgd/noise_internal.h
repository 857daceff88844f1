/* noise_internal.h: what the samplers (sampler.c) need from the DP noise generator (noise.c)
 * beyond dp.h: reading the stream one 128-bit block at a time and moving its position. */
#ifndef DP_NOISE_INTERNAL_H
#define DP_NOISE_INTERNAL_H
#include <stdint.h>
#include "dp.h"

/* The four words of the block at the generator's position, which then advances by one. */
void dp_noise_next_block(dp_noise *noise, uint32_t w[4]);
uint64_t dp_noise_position(const dp_noise *noise);
void dp_noise_set_position(dp_noise *noise, uint64_t counter);
/* The uniform in (0, 1) that the 53-bit integer x stands for, (x + 1/2) 2^-53, as a double
 * rounded toward zero (exact below 1/2; x 2^-53 above), so never 0 nor 1. */
double dp_noise_uniform53(uint64_t x);

#endif
