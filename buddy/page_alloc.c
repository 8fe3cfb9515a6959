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
#include "buddy/buddy.h"

/* ---- free lists (zone lock held) ---- */

static inline void __list_add(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	struct za_page *page = &zone->pages[pfn];
	uint32_t head = zone->free_head[order];

	page->state = ZA_PG_FREE;
	page->order = (uint8_t)order;
	page->prev = ZA_PFN_NONE;
	page->next = head;
	if (head != ZA_PFN_NONE)
		zone->pages[head].prev = pfn;
	zone->free_head[order] = pfn;
	if (zone->nr_free[order]++ == 0)
		atomic_fetch_or_explicit(&zone->free_mask, 1u << order, memory_order_relaxed);
	atomic_store_explicit(&zone->pages_free,
			      atomic_load_explicit(&zone->pages_free, memory_order_relaxed) +
				      (1u << order),
			      memory_order_relaxed);
}

static inline void __list_del(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	struct za_page *page = &zone->pages[pfn];

	if (page->prev != ZA_PFN_NONE)
		zone->pages[page->prev].next = page->next;
	else
		zone->free_head[order] = page->next;
	if (page->next != ZA_PFN_NONE)
		zone->pages[page->next].prev = page->prev;
	page->next = page->prev = ZA_PFN_NONE;
	page->state = ZA_PG_TAIL;
	page->flags = 0;
	if (--zone->nr_free[order] == 0)
		atomic_fetch_and_explicit(&zone->free_mask, ~(1u << order), memory_order_relaxed);
	atomic_store_explicit(&zone->pages_free,
			      atomic_load_explicit(&zone->pages_free, memory_order_relaxed) -
				      (1u << order),
			      memory_order_relaxed);
}

/* Returns the upper halves of a block of order `high` until `low` is left. */
static inline void __expand(struct za_zone *zone, uint32_t pfn, unsigned low, unsigned high)
{
	while (high > low) {
		high--;
		__list_add(zone, pfn + (1u << high), high);
		zone->splits++;
	}
}

uint32_t __za_rmqueue_smallest(struct za_zone *zone, unsigned order)
{
	uint32_t mask = atomic_load_explicit(&zone->free_mask, memory_order_relaxed) >> order;
	if (!mask)
		return ZA_PFN_NONE;
	unsigned found = order + (unsigned)__builtin_ctz(mask);
	uint32_t pfn = zone->free_head[found];
	__list_del(zone, pfn, found);
	__expand(zone, pfn, order, found);
	zone->alloc_calls[order]++;
	return pfn;
}

static inline bool __buddy_is_free(const struct za_zone *zone, uint32_t buddy, unsigned order)
{
	const struct za_page *b = &zone->pages[buddy];
	return b->state == ZA_PG_FREE && b->order == order;
}

struct za_merge_result __za_free_one(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	struct za_merge_result res = { order, order, 0 };

	while (order < ZA_MAX_ORDER - 1) {
		uint32_t buddy = pfn ^ (1u << order);
		if (!__buddy_is_free(zone, buddy, order))
			break;
		__list_del(zone, buddy, order);
		zone->pages[pfn].state = ZA_PG_TAIL;
		pfn &= buddy;
		order++;
		res.merges++;
	}
	__list_add(zone, pfn, order);
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

void __za_free_range(struct za_zone *zone, uint32_t pfn, uint32_t end)
{
	while (pfn < end) {
		unsigned order = block_order_at(pfn, end);
		zone->pages[pfn].state = ZA_PG_TAIL;
		__za_free_one(zone, pfn, order);
		pfn += 1u << order;
	}
}

/* ---- taking and returning blocks across zones ---- */

static void *zones_alloc(unsigned order)
{
	int n = atomic_load_explicit(&za_nr_zones, memory_order_acquire);

	for (int i = 0; i < n; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!atomic_load_explicit(&zone->active, memory_order_relaxed) ||
		    !(atomic_load_explicit(&zone->free_mask, memory_order_relaxed) >> order))
			continue;
		pthread_mutex_lock(&zone->lock);
		uint32_t pfn = ZA_PFN_NONE;
		if (atomic_load_explicit(&zone->active, memory_order_relaxed))
			pfn = __za_rmqueue_smallest(zone, order);
		if (pfn != ZA_PFN_NONE) {
			zone->pages[pfn].state = ZA_PG_BLOCK;
			zone->pages[pfn].order = (uint8_t)order;
		}
		pthread_mutex_unlock(&zone->lock);
		if (pfn != ZA_PFN_NONE)
			return za_page_addr(zone, pfn);
	}
	return NULL;
}

