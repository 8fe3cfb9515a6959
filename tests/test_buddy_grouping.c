/*
 * Pageblocks grouped by kind (buddy.h: the kernel's migrate types).
 *
 * 1. Kinds stay apart: blocks taken for slabs and for runs come from
 *    pageblocks of their own kind while their kind or a whole free
 *    pageblock has one; only then does a kind fall back to another's
 *    (counted), claiming a pageblock that is half free or more.
 * 2. What it is for: a heap of small objects and page runs allocated by
 *    turns, the runs and most objects freed, one survivor left in every
 *    slab. With grouping the runs' pageblocks come back whole (free blocks
 *    of order >= 9), and 2 MiB runs are served without a new zone; with
 *    ZONEALLOC_GROUPING=0 (za_buddy_grouping false) the survivors pin every
 *    2 MiB. Each mode runs in a child of its own.
 *
 * Calls the za_* functions and buddy internals (libza_core).
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buddy/buddy.h"
#include "tests/malloc_test.h"

static unsigned kind_at(const void *p)
{
	struct za_zone *zone = za_zone_of(p);
	return zone->pageblock_kind[za_pfn_of(zone, p) >> ZA_PAGEBLOCK_ORDER];
}

static void stats(uint64_t *fallbacks, uint64_t *claims)
{
	struct za_stats st;
	za_stats_get(&st);
	*fallbacks = st.pageblock_fallbacks;
	*claims = st.pageblock_claims;
}

#define MAXBLOCKS 8192

/* 1. Direct: za_buddy_alloc by kind, until the zones run dry. */
static void kinds_and_fallback(void)
{
	static void *slab[40], *run[MAXBLOCKS];
	uint64_t f0, c0, f1, c1;
	CHECK(za_zone_grow(4) == ZA_OK);   /* za_buddy_alloc never maps a zone */
	stats(&f0, &c0);

	/* 40 order-4 slabs: 640 pages, a whole pageblock and a quarter. */
	for (int i = 0; i < 40; i++) {
		slab[i] = za_buddy_alloc(4, ZA_KIND_SLAB, SIZE_MAX);
		CHECK(slab[i] != NULL);
		CHECK_MSG(kind_at(slab[i]) == ZA_KIND_SLAB, "slab %d in a pageblock of kind %u", i,
			  kind_at(slab[i]));
	}
	CHECK_HEAP();
	stats(&f1, &c1);
	CHECK_MSG(f1 == f0, "%llu fallbacks while whole pageblocks were free",
		  (unsigned long long)(f1 - f0));

	/* Runs take every block of their kind and every whole pageblock
	 * first; then they fall back to the slabs' pageblocks. */
	int n = 0, first_fallback = -1;
	while (n < MAXBLOCKS) {
		void *p = za_buddy_alloc(4, ZA_KIND_RUN, SIZE_MAX);
		if (!p)
			break;
		run[n] = p;
		uint64_t f, c;
		stats(&f, &c);
		if (f == f1) {
			CHECK_MSG(kind_at(p) == ZA_KIND_RUN, "run %d in a pageblock of kind %u", n,
				  kind_at(p));
		} else if (first_fallback < 0) {
			first_fallback = n;
		}
		n++;
	}
	CHECK(n < MAXBLOCKS);
	stats(&f1, &c1);
	CHECK_MSG(first_fallback > 0 && f1 > f0, "no fallback when the runs' blocks ran out");
	/* The slabs' second pageblock is three quarters free: claimed whole. */
	CHECK_MSG(c1 > c0, "no pageblock claimed");
	CHECK_MSG(kind_at(slab[39]) == ZA_KIND_RUN, "the slabs' part-free pageblock is kind %u",
		  kind_at(slab[39]));
	CHECK_MSG(kind_at(slab[0]) == ZA_KIND_SLAB, "the slabs' full pageblock is kind %u",
		  kind_at(slab[0]));
	CHECK_HEAP();

	for (int i = 0; i < n; i++)
		za_buddy_free(run[i], 4);
	for (int i = 0; i < 40; i++)
		za_buddy_free(slab[i], 4);
	za_drain_caches();
	CHECK_HEAP();
}

/* ---- 2. fragmentation by survivors ---- */

#define SMALL 64            /* 1024 to a 64 KiB slab */
#define PER_SLAB 1024
#define RUN_BYTES (64u << 10)
#define ROUNDS 400          /* 400 x (64 KiB of objects + a 64 KiB run): 50 MiB */
#define BIG_RUNS 8          /* then 8 runs of 2 MiB */

struct frag_result {
	size_t free_big;        /* free blocks of order >= 9 after the frees */
	size_t mixed;           /* pageblocks holding slabs and runs */
	size_t zones_before, zones_after;
	uint64_t fallbacks;
	int check;
};

