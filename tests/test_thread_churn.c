/*
 * Thread churn: 10,000 short-lived threads, 4 alive at a time, each
 * allocating blocks of many sizes (slab objects of several classes, a page
 * run now and then), freeing about half itself and handing the rest to the
 * main thread, which frees them after the thread has exited (remote frees
 * into abandoned slabs). The heap must stay bounded: the zones mapped, the
 * thread heaps alive and the pages in use must not grow with the number of
 * threads, and once everything is freed, trimmed and drained, the pages in
 * use must be back at the starting level. First, a thread that exits
 * with full slabs must not make the next thread's malloc fail.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 */
#include <pthread.h>
#include <stdlib.h>

#include "slab/slab.h"
#include "tests/malloc_test.h"

#define NTHREADS   10000
#define AT_ONCE    4
#define PER_THREAD 48
#define SAMPLE     1000   /* threads between two samples */

struct job {
	uint64_t seed;
	unsigned n;                  /* handed to the main thread */
	void *ptr[PER_THREAD];
	size_t size[PER_THREAD];
	int errors;
};

static size_t pick_size(struct test_rng *r)
{
	uint32_t x = rng_below(r, 100);
	if (x < 70)
		return 1 + rng_below(r, 256);
	if (x < 95)
		return 257 + rng_below(r, 8 * 1024);
	if (x < 99)
		return 8 * 1024 + rng_below(r, 24 * 1024 + 1);
	return 33 * 1024 + rng_below(r, 200 * 1024);   /* a page run */
}

static void *thread_main(void *arg)
{
	struct job *job = arg;
	struct test_rng rng;
	rng_seed(&rng, job->seed);
	void *mine[PER_THREAD];
	size_t mine_size[PER_THREAD];
	unsigned nmine = 0;
	job->n = 0;
	for (unsigned i = 0; i < PER_THREAD; i++) {
		size_t size = pick_size(&rng);
		void *p = (i & 7) == 7 ? za_calloc(1, size) : za_malloc(size);
		if (!p) {
			job->errors++;
			continue;
		}
		fill_bytes(p, size < 512 ? size : 512, (uintptr_t)p);
		if (rng_below(&rng, 2)) {
			mine[nmine] = p;
			mine_size[nmine++] = size;
		} else {
			job->ptr[job->n] = p;
			job->size[job->n++] = size;
		}
	}
	for (unsigned i = 0; i < nmine; i++) {
		size_t n = mine_size[i] < 512 ? mine_size[i] : 512;
		if (check_bytes(mine[i], n, (uintptr_t)mine[i]) != n)
			job->errors++;
		za_free(mine[i]);
	}
	return NULL;
}

/* ---- a thread that exits with full slabs ---- */

#define FULL_OBJS 256
static void *full_objs[2][FULL_OBJS];
static const size_t full_size[2] = { 32 * 1024, 16 };

/* Fills slabs of two classes to the brim and exits, its objects live on. */
static void *fill_slabs(void *arg)
{
	(void)arg;
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < FULL_OBJS; i++)
			full_objs[c][i] = za_malloc(full_size[c]);
	return NULL;
}

/* The next thread finds those full slabs abandoned: it must still get
 * memory (a regression: it adopted one full slab and returned NULL). */
static void *alloc_after(void *arg)
{
	(void)arg;
	intptr_t failed = 0;
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < 64; i++) {
			void *p = za_malloc(full_size[c]);
			failed += p == NULL;
			za_free(p);
		}
	return (void *)failed;
}

static void test_full_slabs(void)
{
	pthread_t t;
	void *failed = NULL;
	pthread_create(&t, NULL, fill_slabs, NULL);
	pthread_join(t, NULL);
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < FULL_OBJS; i++)
			CHECK(full_objs[c][i] != NULL);
	pthread_create(&t, NULL, alloc_after, NULL);
	pthread_join(t, &failed);
	CHECK_MSG(failed == NULL, "%ld mallocs failed after a thread left full slabs",
		  (long)(intptr_t)failed);
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < FULL_OBJS; i++)
			za_free(full_objs[c][i]);
	za_malloc_trim(0);
	CHECK_HEAP();
}

struct sample {
	size_t zones, pages_used, heaps_live, slabs_live;
};

