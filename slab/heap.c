/*
 * Thread heaps: adopted or made on a thread's first malloc, handed to the
 * orphan pool whole when the thread exits, tidied by whoever holds them;
 * and the empty slabs a heap keeps for reuse.
 */
#include <sched.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "policy/policy.h"
#include "slab/slab.h"

struct za_theap za_theap_empty = {
	.direct = { [0 ... ZA_DIRECT_SLOTS - 1] = &za_slab_empty },
	.cur = { [0 ... ZA_NCLASSES - 1] = &za_slab_empty },
	.is_empty_sentinel = true,
};
/* A thread's heap after the thread handed it back: as empty, and a remote
 * free from a thread in that state takes no heap. */
struct za_theap za_theap_exited = {
	.direct = { [0 ... ZA_DIRECT_SLOTS - 1] = &za_slab_empty },
	.cur = { [0 ... ZA_NCLASSES - 1] = &za_slab_empty },
	.is_empty_sentinel = true,
};
__thread struct za_tls_block za_tls __attribute__((tls_model("initial-exec"))) = {
	.heap = &za_theap_empty,
	.prof_left = ZA_PROF_ASK,   /* the first allocation asks the profiler (prof.c) */
};

/* Every heap ever made (for stats and fork) and the orphan pool, under
 * heaps_lock. */
static struct za_theap *heaps_all, *heaps_pool;
static uint64_t heaps_orphaned;
static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t heap_key;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;

static uint32_t now_ms32(void)
{
	return (uint32_t)za_now_ms_cheap();
}

/* ---- kept empty slabs ----
 *
 * The one part of a heap another thread may touch: the decay pass and the
 * policy's drain give back other heaps' kept empty slabs, so memory an
 * idle thread kept goes back as free pages do. A small lock per heap
 * (taken by its holder only when a slab empties or is needed, never on a
 * fast path) guards the lists; heaps_lock is taken before it.
 */

static void empty_lock(struct za_theap *heap)
{
	while (atomic_exchange_explicit(&heap->empty_lock, 1, memory_order_acquire))
		sched_yield();
}

static void empty_unlock(struct za_theap *heap)
{
	atomic_store_explicit(&heap->empty_lock, 0, memory_order_release);
}

/* The most empty pages a heap keeps: what it recently had in use. */
static uint32_t keep_budget(struct za_theap *heap)
{
	uint32_t now = now_ms32();
	if (now - heap->peak_ms > (uint32_t)za_policy_decay_ms()) {
		heap->peak_ms = now;
		heap->peak_pages = heap->used_pages;
	}
	return heap->peak_pages > ZA_SLAB_KEEP_MIN_PAGES ? heap->peak_pages
							 : ZA_SLAB_KEEP_MIN_PAGES;
}

static void __empty_unlink(struct za_theap *heap, struct za_slab *slab, unsigned order)
{
	if (slab->prev)
		slab->prev->next = slab->next;
	else
		heap->empty[order] = slab->next;
	if (slab->next)
		slab->next->prev = slab->prev;
	else
		heap->empty_tail[order] = slab->prev;
	slab->next = slab->prev = NULL;
	slab->where = ZA_SLAB_NONE;
	heap->empty_pages -= 1u << order;
}

/* Takes the kept empty slabs that have waited a decay time (all of them
 * when `all`) off the lists, chained through `next` (empty lock held). */
static struct za_slab *__empty_aged(struct za_theap *heap, bool all, uint32_t now)
{
	uint32_t decay = (uint32_t)za_policy_decay_ms();
	struct za_slab *out = NULL;
	for (unsigned k = 0; k <= ZA_SLAB_MAX_ORDER; k++) {
		struct za_slab *slab;
		while ((slab = heap->empty_tail[k]) &&
		       (all || now - za_slab_page(slab)->count >= decay)) {
			__empty_unlink(heap, slab, k);
			slab->next = out;
			out = slab;
		}
	}
	return out;
}

static size_t release_chain(struct za_theap *heap, struct za_slab *slab)
{
	size_t n = 0;
	while (slab) {
		struct za_slab *next = slab->next;
		slab->next = NULL;
		za_slab_release(heap, slab);
		slab = next;
		n++;
	}
	return n;
}

