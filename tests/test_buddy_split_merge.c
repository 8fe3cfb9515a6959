/*
 * Split and merge at every order: a block of order k taken from a whole
 * zone leaves exactly one free block at each order k..ZA_MAX_ORDER-2, and
 * freeing it merges all of them back. Checked through the public API and
 * the stats, then through rmqueue_smallest / free_one on the zone itself.
 */
#include "buddy/buddy.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

#define TOP (ZA_MAX_ORDER - 1)
#define TOP_BLOCKS (ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES)

/* After za_drain_caches with one block of order k taken from a whole zone. */
static void check_split_stats(unsigned k)
{
	struct za_stats s;
	za_stats_get(&s);
	CHECK(s.zones == 1);
	CHECK(s.pages_cached == 0);
	CHECK_MSG(s.pages_free == s.pages_total - ((size_t)1 << k), "order %u: %zu free of %zu", k,
		  s.pages_free, s.pages_total);
	for (unsigned j = 0; j < TOP; j++)
		CHECK_MSG(s.free_blocks[j] == (j >= k ? 1u : 0u), "order %u taken: %zu free at %u",
			  k, s.free_blocks[j], j);
	CHECK_MSG(s.free_blocks[TOP] == TOP_BLOCKS - 1, "order %u taken: %zu free at top", k,
		  s.free_blocks[TOP]);
}

static void check_whole_zone(const char *when)
{
	struct za_stats s;
	za_stats_get(&s);
	CHECK_MSG(s.pages_free == s.pages_total, "%s: %zu of %zu free", when, s.pages_free,
		  s.pages_total);
	for (unsigned j = 0; j < TOP; j++)
		CHECK_MSG(s.free_blocks[j] == 0, "%s: %zu free at order %u", when, s.free_blocks[j],
			  j);
	CHECK_MSG(s.free_blocks[TOP] == TOP_BLOCKS * s.zones, "%s: %zu free at top", when,
		  s.free_blocks[TOP]);
	CHECK(first_uncoalesced_zone() < 0);
}

/* Every order through za_alloc_pages / za_free_pages. */
static void public_api(void)
{
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		struct za_stats before, after;
		za_status st = ZA_EINVAL;

		za_drain_caches();
		za_stats_get(&before);
		void *p = za_alloc_pages(k, ZA_F_NONE, &st);
		CHECK_MSG(p && st == ZA_OK, "order %u: %p %s", k, p, za_status_str(st));
		if (!p)
			continue;
		CHECK_MSG(aligned_to(p, ZA_PAGE_SIZE << k), "order %u block %p misaligned", k, p);
		struct za_zone *zone = za_zone_of(p);
		CHECK(zone && zone == za_zone_of((char *)p + (ZA_PAGE_SIZE << k) - 1));
		uint32_t pfn = za_pfn_of(zone, p);
		CHECK(za_page_at(zone, pfn)->state == ZA_PG_BLOCK && za_page_at(zone, pfn)->order == k);
		CHECK_HEAP();

		/* The split is visible once the caches hold nothing back. */
		za_drain_caches();
		check_split_stats(k);
		CHECK_HEAP();
		za_stats_get(&after);
		if (k >= ZA_PCP_ORDERS)   /* straight from the zone: one split per order */
			CHECK_MSG(after.splits - before.splits == TOP - k, "order %u: %llu splits", k,
				  (unsigned long long)(after.splits - before.splits));

		pattern_fill(p, (size_t)1 << k, k);
		CHECK(pattern_verify(p, (size_t)1 << k, k) == (size_t)1 << k);

		za_stats_get(&before);
		za_free_pages(p, k);
		CHECK_HEAP();
		za_drain_caches();
		CHECK_HEAP();
		za_stats_get(&after);
		check_whole_zone("after free");
		if (k >= ZA_PCP_ORDERS)
			CHECK_MSG(after.merges - before.merges == TOP - k, "order %u: %llu merges", k,
				  (unsigned long long)(after.merges - before.merges));
		else
			CHECK(after.merges - before.merges >= TOP - k);
	}
}

