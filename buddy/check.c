/*
 * za_buddy_check: the expensive, complete verification of every zone's
 * invariants (listed above struct za_zone in buddy/buddy.h). Tests and
 * fuzzers call it after every operation; it reports the first violation.
 */
#include "buddy/buddy.h"

#include <string.h>

#define FAIL(zi, p, o, ...)                                                  \
	do {                                                                 \
		if (res) {                                                   \
			res->zone = (zi);                                    \
			res->pfn = (p);                                      \
			res->order = (o);                                    \
			za_fmt(res->what, sizeof res->what, __VA_ARGS__);    \
		}                                                            \
		return -1;                                                   \
	} while (0)

int (*za_check_zone_hook)(struct za_zone *zone, struct za_check_result *res);
int (*za_check_hook)(struct za_check_result *res);

static int check_zone(struct za_zone *zone, struct za_check_result *res)
{
	const int zi = zone->index;
	uint32_t free_heads[ZA_MAX_ORDER] = { 0 }, free_pages = 0, released = 0;

	/* 0. The wilderness: whole max-order blocks at the end, on no list,
	 * their entries and slab map untouched. */
	const uint32_t wild = zone->wild_pfn;
	if (wild > ZA_ZONE_PAGES || wild % ZA_MAX_BLOCK_PAGES)
		FAIL(zi, wild, -1, "wilderness starts at pfn %u", wild);
	for (uint32_t pfn = wild; pfn < ZA_ZONE_PAGES; pfn++)
		if (za_page_at(zone, pfn)->state != ZA_PG_TAIL || zone->slab_map[pfn] ||
		    za_page_resident(zone, pfn))
			FAIL(zi, pfn, -1, "wilderness page %u is in use (state %u)", pfn,
			     za_page_at(zone, pfn)->state);
	free_pages = released = ZA_ZONE_PAGES - wild;

	/* 1. Walk the page map block by block: every page covered once. */
	for (uint32_t pfn = 0; pfn < wild;) {
		const struct za_page *p = za_page_at(zone, pfn);
		uint32_t span;

		switch (p->state) {
		case ZA_PG_FREE:
		case ZA_PG_BLOCK:
		case ZA_PG_PCP:
		case ZA_PG_SLAB:
			if (p->order >= ZA_MAX_ORDER)
				FAIL(zi, pfn, p->order, "block order %u out of range", p->order);
			if (pfn & ((1u << p->order) - 1))
				FAIL(zi, pfn, p->order, "block not aligned to its order");
			/* free() finds a slab's head by za_page_at_plane0 */
			if (p->state == ZA_PG_SLAB && p->order < ZA_MAP_PLANE_ORDER)
				FAIL(zi, pfn, p->order, "slab of order %u, below the page map's plane order",
				     p->order);
			span = 1u << p->order;
			break;
		case ZA_PG_RUN:
		case ZA_PG_RUN_CACHED:
			if (p->count == 0 || p->count > ZA_MAX_BLOCK_PAGES)
				FAIL(zi, pfn, -1, "exact run of %u pages", p->count);
			span = p->count;
			break;
		case ZA_PG_TAIL:
			FAIL(zi, pfn, -1, "page belongs to no block");
		default:
			FAIL(zi, pfn, -1, "page state %u is corrupt", p->state);
		}
		if (pfn + span > wild)
			FAIL(zi, pfn, p->order, "block runs past the end of the zone");
		for (uint32_t i = 1; i < span; i++) {
			const struct za_page *t = za_page_at(zone, pfn + i);
			if (t->state != ZA_PG_TAIL)
				FAIL(zi, pfn + i, p->order,
				     "page %u inside the block at pfn %u has state %u", pfn + i,
				     pfn, t->state);
		}
		/* The slab map says slab (with the page's distance from the
		 * head) exactly on slab pages. */
		bool is_slab = p->state == ZA_PG_SLAB;
		for (uint32_t i = 0; i < span; i++)
			if (zone->slab_map[pfn + i] != (is_slab ? i + 1 : 0))
				FAIL(zi, pfn + i, p->order,
				     "slab map byte %u at pfn %u, expected %u (block at pfn %u)",
				     zone->slab_map[pfn + i], pfn + i, is_slab ? i + 1 : 0, pfn);
		if (p->state == ZA_PG_FREE) {
			released += p->count;
			free_heads[p->order]++;
			free_pages += span;
			/* 2. Free buddies of equal order must have merged. */
			if (p->order < ZA_MAX_ORDER - 1) {
				const struct za_page *b = za_page_at(zone, pfn ^ (1u << p->order));
				if (b->state == ZA_PG_FREE && b->order == p->order)
					FAIL(zi, pfn, p->order, "free buddies at pfn %u and %u not merged",
					     pfn, pfn ^ (1u << p->order));
			}
		}
		pfn += span;
	}

	/* 3. Free lists: membership <=> free flag, the list its pageblock's
	 * kind says, links, counts, bitmaps. */
	uint32_t mask = atomic_load(&zone->free_mask);
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		uint32_t n = 0, count[ZA_FREE_LISTS], last[ZA_FREE_LISTS];
		for (unsigned l = 0; l < ZA_FREE_LISTS; l++) {
			uint32_t nl = 0, prev = ZA_PFN_NONE;
			bool seen_released = false;
			for (uint32_t pfn = zone->free_head[l][k]; pfn != ZA_PFN_NONE;
			     pfn = za_page_at(zone, pfn)->next) {
				if (pfn >= ZA_ZONE_PAGES)
					FAIL(zi, pfn, (int)k,
					     "free list %u/%u links to pfn %u outside the zone", l, k, pfn);
				const struct za_page *fp = za_page_at(zone, pfn);
				if (fp->state != ZA_PG_FREE || fp->order != k)
					FAIL(zi, pfn, (int)k,
					     "free list %u/%u holds a block with state %u order %u", l, k,
					     fp->state, fp->order);
				if (za_free_list_of(zone, pfn, k) != l)
					FAIL(zi, pfn, (int)k,
					     "free list %u/%u holds a block of pageblock kind %u", l, k,
					     zone->pageblock_kind[pfn >> ZA_PAGEBLOCK_ORDER]);
				if (fp->prev != prev)
					FAIL(zi, pfn, (int)k, "free list %u/%u: prev link is %u, expected %u",
					     l, k, fp->prev, prev);
				if (fp->count == (1u << k))
					seen_released = true;
				else if (seen_released)
					FAIL(zi, pfn, (int)k,
					     "free list %u/%u: a block with resident pages after a released one",
					     l, k);
				if (++n > free_heads[k])
					FAIL(zi, pfn, (int)k, "free lists of order %u longer than its %u free blocks",
					     k, free_heads[k]);
				prev = pfn;
				nl++;
			}
			count[l] = nl;
			last[l] = prev;
		}
		if (n != free_heads[k])
			FAIL(zi, ZA_PFN_NONE, (int)k,
			     "free list %u holds %u blocks, page map has %u free", k, n, free_heads[k]);
		if (zone->nr_free[k] != n)
			FAIL(zi, ZA_PFN_NONE, (int)k, "nr_free[%u] = %u, recount = %u", k,
			     zone->nr_free[k], n);
		if (!!(mask & (1u << k)) != (n > 0))
			FAIL(zi, ZA_PFN_NONE, (int)k, "free_mask bit %u disagrees with list", k);
		for (unsigned l = 0; l < ZA_FREE_LISTS; l++) {
			if (zone->free_tail[l][k] != last[l])
				FAIL(zi, last[l], (int)k, "free list %u/%u: tail is %u, last block is %u",
				     l, k, zone->free_tail[l][k], last[l]);
			if (!!(zone->list_mask[l] & (1u << k)) != (count[l] > 0))
				FAIL(zi, ZA_PFN_NONE, (int)k, "list_mask[%u] bit %u disagrees with list",
				     l, k);
		}
	}
	for (unsigned l = 0; l < ZA_FREE_LISTS; l++)
		if (zone->list_mask[l] >> ZA_MAX_ORDER)
			FAIL(zi, ZA_PFN_NONE, -1, "list_mask[%u] has bits above the max order", l);
	/* Pageblocks: no kind iff wholly free (in a free block of a pageblock
	 * or more, one the reclaimer holds, or the wilderness). */
	for (uint32_t pb = 0; pb < (ZA_ZONE_PAGES >> ZA_PAGEBLOCK_ORDER); pb++) {
		uint32_t pfn = pb << ZA_PAGEBLOCK_ORDER;
		bool whole = pfn >= wild;
		for (unsigned k = ZA_PAGEBLOCK_ORDER; !whole && k < ZA_MAX_ORDER; k++) {
			const struct za_page *h = za_page_at(zone, pfn & ~((1u << k) - 1));
			whole = h->order == k && (h->state == ZA_PG_FREE ||
						  (h->state == ZA_PG_BLOCK && (h->flags & ZA_PGF_ISOLATED)));
		}
		unsigned kind = zone->pageblock_kind[pb];
		if (kind > ZA_KIND_NONE || (kind == ZA_KIND_NONE) != whole)
			FAIL(zi, pfn, -1, "pageblock %u has kind %u but is %s", pb, kind,
			     whole ? "wholly free" : "in use");
	}
	if (mask >> (ZA_MAX_ORDER + 1))
		FAIL(zi, ZA_PFN_NONE, -1, "free_mask has bits above the max order");
	if (!!(mask >> ZA_MAX_ORDER) != (wild < ZA_ZONE_PAGES))
		FAIL(zi, ZA_PFN_NONE, -1, "free_mask's wilderness bit disagrees with pfn %u", wild);
	if (atomic_load(&zone->pages_free) != free_pages)
		FAIL(zi, ZA_PFN_NONE, -1, "pages_free = %u, recount = %u",
		     atomic_load(&zone->pages_free), free_pages);
	if (atomic_load(&zone->pages_released) != released)
		FAIL(zi, ZA_PFN_NONE, -1, "pages_released = %u, recount = %u",
		     atomic_load(&zone->pages_released), released);

	/* 4. Residency: only free pages may be released, and a free block's
	 * count of released pages is exact. The walk above proved the
	 * structure, so blocks can be stepped through safely. */
	for (uint32_t pfn = 0; pfn < wild;) {
		const struct za_page *p = za_page_at(zone, pfn);
		uint32_t span = p->state == ZA_PG_RUN || p->state == ZA_PG_RUN_CACHED
					? p->count : 1u << p->order;
		uint32_t nonresident = za_count_released(zone, pfn, span);
		/* A block the reclaimer is releasing (no lock held) is neither
		 * free nor in anyone's hands: any mix is fine. */
		bool isolated = p->state == ZA_PG_BLOCK && (p->flags & ZA_PGF_ISOLATED);
		if (p->state != ZA_PG_FREE && !isolated && nonresident)
			FAIL(zi, pfn, p->order, "allocated block has %u released pages", nonresident);
		if (p->state == ZA_PG_FREE && p->count != nonresident)
			FAIL(zi, pfn, p->order, "free block counts %u released pages, has %u",
			     p->count, nonresident);
		pfn += span;
	}
	return 0;
}

ZA_EXPORT int za_buddy_check(struct za_check_result *res)
{
	int rc = 0;
	if (res) {
		memset(res, 0, sizeof *res);
		res->zone = -1;
		res->order = -1;
	}
	/* Caches first, then zones: the same order as every other path, so
	 * nothing moves between a zone and a cache while we look. */
	za_pcp_lock_all();
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n && rc == 0; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		za_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			rc = check_zone(zone, res);
			if (rc == 0 && za_check_zone_hook)
				rc = za_check_zone_hook(zone, res);
		}
		pthread_mutex_unlock(&zone->lock);
	}
	za_pcp_unlock_all();
	if (rc == 0 && za_check_hook)
		rc = za_check_hook(res);
	return rc;
}
