/*
 * Thread stress of the malloc family: 8 threads, 1,000,000 operations each
 * (ZA_STRESS_OPS overrides), sizes across every tier (mostly slab objects,
 * some page runs, a few huge mappings), malloc/calloc/memalign/realloc and
 * free/free_sized; a quarter of the blocks another thread receives are
 * reallocated before being freed. Frees cross threads through per-thread mailboxes (a
 * mutex and an array each) for at least 30% of all frees. Every block is
 * stamped with a pattern when allocated and verified before it is freed or
 * moved, so a block handed to two callers, or written by a free list, is
 * caught. At the end the buddy checker must find the heap clean, and every
 * page must be back once the caches are drained.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 * Built again as test_malloc_threads_names, calling the glibc names of
 * libzonealloc.so, which tests/test_backends.sh runs under each backend.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "slab/slab.h"
#include "tests/malloc_test.h"

#ifdef TEST_NAMES
#include <malloc.h>
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);
#endif

#define NTHREADS   8
#define SLOTS      2048
#define MAILBOX    4096
#define REMOTE_PCT 45   /* of frees offered to another thread */

struct block {
	unsigned char *p;
	size_t size;
	uint64_t seed;
	size_t align;   /* memalign's, until a realloc; 0: malloc's */
};

struct mailbox {
	pthread_mutex_t lock;
	size_t n;
	struct block items[MAILBOX];
};

struct worker {
	int id;
	pthread_t thread;
	struct test_rng rng;
	struct block slots[SLOTS];
	struct mailbox box;
	struct block batch[MAILBOX];   /* the mailbox's contents, being freed */
	/* counters */
	uint64_t ops, allocs, frees_local, frees_sent, frees_received, reallocs;
	uint64_t by_tier[3];   /* slab, run, huge allocations */
	uint64_t bytes;
	int errors;
};

static struct worker workers[NTHREADS];
static pthread_barrier_t barrier;
static long ops_per_thread = 1000000;

/* ---- patterns: words, every byte of small blocks, samples of big ones ---- */

static inline uint64_t word_at(uint64_t seed, size_t i)
{
	return (seed + i) * 0x9e3779b97f4a7c15ULL;
}

/* Applies fn to the 8-byte words a block of `size` carries: all of them up
 * to 4 KiB, otherwise the first and last 32 and one per 16 KiB. */
#define FOR_SAMPLED_WORDS(size, i, body)                                       \
	do {                                                                   \
		size_t nw_ = (size) / 8;                                       \
		if (nw_ <= 512) {                                              \
			for (size_t i = 0; i < nw_; i++)                       \
				body;                                          \
		} else {                                                       \
			for (size_t i = 0; i < 32; i++)                        \
				body;                                          \
			for (size_t i = 2048; i < nw_ - 32; i += 2048)         \
				body;                                          \
			for (size_t i = nw_ - 32; i < nw_; i++)                \
				body;                                          \
		}                                                              \
	} while (0)

static void stamp(struct block *b)
{
	uint64_t *w = (uint64_t *)b->p;
	FOR_SAMPLED_WORDS(b->size, i, w[i] = word_at(b->seed, i));
	for (size_t i = b->size & ~(size_t)7; i < b->size; i++)
		b->p[i] = (unsigned char)(b->seed + i);
}

/* Verifies the first `limit` bytes' worth of the stamp. */
static bool verify(const struct block *b, size_t limit)
{
	const uint64_t *w = (const uint64_t *)b->p;
	size_t size = b->size < limit ? b->size : limit;
	bool ok = true;
	/* Sampling depends on the block size; limit only cuts it. */
	FOR_SAMPLED_WORDS(b->size, i, ok &= (i + 1) * 8 > size || w[i] == word_at(b->seed, i));
	for (size_t i = b->size & ~(size_t)7; i < size; i++)
		ok &= b->p[i] == (unsigned char)(b->seed + i);
	return ok;
}

/* ---- sizes: mostly small, some runs, rare huge ---- */

static size_t pick_size(struct test_rng *r, int *tier)
{
	uint32_t x = rng_below(r, 100000);
	*tier = 0;
	if (x < 80000)
		return 1 + rng_below(r, 512);
	if (x < 95000)
		return 513 + rng_below(r, 4096);
	if (x < 98800)
		return 4096 + rng_below(r, 32 * 1024 - 4096 + 1);
	*tier = 1;
	if (x < 99900)
		return 32 * 1024 + 1 + rng_below(r, 256 * 1024);
	if (x < 99980)
		return 256 * 1024 + rng_below(r, 4 * 1024 * 1024 - 256 * 1024 + 1);
	*tier = 2;
	return 4 * 1024 * 1024 + 1 + rng_below(r, 4 * 1024 * 1024);
}

