/*
 * The tier above the slabs, exact page runs from the buddy core (huge
 * allocations, beyond them, are shim/huge.c), and the malloc family's
 * calls that are not a fast path: free of runs and misuse, realloc,
 * aligned allocation, calloc, sized free.
 */
#include <errno.h>
#include <string.h>

#include "policy/policy.h"
#include "shim/backend.h"
#include "shim/prof.h"
#include "shim/shim.h"
#include "shim/guard.h"
#include "shim/trace.h"

extern __thread za_status za_tls_status;

void *za_shim_nomem(za_status status)
{
	/* A request of 2^63 bytes or more leaves the countdown above 0 even
	 * from ZA_PROF_ASK, without asking; such a request always ends here,
	 * and traces and guard mode, which need every allocation to ask, put
	 * the countdown back. */
	if (unlikely(za_trace_on || za_guard_state != ZA_GUARD_OFF))
		za_tls.prof_left = ZA_PROF_ASK;   /* (UNKNOWN: the next one decides) */
	if (status != ZA_OK)
		za_tls_status = za_policy_outcome(status, NULL);
	errno = ENOMEM;
	return NULL;
}

/* ZA_RUN_MAX while zonealloc serves; 0 once a backend does (backend.c),
 * so the one compare that sends huge requests off the run path sends
 * every request there: the run path pays nothing for the backends. */
size_t za_shim_run_max = ZA_RUN_MAX;

/* Huge, or a backend serving. */
static ZA_NOINLINE void *malloc_large_other(size_t size, size_t align, bool zero)
{
	if (za_backend_serving())
		return za_backend_alloc(size, align, zero);
	void *p = za_huge_alloc(size, align, zero);
	return p ? p : za_backend_fallback(size, align, zero);
}

/* A run could not be had: the fallback (with what the run would have
 * been), or NULL and ENOMEM. */
static ZA_NOINLINE void *malloc_large_failed(size_t npages, unsigned align_order, bool zero)
{
	void *p = za_backend_fallback(npages << ZA_PAGE_SHIFT,
				      align_order ? ZA_PAGE_SIZE << align_order : 16, zero);
	return p ? p : za_shim_nomem(ZA_OK);
}

void *za_shim_malloc_large(size_t size, size_t align, bool zero)
{
	/* Within ZA_RUN_MAX, both orders are below ZA_MAX_ORDER. */
	size_t max = za_shim_run_max;
	if (unlikely(size > max || align > max))
		return malloc_large_other(size, align, zero);

	size_t npages = (size + ZA_PAGE_SIZE - 1) >> ZA_PAGE_SHIFT;
	unsigned align_order = align > ZA_PAGE_SIZE ? za_order_for_pages(align >> ZA_PAGE_SHIFT) : 0;
	za_status st;
	bool fresh;
	void *p = za_policy_alloc_run((uint32_t)npages, align_order, NULL, &st, &fresh);
	if (unlikely(!p))
		return malloc_large_failed(npages, align_order, zero);
	if (zero && !fresh)   /* released pages read as zero already */
		za_buddy_block_clear(p, npages << ZA_PAGE_SHIFT);
	return p;
}

struct za_slab *za_shim_bad_slab_pointer(void *p, const char *call)
{
	struct za_zone *zone = za_zone_of(p);
	za_misuse("%s(%p): interior pointer: not the start of an object in the slab at zone %d pfn %u",
		  call, p, zone->index, za_pfn_of(zone, p));
	return &za_slab_sink;
}

void za_shim_free_run(struct za_zone *zone, uint32_t pfn, void *p)
{
	struct za_page *head = za_page_at(zone, pfn);
	if (unlikely(head->state != ZA_PG_RUN || ((uintptr_t)p & (ZA_PAGE_SIZE - 1)))) {
		za_shim_free_slow(p, "free");
		return;
	}
	if (unlikely(head->flags & ZA_PGF_SAMPLED)) {
		head->flags &= (uint8_t)~ZA_PGF_SAMPLED;
		za_prof_forget(head->prof_sample);
	}
	if (!za_pcp_run_free(head, p, head->count))
		za_buddy_run_to_zone(zone, pfn);
}

