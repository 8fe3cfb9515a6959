/*
 * Slabs: making one over a buddy block, the queues a heap keeps them on,
 * refilling a thread's current slab (remote frees, carving), frees that
 * are not the fast path, and giving empty slabs back.
 */
#include "slab/slab.h"
#include "os/os.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include "policy/policy.h"

struct za_slab_keys za_slab_keys;

/* The sentinel every class of a new heap starts on: never has objects. */
struct za_slab za_slab_empty = { .where = ZA_SLAB_NONE };
struct za_slab za_slab_sink = { .where = ZA_SLAB_NONE };

struct za_slab_counters za_slab_counters;

void *(*za_slab_divert)(unsigned cls);
void (*za_slab_exit_hook)(void);
_Atomic bool za_slab_no_heaps;

static inline char *slab_base(struct za_slab *slab)
{
	struct za_page *page = za_slab_page(slab);
	struct za_zone *zone = &za_zones[page->prev];
	return za_page_addr(zone, za_page_pfn_plane0(zone, page));
}

static inline unsigned slab_order(struct za_slab *slab)
{
	return za_slab_page(slab)->order;
}

/* ---- the lists of a heap (its holder only) ---- */

/* The class queue: a NULL-terminated list from cur[cls] to last[cls]. */
static void queue_push_front(struct za_theap *heap, struct za_slab *slab)
{
	struct za_slab *head = heap->cur[slab->cls];
	slab->prev = NULL;
	if (head == &za_slab_empty) {
		slab->next = NULL;
		heap->last[slab->cls] = slab;
	} else {
		slab->next = head;
		head->prev = slab;
	}
	za_heap_set_cur(heap, slab->cls, slab);
	slab->where = ZA_SLAB_AVAIL;
}

/* Last in the queue: a slab that comes back from the full list is taken
 * after the others, by when the thread freeing into it (if another) has
 * likely finished, rather than both writing its line at once. */
static void queue_push_back(struct za_theap *heap, struct za_slab *slab)
{
	struct za_slab *tail = heap->last[slab->cls];
	if (heap->cur[slab->cls] == &za_slab_empty) {
		queue_push_front(heap, slab);
		return;
	}
	slab->next = NULL;
	slab->prev = tail;
	tail->next = slab;
	heap->last[slab->cls] = slab;
	slab->where = ZA_SLAB_AVAIL;
}

void za_slab_queue_remove(struct za_theap *heap, struct za_slab *slab)
{
	if (slab->prev)
		slab->prev->next = slab->next;
	else
		za_heap_set_cur(heap, slab->cls, slab->next ? slab->next : &za_slab_empty);
	if (slab->next)
		slab->next->prev = slab->prev;
	else
		heap->last[slab->cls] = slab->prev;
	slab->next = slab->prev = NULL;
	slab->where = ZA_SLAB_NONE;
}

/* Defragmentation's allocations go to the fullest slab of the class with
 * room (its queue is short: a walk), put at the front so that the next
 * ones go there too until it is full; emptier slabs drain meanwhile. */
void za_slab_defrag_target(struct za_theap *heap, unsigned cls)
{
	struct za_slab *best = NULL;
	for (struct za_slab *s = heap->cur[cls]; s && s != &za_slab_empty; s = s->next)
		if (s->used < s->capacity && (!best || s->used > best->used))
			best = s;
	if (best && best != heap->cur[cls]) {
		za_slab_queue_remove(heap, best);
		queue_push_front(heap, best);
	}
}

static void full_push(struct za_theap *heap, struct za_slab *slab)
{
	slab->prev = NULL;
	slab->next = heap->full;
	if (heap->full)
		heap->full->prev = slab;
	heap->full = slab;
	slab->where = ZA_SLAB_FULL;
}

void za_slab_full_remove(struct za_theap *heap, struct za_slab *slab)
{
	if (slab->prev)
		slab->prev->next = slab->next;
	else
		heap->full = slab->next;
	if (slab->next)
		slab->next->prev = slab->prev;
	slab->next = slab->prev = NULL;
	slab->where = ZA_SLAB_NONE;
}

/* ---- remote frees ---- */

