/* chacha20.c: the ChaCha20 block function, written from RFC 8439 sections 2.1-2.3: a 4x4 state of
 * constants, key, counter and nonce, twenty rounds (ten column + diagonal pairs) of quarter
 * rounds, and the initial state added back. */
#include "chacha20.h"

static inline uint32_t rotl32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* RFC 8439 section 2.1: a += b; d ^= a; d <<<= 16; c += d; b ^= c; b <<<= 12; and so on. */
static inline void quarter_round(uint32_t *x, int a, int b, int c, int d) {
    x[a] += x[b]; x[d] = rotl32(x[d] ^ x[a], 16);
    x[c] += x[d]; x[b] = rotl32(x[b] ^ x[c], 12);
    x[a] += x[b]; x[d] = rotl32(x[d] ^ x[a], 8);
    x[c] += x[d]; x[b] = rotl32(x[b] ^ x[c], 7);
}

void dp_chacha20_block(uint32_t out[16], const uint32_t key[8], uint32_t counter,
                       const uint32_t nonce[3]) {
    /* "expand 32-byte k" as four little-endian words */
    uint32_t state[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};
    for (int i = 0; i < 8; i++) state[4 + i] = key[i];
    state[12] = counter;
    for (int i = 0; i < 3; i++) state[13 + i] = nonce[i];
    uint32_t x[16];
    for (int i = 0; i < 16; i++) x[i] = state[i];
    for (int round = 0; round < 10; round++) {
        quarter_round(x, 0, 4, 8, 12);   /* columns */
        quarter_round(x, 1, 5, 9, 13);
        quarter_round(x, 2, 6, 10, 14);
        quarter_round(x, 3, 7, 11, 15);
        quarter_round(x, 0, 5, 10, 15);  /* diagonals */
        quarter_round(x, 1, 6, 11, 12);
        quarter_round(x, 2, 7, 8, 13);
        quarter_round(x, 3, 4, 9, 14);
    }
    for (int i = 0; i < 16; i++) out[i] = x[i] + state[i];
}
