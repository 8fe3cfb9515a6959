/*
 * Threads allocating and freeing pages at orders 0..6 and exact runs, with
 * cross-thread frees: each thread hands some of its blocks through a
 * mutex-protected inbox to the next thread, which verifies and frees them.
 * The main thread runs za_buddy_check concurrently, and the workers drain
 * each other's caches: both steal a cache from its owner. At the end every
 * cache is drained and the zones must be whole again. It all runs twice:
 * with the thieves fencing for the owners (membarrier, where the kernel
 * lets us) and with the owners fencing themselves.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "buddy/pcp.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

#define NTHREADS 6
#define OPS 100000
#define LOCAL_MAX 64
#define INBOX_CAP 64
#define MAX_ORDER_USED 6

struct item {
	void *p;
	uint32_t npages;
	uint8_t order;
	bool exact;
	uint64_t tag;
};

struct inbox {
	pthread_mutex_t lock;
	unsigned n;
	struct item items[INBOX_CAP];
};

struct worker {
	pthread_t thread;
	unsigned id;
	uint64_t seed;
	/* Written by the worker, read by main after join. */
	unsigned failures;
	unsigned allocs, frees, remote_frees, sent;
};

static struct inbox inboxes[NTHREADS];
static struct worker workers[NTHREADS];
static pthread_barrier_t all_sent;
static _Atomic int workers_running;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