/* Moves the remote frees onto the local list (the holder of the heap). */
bool za_slab_collect(struct za_slab *slab)
{
	/* A load first: most slabs have no remote frees, and the exchange
	 * would take the line exclusive for nothing. */
	uintptr_t old = atomic_load_explicit(&slab->remote, memory_order_relaxed);
	if (!(old & ~(uintptr_t)ZA_REMOTE_STATE))
		return false;
	while (!atomic_compare_exchange_weak_explicit(&slab->remote, &old,
						      old & ZA_REMOTE_STATE,
						      memory_order_acquire, memory_order_relaxed))
		;
	void **list = (void **)(old & ~(uintptr_t)ZA_REMOTE_STATE);
	uint32_t n = 1;
	void **tail = list;
	for (void **next; (next = za_link_next(tail)) != NULL; tail = next)
		n++;
	tail[0] = za_link_enc(slab->free);
	slab->free = list;
	slab->used = (uint16_t)(slab->used - n);
	return true;
}

/* Sets the state bits to `to` if they are `from`, keeping the list. */
static bool remote_state_swap(struct za_slab *slab, unsigned from, unsigned to)
{
	uintptr_t old = atomic_load_explicit(&slab->remote, memory_order_relaxed);
	do {
		if ((old & ZA_REMOTE_STATE) != from)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&slab->remote, &old,
							(old & ~(uintptr_t)ZA_REMOTE_STATE) | to,
							memory_order_acq_rel, memory_order_relaxed));
	return true;
}

/* The slab has nothing to give: asks for a notice on its next remote
 * free. False when a remote free came first (collect it instead). */
static bool slab_mark_full(struct za_slab *slab)
{
	uintptr_t old = atomic_load_explicit(&slab->remote, memory_order_relaxed);
	for (;;) {
		if (old & ~(uintptr_t)ZA_REMOTE_STATE)
			return false;
		if ((old & ZA_REMOTE_STATE) == ZA_REMOTE_NOTIFY)
			return true;   /* left from its last full spell */
		if ((old & ZA_REMOTE_STATE) == ZA_REMOTE_NOTIFYING) {
			/* A notice of the slab's last full spell is on its way. */
			sched_yield();
			old = atomic_load_explicit(&slab->remote, memory_order_relaxed);
			continue;
		}
		if (atomic_compare_exchange_weak_explicit(&slab->remote, &old, ZA_REMOTE_NOTIFY,
							  memory_order_acq_rel, memory_order_relaxed))
			return true;
	}
}

/* Pushes the chain head..tail of n objects freed by another thread onto
 * the slab's remote list, or, if the slab is FULL, onto its heap's
 * delayed list with a notice. */
static void remote_push(struct za_slab *slab, void **head, void **tail, uint32_t n)
{
	uintptr_t old = atomic_load_explicit(&slab->remote, memory_order_relaxed), new;
	bool notify;
	do {
		notify = (old & ZA_REMOTE_STATE) == ZA_REMOTE_NOTIFY;
		if (notify) {
			new = (old & ~(uintptr_t)ZA_REMOTE_STATE) | ZA_REMOTE_NOTIFYING;
		} else {
			tail[0] = za_link_enc((void *)(old & ~(uintptr_t)ZA_REMOTE_STATE));
			new = (uintptr_t)head | (old & ZA_REMOTE_STATE);
		}
	} while (!atomic_compare_exchange_weak_explicit(&slab->remote, &old, new,
							memory_order_release,
							memory_order_relaxed));
	if (unlikely(notify)) {
		/* The slab is FULL: the objects go to its heap's delayed list,
		 * where the holder sees them. Heaps are never freed, so `owner`
		 * is a heap even if its thread is gone. */
		struct za_theap *owner = slab->owner;
		void *first = atomic_load_explicit(&owner->delayed, memory_order_relaxed);
		do {
			tail[0] = za_link_enc(first);
		} while (!atomic_compare_exchange_weak_explicit(&owner->delayed, &first, head,
								memory_order_release,
								memory_order_relaxed));
		remote_state_swap(slab, ZA_REMOTE_NOTIFYING, ZA_REMOTE_NORMAL);
		atomic_fetch_add_explicit(&za_slab_counters.delayed_frees, n, memory_order_relaxed);
	}
}

