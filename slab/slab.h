/*
 * The slab tier: small objects in slabs (one buddy block each, one size
 * class at a time), owned by thread heaps.
 *
 * Ownership. A slab belongs to one heap from the moment it is made until
 * it goes back to the buddy core; it never moves to another heap. A heap
 * is held by at most one thread at a time: the thread whose za_tls_heap
 * it is, or, while the heap is an orphan in the pool, the thread that
 * took it out to tidy it. A thread that exits hands its heap, with every
 * slab still holding live objects, to the pool, and the next new thread
 * adopts it whole (O(1)), instead of slabs being abandoned and adopted
 * one by one. Heaps are never freed, so a pointer to one stays valid.
 *
 * Invariants of a slab (kept by the holder of its heap; slab/slab.c):
 *  - every object is in exactly one place: handed out, on `free`, on the
 *    `remote` list, on the heap's `delayed` list, in a freeing thread's
 *    chain of remote frees not yet pushed (rbuf_*), or not yet carved
 *    (index >= `carved`);
 *  - `used` = all of those but `free` and the uncarved: used == 0 means
 *    every object is home and the slab may be emptied;
 *  - `where` says which list of its heap the slab is on: the queue of its
 *    class (AVAIL: it has a free or uncarved object, or is the class's
 *    current slab), the heap's full list (FULL: nothing free), or the
 *    heap's kept empty slabs (EMPTY: used == 0, no class queue);
 *  - other threads only push onto `remote`, and, once per time a slab is
 *    FULL, onto the heap's `delayed` list (below).
 *
 * Remote frees and full slabs (after mimalloc's delayed free). A FULL
 * slab is on no class queue, so a free must bring it back. The owner's
 * own free does (free_slow). Another thread's free finds the state bits
 * of `remote` at NOTIFY: it sets NOTIFYING instead of pushing, puts the
 * object on the owner heap's `delayed` list, then sets NORMAL. The owner
 * takes `delayed` on its generic path and frees each object as its own,
 * which moves the slab back to its queue. So a survivor among freed
 * neighbours never pins a slab that nothing reuses, and no full slab is
 * ever rescanned. While a slab is NOTIFYING the notifier still touches it:
 * the owner puts such an object back on `delayed` instead of freeing it.
 * NOTIFY may outlive the slab's full spell (clearing it would cost an
 * atomic each time a slab comes back): the next remote free then takes
 * the delayed way once, which is harmless.
 */
#ifndef ZA_SLAB_H
#define ZA_SLAB_H

#include <stdatomic.h>
#include <stdbool.h>

#include "buddy/buddy.h"
#include "slab/size_class.h"

struct za_theap;

enum za_slab_where { ZA_SLAB_AVAIL = 0, ZA_SLAB_FULL, ZA_SLAB_EMPTY, ZA_SLAB_NONE };

/* State bits in the low bits of `remote` (objects are 16-byte aligned). */
#define ZA_REMOTE_NORMAL    0u
#define ZA_REMOTE_NOTIFY    1u   /* FULL: the next remote free tells the owner */
#define ZA_REMOTE_NOTIFYING 2u   /* a remote freer is telling the owner */
#define ZA_REMOTE_STATE     3u

struct za_slab {
	void *free;                        /* holder-only free list */
	_Atomic uintptr_t remote;          /* frees from other threads | state */
	struct za_slab *next, *prev;       /* the list `where` names */
	struct za_theap *owner;            /* set when made, never changes */
	uint16_t used;
	uint16_t capacity;
	uint16_t carved;                   /* objects threaded so far */
	uint8_t where;
	uint8_t cls;
};
_Static_assert(sizeof(struct za_slab) <= ZA_PAGE_PRIVATE_BYTES, "slab fits in the page map");

/*
 * A thread's heap. Per class, `cur` is the head of the queue of slabs that
 * have objects to give (never NULL: &za_slab_empty when the queue is
 * empty); allocation pops from cur's free list. Every thread starts on
 * za_theap_empty, whose `cur` slabs are all the empty sentinel: the first
 * malloc falls into the generic path, which adopts or makes a heap.
 *
 * Empty slabs are kept, per slab order, for any class: up to what the
 * heap recently had in use (a peak that decays every decay time), and
 * each for at most a decay time; so a program that frees a large
 * structure and builds it again reuses its slabs, and one that does not
 * gives them back.
 */