/* Gives back the heap's kept empty slabs that have waited a decay time
 * (all of them when `all`). Any thread may. */
static size_t empty_decay(struct za_theap *heap, bool all)
{
	/* The real clock: the decay pass may run in a thread (the background
	 * reclaimer) that allocates too seldom to keep the cheap one fresh. */
	uint32_t now = (uint32_t)za_now_ms();
	empty_lock(heap);
	struct za_slab *aged = __empty_aged(heap, all, now);
	empty_unlock(heap);
	return release_chain(heap, aged);
}

/* An empty slab on no list: kept (newest first, stamped with the time)
 * while the heap's recent use covers it, else given back. */
void za_slab_keep_empty(struct za_theap *heap, struct za_slab *slab)
{
	unsigned order = za_slab_page(slab)->order;
	uint32_t budget = keep_budget(heap);
	empty_lock(heap);
	struct za_slab *aged = __empty_aged(heap, false, now_ms32());
	bool keep = heap->empty_pages + (1u << order) <= budget;
	if (keep) {
		za_slab_page(slab)->count = now_ms32();   /* the page's `count` is the tier's */
		slab->prev = NULL;
		slab->next = heap->empty[order];
		if (slab->next)
			slab->next->prev = slab;
		else
			heap->empty_tail[order] = slab;
		heap->empty[order] = slab;
		slab->where = ZA_SLAB_EMPTY;
		heap->empty_pages += 1u << order;
	}
	empty_unlock(heap);
	if (!keep)
		za_slab_release(heap, slab);
	release_chain(heap, aged);
}

/* A kept empty slab of `order`, one that last held class `cls` if one of
 * the newest few did (its free list is then ready: no carving again). */
struct za_slab *za_slab_take_empty(struct za_theap *heap, unsigned order, unsigned cls)
{
	if (!__atomic_load_n(&heap->empty[order], __ATOMIC_RELAXED))
		return NULL;
	empty_lock(heap);
	struct za_slab *slab = heap->empty[order], *pick = slab;
	for (int i = 0; slab && i < 8; i++, slab = slab->next)
		if (slab->cls == cls) {
			pick = slab;
			break;
		}
	if (pick)
		__empty_unlink(heap, pick, order);
	empty_unlock(heap);
	return pick;
}

/* ---- tidying: what the holder of a heap does before handing it on ---- */

/*
 * Brings every delayed and remote free home and gives back the slabs that
 * are empty: all of them when `keep_nothing`, else as a local free would.
 * (A FULL slab's remote frees arrive as a delayed free first, which moves
 * it back to its queue; so only the queues need a look.)
 */
void za_slab_tidy(struct za_theap *heap, bool keep_nothing)
{
	struct za_slab *slab;
	za_slab_remote_flush(heap);
	za_slab_delayed_collect(heap);
	for (unsigned cls = 0; cls < ZA_NCLASSES; cls++) {
		slab = heap->cur[cls];
		while (slab != &za_slab_empty && slab) {
			struct za_slab *next = slab->next;
			za_slab_collect(slab);
			if (slab->used == 0 && (keep_nothing || slab != heap->cur[cls])) {
				za_slab_queue_remove(heap, slab);
				heap->used_pages -= 1u << za_slab_page(slab)->order;
				if (keep_nothing)
					za_slab_release(heap, slab);
				else
					za_slab_keep_empty(heap, slab);
			}
			slab = next;
		}
	}
	empty_decay(heap, keep_nothing);
}

/* ---- the orphan pool ---- */

/* Takes every orphan out of the pool (heaps_lock held). */
static struct za_theap *__pool_take_all(void)
{
	struct za_theap *list = heaps_pool;
	heaps_pool = NULL;
	return list;
}

static void __pool_push(struct za_theap *heap)
{
	heap->orphan = true;
	heap->pool_next = heaps_pool;
	heaps_pool = heap;
}

/* Tidies every orphan, giving back what they no longer need. Orphans are
 * out of the pool meanwhile, so no new thread adopts one mid-way. */
