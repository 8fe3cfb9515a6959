/*
 * Split and merge: the buddy algorithm of mm/page_alloc.c over one zone.
 *
 * The buddy arithmetic, once. A block of order k is 2^k pages and starts at
 * a pfn divisible by 2^k. Its buddy is the other half of the order k+1
 * block that contains it: buddy_pfn = pfn ^ (1 << k), and the merged block
 * starts at pfn & buddy_pfn (the lower of the two). Example: freeing pfn 12
 * at order 2 (pages 12..15) looks at buddy 12 ^ 4 = 8 (pages 8..11). If 8 is
 * a free order-2 block they merge into pfn 8, order 3 (pages 8..15); the
 * next buddy is 8 ^ 8 = 0, and so on up to ZA_MAX_ORDER - 1. Splitting runs
 * the other way: an order-3 block at pfn 8 serving an order-1 request keeps
 * pages 8..9 and returns 12..15 (order 2) and 10..11 (order 1) to the lists.
 */
#include "buddy/pcp.h"

#include <string.h>

/* ---- free lists (zone lock held) ---- */

static inline void __commit_add(int64_t pages)
{
	if (pages > 0)
		za_commit_add(pages);
	else if (pages)
		atomic_fetch_add_explicit(&za_committed_pages, pages, memory_order_relaxed);
}

static inline void __add_relaxed(_Atomic uint32_t *v, int32_t d)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + (uint32_t)d,
			      memory_order_relaxed);
}

bool za_buddy_grouping = true;

/* Links a free block at the head (resident pages) or the tail (wholly
 * released) of free_area[l][order]; lists only, no counts. */
static inline void __link(struct za_zone *zone, unsigned l, uint32_t pfn, unsigned order,
			  bool at_head)
{
	struct za_page *page = za_page_at(zone, pfn);
	if (at_head) {
		uint32_t head = zone->free_head[l][order];
		page->prev = ZA_PFN_NONE;
		page->next = head;
		if (head != ZA_PFN_NONE)
			za_page_at(zone, head)->prev = pfn;
		else
			zone->free_tail[l][order] = pfn;
		zone->free_head[l][order] = pfn;
	} else {
		uint32_t tail = zone->free_tail[l][order];
		page->next = ZA_PFN_NONE;
		page->prev = tail;
		if (tail != ZA_PFN_NONE)
			za_page_at(zone, tail)->next = pfn;
		else
			zone->free_head[l][order] = pfn;
		zone->free_tail[l][order] = pfn;
	}
	zone->list_mask[l] |= (uint16_t)(1u << order);
}

static inline void __unlink(struct za_zone *zone, unsigned l, uint32_t pfn, unsigned order)
{
	struct za_page *page = za_page_at(zone, pfn);
	if (page->prev != ZA_PFN_NONE)
		za_page_at(zone, page->prev)->next = page->next;
	else
		zone->free_head[l][order] = page->next;
	if (page->next != ZA_PFN_NONE)
		za_page_at(zone, page->next)->prev = page->prev;
	else
		zone->free_tail[l][order] = page->prev;
	page->next = page->prev = ZA_PFN_NONE;
	if (zone->free_head[l][order] == ZA_PFN_NONE)
		zone->list_mask[l] &= (uint16_t)~(1u << order);
}

/* Gives the pageblocks of the block at pfn (order >= ZA_PAGEBLOCK_ORDER:
 * all it covers; below: the one it is in) to `kind`. */
static inline void __set_kind(struct za_zone *zone, uint32_t pfn, unsigned order, unsigned kind)
{
	uint32_t pb = pfn >> ZA_PAGEBLOCK_ORDER;
	uint32_t n = order > ZA_PAGEBLOCK_ORDER ? 1u << (order - ZA_PAGEBLOCK_ORDER) : 1u;
	for (uint32_t i = 0; i < n; i++)
		zone->pageblock_kind[pb + i] = (uint8_t)kind;
}

/*
 * Puts a block on its free list (za_free_list_of); `released` of its
 * pages are released, and so no longer committed; the resident ones, if
 * any, have been free since `freed_ms` (the age decay goes by). Blocks
 * with resident pages go to the head, wholly released ones to the tail:
 * allocation reuses memory that is already resident before it touches
 * released pages, and reclaim finds the resident blocks first. A block of
 * a pageblock or more frees its pageblocks of their kind.
 */