static struct sample take_sample(void)
{
	struct za_stats st;
	struct za_slab_stats ss;
	za_stats_get(&st);
	za_slab_stats_get(&ss);
	struct sample s = { st.zones, st.pages_total - st.pages_free - st.pages_cached,
			    (size_t)ss.heaps_live, (size_t)ss.slabs_live };
	return s;
}

int main(void)
{
	test_full_slabs();

	static struct job jobs[AT_ONCE];
	struct sample start = take_sample(), max = start;
	int errors = 0;
	unsigned started = 0;

	while (started < NTHREADS) {
		pthread_t th[AT_ONCE];
		for (unsigned k = 0; k < AT_ONCE; k++) {
			jobs[k].seed = started + k;
			if (pthread_create(&th[k], NULL, thread_main, &jobs[k])) {
				CHECK(!"pthread_create");
				return test_done("thread_churn");
			}
		}
		for (unsigned k = 0; k < AT_ONCE; k++) {
			pthread_join(th[k], NULL);
			struct job *job = &jobs[k];
			errors += job->errors;
			for (unsigned i = 0; i < job->n; i++) {
				size_t n = job->size[i] < 512 ? job->size[i] : 512;
				if (check_bytes(job->ptr[i], n, (uintptr_t)job->ptr[i]) != n)
					errors++;
				za_free(job->ptr[i]);
			}
		}
		started += AT_ONCE;

		struct sample s = take_sample();
		if (s.zones > max.zones)
			max.zones = s.zones;
		if (s.pages_used > max.pages_used)
			max.pages_used = s.pages_used;
		if (s.heaps_live > max.heaps_live)
			max.heaps_live = s.heaps_live;
		if (s.slabs_live > max.slabs_live)
			max.slabs_live = s.slabs_live;
		if (started % SAMPLE == 0)
			printf("%5u threads: %zu zones, %zu pages used, %zu heaps, %zu slabs live\n",
			       started, s.zones, s.pages_used, s.heaps_live, s.slabs_live);
	}

	CHECK(errors == 0);
	/* Bounded: nothing grows with the number of threads that have run. At
	 * most AT_ONCE threads were alive at any sample point (none, in fact),
	 * each holding at most a few dozen slabs. */
	CHECK_MSG(max.zones <= 2, "%zu zones mapped at the peak", max.zones);
	CHECK_MSG(max.heaps_live <= start.heaps_live + AT_ONCE, "%zu heaps alive at the peak",
		  max.heaps_live);
	/* At most a slab per class in each heap alive, and the empty ones
	 * a heap keeps (ZA_SLAB_KEEP_MIN_PAGES, 16 pages a slab). */
	CHECK_MSG(max.slabs_live <= start.slabs_live +
					    AT_ONCE * (ZA_NCLASSES + ZA_SLAB_KEEP_MIN_PAGES / 16),
		  "%zu slabs alive at the peak",
		  max.slabs_live);
	/* Pages held, not touched: a slab is a 16-32 page block carved as
	 * used; each of the AT_ONCE heaps may hold one per class and keep
	 * ZA_SLAB_KEEP_MIN_PAGES of empty ones for the thread that adopts it
	 * next. What must not happen is growth with the threads run. */
	const size_t per_heap = ZA_NCLASSES * 32 + ZA_SLAB_KEEP_MIN_PAGES;
	CHECK_MSG(max.pages_used <= start.pages_used + AT_ONCE * per_heap, "%zu pages used at the peak",
		  max.pages_used);

	za_malloc_trim(0);
	za_drain_caches();
	struct sample end = take_sample();
	struct za_slab_stats ss;
	za_slab_stats_get(&ss);
	printf("%u threads done; peak %zu zones, %zu pages used, %zu heaps, %zu slabs; "
	       "after trim %zu pages used (%zu at the start), %zu slabs live; "
	       "%llu slabs created, %llu heaps made, %llu adopted\n",
	       started, max.zones, max.pages_used, max.heaps_live, max.slabs_live,
	       end.pages_used, start.pages_used, end.slabs_live,
	       (unsigned long long)ss.slabs_created, (unsigned long long)ss.heaps_created,
	       (unsigned long long)ss.heaps_adopted);
	CHECK(end.heaps_live == start.heaps_live);
	CHECK_MSG(end.slabs_live <= start.slabs_live, "%zu slabs live after trim", end.slabs_live);
	CHECK_MSG(end.pages_used <= start.pages_used, "%zu pages used after trim",
		  end.pages_used);
	CHECK_HEAP();
	return test_done("thread_churn");
}
