/*
 * A program whose allocation calls are known, for tests/test_trace.sh: it
 * prints how many calls of each kind it makes and its own peak of live
 * requested bytes, and the trace recorded of it must agree. Three phases,
 * each ended by a join, so the peak is the same however threads run:
 *   1. the main thread: malloc of 1..1000 bytes, calloc, realloc (grow,
 *      shrink, from NULL, to 0), memalign, posix_memalign, aligned_alloc,
 *      free_sized, and operator new/delete (sized) looked up with dlsym;
 *   2. a producer thread allocates 5000 blocks of 64 bytes and exits; a
 *      consumer thread frees them all (frees of another thread's blocks);
 *   3. the main thread frees what it kept.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void free_sized(void *p, size_t size);   /* C23; zonealloc exports it */

#define NSMALL 1000
#define NCROSS 5000

static void *cross[NCROSS];
static long calls_malloc, calls_calloc, calls_realloc, calls_memalign, calls_free,
	calls_free_sized;
static long long live, peak;

static void grow(long long n)
{
	live += n;
	if (live > peak)
		peak = live;
}

static void *producer(void *arg)
{
	for (int i = 0; i < NCROSS; i++) {
		cross[i] = malloc(64);
		memset(cross[i], 1, 64);
	}
	return arg;
}

static void *consumer(void *arg)
{
	for (int i = 0; i < NCROSS; i++)
		free(cross[i]);
	return arg;
}

int main(void)
{
	static void *small[NSMALL];
	static size_t small_size[NSMALL];
	void *(*op_new)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "_Znwm");
	void (*op_delete_sized)(void *, size_t) =
		(void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "_ZdlPvm");
	void (*sized_free)(void *, size_t) =
		(void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");

	for (int i = 0; i < NSMALL; i++) {
		small_size[i] = (size_t)i + 1;
		small[i] = malloc(small_size[i]);
		memset(small[i], 2, small_size[i]);
		calls_malloc++;
		grow((long long)small_size[i]);
	}
	void *zeroed[100];
	for (int i = 0; i < 100; i++) {
		zeroed[i] = calloc(10, 10);
		calls_calloc++;
		grow(100);
	}
	for (int i = 0; i < 100; i++) {   /* grow, then shrink every other */
		size_t to = i % 2 ? small_size[i] * 8 : small_size[i] / 2 + 1;
		small[i] = realloc(small[i], to);
		calls_realloc++;
		grow((long long)to - (long long)small_size[i]);
		small_size[i] = to;
	}
	void *fresh = realloc(NULL, 3000);
	calls_malloc++;   /* realloc(NULL, n) is malloc, and recorded as one */
	grow(3000);
	void *gone = malloc(500);
	calls_malloc++;
	grow(500);
	if (realloc(gone, 0) != NULL)   /* glibc's and zonealloc's: a free */
		return 1;
	calls_free++;
	grow(-500);
	void *aligned[30];
	for (int i = 0; i < 10; i++) {
		aligned[i] = memalign(64, 1000);
		if (posix_memalign(&aligned[10 + i], 4096, 5000))
			return 1;
		aligned[20 + i] = aligned_alloc(256, 512);
		calls_memalign += 3;
		grow(1000 + 5000 + 512);
	}
	if (sized_free) {
		for (int i = 0; i < 50; i++) {
			void *p = malloc(200);
			calls_malloc++;
			grow(200);
			sized_free(p, 200);
			calls_free_sized++;
			grow(-200);
		}
	}
	if (op_new && op_delete_sized) {
		for (int i = 0; i < 50; i++) {
			void *p = op_new(48);
			calls_malloc++;   /* operator new is recorded as malloc */
			grow(48);
			op_delete_sized(p, 48);
			calls_free_sized++;
			grow(-48);
		}
	}

	pthread_t t;
	pthread_create(&t, NULL, producer, NULL);
	pthread_join(t, NULL);
	calls_malloc += NCROSS;
	grow(64LL * NCROSS);
	pthread_create(&t, NULL, consumer, NULL);
	pthread_join(t, NULL);
	calls_free += NCROSS;
	grow(-64LL * NCROSS);

	for (int i = 0; i < NSMALL; i++) {
		free(small[i]);
		calls_free++;
		grow(-(long long)small_size[i]);
	}
	for (int i = 0; i < 100; i++) {
		free(zeroed[i]);
		calls_free++;
		grow(-100);
	}
	for (int i = 0; i < 30; i++) {
		free(aligned[i]);
		calls_free++;
	}
	grow(-10LL * (1000 + 5000 + 512));
	free(fresh);
	calls_free++;
	grow(-3000);
	printf("malloc=%ld calloc=%ld realloc=%ld memalign=%ld free=%ld free_sized=%ld peak=%lld "
	       "live=%lld\n",
	       calls_malloc, calls_calloc, calls_realloc, calls_memalign, calls_free,
	       calls_free_sized, peak, live);
	return 0;
}
