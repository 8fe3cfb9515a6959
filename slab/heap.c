/*
 * Thread heaps: made on a thread's first malloc, handed back when the
 * thread exits. Slabs that still hold live objects at exit are abandoned
 * (owner NULL) onto a list per class, from which other threads adopt them
 * before they take new blocks from the buddy core.
 */
#include <string.h>
#include <time.h>

#include "policy/policy.h"
#include "slab/slab.h"

extern struct za_slab za_slab_empty;

struct za_theap za_theap_empty = {
	.cur = { [0 ... ZA_NCLASSES - 1] = &za_slab_empty },
	.is_empty_sentinel = true,
};
__thread struct za_theap *za_tls_heap __attribute__((tls_model("initial-exec"))) =
	&za_theap_empty;

static struct za_theap *heaps_all;
static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct za_slab *abandoned[ZA_NCLASSES];   /* rings via next/prev */
static pthread_key_t heap_key;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;

/* ---- the abandoned lists (abandoned_lock held) ---- */

static void __abandoned_push(unsigned cls, struct za_slab *slab)
{
	slab->prev = NULL;
	slab->next = abandoned[cls];
	if (abandoned[cls])
		abandoned[cls]->prev = slab;
	abandoned[cls] = slab;
}

static void __abandoned_unlink(unsigned cls, struct za_slab *slab)
{
	if (slab->prev)
		slab->prev->next = slab->next;
	else
		abandoned[cls] = slab->next;
	if (slab->next)
		slab->next->prev = slab->prev;
	slab->next = slab->prev = NULL;
}

void *za_slab_abandoned_take(unsigned cls, struct za_theap *heap)
{
	if (!__atomic_load_n(&abandoned[cls], __ATOMIC_RELAXED))
		return NULL;
	pthread_mutex_lock(&abandoned_lock);
	struct za_slab *slab = abandoned[cls];
	if (slab) {
		__abandoned_unlink(cls, slab);
		za_slab_collect(slab);
	}
	pthread_mutex_unlock(&abandoned_lock);
	if (slab) {
		za_slab_adopt(heap, cls, slab);
		atomic_fetch_add_explicit(&za_slab_counters.adopted, 1, memory_order_relaxed);
	}
	return slab;
}

/* Frees abandoned slabs whose objects have all come home. */
static void release_abandoned_empty(void)
{
	struct za_slab *release = NULL;
	pthread_mutex_lock(&abandoned_lock);
	for (unsigned cls = 0; cls < ZA_NCLASSES; cls++) {
		struct za_slab *slab = abandoned[cls];
		while (slab) {
			struct za_slab *next = slab->next;
			za_slab_collect(slab);
			if (slab->used == 0) {
				__abandoned_unlink(cls, slab);
				slab->next = release;
				release = slab;
			}
			slab = next;
		}
	}
	pthread_mutex_unlock(&abandoned_lock);
	while (release) {
		struct za_slab *next = release->next;
		release->next = NULL;
		za_slab_release(release);
		release = next;
	}
}

/* ---- heap lifetime ---- */

/* Hands every slab of `heap` back: empty ones to the buddy core, the rest
 * to the abandoned lists. */
static void heap_abandon(struct za_theap *heap)
{
	for (unsigned cls = 0; cls < ZA_NCLASSES; cls++) {
		struct za_slab *slab;
		while ((slab = heap->ring[cls])) {
			za_slab_ring_remove(heap, cls, slab);
			za_slab_collect(slab);
			if (slab->used == 0) {
				za_slab_release(slab);
				continue;
			}
			atomic_store_explicit(&slab->owner, NULL, memory_order_release);
			pthread_mutex_lock(&abandoned_lock);
			__abandoned_push(cls, slab);
			pthread_mutex_unlock(&abandoned_lock);
			atomic_fetch_add_explicit(&za_slab_counters.abandoned, 1,
						  memory_order_relaxed);
		}
		heap->cur[cls] = &za_slab_empty;
	}
}

/* Off the list of heaps (heaps_lock held); its count goes to the total. */
static void heap_unlink(struct za_theap *heap)
{
	atomic_fetch_add_explicit(&za_slab_counters.remote_frees, heap->remote_frees,
				  memory_order_relaxed);
	if (heap->prev)
		heap->prev->next = heap->next;
	else
		heaps_all = heap->next;
	if (heap->next)
		heap->next->prev = heap->prev;
}