struct za_theap {
	struct za_slab *direct[ZA_DIRECT_SLOTS];   /* cur[] by 16-byte size step */
	struct za_slab *cur[ZA_NCLASSES];
	struct za_slab *last[ZA_NCLASSES];   /* the queue's tail (if not empty) */
	/* Objects freed by other threads into this heap's FULL slabs. */
	_Atomic(void *) delayed;
	struct za_slab *full;                                   /* FULL slabs */
	struct za_slab *empty[ZA_SLAB_MAX_ORDER + 1];           /* newest first */
	struct za_slab *empty_tail[ZA_SLAB_MAX_ORDER + 1];
	_Atomic int empty_lock;    /* empty[], empty_tail[], empty_pages */
	uint32_t empty_pages;      /* pages of kept empty slabs */
	uint32_t used_pages;       /* pages of the heap's other slabs */
	uint32_t peak_pages;       /* most used_pages since peak_ms */
	uint32_t peak_ms;
	uint32_t idle_countdown;   /* slow-path calls to the next idle scan (slab.c) */
	/* Classes whose `cur` is a slab, not the sentinel: the ones the idle
	 * scan looks at (za_heap_set_cur keeps it). */
	uint64_t cur_mask[(ZA_NCLASSES + 63) / 64];
	/* The idle scan's record per class (slab.c): scans in a row that found
	 * its slab unused, log2 of how many more it waits before a trim (grown
	 * when a trimmed class came back soon), and the scan of its last trim. */
	uint8_t idle_seen[ZA_NCLASSES];
	uint8_t idle_wait[ZA_NCLASSES];
	uint16_t idle_trimmed[ZA_NCLASSES];
	uint16_t idle_scans;
	/* Frees of other heaps' objects by this heap's threads: counted here,
	 * not in a shared counter every freeing thread would write. */
	uint64_t remote_frees;
	uint64_t lent;   /* objects lent to smaller classes (size_class.h) */
	/* Remote frees into one slab, chained before one push (slab.c). */
	struct za_slab *rbuf_slab;
	void **rbuf_head, **rbuf_tail;
	uint32_t rbuf_n;
	struct za_theap *next, *prev;      /* all heaps, under the heaps lock */
	struct za_theap *pool_next;        /* the orphan pool */
	bool is_empty_sentinel;
	bool orphan;                       /* in the pool (heaps lock) */
};

extern struct za_theap za_theap_empty ZA_HIDDEN, za_theap_exited ZA_HIDDEN;
extern struct za_slab za_slab_empty ZA_HIDDEN;
/* What a bad slab pointer's check gives back under ZONEALLOC_ON_ERROR=warn
 * (shim.h: za_shim_slab_checked): the slow paths that ask look for it and
 * do nothing more. */
extern struct za_slab za_slab_sink ZA_HIDDEN;

/* The least kept for empty slabs, whatever the recent use: 256 KiB. */
#define ZA_SLAB_KEEP_MIN_PAGES 64

/*
 * The thread's heap and the heap profiler's countdown, in one TLS block:
 * malloc reaches both from the one TLS offset it loads, and the countdown
 * is the thread's own even while the thread has no heap (the sentinels are
 * shared by all such threads, and a counter in them would be written by
 * all). `prof_left`: bytes to the next sample (shim/prof.c); a thread
 * starts at ZA_PROF_ASK, so its first allocation asks the profiler, which sets
 * INT64_MAX, never used up, while profiling is off.
 */
struct za_tls_block {
	struct za_theap *heap;
	uint64_t prof_left;
};
/* A countdown that every allocation, of any size (0 too), crosses: the
 * start of every thread, and where traces and guard mode keep it. */
#define ZA_PROF_ASK UINT64_MAX
extern __thread struct za_tls_block za_tls __attribute__((tls_model("initial-exec")));
#define za_tls_heap (za_tls.heap)

