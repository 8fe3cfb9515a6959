/*
 * The buddy core: zones carved from mmap, an out-of-band page map, free
 * lists by order, split and merge. After Linux mm/page_alloc.c.
 *
 * Functions named __za_* must be called with the zone's lock held.
 */
#ifndef ZA_BUDDY_H
#define ZA_BUDDY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "os/os.h"
#include "zonealloc.h"

/*
 * A zone is 64 MiB of address space aligned to 64 MiB, so the zone of any
 * address is `addr >> ZA_ZONE_SHIFT` and the page within it is
 * `(addr & (ZA_ZONE_SIZE - 1)) >> ZA_PAGE_SHIFT`. With 4 MiB max blocks a
 * zone holds 16 of them, and a block's buddy is always in the same zone.
 */
#define ZA_ZONE_SHIFT   26
#define ZA_ZONE_SIZE    ((size_t)1 << ZA_ZONE_SHIFT)
#define ZA_ZONE_PAGES   ((uint32_t)(ZA_ZONE_SIZE >> ZA_PAGE_SHIFT))
#define ZA_MAX_BLOCK_PAGES ((uint32_t)1 << (ZA_MAX_ORDER - 1))
#define ZA_MAX_ZONES    4096   /* 256 GiB of buddy heap */
#define ZA_VA_BITS      47     /* user address space on x86-64 and arm64 */
#define ZA_PFN_NONE     UINT32_MAX

/*
 * Pageblocks (the kernel's migrate types and pageblock flags). A zone is
 * cut into 2 MiB pageblocks, and a pageblock that holds anything is given
 * to one kind of allocation: slabs of small objects (the kernel's
 * UNMOVABLE: one survivor pins its slab), page runs (MOVABLE: freed whole,
 * so their pageblocks come back whole), and blocks the policy lets into
 * the reserve (ZA_F_HIGH: RECLAIMABLE's place in the fallback order). A
 * free block smaller than a pageblock is on the list of its pageblock's
 * kind, so an allocation splits blocks of its own kind first and a few
 * long-lived slabs cannot pin every 2 MiB of the zone. Blocks of a
 * pageblock or more belong to no kind (ZA_KIND_NONE, one list of their
 * own): a wholly free pageblock goes to whichever kind splits it first.
 * Only when neither its kind nor a whole pageblock has a block does a
 * request fall back to another kind's blocks ("steal", counted), claiming
 * the whole pageblock when half of it or more is free, as the kernel does.
 * ZONEALLOC_GROUPING=0 gives every request one kind (the kernel's
 * page_group_by_mobility_disabled).
 */
#define ZA_PAGEBLOCK_ORDER 9
#define ZA_PAGEBLOCK_PAGES (1u << ZA_PAGEBLOCK_ORDER)
enum za_kind { ZA_KIND_SLAB = 0, ZA_KIND_RUN, ZA_KIND_RESERVE, ZA_KINDS };
#define ZA_KIND_NONE  ZA_KINDS          /* whole free pageblocks (and larger) */
#define ZA_FREE_LISTS (ZA_KINDS + 1)    /* a free list per kind, and NONE's */
extern bool za_buddy_grouping ZA_HIDDEN;   /* ZONEALLOC_GROUPING (default on) */

/* What a page-map entry describes. Only block heads carry a state other
 * than ZA_PG_TAIL. */
enum za_page_state {
	ZA_PG_TAIL = 0,   /* inside a block whose head is lower */
	ZA_PG_FREE,       /* head of a free block, on free_area[order];
			   * `count` of its pages are released (not resident) */
	ZA_PG_BLOCK,      /* head of an allocated 2^order block */
	ZA_PG_RUN,        /* head of an allocated exact run of `count` pages */
	ZA_PG_PCP,        /* head of a block held by a per-thread cache */
	ZA_PG_SLAB,       /* head of a slab (2^order pages; the zone's slab
			   * map says which pages are in it); `count` is the
			   * slab tier's (its idle scan's note) */
	ZA_PG_RUN_CACHED, /* head of a freed exact run of `count` pages held by
			   * a per-thread cache for reuse */
	ZA_PG_STATE_COUNT
};

