/*
 * Giving memory back: retained free blocks are isolated from their free
 * lists, released with madvise while no lock is held, and put back as
 * released blocks (which merge like any other). Wholly free zones beyond
 * one spare are unmapped. Policy (policy/) decides when and how much;
 * this file only knows how.
 */
#include "buddy/buddy.h"

#include <time.h>

_Atomic int64_t za_committed_pages;
_Atomic int64_t za_committed_peak;
_Atomic int64_t za_zone_span_pages;

static _Atomic int release_mode = ZA_RELEASE_DONTNEED;
static _Atomic uint64_t st_passes, st_blocks, st_pages, st_madvise;

static _Atomic uint64_t clock_cached_ms;
static __thread unsigned clock_countdown __attribute__((tls_model("initial-exec")));

uint64_t za_now_ms(void)
{
	uint64_t now = za_os_clock_ms();
	atomic_store_explicit(&clock_cached_ms, now, memory_order_relaxed);
	return now;
}

/* Stamping every freed block with the time would cost a clock read per
 * free; a clock read every 16 stamps per thread keeps stamps within a few
 * operations of the truth for a tenth of the cost. */
uint64_t za_now_ms_cheap(void)
{
	if (unlikely(clock_countdown-- == 0)) {
		clock_countdown = 16;
		return za_now_ms();
	}
	return atomic_load_explicit(&clock_cached_ms, memory_order_relaxed);
}

void za_reclaim_set_mode(enum za_release_mode mode)
{
	atomic_store(&release_mode, mode);
}

/* MADV_FREE leaves the old contents until the kernel needs the pages, so
 * only MADV_DONTNEED makes released memory read as zero. */
bool za_released_reads_zero(void)
{
	return atomic_load_explicit(&release_mode, memory_order_relaxed) == ZA_RELEASE_DONTNEED;
}

#define ISOLATE_BATCH 32

struct isolated {
	uint32_t pfn;
	uint32_t order;
};

/*
 * Chooses up to ISOLATE_BATCH retained blocks old enough, largest first,
 * and takes them off the free lists. Returns how many; *pages gets the
 * resident pages among them.
 */
static unsigned __isolate(struct za_zone *zone, uint64_t now, uint64_t min_age_ms,
			  size_t want_pages, size_t *budget, struct isolated *out, size_t *pages)
{
	unsigned n = 0;
	*pages = 0;
	/* Zones on huge pages (ZONEALLOC_THP=always): the decay gives back
	 * whole 2 MiB blocks only, since a smaller madvise splits the huge
	 * page under it; direct reclaim (no age) takes what it needs. */
	int min_order = za_thp_mode == ZA_THP_ALWAYS && min_age_ms ? ZA_THP_ORDER : 0;
	for (int k = ZA_MAX_ORDER - 1; k >= min_order && n < ISOLATE_BATCH && *pages < want_pages;
	     k--) {
		for (unsigned l = 0; l < ZA_FREE_LISTS; l++) {
			for (uint32_t pfn = zone->free_head[l][k];
			     pfn != ZA_PFN_NONE && *budget && n < ISOLATE_BATCH && *pages < want_pages;
			     pfn = za_page_at(zone, pfn)->next) {
				const struct za_page *p = za_page_at(zone, pfn);
				(*budget)--;
				if (p->count == (1u << k))
					break;   /* the rest of the list is released already */
				/* A stamp from the cached clock may be a little ahead
				 * of `now`: that block is young, not ancient. */
				if (p->freed_ms > now || now - p->freed_ms < min_age_ms)
					continue;
				out[n].pfn = pfn;
				out[n].order = (uint32_t)k;
				*pages += (1u << k) - p->count;
				n++;
			}
		}
	}
	/* Off the lists only after the walk, which follows their links. */
	for (unsigned i = 0; i < n; i++)
		__za_isolate_free(zone, out[i].pfn, out[i].order);
	return n;
}

static int release_range(void *addr, size_t len)
{
	atomic_fetch_add_explicit(&st_madvise, 1, memory_order_relaxed);
	if (atomic_load_explicit(&release_mode, memory_order_relaxed) == ZA_RELEASE_FREE)
		return za_os_lazy_free(addr, len);
	return za_os_decommit(addr, len);
}