void za_slab_remote_flush(struct za_theap *heap)
{
	struct za_slab *slab = heap->rbuf_slab;
	if (!slab)
		return;
	heap->rbuf_slab = NULL;
	remote_push(slab, heap->rbuf_head, heap->rbuf_tail, heap->rbuf_n);
}

/*
 * A free of another heap's object. Frees in a row into one slab (a
 * consumer freeing what a producer made) are chained here and pushed with
 * one atomic instruction: a locked instruction per object orders every
 * store before it, so each free paid a whole cross-core miss. The chain is
 * pushed when the next remote free is for another slab, when it is long,
 * and on this thread's generic path, trim and exit.
 */
void za_slab_free_remote(struct za_slab *slab, void *obj)
{
	void **p = obj;
	p[1] = (void *)(za_slab_keys.mark ^ (uintptr_t)p);
	struct za_theap *heap = za_tls_heap;
	if (unlikely(heap->is_empty_sentinel) &&
	    (heap == &za_theap_exited || !(heap = za_theap_acquire()))) {
		/* A thread on its way out (or out of memory for a heap). */
		p[0] = za_link_enc(NULL);
		remote_push(slab, p, p, 1);
		atomic_fetch_add_explicit(&za_slab_counters.remote_frees, 1, memory_order_relaxed);
		return;
	}
	if (heap->rbuf_slab == slab) {
		p[0] = za_link_enc(heap->rbuf_head);
		heap->rbuf_head = p;
		if (++heap->rbuf_n >= ZA_RBUF_MAX)
			za_slab_remote_flush(heap);
	} else {
		za_slab_remote_flush(heap);
		p[0] = za_link_enc(NULL);
		heap->rbuf_slab = slab;
		heap->rbuf_head = heap->rbuf_tail = p;
		heap->rbuf_n = 1;
	}
	__atomic_store_n(&heap->remote_frees, heap->remote_frees + 1, __ATOMIC_RELAXED);
}

/* The holder frees a block of its own heap that is already marked free
 * (a delayed free): as the free fast path would, then the slow cases. */
static void free_local(struct za_theap *heap, struct za_slab *slab, void **p)
{
	void *old = slab->free;
	p[0] = za_link_enc(old);
	slab->free = p;
	if (--slab->used == 0 || !old)
		za_slab_free_slow(heap, slab, p);
}

void za_slab_bad_link(const void *p, const void *next)
{
	za_misuse("malloc: corrupted free list: the freed %u-byte object at %p links to %p, "
		  "outside its slab (written after free?)",
		  za_classes[za_slab_of_object(p)->cls].size, p, next);
}

/* (warn) p itself is a free slot of its slab: handed out, the objects
 * after it dropped with the list. */
void *za_slab_bad_pop(void **p, const void *next)
{
	za_slab_bad_link(p, next);
	struct za_slab *slab = za_slab_of_object(p);
	slab->free = NULL;
	p[1] = NULL;
	slab->used++;
	return p;
}

/* The delayed list runs across slabs: each link must be a slab object. */
static void **delayed_next(void **p)
{
	void **next = za_link_dec(p[0]);
	struct za_zone *zone;
	uint32_t head;
	if (next && (((uintptr_t)next & 15) || !(zone = za_zone_of(next)) ||
		     !za_slab_head_of(zone, za_pfn_of(zone, next), &head))) {
		za_slab_bad_link(p, next);
		return NULL;   /* (warn) the rest of the list leaks */
	}
	return next;
}

/* Frees the objects other threads put on the heap's delayed list. One
 * whose slab is still NOTIFYING goes back on the list for next time. */
