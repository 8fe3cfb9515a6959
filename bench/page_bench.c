/*
 * page_bench: alloc+free of one block, buddy against the kernel.
 *
 * For orders 0, 3 and 9 it times N pairs of za_alloc_pages + za_free_pages
 * and N pairs of mmap + munmap of the same size, each with one byte of the
 * block written (so the memory is really there) and without. Every variant
 * is warmed up, then the two allocators run in turns (buddy, mmap, buddy,
 * mmap, ...) so that both see the same machine noise, and the median of the
 * repetitions is reported in ns per alloc+free pair.
 *
 * usage: page_bench [reps] [scale]
 *   reps   timed repetitions of each variant (default 7, odd is best)
 *   scale  multiplies the pair counts (default 1.0)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "zonealloc.h"

#define MAX_REPS 101

struct variant {
	unsigned order;
	long pairs;   /* alloc+free pairs per repetition at scale 1 */
};

static const struct variant variants[] = {
	{ 0, 200000 },
	{ 3, 100000 },
	{ 9, 5000 },
};
#define NR_VARIANTS (sizeof variants / sizeof variants[0])

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Keeps the compiler from dropping a block nobody reads. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "g"(p) : "memory");
}

static double run_buddy(unsigned order, long pairs, int touch)
{
	za_status st;
	double t0 = now_ns();
	for (long i = 0; i < pairs; i++) {
		void *p = za_alloc_pages(order, ZA_F_NONE, &st);
		if (__builtin_expect(!p, 0)) {
			fprintf(stderr, "page_bench: za_alloc_pages(%u): %s\n", order,
				za_status_str(st));
			exit(1);
		}
		if (touch)
			*(volatile char *)p = (char)i;
		escape(p);
		za_free_pages(p, order);
	}
	return (now_ns() - t0) / (double)pairs;
}

static double run_mmap(unsigned order, long pairs, int touch)
{
	size_t size = ZA_PAGE_SIZE << order;
	double t0 = now_ns();
	for (long i = 0; i < pairs; i++) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (__builtin_expect(p == MAP_FAILED, 0)) {
			fprintf(stderr, "page_bench: mmap(%zu): %s\n", size, strerror(errno));
			exit(1);
		}
		if (touch)
			*(volatile char *)p = (char)i;
		escape(p);
		munmap(p, size);
	}
	return (now_ns() - t0) / (double)pairs;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 7;
	double scale = argc > 2 ? atof(argv[2]) : 1.0;
	if (reps < 1 || reps > MAX_REPS || !(scale > 0)) {
		fprintf(stderr, "usage: page_bench [reps 1..%d] [scale > 0]\n", MAX_REPS);
		return 2;
	}

	printf("page_bench: alloc+free pairs, ns/op = median of %d interleaved repetitions\n",
	       reps);
	printf("%5s %7s %5s %9s %12s %12s %8s\n", "order", "size", "touch", "pairs",
	       "buddy ns/op", "mmap ns/op", "ratio");

	for (int touch = 1; touch >= 0; touch--) {
		for (size_t v = 0; v < NR_VARIANTS; v++) {
			unsigned order = variants[v].order;
			long pairs = (long)(variants[v].pairs * scale);
			if (pairs < 1)
				pairs = 1;
			double buddy[MAX_REPS], mm[MAX_REPS];

			/* Warm-up: zones mapped, caches filled, code paged in. */
			run_buddy(order, pairs / 10 + 1, touch);
			run_mmap(order, pairs / 10 + 1, touch);
			for (int r = 0; r < reps; r++) {
				buddy[r] = run_buddy(order, pairs, touch);
				mm[r] = run_mmap(order, pairs, touch);
			}
			double b = median(buddy, reps), m = median(mm, reps);
			printf("%5u %6zuK %5s %9ld %12.1f %12.1f %7.1fx\n", order,
			       (ZA_PAGE_SIZE << order) >> 10, touch ? "yes" : "no", pairs, b, m,
			       m / b);
			fflush(stdout);
		}
	}
	return 0;
}