static inline void __list_add(struct za_zone *zone, uint32_t pfn, unsigned order,
			      uint32_t released, uint64_t freed_ms)
{
	struct za_page *page = za_page_at(zone, pfn);

	if (order >= ZA_PAGEBLOCK_ORDER)
		__set_kind(zone, pfn, order, ZA_KIND_NONE);
	page->state = ZA_PG_FREE;
	page->order = (uint8_t)order;
	page->flags = 0;
	page->count = released;
	bool resident = released < (1u << order);
	page->freed_ms = resident ? freed_ms : 0;
	__link(zone, za_free_list_of(zone, pfn, order), pfn, order, resident);
	if (zone->nr_free[order]++ == 0)
		atomic_fetch_or_explicit(&zone->free_mask, 1u << order, memory_order_relaxed);
	__add_relaxed(&zone->pages_free, (int32_t)(1u << order));
	if (released) {
		__add_relaxed(&zone->pages_released, (int32_t)released);
		__commit_add(-(int64_t)released);
	}
}

/* Takes a block off its free list; returns how many of its pages were
 * released, which the caller counts as committed again. */
static inline uint32_t __unlist(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	struct za_page *page = za_page_at(zone, pfn);
	uint32_t released = page->count;

	__unlink(zone, za_free_list_of(zone, pfn, order), pfn, order);
	page->state = ZA_PG_TAIL;
	page->flags = 0;
	page->count = 0;
	page->freed_ms = 0;
	if (--zone->nr_free[order] == 0)
		atomic_fetch_and_explicit(&zone->free_mask, ~(1u << order), memory_order_relaxed);
	__add_relaxed(&zone->pages_free, -(int32_t)(1u << order));
	if (released)
		__add_relaxed(&zone->pages_released, -(int32_t)released);
	return released;
}

static inline uint32_t __list_del(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	uint32_t released = __unlist(zone, pfn, order);
	__commit_add((int64_t)released);
	return released;
}

/* Residency is kept per page (the zone's resident bitmap), so a free block
 * that is part resident, part released splits into halves with exact
 * counts. */
static inline void __mark_resident(struct za_zone *zone, uint32_t pfn, uint32_t n)
{
	za_mark_resident(zone, pfn, n, true);
}

static inline void __mark_released(struct za_zone *zone, uint32_t pfn, uint32_t n)
{
	za_mark_resident(zone, pfn, n, false);
}

static inline uint32_t __count_released(const struct za_zone *zone, uint32_t pfn, uint32_t n)
{
	return za_count_released(zone, pfn, n);
}

/*
 * Splits the block at *pfn of order `high`, holding `released` released
 * pages, down to order `low` for an allocation of `kind`, returning the
 * halves it does not keep to the lists; returns the released pages left
 * in the part it keeps, whose pfn it leaves in *pfn. Of two halves it keeps the one with more resident
 * pages (the kernel always keeps the lower one): a warm page reused is a
 * page fault saved and a page less of RSS. Uniform blocks split in O(1);
 * a mixed one counts the pages of each upper half.
 */
static inline uint32_t __expand(struct za_zone *zone, uint32_t *pfnp, unsigned low,
				unsigned high, uint32_t released, uint64_t freed_ms, unsigned kind)
{
	uint32_t pfn = *pfnp;
	while (high > low) {
		uint32_t size = 1u << high;
		high--;
		/* A whole pageblock split: its halves go to the kind that split it. */
		if (high == ZA_PAGEBLOCK_ORDER - 1)
			zone->pageblock_kind[pfn >> ZA_PAGEBLOCK_ORDER] = (uint8_t)kind;
		uint32_t half = 1u << high, upper;
		if (released == 0)
			upper = 0;
		else if (released == size)
			upper = half;
		else
			upper = __count_released(zone, pfn + half, half);
		if (upper < released - upper) {
			/* as old as the whole */
			__list_add(zone, pfn, high, released - upper, freed_ms);
			pfn += half;
			released = upper;
		} else {
			__list_add(zone, pfn + half, high, upper, freed_ms);
			released -= upper;
		}
		zone->splits++;
	}
	*pfnp = pfn;
	return released;
}

/* At most the pages that taking a free block for an order-`order`
 * request newly commits: no more than the block's released pages, nor
 * than the part it keeps (__expand). Charging a part-released
 * block all of its released pages once refused a one-page request with a
 * 413-page budget and 15,360 pages free, and called it fragmentation. */
static inline uint32_t __commit_cost(const struct za_page *head, unsigned order)
{
	return head->count < (1u << order) ? head->count : 1u << order;
}

/* Lists the next max-order block of the wilderness; false when none is
 * left. */
static bool __za_wild_take(struct za_zone *zone)
{
	uint32_t pfn = zone->wild_pfn;
	if (pfn >= ZA_ZONE_PAGES)
		return false;
	zone->wild_pfn = pfn + ZA_MAX_BLOCK_PAGES;
	if (zone->wild_pfn >= ZA_ZONE_PAGES)
		atomic_fetch_and_explicit(&zone->free_mask, ~(1u << ZA_MAX_ORDER),
					  memory_order_relaxed);
	/* Out of the wilderness's counts, into the lists' (__list_add). */
	__add_relaxed(&zone->pages_free, -(int32_t)ZA_MAX_BLOCK_PAGES);
	__add_relaxed(&zone->pages_released, -(int32_t)ZA_MAX_BLOCK_PAGES);
	__commit_add(ZA_MAX_BLOCK_PAGES);
	__list_add(zone, pfn, ZA_MAX_ORDER - 1, ZA_MAX_BLOCK_PAGES, 0);
	return true;
}

