/*
 * fork from a multithreaded program while the other threads allocate:
 * 100 rounds. Four threads keep allocating, stamping and freeing blocks of
 * every tier and publish some of them in slots; one also calls malloc_trim
 * now and then, so forks land in the middle of reclaim passes. At each fork the child
 * verifies and frees the blocks published at that instant (memory of
 * threads that do not exist in the child), allocates and frees blocks of
 * every size itself, lets glibc allocate (stdio, strdup, a thread), checks
 * the heap and exits 0. The parent asserts exit status 0 every round.
 *
 * Linked with libzonealloc.so, which replaces malloc for the whole process
 * (as LD_PRELOAD does), so glibc's own allocations in the child are ours
 * and the fork handlers are those of the real preload.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "tests/malloc_test.h"

#define ROUNDS   100
#define WORKERS  4
#define PUBLISH  64

/* A published block: its header says how to verify the rest. */
struct pub {
	size_t size;
	uint64_t seed;
	unsigned char data[];
};

static _Atomic(struct pub *) slots[WORKERS][PUBLISH];
static atomic_bool stop;
static atomic_ulong worker_ops;

static size_t pick_size(struct test_rng *r)
{
	uint32_t x = rng_below(r, 1000);
	if (x < 850)
		return 1 + rng_below(r, 1024);
	if (x < 980)
		return 1024 + rng_below(r, 31 * 1024);
	if (x < 998)
		return 32 * 1024 + rng_below(r, 512 * 1024);
	return 4 * 1024 * 1024 + rng_below(r, 2 * 1024 * 1024);
}

static struct pub *pub_new(struct test_rng *r)
{
	size_t size = pick_size(r);
	struct pub *b = malloc(sizeof *b + size);
	if (!b)
		abort();
	b->size = size;
	b->seed = rng_next(r);
	fill_bytes(b->data, size < 4096 ? size : 4096, b->seed);
	return b;
}

static bool pub_ok(const struct pub *b)
{
	size_t n = b->size < 4096 ? b->size : 4096;
	return check_bytes(b->data, n, b->seed) == n;
}

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct test_rng rng;
	rng_seed(&rng, 77 + (uint64_t)id);
	void *scratch[16] = { 0 };
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		/* Publish a new block; the old one is verified and freed. */
		struct pub *b = pub_new(&rng);
		struct pub *old = atomic_exchange(&slots[id][rng_below(&rng, PUBLISH)], b);
		if (old) {
			if (!pub_ok(old))
				abort();
			free(old);
		}
		/* Unpublished churn, including realloc and calloc. */
		unsigned k = rng_below(&rng, 16);
		if (scratch[k]) {
			if (rng_below(&rng, 4) == 0) {
				scratch[k] = realloc(scratch[k], pick_size(&rng));
				continue;
			}
			free(scratch[k]);
			scratch[k] = NULL;
		} else {
			scratch[k] = rng_below(&rng, 2) ? calloc(1, pick_size(&rng))
						       : malloc(pick_size(&rng));
		}
		/* One thread also gives memory back now and then: a reclaim
		 * pass may be under way when the fork comes. */
		if (atomic_fetch_add_explicit(&worker_ops, 1, memory_order_relaxed) % 64 == 0 &&
		    id == 0)
			malloc_trim(0);
	}
	for (int k = 0; k < 16; k++)
		free(scratch[k]);
	return NULL;
}

static void *child_thread(void *arg)
{
	for (int i = 0; i < 200; i++)
		free(malloc((size_t)i * 37 + 1));
	return arg;
}

/* The child's work; returns the exit status. */
static int child(int round, void **mine, unsigned nmine)
{
	/* Blocks other threads published before the fork. */
	for (int w = 0; w < WORKERS; w++)
		for (int i = 0; i < PUBLISH; i++) {
			struct pub *b = atomic_load(&slots[w][i]);
			if (!b)
				continue;
			if (!pub_ok(b))
				return 10;
			if ((w + i + round) % 2)
				free(b);
			else if (!(b = realloc(b, sizeof *b + b->size * 2 + 1)))
				return 11;
			else
				free(b);
		}
	/* Blocks this thread allocated before the fork. */
	for (unsigned i = 0; i < nmine; i++)
		free(mine[i]);
	/* New blocks of every tier. */
	struct test_rng rng;
	rng_seed(&rng, (uint64_t)round);
	void *p[64];
	for (int i = 0; i < 64; i++) {
		size_t size = i == 63 ? 5 * 1024 * 1024 : pick_size(&rng);
		p[i] = malloc(size);
		if (!p[i])
			return 12;
		memset(p[i], i, size);
	}
	for (int i = 0; i < 64; i++)
		free(p[i]);
	/* glibc allocating through us. */
	char *s = strdup("child of a multithreaded parent");
	FILE *f = fopen("/proc/self/status", "r");
	if (!s || !f)
		return 13;
	char line[256];
	while (fgets(line, sizeof line, f))
		;
	fclose(f);
	free(s);
	pthread_t t;
	if (pthread_create(&t, NULL, child_thread, NULL) || pthread_join(t, NULL))
		return 14;
	struct za_check_result res;
	if (za_buddy_check(&res)) {
		fprintf(stderr, "child: heap check: zone %d pfn %lu: %s\n", res.zone,
			(unsigned long)res.pfn, res.what);
		return 15;
	}
	return 0;
}

int main(void)
{
	pthread_t th[WORKERS];
	for (int i = 0; i < WORKERS; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);

	struct test_rng rng;
	rng_seed(&rng, 5);
	int failed = 0;
	for (int round = 0; round < ROUNDS; round++) {
		/* Let the workers run a little between forks. */
		unsigned long before = atomic_load(&worker_ops);
		while (atomic_load(&worker_ops) < before + 200)
			sched_yield();
		void *mine[8];
		for (int i = 0; i < 8; i++)
			mine[i] = malloc(pick_size(&rng));

		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0) {
			CHECK(!"fork");
			break;
		}
		if (pid == 0) {
			alarm(60);   /* a deadlocked child dies of SIGALRM */
			exit(child(round, mine, 8));
		}
		for (int i = 0; i < 8; i++)
			free(mine[i]);
		int status = 0;
		waitpid(pid, &status, 0);
		bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		CHECK_MSG(ok, "round %d: child %s %d", round,
			  WIFSIGNALED(status) ? "died of signal" : "exited with",
			  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		failed += !ok;
	}

	atomic_store(&stop, true);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(th[i], NULL);
	for (int w = 0; w < WORKERS; w++)
		for (int i = 0; i < PUBLISH; i++) {
			struct pub *b = atomic_load(&slots[w][i]);
			if (b) {
				CHECK(pub_ok(b));
				free(b);
			}
		}
	printf("%d forks from %d allocating threads (%lu worker ops), %d children failed\n",
	       ROUNDS, WORKERS, atomic_load(&worker_ops), failed);
	CHECK_HEAP();
	return test_done("fork");
}