static struct za_zone *only_zone(void)
{
	for (int i = 0; i < atomic_load(&za_nr_zones); i++)
		if (atomic_load(&za_zones[i].active))
			return &za_zones[i];
	return NULL;
}

/* Takes an order-k block under the lock and marks it allocated. */
static uint32_t take(struct za_zone *zone, unsigned k)
{
	pthread_mutex_lock(&zone->lock);
	uint32_t pfn = __za_rmqueue_smallest(zone, k);
	if (pfn != ZA_PFN_NONE) {
		za_page_at(zone, pfn)->state = ZA_PG_BLOCK;
		za_page_at(zone, pfn)->order = (uint8_t)k;
	}
	pthread_mutex_unlock(&zone->lock);
	return pfn;
}

static struct za_merge_result give(struct za_zone *zone, uint32_t pfn, unsigned k)
{
	pthread_mutex_lock(&zone->lock);
	za_page_at(zone, pfn)->state = ZA_PG_TAIL;
	struct za_merge_result r = __za_free_one(zone, pfn, k, 0);   /* 0 pages released */
	pthread_mutex_unlock(&zone->lock);
	return r;
}

#define CHECK_MERGE(r, in, out, n)                                                    \
	CHECK_MSG((r).order_in == (in) && (r).order_out == (out) && (r).merges == (n), \
		  "merge result %u->%u (%u merges), expected %u->%u (%u)", (r).order_in,  \
		  (r).order_out, (r).merges, (unsigned)(in), (unsigned)(out), (unsigned)(n))

/* rmqueue_smallest and free_one on the zone, one order at a time. */
static void zone_one_order(struct za_zone *zone)
{
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		uint32_t pfn = take(zone, k);
		CHECK_MSG(pfn != ZA_PFN_NONE && (pfn & ((1u << k) - 1)) == 0, "order %u at pfn %u",
			  k, pfn);
		if (pfn == ZA_PFN_NONE)
			continue;
		pthread_mutex_lock(&zone->lock);
		for (unsigned j = 0; j < TOP; j++)
			CHECK_MSG(zone->nr_free[j] == (j >= k ? 1u : 0u), "order %u: nr_free[%u] = %u",
				  k, j, zone->nr_free[j]);
		CHECK(top_blocks_free(zone) == TOP_BLOCKS - 1);
		/* Each free piece is the buddy of the half that was kept. */
		for (unsigned j = k; j < TOP; j++) {
			uint32_t half = (pfn & ~((1u << j) - 1)) ^ (1u << j);
			CHECK_MSG(za_page_at(zone, half)->state == ZA_PG_FREE && za_page_at(zone, half)->order == j,
				  "order %u: no free order-%u buddy at pfn %u", k, j, half);
		}
		pthread_mutex_unlock(&zone->lock);
		CHECK_HEAP();

		struct za_merge_result r = give(zone, pfn, k);
		CHECK_MERGE(r, k, TOP, TOP - k);
		CHECK_HEAP();
		check_whole_zone("free_one");
	}
}

/*
 * One block of every order 0..TOP-1 out of one top block: order 0 splits it
 * into a free block at each order, and orders 1..TOP-1 take those, so one
 * free page is left. Freeing upwards merges exactly once per free; freeing
 * downwards merges nothing until the last free merges all the way.
 */
static void zone_staircase(struct za_zone *zone, bool upwards)
{
	uint32_t pfn[TOP];
	for (unsigned k = 0; k < TOP; k++) {
		pfn[k] = take(zone, k);
		CHECK(pfn[k] != ZA_PFN_NONE);
		if (pfn[k] == ZA_PFN_NONE)
			return;
		if (k > 0)
			CHECK_MSG(pfn[k] == pfn[0] + (1u << k), "order %u at pfn %u, base %u", k,
				  pfn[k], pfn[0]);
		CHECK_HEAP();
	}
	pthread_mutex_lock(&zone->lock);
	CHECK(zone->nr_free[0] == 1 && zone->free_head[ZA_KIND_RUN][0] == pfn[0] + 1);
	for (unsigned j = 1; j < TOP; j++)
		CHECK(zone->nr_free[j] == 0);
	CHECK(top_blocks_free(zone) == TOP_BLOCKS - 1);
	pthread_mutex_unlock(&zone->lock);

	for (unsigned i = 0; i < TOP; i++) {
		unsigned k = upwards ? i : TOP - 1 - i;
		struct za_merge_result r = give(zone, pfn[k], k);
		if (upwards)
			CHECK_MERGE(r, k, k + 1, 1);
		else if (k > 0)
			CHECK_MERGE(r, k, k, 0);
		else
			CHECK_MERGE(r, 0, TOP, TOP);
		CHECK_HEAP();
	}
	check_whole_zone(upwards ? "staircase up" : "staircase down");
}