/*
 * Free blocks side by side that are not buddies (an order-0 block at pfn
 * 1 and an order-1 at pfn 2) never merge, but they are one range to the
 * kernel: the batch, in address order, goes out as one madvise per run of
 * touching blocks. A fuzz campaign's full reclaims made a call for each
 * block of a fragmented zone.
 */
static void release_batch(struct za_zone *zone, struct isolated *iso, unsigned cnt)
{
	for (unsigned i = 1; i < cnt; i++)
		for (unsigned j = i; j && iso[j - 1].pfn > iso[j].pfn; j--) {
			struct isolated t = iso[j];
			iso[j] = iso[j - 1];
			iso[j - 1] = t;
		}
	for (unsigned i = 0; i < cnt;) {
		uint32_t start = iso[i].pfn, end = start + (1u << iso[i].order);
		for (i++; i < cnt && iso[i].pfn == end; i++)
			end += 1u << iso[i].order;
		release_range(za_page_addr(zone, start), (size_t)(end - start) << ZA_PAGE_SHIFT);
	}
}

/*
 * Held from isolating a batch until it is put back (taken before the zone
 * lock): isolated blocks are known only to the reclaiming thread, so fork
 * takes this lock before the zone locks, and a child never inherits blocks
 * that are on no free list and belong to no one.
 */
static pthread_mutex_t reclaim_lock = PTHREAD_MUTEX_INITIALIZER;

void za_reclaim_lock(void)
{
	za_lock(&reclaim_lock);
}

void za_reclaim_unlock(void)
{
	pthread_mutex_unlock(&reclaim_lock);
}

void za_reclaim_reset_child(void)
{
	pthread_mutex_init(&reclaim_lock, NULL);
}

size_t za_reclaim_pass(uint64_t min_age_ms, size_t want_pages, size_t budget_blocks)
{
	struct isolated iso[ISOLATE_BATCH];
	uint64_t now = za_now_ms();
	size_t released = 0;
	int n = atomic_load_explicit(&za_nr_zones, memory_order_acquire);

	atomic_fetch_add_explicit(&st_passes, 1, memory_order_relaxed);
	for (int i = 0; i < n && released < want_pages && budget_blocks; i++) {
		struct za_zone *zone = &za_zones[i];
		for (;;) {
			if (!atomic_load(&zone->active) || released >= want_pages || !budget_blocks)
				break;
			size_t pages;
			za_lock(&reclaim_lock);
			za_lock(&zone->lock);
			unsigned cnt = atomic_load(&zone->active)
					       ? __isolate(zone, now, min_age_ms, want_pages - released,
							   &budget_blocks, iso, &pages)
					       : 0;
			pthread_mutex_unlock(&zone->lock);
			if (!cnt) {
				pthread_mutex_unlock(&reclaim_lock);
				break;
			}
			/* madvise with no zone lock held: the blocks are ours alone. */
			release_batch(zone, iso, cnt);
			za_lock(&zone->lock);
			for (unsigned j = 0; j < cnt; j++)
				__za_putback_released(zone, iso[j].pfn, iso[j].order);
			pthread_mutex_unlock(&zone->lock);
			pthread_mutex_unlock(&reclaim_lock);
			released += pages;
			atomic_fetch_add_explicit(&st_blocks, cnt, memory_order_relaxed);
			atomic_fetch_add_explicit(&st_pages, pages, memory_order_relaxed);
		}
	}
	return released;
}

size_t za_reclaim_zones(void)
{
	size_t unmapped = 0;
	int n = atomic_load_explicit(&za_nr_zones, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (za_zone_maybe_release(&za_zones[i]))
			unmapped++;
	return unmapped;
}

void za_reclaim_stats_get(struct za_reclaim_stats *st)
{
	st->passes = atomic_load(&st_passes);
	st->blocks_released = atomic_load(&st_blocks);
	st->pages_released = atomic_load(&st_pages);
	st->madvise_calls = atomic_load(&st_madvise);
}