static void fail(struct worker *w, const char *what, const struct block *b)
{
	if (w->errors++ < 10)
		fprintf(stderr, "thread %d: %s: block %p of %zu bytes (seed %llu)\n", w->id, what,
			(void *)b->p, b->size, (unsigned long long)b->seed);
}

static bool allocate(struct worker *w, struct block *b)
{
	int tier;
	size_t size = pick_size(&w->rng, &tier);
	uint32_t how = rng_below(&w->rng, 16);
	unsigned char *p;
	size_t align = 0;
	if (how == 0) {
		p = F(calloc)(1, size);
		if (p) {
			for (size_t i = 0; i < size; i += (size > 4096 ? 4093 : 1))
				if (p[i]) {
					struct block z = { p, size, 0, 0 };
					fail(w, "calloc memory not zero", &z);
					break;
				}
		}
	} else if (how == 1) {
		align = (size_t)16 << rng_below(&w->rng, 9);   /* 16 B .. 4 KiB */
		p = F(memalign)(align, size);
		if (p && ((uintptr_t)p & (align - 1))) {
			struct block z = { p, size, 0, 0 };
			fail(w, "memalign misaligned", &z);
		}
	} else {
		p = F(malloc)(size);
	}
	if (!p) {
		struct block z = { NULL, size, 0, 0 };
		fail(w, "allocation failed", &z);
		return false;
	}
	b->p = p;
	b->size = size;
	b->align = align;
	b->seed = rng_next(&w->rng);
	if (((uintptr_t)p & 15) || F(malloc_usable_size)(p) < size)
		fail(w, "misaligned or short block", b);
	stamp(b);
	w->allocs++;
	w->by_tier[tier]++;
	w->bytes += size;
	return true;
}

static void release(struct worker *w, struct block *b, bool mine)
{
	if (!verify(b, SIZE_MAX))
		fail(w, mine ? "pattern broken before free" : "pattern broken in transit", b);
	/* C23: free_sized takes what malloc or realloc was given;
	 * free_aligned_sized what an aligned allocation was. */
	if ((b->size & 1) && b->align)
		F(free_aligned_sized)(b->p, b->align, b->size);
	else if (b->size & 1)
		F(free_sized)(b->p, b->size);
	else
		F(free)(b->p);
	b->p = NULL;
}

static void drain_mailbox(struct worker *w)
{
	struct block *batch = w->batch;
	pthread_mutex_lock(&w->box.lock);
	size_t n = w->box.n;
	memcpy(batch, w->box.items, n * sizeof *batch);
	w->box.n = 0;
	pthread_mutex_unlock(&w->box.lock);
	for (size_t i = 0; i < n; i++) {
		struct block *b = &batch[i];
		if (i % 4 == 3) {
			/* realloc of another thread's block, then free. */
			int tier;
			size_t size = pick_size(&w->rng, &tier);
			if (!verify(b, SIZE_MAX))
				fail(w, "pattern broken in transit", b);
			unsigned char *q = F(realloc)(b->p, size);
			if (!q) {
				fail(w, "realloc of a received block failed", b);
			} else {
				struct block moved = { q, b->size, b->seed, 0 };
				if (!verify(&moved, size))
					fail(w, "realloc of a received block lost data", &moved);
				b->p = q;
				b->size = size;
				b->align = 0;
				stamp(b);
				w->reallocs++;
			}
		}
		release(w, b, false);
	}
	w->frees_received += n;
}

