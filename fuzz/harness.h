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

/* Fill patterns: every byte of an allocation is a function of its tag and
 * offset, so any overlap or stray write is seen at the next verify. */
static inline uint8_t fuzz_pattern(uint32_t tag, size_t off)
{
	return (uint8_t)((tag * 131u) ^ (off * 7u) ^ (off >> 8));
}

/* Writes the pattern at the ends and every 4 KiB (all of it if small). */
static inline void fuzz_fill(uint8_t *p, size_t len, uint32_t tag)
{
	if (len <= 256) {
		for (size_t i = 0; i < len; i++)
			p[i] = fuzz_pattern(tag, i);
		return;
	}
	for (size_t i = 0; i < len; i += 4096)
		p[i] = fuzz_pattern(tag, i);
	for (size_t i = len - 64; i < len; i++)
		p[i] = fuzz_pattern(tag, i);
}

static inline int fuzz_verify(const uint8_t *p, size_t len, uint32_t tag)
{
	if (len <= 256) {
		for (size_t i = 0; i < len; i++)
			if (p[i] != fuzz_pattern(tag, i))
				return 0;
		return 1;
	}
	for (size_t i = 0; i < len; i += 4096)
		if (p[i] != fuzz_pattern(tag, i))
			return 0;
	for (size_t i = len - 64; i < len; i++)
		if (p[i] != fuzz_pattern(tag, i))
			return 0;
	return 1;
}

/* Verifies the first `keep` bytes of what fuzz_fill wrote over `len`. */
static inline int fuzz_verify_prefix(const uint8_t *p, size_t keep, size_t len, uint32_t tag)
{
	if (keep >= len)
		return fuzz_verify(p, len, tag);
	if (len <= 256) {
		for (size_t i = 0; i < keep; i++)
			if (p[i] != fuzz_pattern(tag, i))
				return 0;
		return 1;
	}
	for (size_t i = 0; i < keep; i += 4096)
		if (p[i] != fuzz_pattern(tag, i))
			return 0;
	for (size_t i = len - 64; i < keep; i++)
		if (p[i] != fuzz_pattern(tag, i))
			return 0;
	return 1;
}

#endif