void za_shim_free_other(void *p)
{
	struct za_trace_call c;
	bool recording = unlikely(za_trace_on) && za_trace_begin(&c);
	uintptr_t e = za_region_entry(p);
	if (unlikely(za_guard_state == ZA_GUARD_ON)) {
		za_guard_free(p, 0, 0, false, "free");
	} else if (e & ZA_REGION_TAG_TRACED) {   /* a zone whose frees are recorded */
		za_shim_free_in_zone((struct za_zone *)(e & ~ZA_REGION_TAGS), p);
	} else {
		za_shim_free_slow(p, "free");
	}
	if (recording)
		za_trace_end(&c, ZA_TOP_FREE, p, 0, 0, 0, 0);
}

bool za_shim_free_slow(void *p, const char *call)
{
	struct za_region *r = za_region_of(p);
	if (unlikely(!r)) {
		if (za_backend_owns(p)) {
			za_backend_free(p);
			return true;
		}
		size_t freed = za_huge_freed_size(p);
		if (freed)
			za_misuse("%s(%p): double free of a huge block (%zu bytes, freed before)", call,
				  p, freed);
		else
			za_misuse("%s(%p): pointer not allocated by zonealloc (no zone or huge "
				  "mapping owns it)", call, p);
		return false;
	}
	if (r->kind == ZA_REGION_HUGE) {
		if (unlikely((uintptr_t)p != r->base)) {
			za_misuse("%s(%p): interior pointer into the huge allocation at %p", call, p,
				  (void *)r->base);
			return false;
		}
		za_huge_free((struct za_huge *)r);
		return true;
	}
	struct za_zone *zone = (struct za_zone *)r;
	uint32_t pfn = za_pfn_of(zone, p);
	if (unlikely((uintptr_t)p & (ZA_PAGE_SIZE - 1)) || za_page_at(zone, pfn)->state != ZA_PG_RUN) {
		uint8_t state = za_page_at(zone, pfn)->state;
		/* Free pages are a double free only if a run or block was
		 * given back there lately (buddy: the freed ring); else the
		 * pointer is into pages never handed out, such as a run's
		 * unused tail. */
		const char *what = state == ZA_PG_RUN_CACHED ||
						   ((state == ZA_PG_FREE || state == ZA_PG_PCP ||
						     state == ZA_PG_TAIL) &&
						    za_buddy_freed_recently(p))
					   ? "double free"
				   : state == ZA_PG_BLOCK
					   ? "page block from za_alloc_pages freed with free"
					   : "not the start of an allocation";
		za_buddy_bad_free(p, call, what, zone, pfn, -1);
		return false;
	}
	za_buddy_free_run(p, 0);
	return true;
}

size_t za_shim_usable_size(const void *p, const char *call)
{
	if (unlikely(za_guard_state == ZA_GUARD_ON))
		return za_guard_usable_size(p, call);
	return za_shim_usable_size_plain(p, call);
}