/* Page flags of an allocated block's head. */
#define ZA_PGF_FRESH 0x01  /* every page was released when taken: reads as
			    * zero if releasing zeroes (MADV_DONTNEED) */
/* Head of a free block the reclaimer took off its list to release it
 * (state ZA_PG_BLOCK until put back): its pages may be part released. */
#define ZA_PGF_ISOLATED 0x04
/* Head of a run the heap profiler sampled: `prof_sample` is its record
 * (shim/prof.c); free of a run tests it. */
#define ZA_PGF_SAMPLED 0x08
/* Head of a run guard mode placed against a no-access last page
 * (shim/guard.c): `private` holds the block's size and start; GUARD_FREED
 * while the run waits, no-access, in the quarantine. */
#define ZA_PGF_GUARD 0x10
#define ZA_PGF_GUARD_FREED 0x20

#define ZA_PAGE_PRIVATE_BYTES 48

/*
 * One entry per 4 KiB page, 64 bytes, kept out of band in the zone's page
 * map. next/prev link free blocks of one order (pfns within the zone);
 * `private`, `owner_data` and, while the block is allocated, `owner_word`
 * belong to whoever holds it: a per-thread cache links through `private`;
 * a slab keeps its descriptor there and its class's reciprocal and shift
 * in `owner_word` and `owner_data` (free's check, in the line it loads).
 */
struct za_page {
	union {
		uint32_t next;         /* free: list link */
		uint32_t owner_word;   /* allocated: the holder's */
	};
	uint32_t prev;         /* free: list link; pcp: zone index */
	uint8_t state;
	uint8_t order;
	uint8_t flags;
	uint8_t owner_data;    /* the holder's */
	uint32_t count;
	union {
		struct za_page *pcp_next;
		uint64_t freed_ms;   /* free block: when its resident pages were freed */
		void *prof_sample;   /* sampled run (ZA_PGF_SAMPLED) */
		unsigned char private[ZA_PAGE_PRIVATE_BYTES];
	};
};
_Static_assert(sizeof(struct za_page) == 64, "page map entry is one cache line");

/* Anything the region table can point at: a zone or a huge mapping. */
enum za_region_kind { ZA_REGION_ZONE = 1, ZA_REGION_HUGE = 2 };
struct za_region {
	uintptr_t base;
	size_t size;
	int kind;
};

/*
 * Invariants of a zone, kept under `lock` (all checked by za_buddy_check):
 *  - every page is covered by exactly one block: free, allocated, cached,
 *    a run, or a slab; a block of order k starts at a pfn divisible by 2^k;
 *  - a block is on free_area[k] iff its head is ZA_PG_FREE with order k;
 *    blocks with resident pages come before wholly released ones;
 *  - a free block of order k is on free_area[l][k], l its list
 *    (za_free_list_of: its pageblock's kind below ZA_PAGEBLOCK_ORDER, else
 *    ZA_KIND_NONE); a pageblock's kind is ZA_KIND_NONE iff it is wholly
 *    free in a block of ZA_PAGEBLOCK_ORDER or more (or the wilderness);
 *  - nr_free[k] counts the blocks of order k on all lists, bit k of
 *    list_mask[l] is set iff free_area[l][k] is not empty, bit k of
 *    free_mask iff nr_free[k] > 0 (bit ZA_MAX_ORDER iff wild_pfn <
 *    ZA_ZONE_PAGES),
 *    pages_free = sum of nr_free[k] << k plus the pages from wild_pfn on;
 *  - pages_released = sum of `count` over free heads (and the pages from
 *    wild_pfn on): the free pages whose
 *    memory was given back (or never touched); the zone commits
 *    ZA_ZONE_PAGES - pages_released pages, and za_committed_pages is the
 *    sum over zones plus huge mappings;
 *  - no two free buddies of equal order are left unmerged.
 */
