/*
 * The router: size and alignment pick a tier, ownership picks the free.
 *
 *   size <= ZA_SLAB_MAX (32 KiB)             -> slab tier (thread heaps)
 *   size <= ZA_MAX_BLOCK_PAGES pages (4 MiB) -> exact page run (buddy)
 *   larger                                   -> huge: its own mmap
 *
 * free() finds the owner through the region table, never by guessing: a
 * zone's page map says slab or run; a huge region is its own record; no
 * region means the pointer is not ours, and that is reported.
 */
#ifndef ZA_SHIM_H
#define ZA_SHIM_H

#include <errno.h>

#include "buddy/buddy.h"
#include "shim/prof.h"
#include "slab/slab.h"

#define ZA_RUN_MAX ((size_t)ZA_MAX_BLOCK_PAGES << ZA_PAGE_SHIFT)

/* A huge mapping's record (meta memory). `region.size` is the mapped
 * length; `usable` what the caller may use. A freed mapping kept for
 * reuse (shim/huge.c) has its time and a link. */
struct za_huge {
	struct za_region region;
	size_t usable;
	uint64_t freed_ms;
	struct za_huge *next_free;
	bool thp;     /* asked for huge pages (cut at 2 MiB boundaries) */
	void *prof;   /* the heap profiler's record when sampled (prof.c) */
	/* Guard mode (guard.c): the block of `guard_size` bytes at `guard_user`
	 * ends at the mapping's no-access last page; no-access whole while
	 * quarantined (`guard_freed`). */
	bool guard, guard_freed;
	/* Closed in guard mode's quarantine and opened again: its pages
	 * fault at their next write anyway (the kernel reopens them
	 * write-protected), so a calloc that reuses the mapping gives them
	 * back to read zero rather than writing zeros over each. */
	bool reopened;
	size_t guard_size;
	uintptr_t guard_user;
};

struct za_huge_stats {
	size_t count, bytes;          /* live mappings */
	size_t cached, cached_bytes;  /* freed ones kept for reuse */
	uint64_t reused;              /* allocations served from those */
};

void *za_huge_alloc(size_t size, size_t align, bool zero);
void za_huge_free(struct za_huge *h);
/* The size of a recently freed huge block at p, 0 if none (huge.c). */
size_t za_huge_freed_size(const void *p);
void *za_huge_resize(struct za_huge *h, size_t size);
void za_huge_stats(struct za_huge_stats *st);

ZA_NOINLINE void *za_shim_malloc_large(size_t size, size_t align, bool zero);
extern size_t za_shim_run_max ZA_HIDDEN;
/* False when p was misuse (reported; under warn nothing was freed). */
ZA_NOINLINE bool za_shim_free_slow(void *p, const char *call);
/* free of p (not NULL) when the region table gives no untraced zone: a
 * traced zone's object (recorded, then freed as free's inline path would),
 * a huge block, a backend's or a foreign pointer. */
ZA_NOINLINE void za_shim_free_other(void *p);
/* free of p, at page pfn of zone and not in a slab: a run goes to this
 * thread's run cache; anything else to za_shim_free_slow. */
ZA_NOINLINE void za_shim_free_run(struct za_zone *zone, uint32_t pfn, void *p);
ZA_NOINLINE void *za_shim_nomem(za_status status);
/* Reports p (za_misuse); under warn returns &za_slab_sink. */
ZA_COLD struct za_slab *za_shim_bad_slab_pointer(void *p, const char *call);
size_t za_shim_usable_size(const void *p, const char *call);
/* The same without guard mode's checks (guard.c asks it of what is not its own). */
size_t za_shim_usable_size_plain(const void *p, const char *call);
void *za_shim_realloc(void *p, size_t size);
void *za_shim_aligned(size_t align, size_t size);
void *za_shim_calloc(size_t n, size_t size);
void *za_shim_calloc_uncounted(size_t total);   /* no profiler countdown */
void za_shim_free_sized(void *p, size_t align, size_t size, const char *call);
/* The usable size an allocation of `size` bytes aligned to `align` gets
 * (malloc for align <= 16, else the aligned path): a class size, whole
 * pages of a run, or a huge mapping's pages. */
size_t za_shim_usable_for(size_t size, size_t align);
/* Frees p, which must be aligned to `align` and, when `sized`, an
 * allocation of exactly `size` bytes (as za_shim_usable_for says): C++'s
 * aligned and sized deletes. Misuse otherwise. */
ZA_NOINLINE void za_shim_free_aligned_exact(void *p, size_t size, size_t align, bool sized,
					    const char *call);
/* The slab class for `size` bytes aligned to `align` (> 16); ZA_NCLASSES
 * when no slab serves it. */
unsigned za_shim_aligned_class(size_t size, size_t align);
ZA_COLD void za_shim_size_mismatch(void *p, size_t size, size_t align, const char *call);
int za_shim_trim(void);
void za_huge_lock_all(void);
void za_huge_unlock_all(void);
void za_huge_reset_child(void);

/* malloc without the heap profiler's countdown. */
static inline void *za_shim_malloc_uncounted(size_t size)
{
	if (likely(size <= ZA_DIRECT_MAX))
		return za_slab_alloc_small(size);
	if (likely(size <= ZA_SLAB_MAX))
		return za_slab_alloc(za_size_class(size));
	return za_shim_malloc_large(size, 0, false);
}

