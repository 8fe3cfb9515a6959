/*
 * Random alloc/free of blocks of random orders and of exact runs, from
 * fixed seeds, with za_buddy_check after every operation and a shadow
 * bitmap of live pages proving that no two live blocks overlap. At the end
 * everything is freed in random order and the zones must coalesce fully.
 */
#include "buddy/buddy.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

#define TOP (ZA_MAX_ORDER - 1)
#define OPS_PER_SEED 3000
#define MAX_LIVE 512
#define LIVE_PAGE_CAP (ZA_ZONE_PAGES * 5 / 2)   /* grows into a third zone */

struct live {
	void *p;
	uint32_t npages;
	uint8_t order;
	bool exact;
	uint64_t tag;
};

static struct live live[MAX_LIVE];
static unsigned nlive;
static size_t live_pages;

/* The shadow: one bit per page of every zone slot, set while a caller
 * holds the page. A slot's base is remembered so that reuse of a slot by
 * a new zone is seen (its bitmap must be clear by then). */
static uint64_t shadow[ZA_MAX_ZONES][ZA_ZONE_PAGES / 64];
static uintptr_t shadow_base[ZA_MAX_ZONES];

/* Sets (or clears) the shadow bits of [p, p + npages pages); returns the
 * number of pages that were already in the wanted state (0 when fine). */
static uint32_t shadow_mark(void *p, uint32_t npages, bool set)
{
	struct za_zone *zone = za_zone_of(p);
	uint32_t pfn = za_pfn_of(zone, p), wrong = 0;
	uint64_t *bits = shadow[zone->index];

	if (shadow_base[zone->index] != zone->region.base) {
		for (uint32_t i = 0; i < ZA_ZONE_PAGES / 64; i++)
			wrong += bits[i] != 0;
		shadow_base[zone->index] = zone->region.base;
	}
	for (uint32_t i = pfn; i < pfn + npages; i++) {
		uint64_t bit = 1ULL << (i % 64);
		wrong += !!(bits[i / 64] & bit) == set;
		bits[i / 64] ^= (bits[i / 64] & bit) ^ (set ? bit : 0);
	}
	return wrong;
}

static unsigned random_order(struct test_rng *r)
{
	/* Mostly small orders (the caches' territory), sometimes big ones. */
	uint32_t x = rng_below(r, 100);
	if (x < 55)
		return rng_below(r, ZA_PCP_ORDERS);
	if (x < 90)
		return ZA_PCP_ORDERS + rng_below(r, 4);
	return ZA_PCP_ORDERS + 4 + rng_below(r, ZA_MAX_ORDER - ZA_PCP_ORDERS - 4);
}

static void do_alloc(struct test_rng *r, uint64_t tag)
{
	struct live b = { .tag = tag };
	za_flags flags = rng_below(r, 8) == 0 ? ZA_F_ZERO : ZA_F_NONE;
	za_status st = ZA_EINVAL;

	b.exact = rng_below(r, 3) == 0;
	if (b.exact) {
		b.npages = 1 + rng_below(r, rng_below(r, 4) ? 64 : ZA_MAX_BLOCK_PAGES);
		b.p = za_alloc_pages_exact(b.npages, flags, &st);
	} else {
		b.order = (uint8_t)random_order(r);
		b.npages = 1u << b.order;
		b.p = za_alloc_pages(b.order, flags, &st);
	}
	CHECK_MSG(b.p && st == ZA_OK, "%s %u pages: %s", b.exact ? "run" : "block", b.npages,
		  za_status_str(st));
	if (!b.p)
		return;

	struct za_zone *zone = za_zone_of(b.p);
	size_t bytes = (size_t)b.npages * ZA_PAGE_SIZE;
	CHECK_MSG(zone && zone == za_zone_of((char *)b.p + bytes - 1),
		  "block %p of %u pages is not inside one zone", b.p, b.npages);
	if (!zone)
		return;
	CHECK_MSG(aligned_to(b.p, b.exact ? ZA_PAGE_SIZE : bytes), "%p (%u pages) misaligned",
		  b.p, b.npages);
	const struct za_page *head = za_page_at(zone, za_pfn_of(zone, b.p));
	if (b.exact)
		CHECK(head->state == ZA_PG_RUN && head->count == b.npages);
	else
		CHECK(head->state == ZA_PG_BLOCK && head->order == b.order);
	uint32_t clash = shadow_mark(b.p, b.npages, true);
	CHECK_MSG(clash == 0, "%p (%u pages) overlaps %u live pages", b.p, b.npages, clash);
	if (flags & ZA_F_ZERO)
		CHECK_MSG(all_zero(b.p, bytes), "ZA_F_ZERO block %p (%u pages) not zero", b.p,
			  b.npages);
	pattern_fill(b.p, b.npages, b.tag);
	live[nlive++] = b;
	live_pages += b.npages;
}

