/*
 * The page map costs memory by the pages of it a program touches, not by
 * its size (1 MiB per 64 MiB zone, mapped lazily). A program that uses
 * many sizes has a first slab in each class, 64-128 KiB of address space
 * apiece, spread over the zone; each slab writes the entry of its head
 * page. The map is stored in planes (buddy.h: za_page_at), so the heads,
 * all at multiples of 16 pages, share pages of map: 64 of them to a page
 * of map, where the plain layout put 4 (mimalloc-bench's rptest touched
 * 916 KiB of map, espresso 200 KiB).
 *
 * Checks, with mincore(2): an object in every size class puts slab heads
 * over several MiB of zone, and the pages of map resident stay within a
 * few, far below one per 256 KiB of slab span (what the plain layout
 * touched); the objects read back, and the heap checks clean.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "slab/slab.h"
#include "tests/malloc_test.h"

#define PG ((uintptr_t)ZA_PAGE_SIZE)

static size_t resident(const void *start, size_t bytes)
{
	uintptr_t lo = (uintptr_t)start & ~(PG - 1);
	uintptr_t hi = ((uintptr_t)start + bytes + PG - 1) & ~(PG - 1);
	static unsigned char vec[1024];
	size_t n = (hi - lo) / PG;
	if (n > sizeof vec || mincore((void *)lo, hi - lo, vec) != 0)
		return SIZE_MAX;
	size_t r = 0;
	for (size_t i = 0; i < n; i++)
		r += vec[i] & 1;
	return r;
}

int main(void)
{
	static void *obj[ZA_NCLASSES];
	for (unsigned c = 0; c < ZA_NCLASSES; c++) {
		size_t size = za_classes[c].size;
		obj[c] = F(malloc)(opaque_size(size));
		CHECK(obj[c] != NULL);
		memset(obj[c], (int)(c + 1), size);
	}
	struct za_zone *zone = za_zone_of(obj[0]);
	CHECK(zone != NULL);
	/* The span of the slabs' heads, in the 256 KiB chunks of zone whose
	 * entries shared a page of map in the plain layout. */
	uint32_t lo = UINT32_MAX, hi = 0;
	unsigned slabs = 0, chunks = 0;
	static bool chunk_seen[ZA_ZONE_PAGES / 64];
	for (unsigned c = 0; c < ZA_NCLASSES; c++) {
		if (za_zone_of(obj[c]) != zone)
			continue;
		uint32_t head = 0;
		if (!za_slab_head_of(zone, za_pfn_of(zone, obj[c]), &head)) {
			CHECK_MSG(false, "class %u: the object at %p is in no slab", c, obj[c]);
			continue;
		}
		slabs++;
		lo = head < lo ? head : lo;
		hi = head > hi ? head : hi;
		if (!chunk_seen[head / 64]) {
			chunk_seen[head / 64] = true;
			chunks++;
		}
	}
	size_t map = resident(zone->pages, (size_t)ZA_ZONE_PAGES * sizeof(struct za_page));
	printf("  %u slabs with heads over %u KiB of zone (%u chunks of 256 KiB): %zu pages of page "
	       "map resident\n", slabs, (unsigned)((hi - lo + 1) * (PG >> 10)), chunks, map);
	CHECK_MSG(slabs >= 32 && chunks >= 16, "%u slabs over %u chunks: too few to tell", slabs,
		  chunks);
	/* Plane 0's pages for the span (4 MiB each), the first plane page of
	 * whatever else the heap wrote, and one to spare. */
	size_t bound = (hi - lo) / 1024 + 1 + 2;
	CHECK_MSG(map != SIZE_MAX && map <= bound,
		  "%zu pages of page map resident for %u slabs (at most %zu expected)", map, slabs,
		  bound);

	for (unsigned c = 0; c < ZA_NCLASSES; c++) {
		const unsigned char *b = obj[c];
		size_t j = 0;
		while (j < za_classes[c].size && b[j] == (unsigned char)(c + 1))
			j++;
		CHECK_MSG(j == za_classes[c].size, "class %u object changed at byte %zu", c, j);
		F(free)(obj[c]);
	}
	struct za_check_result res;
	CHECK_MSG(za_buddy_check(&res) == 0, "heap check: %s", res.what);
	return test_done("page_map");
}