/* Pageblocks whose allocated blocks are slabs and runs both. */
static size_t mixed_pageblocks(void)
{
	size_t mixed = 0;
	int nz = atomic_load(&za_nr_zones);
	for (int i = 0; i < nz; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!atomic_load(&zone->active))
			continue;
		pthread_mutex_lock(&zone->lock);
		for (uint32_t pb = 0; pb < (ZA_ZONE_PAGES >> ZA_PAGEBLOCK_ORDER); pb++) {
			bool slabs = false, runs = false;
			uint32_t end = (pb + 1) << ZA_PAGEBLOCK_ORDER;
			for (uint32_t pfn = pb << ZA_PAGEBLOCK_ORDER; pfn < end && pfn < zone->wild_pfn;
			     pfn++) {
				unsigned s = za_page_at(zone, pfn)->state;
				slabs |= s == ZA_PG_SLAB;
				runs |= s == ZA_PG_RUN || s == ZA_PG_RUN_CACHED;
			}
			mixed += slabs && runs;
		}
		pthread_mutex_unlock(&zone->lock);
	}
	return mixed;
}

static void frag_child(bool grouping, int fd)
{
	static void *small[ROUNDS * PER_SLAB], *run[ROUNDS], *big[BIG_RUNS];
	struct frag_result r = { 0 };
	uint64_t f0, c0;
	stats(&f0, &c0);   /* (the parent's, before the fork) */
	za_buddy_grouping = grouping;
	for (int i = 0; i < ROUNDS; i++) {
		for (int j = 0; j < PER_SLAB; j++)
			small[i * PER_SLAB + j] = za_malloc(SMALL);
		run[i] = za_malloc(RUN_BYTES);
	}
	r.mixed = mixed_pageblocks();
	for (int i = 0; i < ROUNDS; i++) {
		za_free(run[i]);
		for (int j = 1; j < PER_SLAB; j++)   /* small[i * PER_SLAB] survives */
			za_free(small[i * PER_SLAB + j]);
	}
	za_malloc_trim(0);
	struct za_stats st;
	za_stats_get(&st);
	r.free_big = st.free_blocks[9] + st.free_blocks[10];
	r.zones_before = st.zones_mapped_total;
	for (int i = 0; i < BIG_RUNS; i++)
		big[i] = za_malloc((2u << 20) - 4096);
	za_stats_get(&st);
	r.zones_after = st.zones_mapped_total;
	r.fallbacks = st.pageblock_fallbacks - f0;
	struct za_check_result cr;
	r.check = za_buddy_check(&cr);
	for (int i = 0; i < BIG_RUNS; i++)
		za_free(big[i]);
	for (int i = 0; i < ROUNDS; i++)
		za_free(small[i * PER_SLAB]);
	if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
		_exit(2);
	_exit(0);
}

static bool frag_run(bool grouping, struct frag_result *r)
{
	int fds[2];
	if (pipe(fds) != 0)
		return false;
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		frag_child(grouping, fds[1]);
	}
	close(fds[1]);
	bool ok = read(fds[0], r, sizeof *r) == (ssize_t)sizeof *r;
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void fragmentation(void)
{
	struct frag_result on, off;
	CHECK(frag_run(true, &on));
	CHECK(frag_run(false, &off));
	printf("grouping on:  %zu free blocks of order >= 9, %zu mixed pageblocks, zones %zu -> %zu, "
	       "%llu fallbacks\n", on.free_big, on.mixed, on.zones_before, on.zones_after,
	       (unsigned long long)on.fallbacks);
	printf("grouping off: %zu free blocks of order >= 9, %zu mixed pageblocks, zones %zu -> %zu\n",
	       off.free_big, off.mixed, off.zones_before, off.zones_after);
	CHECK(on.check == 0 && off.check == 0);
	CHECK_MSG(on.mixed == 0, "%zu pageblocks hold slabs and runs with grouping", on.mixed);
	CHECK_MSG(on.fallbacks == 0, "%llu fallbacks with room to spare",
		  (unsigned long long)on.fallbacks);
	/* 25 MiB of runs freed: about 12 whole pageblocks more than without. */
	CHECK_MSG(on.free_big >= off.free_big + 8, "free blocks of order >= 9: %zu with grouping, %zu without",
		  on.free_big, off.free_big);
	CHECK_MSG(on.zones_after == on.zones_before, "2 MiB runs needed a new zone with grouping");
	/* The control: without grouping the survivors pin the 2 MiB blocks. */
	CHECK_MSG(off.mixed > 0, "no mixed pageblock without grouping: the test shows nothing");
}

int main(void)
{
	kinds_and_fallback();
	fragmentation();
	printf("buddy_grouping: %d checks, %d failed\n", za_test_checks, za_test_failures);
	return za_test_failures ? 1 : 0;
}
