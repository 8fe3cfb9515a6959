/*
 * Exact page runs for every n in 1..ZA_MAX_BLOCK_PAGES: page aligned,
 * exactly n pages taken (the tail of the 2^ceil(log2 n) block goes back),
 * writable over all n pages, and freeing decomposes the run so the zone
 * coalesces again. Also the argument checks of the page API.
 */
#include "buddy/buddy.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

static unsigned order_for(size_t n)
{
	unsigned k = 0;
	while (((size_t)1 << k) < n)
		k++;
	return k;
}

static void every_n(void)
{
	za_drain_caches();
	size_t base_use = pages_in_use();
	CHECK(base_use == 0);

	for (size_t n = 1; n <= ZA_MAX_BLOCK_PAGES; n++) {
		za_status st = ZA_EINVAL;
		unsigned char *p = za_alloc_pages_exact(n, ZA_F_NONE, &st);
		CHECK_MSG(p && st == ZA_OK, "n = %zu: %s", n, za_status_str(st));
		if (!p)
			continue;
		CHECK_MSG(aligned_to(p, ZA_PAGE_SIZE), "n = %zu: %p", n, (void *)p);
		struct za_zone *zone = za_zone_of(p);
		CHECK(zone && zone == za_zone_of(p + n * ZA_PAGE_SIZE - 1));
		if (!zone)
			continue;
		uint32_t pfn = za_pfn_of(zone, p);
		const struct za_page *head = za_page_at(zone, pfn);
		CHECK_MSG(head->state == ZA_PG_RUN && head->count == n, "n = %zu: head %u count %u",
			  n, head->state, head->count);

		/* Exactly n pages are taken: waste under one page. */
		size_t used = pages_in_use() - base_use;
		CHECK_MSG(used == n, "n = %zu: %zu pages taken", n, used);
		za_drain_caches();
		used = pages_in_use() - base_use;
		CHECK_MSG(used == n, "n = %zu: %zu pages taken after draining", n, used);

		/* The tail of the block is free, page by page, right after the run. */
		unsigned k = order_for(n);
		uint32_t end = (pfn & ~((1u << k) - 1)) + (1u << k);
		if (pfn + n < end) {
			const struct za_page *t = za_page_at(zone, pfn + n);
			CHECK_MSG(t->state == ZA_PG_FREE, "n = %zu: tail page state %u", n, t->state);
		}
		CHECK_HEAP();

		memset(p, (int)(n & 0xff), n * ZA_PAGE_SIZE);
		pattern_fill(p, n, n);
		CHECK(pattern_verify(p, n, n) == n);
		CHECK(p[n * ZA_PAGE_SIZE - 9] == (unsigned char)(n & 0xff));

		za_free_pages_exact(p, n);
		CHECK_HEAP();
		za_drain_caches();
		CHECK_MSG(pages_in_use() == base_use, "n = %zu: %zu pages still taken", n,
			  pages_in_use() - base_use);
		int z = first_uncoalesced_zone();
		CHECK_MSG(z < 0, "n = %zu: zone %d not coalesced after free", n, z);
	}
}

/* Runs side by side: a run's tail is used by the next run, and runs freed
 * in any order coalesce. */
static void packed_runs(void)
{
	static const size_t sizes[] = { 3, 5, 1, 7, 600, 2, 9, 1023, 513, 17, 1, 1000, 31, 33 };
	enum { N = sizeof sizes / sizeof sizes[0] };
	unsigned char *runs[N];

	for (unsigned i = 0; i < N; i++) {
		runs[i] = za_alloc_pages_exact(sizes[i], ZA_F_NONE, NULL);
		CHECK(runs[i] != NULL);
		if (runs[i])
			pattern_fill(runs[i], sizes[i], 1000 + i);
		CHECK_HEAP();
	}
	for (unsigned i = 0; i < N; i++)
		for (unsigned j = 0; j < N; j++)
			CHECK(i == j || !runs[i] || !runs[j] ||
			      runs[i] + sizes[i] * ZA_PAGE_SIZE <= runs[j] ||
			      runs[j] + sizes[j] * ZA_PAGE_SIZE <= runs[i]);
	za_drain_caches();
	size_t total = 0;
	for (unsigned i = 0; i < N; i++)
		total += sizes[i];
	CHECK_MSG(pages_in_use() == total, "%zu pages in use for %zu pages of runs",
		  pages_in_use(), total);
	for (unsigned i = 0; i < N; i++) {
		unsigned j = (i * 5) % N;   /* 5 is prime to N: a permutation */
		if (!runs[j])
			continue;
		CHECK(pattern_verify(runs[j], sizes[j], 1000 + j) == sizes[j]);
		za_free_pages_exact(runs[j], sizes[j]);
		CHECK_HEAP();
	}
	za_drain_caches();
	CHECK(pages_in_use() == 0);
	CHECK(first_uncoalesced_zone() < 0);
}

