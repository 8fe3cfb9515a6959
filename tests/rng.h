/*
 * The tests' random numbers: xorshift64*, the same sequence for a given
 * seed on every platform, so a failing seed can be replayed.
 */
#ifndef ZA_TEST_RNG_H
#define ZA_TEST_RNG_H

#include <stdint.h>

struct test_rng {
	uint64_t s;
};

static inline void rng_seed(struct test_rng *r, uint64_t seed)
{
	r->s = seed * 0x9e3779b97f4a7c15ULL + 0x2545f4914f6cdd1dULL;
	if (!r->s)
		r->s = 1;
}

static inline uint64_t rng_next(struct test_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n), for any n > 0 (byte counts included). */
static inline uint64_t rng_below(struct test_rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

#endif
