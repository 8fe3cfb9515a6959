/*
 * Shrinkers and the OOM handler: the program's caches as reclaimable
 * memory (kernel: register_shrinker, shrink_slab; out_of_memory).
 *
 * A shrinker is two calls: count (how many bytes could you free now?) and
 * scan (free about this many; how many did you?). Reclaim asks them, in
 * registration order, for what it still lacks after giving back the
 * heap's own free pages: the background reclaimer below the low
 * watermark, the slow path before it fails. The OOM handler is asked
 * last, before a typed ENOMEM, whether to try again; the compaction hook,
 * before a ZA_ENOMEM_FRAGMENTED, whether it moved objects.
 *
 * One round of shrinkers runs at a time, under shrink_lock, so that
 * za_unregister_shrinker can wait for a round that may be calling the one
 * it removes. Callbacks may free (the frees land in this thread's caches,
 * drained after the round) and may allocate: an allocation made inside a
 * callback that reaches the slow path again does not call them again.
 */
#include "policy/policy.h"

#include <errno.h>
#include <pthread.h>

#include "buddy/buddy.h"

#define ZA_MAX_SHRINKERS 16

struct shrinker {
	za_shrink_count_fn count;
	za_shrink_scan_fn scan;
	void *arg;
};

static struct shrinker shrinkers[ZA_MAX_SHRINKERS];
static _Atomic int nr_shrinkers;   /* slots in use, for a cheap "none" test */
static pthread_mutex_t shrink_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(za_oom_fn) oom_fn;
static void *_Atomic oom_arg;
static _Atomic uint64_t st_rounds, st_calls, st_bytes, st_oom_calls;

/* This thread runs a round of shrinkers (and holds shrink_lock), or the
 * OOM handler: no second one from within. */
static __thread bool in_shrink __attribute__((tls_model("initial-exec")));
static __thread bool in_oom __attribute__((tls_model("initial-exec")));

ZA_EXPORT int za_register_shrinker(za_shrink_count_fn count, za_shrink_scan_fn scan, void *arg)
{
	if (!count || !scan) {
		errno = EINVAL;
		return -1;
	}
	bool inside = in_shrink;   /* from a callback: the lock is this thread's */
	if (!inside)
		za_lock(&shrink_lock);
	int id = -1;
	for (int i = 0; i < ZA_MAX_SHRINKERS; i++)
		if (!shrinkers[i].scan) {
			shrinkers[i] = (struct shrinker){ count, scan, arg };
			atomic_fetch_add(&nr_shrinkers, 1);
			id = i;
			break;
		}
	if (!inside)
		pthread_mutex_unlock(&shrink_lock);
	if (id < 0)
		errno = ENOSPC;
	return id;
}

ZA_EXPORT int za_unregister_shrinker(int id)
{
	if (id < 0 || id >= ZA_MAX_SHRINKERS) {
		errno = EINVAL;
		return -1;
	}
	/* From inside a callback this thread holds the lock already. */
	bool inside = in_shrink;
	if (!inside)
		za_lock(&shrink_lock);
	int rc = 0;
	if (shrinkers[id].scan) {
		shrinkers[id] = (struct shrinker){ 0 };
		atomic_fetch_sub(&nr_shrinkers, 1);
	} else {
		errno = EINVAL;
		rc = -1;
	}
	if (!inside)
		pthread_mutex_unlock(&shrink_lock);
	return rc;
}

ZA_EXPORT void za_set_oom_handler(za_oom_fn fn, void *arg)
{
	atomic_store(&oom_arg, arg);
	atomic_store(&oom_fn, fn);
}

static _Atomic(za_compact_fn) compact_fn;
static void *_Atomic compact_arg;
static _Atomic uint64_t st_compact_calls;
static __thread bool in_compact __attribute__((tls_model("initial-exec")));

