/*
 * Helpers shared by the buddy-core tests: a seeded generator, page
 * patterns, and views of the zones that the public stats do not give
 * (tests link libza_core statically and may look at buddy internals).
 */
#ifndef ZA_TEST_BUDDY_TEST_H
#define ZA_TEST_BUDDY_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "buddy/buddy.h"
#include "tests/rng.h"

/*
 * A pattern is one 64-bit word at the start and one at the end of every
 * page, derived from a tag and the page index: enough to catch two live
 * blocks sharing a page, or a page that changed under its owner.
 */
static inline uint64_t pattern_word(uint64_t tag, size_t page, int end)
{
	return (tag * 0x100000001b3ULL) ^ ((uint64_t)page << 1) ^ (uint64_t)end ^
	       0xa5a5a5a5a5a5a5a5ULL;
}

static inline void pattern_fill(void *p, size_t npages, uint64_t tag)
{
	unsigned char *b = p;
	for (size_t i = 0; i < npages; i++) {
		uint64_t *first = (uint64_t *)(b + i * ZA_PAGE_SIZE);
		uint64_t *last = (uint64_t *)(b + (i + 1) * ZA_PAGE_SIZE) - 1;
		*first = pattern_word(tag, i, 0);
		*last = pattern_word(tag, i, 1);
	}
}

/* Returns the index of the first page whose pattern is wrong, or npages. */
static inline size_t pattern_verify(const void *p, size_t npages, uint64_t tag)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < npages; i++) {
		const uint64_t *first = (const uint64_t *)(b + i * ZA_PAGE_SIZE);
		const uint64_t *last = (const uint64_t *)(b + (i + 1) * ZA_PAGE_SIZE) - 1;
		if (*first != pattern_word(tag, i, 0) || *last != pattern_word(tag, i, 1))
			return i;
	}
	return npages;
}

/* True when [p, p + bytes) is all zero. */
static inline bool all_zero(const void *p, size_t bytes)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < bytes / sizeof *w; i++)
		if (w[i])
			return false;
	return true;
}

static inline bool aligned_to(const void *p, size_t align)
{
	return ((uintptr_t)p & (align - 1)) == 0;
}

/*
 * Full coalescence: every active zone holds nothing but free blocks of the
 * largest order (ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES of them). Returns the
 * index of the first zone that does not, or -1. Call after za_drain_caches.
 */
/* Free max-order blocks of a zone: listed ones and those still in the
 * wilderness (a new zone lists its blocks as it needs them). Lock held. */
static inline uint32_t top_blocks_free(const struct za_zone *zone)
{
	return zone->nr_free[ZA_MAX_ORDER - 1] +
	       (ZA_ZONE_PAGES - zone->wild_pfn) / ZA_MAX_BLOCK_PAGES;
}

static inline int first_uncoalesced_zone(void)
{
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		bool bad = false;
		pthread_mutex_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			for (unsigned k = 0; k < ZA_MAX_ORDER - 1; k++)
				bad |= zone->nr_free[k] != 0;
			bad |= top_blocks_free(zone) != ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES;
			bad |= atomic_load(&zone->pages_free) != ZA_ZONE_PAGES;
		}
		pthread_mutex_unlock(&zone->lock);
		if (bad)
			return i;
	}
	return -1;
}

/* Pages held by callers (allocated blocks and runs), from the stats. */
static inline size_t pages_in_use(void)
{
	struct za_stats s;
	za_stats_get(&s);
	return s.pages_total - s.pages_free - s.pages_cached;
}

#endif
