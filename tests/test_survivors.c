/*
 * Survivors among freed neighbours: allocate K objects of one size, keep
 * the last, free the other K-1, n times over. That is how parsers,
 * interpreters and JSON tools build their results, and a heap that lets a
 * survivor pin a slab nothing reuses grows to K times the live bytes (it
 * did: 653 MB for 63 MB live at 392 B, K = 40). For sizes from 16 B to
 * 32 KiB and K from 2 to 64, the memory the heap holds at its peak must
 * stay within 1.5 times the live bytes plus a fixed overhead: measured as
 * committed memory (the heap's own exact count) and, outside the
 * sanitizer build, as the process's resident set.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 */
#include <stdlib.h>

#include "tests/malloc_test.h"

#ifdef __SANITIZE_ADDRESS__
#define LIVE_BYTES ((size_t)1 << 20)   /* ASan: a smaller run */
#define CHECK_RSS 0
#else
#define LIVE_BYTES ((size_t)4 << 20)
#define CHECK_RSS 1
#endif
/* Per-thread caches, the current slab of the class, the runs' cache. */
#define FIXED_BYTES ((size_t)4 << 20)

static size_t committed(void)
{
	struct za_stats s;
	za_stats_get(&s);
	return s.committed_bytes;
}

static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, resident = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void survivors(size_t size, unsigned k)
{
	size_t n = LIVE_BYTES / size;
	if (n < 64)
		n = 64;
	size_t live = n * size;
	void **keep = calloc(n, sizeof *keep);
	void *tmp[64];
	CHECK(keep != NULL);
	if (!keep)
		return;

	size_t c0 = committed(), r0 = rss_bytes(), c_peak = c0, r_peak = r0;
	int errors = 0;
	for (size_t i = 0; i < n; i++) {
		for (unsigned j = 0; j < k; j++) {
			tmp[j] = F(malloc)(size);
			if (!tmp[j]) {
				errors++;
				continue;
			}
			/* Touched as a program would: the first line, and the
			 * last for the big ones. */
			memset(tmp[j], (int)j, size < 64 ? size : 64);
			if (size > 64)
				memset((char *)tmp[j] + size - 64, (int)j, 64);
		}
		for (unsigned j = 0; j + 1 < k; j++)
			F(free)(tmp[j]);
		keep[i] = tmp[k - 1];
		if ((i & 63) == 63 || i + 1 == n) {
			size_t c = committed(), r = CHECK_RSS ? rss_bytes() : 0;
			if (c > c_peak)
				c_peak = c;
			if (r > r_peak)
				r_peak = r;
		}
	}
	CHECK_MSG(errors == 0, "%zu B, K = %u: %d mallocs failed", size, k, errors);

	size_t bound = live + live / 2 + FIXED_BYTES;
	printf("  %6zu B  K = %2u  n = %7zu  live %6zu KiB: committed +%6zu KiB, RSS +%6zu KiB "
	       "(bound %zu KiB)\n",
	       size, k, n, live >> 10, (c_peak - c0) >> 10, CHECK_RSS ? (r_peak - r0) >> 10 : 0,
	       bound >> 10);
	CHECK_MSG(c_peak - c0 <= bound, "%zu B, K = %u: %zu KiB committed for %zu KiB live", size,
		  k, (c_peak - c0) >> 10, live >> 10);
	if (CHECK_RSS)
		CHECK_MSG(r_peak <= r0 || r_peak - r0 <= bound,
			  "%zu B, K = %u: RSS grew %zu KiB for %zu KiB live", size, k,
			  (r_peak - r0) >> 10, live >> 10);

	for (size_t i = 0; i < n; i++)
		F(free)(keep[i]);
	free(keep);
	F(malloc_trim)(0);
}

int main(void)
{
	static const size_t sizes[] = { 16, 48, 128, 392, 1000, 2000, 4096, 8000, 16384, 32768 };
	static const unsigned ks[] = { 2, 8, 40, 64 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
			survivors(sizes[s], ks[j]);
	CHECK_HEAP();
	return test_done("survivors");
}
