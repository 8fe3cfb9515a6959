/*
 * page_demo: the buddy page allocator at work.
 *
 * Takes blocks at every order 0..ZA_MAX_ORDER-1 (two of each, so splits
 * show) and a few exact runs, writes to every page, then frees it all. The
 * free lists are printed per order at the start, with everything allocated,
 * right after the frees (small blocks wait in this thread's page cache),
 * and after the caches are drained, when every buddy has merged again.
 * Exits non-zero if the heap checker finds a broken invariant or pages are
 * missing at the end.
 */
#include <stdio.h>
#include <string.h>

#include "zonealloc.h"

#define PER_ORDER 2

static const size_t run_pages[] = { 1, 3, 5, 100, 513, 1000 };
#define NR_RUNS (sizeof run_pages / sizeof run_pages[0])

enum { SNAP_START, SNAP_ALLOCATED, SNAP_FREED, SNAP_DRAINED, NR_SNAPS };
static const char *const snap_name[NR_SNAPS] = { "start", "allocated", "freed", "drained" };

static int check_heap(const char *when)
{
	struct za_check_result r;
	if (za_buddy_check(&r) == 0)
		return 0;
	fprintf(stderr, "page_demo: heap check failed %s: zone %d pfn %lu order %d: %s\n",
		when, r.zone, (unsigned long)r.pfn, r.order, r.what);
	return 1;
}

static void touch(void *p, size_t pages)
{
	for (size_t i = 0; i < pages; i++)
		((volatile unsigned char *)p)[i * ZA_PAGE_SIZE] = (unsigned char)i;
}

static void print_table(const struct za_stats s[NR_SNAPS])
{
	printf("\nfree blocks per order\n");
	printf("  order  block   ");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10s", snap_name[i]);
	printf("\n");
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		printf("  %5u  %4zuK  ", k, (ZA_PAGE_SIZE << k) >> 10);
		for (int i = 0; i < NR_SNAPS; i++)
			printf("%10zu", s[i].free_blocks[k]);
		printf("\n");
	}
	printf("  %-14s", "zones");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10zu", s[i].zones);
	printf("\n  %-14s", "pages total");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10zu", s[i].pages_total);
	printf("\n  %-14s", "pages free");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10zu", s[i].pages_free);
	printf("\n  %-14s", "pages cached");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10zu", s[i].pages_cached);
	printf("\n  %-14s", "splits");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10llu", (unsigned long long)s[i].splits);
	printf("\n  %-14s", "merges");
	for (int i = 0; i < NR_SNAPS; i++)
		printf("%10llu", (unsigned long long)s[i].merges);
	printf("\n\n");
}

int main(void)
{
	struct za_stats snap[NR_SNAPS];
	void *block[ZA_MAX_ORDER][PER_ORDER];
	void *run[NR_RUNS];
	size_t pages_taken = 0;
	int bad = 0;
	za_status st;

	printf("page_demo: %d orders, %zu KiB to %zu KiB blocks; %d blocks per order "
	       "and %zu exact runs\n",
	       ZA_MAX_ORDER, ZA_PAGE_SIZE >> 10, (ZA_PAGE_SIZE << (ZA_MAX_ORDER - 1)) >> 10,
	       PER_ORDER, NR_RUNS);
	za_stats_get(&snap[SNAP_START]);

	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		for (int j = 0; j < PER_ORDER; j++) {
			block[k][j] = za_alloc_pages(k, ZA_F_NONE, &st);
			if (!block[k][j]) {
				fprintf(stderr, "page_demo: order %u: %s\n", k, za_status_str(st));
				return 1;
			}
			touch(block[k][j], (size_t)1 << k);
			pages_taken += (size_t)1 << k;
		}
		printf("  order %2u: %p %p\n", k, block[k][0], block[k][1]);
	}
	for (size_t i = 0; i < NR_RUNS; i++) {
		run[i] = za_alloc_pages_exact(run_pages[i], ZA_F_NONE, &st);
		if (!run[i]) {
			fprintf(stderr, "page_demo: run of %zu pages: %s\n", run_pages[i],
				za_status_str(st));
			return 1;
		}
		touch(run[i], run_pages[i]);
		pages_taken += run_pages[i];
		printf("  run %4zu pages: %p\n", run_pages[i], run[i]);
	}
	bad |= check_heap("with everything allocated");
	za_stats_get(&snap[SNAP_ALLOCATED]);
	printf("  %zu pages (%zu KiB) in use\n", pages_taken, (pages_taken * ZA_PAGE_SIZE) >> 10);

	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		for (int j = 0; j < PER_ORDER; j++)
			za_free_pages(block[k][j], k);
	for (size_t i = 0; i < NR_RUNS; i++)
		za_free_pages_exact(run[i], run_pages[i]);
	bad |= check_heap("after freeing");
	za_stats_get(&snap[SNAP_FREED]);

	za_drain_caches();
	bad |= check_heap("after draining the caches");
	za_stats_get(&snap[SNAP_DRAINED]);

	print_table(snap);

	const struct za_stats *end = &snap[SNAP_DRAINED];
	if (end->pages_free != end->pages_total || end->pages_cached != 0) {
		fprintf(stderr, "page_demo: %zu of %zu pages free at the end, %zu cached\n",
			end->pages_free, end->pages_total, end->pages_cached);
		bad = 1;
	}
	for (unsigned k = 0; k + 1 < ZA_MAX_ORDER; k++)
		if (end->free_blocks[k]) {
			fprintf(stderr, "page_demo: %zu free blocks of order %u left unmerged\n",
				end->free_blocks[k], k);
			bad = 1;
		}

	fflush(stdout);
	za_stats_print(1);
	printf("\npage_demo: %s\n", bad ? "FAILED" : "every block merged back, heap consistent");
	return bad;
}
