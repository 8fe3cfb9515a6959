/*
 * examples/defrag: cooperative compaction, as Redis and Valkey do it.
 *
 * A table of a million small strings (16 to 80 bytes) is built, 90% of
 * them are deleted at random, and the survivors pin nearly every slab the
 * table used: the heap is mostly free, and none of it can go back to the
 * OS. Then the table is defragmented: each string the heap hints should
 * move (za_defrag_hint) is copied into a block from za_defrag_alloc and
 * the old one freed with za_defrag_free; za_reclaim() then gives the
 * emptied slabs back.
 *
 * Run under zonealloc (LD_PRELOAD=libzonealloc.so, or zonealloc
 * build/examples/defrag) and under any other allocator: without the za_*
 * calls (looked up at run time) nothing can be moved, and malloc_trim(0)
 * is all there is. Prints RSS after building, after deleting, and after
 * defragmenting, with the moves made and the time they took.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 1000000

static char *table[N];

static long rss_kb(void)
{
	char buf[256];
	int fd = open("/proc/self/statm", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *rss = strchr(buf, ' ');
	return rss ? strtol(rss + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024) : 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(void)
{
	bool (*hint)(const void *) = (bool (*)(const void *))dlsym(RTLD_DEFAULT, "za_defrag_hint");
	void *(*dalloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "za_defrag_alloc");
	void (*dfree)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "za_defrag_free");
	size_t (*reclaim)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "za_reclaim");
	bool za = hint && dalloc && dfree && reclaim;

	long rss0 = rss_kb();
	size_t live_bytes = 0;
	for (size_t i = 0; i < N; i++) {
		size_t len = 15 + next() % 65;
		table[i] = malloc(len + 1);
		memset(table[i], 'a' + (int)(i % 26), len);
		table[i][len] = 0;
	}
	long rss_built = rss_kb();
	for (size_t i = 0; i < N; i++)
		if (next() % 10) {
			free(table[i]);
			table[i] = NULL;
		} else {
			live_bytes += strlen(table[i]) + 1;
		}
	malloc_trim(0);
	long rss_deleted = rss_kb();

	double t0 = now_s();
	size_t moves = 0;
	if (za) {
		for (size_t i = 0; i < N; i++) {
			char *s = table[i];
			if (!s || !hint(s))
				continue;
			size_t n = strlen(s) + 1;
			char *copy = dalloc(n);
			memcpy(copy, s, n);
			dfree(s);
			table[i] = copy;
			moves++;
		}
		reclaim();
	} else {
		malloc_trim(0);
	}
	double secs = now_s() - t0;
	long rss_after = rss_kb();

	/* The table must be intact. */
	uint64_t check = 0;
	for (size_t i = 0; i < N; i++)
		if (table[i])
			check += (uint64_t)(unsigned char)table[i][0] * strlen(table[i]);
	printf("%s: %zu strings live (%zu KiB of them) of %d\n",
	       za ? "zonealloc, defragmented" : "no za_defrag_* (not zonealloc): malloc_trim only",
	       (size_t)N / 10, live_bytes >> 10, N);
	printf("  RSS: %ld KiB at start, %ld built, %ld after deleting 90%%, %ld after "
	       "defragmenting (%zu moves, %.3f s)\n",
	       rss0, rss_built, rss_deleted, rss_after, moves, secs);
	printf("  checksum %llu\n", (unsigned long long)check);
	for (size_t i = 0; i < N; i++)
		free(table[i]);
	return 0;
}
