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
};

struct za_huge_stats {
	size_t count, bytes;          /* live mappings */
	size_t cached, cached_bytes;  /* freed ones kept for reuse */
	uint64_t reused;              /* allocations served from those */
};

void *za_huge_alloc(size_t size, size_t align, bool zero);
void za_huge_free(struct za_huge *h);
void *za_huge_resize(struct za_huge *h, size_t size);
void za_huge_stats(struct za_huge_stats *st);

ZA_NOINLINE void *za_shim_malloc_large(size_t size, size_t align, bool zero);
ZA_NOINLINE void za_shim_free_slow(void *p, const char *call);
/* free of p, at page pfn of zone and not in a slab: a run goes to this
 * thread's run cache; anything else to za_shim_free_slow. */
ZA_NOINLINE void za_shim_free_run(struct za_zone *zone, uint32_t pfn, void *p);
ZA_NOINLINE void *za_shim_nomem(za_status status);
ZA_COLD __attribute__((noreturn)) void za_shim_bad_slab_pointer(void *p, const char *call);
size_t za_shim_usable_size(const void *p, const char *call);
void *za_shim_realloc(void *p, size_t size);
void *za_shim_aligned(size_t align, size_t size);
void *za_shim_calloc(size_t n, size_t size);
void za_shim_free_sized(void *p, size_t align, size_t size, const char *call);
int za_shim_trim(void);
void za_huge_lock_all(void);
void za_huge_unlock_all(void);
void za_huge_reset_child(void);

/* malloc: the slab fast path inlined, everything else one call away. */
static inline void *za_shim_malloc(size_t size)
{
	if (likely(size <= ZA_SLAB_MAX)) {
		void *p = za_slab_alloc(za_size_class(size));
		return likely(p) ? p : za_shim_nomem(ZA_OK);
	}
	return za_shim_malloc_large(size, 0, false);
}

/*
 * If `p`, at page `pfn` of `zone`, is in a slab, returns its slab and
 * checks that p is the start of an object; NULL when the page is not a
 * slab's. The slab map byte, then the slab's head entry.
 */
static inline struct za_slab *za_shim_slab_at(struct za_zone *zone, uint32_t pfn, void *p,
					      const char *call)
{
	uint32_t head;
	struct za_page *page = za_slab_head_of(zone, pfn, &head);
	if (!page)
		return NULL;
	struct za_slab *slab = za_page_slab(page);
	unsigned cls = slab->cls;
	uint32_t off = (uint32_t)((uintptr_t)p - (uintptr_t)za_page_addr(zone, head));
	uint32_t idx = za_class_index(cls, off);
	if (unlikely(idx * za_classes[cls].size != off || idx >= slab->capacity))
		za_shim_bad_slab_pointer(p, call);
	return slab;
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

/* free: slab objects inline; everything else one tail call away, so the
 * slab path saves no registers. */
static inline void za_shim_free(void *p)
{
	if (unlikely(!p))
		return;
	/* The object's line is read (the double-free mark) and then written
	 * (the free list link): ask for it writable at once, one coherence
	 * round trip instead of two when another core wrote it last. */
	za_prefetch_write(p);
	struct za_zone *zone = za_zone_of(p);
	if (likely(zone)) {
		uint32_t pfn = za_pfn_of(zone, p);
		struct za_slab *slab = za_shim_slab_at(zone, pfn, p, "free");
		if (likely(slab)) {
			za_slab_free(slab, p);
			return;
		}
		za_shim_free_run(zone, pfn, p);
		return;
	}
	za_shim_free_slow(p, "free");
}

#endif