void za_slab_delayed_collect(struct za_theap *heap)
{
	void **list = atomic_exchange_explicit(&heap->delayed, NULL, memory_order_acquire);
	void **again = NULL, **again_tail = NULL;
	while (list) {
		void **next = delayed_next(list);
		struct za_slab *slab = za_slab_of_object(list);
		if ((atomic_load_explicit(&slab->remote, memory_order_acquire) & ZA_REMOTE_STATE) ==
		    ZA_REMOTE_NOTIFYING) {
			list[0] = za_link_enc(again);
			again = list;
			if (!again_tail)
				again_tail = list;
		} else {
			free_local(heap, slab, list);
		}
		list = next;
	}
	if (again) {
		void *head = atomic_load_explicit(&heap->delayed, memory_order_relaxed);
		do {
			again_tail[0] = za_link_enc(head);
		} while (!atomic_compare_exchange_weak_explicit(&heap->delayed, &head, again,
								memory_order_release,
								memory_order_relaxed));
	}
}

/* ---- making, refilling and giving back slabs ---- */

bool za_slab_guard;

/* Guard mode (shim/guard.h): objects [from, end) threaded in a random
 * order (Fisher-Yates over the batch: a page's worth, at most 256), each
 * with the fresh mark in its last word (slab.h), so the guard, which
 * checks the free pattern as it hands a slot out, knows this one was
 * never freed. */
static ZA_NOINLINE void *carve_guarded(char *base, uint32_t size, uint32_t from, uint32_t end,
				       void *head)
{
	static __thread uint64_t rng;
	if (!rng)
		rng = (uintptr_t)&rng ^ za_slab_keys.link ^ 0x9e3779b97f4a7c15ull;
	uint16_t order[ZA_PAGE_SIZE / 16];   /* a batch: a page's worth of 16-byte objects */
	uint32_t n = end - from;
	for (uint32_t k = 0; k < n; k++)
		order[k] = (uint16_t)k;
	for (uint32_t k = n; k > 1; k--) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		uint32_t j = (uint32_t)((rng >> 16) % k);
		uint16_t t = order[k - 1];
		order[k - 1] = order[j];
		order[j] = t;
	}
	for (uint32_t k = 0; k < n; k++) {
		void **obj = (void **)(base + (size_t)(from + order[k]) * size);
		((uintptr_t *)(void *)obj)[size / 8 - 1] = za_slab_fresh_mark(obj);
		obj[0] = za_link_enc(head);
		head = obj;
	}
	return head;
}

/* Threads the next page's worth of never-used objects onto the free list:
 * a slab touches its memory as it is used, not when it is made. */
static bool slab_carve(struct za_slab *slab)
{
	uint32_t size = za_classes[slab->cls].size;
	if (slab->carved >= slab->capacity)
		return false;
	uint32_t batch = size >= ZA_PAGE_SIZE ? 1 : (uint32_t)(ZA_PAGE_SIZE / size);
	uint32_t end = slab->carved + batch;
	if (end > slab->capacity)
		end = slab->capacity;
	char *base = slab_base(slab);
	void *head = slab->free;
	if (unlikely(za_slab_guard)) {
		head = carve_guarded(base, size, slab->carved, end, head);
	} else {
		for (uint32_t i = end; i-- > slab->carved;) {
			void **obj = (void **)(base + (size_t)i * size);
			obj[0] = za_link_enc(head);
			head = obj;
		}
	}
	slab->free = head;
	slab->carved = (uint16_t)end;
	return true;
}

/* Sets a slab up, empty, for class `cls` of heap `heap`. */
static void slab_init(struct za_theap *heap, struct za_slab *slab, unsigned cls)
{
	const struct za_class_info *ci = &za_classes[cls];
	struct za_page *page = za_slab_page(slab);
	page->owner_word = ci->inv;
	page->owner_data = ci->shift;
	page->count = 0;
	slab->free = NULL;
	atomic_store_explicit(&slab->remote, 0, memory_order_relaxed);
	slab->next = slab->prev = NULL;
	slab->owner = heap;
	slab->used = 0;
	slab->capacity = ci->capacity;
	slab->carved = 0;
	slab->cls = (uint8_t)cls;
	slab->where = ZA_SLAB_NONE;
}

