/*
 * Cooperative compaction (issue 14, item 2). The heap cannot move a
 * program's objects, but the program can when told which: Redis and
 * Valkey defragment jemalloc's heap this way (ask "should this pointer
 * move?", allocate the copy past the thread cache, free the old one).
 * za_defrag_hint says yes for an object of a slab under three quarters
 * used that is not the one allocations go to; za_defrag_alloc allocates
 * from the fullest slab of the class with room (made the thread's current
 * one, so the next moves fill it too), so moved objects pack into few
 * slabs and the emptied ones go back to the buddy core.
 */
#include "shim/shim.h"

ZA_EXPORT bool za_defrag_hint(const void *p)
{
	struct za_zone *zone = za_zone_of(p);
	if (!zone)
		return false;
	uint32_t head;
	struct za_page *page = za_slab_head_of(zone, za_pfn_of(zone, p), &head);
	if (!page)
		return false;   /* a run or a page block: whole pages, nothing to pack */
	const struct za_slab *slab = za_page_slab(page);
	/* Read without the owner's consent: another thread's slab may change
	 * under us, which only makes the hint stale. */
	unsigned used = __atomic_load_n(&slab->used, __ATOMIC_RELAXED);
	const struct za_theap *owner = slab->owner;
	if (__atomic_load_n(&owner->cur[slab->cls], __ATOMIC_RELAXED) == slab)
		return false;
	return used * 4 < (unsigned)slab->capacity * 3;
}

ZA_EXPORT void *za_defrag_alloc(size_t size)
{
	struct za_theap *heap = za_tls_heap;
	if (size && size <= ZA_SLAB_MAX && !heap->is_empty_sentinel)
		za_slab_defrag_target(heap, za_size_class(size));
	return za_shim_malloc(size);
}

ZA_EXPORT void za_defrag_free(void *p)
{
	za_shim_free(p);
}