static void heap_thread_exit(void *arg)
{
	struct za_theap *heap = arg;
	/* Frees during the rest of the thread's exit are remote frees. */
	za_tls_heap = &za_theap_empty;
	heap_abandon(heap);
	pthread_mutex_lock(&heaps_lock);
	heap_unlink(heap);
	pthread_mutex_unlock(&heaps_lock);
	za_meta_free(heap, sizeof *heap);
	atomic_fetch_sub_explicit(&za_slab_counters.heaps_live, 1, memory_order_relaxed);
	release_abandoned_empty();
}

/* The policy's drain step: this thread's empty slabs and the abandoned
 * empty ones go back to the buddy core. */
static size_t slab_drain(void)
{
	uint64_t before = atomic_load(&za_slab_counters.released);
	za_slab_release_empty(za_tls_heap);
	return (size_t)(atomic_load(&za_slab_counters.released) - before);
}

static void heap_key_create(void)
{
	pthread_key_create(&heap_key, heap_thread_exit);
	za_policy_register_drain(slab_drain);
	/* The double-free mark differs from run to run. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uintptr_t seed = (uintptr_t)&ts ^ ((uintptr_t)ts.tv_nsec << 20) ^ (uintptr_t)ts.tv_sec;
	seed *= 0x9e3779b97f4a7c15ull;
	za_slab_free_mark = seed | 1;
}

struct za_theap *za_theap_create(void)
{
	pthread_once(&heap_once, heap_key_create);
	struct za_theap *heap = za_meta_alloc(sizeof *heap);
	if (!heap)
		return NULL;
	for (unsigned cls = 0; cls < ZA_NCLASSES; cls++)
		heap->cur[cls] = &za_slab_empty;
	pthread_mutex_lock(&heaps_lock);
	heap->next = heaps_all;
	if (heaps_all)
		heaps_all->prev = heap;
	heaps_all = heap;
	pthread_mutex_unlock(&heaps_lock);
	za_tls_heap = heap;
	pthread_setspecific(heap_key, heap);
	atomic_fetch_add_explicit(&za_slab_counters.heaps_created, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&za_slab_counters.heaps_live, 1, memory_order_relaxed);
	return heap;
}

/* malloc_trim: this thread's empty slabs and the abandoned empty ones go
 * back to the buddy core. Other threads' heaps are theirs to trim. */
void za_slab_release_empty(struct za_theap *heap)
{
	if (!heap->is_empty_sentinel) {
		for (unsigned cls = 0; cls < ZA_NCLASSES; cls++) {
			struct za_slab *slab = heap->ring[cls];
			for (unsigned n = heap->nslabs[cls]; n; n--) {
				struct za_slab *next = slab->next;
				za_slab_collect(slab);
				if (slab->used == 0) {
					za_slab_ring_remove(heap, cls, slab);
					za_slab_release(slab);
				}
				slab = next;
			}
		}
	}
	release_abandoned_empty();
}

void za_slab_stats_get(struct za_slab_stats *st)
{
	memset(st, 0, sizeof *st);
	st->slabs_created = atomic_load(&za_slab_counters.created);
	st->slabs_released = atomic_load(&za_slab_counters.released);
	st->slabs_live = st->slabs_created - st->slabs_released;
	st->slabs_abandoned = atomic_load(&za_slab_counters.abandoned);
	st->slabs_adopted = atomic_load(&za_slab_counters.adopted);
	st->remote_frees = atomic_load(&za_slab_counters.remote_frees);
	pthread_mutex_lock(&heaps_lock);
	for (struct za_theap *heap = heaps_all; heap; heap = heap->next)
		st->remote_frees += __atomic_load_n(&heap->remote_frees, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&heaps_lock);
	st->heaps_live = atomic_load(&za_slab_counters.heaps_live);
	st->heaps_created = atomic_load(&za_slab_counters.heaps_created);
}

/* ---- fork ---- */

void za_slab_lock_all(void)
{
	pthread_mutex_lock(&heaps_lock);
	pthread_mutex_lock(&abandoned_lock);
}

void za_slab_unlock_all(void)
{
	pthread_mutex_unlock(&abandoned_lock);
	pthread_mutex_unlock(&heaps_lock);
}

/* In the child, the other threads' heaps have no thread: abandon their
 * slabs so this thread can adopt them. */
void za_slab_reset_child(void)
{
	pthread_mutex_init(&heaps_lock, NULL);
	pthread_mutex_init(&abandoned_lock, NULL);
	struct za_theap *heap = heaps_all;
	while (heap) {
		struct za_theap *next = heap->next;
		if (heap != za_tls_heap) {
			heap_abandon(heap);
			heap_unlink(heap);
			za_meta_free(heap, sizeof *heap);
			atomic_fetch_sub_explicit(&za_slab_counters.heaps_live, 1,
						  memory_order_relaxed);
		}
		heap = next;
	}
}
