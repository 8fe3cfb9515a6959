/*
 * The shape every fuzz harness shares: an input is a byte string decoded
 * into operations; each harness defines fuzz_one(), which runs one input
 * and returns with the heap back where it started (or aborts on a broken
 * invariant, which is what the fuzzer looks for). driver.c runs it under
 * AFL++ (persistent mode) or replays files and folders of inputs.
 */
#ifndef ZA_FUZZ_HARNESS_H
#define ZA_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "zonealloc.h"

/* Runs one input. */
void fuzz_one(const uint8_t *data, size_t size);
/* Once per process, before the first input (AFL: before the fork server). */
void fuzz_init(void);
extern const char *const fuzz_name;

struct fuzz_in {
	const uint8_t *p, *end;
};

static inline int fuzz_more(const struct fuzz_in *in)
{
	return in->p < in->end;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	return in->p < in->end ? *in->p++ : 0;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	uint16_t lo = fuzz_u8(in);
	return (uint16_t)(lo | (uint16_t)fuzz_u8(in) << 8);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	uint32_t lo = fuzz_u16(in);
	return lo | (uint32_t)fuzz_u16(in) << 16;
}

/* A broken invariant: say which and abort, so the fuzzer records a crash. */
#define FUZZ_ASSERT(cond, ...)                                                 \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s: %s:%d: %s: ", fuzz_name, __FILE__, \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			abort();                                               \
		}                                                              \
	} while (0)

#define FUZZ_CHECK_HEAP()                                                      \
	do {                                                                   \
		struct za_check_result cr_;                                    \
		FUZZ_ASSERT(za_buddy_check(&cr_) == 0, "zone %d pfn %lu order %d: %s", \
			    cr_.zone, (unsigned long)cr_.pfn, cr_.order, cr_.what); \
	} while (0)

/*
 * The checker walks every zone's page map and free lists, 16,384 entries
 * a zone: after every operation it took a third of a harness's time, and
 * under AFL++, even every 16 operations and at every input's end, a fifth
 * of the target's. So it runs:
 *  - replaying (make check, a crash being minimized or read): after every
 *    FUZZ_CHECK_EVERY-th operation and at the end of every input;
 *  - under AFL++: after every 64th operation and at the end of every
 *    FUZZ_CHECK_INPUTS-th input. Each input leaves the heap where it found
 *    it (the buddy harness proves it cheaply at every end, its zones wholly
 *    coalesced), so a corruption that survives an input is still caught
 *    within a few inputs, and the replay of the saved input, which checks
 *    everything, says where.
 */
#ifndef FUZZ_CHECK_EVERY
#ifdef ZA_FUZZ_AFL
#define FUZZ_CHECK_EVERY 64
#else
#define FUZZ_CHECK_EVERY 16
#endif
#endif
#ifndef FUZZ_CHECK_INPUTS
#ifdef ZA_FUZZ_AFL
#define FUZZ_CHECK_INPUTS 8
#else
#define FUZZ_CHECK_INPUTS 1
#endif
#endif
#define FUZZ_CHECK_SOME(ops)                                                   \
	do {                                                                   \
		if ((ops) % FUZZ_CHECK_EVERY == 0)                             \
			FUZZ_CHECK_HEAP();                                     \
	} while (0)

/* At the end of an input. */
#define FUZZ_CHECK_END()                                                       \
	do {                                                                   \
		static unsigned inputs_;                                       \
		if (++inputs_ % FUZZ_CHECK_INPUTS == 0)                        \
			FUZZ_CHECK_HEAP();                                     \
	} while (0)

/*
 * What an input may make the library touch. Clearing (ZA_F_ZERO, calloc)
 * and copying (realloc) go over every page of a block, and each page of
 * released or never used memory is a page fault (about 10 us on this
 * project's VMs): a few inputs with many megabyte blocks took most of a
 * campaign's time (replaying a queue: median 0.3-0.6 ms per input, mean
 * 1.4-1.6 ms, the slowest 28 ms). Each input gets FUZZ_TOUCH_BUDGET bytes;
 * a large size it cannot afford becomes a small one, chosen from the same
 * bytes, so every input still decodes to one run and the large paths stay
 * a mutation away.
 */
#ifndef FUZZ_TOUCH_BUDGET
#define FUZZ_TOUCH_BUDGET ((size_t)2 << 20)
#endif
static size_t fuzz_touch_left;

static inline void fuzz_budget_reset(void)
{
	fuzz_touch_left = FUZZ_TOUCH_BUDGET;
}

/* Whether `bytes` of touching fit what is left; if so they are spent. A
 * touch larger than the whole budget takes all of it: the largest blocks
 * (a cleared 4 MiB block, an 8 MiB calloc) stay reachable, once an input. */
