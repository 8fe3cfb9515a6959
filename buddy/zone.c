/*
 * Zones: reserving them, finding them (the region table), retiring them.
 */
#include "buddy/buddy.h"

#include <errno.h>
#include <string.h>

ZA_BULK uintptr_t za_region_table[ZA_REGION_SLOTS];
ZA_BULK struct za_zone za_zones[ZA_MAX_ZONES];
_Atomic int za_nr_zones;
pthread_mutex_t za_zones_lock = PTHREAD_MUTEX_INITIALIZER;
struct za_zone_counters za_zone_stats;
uintptr_t za_region_zone_tag = ZA_REGION_TAG_ZONE;

/* One region table slot per 64 MiB of address space. A region starts on a
 * slot boundary, so a slot names at most one region; a huge mapping's last
 * slot may be shared with someone else's memory, which is why lookups also
 * compare against the region's size. */
int za_region_register(struct za_region *r)
{
	uintptr_t first = r->base >> ZA_ZONE_SHIFT;
	uintptr_t last = (r->base + r->size - 1) >> ZA_ZONE_SHIFT;

	if ((r->base & (ZA_ZONE_SIZE - 1)) || (r->base + r->size - 1) >> ZA_VA_BITS)
		return EINVAL;
	uintptr_t e = (uintptr_t)r | (r->kind == ZA_REGION_ZONE ? za_region_zone_tag : 0);
	for (uintptr_t i = first; i <= last; i++)
		__atomic_store_n(&za_region_table[i], e, __ATOMIC_RELEASE);
	return 0;
}

/* Zones registered from now on, and those serving now, get `tag`. */
void za_region_retag_zones(uintptr_t tag)
{
	za_lock(&za_zones_lock);
	__atomic_store_n(&za_region_zone_tag, tag, __ATOMIC_RELAXED);
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++) {
		struct za_region *r = &za_zones[i].region;
		uintptr_t slot = r->base >> ZA_ZONE_SHIFT;
		if (r->base &&
		    (__atomic_load_n(&za_region_table[slot], __ATOMIC_RELAXED) & ~ZA_REGION_TAGS) ==
			    (uintptr_t)r)
			__atomic_store_n(&za_region_table[slot], (uintptr_t)r | tag, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&za_zones_lock);
}

void za_region_unregister(struct za_region *r)
{
	uintptr_t first = r->base >> ZA_ZONE_SHIFT;
	uintptr_t last = (r->base + r->size - 1) >> ZA_ZONE_SHIFT;

	for (uintptr_t i = first; i <= last; i++)
		if ((__atomic_load_n(&za_region_table[i], __ATOMIC_RELAXED) & ~ZA_REGION_TAGS) ==
		    (uintptr_t)r)
			__atomic_store_n(&za_region_table[i], 0, __ATOMIC_RELEASE);
}

/* Lays a freshly mapped zone out as ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES free
 * blocks of the largest order. */
static void zone_fill(struct za_zone *zone)
{
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		for (unsigned l = 0; l < ZA_FREE_LISTS; l++)
			zone->free_head[l][k] = zone->free_tail[l][k] = ZA_PFN_NONE;
		zone->nr_free[k] = 0;
	}
	memset(zone->list_mask, 0, sizeof zone->list_mask);
	memset(zone->pageblock_kind, ZA_KIND_NONE, sizeof zone->pageblock_kind);
	atomic_store_explicit(&zone->free_mask, 0, memory_order_relaxed);
	atomic_store_explicit(&zone->pages_free, 0, memory_order_relaxed);
	atomic_store_explicit(&zone->pages_released, 0, memory_order_relaxed);
	/* Fresh pages are released pages: untouched, zero, not yet committed.
	 * The first max-order block is listed; the rest is wilderness, listed
	 * when rmqueue finds nothing else (__za_wild_take). */
	atomic_fetch_add(&za_committed_pages, ZA_ZONE_PAGES);
	atomic_fetch_add(&za_zone_span_pages, ZA_ZONE_PAGES);
	__za_free_one(zone, 0, ZA_MAX_ORDER - 1, ZA_MAX_BLOCK_PAGES);
	uint32_t wild = ZA_ZONE_PAGES - ZA_MAX_BLOCK_PAGES;
	zone->wild_pfn = ZA_MAX_BLOCK_PAGES;
	atomic_fetch_add_explicit(&zone->pages_free, wild, memory_order_relaxed);
	atomic_fetch_add_explicit(&zone->pages_released, wild, memory_order_relaxed);
	atomic_fetch_sub(&za_committed_pages, wild);
	atomic_fetch_or_explicit(&zone->free_mask, 1u << ZA_MAX_ORDER, memory_order_relaxed);
}