struct za_zone {
	struct za_region region;   /* first: the region table points here */
	struct za_page *pages;     /* ZA_ZONE_PAGES entries */
	/* A bit per page, set when its memory is resident; clear when it was
	 * released or never touched (a fresh page map reads all clear). Only
	 * free pages may be clear. Kept beside the page map, so counting the
	 * released pages of a range is a few popcounts. */
	uint64_t *resident;
	/* A byte per page: 0 unless the page is in a slab, else 1 + its
	 * distance from the slab's head page (slabs are at most 32 pages), so
	 * free() finds a slab from 16 KiB of dense map (a cache line covers
	 * 256 KiB of heap) instead of a 64-byte entry per page, and the
	 * object's offset in the slab with a subtraction and a shift. */
	uint8_t *slab_map;
	int index;
	_Atomic int active;        /* mapped and serving */
	pthread_mutex_t lock;
	_Atomic uint32_t free_mask;  /* read without the lock as a hint */
	/* Pages from wild_pfn to the end of the zone are free, released and
	 * on no list yet: a new zone lists its max-order blocks one at a time
	 * as they are needed (each listing writes a page-map entry, and a
	 * page of the map per block: 60 KiB of RSS for a small program). Bit
	 * ZA_MAX_ORDER of free_mask is set while any remain. */
	uint32_t wild_pfn;
	uint32_t free_head[ZA_FREE_LISTS][ZA_MAX_ORDER], free_tail[ZA_FREE_LISTS][ZA_MAX_ORDER];
	uint32_t nr_free[ZA_MAX_ORDER];
	uint16_t list_mask[ZA_FREE_LISTS];
	uint8_t pageblock_kind[ZA_ZONE_PAGES >> ZA_PAGEBLOCK_ORDER];
	uint64_t fallbacks;         /* blocks taken from another kind's pageblock */
	uint64_t claims;            /* pageblocks those fallbacks claimed whole */
	_Atomic uint32_t pages_free;
	_Atomic uint32_t pages_released;
	uint64_t splits, merges;
	uint64_t alloc_calls[ZA_MAX_ORDER], free_calls[ZA_MAX_ORDER];
} __attribute__((aligned(64)));

/* Free blocks of order k in the zone, the wilderness's max-order blocks
 * counted (zone lock held). */
static inline uint32_t __za_zone_free_blocks(const struct za_zone *zone, unsigned k)
{
	uint32_t n = zone->nr_free[k];
	if (k == ZA_MAX_ORDER - 1)
		n += (ZA_ZONE_PAGES - zone->wild_pfn) / ZA_MAX_BLOCK_PAGES;
	return n;
}

/* The free list a free block of `order` at `pfn` belongs on. */
static inline unsigned za_free_list_of(const struct za_zone *zone, uint32_t pfn, unsigned order)
{
	return order >= ZA_PAGEBLOCK_ORDER ? ZA_KIND_NONE
					   : zone->pageblock_kind[pfn >> ZA_PAGEBLOCK_ORDER];
}

/* ---- region table: which zone or huge mapping owns an address ----
 *
 * One entry per 64 MiB slot: the region's address, with ZA_REGION_TAG_ZONE
 * set when the region is a zone. A zone fills its slot exactly, so for a
 * zone the entry alone answers (free's path: a load and a bit test); a
 * huge mapping may end inside its last slot, so its size is compared.
 * While calls are traced (shim/trace.c), zones carry ZA_REGION_TAG_TRACED
 * instead: free's inline path tests only ZA_REGION_TAG_ZONE, so every free
 * then takes the call that records it, and the fast path pays nothing for
 * tracing being possible. Everything else accepts either tag.
 */
#define ZA_REGION_TAG_ZONE ((uintptr_t)1)
#define ZA_REGION_TAG_TRACED ((uintptr_t)2)
#define ZA_REGION_TAGS (ZA_REGION_TAG_ZONE | ZA_REGION_TAG_TRACED)
/* The tag zones get when registered (za_region_retag_zones changes it). */
extern uintptr_t za_region_zone_tag ZA_HIDDEN;
void za_region_retag_zones(uintptr_t tag);
#define ZA_REGION_SLOTS ((size_t)1 << (ZA_VA_BITS - ZA_ZONE_SHIFT))