/* malloc: the profiler's countdown (never used up while profiling is
 * off: one subtraction and a branch), then the slab fast path inlined,
 * everything else one call away. The caller's return address is where a
 * sampled allocation's recorded stack starts. */
static inline void *za_shim_malloc(size_t size)
{
	if (za_tls_prof_due(size))
		return za_prof_alloc(size, false, __builtin_return_address(0));
	return za_shim_malloc_uncounted(size);
}

/*
 * p, at page `pfn` of `zone`, is in a slab, so - 1 pages above its head
 * (so, the slab map's byte, != 0): returns the slab after checking that p
 * is the start of one of its objects. The object's index is below the capacity
 * iff it is (za_class_index), and the head's entry, loaded anyway, holds
 * the class's reciprocal: no class table load, one compare. (Two compares
 * and the class table cost random_small 3 ns of 15 per operation.)
 */
static inline struct za_slab *za_shim_slab_valid(struct za_zone *zone, uint32_t pfn,
						 unsigned so, const void *p)
{
	struct za_page *page = za_page_at_plane0(zone, pfn + 1 - so);
	struct za_slab *slab = za_page_slab(page);
	uint32_t off = ((so - 1) << ZA_PAGE_SHIFT) | ((uint32_t)(uintptr_t)p & (ZA_PAGE_SIZE - 1));
	if (unlikely(za_class_index(page->owner_word, page->owner_data, off) >= slab->capacity))
		return NULL;
	return slab;
}

/* The same, reporting a pointer that is not an object's start (under
 * warn: &za_slab_sink, which the slow paths that call this look for). */
static inline struct za_slab *za_shim_slab_checked(struct za_zone *zone, uint32_t pfn,
						   unsigned so, void *p, const char *call)
{
	struct za_slab *slab = za_shim_slab_valid(zone, pfn, so, p);
	if (unlikely(!slab))
		return za_shim_bad_slab_pointer(p, call);
	return slab;
}

/* The slab of p, at page `pfn` of `zone`, checked as above; NULL when the
 * page is not a slab's. */
static inline struct za_slab *za_shim_slab_at(struct za_zone *zone, uint32_t pfn, void *p,
					      const char *call)
{
	unsigned so = zone->slab_map[pfn];
	return so ? za_shim_slab_checked(zone, pfn, so, p, call) : NULL;
}

/* The slab of a slab object p (checked as above); NULL when p is not in a
 * slab (a run, a huge mapping, or not ours). */
static inline struct za_slab *za_shim_slab_of(void *p, const char *call)
{
	struct za_zone *zone = za_zone_of(p);
	if (unlikely(!zone))
		return NULL;
	return za_shim_slab_at(zone, za_pfn_of(zone, p), p, call);
}

/*
 * free: slab objects inline (a region table load, a slab map byte, the
 * slab's entry, the object's check and push: ~50 instructions); everything
 * else one tail call away, so the slab path saves no registers. NULL has
 * no zone (slot 0 is never one) and is told apart off the fast path.
 */
/* free of p, which is in `zone`: a slab object, or a run (else misuse). */
static inline void za_shim_free_in_zone(struct za_zone *zone, void *p)
{
	uint32_t pfn = za_pfn_of(zone, p);
	unsigned so = zone->slab_map[pfn];
	if (likely(so)) {
		struct za_slab *slab = za_shim_slab_valid(zone, pfn, so, p);
		if (unlikely(!slab)) {
			/* A tail call: free's fast path keeps no frame. */
			za_shim_bad_slab_pointer(p, "free");
			return;
		}
		za_slab_free(slab, p);
		return;
	}
	za_shim_free_run(zone, pfn, p);
}

static inline void za_shim_free(void *p)
{
	uintptr_t e = za_region_entry(p);
	if (likely(e & ZA_REGION_TAG_ZONE)) {
		za_shim_free_in_zone((struct za_zone *)(e - ZA_REGION_TAG_ZONE), p);
		return;
	}
	if (p)
		za_shim_free_other(p);
}

/*
 * C++'s sized delete: free, after checking that `size` is what the object
 * was allocated with (its class is the one `size` maps to, or one that
 * lends to it: size_class.h). The slab case inline, the class compare
 * added to free's fast path; the rest exact too, one call away.
 */
static inline void za_shim_free_exact(void *p, size_t size, const char *call)
{
	uintptr_t e = za_region_entry(p);
	if (likely((e & ZA_REGION_TAG_ZONE) && size <= ZA_SLAB_MAX)) {
		struct za_zone *zone = (struct za_zone *)(e - ZA_REGION_TAG_ZONE);
		uint32_t pfn = za_pfn_of(zone, p);
		unsigned so = zone->slab_map[pfn];
		if (likely(so)) {
			struct za_slab *slab = za_shim_slab_valid(zone, pfn, so, p);
			if (unlikely(!slab)) {
				za_shim_bad_slab_pointer(p, call);
				return;
			}
			unsigned want = za_size_class(size);
			if (unlikely(slab->cls != want) && !za_class_lends(want, slab->cls)) {
				za_shim_size_mismatch(p, size, 0, call);
				return;   /* (warn) reported: the object leaks */
			}
			za_slab_free(slab, p);
			return;
		}
	}
	za_shim_free_aligned_exact(p, size, 0, true, call);
}

#endif