struct za_slab *za_slab_new(struct za_theap *heap, unsigned cls)
{
	unsigned order = za_classes[cls].order;
	struct za_slab *slab = za_slab_take_empty(heap, order, cls);
	if (slab) {
		atomic_fetch_add_explicit(&za_slab_counters.reused, 1, memory_order_relaxed);
		if (slab->cls == cls) {
			/* Its objects are all home, on its free list: as it was. */
			za_slab_page(slab)->count = 0;   /* was the keep time */
			heap->used_pages += 1u << order;
			if (heap->used_pages > heap->peak_pages)
				heap->peak_pages = heap->used_pages;
			slab->where = ZA_SLAB_NONE;
			return slab;
		}
	} else {
		za_status st;
		void *block = za_policy_alloc_block(order, ZA_KIND_SLAB, za_policy_current(), &st);
		if (!block)
			return NULL;
		struct za_page *head = za_buddy_make_slab(block, order);
		head->prev = (uint32_t)za_zone_of(block)->index;
		slab = za_page_slab(head);
		atomic_fetch_add_explicit(&za_slab_counters.created, 1, memory_order_relaxed);
	}
	heap->used_pages += 1u << order;
	if (heap->used_pages > heap->peak_pages)
		heap->peak_pages = heap->used_pages;
	slab_init(heap, slab, cls);
	return slab;
}

/* Gives a slab that is on no list back to the buddy core. */
void za_slab_release(struct za_theap *heap, struct za_slab *slab)
{
	(void)heap;
	char *base = slab_base(slab);
	struct za_page *page = za_slab_page(slab);
	page->prev = ZA_PFN_NONE;
	page->owner_data = 0;
	page->owner_word = 0;
	page->count = 0;
	za_buddy_free_slab(base);
	atomic_fetch_add_explicit(&za_slab_counters.released, 1, memory_order_relaxed);
}

/*
 * A class's current slab is not given up when it empties (a malloc/free
 * loop at a slab boundary would take and return a block each time), so
 * the pages it carved stay resident while the class sleeps: with a
 * hundred classes used by turns (espresso) that is most of the RSS. Every
 * ZA_IDLE_SCAN_CALLS slow-path calls (a generic allocation, a current slab
 * emptied) a heap looks at its current slabs (cur_mask: the classes that
 * have one); one found empty, with the same free-list head, at two scans
 * in a row gives back every page it carved, the first too, and carves
 * them again when used. A current slab that empties marks itself busy
 * (free_slow zeroes the note), so the class of a malloc/free loop at one
 * object is never trimmed. A class carved again soon after its trim (the
 * trim bought a fault for nothing) waits twice as many scans before the
 * next, up to 2^ZA_IDLE_WAIT_MAX; one that stayed away long waits less.
 * The note lives in the head page's `count`, the rest in the heap.
 * Owner-only: an empty slab has no object out, so no other thread can
 * touch it.
 */
static ZA_NOINLINE void slab_idle_scan(struct za_theap *heap)
{
	heap->idle_countdown = ZA_IDLE_SCAN_CALLS;
	uint16_t scan = ++heap->idle_scans;
	for (unsigned w = 0; w < sizeof heap->cur_mask / sizeof heap->cur_mask[0]; w++)
	for (uint64_t m = heap->cur_mask[w]; m; m &= m - 1) {
		unsigned cls = w * 64 + (unsigned)__builtin_ctzll(m);
		struct za_slab *slab = heap->cur[cls];
		struct za_page *page = za_slab_page(slab);
		size_t bytes = (size_t)slab->carved * za_classes[cls].size;
		if (bytes && heap->idle_trimmed[cls]) {
			/* Carved again since its trim: soon (the trim cost a
			 * fault for nothing) waits longer next time; late, less. */
			uint16_t gap = (uint16_t)(scan - heap->idle_trimmed[cls]);
			if (gap <= (4u << heap->idle_wait[cls]) && heap->idle_wait[cls] < ZA_IDLE_WAIT_MAX)
				heap->idle_wait[cls]++;
			else if (gap > (16u << heap->idle_wait[cls]) && heap->idle_wait[cls])
				heap->idle_wait[cls]--;
			heap->idle_trimmed[cls] = 0;
		}
		if (slab->used != 0 || bytes == 0) {
			page->count = 0;
			continue;
		}
		uint32_t seen = (uint32_t)((uintptr_t)slab->free >> 4) | 1u;
		if (page->count != seen) {
			page->count = seen;
			heap->idle_seen[cls] = 0;
			continue;
		}
		if (++heap->idle_seen[cls] < (1u << heap->idle_wait[cls]))
			continue;
		page->count = 0;
		heap->idle_seen[cls] = 0;
		heap->idle_trimmed[cls] = scan ? scan : 1;
		bytes = (bytes + ZA_PAGE_SIZE - 1) & ~(size_t)(ZA_PAGE_SIZE - 1);
		za_os_decommit(slab_base(slab), bytes);
		slab->free = NULL;
		slab->carved = 0;
		atomic_fetch_add_explicit(&za_slab_counters.idle_trims, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&za_slab_counters.idle_pages, bytes >> ZA_PAGE_SHIFT,
					  memory_order_relaxed);
	}
}