size_t za_shim_usable_size_plain(const void *p, const char *call)
{
	if (!p)
		return 0;
	struct za_slab *slab = za_shim_slab_of((void *)p, call);
	if (slab) {
		if (unlikely(slab == &za_slab_sink))
			return 0;   /* reported (warn) */
		/* A freed object carries the free mark; confirmed on the lists
		 * (user data may hold the mark by chance). */
		void *const *w = p;
		if (unlikely((uintptr_t)w[1] == (za_slab_keys.mark ^ (uintptr_t)p)) &&
		    za_slab_object_free(slab, (void *)p)) {
			za_misuse("%s(%p): the %u-byte slab object was freed", call, p,
				  za_classes[za_slab_class(slab)].size);
			return 0;
		}
		return za_classes[za_slab_class(slab)].size;
	}
	struct za_region *r = za_region_of(p);
	if (r && r->kind == ZA_REGION_HUGE && (uintptr_t)p == r->base)
		return ((struct za_huge *)r)->usable;
	if (!r && za_backend_owns(p))
		return za_backend_usable_size((void *)p);
	size_t pages = za_buddy_run_pages(p);
	if (pages)
		return pages << ZA_PAGE_SHIFT;
	size_t freed = r ? 0 : za_huge_freed_size(p);
	struct za_zone *zone = r && r->kind == ZA_REGION_ZONE ? (struct za_zone *)r : NULL;
	if (freed)
		za_misuse("%s(%p): the huge block was freed (%zu bytes)", call, p, freed);
	else if (zone && !((uintptr_t)p & (ZA_PAGE_SIZE - 1)) &&
		 (za_page_at(zone, za_pfn_of(zone, p))->state == ZA_PG_RUN_CACHED ||
		  za_buddy_freed_recently(p)))
		za_misuse("%s(%p): the run was freed", call, p);
	else
		za_misuse("%s(%p): pointer not allocated by zonealloc", call, p);
	return 0;   /* (warn) */
}

/*
 * realloc beyond a slab object's class moves it, and a buffer grown by
 * small appends would be copied once per class it passes. Past
 * REALLOC_RUN_MIN it moves into an exact page run instead, which later
 * growth extends in place over the free pages after it (as glibc extends
 * its top chunk) and shrinking trims in place.
 */
#define REALLOC_RUN_MIN (2 * ZA_PAGE_SIZE)

/*
 * Moves an allocation: the old one stays intact if the new one fails. A
 * move to grow takes at least a quarter more than the old size (tcmalloc's
 * rule), so growth that cannot stay in place moves O(log n) times;
 * malloc_usable_size reports the room. Under a limit, where memory is
 * counted, a move takes what was asked.
 */
static void *realloc_move(void *p, size_t old_usable, size_t size)
{
	size_t want = size;
	bool grow = size > old_usable;
	if (grow && size < old_usable + old_usable / 4 &&
	    za_policy_budget(za_policy_current()) == SIZE_MAX)
		want = old_usable + old_usable / 4;
	void *q = grow && want > REALLOC_RUN_MIN ? za_shim_malloc_large(want, 0, false)
						 : za_shim_malloc(want);
	if (!q)
		return NULL;
	memcpy(q, p, old_usable < size ? old_usable : size);
	za_shim_free(p);
	return q;
}

/* realloc of an exact run: in place while it loses no more than a quarter
 * (so the room a growing move took is not trimmed by the next append; mimalloc
 * keeps up to half), or when the run can shrink or grow where it is. */
static void *realloc_run(void *p, uint32_t pages, size_t size)
{
	if (size > REALLOC_RUN_MIN && size <= ZA_RUN_MAX) {
		size_t npages = (size + ZA_PAGE_SIZE - 1) >> ZA_PAGE_SHIFT;
		if (npages <= pages && npages * 4 >= (size_t)pages * 3)
			return p;
		/* Growing in place may commit released pages after the run:
		 * only while the limit has room for all of them (otherwise the
		 * move goes through the policy's slow path). */
		size_t budget = za_policy_budget(za_policy_current());
		bool fits = npages <= pages || budget >= npages - pages;
		/* Under a limit, growing in place (even into released pages)
		 * spares holding two copies; without one, warm memory first:
		 * growing into released pages let buffers walk a zone into RSS
		 * while warm free blocks sat elsewhere. */
		if (fits && za_buddy_resize_run(p, (uint32_t)npages, budget != SIZE_MAX))
			return p;
	}
	return realloc_move(p, (size_t)pages << ZA_PAGE_SHIFT, size);
}

/* realloc of a pointer that was misuse (reported, under warn): it fails,
 * and the pointer is left as it was. */
static ZA_NOINLINE void *realloc_refused(void)
{
	errno = EINVAL;
	return NULL;
}