void *za_buddy_alloc(unsigned order)
{
	if (order < ZA_PCP_ORDERS) {
		void *p = za_pcp_alloc(order);
		if (p)
			return p;
	}
	return zones_alloc(order);
}

/* Frees a block to its zone; the head's state has been checked. */
static void zone_free(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	pthread_mutex_lock(&zone->lock);
	zone->pages[pfn].state = ZA_PG_TAIL;
	zone->free_calls[order]++;
	__za_free_one(zone, pfn, order);
	bool empty = atomic_load_explicit(&zone->pages_free, memory_order_relaxed) == ZA_ZONE_PAGES;
	pthread_mutex_unlock(&zone->lock);
	if (unlikely(empty))
		za_zone_maybe_release(zone);
}

static const char *const state_names[ZA_PG_STATE_COUNT] = {
	[ZA_PG_TAIL] = "inside a block (not a block head)",
	[ZA_PG_FREE] = "free (double free)",
	[ZA_PG_BLOCK] = "an allocated page block",
	[ZA_PG_RUN] = "an allocated exact run",
	[ZA_PG_PCP] = "free in a per-thread cache (double free)",
	[ZA_PG_SLAB] = "a slab",
	[ZA_PG_SLAB_TAIL] = "inside a slab (not a block head)",
};

void za_buddy_bad_free(const void *ptr, const char *call, const char *what,
		       const struct za_zone *zone, uint32_t pfn, int expected_order)
{
	if (!zone)
		za_fatal("%s(%p): %s", call, ptr, what);
	const struct za_page *page = &zone->pages[pfn];
	const char *state = page->state < ZA_PG_STATE_COUNT ? state_names[page->state] : "corrupt";
	za_fatal("%s(%p): %s: zone %d pfn %u is %s (order %u, %u pages), expected order %d",
		 call, ptr, what, zone->index, pfn, state, page->order, page->count,
		 expected_order);
}

/* The checks every page-level free makes before anything is trusted:
 * the address is in a zone, on a page boundary, at a block head. */
static struct za_zone *checked_zone(const void *ptr, const char *call, uint32_t *pfn)
{
	struct za_zone *zone = za_zone_of(ptr);
	if (unlikely(!zone))
		za_buddy_bad_free(ptr, call, "pointer not owned by any zone", NULL, 0, -1);
	*pfn = za_pfn_of(zone, ptr);
	if (unlikely((uintptr_t)ptr & (ZA_PAGE_SIZE - 1)))
		za_buddy_bad_free(ptr, call, "pointer is not page aligned (interior pointer)",
				  zone, *pfn, -1);
	return zone;
}

void za_buddy_free(void *block, unsigned order)
{
	uint32_t pfn;
	struct za_zone *zone = checked_zone(block, "za_free_pages", &pfn);
	struct za_page *page = &zone->pages[pfn];

	if (unlikely(order >= ZA_MAX_ORDER))
		za_buddy_bad_free(block, "za_free_pages", "order out of range", zone, pfn,
				  (int)order);
	if (unlikely(page->state != ZA_PG_BLOCK || page->order != order))
		za_buddy_bad_free(block, "za_free_pages",
				  page->state == ZA_PG_BLOCK ? "wrong order" : "not an allocated block",
				  zone, pfn, (int)order);
	if (order < ZA_PCP_ORDERS && za_pcp_free(zone, pfn, order))
		return;
	zone_free(zone, pfn, order);
}

static unsigned order_for_pages(uint32_t npages)
{
	return npages <= 1 ? 0 : 32u - (unsigned)__builtin_clz(npages - 1);
}

void za_buddy_make_run(void *block, unsigned order, uint32_t npages)
{
	struct za_zone *zone = za_zone_of(block);
	uint32_t pfn = za_pfn_of(zone, block);
	uint32_t end = pfn + (1u << order);

	pthread_mutex_lock(&zone->lock);
	struct za_page *head = &zone->pages[pfn];
	head->state = ZA_PG_RUN;
	head->order = (uint8_t)order_for_pages(npages);
	head->count = npages;
	if (pfn + npages < end)
		__za_free_range(zone, pfn + npages, end);
	pthread_mutex_unlock(&zone->lock);
}