/* A class's first ZA_LEND_AFTER objects are its own, so a malloc/free
 * loop of one size keeps to the fast path: a lent object goes back to its
 * own slab, and the next allocation would come here again. */
#define ZA_LEND_AFTER 4u

/* The current slab of a class that may lend to `cls` (size_class.h) and
 * has a free object, the nearest first; NULL if none has. */
static struct za_slab *slab_lender(struct za_theap *heap, unsigned cls)
{
	for (unsigned k = cls + 1; k < ZA_NCLASSES && za_class_lends(cls, k); k++) {
		struct za_slab *slab = heap->cur[k];
		if (slab->free || (slab != &za_slab_empty && za_slab_collect(slab))) {
			__atomic_store_n(&heap->lent, heap->lent + 1, __ATOMIC_RELAXED);
			return slab;
		}
	}
	return NULL;
}

/*
 * The generic allocation path: the current slab ran dry. Its remote frees
 * come home, or its next page is carved (or, where `lend`, a bigger
 * class's free object is taken instead); failing both it goes to the full
 * list and the next slab of the queue takes over; with the queue empty, a
 * kept empty slab of the same order or a new one from the buddy core.
 */
void *za_slab_alloc_generic(struct za_theap *heap, unsigned cls, bool lend)
{
	if (unlikely(heap->is_empty_sentinel)) {
		heap = za_theap_acquire();
		if (!heap) {
			za_policy_request_enter();   /* (nomem: exits) */
			goto nomem;
		}
	}
	if (heap->rbuf_slab)
		za_slab_remote_flush(heap);
	if (atomic_load_explicit(&heap->delayed, memory_order_relaxed))
		za_slab_delayed_collect(heap);
	if (unlikely(--heap->idle_countdown == 0))
		slab_idle_scan(heap);
	struct za_slab *slab = heap->cur[cls], *lender;
	lend = lend && slab != &za_slab_empty;   /* (the class's first slab is its own) */
	while (slab != &za_slab_empty) {
		if (slab->free || za_slab_collect(slab))
			goto found;
		if (slab->carved < slab->capacity) {
			if (lend && slab->carved >= ZA_LEND_AFTER && (lender = slab_lender(heap, cls)))
				slab = lender;
			else
				slab_carve(slab);
			goto found;
		}
		if (!slab_mark_full(slab))
			continue;   /* a remote free came in: collect it */
		za_slab_queue_remove(heap, slab);
		full_push(heap, slab);
		slab = heap->cur[cls];
	}
	if (lend && (lender = slab_lender(heap, cls))) {
		slab = lender;
		goto found;
	}
	za_policy_request_enter();   /* (a slab, then maybe the divert: one request) */
	slab = za_slab_new(heap, cls);
	if (!slab)
		goto nomem;
	za_policy_request_exit();
	queue_push_front(heap, slab);
	slab_carve(slab);
found:;
	void **p = slab->free;
	slab->free = za_link_next(p);
	p[1] = NULL;
	slab->used++;
	return p;
nomem:
	if (za_slab_divert) {
		void *q = za_slab_divert(cls);
		if (q) {
			za_policy_request_exit();
			return q;
		}
	}
	za_policy_request_exit();
	errno = ENOMEM;
	return NULL;
}

/* A local free found the slab's free list empty (it may be FULL) or left
 * the slab empty. A FULL slab goes back to its class queue, last in line;
 * an empty one, unless it is its class's current slab (so a malloc/free
 * loop at a slab boundary doesn't take and return a block each time),
 * is kept for reuse or given back. */