static bool send(struct worker *to, const struct block *b)
{
	bool ok = false;
	pthread_mutex_lock(&to->box.lock);
	if (to->box.n < MAILBOX) {
		to->box.items[to->box.n++] = *b;
		ok = true;
	}
	pthread_mutex_unlock(&to->box.lock);
	return ok;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (long op = 0; op < ops_per_thread; op++) {
		if ((op & 63) == 0)
			drain_mailbox(w);
		struct block *b = &w->slots[rng_below(&w->rng, SLOTS)];
		w->ops++;
		if (!b->p) {
			allocate(w, b);
			continue;
		}
		uint32_t what = rng_below(&w->rng, 100);
		if (what < 10) {
			/* realloc to another size, maybe another tier. */
			int tier;
			size_t size = pick_size(&w->rng, &tier);
			if (!verify(b, SIZE_MAX))
				fail(w, "pattern broken before realloc", b);
			unsigned char *q = F(realloc)(b->p, size);
			if (!q) {
				fail(w, "realloc failed", b);
				continue;
			}
			struct block moved = { q, b->size, b->seed, 0 };
			if (!verify(&moved, size))
				fail(w, "realloc lost data", &moved);
			b->p = q;
			b->size = size;
			b->align = 0;
			b->seed = rng_next(&w->rng);
			stamp(b);
			w->reallocs++;
			continue;
		}
		if (what < 10 + REMOTE_PCT) {
			struct worker *to = &workers[(w->id + 1 + rng_below(&w->rng, NTHREADS - 1)) % NTHREADS];
			if (!verify(b, SIZE_MAX))
				fail(w, "pattern broken before send", b);
			if (send(to, b)) {
				b->p = NULL;
				w->frees_sent++;
				continue;
			}
		}
		release(w, b, true);
		w->frees_local++;
	}
	/* Nobody sends after the barrier: drain, free what is left, exit. */
	pthread_barrier_wait(&barrier);
	drain_mailbox(w);
	for (size_t i = 0; i < SLOTS; i++)
		if (w->slots[i].p) {
			release(w, &w->slots[i], true);
			w->frees_local++;
		}
	return NULL;
}

int main(void)
{
	const char *env = getenv("ZA_STRESS_OPS");
	if (env && atol(env) > 0)
		ops_per_thread = atol(env);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t used0 = pages_used();
	pthread_barrier_init(&barrier, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		workers[i].id = i;
		rng_seed(&workers[i].rng, 1000 + (uint64_t)i);
		pthread_mutex_init(&workers[i].box.lock, NULL);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);

	uint64_t ops = 0, allocs = 0, local = 0, sent = 0, received = 0, reallocs = 0;
	uint64_t tiers[3] = { 0 }, bytes = 0;
	int errors = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(workers[i].thread, NULL);
		struct worker *w = &workers[i];
		ops += w->ops;
		allocs += w->allocs;
		local += w->frees_local;
		sent += w->frees_sent;
		received += w->frees_received;
		reallocs += w->reallocs;
		bytes += w->bytes;
		for (int t = 0; t < 3; t++)
			tiers[t] += w->by_tier[t];
		errors += w->errors;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	uint64_t frees = local + received;
	printf("%d threads, %llu ops in %.2f s: %llu allocations (%llu slab, %llu run, %llu huge; %.1f GiB), "
	       "%llu reallocs, %llu frees, %llu of them cross-thread (%.1f%%)\n",
	       NTHREADS, (unsigned long long)ops, secs, (unsigned long long)allocs,
	       (unsigned long long)tiers[0], (unsigned long long)tiers[1],
	       (unsigned long long)tiers[2], (double)bytes / (1 << 30),
	       (unsigned long long)reallocs, (unsigned long long)frees,
	       (unsigned long long)received, frees ? 100.0 * (double)received / (double)frees : 0);

	CHECK(errors == 0);
	CHECK(ops == (uint64_t)ops_per_thread * NTHREADS);
	CHECK(sent == received);
	CHECK(frees == allocs);   /* every block freed exactly once */
	CHECK(received * 100 >= frees * 30);
	CHECK(tiers[1] > 0 && tiers[2] > 0);
	CHECK_HEAP();
#ifndef TEST_NAMES
	/* Each thread counts its remote frees; the counts of exited threads
	 * must have been carried into the total. */
	struct za_slab_stats ss;
	za_slab_stats_get(&ss);
	printf("slab remote frees: %llu\n", (unsigned long long)ss.remote_frees);
	CHECK_MSG(ss.remote_frees >= received / 2, "%llu remote frees counted, %llu received",
		  (unsigned long long)ss.remote_frees, (unsigned long long)received);

	/* Every thread has exited: their slabs and caches are back. */
	za_malloc_trim(0);
	za_drain_caches();
	size_t used = pages_used();
	CHECK_MSG(used <= used0 + 8, "%zu pages still in use (%zu at the start)", used, used0);
#else
	(void)used0;
#endif
	CHECK_HEAP();
	za_stats_print(1);
	return test_done("malloc_threads");
}