ZA_EXPORT void za_set_compaction_hook(za_compact_fn fn, void *arg)
{
	atomic_store(&compact_arg, arg);
	atomic_store(&compact_fn, fn);
}

/*
 * The bound on the program's handlers is per allocation request, not per
 * slow path: one malloc may run several (a huge block tries to grow a
 * cached mapping and then maps a fresh one; a slab that cannot be made at
 * one order is tried at another), and each would otherwise ask the handler
 * its own 16 times. The outermost za_policy_request_enter of a thread
 * starts a request; within it the OOM handler is asked at most
 * ZA_OOM_TRIES times (except every round under ZA_F_NOFAIL, whose promise
 * is to wait), and the compaction hook at most ZA_COMPACT_TRIES times.
 */
static __thread struct {
	unsigned depth, oom, compact;
} request __attribute__((tls_model("initial-exec")));

void za_policy_request_enter(void)
{
	if (request.depth++ == 0)
		request.oom = request.compact = 0;
}

void za_policy_request_exit(void)
{
	request.depth--;
}

bool za_policy_compact(size_t size)
{
	za_compact_fn fn = atomic_load_explicit(&compact_fn, memory_order_acquire);
	if (!fn || in_compact || request.compact >= ZA_COMPACT_TRIES)
		return false;
	request.compact++;
	in_compact = true;
	atomic_fetch_add_explicit(&st_compact_calls, 1, memory_order_relaxed);
	bool moved = fn(atomic_load(&compact_arg), size);
	in_compact = false;
	if (moved)
		za_policy_drain();   /* what the moves emptied, back to the zones */
	return moved;
}

size_t za_policy_shrink(size_t want)
{
	if (atomic_load_explicit(&nr_shrinkers, memory_order_relaxed) == 0 || in_shrink || !want)
		return 0;
	za_lock(&shrink_lock);
	in_shrink = true;
	atomic_fetch_add_explicit(&st_rounds, 1, memory_order_relaxed);
	size_t freed = 0;
	for (int i = 0; i < ZA_MAX_SHRINKERS && freed < want; i++) {
		struct shrinker s = shrinkers[i];
		if (!s.scan)
			continue;
		size_t can = s.count(s.arg);
		if (!can)
			continue;
		size_t ask = want - freed < can ? want - freed : can;
		atomic_fetch_add_explicit(&st_calls, 1, memory_order_relaxed);
		freed += s.scan(s.arg, ask);
	}
	in_shrink = false;
	pthread_mutex_unlock(&shrink_lock);
	atomic_fetch_add_explicit(&st_bytes, freed, memory_order_relaxed);
	if (freed)
		za_policy_drain();   /* what the callbacks freed, back to the buddy core */
	return freed;
}

bool za_policy_oom(size_t size, za_status status, bool nofail)
{
	za_oom_fn fn = atomic_load_explicit(&oom_fn, memory_order_acquire);
	if (!fn || in_oom || (!nofail && request.oom >= ZA_OOM_TRIES))
		return false;
	request.oom++;
	in_oom = true;
	atomic_fetch_add_explicit(&st_oom_calls, 1, memory_order_relaxed);
	bool again = fn(atomic_load(&oom_arg), size, status);
	in_oom = false;
	if (again)
		za_policy_drain();
	return again;
}

void za_policy_shrink_stats(struct za_shrink_stats *out)
{
	out->shrinkers = (unsigned)atomic_load(&nr_shrinkers);
	out->rounds = atomic_load(&st_rounds);
	out->calls = atomic_load(&st_calls);
	out->bytes_freed = atomic_load(&st_bytes);
	out->oom_calls = atomic_load(&st_oom_calls);
	out->compaction_calls = atomic_load(&st_compact_calls);
}

/* fork: the child has no round in progress. */
void za_policy_shrink_reset_child(void)
{
	pthread_mutex_init(&shrink_lock, NULL);
	in_shrink = false;
	in_oom = false;
	in_compact = false;
}