za_status za_zone_grow(unsigned order)
{
	za_status st = ZA_OK;
	za_lock(&za_zones_lock);

	int n = atomic_load(&za_nr_zones), slot = -1;
	for (int i = 0; i < n; i++) {
		struct za_zone *z = &za_zones[i];
		if (!atomic_load(&z->active)) {
			if (slot < 0)
				slot = i;
		} else if (atomic_load_explicit(&z->free_mask, memory_order_relaxed) >> order) {
			goto out;
		}
	}
	if (slot < 0) {
		if (n == ZA_MAX_ZONES) {
			st = ZA_ENOMEM_OS;
			goto out;
		}
		slot = n;
	}

	struct za_zone *zone = &za_zones[slot];
	if (!zone->pages) {
		void *map;
		if (za_os_map_guarded(ZA_PAGE_MAP_BYTES, &map)) {
			st = ZA_ENOMEM_OS;
			goto out;
		}
		zone->pages = map;
		zone->resident = (uint64_t *)(zone->pages + ZA_ZONE_PAGES);
		zone->slab_map = (uint8_t *)(zone->resident + ZA_ZONE_PAGES / 64);
		pthread_mutex_init(&zone->lock, NULL);
		zone->index = slot;
	}
	void *base;
	if (za_os_map_aligned(ZA_ZONE_SIZE, ZA_ZONE_SIZE, &base)) {
		st = ZA_ENOMEM_OS;
		goto out;
	}
	za_os_thp_advise(base, ZA_ZONE_SIZE, true);
	zone->region.base = (uintptr_t)base;
	zone->region.size = ZA_ZONE_SIZE;
	zone->region.kind = ZA_REGION_ZONE;

	za_lock(&zone->lock);
	zone_fill(zone);
	zone->splits = zone->merges = 0;
	pthread_mutex_unlock(&zone->lock);

	if (za_region_register(&zone->region)) {
		za_os_unmap(base, ZA_ZONE_SIZE);
		st = ZA_ENOMEM_OS;
		goto out;
	}
	atomic_store(&zone->active, 1);
	if (slot == n)
		atomic_store(&za_nr_zones, n + 1);
	za_zone_stats.mapped++;
out:
	pthread_mutex_unlock(&za_zones_lock);
	return st;
}

static bool zone_wholly_free(struct za_zone *zone)
{
	return atomic_load(&zone->active) &&
	       atomic_load_explicit(&zone->pages_free, memory_order_relaxed) == ZA_ZONE_PAGES;
}

bool za_zone_maybe_release(struct za_zone *zone)
{
	void *base = NULL;

	if (!zone_wholly_free(zone))
		return false;
	za_lock(&za_zones_lock);
	int n = atomic_load(&za_nr_zones), spares = 0;
	for (int i = 0; i < n; i++)
		if (&za_zones[i] != zone && zone_wholly_free(&za_zones[i]))
			spares++;
	/* One wholly free zone stays mapped, so a program that frees its last
	 * block and allocates again does not pay for a new zone each time. */
	if (spares == 0)
		goto out;

	za_lock(&zone->lock);
	if (zone_wholly_free(zone)) {
		atomic_store(&zone->active, 0);
		za_region_unregister(&zone->region);
		base = (void *)zone->region.base;
		atomic_fetch_sub(&za_committed_pages,
				 ZA_ZONE_PAGES - atomic_load(&zone->pages_released));
		atomic_fetch_sub(&za_zone_span_pages, ZA_ZONE_PAGES);
	}
	pthread_mutex_unlock(&zone->lock);
	if (base) {
		/* Zeroes the page map for the slot's next life. */
		za_os_decommit(zone->pages, ZA_PAGE_MAP_BYTES);
		za_zone_stats.unmapped++;
	}
out:
	pthread_mutex_unlock(&za_zones_lock);
	if (base)
		za_os_unmap(base, ZA_ZONE_SIZE);
	return base != NULL;
}

size_t za_buddy_free_pages_total(void)
{
	size_t total = 0;
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++)
		if (atomic_load(&za_zones[i].active))
			total += atomic_load_explicit(&za_zones[i].pages_free,
						      memory_order_relaxed);
	return total;
}

void za_zones_thp_advise(void)
{
	za_lock(&za_zones_lock);
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++)
		if (atomic_load(&za_zones[i].active))
			za_os_thp_advise((void *)za_zones[i].region.base, ZA_ZONE_SIZE, true);
	pthread_mutex_unlock(&za_zones_lock);
}

/* Fork: every zone lock is taken (zones lock first, then by index, the
 * order the release path uses) and the child re-creates them. */
void za_buddy_lock_all(void)
{
	za_lock(&za_zones_lock);
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++)
		if (za_zones[i].pages)
			za_lock(&za_zones[i].lock);
}

void za_buddy_unlock_all(void)
{
	int n = atomic_load(&za_nr_zones);
	for (int i = n - 1; i >= 0; i--)
		if (za_zones[i].pages)
			pthread_mutex_unlock(&za_zones[i].lock);
	pthread_mutex_unlock(&za_zones_lock);
}

void za_buddy_reset_child(void)
{
	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++)
		if (za_zones[i].pages)
			pthread_mutex_init(&za_zones[i].lock, NULL);
	pthread_mutex_init(&za_zones_lock, NULL);
}