void __za_wild_list_all(struct za_zone *zone)
{
	while (__za_wild_take(zone))
		;
}

/* Takes the free block at pfn (order `pick`) for an order-`order`
 * allocation of `kind` that commits `cost` pages. */
static uint32_t __take(struct za_zone *zone, uint32_t pfn, unsigned pick, unsigned order,
		       unsigned kind, uint32_t cost, size_t *budget)
{
	if (*budget != SIZE_MAX)
		*budget -= cost;
	uint64_t age = za_page_at(zone, pfn)->freed_ms;
	uint32_t was = __unlist(zone, pfn, pick);
	/* The halves put back uncommit theirs first, so the count (and its
	 * peak) only ever rises by what the kept part commits. */
	uint32_t released = __expand(zone, &pfn, order, pick, was, age, kind);
	__commit_add((int64_t)was);
	if (order >= ZA_PAGEBLOCK_ORDER)
		__set_kind(zone, pfn, order, kind);
	if (released)
		__mark_resident(zone, pfn, 1u << order);
	za_page_at(zone, pfn)->flags = released == (1u << order) ? ZA_PGF_FRESH : 0;
	zone->alloc_calls[order]++;
	return pfn;
}

/*
 * From the blocks of `kind` (below a pageblock) and the whole free
 * pageblocks: the smallest order whose first block has resident pages
 * (lists keep those first), else the smallest order at all: warm memory is
 * reused before untouched or released memory is faulted in, even if that
 * splits a larger block (what the buddy splits it merges again).
 */
uint32_t __za_rmqueue(struct za_zone *zone, unsigned order, unsigned kind, size_t *budget)
{
	const uint32_t below = (1u << ZA_PAGEBLOCK_ORDER) - 1;
again:;
	uint32_t mask = ((zone->list_mask[kind] & below) |
			 (zone->list_mask[ZA_KIND_NONE] & ~below)) >> order;
	unsigned pick = ZA_MAX_ORDER;
	uint32_t pick_cost = 0, pick_pfn = ZA_PFN_NONE;
	for (; mask; mask &= mask - 1) {
		unsigned found = order + (unsigned)__builtin_ctz(mask);
		uint32_t pfn = zone->free_head[found >= ZA_PAGEBLOCK_ORDER ? ZA_KIND_NONE : kind][found];
		const struct za_page *head = za_page_at(zone, pfn);
		uint32_t cost = __commit_cost(head, order);
		if (cost > *budget)
			continue;
		if (pick == ZA_MAX_ORDER || head->count < (1u << found)) {
			pick = found;
			pick_cost = cost;
			pick_pfn = pfn;
			if (head->count < (1u << found))
				break;
		}
	}
	if (pick == ZA_MAX_ORDER) {
		if (*budget >= (1u << order) && __za_wild_take(zone))
			goto again;
		return ZA_PFN_NONE;
	}
	return __take(zone, pick_pfn, pick, order, kind, pick_cost, budget);
}

/* Free pages in pageblock pb (it has a kind, so no free block spans it). */
static uint32_t __pageblock_free_pages(const struct za_zone *zone, uint32_t pb)
{
	uint32_t n = 0, end = (pb + 1) << ZA_PAGEBLOCK_ORDER;
	for (uint32_t pfn = pb << ZA_PAGEBLOCK_ORDER; pfn < end;) {
		const struct za_page *p = za_page_at(zone, pfn);
		if (p->state == ZA_PG_FREE) {
			n += 1u << p->order;
			pfn += 1u << p->order;
		} else {
			pfn++;
		}
	}
	return n;
}

/* Gives pageblock pb to `kind`, moving its free blocks to kind's lists
 * (the kernel's move_freepages_block); their counts do not change. */
static void __claim_pageblock(struct za_zone *zone, uint32_t pb, unsigned kind)
{
	unsigned old = zone->pageblock_kind[pb];
	uint32_t end = (pb + 1) << ZA_PAGEBLOCK_ORDER;
	for (uint32_t pfn = pb << ZA_PAGEBLOCK_ORDER; pfn < end;) {
		struct za_page *p = za_page_at(zone, pfn);
		if (p->state != ZA_PG_FREE) {
			pfn++;
			continue;
		}
		unsigned k = p->order;
		__unlink(zone, old, pfn, k);
		__link(zone, kind, pfn, k, p->count < (1u << k));
		pfn += 1u << k;
	}
	zone->pageblock_kind[pb] = (uint8_t)kind;
	zone->claims++;
}