/*
 * Per-process secrets, drawn when the first heap is made (heap.c), in one
 * line that the free path loads anyway.
 *  - `mark`: a freed object carries it (xor its address) in its second
 *    word: a free that finds it is probably a double free, and is verified.
 *  - `link`: every free-list link (first word of a freed object: local,
 *    remote, delayed and pending lists alike) is stored xor it
 *    (safe-linking, as glibc's tcache and mimalloc's secure mode do). A
 *    write into a freed object cannot aim the next allocation at an
 *    address of its choosing without the secret, and each pop checks that
 *    the link it decodes stays inside the object's slab: slabs are
 *    buddy blocks of at most 2^ZA_SLAB_LINK_SHIFT bytes, naturally
 *    aligned, so an object and its successor share that aligned window.
 */
struct za_slab_keys {
	uintptr_t mark;
	uintptr_t link;
};
extern struct za_slab_keys za_slab_keys ZA_HIDDEN;
#define ZA_SLAB_LINK_SHIFT (ZA_PAGE_SHIFT + ZA_SLAB_MAX_ORDER)

/* Guard mode (shim/guard.h): the last word of a slot carved and not yet
 * handed out. The guard checks the free pattern only in slots that carry
 * something else there (freed ones carry the pattern): filling every
 * carved slot with it touched the pages of slots never handed out. */
static inline uintptr_t za_slab_fresh_mark(const void *p)
{
	return za_slab_keys.mark ^ ~(uintptr_t)p;
}

static inline void *za_link_enc(const void *next)
{
	return (void *)((uintptr_t)next ^ za_slab_keys.link);
}

static inline void *za_link_dec(const void *stored)
{
	return (void *)((uintptr_t)stored ^ za_slab_keys.link);
}

/* A link that leaves its slab: the freed object was written to. Reports
 * (za_misuse); under ZONEALLOC_ON_ERROR=warn the rest of the list is
 * dropped (leaked). za_slab_bad_pop is the fast pops' way: it returns p,
 * the allocation, and is reached by a tail call, so the fast paths set up
 * no frame for it. */
ZA_NOINLINE __attribute__((cold)) void *za_slab_bad_pop(void **p, const void *next);
ZA_NOINLINE __attribute__((cold)) void za_slab_bad_link(const void *p, const void *next);

/* Whether `next`, decoded from free object p's link, may follow p on a
 * list of p's slab (NULL ends the list, the one link outside the window). */
static inline bool za_link_bad(const void *p, const void *next)
{
	return unlikely(((uintptr_t)next ^ (uintptr_t)p) >> ZA_SLAB_LINK_SHIFT) && next;
}

/* The successor of free object p on a list of its slab, checked (slow
 * paths; the fast pops check in place): NULL after a bad link, which
 * ends the list there. */
static inline void **za_link_next(void **p)
{
	void **next = za_link_dec(p[0]);
	if (unlikely(za_link_bad(p, next))) {
		za_slab_bad_link(p, next);
		return NULL;
	}
	return next;
}

static inline struct za_page *za_slab_page(struct za_slab *slab)
{
	return (struct za_page *)((char *)slab - __builtin_offsetof(struct za_page, private));
}

static inline struct za_slab *za_page_slab(struct za_page *page)
{
	return (struct za_slab *)(void *)page->private;
}

static inline unsigned za_slab_class(const struct za_slab *slab)
{
	return slab->cls;
}

/* The slab of an object the heap handed out (trusted: no checks). */
static inline struct za_slab *za_slab_of_object(const void *p)
{
	struct za_zone *zone = za_zone_of(p);
	uint32_t head;
	return za_page_slab(za_slab_head_of(zone, za_pfn_of(zone, p), &head));
}

/* `lend`: the allocation may take a free object of a bigger class
 * (size_class.h: lending); false where the caller needs the class's own
 * size or alignment. */
ZA_NOINLINE void *za_slab_alloc_generic(struct za_theap *heap, unsigned cls, bool lend);
ZA_NOINLINE void za_slab_free_slow(struct za_theap *heap, struct za_slab *slab, void *p);
ZA_NOINLINE void za_slab_free_remote(struct za_slab *slab, void *p);
ZA_NOINLINE void za_slab_free_marked(struct za_slab *slab, void *p);
/* p, which carries the free mark, is on one of its slab's free lists
 * this thread may walk (its own heap's, or the remote one): it was freed. */