/* realloc of p, in `zone`: in place where it can, else moved. */
static inline __attribute__((always_inline)) void *realloc_in_zone(struct za_zone *zone, void *p,
								     size_t size)
{
	uint32_t pfn = za_pfn_of(zone, p);
	struct za_page *page = za_page_at(zone, pfn);
	struct za_slab *slab = za_shim_slab_at(zone, pfn, p, "realloc");
	if (slab) {
		if (unlikely(slab == &za_slab_sink))
			return realloc_refused();
		size_t usable = za_classes[za_slab_class(slab)].size;
		/* In place while the object is no more than half empty. */
		if (size <= usable && (size > usable / 2 || usable <= 16))
			return p;
		return realloc_move(p, usable, size);
	}
	if (page->state == ZA_PG_RUN && !((uintptr_t)p & (ZA_PAGE_SIZE - 1))) {
		/* A sampled block moves, so its record goes with the free
		 * and its size stays the one asked for. */
		if (unlikely(page->flags & ZA_PGF_SAMPLED))
			return realloc_move(p, (size_t)page->count << ZA_PAGE_SHIFT, size);
		return realloc_run(p, page->count, size);
	}
	/* Not an allocation's start: free's checks name the misuse. */
	if (!za_shim_free_slow(p, "realloc"))
		return realloc_refused();
	za_fatal("realloc(%p): not the start of an allocation", p);
}

/* realloc of p when its region entry `e` is no untraced zone: a traced
 * zone's block (the call is recorded), a huge block, a backend's. */
static ZA_NOINLINE void *realloc_other(void *p, size_t size, uintptr_t e)
{
	struct za_trace_call c;
	if (unlikely(za_trace_on) && za_trace_begin(&c)) {
		void *q = realloc_other(p, size, e);
		za_trace_end(&c, ZA_TOP_REALLOC, q, size, (uintptr_t)p, 0, q ? 0 : ZA_TRACE_FAILED);
		return q;
	}
	if (unlikely(za_guard_state == ZA_GUARD_ON))
		return za_guard_realloc(p, size);
	if (e & ZA_REGION_TAG_TRACED)
		return realloc_in_zone((struct za_zone *)(e & ~ZA_REGION_TAGS), p, size);
	struct za_region *r = za_region_of(p);
	if (!r && za_backend_owns(p))
		return za_backend_realloc(p, size);
	if (r && r->kind == ZA_REGION_HUGE && (uintptr_t)p == r->base) {
		struct za_huge *h = (struct za_huge *)r;
		/* The resize and the move are one request for the policy's
		 * handler bounds (each may charge the limit). */
		za_policy_request_enter();
		void *q = size > ZA_RUN_MAX && !h->prof ? za_huge_resize(h, size) : NULL;
		if (!q)
			q = realloc_move(p, h->usable, size);
		za_policy_request_exit();
		return q;
	}
	if (!za_shim_free_slow(p, "realloc"))
		return realloc_refused();
	za_fatal("realloc(%p): not the start of an allocation", p);
}

/* realloc(NULL, n) is malloc and realloc(p, 0) free (glibc's choice), and
 * are traced as those. */
void *za_shim_realloc(void *p, size_t size)
{
	if (!p)
		return za_shim_malloc(size);
	if (size == 0) {
		/* glibc frees and returns NULL. */
		za_shim_free(p);
		return NULL;
	}
	uintptr_t e = za_region_entry(p);
	if (likely(e & ZA_REGION_TAG_ZONE))
		return realloc_in_zone((struct za_zone *)(e - ZA_REGION_TAG_ZONE), p, size);
	return realloc_other(p, size, e);
}

/*
 * The slab class of `size` bytes aligned to `align` (16 < align): the first
 * class that is a multiple of the alignment, as objects sit at multiples of
 * their size from a page-aligned slab start (classes include every multiple
 * of their step, so this over-allocates less than the alignment);
 * ZA_NCLASSES when no slab serves it.
 */
unsigned za_shim_aligned_class(size_t size, size_t align)
{
	if (size > ZA_SLAB_MAX || align > ZA_PAGE_SIZE)
		return ZA_NCLASSES;
	size_t want = (size + align - 1) & ~(align - 1);
	if (want == 0)
		want = align;
	if (want > ZA_SLAB_MAX)
		return ZA_NCLASSES;
	unsigned cls = za_size_class(want);
	while (za_classes[cls].size & (align - 1))
		cls++;
	return cls;
}