/*
 * The kernel's fallback order: each kind tries the others in a fixed
 * order, taking the largest block it finds (the more of a pageblock it
 * takes, the less of it stays mixed), and claims the whole pageblock when
 * that block is half of it or more, or half of it or more is free. Unlike
 * the kernel, a heap can map another zone instead: so unless `any`, a
 * block is taken only when that claims its pageblock or saves memory (it
 * has resident pages), and a cold block that would leave a pageblock
 * mixed waits until no zone can be added (the slow path).
 */
static const uint8_t fallback_order[ZA_KINDS][ZA_KINDS - 1] = {
	[ZA_KIND_SLAB] = { ZA_KIND_RESERVE, ZA_KIND_RUN },
	[ZA_KIND_RUN] = { ZA_KIND_RESERVE, ZA_KIND_SLAB },
	[ZA_KIND_RESERVE] = { ZA_KIND_SLAB, ZA_KIND_RUN },
};

uint32_t __za_rmqueue_fallback(struct za_zone *zone, unsigned order, unsigned kind,
			       size_t *budget, bool any)
{
	for (unsigned i = 0; i < ZA_KINDS - 1; i++) {
		unsigned other = fallback_order[kind][i];
		uint32_t mask = (zone->list_mask[other] & ((1u << ZA_PAGEBLOCK_ORDER) - 1)) >> order;
		while (mask) {
			unsigned bit = 31u - (unsigned)__builtin_clz(mask);
			unsigned found = order + bit;
			uint32_t pfn = zone->free_head[other][found];
			uint32_t cost = __commit_cost(za_page_at(zone, pfn), order);
			mask &= ~(1u << bit);
			if (cost > *budget)
				continue;
			uint32_t pb = pfn >> ZA_PAGEBLOCK_ORDER;
			bool claim = found >= ZA_PAGEBLOCK_ORDER - 1 ||
				     __pageblock_free_pages(zone, pb) >= ZA_PAGEBLOCK_PAGES / 2;
			if (!claim && !any && za_page_at(zone, pfn)->count == (1u << found))
				continue;
			zone->fallbacks++;
			if (claim)
				__claim_pageblock(zone, pb, kind);
			return __take(zone, pfn, found, order, kind, cost, budget);
		}
	}
	return ZA_PFN_NONE;
}

uint32_t __za_rmqueue_smallest(struct za_zone *zone, unsigned order)
{
	size_t unlimited = SIZE_MAX;
	uint32_t pfn = __za_rmqueue(zone, order, ZA_KIND_RUN, &unlimited);
	return pfn != ZA_PFN_NONE ? pfn
				  : __za_rmqueue_fallback(zone, order, ZA_KIND_RUN, &unlimited, true);
}

static inline bool __buddy_is_free(const struct za_zone *zone, uint32_t buddy, unsigned order)
{
	const struct za_page *b = za_page_at(zone, buddy);
	/* Allocated buddies change state under other locks (per-thread caches);
	 * FREE is only ever entered or left under this zone's lock. */
	return __atomic_load_n(&b->state, __ATOMIC_RELAXED) == ZA_PG_FREE && b->order == order;
}

struct za_merge_result __za_free_one(struct za_zone *zone, uint32_t pfn, unsigned order,
				     uint32_t released)
{
	struct za_merge_result res = { order, order, 0 };
	/* A merged block is as old as its oldest resident part: otherwise a
	 * block split and merged again and again around one busy piece would
	 * never be old enough to release. (The busy piece may go back with
	 * it, one fault per decay time.) */
	uint64_t age = released < (1u << order) ? za_now_ms_cheap() : UINT64_MAX;

	za_page_at(zone, pfn)->flags = 0;
	while (order < ZA_MAX_ORDER - 1) {
		uint32_t buddy = pfn ^ (1u << order);
		if (!__buddy_is_free(zone, buddy, order))
			break;
		const struct za_page *b = za_page_at(zone, buddy);
		if (b->count < (1u << order) && b->freed_ms < age)
			age = b->freed_ms;
		released += __list_del(zone, buddy, order);
		za_page_at(zone, pfn)->state = ZA_PG_TAIL;
		pfn &= buddy;
		order++;
		res.merges++;
	}
	__list_add(zone, pfn, order, released, age);
	zone->merges += res.merges;
	res.order_out = order;
	return res;
}

/* The largest order whose block fits at pfn (alignment) and in [pfn, end). */
static inline unsigned block_order_at(uint32_t pfn, uint32_t end)
{
	unsigned align = pfn ? (unsigned)__builtin_ctz(pfn) : ZA_MAX_ORDER - 1;
	unsigned fit = 31u - (unsigned)__builtin_clz(end - pfn);
	unsigned order = align < fit ? align : fit;
	return order < ZA_MAX_ORDER - 1 ? order : ZA_MAX_ORDER - 1;
}