/* ZA_F_ZERO gives zeroed runs even where the pages were dirty before. */
static void zeroed_runs(void)
{
	static const size_t sizes[] = { 1, 2, 3, 8, 100, 1024 };
	for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		unsigned char *p = za_alloc_pages_exact(n, ZA_F_NONE, NULL);
		CHECK(p != NULL);
		if (!p)
			continue;
		memset(p, 0xee, n * ZA_PAGE_SIZE);
		za_free_pages_exact(p, n);
		za_status st = ZA_EINVAL;
		unsigned char *q = za_alloc_pages_exact(n, ZA_F_ZERO, &st);
		CHECK(q && st == ZA_OK);
		if (q) {
			CHECK_MSG(all_zero(q, n * ZA_PAGE_SIZE), "n = %zu: ZA_F_ZERO run is dirty", n);
			za_free_pages_exact(q, n);
		}
		CHECK_HEAP();
	}
}

static void bad_arguments(void)
{
	struct za_stats s0, s1;
	za_status st;
	za_stats_get(&s0);

	st = ZA_OK;
	CHECK(za_alloc_pages_exact(0, ZA_F_NONE, &st) == NULL && st == ZA_EINVAL);
	st = ZA_OK;
	CHECK(za_alloc_pages_exact(ZA_MAX_BLOCK_PAGES + 1, ZA_F_NONE, &st) == NULL &&
	      st == ZA_ENOMEM_TOO_LARGE);
	st = ZA_OK;
	CHECK(za_alloc_pages_exact(SIZE_MAX, ZA_F_NONE, &st) == NULL && st == ZA_ENOMEM_TOO_LARGE);
	st = ZA_OK;
	CHECK(za_alloc_pages(ZA_MAX_ORDER, ZA_F_NONE, &st) == NULL && st == ZA_ENOMEM_TOO_LARGE);
	st = ZA_OK;
	CHECK(za_alloc_pages(~0u, ZA_F_NONE, &st) == NULL && st == ZA_ENOMEM_TOO_LARGE);
	CHECK(za_alloc_pages(ZA_MAX_ORDER, ZA_F_NONE, NULL) == NULL);   /* status is optional */

	/* Contradictory or unknown flags. */
	static const za_flags bad[] = { ZA_F_ATOMIC | ZA_F_NOFAIL, ZA_F_NORETRY | ZA_F_NOFAIL,
					ZA_F_ALL, ZA_F_ALL + 1, 0x80000000u };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		st = ZA_OK;
		CHECK_MSG(za_alloc_pages(0, bad[i], &st) == NULL && st == ZA_EINVAL, "flags %#x",
			  bad[i]);
		st = ZA_OK;
		CHECK_MSG(za_alloc_pages_exact(1, bad[i], &st) == NULL && st == ZA_EINVAL,
			  "flags %#x", bad[i]);
	}
	za_stats_get(&s1);
	CHECK(s1.enomem[ZA_ENOMEM_TOO_LARGE] - s0.enomem[ZA_ENOMEM_TOO_LARGE] == 5);

	/* Freeing NULL is a no-op; nothing above took a page. */
	za_free_pages(NULL, 0);
	za_free_pages_exact(NULL, 1);
	za_drain_caches();
	CHECK(pages_in_use() == 0);
	CHECK_HEAP();

	/* Every valid flag combination serves a run. */
	static const za_flags good[] = { ZA_F_ATOMIC, ZA_F_NORETRY, ZA_F_NOFAIL, ZA_F_HIGH,
					 ZA_F_NOWARN | ZA_F_ZERO };
	for (unsigned i = 0; i < sizeof good / sizeof good[0]; i++) {
		st = ZA_EINVAL;
		void *p = za_alloc_pages_exact(5, good[i], &st);
		CHECK_MSG(p && st == ZA_OK, "flags %#x: %s", good[i], za_status_str(st));
		za_free_pages_exact(p, 5);
	}
	za_drain_caches();
	CHECK(pages_in_use() == 0);
	CHECK_HEAP();
}

int main(void)
{
	/* Map the first zone, so the accounting below starts from a whole one. */
	za_free_pages(za_alloc_pages(0, ZA_F_NONE, NULL), 0);
	every_n();
	packed_runs();
	zeroed_runs();
	bad_arguments();
	return test_done("buddy_exact");
}