static inline int fuzz_afford(size_t bytes)
{
	if (bytes > FUZZ_TOUCH_BUDGET)
		bytes = FUZZ_TOUCH_BUDGET;
	if (bytes > fuzz_touch_left)
		return 0;
	fuzz_touch_left -= bytes;
	return 1;
}

/* Fill patterns: every byte of an allocation is a function of its tag and
 * offset, so any overlap or stray write is seen at the next verify. */
static inline uint8_t fuzz_pattern(uint32_t tag, size_t off)
{
	return (uint8_t)((tag * 131u) ^ (off * 7u) ^ (off >> 8));
}

/*
 * Large allocations carry the pattern at both ends (64 bytes each) and at
 * the start of up to FUZZ_PAGES_SAMPLED of their pages, spread evenly, at
 * the same places in every block of a size. Every page written is a page
 * fault on memory not yet used or given back: writing each 4 KiB page of
 * multi-MiB blocks made those faults 70% of fuzz_buddy's time, and under
 * AFL++ samples that moved with the allocation's tag still made them two
 * thirds of it, each new place a page never touched before. The library
 * writes a large block whole (clearing, copying) or not at all, so fixed
 * places see a misplaced write as surely.
 */
#define FUZZ_PAGES_SAMPLED 4

/* The i-th sampled page offset of a `len`-byte block (len > 256). */
static inline size_t fuzz_sample_off(size_t len, uint32_t tag, unsigned i)
{
	(void)tag;
	size_t pages = len / 4096;
	if (pages <= FUZZ_PAGES_SAMPLED)
		return (size_t)i * 4096;
	size_t stride = pages / FUZZ_PAGES_SAMPLED;
	return ((size_t)i * stride + stride / 2) * 4096;
}

static inline unsigned fuzz_samples(size_t len)
{
	size_t pages = (len + 4095) / 4096;
	return pages < FUZZ_PAGES_SAMPLED ? (unsigned)pages : FUZZ_PAGES_SAMPLED;
}

/* The bytes fuzz_fill touches in a `len`-byte block, in whole pages. */
static inline size_t fuzz_fill_cost(size_t len)
{
	return len <= 256 ? len : (size_t)(fuzz_samples(len) + 2) * 4096;
}

static inline void fuzz_fill(uint8_t *p, size_t len, uint32_t tag)
{
	if (len <= 256) {
		for (size_t i = 0; i < len; i++)
			p[i] = fuzz_pattern(tag, i);
		return;
	}
	for (unsigned k = 0; k < fuzz_samples(len); k++) {
		size_t i = fuzz_sample_off(len, tag, k);
		p[i] = fuzz_pattern(tag, i);
	}
	for (size_t i = 0; i < 64; i++)
		p[i] = fuzz_pattern(tag, i);
	for (size_t i = len - 64; i < len; i++)
		p[i] = fuzz_pattern(tag, i);
}

/* Verifies what fuzz_fill wrote over `len`, in the first `keep` bytes. */
static inline int fuzz_verify_prefix(const uint8_t *p, size_t keep, size_t len, uint32_t tag)
{
	if (keep > len)
		keep = len;
	if (len <= 256) {
		for (size_t i = 0; i < keep; i++)
			if (p[i] != fuzz_pattern(tag, i))
				return 0;
		return 1;
	}
	for (unsigned k = 0; k < fuzz_samples(len); k++) {
		size_t i = fuzz_sample_off(len, tag, k);
		if (i < keep && p[i] != fuzz_pattern(tag, i))
			return 0;
	}
	for (size_t i = 0; i < 64 && i < keep; i++)
		if (p[i] != fuzz_pattern(tag, i))
			return 0;
	for (size_t i = len - 64; i < keep; i++)
		if (p[i] != fuzz_pattern(tag, i))
			return 0;
	return 1;
}

static inline int fuzz_verify(const uint8_t *p, size_t len, uint32_t tag)
{
	return fuzz_verify_prefix(p, len, len, tag);
}

/* Whether memory promised zero reads zero where fuzz_fill(p, len, tag)
 * will write: every 512th byte of the sampled pages, and both ends. */
static inline int fuzz_zero(const uint8_t *p, size_t len, uint32_t tag)
{
	if (len <= 4096) {
		for (size_t i = 0; i < len; i++)
			if (p[i])
				return 0;
		return 1;
	}
	for (unsigned k = 0; k < fuzz_samples(len); k++)
		for (size_t i = fuzz_sample_off(len, tag, k), e = i + 4096; i < e && i < len; i += 512)
			if (p[i])
				return 0;
	for (size_t i = len - 64; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

#endif