static void orphans_tidy(void)
{
	za_lock(&heaps_lock);
	struct za_theap *list = __pool_take_all();
	pthread_mutex_unlock(&heaps_lock);
	if (!list)
		return;
	struct za_theap *last = list;
	for (struct za_theap *h = list; h; h = h->pool_next) {
		h->orphan = false;   /* held: a fork meanwhile drops it */
		za_slab_tidy(h, true);
		last = h;
	}
	za_lock(&heaps_lock);
	for (struct za_theap *h = list; h; h = h->pool_next)
		h->orphan = true;
	last->pool_next = heaps_pool;
	heaps_pool = list;
	pthread_mutex_unlock(&heaps_lock);
}

static void heap_thread_exit(void *arg)
{
	struct za_theap *heap = arg;
	if (za_slab_exit_hook)
		za_slab_exit_hook();
	/* Frees during the rest of the thread's exit are remote frees. */
	za_tls_heap = &za_theap_exited;
	/* Empty slabs stay as they would for a living thread (kept while
	 * recent use covers them, for a decay time): the next thread that
	 * adopts the heap reuses them, and the decay pass tidies orphans. */
	za_slab_tidy(heap, false);
	za_lock(&heaps_lock);
	atomic_fetch_add_explicit(&za_slab_counters.remote_frees, heap->remote_frees,
				  memory_order_relaxed);
	heap->remote_frees = 0;
	__pool_push(heap);
	heaps_orphaned++;
	pthread_mutex_unlock(&heaps_lock);
	atomic_fetch_sub_explicit(&za_slab_counters.heaps_live, 1, memory_order_relaxed);
}

/* Kept empty slabs of every heap: the aged ones for the decay pass, all
 * of them for the drain step; then the orphans are tidied. */
static size_t slab_drain(bool all)
{
	size_t n = 0;
	za_lock(&heaps_lock);
	for (struct za_theap *heap = heaps_all; heap; heap = heap->next)
		n += empty_decay(heap, all);
	pthread_mutex_unlock(&heaps_lock);
	uint64_t before = atomic_load(&za_slab_counters.released);
	if (all)
		za_slab_release_empty(za_tls_heap);
	else
		orphans_tidy();
	return n + (size_t)(atomic_load(&za_slab_counters.released) - before);
}

static void heap_key_create(void)
{
	pthread_key_create(&heap_key, heap_thread_exit);
	za_policy_register_drain(slab_drain);
	/* The secrets differ from run to run: the kernel's random bytes, or
	 * where it has none to give yet, the clock and the stack's address. */
	uintptr_t seed[2];
	if (getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed[0] = (uintptr_t)&ts ^ ((uintptr_t)ts.tv_nsec << 20) ^ (uintptr_t)ts.tv_sec;
		seed[0] *= 0x9e3779b97f4a7c15ull;
		seed[1] = (seed[0] ^ (seed[0] >> 29)) * 0xbf58476d1ce4e5b9ull;
	}
	/* No slab exists yet, so no link was stored with another key. */
	za_slab_keys.mark = seed[0] | 1;
	za_slab_keys.link = seed[1];
}

/* This thread's heap: an orphan from the pool, else a new one. */
struct za_theap *za_theap_acquire(void)
{
	if (unlikely(atomic_load_explicit(&za_slab_no_heaps, memory_order_relaxed)))
		return NULL;
	pthread_once(&heap_once, heap_key_create);
	za_lock(&heaps_lock);
	struct za_theap *heap = heaps_pool;
	if (heap) {
		heaps_pool = heap->pool_next;
		heap->pool_next = NULL;
		heap->orphan = false;
		heaps_orphaned--;
	}
	pthread_mutex_unlock(&heaps_lock);
	if (heap) {
		atomic_fetch_add_explicit(&za_slab_counters.heaps_adopted, 1, memory_order_relaxed);
	} else {
		heap = za_meta_alloc(sizeof *heap);
		if (!heap)
			return NULL;
		for (unsigned cls = 0; cls < ZA_NCLASSES; cls++)
			za_heap_set_cur(heap, cls, &za_slab_empty);
		heap->peak_ms = now_ms32();
		heap->idle_countdown = ZA_IDLE_SCAN_CALLS;
		za_lock(&heaps_lock);
		heap->next = heaps_all;
		if (heaps_all)
			heaps_all->prev = heap;
		heaps_all = heap;
		pthread_mutex_unlock(&heaps_lock);
		atomic_fetch_add_explicit(&za_slab_counters.heaps_created, 1, memory_order_relaxed);
	}
	za_tls_heap = heap;
	pthread_setspecific(heap_key, heap);
	atomic_fetch_add_explicit(&za_slab_counters.heaps_live, 1, memory_order_relaxed);
	return heap;
}