void __za_free_range(struct za_zone *zone, uint32_t pfn, uint32_t end, bool released)
{
	if (released)
		__mark_released(zone, pfn, end - pfn);
	while (pfn < end) {
		unsigned order = block_order_at(pfn, end);
		za_page_at(zone, pfn)->state = ZA_PG_TAIL;
		__za_free_one(zone, pfn, order, released ? 1u << order : 0);
		pfn += 1u << order;
	}
}

/* ---- taking and returning blocks across zones ---- */

/* Every zone's own blocks first (its kind's, whole pageblocks, the
 * wilderness), then, in a second pass, other kinds' that are worth taking
 * (a steal; all of them when `any`). */
static void *zones_alloc(unsigned order, unsigned kind, size_t budget, bool any)
{
	int n = atomic_load_explicit(&za_nr_zones, memory_order_acquire);

	for (int pass = any; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			struct za_zone *zone = &za_zones[i];
			if (!atomic_load_explicit(&zone->active, memory_order_relaxed) ||
			    !(atomic_load_explicit(&zone->free_mask, memory_order_relaxed) >> order))
				continue;
			za_lock(&zone->lock);
			uint32_t pfn = ZA_PFN_NONE;
			if (atomic_load_explicit(&zone->active, memory_order_relaxed))
				pfn = pass == 0 ? __za_rmqueue(zone, order, kind, &budget)
						: __za_rmqueue_fallback(zone, order, kind, &budget, any);
			if (pfn != ZA_PFN_NONE) {
				za_page_at(zone, pfn)->state = ZA_PG_BLOCK;
				za_page_at(zone, pfn)->order = (uint8_t)order;
			}
			pthread_mutex_unlock(&zone->lock);
			if (pfn != ZA_PFN_NONE)
				return za_page_addr(zone, pfn);
		}
	}
	return NULL;
}

void *za_buddy_alloc_fallback(unsigned order, unsigned kind, size_t budget)
{
	return zones_alloc(order, za_buddy_grouping ? kind : ZA_KIND_RUN, budget, true);
}

void *za_buddy_alloc(unsigned order, unsigned kind, size_t budget)
{
	if (!za_buddy_grouping)
		kind = ZA_KIND_RUN;
	/* The per-thread caches hold small blocks of runs' pageblocks. */
	if (order < ZA_PCP_ORDERS && kind == ZA_KIND_RUN) {
		void *p = za_pcp_alloc(order, budget);
		if (p)
			return p;
	}
	return zones_alloc(order, kind, budget, false);
}

/* Frees a block to its zone; the head's state has been checked. */
static void zone_free(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	za_lock(&zone->lock);
	za_page_at(zone, pfn)->state = ZA_PG_TAIL;
	zone->free_calls[order]++;
	__za_free_one(zone, pfn, order, 0);
	pthread_mutex_unlock(&zone->lock);
}

static const char *const state_names[ZA_PG_STATE_COUNT] = {
	[ZA_PG_TAIL] = "inside a block (not a block head)",
	[ZA_PG_FREE] = "free",
	[ZA_PG_BLOCK] = "an allocated page block",
	[ZA_PG_RUN] = "an allocated exact run",
	[ZA_PG_PCP] = "free in a per-thread cache",
	[ZA_PG_SLAB] = "a slab",
	[ZA_PG_RUN_CACHED] = "a freed run in a per-thread cache (double free)",
};

/*
 * Free pages do not say whether they were ever handed out: a block freed
 * twice and a pointer into pages never allocated (the unused tail of a
 * run, a buddy nobody took) look the same. The last FREED_RING addresses
 * given back as page blocks or runs tell them apart for a while, so a
 * report says "double free" only when it is one. Written where a block or
 * run leaves its owner for a free list or a page cache, never on the path
 * of a run cached for reuse (its state says it).
 */
#define FREED_RING 256
static uintptr_t freed_ring[FREED_RING];
static unsigned freed_next;

/* A load and two stores, no locked instruction (za_free_pages's path):
 * two threads noting at once may write one slot, which only shortens the
 * memory of a best-effort record. */
void za_buddy_freed_note(const void *addr)
{
	unsigned i = __atomic_load_n(&freed_next, __ATOMIC_RELAXED);
	__atomic_store_n(&freed_next, i + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&freed_ring[i % FREED_RING], (uintptr_t)addr, __ATOMIC_RELAXED);
}

bool za_buddy_freed_recently(const void *addr)
{
	for (unsigned i = 0; i < FREED_RING; i++)
		if (__atomic_load_n(&freed_ring[i], __ATOMIC_RELAXED) == (uintptr_t)addr)
			return true;
	return false;
}

/* What a free page at `addr` most likely is to a caller who frees it. */
static const char *free_page_verdict(const void *addr)
{
	return za_buddy_freed_recently(addr) ? " (double free)"
					     : " (not allocated, or freed long ago)";
}