bool za_slab_object_free(struct za_slab *slab, void *p);
void za_slab_remote_flush(struct za_theap *heap);
#define ZA_RBUF_MAX 256   /* objects chained at most before a push */
#define ZA_IDLE_SCAN_CALLS 256   /* slow-path calls between idle scans */
#define ZA_IDLE_WAIT_MAX 6        /* a class waits at most 2^6 more scans */

/* Counts an allocation of `size` bytes down the thread's profiling
 * interval: true when it crosses the end (the allocation to sample). */
static inline bool za_tls_prof_due(size_t size)
{
	/* Unsigned, so a request near SIZE_MAX wraps instead of overflowing
	 * a signed counter; the sign bit is the test (sub to memory, js). */
	za_tls.prof_left -= size;
	return unlikely((int64_t)za_tls.prof_left < 0);
}

/* Sets the current slab of a class (the head of its queue), in cur[] and
 * in the direct slots of the sizes it serves. */
static inline void za_heap_set_cur(struct za_theap *heap, unsigned cls, struct za_slab *slab)
{
	heap->cur[cls] = slab;
	uint64_t bit = (uint64_t)1 << (cls % 64);
	if (slab != &za_slab_empty)
		heap->cur_mask[cls / 64] |= bit;
	else
		heap->cur_mask[cls / 64] &= ~bit;
	uint32_t size = za_classes[cls].size;
	if (size <= ZA_DIRECT_MAX) {
		unsigned lo = cls ? za_classes[cls - 1].size / 16 + 1 : 0;
		for (unsigned i = lo; i <= size / 16; i++)
			heap->direct[i] = slab;
	}
}

/* A pop from a slab's free list; the generic path when it is empty (which
 * sets errno when it fails). */
static inline void *za_slab_pop(struct za_theap *heap, struct za_slab *slab, unsigned cls,
				bool lend)
{
	void **p = slab->free;
	if (unlikely(!p))
		return za_slab_alloc_generic(heap, cls, lend);
	void **next = za_link_dec(*p);
	if (unlikely(za_link_bad(p, next)))
		return za_slab_bad_pop(p, next);
	slab->free = next;
	p[1] = NULL;   /* clears the free mark */
	slab->used++;
	return p;
}

/* Fast path: a pop from the thread's current slab of the class, ~8
 * instructions. */
static inline void *za_slab_alloc(unsigned cls)
{
	struct za_theap *heap = za_tls_heap;
	return za_slab_pop(heap, heap->cur[cls], cls, true);
}

/* The same, always an object of class `cls` itself: aligned allocations
 * (the class was picked for its alignment) and guard mode (its canary
 * sits at the end of the class's slot). */
static inline void *za_slab_alloc_exact(unsigned cls)
{
	struct za_theap *heap = za_tls_heap;
	return za_slab_pop(heap, heap->cur[cls], cls, false);
}

/* The same for size <= ZA_DIRECT_MAX: the slab in one load, no class
 * computed unless the slab is empty. */
static inline void *za_slab_alloc_small(size_t size)
{
	struct za_theap *heap = za_tls_heap;
	struct za_slab *slab = heap->direct[za_direct_index(size)];
	void **p = slab->free;
	if (unlikely(!p))
		return za_slab_alloc_generic(heap, za_size_class(size), true);
	void **next = za_link_dec(*p);
	if (unlikely(za_link_bad(p, next)))
		return za_slab_bad_pop(p, next);
	slab->free = next;
	p[1] = NULL;
	slab->used++;
	return p;
}

/* The free after the double-free mark check (either path). A free into a
 * slab whose free list was empty may bring a FULL slab back to its queue,
 * and one that empties a slab retires it: both on the slow path. */