static ZA_NOINLINE __attribute__((cold)) void slab_double_free(struct za_slab *slab, void **p)
{
	za_misuse("free(%p): double free of a %u-byte slab object (zone %u)", (void *)p,
		  za_classes[slab->cls].size, za_slab_page(slab)->prev);
	/* (warn) Undoes the free: p leaves the list it was just pushed on. */
	slab->free = za_link_dec(p[0]);
	slab->used++;
}

/* An empty slab other than its class's current one leaves the queue, to
 * be kept for reuse or given back. */
static ZA_NOINLINE void slab_retire_empty(struct za_theap *heap, struct za_slab *slab)
{
	za_slab_queue_remove(heap, slab);
	heap->used_pages -= 1u << slab_order(slab);
	za_slab_keep_empty(heap, slab);
}

/* A FULL slab got an object back: last in its class's queue. The state
 * stays NOTIFY: the next remote free, if any, takes the delayed way once
 * and sets NORMAL. Cheaper than an atomic here each time a slab comes
 * back, and no less correct. */
static ZA_NOINLINE void slab_unfull(struct za_theap *heap, struct za_slab *slab)
{
	za_slab_full_remove(heap, slab);
	queue_push_back(heap, slab);
	if (slab->used == 0 && heap->cur[slab->cls] != slab)
		slab_retire_empty(heap, slab);
}

/* Kept frameless: a malloc/free pair at one object comes here on every
 * free (the class's current slab empties each time). */
void za_slab_free_slow(struct za_theap *heap, struct za_slab *slab, void *p)
{
	if (unlikely(slab->where != ZA_SLAB_AVAIL)) {
		if (slab->where == ZA_SLAB_FULL)
			slab_unfull(heap, slab);
		return;
	}
	if (slab->used != 0) {
		/* More frees than objects out: a double free the mark did not
		 * catch (the slab was trimmed while idle, or the program wrote
		 * over the mark). A trimmed slab's free list is empty, so its
		 * first free always comes here. */
		if (unlikely(slab->used > slab->capacity))
			slab_double_free(slab, (void **)p);
		return;
	}
	if (heap->cur[slab->cls] != slab) {
		slab_retire_empty(heap, slab);
		return;
	}
	za_slab_page(slab)->count = 0;   /* busy: not idle at the next scan */
	if (unlikely(--heap->idle_countdown == 0))
		slab_idle_scan(heap);
}

/* `delayed`: the list runs across slabs (else it stays in p's slab). */
static bool list_holds(void *list, void *p, uint32_t limit, bool delayed)
{
	for (void **q = list; q && limit; q = delayed ? delayed_next(q) : za_link_next(q), limit--)
		if (q == p)
			return true;
	return false;
}

/* The free mark was found: confirm against the lists before calling it a
 * double free (user data may hold the mark by chance), then free as usual.
 * Only the holder may walk the local and delayed lists; anyone may walk
 * the remote one. */
bool za_slab_object_free(struct za_slab *slab, void *p)
{
	struct za_theap *heap = za_tls_heap;
	bool owner = slab->owner == heap;
	uint32_t cap = slab->capacity;
	void *remote = (void *)(atomic_load_explicit(&slab->remote, memory_order_acquire) &
				~(uintptr_t)ZA_REMOTE_STATE);
	return (heap->rbuf_slab == slab && list_holds(heap->rbuf_head, p, heap->rbuf_n, false)) ||
	       (owner && (list_holds(slab->free, p, cap, false) ||
			  list_holds(atomic_load_explicit(&heap->delayed, memory_order_acquire), p,
				     UINT32_MAX, true))) ||
	       list_holds(remote, p, cap, false);
}

void za_slab_free_marked(struct za_slab *slab, void *p)
{
	if (za_slab_object_free(slab, p)) {
		za_misuse("free(%p): double free of a %u-byte slab object (zone %u)", p,
			  za_classes[slab->cls].size, za_slab_page(slab)->prev);
		return;
	}
	za_slab_free_unmarked(slab, p);
}