void *za_shim_aligned(size_t align, size_t size)
{
	if (unlikely(za_trace_on)) {
		struct za_trace_call c;
		if (za_trace_begin(&c)) {
			void *p = za_shim_aligned(align, size);
			za_trace_end(&c, ZA_TOP_MEMALIGN, p, size, 0, align, p ? 0 : ZA_TRACE_FAILED);
			return p;
		}
	}
	if (align <= 16)
		return za_shim_malloc(size);
	if (unlikely(za_guard_active()))
		return za_guard_alloc(size, align, false);
	if (za_backend_serving())
		return za_backend_alloc(size ? size : 1, align, false);
	unsigned cls = za_shim_aligned_class(size, align);
	if (cls < ZA_NCLASSES) {
		void *p = za_slab_alloc_exact(cls);
		if (!p)
			p = za_backend_fallback(size ? size : 1, align, false);
		return p ? p : za_shim_nomem(ZA_OK);
	}
	return za_shim_malloc_large(size ? size : 1, align, false);
}

void *za_shim_calloc(size_t n, size_t size)
{
	size_t total;
	if (unlikely(__builtin_mul_overflow(n, size, &total)))
		return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
	if (za_tls_prof_due(total))
		return za_prof_alloc(total, true, __builtin_return_address(0));
	return za_shim_calloc_uncounted(total);
}

void *za_shim_calloc_uncounted(size_t total)
{
	if (likely(total <= ZA_SLAB_MAX)) {
		void *p = za_slab_alloc(za_size_class(total));
		if (unlikely(!p))
			return za_shim_nomem(ZA_OK);
		memset(p, 0, total);
		return p;
	}
	return za_shim_malloc_large(total, 0, true);
}

/*
 * C23's free_sized and free_aligned_sized: the size must be the one the
 * block was allocated with (for free_sized, or last reallocated with).
 * An aligned slab object's or run's size maps to its class or pages
 * exactly (za_shim_usable_for). A malloc'ed one may have been reallocated
 * where it is, or moved with room to grow (realloc_move, realloc_run): its
 * size is above half a slab object's usable size, or at least three
 * quarters of a run's or huge block's pages (a reused huge mapping is cut
 * to size: huge.c). Anything else, larger or smaller, is a wrong size. A backend's blocks are checked
 * against their usable size.
 */
void za_shim_free_sized(void *p, size_t align, size_t size, const char *call)
{
	if (!p)
		return;
	if (unlikely(za_trace_on)) {
		struct za_trace_call c;
		if (za_trace_begin(&c)) {
			za_shim_free_sized(p, align, size, call);
			za_trace_end(&c, ZA_TOP_FREE_SIZED, p, size, 0, align, 0);
			return;
		}
	}
	if (unlikely(za_guard_state == ZA_GUARD_ON)) {
		za_guard_free(p, size, align, true, call);
		return;
	}
	size_t usable = za_shim_usable_size(p, call);
	if (unlikely(!usable))
		return;   /* misuse, reported (warn): nothing is freed */
	if (unlikely(size > usable)) {
		za_misuse("%s(%p, %zu): size is larger than the allocation (%zu usable bytes)",
			  call, p, size, usable);
		return;
	}
	if (unlikely(align > 1 && ((uintptr_t)p & (align - 1)))) {
		za_misuse("%s(%p): pointer is not aligned to %zu", call, p, align);
		return;
	}
	struct za_region *r = za_region_of(p);
	size_t sampled = za_prof_sampled_size(p);
	if (unlikely(sampled)) {
		/* Served as a run for the profiler: the size is checked
		 * against the one it was asked for (never reallocated in
		 * place), by the class or pages it maps to. */
		if (za_shim_usable_for(size, align) != za_shim_usable_for(sampled, 16)) {
			za_misuse("%s(%p, %zu): size does not match the allocation's (%zu bytes)",
				  call, p, size, sampled);
			return;
		}
	} else if (r) {
		size_t pages = (size + ZA_PAGE_SIZE - 1) >> ZA_PAGE_SHIFT;
		size_t have = usable >> ZA_PAGE_SHIFT;
		bool ok = r->kind == ZA_REGION_HUGE	? pages >= have * 3 / 4
			: align > 16			? usable == za_shim_usable_for(size, align)
			: za_shim_slab_of(p, call)	? size > usable / 2 || usable <= 16
							: pages >= have * 3 / 4;
		if (unlikely(!ok)) {
			za_misuse("%s(%p, %zu): size is smaller than the allocation's (%zu usable "
				  "bytes)", call, p, size, usable);
			return;
		}
	}
	za_shim_free(p);
}

