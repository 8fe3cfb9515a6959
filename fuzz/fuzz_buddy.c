/*
 * fuzz_buddy: the page allocator's free/merge path. Operations: allocate a
 * block (order, flags), free the i-th live block, allocate/free/resize
 * exact runs, reclaim, drain caches, set a limit. After every operation a
 * shadow model checks that live blocks don't overlap, lie in a zone, are
 * aligned and still hold their pattern, and a freed block must no longer be
 * allocated; the checker runs every FUZZ_CHECK_EVERY operations. At the end everything is freed and the zones must
 * be fully coalesced: only maximal blocks on the free lists.
 */
#include <string.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "fuzz/harness.h"

const char *const fuzz_name = "fuzz_buddy";

#define MAX_LIVE 64

struct live {
	uint8_t *p;
	size_t pages;
	int order;   /* -1: an exact run */
	uint32_t tag;
};

static struct live live[MAX_LIVE];
static int nlive;
static uint32_t next_tag;

void fuzz_init(void)
{
}

static void shadow_add(uint8_t *p, size_t pages, int order)
{
	uintptr_t a = (uintptr_t)p, e = a + pages * ZA_PAGE_SIZE;
	FUZZ_ASSERT(za_zone_of(p) && za_zone_of(p + pages * ZA_PAGE_SIZE - 1) == za_zone_of(p),
		    "block %p (%zu pages) not inside one zone", (void *)p, pages);
	if (order >= 0)
		FUZZ_ASSERT((a & ((ZA_PAGE_SIZE << order) - 1)) == 0, "order-%d block %p misaligned",
			    order, (void *)p);
	for (int i = 0; i < nlive; i++) {
		uintptr_t b = (uintptr_t)live[i].p, be = b + live[i].pages * ZA_PAGE_SIZE;
		FUZZ_ASSERT(e <= b || be <= a, "block %p+%zu overlaps live %p+%zu", (void *)p, pages,
			    (void *)live[i].p, live[i].pages);
	}
	live[nlive] = (struct live){ p, pages, order, ++next_tag };
	fuzz_fill(p, pages * ZA_PAGE_SIZE, next_tag);
	nlive++;
}

static void shadow_free(int i)
{
	struct live l = live[i];
	FUZZ_ASSERT(fuzz_verify(l.p, l.pages * ZA_PAGE_SIZE, l.tag), "block %p lost its contents",
		    (void *)l.p);
	if (l.order >= 0)
		za_free_pages(l.p, (unsigned)l.order);
	else
		za_free_pages_exact(l.p, l.pages);
	/* Freed memory is really returned: its head is no longer allocated. */
	struct za_zone *zone = za_zone_of(l.p);
	uint8_t state = za_page_at(zone, za_pfn_of(zone, l.p))->state;
	FUZZ_ASSERT(state != ZA_PG_BLOCK && state != ZA_PG_RUN, "freed block %p still allocated",
		    (void *)l.p);
	live[i] = live[--nlive];
}

/*
 * Sizes: a block of megabytes costs a page fault per page the harness or
 * the library touches (ZA_F_ZERO clears it all), tens of times an input's
 * other work; so large ones come from values with the top three bits set
 * (an eighth, easily found by mutation), small ones from the rest.
 */
static unsigned pick_order(uint8_t b)
{
	return (b & 0xe0) == 0xe0 ? b % (ZA_MAX_ORDER + 1) : b % 4;   /* ZA_MAX_ORDER: refused */
}

static size_t pick_pages(uint16_t v, size_t limit)
{
	return (v & 0xe000) == 0xe000 ? v % limit : v % 32;
}

static za_flags pick_flags(uint8_t b)
{
	static const za_flags choices[] = {
		0, ZA_F_ZERO, ZA_F_HIGH, ZA_F_ATOMIC, ZA_F_NORETRY, ZA_F_NOWARN,
		ZA_F_ZERO | ZA_F_HIGH, ZA_F_ATOMIC | ZA_F_NOFAIL /* invalid */,
	};
	return choices[b % (sizeof choices / sizeof choices[0])];
}

static void assert_coalesced(void)
{
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++) {
		struct za_zone *z = &za_zones[i];
		if (!atomic_load(&z->active))
			continue;
		for (unsigned k = 0; k + 1 < ZA_MAX_ORDER; k++)
			FUZZ_ASSERT(z->nr_free[k] == 0, "zone %d: %u free blocks of order %u left unmerged",
				    i, z->nr_free[k], k);
		FUZZ_ASSERT(z->nr_free[ZA_MAX_ORDER - 1] +
					    (ZA_ZONE_PAGES - z->wild_pfn) / ZA_MAX_BLOCK_PAGES ==
				    ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES,
			    "zone %d is not wholly free", i);
	}
}