extern uintptr_t za_region_table[ZA_REGION_SLOTS] ZA_HIDDEN;

static inline uintptr_t za_region_entry(const void *addr)
{
	uintptr_t slot = (uintptr_t)addr >> ZA_ZONE_SHIFT;
	if (unlikely(slot >= ZA_REGION_SLOTS))
		return 0;
	return __atomic_load_n(&za_region_table[slot], __ATOMIC_ACQUIRE);
}

/* O(1), and never faults, whatever the address. */
static inline struct za_region *za_region_of(const void *addr)
{
	uintptr_t e = za_region_entry(addr);
	struct za_region *r = (struct za_region *)(e & ~ZA_REGION_TAGS);
	if (likely(e & ZA_REGION_TAGS))
		return r;
	if (r && (uintptr_t)addr - r->base < r->size)
		return r;
	return NULL;
}

static inline struct za_zone *za_zone_of(const void *addr)
{
	uintptr_t e = za_region_entry(addr);
	return likely(e & ZA_REGION_TAGS) ? (struct za_zone *)(e & ~ZA_REGION_TAGS) : NULL;
}

#define ZA_PAGE_MAP_BYTES \
	((size_t)ZA_ZONE_PAGES * sizeof(struct za_page) + ZA_ZONE_PAGES / 8 + ZA_ZONE_PAGES)

/*
 * The page map is stored transposed: the entry of pfn is at index
 * (pfn / ZA_MAP_PLANES) + (pfn % ZA_MAP_PLANES) * (ZA_ZONE_PAGES /
 * ZA_MAP_PLANES), so the entries of pfns that share their residue mod 16
 * (a "plane") lie side by side. Slabs are blocks of 16 or 32 pages and
 * most free blocks are of order 4 or more: their heads all fall in plane
 * 0, and a 4 KiB page of it holds the heads of 4 MiB of zone where the
 * plain layout held 256 KiB. A program whose slabs are spread over the
 * zone (a first slab per size class, each 64-128 KiB of address space
 * with a page or two carved) touched a page of map per two to four of
 * them; now one per up to 64 (DESIGN-NOTES, "The page map is stored in
 * planes": rptestN's map 608 KiB resident at its peak, 48 after). Tail
 * entries, which nothing writes, are what the other planes hold. Every
 * access goes through za_page_at/za_page_pfn.
 */
#define ZA_MAP_PLANE_ORDER 4
#define ZA_MAP_PLANES      (1u << ZA_MAP_PLANE_ORDER)
#define ZA_MAP_PLANE_SHIFT (ZA_ZONE_SHIFT - ZA_PAGE_SHIFT - ZA_MAP_PLANE_ORDER)

static inline struct za_page *za_page_at(const struct za_zone *zone, uint32_t pfn)
{
	return &zone->pages[(pfn >> ZA_MAP_PLANE_ORDER) |
			    ((pfn & (ZA_MAP_PLANES - 1)) << ZA_MAP_PLANE_SHIFT)];
}

/* The same for a pfn that is a multiple of ZA_MAP_PLANES (a slab's head:
 * slabs are of order ZA_MAP_PLANE_ORDER or more, za_buddy_check checks
 * it), one shift where za_page_at takes four operations. */
static inline struct za_page *za_page_at_plane0(const struct za_zone *zone, uint32_t pfn)
{
	/* pfn / 16 entries of 64 bytes are pfn * 4 bytes when 16 divides
	 * pfn: one shift, as the plain layout took */
	_Static_assert(sizeof(struct za_page) % ZA_MAP_PLANES == 0, "plane-0 offset");
	return (struct za_page *)(void *)((char *)zone->pages +
					  (size_t)pfn * (sizeof(struct za_page) / ZA_MAP_PLANES));
}

static inline uint32_t za_page_pfn(const struct za_zone *zone, const struct za_page *page)
{
	uint32_t i = (uint32_t)(page - zone->pages);
	return ((i & ((1u << ZA_MAP_PLANE_SHIFT) - 1)) << ZA_MAP_PLANE_ORDER) |
	       (i >> ZA_MAP_PLANE_SHIFT);
}