#define WCHECK(w, cond, ...)                                                          \
	do {                                                                          \
		if (!(cond)) {                                                        \
			(w)->failures++;                                              \
			pthread_mutex_lock(&report_lock);                             \
			fprintf(stderr, "%s:%d: thread %u: CHECK failed: %s: ", __FILE__, \
				__LINE__, (w)->id, #cond);                            \
			fprintf(stderr, __VA_ARGS__);                                 \
			fputc('\n', stderr);                                          \
			pthread_mutex_unlock(&report_lock);                           \
		}                                                                     \
	} while (0)

static bool alloc_item(struct worker *w, struct test_rng *r, struct item *it, uint64_t tag)
{
	za_status st = ZA_EINVAL;
	it->tag = tag;
	it->exact = rng_below(r, 4) == 0;
	if (it->exact) {
		it->npages = 1 + rng_below(r, 1u << MAX_ORDER_USED);
		it->order = 0;
		it->p = za_alloc_pages_exact(it->npages, ZA_F_NONE, &st);
	} else {
		it->order = (uint8_t)rng_below(r, MAX_ORDER_USED + 1);
		it->npages = 1u << it->order;
		it->p = za_alloc_pages(it->order, ZA_F_NONE, &st);
	}
	WCHECK(w, it->p && st == ZA_OK, "%u pages: %s", it->npages, za_status_str(st));
	if (!it->p)
		return false;
	struct za_zone *zone = za_zone_of(it->p);
	WCHECK(w, zone && zone == za_zone_of((char *)it->p + it->npages * ZA_PAGE_SIZE - 1),
	       "%p not inside one zone", it->p);
	WCHECK(w, aligned_to(it->p, it->exact ? ZA_PAGE_SIZE : it->npages * ZA_PAGE_SIZE),
	       "%p misaligned", it->p);
	pattern_fill(it->p, it->npages, it->tag);
	w->allocs++;
	return true;
}

static void free_item(struct worker *w, const struct item *it)
{
	size_t bad = pattern_verify(it->p, it->npages, it->tag);
	WCHECK(w, bad == it->npages, "%p (tag %llx): page %zu of %u changed", it->p,
	       (unsigned long long)it->tag, bad, it->npages);
	if (it->exact)
		za_free_pages_exact(it->p, it->npages);
	else
		za_free_pages(it->p, it->order);
	w->frees++;
}

/* Frees whatever other threads sent us. */
static void drain_inbox(struct worker *w)
{
	struct item got[INBOX_CAP];
	struct inbox *in = &inboxes[w->id];

	pthread_mutex_lock(&in->lock);
	unsigned n = in->n;
	memcpy(got, in->items, n * sizeof got[0]);
	in->n = 0;
	pthread_mutex_unlock(&in->lock);
	for (unsigned i = 0; i < n; i++) {
		WCHECK(w, (unsigned)(got[i].tag >> 56) != w->id, "own block %p came back",
		       got[i].p);
		free_item(w, &got[i]);
		w->remote_frees++;
	}
}

static bool send_item(struct worker *w, const struct item *it)
{
	struct inbox *out = &inboxes[(w->id + 1) % NTHREADS];
	bool ok = false;
	pthread_mutex_lock(&out->lock);
	if (out->n < INBOX_CAP) {
		out->items[out->n++] = *it;
		ok = true;
	}
	pthread_mutex_unlock(&out->lock);
	w->sent += ok;
	return ok;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct test_rng r;
	struct item local[LOCAL_MAX];
	unsigned nlocal = 0;
	uint64_t tag = (uint64_t)w->id << 56;

	rng_seed(&r, w->seed);
	for (unsigned op = 0; op < OPS; op++) {
		uint32_t x = rng_below(&r, 100);
		if (nlocal < LOCAL_MAX && (x < 50 || nlocal == 0)) {
			if (alloc_item(w, &r, &local[nlocal], ++tag))
				nlocal++;
		} else if (x < 75) {
			unsigned i = rng_below(&r, nlocal);
			struct item it = local[i];
			local[i] = local[--nlocal];
			if (!send_item(w, &it))
				free_item(w, &it);
		} else {
			unsigned i = rng_below(&r, nlocal);
			free_item(w, &local[i]);
			local[i] = local[--nlocal];
		}
		if (op % 16 == 0)
			drain_inbox(w);
		/* Drains every thread's cache while they run. */
		if (op % 2048 == 1024 + w->id)
			za_drain_caches();
	}
	while (nlocal)
		free_item(w, &local[--nlocal]);
	/* Nothing more is sent after this; take the last deliveries. */
	pthread_barrier_wait(&all_sent);
	drain_inbox(w);
	atomic_fetch_sub(&workers_running, 1);
	return NULL;   /* the thread's page cache is drained as it exits */
}

static void run_round(const char *mode)
{
	memset(workers, 0, sizeof workers);
	pthread_barrier_init(&all_sent, NULL, NTHREADS);
	atomic_store(&workers_running, NTHREADS);
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_mutex_init(&inboxes[i].lock, NULL);
	for (unsigned i = 0; i < NTHREADS; i++) {
		workers[i].id = i;
		workers[i].seed = 0x7e57 + 977 * i;
		int rc = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		CHECK(rc == 0);
		if (rc)
			exit(test_done("buddy_threads"));
	}

	/* The checker takes every cache and zone lock: it must find the
	 * invariants true at any moment, whatever the workers are doing. */
	unsigned checks = 0, bad_checks = 0;
	while (atomic_load(&workers_running) > 0) {
		struct za_check_result cr;
		if (za_buddy_check(&cr)) {
			if (bad_checks++ < 3)
				fprintf(stderr, "concurrent check: zone %d pfn %lu order %d: %s\n",
					cr.zone, (unsigned long)cr.pfn, cr.order, cr.what);
		}
		checks++;
		struct timespec ts = { 0, 200 * 1000 };
		nanosleep(&ts, NULL);
	}
	CHECK_MSG(bad_checks == 0, "%u of %u concurrent checks failed", bad_checks, checks);

	unsigned long remote = 0, sent = 0, allocs = 0, frees = 0;
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(workers[i].thread, NULL);
		CHECK_MSG(workers[i].failures == 0, "thread %u: %u failures", i, workers[i].failures);
		remote += workers[i].remote_frees;
		sent += workers[i].sent;
		allocs += workers[i].allocs;
		frees += workers[i].frees;
	}
	CHECK_MSG(allocs == frees, "%lu allocations, %lu frees", allocs, frees);
	CHECK_MSG(remote == sent && remote > 0, "%lu sent, %lu freed remotely", sent, remote);
	printf("%s: %lu blocks, %lu freed by another thread, %u concurrent checks\n", mode, allocs,
	       remote, checks);

	za_drain_caches();
	CHECK_HEAP();
	int z = first_uncoalesced_zone();
	CHECK_MSG(z < 0, "zone %d not fully coalesced", z);
	/* Reclaim gives back every wholly free zone but one spare. */
	za_reclaim();
	CHECK_HEAP();
	struct za_stats s;
	za_stats_get(&s);
	CHECK_MSG(s.pages_cached == 0, "%zu pages still cached", s.pages_cached);
	CHECK_MSG(s.pages_free == s.pages_total, "%zu of %zu pages free", s.pages_free,
		  s.pages_total);
	CHECK_MSG(s.zones == 1, "%zu zones left mapped", s.zones);
	CHECK(first_uncoalesced_zone() < 0);
	CHECK(s.enomem[ZA_ENOMEM_OS] == 0 && s.enomem[ZA_ENOMEM_FRAGMENTED] == 0);
	pthread_barrier_destroy(&all_sent);
}

int main(void)
{
	run_round("first");
	printf("caches were stolen with %s\n",
	       atomic_load(&za_pcp_asym) ? "membarrier" : "fences (no membarrier here)");
	atomic_store(&za_pcp_asym, false);
	run_round("owners fencing");
	return test_done("buddy_threads");
}