/* For a page inside a block: the head of the block that covers it, found
 * at the nearest aligned pfn below that is a head; ZA_PFN_NONE if none. */
static uint32_t covering_head(const struct za_zone *zone, uint32_t pfn)
{
	for (unsigned k = 1; k < ZA_MAX_ORDER; k++) {
		uint32_t head = pfn & ~((1u << k) - 1);
		const struct za_page *h = za_page_at(zone, head);
		if (h->state == ZA_PG_TAIL)
			continue;
		uint32_t span = h->state == ZA_PG_RUN ? h->count : 1u << (h->order & 31);
		return pfn - head < span ? head : ZA_PFN_NONE;
	}
	return ZA_PFN_NONE;
}

void za_buddy_bad_free(const void *ptr, const char *call, const char *what,
		       const struct za_zone *zone, uint32_t pfn, int expected_order)
{
	if (!zone) {
		za_misuse("%s(%p): %s", call, ptr, what);
		return;
	}
	const struct za_page *page = za_page_at(zone, pfn);
	/* A block freed twice has usually merged with its buddy by then, so
	 * its head is a tail page of a larger free block: say which. */
	uint32_t head = page->state == ZA_PG_TAIL ? covering_head(zone, pfn) : ZA_PFN_NONE;
	if (head != ZA_PFN_NONE) {
		const struct za_page *h = za_page_at(zone, head);
		if (h->state == ZA_PG_FREE || h->state == ZA_PG_PCP)
			za_misuse("%s(%p): %s: zone %d pfn %u is free%s: inside the "
				  "free block at pfn %u (order %u), expected order %d",
				  call, ptr, what, zone->index, pfn, free_page_verdict(ptr), head,
				  h->order, expected_order);
		else
			za_misuse("%s(%p): %s: zone %d pfn %u is inside a block (not a block head): "
				  "the block at pfn %u is %s (order %u), expected order %d",
				  call, ptr, what, zone->index, pfn, head,
				  h->state < ZA_PG_STATE_COUNT ? state_names[h->state] : "corrupt",
				  h->order, expected_order);
		return;
	}
	const char *state = page->state < ZA_PG_STATE_COUNT ? state_names[page->state] : "corrupt";
	bool is_free = page->state == ZA_PG_FREE || page->state == ZA_PG_PCP;
	/* A slab head's count is the slab tier's (slab.c: the idle scan). */
	za_misuse("%s(%p): %s: zone %d pfn %u is %s%s (order %u, %u pages), expected order %d",
		  call, ptr, what, zone->index, pfn, state, is_free ? free_page_verdict(ptr) : "",
		  page->order, page->state == ZA_PG_SLAB ? 0u : page->count, expected_order);
}

/* The checks every page-level free makes before anything is trusted:
 * the address is in a zone, on a page boundary, at a block head. NULL
 * when it is not (reported; under warn the caller frees nothing). */
static struct za_zone *checked_zone(const void *ptr, const char *call, uint32_t *pfn)
{
	struct za_zone *zone = za_zone_of(ptr);
	if (unlikely(!zone)) {
		za_buddy_bad_free(ptr, call, "pointer not owned by any zone", NULL, 0, -1);
		return NULL;
	}
	*pfn = za_pfn_of(zone, ptr);
	if (unlikely((uintptr_t)ptr & (ZA_PAGE_SIZE - 1))) {
		za_buddy_bad_free(ptr, call, "pointer is not page aligned (interior pointer)",
				  zone, *pfn, -1);
		return NULL;
	}
	return zone;
}

void za_buddy_free(void *block, unsigned order)
{
	uint32_t pfn;
	struct za_zone *zone = checked_zone(block, "za_free_pages", &pfn);
	if (unlikely(!zone))
		return;
	struct za_page *page = za_page_at(zone, pfn);

	if (unlikely(order >= ZA_MAX_ORDER)) {
		za_buddy_bad_free(block, "za_free_pages", "order out of range", zone, pfn,
				  (int)order);
		return;
	}
	/* An isolated block is the reclaimer's, not the caller's. */
	if (unlikely(page->state != ZA_PG_BLOCK || page->order != order ||
		     (page->flags & ZA_PGF_ISOLATED))) {
		za_buddy_bad_free(block, "za_free_pages",
				  (page->flags & ZA_PGF_ISOLATED) ? "double free (the block is free, being released)"
				  : page->state == ZA_PG_BLOCK ? "wrong order" : "not an allocated block",
				  zone, pfn, (int)order);
		return;
	}
	za_buddy_freed_note(block);
	if (order < ZA_PCP_ORDERS && za_pcp_free(zone, pfn, order))
		return;
	zone_free(zone, pfn, order);
}


