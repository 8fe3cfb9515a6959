/*
 * Zone growth and release: a full zone makes the heap map another one;
 * when everything is freed, reclaim (za_reclaim, as malloc_trim; decay does
 * the same in the background) gives wholly free zones back to the OS
 * except one spare, and a zone slot given back is reused by the next growth.
 * Zones are never unmapped by the free itself, but decay may run at any
 * allocation, so between frees and za_reclaim only bounds are checked.
 */
#include "buddy/buddy.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

#define TOP (ZA_MAX_ORDER - 1)
#define TOP_BLOCKS (ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES)
#define MAX_BLOCKS (4 * TOP_BLOCKS)

static struct za_stats stats(void)
{
	struct za_stats s;
	za_stats_get(&s);
	return s;
}

static void *top_block(uint64_t tag)
{
	za_status st = ZA_EINVAL;
	void *p = za_alloc_pages(TOP, ZA_F_NONE, &st);
	CHECK_MSG(p && st == ZA_OK, "order %d: %p %s", TOP, p, za_status_str(st));
	if (p) {
		CHECK(aligned_to(p, ZA_PAGE_SIZE << TOP));
		CHECK(za_zone_of(p) != NULL);
		pattern_fill(p, ZA_MAX_BLOCK_PAGES, tag);
	}
	return p;
}

static void free_top(void *p, uint64_t tag)
{
	CHECK(pattern_verify(p, ZA_MAX_BLOCK_PAGES, tag) == ZA_MAX_BLOCK_PAGES);
	za_free_pages(p, TOP);
}

/* Fills `nzones` zones with top blocks (plus one page in the next zone),
 * frees them all in the given order, and checks the zone count after. */
static void fill_and_free(unsigned nzones, bool reverse)
{
	static void *blocks[MAX_BLOCKS];
	struct za_stats s0 = stats();
	unsigned n = nzones * TOP_BLOCKS;

	CHECK(s0.zones == 1 && s0.pages_free == s0.pages_total);
	for (unsigned i = 0; i < n; i++) {
		blocks[i] = top_block(i);
		if (!blocks[i])
			return;
		struct za_stats s = stats();
		/* A new zone appears only when the ones we have are full. */
		CHECK_MSG(s.zones == i / TOP_BLOCKS + 1, "block %u: %zu zones", i, s.zones);
		CHECK(s.free_blocks[TOP] == TOP_BLOCKS - 1 - i % TOP_BLOCKS);
		CHECK_HEAP();
	}
	struct za_stats full = stats();
	CHECK(full.zones == nzones && full.pages_free == 0);
	CHECK(full.zones_mapped_total == s0.zones_mapped_total + nzones - 1);

	/* The zones are full: one page more grows the heap. */
	za_status st = ZA_EINVAL;
	void *page = za_alloc_pages(0, ZA_F_NONE, &st);
	CHECK(page && st == ZA_OK);
	struct za_stats grown = stats();
	CHECK_MSG(grown.zones == nzones + 1, "%zu zones after growth", grown.zones);
	CHECK(grown.zones_mapped_total == full.zones_mapped_total + 1);
	CHECK(grown.slowpath_rounds > full.slowpath_rounds);
	for (unsigned i = 0; i < n && page; i++)
		CHECK(za_zone_of(page) != za_zone_of(blocks[i]));
	CHECK_HEAP();

	/* Distinct blocks, each inside one zone. */
	for (unsigned i = 0; i < n; i++)
		CHECK(za_zone_of(blocks[i]) ==
		      za_zone_of((char *)blocks[i] + (ZA_PAGE_SIZE << TOP) - 1));
	for (unsigned i = 1; i < n; i++)
		CHECK(blocks[i] != blocks[i - 1]);

	/* Free: zones empty one by one; reclaim unmaps all but one spare. */
	void *zone_base[MAX_BLOCKS / TOP_BLOCKS + 1];
	for (unsigned z = 0; z < nzones; z++)
		zone_base[z] = (void *)za_zone_of(blocks[z * TOP_BLOCKS])->region.base;
	for (unsigned i = 0; i < n; i++) {
		unsigned j = reverse ? n - 1 - i : i;
		free_top(blocks[j], j);
		CHECK_HEAP();
	}
	struct za_stats freed = stats();
	CHECK(freed.zones >= 1 && freed.zones <= nzones + 1);
	za_reclaim();
	CHECK_HEAP();
	struct za_stats mid = stats();
	/* The page still holds its zone; of the empty ones one stays. */
	CHECK_MSG(mid.zones == 2, "%zu zones with one page held", mid.zones);
	CHECK_MSG(mid.zones_unmapped_total == grown.zones_unmapped_total + nzones - 1,
		  "%zu zones unmapped, expected %zu", mid.zones_unmapped_total - grown.zones_unmapped_total,
		  (size_t)nzones - 1);

	za_free_pages(page, 0);
	za_drain_caches();
	CHECK_HEAP();
	za_reclaim();
	CHECK_HEAP();
	struct za_stats end = stats();
	CHECK_MSG(end.zones == 1, "%zu zones at the end", end.zones);
	CHECK(end.zones_unmapped_total == grown.zones_unmapped_total + nzones);
	CHECK(end.zones_unmapped_total > 0);
	CHECK(end.pages_free == end.pages_total && end.pages_total == ZA_ZONE_PAGES);
	CHECK(first_uncoalesced_zone() < 0);

	/* A released zone owns no address any more. */
	unsigned released = 0;
	for (unsigned z = 0; z < nzones; z++)
		released += za_zone_of(zone_base[z]) == NULL;
	CHECK(released >= nzones - 1);
}

int main(void)
{
	struct za_stats s = stats();
	CHECK(s.zones == 0 && s.zones_mapped_total == 0);

	/* The first allocation maps the first zone. */
	void *p = top_block(1);
	s = stats();
	CHECK(s.zones == 1 && s.zones_mapped_total == 1 && s.pages_total == ZA_ZONE_PAGES);
	CHECK(s.pages_free == ZA_ZONE_PAGES - ZA_MAX_BLOCK_PAGES);
	if (p)
		free_top(p, 1);
	za_reclaim();
	s = stats();
	/* The last zone stays as the spare. */
	CHECK(s.zones == 1 && s.zones_unmapped_total == 0);
	CHECK_HEAP();

	fill_and_free(1, false);
	fill_and_free(2, true);
	fill_and_free(3, false);

	/* The spare serves the next allocation: no new mapping. */
	s = stats();
	p = top_block(2);
	struct za_stats t = stats();
	CHECK(t.zones == 1 && t.zones_mapped_total == s.zones_mapped_total);
	if (p)
		free_top(p, 2);

	/* Slots of released zones are reused: never more slots than the
	 * most zones mapped at once. */
	CHECK_MSG(atomic_load(&za_nr_zones) <= 4, "%d zone slots", atomic_load(&za_nr_zones));
	CHECK_HEAP();
	t = stats();
	CHECK(t.zones == 1 && t.enomem[ZA_ENOMEM_OS] == 0 && t.enomem[ZA_ENOMEM_FRAGMENTED] == 0);
	return test_done("buddy_grow");
}