void za_buddy_free_run(void *run, uint32_t npages)
{
	uint32_t pfn;
	struct za_zone *zone = checked_zone(run, "za_free_pages_exact", &pfn);
	struct za_page *head = &zone->pages[pfn];

	if (unlikely(head->state != ZA_PG_RUN))
		za_buddy_bad_free(run, "za_free_pages_exact", "not an allocated exact run",
				  zone, pfn, -1);
	if (unlikely(npages && head->count != npages))
		za_fatal("za_free_pages_exact(%p): run has %u pages, caller says %u: zone %d pfn %u",
			 run, head->count, npages, zone->index, pfn);
	npages = head->count;

	pthread_mutex_lock(&zone->lock);
	head->state = ZA_PG_TAIL;
	head->count = 0;
	__za_free_range(zone, pfn, pfn + npages);
	bool empty = atomic_load_explicit(&zone->pages_free, memory_order_relaxed) == ZA_ZONE_PAGES;
	pthread_mutex_unlock(&zone->lock);
	if (unlikely(empty))
		za_zone_maybe_release(zone);
}

struct za_page *za_buddy_make_slab(void *block, unsigned order)
{
	struct za_zone *zone = za_zone_of(block);
	uint32_t pfn = za_pfn_of(zone, block);
	struct za_page *head = &zone->pages[pfn];

	head->state = ZA_PG_SLAB;
	head->order = (uint8_t)order;
	for (uint32_t i = 1; i < (1u << order); i++) {
		head[i].state = ZA_PG_SLAB_TAIL;
		head[i].count = i;
	}
	return head;
}

void za_buddy_free_slab(void *block)
{
	struct za_zone *zone = za_zone_of(block);
	uint32_t pfn = za_pfn_of(zone, block);
	struct za_page *head = &zone->pages[pfn];
	unsigned order = head->order;

	for (uint32_t i = 1; i < (1u << order); i++) {
		head[i].state = ZA_PG_TAIL;
		head[i].count = 0;
	}
	head->state = ZA_PG_BLOCK;
	if (order < ZA_PCP_ORDERS && za_pcp_free(zone, pfn, order))
		return;
	zone_free(zone, pfn, order);
}

/* The free block containing pfn, or ZA_PFN_NONE (zone lock held). */
static uint32_t __free_block_containing(struct za_zone *zone, uint32_t pfn, unsigned *order)
{
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		uint32_t head = pfn & ~((1u << k) - 1);
		const struct za_page *p = &zone->pages[head];
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
		__list_del(zone, head, k);
		if (head < pfn)
			__za_free_range(zone, head, pfn);
		if (bend > end)
			__za_free_range(zone, end, bend);
		q = bend;
	}
	return true;
}

bool za_buddy_resize_run(void *run, uint32_t npages)
{
	uint32_t pfn;
	struct za_zone *zone = checked_zone(run, "realloc", &pfn);
	struct za_page *head = &zone->pages[pfn];
	bool ok = true;

	if (npages == 0 || npages > ZA_MAX_BLOCK_PAGES || pfn + npages > ZA_ZONE_PAGES)
		return false;
	pthread_mutex_lock(&zone->lock);
	if (unlikely(head->state != ZA_PG_RUN)) {
		pthread_mutex_unlock(&zone->lock);
		za_buddy_bad_free(run, "realloc", "not an allocated run", zone, pfn, -1);
	}
	uint32_t old = head->count;
	if (npages < old)
		__za_free_range(zone, pfn + npages, pfn + old);
	else if (npages > old)
		ok = __claim_range(zone, pfn + old, pfn + npages);
	if (ok) {
		head->count = npages;
		head->order = (uint8_t)order_for_pages(npages);
	}
	pthread_mutex_unlock(&zone->lock);
	return ok;
}

size_t za_buddy_run_pages(const void *run)
{
	struct za_zone *zone = za_zone_of(run);
	if (!zone || ((uintptr_t)run & (ZA_PAGE_SIZE - 1)))
		return 0;
	const struct za_page *head = &zone->pages[za_pfn_of(zone, run)];
	return head->state == ZA_PG_RUN ? head->count : 0;
}