void za_buddy_make_run(void *block, unsigned order, uint32_t npages)
{
	struct za_zone *zone = za_zone_of(block);
	uint32_t pfn = za_pfn_of(zone, block);
	uint32_t end = pfn + (1u << order);

	za_lock(&zone->lock);
	struct za_page *head = za_page_at(zone, pfn);
	/* The tail of a block that was never touched goes back untouched. */
	bool fresh = head->flags & ZA_PGF_FRESH;
	head->state = ZA_PG_RUN;
	head->order = (uint8_t)za_order_for_pages(npages);
	head->count = npages;
	if (pfn + npages < end)
		__za_free_range(zone, pfn + npages, end, fresh);
	pthread_mutex_unlock(&zone->lock);
}

void za_buddy_free_run(void *run, uint32_t npages)
{
	uint32_t pfn;
	struct za_zone *zone = checked_zone(run, "za_free_pages_exact", &pfn);
	if (unlikely(!zone))
		return;
	struct za_page *head = za_page_at(zone, pfn);

	if (unlikely(head->state != ZA_PG_RUN)) {
		za_buddy_bad_free(run, "za_free_pages_exact",
				  head->state == ZA_PG_RUN_CACHED ? "double free" : "not an allocated exact run",
				  zone, pfn, -1);
		return;
	}
	if (unlikely(npages && head->count != npages)) {
		za_misuse("za_free_pages_exact(%p): run has %u pages, caller says %u: zone %d pfn %u",
			  run, head->count, npages, zone->index, pfn);
		return;
	}
	if (!za_pcp_run_free(head, run, head->count))
		za_buddy_run_to_zone(zone, pfn);
}

void za_buddy_run_to_zone(struct za_zone *zone, uint32_t pfn)
{
	struct za_page *head = za_page_at(zone, pfn);
	uint32_t npages = head->count;

	za_buddy_freed_note(za_page_addr(zone, pfn));
	za_lock(&zone->lock);
	head->state = ZA_PG_TAIL;
	head->count = 0;
	head->flags = 0;
	__za_free_range(zone, pfn, pfn + npages, false);
	pthread_mutex_unlock(&zone->lock);
}

struct za_page *za_buddy_make_slab(void *block, unsigned order)
{
	struct za_zone *zone = za_zone_of(block);
	uint32_t pfn = za_pfn_of(zone, block);
	struct za_page *head = za_page_at(zone, pfn);

	/* Under the lock, so a concurrent za_buddy_check never sees a slab
	 * head without its map. The other pages' entries stay as any block's
	 * (free() finds the head through the slab map): a slab touches one
	 * 64-byte entry of the page map, not one per page. */
	za_lock(&zone->lock);
	head->state = ZA_PG_SLAB;
	head->order = (uint8_t)order;
	for (uint32_t i = 0; i < 1u << order; i++)
		zone->slab_map[pfn + i] = (uint8_t)(i + 1);
	pthread_mutex_unlock(&zone->lock);
	return head;
}

void za_buddy_free_slab(void *block)
{
	struct za_zone *zone = za_zone_of(block);
	uint32_t pfn = za_pfn_of(zone, block);
	struct za_page *head = za_page_at(zone, pfn);
	unsigned order = head->order;

	za_lock(&zone->lock);
	memset(&zone->slab_map[pfn], 0, (size_t)1 << order);
	head->state = ZA_PG_BLOCK;
	pthread_mutex_unlock(&zone->lock);
	if (order < ZA_PCP_ORDERS && za_pcp_free(zone, pfn, order))
		return;
	zone_free(zone, pfn, order);
}

/* Frees [pfn, end), pages keeping their residency bits. */
static void __free_span(struct za_zone *zone, uint32_t pfn, uint32_t end)
{
	while (pfn < end) {
		unsigned order = block_order_at(pfn, end);
		za_page_at(zone, pfn)->state = ZA_PG_TAIL;
		__za_free_one(zone, pfn, order, __count_released(zone, pfn, 1u << order));
		pfn += 1u << order;
	}
}

/* The free block containing pfn, or ZA_PFN_NONE (zone lock held). */
static uint32_t __free_block_containing(struct za_zone *zone, uint32_t pfn, unsigned *order)
{
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		uint32_t head = pfn & ~((1u << k) - 1);
		const struct za_page *p = za_page_at(zone, head);
		if (p->state == ZA_PG_FREE && p->order == k) {
			*order = k;
			return head;
		}
	}
	return ZA_PFN_NONE;
}

/*
 * Takes [pfn, end) out of the free blocks that cover it, giving back the
 * parts of those blocks outside the range; false (nothing changed) unless
 * every page of the range is free.
 */
