/* chacha20.h: the ChaCha20 block function of RFC 8439 (section 2.3), the keystream behind the
 * secure DP noise generator (noise.c). Internal to the core. */
#ifndef DP_CHACHA20_H
#define DP_CHACHA20_H
#include <stdint.h>

/* The 16 output words of the block for key[8], block counter and nonce[3] (the RFC's state words
 * 4-11, 12 and 13-15). Serialised little-endian word by word, they are the 64 keystream bytes of
 * the RFC. */
void dp_chacha20_block(uint32_t out[16], const uint32_t key[8], uint32_t counter,
                       const uint32_t nonce[3]);

#endif