static inline void za_slab_free_unmarked(struct za_slab *slab, void **p)
{
	struct za_theap *heap = za_tls_heap;
	if (unlikely(slab->owner != heap)) {
		za_slab_free_remote(slab, p);
		return;
	}
	void *old = slab->free;
	p[0] = za_link_enc(old);
	/* A relaxed atomic store is a plain store, and keeps the compiler
	 * from pairing the two into a vector store built in registers. */
	__atomic_store_n(&p[1], (void *)(za_slab_keys.mark ^ (uintptr_t)p), __ATOMIC_RELAXED);
	slab->free = p;
	/* Spelled out, gcc 12 keeps this one `subw` to memory and its flags;
	 * written `--slab->used == 0` it began loading, subtracting and
	 * storing in three once free's misuse check stopped being noreturn. */
	uint16_t used = (uint16_t)(slab->used - 1);
	slab->used = used;
	if (unlikely(used == 0 || !old))
		za_slab_free_slow(heap, slab, p);
}

/* Fast path of free for an object already checked to be in `slab`: every
 * slow case is a tail call, so the fast path saves no registers. */
static inline void za_slab_free(struct za_slab *slab, void *obj)
{
	void **p = obj;
	if (unlikely((uintptr_t)p[1] == (za_slab_keys.mark ^ (uintptr_t)p))) {
		za_slab_free_marked(slab, p);
		return;
	}
	za_slab_free_unmarked(slab, p);
}

/*
 * Another allocator above this tier (the shim's backends) may take
 * requests: while `za_slab_no_heaps` is set threads get no heap, and the
 * generic path gives the requests of a thread without one, and those it
 * could not serve, to `za_slab_divert` (a slow path: the fast paths do not
 * look). It returns NULL to let the request fail as it would have.
 */
/* Guard mode (shim/guard.h): slabs thread their objects in a random
 * order, carrying the free pattern. Set before the first slab is made. */
extern bool za_slab_guard ZA_HIDDEN;
extern void *(*za_slab_divert)(unsigned cls) ZA_HIDDEN;

/* Called as a thread with a heap ends, before its heap is tidied (guard
 * mode hands its batch of freed objects to the quarantine). */
extern void (*za_slab_exit_hook)(void) ZA_HIDDEN;
extern _Atomic bool za_slab_no_heaps ZA_HIDDEN;
/* Hands the calling thread's heap to the orphan pool, as its exit would,
 * leaving the thread without one. */
void za_slab_detach_heap(void);


/* Slabs (slab/slab.c), used by the heaps. */
struct za_slab *za_slab_new(struct za_theap *heap, unsigned cls);
void za_slab_release(struct za_theap *heap, struct za_slab *slab);
bool za_slab_collect(struct za_slab *slab);
void za_slab_queue_remove(struct za_theap *heap, struct za_slab *slab);
/* Makes the fullest slab of class `cls` with room the queue's head. */
void za_slab_defrag_target(struct za_theap *heap, unsigned cls);
void za_slab_full_remove(struct za_theap *heap, struct za_slab *slab);
void za_slab_delayed_collect(struct za_theap *heap);

/* Thread heaps (slab/heap.c). */
struct za_theap *za_theap_acquire(void);
void za_slab_keep_empty(struct za_theap *heap, struct za_slab *slab);
struct za_slab *za_slab_take_empty(struct za_theap *heap, unsigned order, unsigned cls);
void za_slab_tidy(struct za_theap *heap, bool keep_nothing);
void za_slab_release_empty(struct za_theap *heap);   /* malloc_trim */
void za_slab_lock_all(void);
void za_slab_unlock_all(void);
void za_slab_reset_child(void);

/* Slow-path counters (relaxed atomics). */
struct za_slab_counters {
	_Atomic uint64_t created, released, reused, remote_frees, delayed_frees;
	_Atomic uint64_t heaps_created, heaps_live, heaps_adopted;
	_Atomic uint64_t idle_trims, idle_pages;   /* slab.c: slab_idle_scan */
};
extern struct za_slab_counters za_slab_counters;

struct za_slab_stats {
	uint64_t slabs_live, slabs_created, slabs_released;
	uint64_t slabs_reused;        /* empty slabs taken again, any class */
	uint64_t remote_frees, delayed_frees;
	uint64_t lent;                /* objects lent to a smaller class */
	uint64_t heaps_live, heaps_created, heaps_adopted, heaps_orphaned;
	uint64_t idle_trims, idle_pages;   /* idle current slabs' pages given back */
};
void za_slab_stats_get(struct za_slab_stats *st);

#endif
