/*
 * The slab tier: small objects in slabs (one buddy block each, one size
 * class each), owned by thread heaps.
 *
 * Invariants of a slab (kept by its owner thread; see slab/slab.c):
 *  - every object is in exactly one place: handed out, on `free`, on
 *    `remote`, or not yet carved (index >= `carved`);
 *  - `used` = objects handed out + objects on `remote`; so used == 0 means
 *    every object is home and the slab may go back to the buddy core;
 *  - only the owner touches `free`, `used`, `carved` and the list links;
 *    other threads only push onto `remote` (lock-free);
 *  - `owner` is NULL while the slab is abandoned (its thread exited).
 */
#ifndef ZA_SLAB_H
#define ZA_SLAB_H

#include <stdatomic.h>
#include <stdbool.h>

#include "buddy/buddy.h"
#include "slab/size_class.h"

struct za_theap;

struct za_slab {
	void *free;                        /* owner-only free list */
	_Atomic(void *) remote;            /* frees from other threads */
	struct za_slab *next, *prev;       /* owner heap's ring for the class */
	struct za_theap *_Atomic owner;
	uint32_t used;
	uint16_t capacity;
	uint16_t carved;                   /* objects threaded so far */
};
_Static_assert(sizeof(struct za_slab) <= ZA_PAGE_PRIVATE_BYTES, "slab fits in the page map");

/*
 * A thread's heap: per class, the slab allocation comes from (`cur`, never
 * NULL) and the ring of all the heap's slabs of that class. Every thread
 * starts on za_theap_empty, whose `cur` slabs are all the empty sentinel:
 * the first malloc falls into the generic path, which creates the heap.
 */
struct za_theap {
	struct za_slab *cur[ZA_NCLASSES];
	struct za_slab *ring[ZA_NCLASSES];
	uint16_t nslabs[ZA_NCLASSES];
	uint32_t empty_pages;              /* pages of kept empty slabs */
	/* Frees of other heaps' objects by this thread: counted here, not in
	 * a shared counter every freeing thread would write. */
	uint64_t remote_frees;
	struct za_theap *next, *prev;      /* all heaps, under za_heaps_lock */
	bool is_empty_sentinel;
};

extern struct za_theap za_theap_empty;

#define ZA_SLAB_KEEP_EMPTY_PAGES 256   /* 1 MiB of empty slabs per thread */

extern __thread struct za_theap *za_tls_heap __attribute__((tls_model("initial-exec")));

/* A freed object carries this mark (xor its address) in its second word:
 * a free that finds it is probably a double free, and is verified. */
extern uintptr_t za_slab_free_mark;

static inline struct za_page *za_slab_page(struct za_slab *slab)
{
	return (struct za_page *)((char *)slab - __builtin_offsetof(struct za_page, private));
}

static inline struct za_slab *za_page_slab(struct za_page *page)
{
	return (struct za_slab *)(void *)page->private;
}

static inline unsigned za_slab_class(struct za_slab *slab)
{
	return za_slab_page(slab)->owner_data;
}

/* A slab kept empty for reuse is marked in its head page's `count` (the
 * head's own count is not used by a slab otherwise); the heap counts the
 * pages of its kept slabs against ZA_SLAB_KEEP_EMPTY_PAGES. */
static inline bool za_slab_kept(struct za_slab *slab)
{
	return za_slab_page(slab)->count != 0;
}

static inline void za_slab_keep(struct za_theap *heap, struct za_slab *slab)
{
	za_slab_page(slab)->count = 1;
	heap->empty_pages += 1u << za_slab_page(slab)->order;
}

/* The slab is in use again, or leaves the heap: no longer kept. */
static inline void za_slab_unkeep(struct za_theap *heap, struct za_slab *slab)
{
	if (!za_slab_kept(slab))
		return;
	za_slab_page(slab)->count = 0;
	heap->empty_pages -= 1u << za_slab_page(slab)->order;
}

ZA_NOINLINE void *za_slab_alloc_generic(struct za_theap *heap, unsigned cls);
ZA_NOINLINE void za_slab_free_slow(struct za_theap *heap, struct za_slab *slab);
ZA_NOINLINE void za_slab_free_remote(struct za_slab *slab, void *p);
ZA_NOINLINE void za_slab_free_marked(struct za_slab *slab, void *p);

/* Fast path: a pop from the thread's current slab, ~8 instructions. */
static inline void *za_slab_alloc(unsigned cls)
{
	struct za_theap *heap = za_tls_heap;
	struct za_slab *slab = heap->cur[cls];
	void **p = slab->free;
	if (unlikely(!p))
		return za_slab_alloc_generic(heap, cls);
	slab->free = *p;
	p[1] = NULL;   /* clears the free mark */
	slab->used++;
	return p;
}

/* The free after the double-free mark check (either path). */
static inline void za_slab_free_unmarked(struct za_slab *slab, void **p)
{
	struct za_theap *heap = za_tls_heap;
	if (unlikely(atomic_load_explicit(&slab->owner, memory_order_relaxed) != heap)) {
		za_slab_free_remote(slab, p);
		return;
	}
	p[0] = slab->free;
	p[1] = (void *)(za_slab_free_mark ^ (uintptr_t)p);
	slab->free = p;
	if (unlikely(--slab->used == 0))
		za_slab_free_slow(heap, slab);
}

/* Fast path of free for an object already checked to be in `slab`: every
 * slow case is a tail call, so the fast path saves no registers. */
static inline void za_slab_free(struct za_slab *slab, void *obj)
{
	void **p = obj;
	if (unlikely((uintptr_t)p[1] == (za_slab_free_mark ^ (uintptr_t)p))) {
		za_slab_free_marked(slab, p);
		return;
	}
	za_slab_free_unmarked(slab, p);
}

/* Thread heaps (slab/heap.c). */
struct za_theap *za_theap_create(void);
void za_slab_release_empty(struct za_theap *heap);   /* malloc_trim */
void za_slab_lock_all(void);
void za_slab_unlock_all(void);
void za_slab_reset_child(void);
void *za_slab_abandoned_take(unsigned cls, struct za_theap *heap);

/* Slow-path counters (relaxed atomics). */
struct za_slab_counters {
	_Atomic uint64_t created, released, abandoned, adopted, remote_frees;
	_Atomic uint64_t heaps_created, heaps_live;
};
extern struct za_slab_counters za_slab_counters;

void za_slab_adopt(struct za_theap *heap, unsigned cls, struct za_slab *slab);
void za_slab_release(struct za_slab *slab);
bool za_slab_collect(struct za_slab *slab);
void za_slab_ring_remove(struct za_theap *heap, unsigned cls, struct za_slab *slab);

struct za_slab_stats {
	uint64_t slabs_live, slabs_created, slabs_released;
	uint64_t slabs_abandoned, slabs_adopted;
	uint64_t remote_frees;
	uint64_t heaps_live, heaps_created;
};
void za_slab_stats_get(struct za_slab_stats *st);

#endif