static inline uint32_t za_page_pfn_plane0(const struct za_zone *zone, const struct za_page *page)
{
	return (uint32_t)(((const char *)page - (const char *)zone->pages) /
			  (sizeof(struct za_page) / ZA_MAP_PLANES));
}

/* The head page of the slab that holds page pfn, or NULL when the page is
 * not in a slab. One byte load. */
static inline struct za_page *za_slab_head_of(const struct za_zone *zone, uint32_t pfn,
					      uint32_t *head_pfn)
{
	unsigned d = zone->slab_map[pfn];
	if (!d)
		return NULL;
	*head_pfn = pfn + 1 - d;
	return za_page_at_plane0(zone, *head_pfn);
}

static inline bool za_page_resident(const struct za_zone *zone, uint32_t pfn)
{
	return (zone->resident[pfn / 64] >> (pfn % 64)) & 1;
}

/* Released (clear) pages among [pfn, pfn + n). */
static inline uint32_t za_count_released(const struct za_zone *zone, uint32_t pfn, uint32_t n)
{
	uint32_t resident = 0, end = pfn + n;
	while (pfn < end) {
		uint32_t bit = pfn % 64, len = 64 - bit < end - pfn ? 64 - bit : end - pfn;
		uint64_t mask = len == 64 ? ~0ull : ((1ull << len) - 1) << bit;
		resident += (uint32_t)__builtin_popcountll(zone->resident[pfn / 64] & mask);
		pfn += len;
	}
	return n - resident;
}

/* Sets (resident) or clears (released) the bits of [pfn, pfn + n). */
static inline void za_mark_resident(struct za_zone *zone, uint32_t pfn, uint32_t n, bool on)
{
	uint32_t end = pfn + n;
	while (pfn < end) {
		uint32_t bit = pfn % 64, len = 64 - bit < end - pfn ? 64 - bit : end - pfn;
		uint64_t mask = len == 64 ? ~0ull : ((1ull << len) - 1) << bit;
		if (on)
			zone->resident[pfn / 64] |= mask;
		else
			zone->resident[pfn / 64] &= ~mask;
		pfn += len;
	}
}

/* The order of the smallest block holding npages pages (npages >= 1). */
static inline unsigned za_order_for_pages(size_t npages)
{
	return npages <= 1 ? 0 : 64u - (unsigned)__builtin_clzll(npages - 1);
}

/* Zones are aligned to their size: the page within one is address bits. */
static inline uint32_t za_pfn_of(const struct za_zone *zone, const void *addr)
{
	(void)zone;
	return (uint32_t)(((uintptr_t)addr & (ZA_ZONE_SIZE - 1)) >> ZA_PAGE_SHIFT);
}

static inline void *za_page_addr(const struct za_zone *zone, uint32_t pfn)
{
	return (void *)(zone->region.base + ((uintptr_t)pfn << ZA_PAGE_SHIFT));
}

/* Registers [base, base+size) (base aligned to the zone size); 0 or errno. */
int za_region_register(struct za_region *r);
void za_region_unregister(struct za_region *r);

/* ---- zones (buddy/zone.c) ---- */

/* What a layer above checks of its own blocks when za_buddy_check runs
 * (guard mode's canaries and quarantine, shim/guard.c): per zone, under
 * its lock, and once after the zones, under none. They fill `res` (may
 * be NULL) and return -1 on a fault. */
struct za_check_result;
extern int (*za_check_zone_hook)(struct za_zone *zone, struct za_check_result *res) ZA_HIDDEN;
extern int (*za_check_hook)(struct za_check_result *res) ZA_HIDDEN;
extern struct za_zone za_zones[ZA_MAX_ZONES] ZA_HIDDEN;
extern _Atomic int za_nr_zones;   /* zones[0 .. za_nr_zones) ever used */
extern pthread_mutex_t za_zones_lock;
/* Zone lifetime counters, under za_zones_lock. */
struct za_zone_counters {
	uint64_t mapped, unmapped;
};
extern struct za_zone_counters za_zone_stats;

/* Maps one more zone unless a zone already has a block of `order` (another
 * thread grew first); ZA_OK or ZA_ENOMEM_OS. */