static void do_free(unsigned i)
{
	struct live b = live[i];
	live[i] = live[--nlive];
	live_pages -= b.npages;

	size_t bad = pattern_verify(b.p, b.npages, b.tag);
	CHECK_MSG(bad == b.npages, "%p: page %zu of %u changed while allocated", b.p, bad,
		  b.npages);
	uint32_t gone = shadow_mark(b.p, b.npages, false);
	CHECK_MSG(gone == 0, "%p: %u pages were not live", b.p, gone);
	if (b.exact)
		za_free_pages_exact(b.p, b.npages);
	else
		za_free_pages(b.p, b.order);
}

static void verify_all_live(void)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < nlive; i++)
		bad += pattern_verify(live[i].p, live[i].npages, live[i].tag) != live[i].npages;
	CHECK_MSG(bad == 0, "%u live blocks changed", bad);
}

static void run_seed(uint64_t seed)
{
	struct test_rng r;
	rng_seed(&r, seed);
	uint64_t tag = seed << 32;
	unsigned failed_before = (unsigned)za_test_failures;

	for (unsigned op = 0; op < OPS_PER_SEED; op++) {
		bool alloc;
		if (nlive == 0)
			alloc = true;
		else if (nlive == MAX_LIVE || live_pages > LIVE_PAGE_CAP)
			alloc = false;
		else
			alloc = rng_below(&r, 100) < (nlive < 64 ? 65u : 50u);

		if (alloc)
			do_alloc(&r, ++tag);
		else
			do_free(rng_below(&r, nlive));
		if (rng_below(&r, 64) == 0)
			za_drain_caches();
		CHECK_HEAP();
		if (op % 256 == 255)
			verify_all_live();
		/* One report per seed is enough to debug from. */
		if ((unsigned)za_test_failures > failed_before + 20) {
			fprintf(stderr, "seed %llu: giving up at op %u\n", (unsigned long long)seed,
				op);
			break;
		}
	}
	verify_all_live();

	/* Free the rest in random order (Fisher-Yates), then coalesce. */
	for (unsigned i = nlive; i > 1; i--) {
		unsigned j = rng_below(&r, i);
		struct live t = live[i - 1];
		live[i - 1] = live[j];
		live[j] = t;
	}
	while (nlive) {
		do_free(nlive - 1);
		CHECK_HEAP();
	}
	za_drain_caches();
	CHECK_HEAP();
	int z = first_uncoalesced_zone();
	CHECK_MSG(z < 0, "seed %llu: zone %d not fully coalesced", (unsigned long long)seed, z);
	/* Reclaim gives back every wholly free zone but one spare. */
	za_reclaim();
	CHECK_HEAP();
	CHECK(first_uncoalesced_zone() < 0);
	struct za_stats s;
	za_stats_get(&s);
	CHECK_MSG(s.zones == 1, "seed %llu: %zu zones left mapped", (unsigned long long)seed,
		  s.zones);
	CHECK(s.pages_free == s.pages_total && s.pages_cached == 0);
	for (unsigned k = 0; k < TOP; k++)
		CHECK(s.free_blocks[k] == 0);
	CHECK(s.free_blocks[TOP] == s.zones * (ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES));
}

int main(void)
{
	static const uint64_t seeds[] = { 1, 2, 0x5eed, 20240601, 0xdeadbeefcafeULL };
	for (unsigned i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
		run_seed(seeds[i]);

	struct za_stats s;
	za_stats_get(&s);
	CHECK(s.zones_mapped_total >= 2);   /* the cap makes the heap grow */
	CHECK(s.enomem[ZA_ENOMEM_OS] == 0 && s.enomem[ZA_ENOMEM_FRAGMENTED] == 0);
	return test_done("buddy_random");
}