void fuzz_one(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, data + size };
	int ops = 0;

	fuzz_budget_reset();

	while (fuzz_more(&in) && ops++ < 200) {
		uint8_t op = fuzz_u8(&in);
		za_status st = ZA_OK;
		switch (op % 9) {
		case 0:
		case 1: { /* allocate a block */
			uint8_t ob = fuzz_u8(&in);
			unsigned order = pick_order(ob);
			za_flags flags = pick_flags(fuzz_u8(&in));
			if (nlive == MAX_LIVE)
				break;
			/* A cleared block may be cleared in full; a filled one is
			 * touched on its sampled pages. */
			if (order < ZA_MAX_ORDER &&
			    !fuzz_afford(flags & ZA_F_ZERO ? ZA_PAGE_SIZE << order
							   : fuzz_fill_cost(ZA_PAGE_SIZE << order)))
				order = ob % 4;
			uint8_t *p = za_alloc_pages(order, flags, &st);
			/* Contradictory flags are refused before anything else. */
			if (flags == (ZA_F_ATOMIC | ZA_F_NOFAIL))
				FUZZ_ASSERT(!p && st == ZA_EINVAL, "invalid flags: %s", za_status_str(st));
			else if (order >= ZA_MAX_ORDER)
				FUZZ_ASSERT(!p && st == ZA_ENOMEM_TOO_LARGE, "order %u: %s", order,
					    za_status_str(st));
			if (p) {
				FUZZ_ASSERT(st == ZA_OK, "success with status %s", za_status_str(st));
				if (flags & ZA_F_ZERO)
					FUZZ_ASSERT(fuzz_zero(p, ZA_PAGE_SIZE << order, next_tag + 1),
						    "ZA_F_ZERO block %p not zero", (void *)p);
				shadow_add(p, (size_t)1 << order, (int)order);
			} else {
				FUZZ_ASSERT(st != ZA_OK, "NULL with status ok");
			}
			break;
		}
		case 2: /* free the i-th live block */
		case 3:
			if (nlive)
				shadow_free(fuzz_u8(&in) % nlive);
			break;
		case 4: { /* exact run */
			uint16_t v = fuzz_u16(&in);
			size_t n = pick_pages(v, 1100);
			if (nlive == MAX_LIVE)
				break;
			if (n <= ZA_MAX_BLOCK_PAGES && !fuzz_afford(fuzz_fill_cost(n * ZA_PAGE_SIZE)))
				n = v % 32;
			uint8_t *p = za_alloc_pages_exact(n, 0, &st);
			if (n == 0)
				FUZZ_ASSERT(!p && st == ZA_EINVAL, "0 pages: %s", za_status_str(st));
			else if (n > ZA_MAX_BLOCK_PAGES)
				FUZZ_ASSERT(!p && st == ZA_ENOMEM_TOO_LARGE, "%zu pages: %s", n,
					    za_status_str(st));
			if (p)
				shadow_add(p, n, -1);
			break;
		}
		case 5: { /* resize a run in place */
			if (!nlive)
				break;
			int i = fuzz_u8(&in) % nlive;
			uint16_t v = fuzz_u16(&in);
			uint32_t n = 1 + (uint32_t)pick_pages(v, ZA_MAX_BLOCK_PAGES);
			if (live[i].order >= 0)
				break;
			if (!fuzz_afford(fuzz_fill_cost((size_t)n * ZA_PAGE_SIZE)))
				n = 1 + v % 32;
			FUZZ_ASSERT(fuzz_verify(live[i].p, live[i].pages * ZA_PAGE_SIZE, live[i].tag),
				    "run %p lost its contents", (void *)live[i].p);
			uint8_t *p = live[i].p;
			if (za_buddy_resize_run(p, n, op & 0x10)) {
				live[i] = live[--nlive];
				shadow_add(p, n, -1);
			}
			break;
		}
		case 6: {
			/* Released pages fault when next touched (the most
			 * of this harness's time): the full reclaim (every
			 * free page, spare zones unmapped) on a thirty-second
			 * of the values, the direct reclaim a limit runs (up
			 * to 256 pages, largest blocks first) on a quarter,
			 * nothing on the rest. */
			uint8_t b = fuzz_u8(&in);
			if ((b & 31) == 0)
				za_reclaim();
			else if ((b & 3) == 1)
				za_policy_direct_reclaim(1 + (b >> 3) * 8u);
			break;
		}
		case 7:
			za_drain_caches();
			break;
		case 8: { /* limit: none, or 64..320 MiB */
			uint8_t b = fuzz_u8(&in);
			za_set_limit(b & 1 ? 0 : ((size_t)64 + (b >> 1) % 5 * 64) << 20);
			break;
		}
		}
		FUZZ_CHECK_SOME(ops);
	}

	while (nlive)
		shadow_free(nlive - 1);
	za_set_limit(0);
	za_drain_caches();
	FUZZ_CHECK_END();
	assert_coalesced();
}