size_t za_shim_usable_for(size_t size, size_t align)
{
	if (align <= 16) {
		if (size <= ZA_SLAB_MAX)
			return za_classes[za_size_class(size)].size;
	} else {
		unsigned cls = za_shim_aligned_class(size, align);
		if (cls < ZA_NCLASSES)
			return za_classes[cls].size;
	}
	size_t n = size ? size : 1;
	return (n + ZA_PAGE_SIZE - 1) & ~(size_t)(ZA_PAGE_SIZE - 1);
}

void za_shim_size_mismatch(void *p, size_t size, size_t align, const char *call)
{
	size_t usable = za_shim_usable_size(p, call);
	za_misuse("%s(%p, %zu): size does not match the allocation (%zu usable bytes; %zu bytes "
		  "would have %zu)", call, p, size, usable, size, za_shim_usable_for(size, align));
}

void za_shim_free_aligned_exact(void *p, size_t size, size_t align, bool sized, const char *call)
{
	if (!p)
		return;
	if (unlikely(za_trace_on)) {
		struct za_trace_call c;
		if (za_trace_begin(&c)) {
			za_shim_free_aligned_exact(p, size, align, sized, call);
			za_trace_end(&c, sized ? ZA_TOP_FREE_SIZED : ZA_TOP_FREE, p, sized ? size : 0,
				     0, align, 0);
			return;
		}
	}
	if (unlikely(za_guard_state == ZA_GUARD_ON)) {
		za_guard_free(p, size, align, sized, call);
		return;
	}
	/* The usable size of a live allocation; 0 for anything else (a freed
	 * run, a foreign pointer), which the free below reports by its name. */
	size_t usable = 0;
	struct za_region *r = za_region_of(p);
	if (r && r->kind == ZA_REGION_ZONE) {
		struct za_slab *slab = za_shim_slab_of(p, call);
		if (unlikely(slab == &za_slab_sink))
			return;   /* reported (warn) */
		usable = slab ? za_classes[za_slab_class(slab)].size
			      : za_buddy_run_pages(p) << ZA_PAGE_SHIFT;
		/* An object lent to a smaller class (size_class.h): what that
		 * class's allocation would have had. */
		if (slab && align <= 16 && size <= ZA_SLAB_MAX &&
		    za_class_lends(za_size_class(size), za_slab_class(slab)))
			usable = za_classes[za_size_class(size)].size;
	} else if (r && r->kind == ZA_REGION_HUGE && (uintptr_t)p == r->base) {
		usable = ((struct za_huge *)r)->usable;
	}
	size_t sampled = usable ? za_prof_sampled_size(p) : 0;
	if (unlikely(sampled))   /* a run for the profiler: what it would have had */
		usable = za_shim_usable_for(sampled, 16);
	if (usable) {
		if (unlikely(align > 1 && ((uintptr_t)p & (align - 1)))) {
			za_misuse("%s(%p): pointer is not aligned to %zu", call, p, align);
			return;
		}
		if (unlikely(sized && usable != za_shim_usable_for(size, align))) {
			za_shim_size_mismatch(p, size, align, call);
			return;
		}
	}
	za_shim_free(p);
}

int za_shim_trim(void)
{
	return za_policy_reclaim_all() > 0;
}