za_status za_zone_grow(unsigned order);
/* Unmaps `zone` if it is wholly free and another wholly free zone remains
 * as a spare; true if it was unmapped. */
bool za_zone_maybe_release(struct za_zone *zone);

/* ---- the page allocator (buddy/page_alloc.c) ---- */

struct za_merge_result {
	unsigned order_in;
	unsigned order_out;
	unsigned merges;
};

/* Takes the smallest 2^order-or-larger block whose taking commits at most
 * *budget pages (which it lowers by what it took), and splits it; sets ZA_PGF_FRESH in the head's flags when
 * all its pages were released. ZA_PFN_NONE when there is none. */
uint32_t __za_rmqueue(struct za_zone *zone, unsigned order, unsigned kind, size_t *budget);
/* When __za_rmqueue found nothing in any zone: a block of another kind's
 * pageblocks (the kernel's __rmqueue_fallback), the largest first; unless
 * `any`, only one that claims its pageblock or has resident pages. */
uint32_t __za_rmqueue_fallback(struct za_zone *zone, unsigned order, unsigned kind,
			       size_t *budget, bool any);
uint32_t __za_rmqueue_smallest(struct za_zone *zone, unsigned order);
/* Lists every max-order block still in the wilderness (tests). */
void __za_wild_list_all(struct za_zone *zone);
/* Frees a block of which `released` pages are released (0 for memory the
 * caller used, 2^order for memory given back). */
struct za_merge_result __za_free_one(struct za_zone *zone, uint32_t pfn, unsigned order,
				     uint32_t released);
/* Takes a free block off its list for the reclaimer (state BLOCK);
 * returns how many of its pages were already released. */
uint32_t __za_isolate_free(struct za_zone *zone, uint32_t pfn, unsigned order);
/* Returns an isolated block whose memory was released to the free lists. */
void __za_putback_released(struct za_zone *zone, uint32_t pfn, unsigned order);
/* Frees [pfn, end) as the largest aligned blocks that fit. */
void __za_free_range(struct za_zone *zone, uint32_t pfn, uint32_t end, bool released);

/* Takes a 2^order block for an allocation of `kind` from any zone
 * (per-thread cache first), newly committing at most `budget` pages
 * (SIZE_MAX: no limit); NULL when no zone has one. Never grows, never
 * blocks beyond the zone locks. */
void *za_buddy_alloc(unsigned order, unsigned kind, size_t budget);
/* The same, taking any other kind's block: for when no zone can be added. */
void *za_buddy_alloc_fallback(unsigned order, unsigned kind, size_t budget);
/* Returns a block taken with za_buddy_alloc; the state is checked first. */
void za_buddy_free(void *block, unsigned order);
/* Shortens a block just taken with za_buddy_alloc to an exact run. */
void za_buddy_make_run(void *block, unsigned order, uint32_t npages);
void za_buddy_free_run(void *run, uint32_t npages);
/* Gives a run whose head the caller found in state ZA_PG_RUN back to its
 * zone, past the per-thread cache. */
void za_buddy_run_to_zone(struct za_zone *zone, uint32_t pfn);
/* Gives the zones mapped so far ZONEALLOC_THP's advice (new ones get it
 * when mapped): the option is read after the first allocations. */
void za_zones_thp_advise(void);
/* Shrinks or grows a run in place; false (run unchanged) when the pages
 * after it are not free, or (unless into_released) not all resident. */
bool za_buddy_resize_run(void *run, uint32_t npages, bool into_released);
/* Pages of the run at `run`, or 0 when it is not the head of a run. */
size_t za_buddy_run_pages(const void *run);
/* addr was given back as a page block or run lately (page_alloc.c: the
 * ring that tells a double free from a pointer into never-used pages). */
bool za_buddy_freed_recently(const void *addr);
void za_buddy_freed_note(const void *addr);
/* Turns an allocated block into ZA_PG_SLAB (tails point to the head). */
struct za_page *za_buddy_make_slab(void *block, unsigned order);
void za_buddy_free_slab(void *block);