/*
 * A budget caps what a request may newly commit, and a one-page request
 * commits one page at most. With the only free block a top block whose
 * pages are all released but its first, a one-page request under a
 * 16-page budget gets that resident page (the split keeps the warmer
 * half) and is charged one page, not the block's released pages.
 */
static void zone_budget_part_released(struct za_zone *zone)
{
	static uint32_t held[TOP_BLOCKS];
	unsigned n = 0;
	while (n < TOP_BLOCKS && (held[n] = take(zone, TOP)) != ZA_PFN_NONE)
		n++;
	CHECK_MSG(n == TOP_BLOCKS, "%u of %u top blocks taken", n, (unsigned)TOP_BLOCKS);
	if (n == 0)
		return;
	uint32_t base = held[--n];
	pthread_mutex_lock(&zone->lock);
	za_mark_resident(zone, base + 1, (1u << TOP) - 1, false);
	za_page_at(zone, base)->state = ZA_PG_TAIL;
	__za_free_one(zone, base, TOP, (1u << TOP) - 1);
	size_t budget = 16;
	uint32_t pfn = __za_rmqueue(zone, 0, ZA_KIND_RUN, &budget);
	if (pfn != ZA_PFN_NONE) {
		za_page_at(zone, pfn)->state = ZA_PG_BLOCK;
		za_page_at(zone, pfn)->order = 0;
	}
	pthread_mutex_unlock(&zone->lock);
	CHECK_MSG(pfn == base, "one page under a 16-page budget: pfn %u, the resident one is %u",
		  pfn, base);
	CHECK_MSG(budget >= 15, "one page charged %zu pages of a 16-page budget", 16 - budget);
	CHECK_HEAP();
	if (pfn != ZA_PFN_NONE)
		give(zone, pfn, 0);
	while (n)
		give(zone, held[--n], TOP);
	CHECK_HEAP();
	check_whole_zone("budget");
}

int main(void)
{
	public_api();

	struct za_zone *zone = only_zone();
	CHECK(zone != NULL);
	if (zone) {
		za_drain_caches();
		check_whole_zone("start");
		zone_one_order(zone);
		zone_staircase(zone, true);
		zone_staircase(zone, false);
		zone_budget_part_released(zone);
	}

	/* Every order held at once through the API, then freed; the caches
	 * must give their blocks back for the zone to be whole again. */
	void *p[ZA_MAX_ORDER];
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		p[k] = za_alloc_pages(k, ZA_F_NONE, NULL);
		CHECK(p[k] && aligned_to(p[k], ZA_PAGE_SIZE << k));
		if (p[k])
			pattern_fill(p[k], (size_t)1 << k, 100 + k);
		CHECK_HEAP();
	}
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		for (unsigned j = k + 1; j < ZA_MAX_ORDER; j++)
			CHECK(!p[k] || !p[j] || (char *)p[k] + (ZA_PAGE_SIZE << k) <= (char *)p[j] ||
			      (char *)p[j] + (ZA_PAGE_SIZE << j) <= (char *)p[k]);
	}
	for (unsigned k = ZA_MAX_ORDER; k-- > 0;) {
		if (!p[k])
			continue;
		CHECK(pattern_verify(p[k], (size_t)1 << k, 100 + k) == (size_t)1 << k);
		za_free_pages(p[k], k);
		CHECK_HEAP();
	}
	za_drain_caches();
	CHECK_HEAP();
	check_whole_zone("end");
	return test_done("buddy_split_merge");
}
