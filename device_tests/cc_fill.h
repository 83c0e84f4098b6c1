/* SPDX-License-Identifier: GPL-2.0 */
/* Deterministic file contents for the cleancache test programs. */
#ifndef CC_FILL_H
#define CC_FILL_H

#include <stddef.h>
#include <stdint.h>

/* xorshift32 bytes from @seed: the same seed always gives the same bytes. */
static inline void fill(unsigned char *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = x >> 24;
	}
}

#endif /* CC_FILL_H */