size_t za_buddy_free_pages_total(void);
/* True when a block just taken reads as zero (it was wholly released). */
bool za_buddy_block_fresh(const void *block);
/* Makes `bytes` at the start of a block just taken, not fresh, read as
 * zero (memset, or madvise when it is mostly out of memory). */
void za_buddy_block_clear(void *block, size_t bytes);

/* ---- committed memory and reclaim (buddy/reclaim.c) ---- */

/* Pages the heap holds from the OS: allocated plus retained free. */
extern _Atomic int64_t za_committed_pages;
/* The most za_committed_pages has been (the stats' peak committed). */
extern _Atomic int64_t za_committed_peak;

/* Committed memory went up by `pages`: the peak follows. */
static inline void za_commit_add(int64_t pages)
{
	int64_t now = atomic_fetch_add_explicit(&za_committed_pages, pages, memory_order_relaxed) + pages;
	int64_t peak = atomic_load_explicit(&za_committed_peak, memory_order_relaxed);
	while (unlikely(now > peak) &&
	       !atomic_compare_exchange_weak_explicit(&za_committed_peak, &peak, now,
						      memory_order_relaxed, memory_order_relaxed))
		;
}
extern _Atomic int64_t za_zone_span_pages;   /* pages of zones mapped */

enum za_release_mode { ZA_RELEASE_DONTNEED = 0, ZA_RELEASE_FREE = 1 };
void za_reclaim_set_mode(enum za_release_mode mode);
bool za_released_reads_zero(void);

/* Releases retained free blocks, largest first: those freed at least
 * `min_age_ms` ago, until `want_pages` were released or `budget_blocks`
 * blocks were examined. Returns pages released. Takes and drops zone
 * locks; madvise runs with no lock held. */
size_t za_reclaim_pass(uint64_t min_age_ms, size_t want_pages, size_t budget_blocks);
/* Unmaps wholly free zones beyond one spare. Returns zones unmapped. */
size_t za_reclaim_zones(void);
/* Fork: a reclaim batch (isolate, madvise, put back) holds this lock;
 * taken after the per-thread cache locks, before the zone locks. */
void za_reclaim_lock(void);
void za_reclaim_unlock(void);
void za_reclaim_reset_child(void);
uint64_t za_now_ms(void);
uint64_t za_now_ms_cheap(void);   /* may lag by a few calls */

struct za_reclaim_stats {
	uint64_t passes, blocks_released, pages_released, madvise_calls;
};
void za_reclaim_stats_get(struct za_reclaim_stats *st);

/* ---- per-thread page caches (buddy/pcp.c) ---- */

#define ZA_PCP_ORDERS 4   /* orders 0..3 are cached (kernel: costly order) */

/* Freed exact runs are cached per thread too (up to 1 MiB; buddy/pcp.h),
 * so a program that takes and frees the same medium size in a loop reuses
 * the same warm run without a zone lock, a split or a merge. */
void *za_pcp_alloc(unsigned order, size_t budget);
bool za_pcp_free(struct za_zone *zone, uint32_t pfn, unsigned order);
void za_pcp_drain_self(void);
void za_pcp_drain_all(void);
size_t za_pcp_pages_cached(void);
void za_pcp_lock_all(void);
void za_pcp_unlock_all(void);
void za_pcp_reset_child(void);
uint64_t za_pcp_drain_count(void);

/* ---- internal metadata objects (buddy/meta.c) ---- */

void *za_meta_alloc(size_t size);           /* zeroed, 64-byte aligned */
void za_meta_free(void *obj, size_t size);
void za_meta_lock(void);
void za_meta_unlock(void);
void za_meta_reset_child(void);

/* ---- misuse ---- */

/* Reports a bad page-level free (za_misuse): returns under warn only,
 * and the caller then frees nothing. */
void za_buddy_bad_free(const void *ptr, const char *call, const char *what,
		       const struct za_zone *zone, uint32_t pfn, int expected_order)
	__attribute__((cold));

/* Locks for fork. */
void za_buddy_lock_all(void);
void za_buddy_unlock_all(void);
void za_buddy_reset_child(void);

#endif