static bool __claim_range(struct za_zone *zone, uint32_t pfn, uint32_t end)
{
	unsigned k;
	for (uint32_t q = pfn; q < end; q = q + (1u << k) - (q & ((1u << k) - 1))) {
		if (__free_block_containing(zone, q, &k) == ZA_PFN_NONE)
			return false;
	}
	for (uint32_t q = pfn; q < end;) {
		uint32_t head = __free_block_containing(zone, q, &k);
		uint32_t bend = head + (1u << k);
		uint32_t from = q, to = bend < end ? bend : end;
		if (__list_del(zone, head, k))
			__mark_resident(zone, from, to - from);
		/* Whole pageblocks taken in are the run's kind's now. */
		if (k >= ZA_PAGEBLOCK_ORDER)
			__set_kind(zone, head, k, zone->pageblock_kind[(pfn - 1) >> ZA_PAGEBLOCK_ORDER]);
		if (head < pfn)
			__free_span(zone, head, pfn);
		if (bend > end)
			__free_span(zone, end, bend);
		q = bend;
	}
	return true;
}

bool za_buddy_resize_run(void *run, uint32_t npages, bool into_released)
{
	uint32_t pfn;
	struct za_zone *zone = checked_zone(run, "realloc", &pfn);
	if (unlikely(!zone))
		return false;
	struct za_page *head = za_page_at(zone, pfn);
	bool ok = true;

	if (npages == 0 || npages > ZA_MAX_BLOCK_PAGES || pfn + npages > ZA_ZONE_PAGES)
		return false;
	za_lock(&zone->lock);
	if (unlikely(head->state != ZA_PG_RUN)) {
		pthread_mutex_unlock(&zone->lock);
		za_buddy_bad_free(run, "realloc", "not an allocated run", zone, pfn, -1);
		return false;
	}
	uint32_t old = head->count;
	if (npages < old)
		__za_free_range(zone, pfn + npages, pfn + old, false);
	else if (npages > old)
		/* Into released pages only if the caller says so: growing into
		 * them faults in fresh memory while warm free blocks may sit
		 * elsewhere (a vector doubling in place would walk the whole
		 * zone into RSS), and a move takes resident memory first. */
		ok = (into_released || za_count_released(zone, pfn + old, npages - old) == 0) &&
		     __claim_range(zone, pfn + old, pfn + npages);
	if (ok) {
		head->count = npages;
		head->order = (uint8_t)za_order_for_pages(npages);
	}
	pthread_mutex_unlock(&zone->lock);
	return ok;
}

size_t za_buddy_run_pages(const void *run)
{
	struct za_zone *zone = za_zone_of(run);
	if (!zone || ((uintptr_t)run & (ZA_PAGE_SIZE - 1)))
		return 0;
	const struct za_page *head = za_page_at(zone, za_pfn_of(zone, run));
	return head->state == ZA_PG_RUN ? head->count : 0;
}

uint32_t __za_isolate_free(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	uint32_t released = __list_del(zone, pfn, order);
	za_page_at(zone, pfn)->state = ZA_PG_BLOCK;
	za_page_at(zone, pfn)->order = (uint8_t)order;
	za_page_at(zone, pfn)->flags |= ZA_PGF_ISOLATED;   /* __za_free_one clears it */
	return released;
}

void __za_putback_released(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	za_page_at(zone, pfn)->state = ZA_PG_TAIL;
	__mark_released(zone, pfn, 1u << order);
	__za_free_one(zone, pfn, order, 1u << order);
}

/*
 * A block that is not fresh may still be mostly out of memory: released
 * by reclaim since, or never touched (the heap counts a block's pages
 * resident once handed out, whatever the program then used). Writing
 * zeros faults every such page in: ZA_F_ZERO on a 4 MiB block the fuzz
 * harness had touched on 6 pages took 1,000 faults, most of an input's
 * time, and left all 4 MiB resident. From 1 MiB up, when fewer than half
 * its pages are in memory, one madvise clears the block instead
 * (MADV_DONTNEED reads back zero) and the pages come back as the program
 * touches them; a block mostly in memory is written, as before. Asking
 * (mincore, 256 pages a call) costs 2.3 us against the 10 us of clearing
 * 1 MiB in memory, 3.5 against 42 for 4 MiB (this project's 2-core VM).
 */
#define CLEAR_ASK_MIN ((size_t)1 << 20)

void za_buddy_block_clear(void *block, size_t bytes)
{
	size_t half = (bytes >> ZA_PAGE_SHIFT) / 2;
	if (bytes >= CLEAR_ASK_MIN && za_os_resident_pages(block, bytes, half) < half &&
	    za_os_decommit(block, bytes) == 0)
		return;
	memset(block, 0, bytes);
}

bool za_buddy_block_fresh(const void *block)
{
	struct za_zone *zone = za_zone_of(block);
	return zone && (za_page_at(zone, za_pfn_of(zone, block))->flags & ZA_PGF_FRESH) &&
	       za_released_reads_zero();
}