void za_slab_detach_heap(void)
{
	struct za_theap *heap = za_tls_heap;
	if (heap->is_empty_sentinel)
		return;
	pthread_setspecific(heap_key, NULL);
	heap_thread_exit(heap);
	za_tls_heap = &za_theap_empty;
}

/* malloc_trim and the drain step: this thread's empty slabs, kept or not,
 * and the orphans' go back to the buddy core. Other threads' heaps are
 * theirs to trim. */
void za_slab_release_empty(struct za_theap *heap)
{
	if (!heap->is_empty_sentinel)
		za_slab_tidy(heap, true);
	orphans_tidy();
}

void za_slab_stats_get(struct za_slab_stats *st)
{
	memset(st, 0, sizeof *st);
	st->slabs_created = atomic_load(&za_slab_counters.created);
	st->slabs_released = atomic_load(&za_slab_counters.released);
	st->slabs_live = st->slabs_created - st->slabs_released;
	st->slabs_reused = atomic_load(&za_slab_counters.reused);
	st->remote_frees = atomic_load(&za_slab_counters.remote_frees);
	st->delayed_frees = atomic_load(&za_slab_counters.delayed_frees);
	za_lock(&heaps_lock);
	for (struct za_theap *heap = heaps_all; heap; heap = heap->next) {
		st->remote_frees += __atomic_load_n(&heap->remote_frees, __ATOMIC_RELAXED);
		st->lent += __atomic_load_n(&heap->lent, __ATOMIC_RELAXED);
	}
	st->heaps_orphaned = heaps_orphaned;
	pthread_mutex_unlock(&heaps_lock);
	st->heaps_live = atomic_load(&za_slab_counters.heaps_live);
	st->heaps_created = atomic_load(&za_slab_counters.heaps_created);
	st->heaps_adopted = atomic_load(&za_slab_counters.heaps_adopted);
	st->idle_trims = atomic_load(&za_slab_counters.idle_trims);
	st->idle_pages = atomic_load(&za_slab_counters.idle_pages);
}

/* ---- fork ---- */

void za_slab_lock_all(void)
{
	za_lock(&heaps_lock);
}

void za_slab_unlock_all(void)
{
	pthread_mutex_unlock(&heaps_lock);
}

/*
 * In the child, the heaps of the other threads have no thread. One may
 * have been mid-way through a malloc or free when the fork came (the fast
 * paths take no lock), so they are not trusted and not reused: they leave
 * the list of heaps, their memory unused by the child, and frees of their
 * objects are remote frees that nobody collects. The orphans in the pool
 * were held by nobody (their tidier holds heaps_lock or took them out of
 * the pool), so they stay.
 */
void za_slab_reset_child(void)
{
	pthread_mutex_init(&heaps_lock, NULL);
	struct za_theap *heap = heaps_all;
	heaps_all = NULL;
	uint64_t live = 0;
	while (heap) {
		struct za_theap *next = heap->next;
		bool keep = heap->orphan || heap == za_tls_heap;
		if (keep) {
			atomic_store_explicit(&heap->empty_lock, 0, memory_order_relaxed);
			heap->prev = NULL;
			heap->next = heaps_all;
			if (heaps_all)
				heaps_all->prev = heap;
			heaps_all = heap;
			live += heap == za_tls_heap;
		}
		heap = next;
	}
	atomic_store_explicit(&za_slab_counters.heaps_live, live, memory_order_relaxed);
}
