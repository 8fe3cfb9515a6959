/*
 * Typed outcomes under pressure (issue 4): each ZA_ENOMEM_* produced on
 * purpose through the page API, za_alloc and the malloc family (NULL,
 * errno ENOMEM, za_last_status), the heap checked and usable after each;
 * the reserve below the min watermark; NOFAIL waiting for another thread's
 * free; and invalid flag combinations rejected with nothing allocated.
 *
 * Each case runs in a fresh forked child (see tests/policy_test.h).
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "tests/policy_test.h"

#define ZONE_PAGES ((size_t)ZA_ZONE_PAGES)

/* Up to one zone of order-0 pages, and room to try one more. */
#define MAX_BLOCKS (ZA_ZONE_PAGES + 64)
static void *blocks[MAX_BLOCKS];

static size_t committed_pages(void)
{
	return pt_stats().committed_bytes >> ZA_PAGE_SHIFT;
}

/* A failed plain-malloc call: NULL, errno ENOMEM, and the typed outcome in
 * za_last_status(). */
#define CHECK_MALLOC_FAILS(call, want)                                              \
	do {                                                                        \
		errno = 0;                                                          \
		void *p_ = (call);                                                  \
		int e_ = errno;                                                     \
		za_status s_ = za_last_status();                                    \
		CHECK_MSG(!p_ && e_ == ENOMEM && s_ == (want),                      \
			  "%s: %p errno %d status %s, want %s", #call, p_, e_,         \
			  za_status_str(s_), za_status_str(want));                   \
		if (p_)                                                             \
			za_free(p_);                                                \
	} while (0)

/* The heap serves again: a top-order block, a run and a slab object. */
static void check_usable(void)
{
	za_status st = ZA_EINVAL;
	void *b = za_alloc_pages(ZA_MAX_ORDER - 1, ZA_F_NONE, &st);
	CHECK_MSG(b && st == ZA_OK, "order %d after recovery: %s", ZA_MAX_ORDER - 1,
		  za_status_str(st));
	void *r = za_malloc(100 * KiB);
	void *s = za_malloc(100);
	CHECK(r && s);
	if (b)
		memset(b, 1, ZA_MAX_BLOCK_PAGES * ZA_PAGE_SIZE);
	if (r)
		memset(r, 2, 100 * KiB);
	CHECK_HEAP();
	za_free(s);
	za_free(r);
	za_free_pages(b, ZA_MAX_ORDER - 1);
	CHECK_HEAP();
}

/* ---- invalid flags ---- */

static void case_einval(void)
{
	struct za_stats s0 = pt_stats();
	static const za_flags bad[] = {
		ZA_F_ATOMIC | ZA_F_NOFAIL,
		ZA_F_NORETRY | ZA_F_NOFAIL,
		ZA_F_ATOMIC | ZA_F_NORETRY | ZA_F_NOFAIL | ZA_F_HIGH,
		ZA_F_ALL,
		ZA_F_ALL + 1,              /* the first unknown bit */
		0x80000000u,
		ZA_F_ZERO | 0x100u,
	};
	unsigned fails = 0;
	za_status st;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 12345;
		CHECK_STATUS(za_alloc_pages(0, bad[i], &st), st, ZA_EINVAL);
		CHECK(za_last_status() == ZA_EINVAL);
		CHECK_STATUS(za_alloc_pages(3, bad[i], &st), st, ZA_EINVAL);
		CHECK_STATUS(za_alloc_pages_exact(5, bad[i], &st), st, ZA_EINVAL);
		CHECK_STATUS(za_alloc(100, 0, bad[i], &st), st, ZA_EINVAL);
		CHECK_STATUS(za_alloc(100 * KiB, 64, bad[i], &st), st, ZA_EINVAL);
		CHECK_STATUS(za_alloc(64 * MiB, 0, bad[i], &st), st, ZA_EINVAL);
		/* Without a status pointer it is still refused and counted. */
		CHECK(za_alloc_pages(0, bad[i], NULL) == NULL);
		za_tls_status_clear();
		CHECK(za_alloc(100, 0, bad[i], NULL) == NULL);
		CHECK(za_last_status() == ZA_EINVAL);
		CHECK_MSG(errno == 12345, "errno changed to %d", errno);
		fails += 8;
	}
	/* Invalid arguments under valid flags. */
	CHECK_STATUS(za_alloc(100, 3, ZA_F_NONE, &st), st, ZA_EINVAL);
	CHECK_STATUS(za_alloc(100, 48, ZA_F_HIGH, &st), st, ZA_EINVAL);
	CHECK_STATUS(za_alloc_pages_exact(0, ZA_F_NONE, &st), st, ZA_EINVAL);
	fails += 3;

	struct za_stats s1 = pt_stats();
	/* Nothing was allocated: no zone, nothing committed, no block taken. */
	CHECK_MSG(s1.zones == s0.zones && s1.zones == 0, "%zu zones", s1.zones);
	CHECK(s1.committed_bytes == s0.committed_bytes && s1.committed_bytes == 0);
	CHECK(s1.pages_total == 0 && s1.pages_free == 0 && s1.pages_cached == 0);
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		CHECK(s1.alloc_calls[k] == 0);
	CHECK_MSG(s1.enomem[ZA_EINVAL] - s0.enomem[ZA_EINVAL] == fails,
		  "EINVAL counted %llu times, want %u",
		  (unsigned long long)(s1.enomem[ZA_EINVAL] - s0.enomem[ZA_EINVAL]), fails);
	for (int k = ZA_ENOMEM_LIMIT; k <= ZA_ENOMEM_FRAGMENTED; k++)
		CHECK(s1.enomem[k] == 0);

	/* And valid combinations are accepted. */
	static const za_flags good[] = {
		ZA_F_NONE, ZA_F_ZERO, ZA_F_NOFAIL, ZA_F_NORETRY, ZA_F_ATOMIC, ZA_F_HIGH,
		ZA_F_NOWARN, ZA_F_NOFAIL | ZA_F_HIGH | ZA_F_ZERO, ZA_F_ATOMIC | ZA_F_NORETRY,
		ZA_F_ATOMIC | ZA_F_HIGH | ZA_F_NOWARN,
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		void *p = za_alloc_pages(2, good[i], &st);
		CHECK_MSG(p && st == ZA_OK, "flags %#x: %s", good[i], za_status_str(st));
		za_free_pages(p, 2);
		void *q = za_alloc(1000, 0, good[i], &st);
		CHECK_MSG(q && st == ZA_OK, "za_alloc flags %#x: %s", good[i], za_status_str(st));
		za_free(q);
	}
	CHECK_HEAP();
}

/* ---- TOO_LARGE ---- */

static void case_too_large(void)
{
	za_status st;
	struct za_stats s0 = pt_stats();

	CHECK_STATUS(za_alloc_pages(ZA_MAX_ORDER, ZA_F_NONE, &st), st, ZA_ENOMEM_TOO_LARGE);
	CHECK(za_last_status() == ZA_ENOMEM_TOO_LARGE);
	CHECK_STATUS(za_alloc_pages(UINT_MAX, ZA_F_HIGH, &st), st, ZA_ENOMEM_TOO_LARGE);
	CHECK_STATUS(za_alloc_pages_exact(ZA_MAX_BLOCK_PAGES + 1, ZA_F_NONE, &st), st,
		     ZA_ENOMEM_TOO_LARGE);
	CHECK_STATUS(za_alloc(SIZE_MAX - 4096, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_TOO_LARGE);
	CHECK_STATUS(za_alloc(4096, (size_t)1 << 62, ZA_F_NONE, &st), st, ZA_ENOMEM_TOO_LARGE);
	CHECK_STATUS(za_alloc(SIZE_MAX / 2, 0, ZA_F_ZERO, &st), st, ZA_ENOMEM_TOO_LARGE);

	volatile size_t huge = SIZE_MAX - 4096;
	CHECK_MALLOC_FAILS(za_malloc(huge), ZA_ENOMEM_TOO_LARGE);
	CHECK_MALLOC_FAILS(za_calloc(huge / 2, 4), ZA_ENOMEM_TOO_LARGE);
	CHECK_MALLOC_FAILS(za_malloc(huge / 2), ZA_ENOMEM_TOO_LARGE);
	CHECK_MALLOC_FAILS(za_reallocarray(NULL, huge, 16), ZA_ENOMEM_TOO_LARGE);

	/* A failed realloc leaves the block as it was. */
	char *p = za_malloc(200);
	CHECK(p);
	if (p) {
		memset(p, 0x5c, 200);
		CHECK_MALLOC_FAILS(za_realloc(p, huge), ZA_ENOMEM_TOO_LARGE);
		bool intact = true;
		for (int i = 0; i < 200; i++)
			intact &= p[i] == 0x5c;
		CHECK(intact);
		za_free(p);
	}

	struct za_stats s1 = pt_stats();
	CHECK_MSG(s1.enomem[ZA_ENOMEM_TOO_LARGE] - s0.enomem[ZA_ENOMEM_TOO_LARGE] >= 11,
		  "TOO_LARGE counted %llu times",
		  (unsigned long long)(s1.enomem[ZA_ENOMEM_TOO_LARGE] -
				       s0.enomem[ZA_ENOMEM_TOO_LARGE]));
	CHECK(s1.enomem[ZA_ENOMEM_OS] == 0 && s1.enomem[ZA_ENOMEM_LIMIT] == 0);
	CHECK_HEAP();
	check_usable();
}

/*
 * More than the machine's memory and swap: refused at once, whatever
 * vm.overcommit_memory says (the heap maps with MAP_NORESERVE, which
 * skips the kernel's own check): glibc refuses these too. Sizes are taken
 * from sysinfo, so the case means the same on any machine: just above
 * RAM + swap, ten times that, and 1 TiB more. A realloc that grows a
 * huge block past it fails and keeps the block.
 */
static void case_beyond_memory(void)
{
	struct sysinfo si;
	CHECK(sysinfo(&si) == 0);
	size_t total = ((size_t)si.totalram + si.totalswap) * (si.mem_unit ? si.mem_unit : 1);
	const size_t sizes[] = { total + ((size_t)64 << 20), total * 10,
				 total + ((size_t)1 << 40) };
	struct za_stats s0 = pt_stats();
	za_status st;
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		volatile size_t n = sizes[i];
		CHECK_MALLOC_FAILS(za_malloc(n), ZA_ENOMEM_TOO_LARGE);
		CHECK_MALLOC_FAILS(za_calloc(n / 8, 8), ZA_ENOMEM_TOO_LARGE);
		CHECK_STATUS(za_alloc(n, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_TOO_LARGE);
	}
	char *p = za_malloc((size_t)8 << 20);   /* a huge mapping of its own */
	CHECK(p);
	if (p) {
		memset(p, 0x3c, (size_t)8 << 20);
		volatile size_t n = sizes[0];
		CHECK_MALLOC_FAILS(za_realloc(p, n), ZA_ENOMEM_TOO_LARGE);
		bool intact = p[0] == 0x3c && p[((size_t)8 << 20) - 1] == 0x3c;
		CHECK(intact);
		za_free(p);
	}
	struct za_stats s1 = pt_stats();
	CHECK(s1.enomem[ZA_ENOMEM_OS] == s0.enomem[ZA_ENOMEM_OS]);
	CHECK_HEAP();
	check_usable();
}

/* ---- LIMIT ---- */

static void case_limit(void)
{
	const size_t limit = 8 * MiB, lpages = limit >> ZA_PAGE_SHIFT;
	za_set_limit(limit);
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	CHECK(wm.limit == lpages && wm.min == 64 && wm.min < wm.low && wm.low < wm.high);
	CHECK(pt_stats().limit_bytes == limit);

	za_status st = ZA_OK;
	size_t n = 0;
	while (n < MAX_BLOCKS) {
		void *p = za_alloc_pages(0, ZA_F_NONE, &st);
		if (!p)
			break;
		*(volatile char *)p = 1;
		blocks[n++] = p;
	}
	CHECK_MSG(st == ZA_ENOMEM_LIMIT, "filling stopped with %s", za_status_str(st));
	CHECK(za_last_status() == ZA_ENOMEM_LIMIT);
	size_t committed = committed_pages();
	/* Normal allocations stop at the min watermark, exactly. */
	CHECK_MSG(committed <= lpages - wm.min && committed + 16 >= lpages - wm.min,
		  "%zu pages committed of %zu, min %zu", committed, lpages, wm.min);
	CHECK_MSG(n + 32 >= lpages - wm.min, "only %zu pages allocated", n);

	/* Every way in fails the same way. */
	CHECK_STATUS(za_alloc_pages(4, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_STATUS(za_alloc_pages_exact(3, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_STATUS(za_alloc(64 * KiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_STATUS(za_alloc(16 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_MALLOC_FAILS(za_malloc(100), ZA_ENOMEM_LIMIT);
	CHECK_MALLOC_FAILS(za_malloc(64 * KiB), ZA_ENOMEM_LIMIT);
	CHECK_MALLOC_FAILS(za_calloc(1, 3 * MiB), ZA_ENOMEM_LIMIT);
	CHECK_MALLOC_FAILS(za_malloc(16 * MiB), ZA_ENOMEM_LIMIT);   /* huge: charged */
	CHECK_MALLOC_FAILS(za_aligned_alloc(8 * KiB, 8 * KiB), ZA_ENOMEM_LIMIT);
	/* Even the reserve cannot hold more than the limit. */
	CHECK_STATUS(za_alloc(16 * MiB, 0, ZA_F_HIGH, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_STATUS(za_alloc_pages(ZA_MAX_ORDER - 1, ZA_F_HIGH, &st), st, ZA_ENOMEM_LIMIT);
	struct za_stats s = pt_stats();
	CHECK(s.enomem[ZA_ENOMEM_LIMIT] >= 12);
	CHECK(s.enomem[ZA_ENOMEM_OS] == 0 && s.enomem[ZA_ENOMEM_FRAGMENTED] == 0);
	CHECK(s.committed_bytes <= limit);
	CHECK_HEAP();

	/* Freed memory serves again, under the same limit. */
	for (size_t i = 0; i < n; i++)
		za_free_pages(blocks[i], 0);
	za_drain_caches();
	CHECK_HEAP();
	void *big = za_malloc(2 * MiB);
	CHECK(big != NULL);
	za_free(big);
	za_set_limit(0);
	check_usable();
}

/* ---- OS ---- */

static bool lower_as_limit(size_t headroom, struct rlimit *old)
{
	getrlimit(RLIMIT_AS, old);
	struct rlimit rl = *old;
	rl.rlim_cur = vm_size_bytes() + headroom;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	int rc = setrlimit(RLIMIT_AS, &rl);
	CHECK_MSG(rc == 0, "setrlimit: %s", strerror(errno));
	return rc == 0;
}

/* A fresh heap whose first zone (128 MiB of address space, briefly) does
 * not fit under RLIMIT_AS. */
static void case_os_first_zone(void)
{
	struct rlimit old;
	za_status st;
	if (!lower_as_limit(32 * MiB, &old))
		return;
	CHECK_STATUS(za_alloc_pages(0, ZA_F_NONE, &st), st, ZA_ENOMEM_OS);
	CHECK(za_last_status() == ZA_ENOMEM_OS);
	CHECK_STATUS(za_alloc_pages(ZA_MAX_ORDER - 1, ZA_F_HIGH, &st), st, ZA_ENOMEM_OS);
	CHECK_STATUS(za_alloc(1000, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_OS);
	CHECK_STATUS(za_alloc(64 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_OS);
	CHECK_MALLOC_FAILS(za_malloc(100), ZA_ENOMEM_OS);
	CHECK_MALLOC_FAILS(za_malloc(1 * MiB), ZA_ENOMEM_OS);
	CHECK_MALLOC_FAILS(za_malloc(256 * MiB), ZA_ENOMEM_OS);
	struct za_stats s = pt_stats();
	CHECK(s.enomem[ZA_ENOMEM_OS] >= 7 && s.enomem[ZA_ENOMEM_LIMIT] == 0);
	CHECK(s.zones == 0 && s.committed_bytes == 0);
	CHECK_HEAP();

	/* With room again, the same heap starts. */
	setrlimit(RLIMIT_AS, &old);
	check_usable();
}

/* A heap that has a zone, full, under RLIMIT_AS: the next zone is refused. */
static void case_os_full_zone(void)
{
	const unsigned top = ZA_MAX_ORDER - 1, per_zone = ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES;
	za_status st;
	void *b[ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES];

	b[0] = za_alloc_pages(top, ZA_F_NONE, &st);
	CHECK(b[0] != NULL);
	struct rlimit old;
	if (!b[0] || !lower_as_limit(32 * MiB, &old))
		return;
	unsigned n = 1;
	for (; n < per_zone; n++) {
		b[n] = za_alloc_pages(top, ZA_F_NONE, &st);
		if (!b[n])
			break;
	}
	CHECK_MSG(n == per_zone, "only %u top blocks fit in the first zone: %s", n,
		  za_status_str(st));
	CHECK_STATUS(za_alloc_pages(top, ZA_F_NONE, &st), st, ZA_ENOMEM_OS);
	CHECK_STATUS(za_alloc_pages(0, ZA_F_HIGH, &st), st, ZA_ENOMEM_OS);
	CHECK_STATUS(za_alloc(4 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_OS);
	CHECK_STATUS(za_alloc(40 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_OS);
	CHECK_MALLOC_FAILS(za_malloc(3 * MiB), ZA_ENOMEM_OS);
	CHECK_MALLOC_FAILS(za_malloc(64 * MiB), ZA_ENOMEM_OS);
	CHECK_MALLOC_FAILS(za_calloc(1, 64 * KiB), ZA_ENOMEM_OS);
	CHECK(pt_stats().zones == 1);
	CHECK_HEAP();

	/* One block freed: it serves again, still under RLIMIT_AS. */
	za_free_pages(b[n - 1], top);
	void *again = za_alloc_pages(top, ZA_F_NONE, &st);
	CHECK_MSG(again && st == ZA_OK, "after a free: %s", za_status_str(st));
	if (again)
		b[n - 1] = again;
	else
		n--;
	for (unsigned i = 0; i < n; i++)
		za_free_pages(b[i], top);
	void *r = za_malloc(3 * MiB);
	CHECK(r != NULL);
	za_free(r);
	CHECK_HEAP();
	setrlimit(RLIMIT_AS, &old);
	check_usable();
}

/* ---- FRAGMENTED ---- */

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * A 64 MiB limit allows one zone. Fill it with order-0 pages (HIGH: up to
 * the limit itself), free every page with an even pfn: half the zone is
 * free, no two free pages are buddies, and no zone may be added.
 */
static void case_fragmented(void)
{
	const size_t limit = 64 * MiB;
	za_set_limit(limit);
	za_status st = ZA_OK;
	size_t n = 0;
	while (n < MAX_BLOCKS) {
		void *p = za_alloc_pages(0, ZA_F_HIGH, &st);
		if (!p)
			break;
		blocks[n++] = p;
	}
	CHECK_MSG(st == ZA_ENOMEM_LIMIT, "filling stopped with %s", za_status_str(st));
	CHECK_MSG(n == ZONE_PAGES, "%zu pages allocated", n);
	struct za_stats s = pt_stats();
	CHECK(s.zones == 1 && s.pages_free == 0 && s.pages_cached == 0);
	CHECK(s.committed_bytes == limit);

	qsort(blocks, n, sizeof blocks[0], cmp_ptr);
	size_t freed = 0;
	for (size_t i = 0; i < n; i++) {
		struct za_zone *zone = za_zone_of(blocks[i]);
		if (!(za_pfn_of(zone, blocks[i]) & 1)) {
			za_free_pages(blocks[i], 0);
			blocks[i] = NULL;
			freed++;
		}
	}
	za_drain_caches();
	s = pt_stats();
	CHECK(freed == ZONE_PAGES / 2 && s.pages_free == freed && s.free_blocks[0] == freed);
	CHECK_HEAP();

	/* Any order above 0 is fragmented, under either watermark. */
	CHECK_STATUS(za_alloc_pages(5, ZA_F_NONE, &st), st, ZA_ENOMEM_FRAGMENTED);
	CHECK(za_last_status() == ZA_ENOMEM_FRAGMENTED);
	CHECK_STATUS(za_alloc_pages(5, ZA_F_HIGH, &st), st, ZA_ENOMEM_FRAGMENTED);
	CHECK_STATUS(za_alloc_pages(1, ZA_F_NONE, &st), st, ZA_ENOMEM_FRAGMENTED);
	CHECK_STATUS(za_alloc_pages_exact(2, ZA_F_NONE, &st), st, ZA_ENOMEM_FRAGMENTED);
	CHECK_STATUS(za_alloc(128 * KiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_FRAGMENTED);
	CHECK_MALLOC_FAILS(za_malloc(128 * KiB), ZA_ENOMEM_FRAGMENTED);
	CHECK_MALLOC_FAILS(za_memalign(64 * KiB, 64 * KiB), ZA_ENOMEM_FRAGMENTED);
	s = pt_stats();
	CHECK(s.enomem[ZA_ENOMEM_FRAGMENTED] >= 7);
	CHECK(s.committed_bytes <= limit);
	/* The slow path reclaimed free pages to get under the watermark; the
	 * released and resident pages are accounted exactly. */
	CHECK(s.pages_released > 0);
	CHECK(s.committed_bytes == (s.pages_total - s.pages_released) * ZA_PAGE_SIZE);
	CHECK_HEAP();

	/* A single page is still there to take. */
	void *one = za_alloc_pages(0, ZA_F_NONE, &st);
	CHECK_MSG(one && st == ZA_OK, "order 0: %s", za_status_str(st));
	za_free_pages(one, 0);

	for (size_t i = 0; i < n; i++)
		if (blocks[i])
			za_free_pages(blocks[i], 0);
	za_drain_caches();
	CHECK_HEAP();
	void *top = za_alloc_pages(ZA_MAX_ORDER - 1, ZA_F_NONE, &st);
	CHECK_MSG(top && st == ZA_OK, "top order after freeing: %s", za_status_str(st));
	za_free_pages(top, ZA_MAX_ORDER - 1);
	za_set_limit(0);
	check_usable();
}

/* ---- the reserve below the min watermark ---- */

static const size_t reserve_limit = 64 * MiB;

/* Fills the heap with order-4 blocks under `flags` until it fails; returns
 * how many were taken (appended at blocks[*n]). */
static size_t fill_order4(za_flags flags, size_t *n, za_status *st)
{
	size_t before = *n;
	while (*n < MAX_BLOCKS) {
		void *p = za_alloc_pages(4, flags, st);
		if (!p)
			break;
		blocks[(*n)++] = p;
	}
	return *n - before;
}

static void case_reserve(void)
{
	const size_t lpages = reserve_limit >> ZA_PAGE_SHIFT;
	za_set_limit(reserve_limit);
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	CHECK(wm.min == lpages / 32);

	za_status st = ZA_OK;
	size_t n = 0;
	fill_order4(ZA_F_NONE, &n, &st);
	CHECK_MSG(st == ZA_ENOMEM_LIMIT, "normal fill stopped with %s", za_status_str(st));
	/* At the min watermark, exactly (order-4 blocks divide it). */
	CHECK_MSG(committed_pages() == lpages - wm.min, "%zu committed, min mark at %zu",
		  committed_pages(), lpages - wm.min);

	/* Normal requests fail; HIGH ones dip into the reserve. */
	CHECK_STATUS(za_alloc_pages(4, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_STATUS(za_alloc(64 * KiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_MALLOC_FAILS(za_malloc(64 * KiB), ZA_ENOMEM_LIMIT);
	void *h = za_alloc_pages(4, ZA_F_HIGH, &st);
	CHECK_MSG(h && st == ZA_OK, "HIGH at the min mark: %s", za_status_str(st));
	void *hr = za_alloc(64 * KiB, 0, ZA_F_HIGH, &st);
	CHECK_MSG(hr && st == ZA_OK, "za_alloc HIGH at the min mark: %s", za_status_str(st));
	/* And after them, a normal request still fails. */
	CHECK_STATUS(za_alloc_pages(4, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK(committed_pages() == lpages - wm.min + 32);
	za_free(hr);
	za_free_pages(h, 4);

	/* HIGH goes on to the limit itself, and no further. */
	size_t high = fill_order4(ZA_F_HIGH, &n, &st);
	CHECK_MSG(st == ZA_ENOMEM_LIMIT, "HIGH fill stopped with %s", za_status_str(st));
	CHECK_MSG(high == wm.min / 16, "HIGH took %zu blocks, want %zu", high, wm.min / 16);
	CHECK(committed_pages() == lpages);
	CHECK(pt_stats().committed_bytes == pt_stats().limit_bytes);
	CHECK_HEAP();

	/* Back under the mark, normal requests serve again. */
	while (n > 0)
		za_free_pages(blocks[--n], 4);
	void *p = za_alloc_pages(4, ZA_F_NONE, &st);
	CHECK_MSG(p && st == ZA_OK, "normal after freeing: %s", za_status_str(st));
	za_free_pages(p, 4);
	CHECK_HEAP();
	za_set_limit(0);
	check_usable();
}

/* ---- realloc in place under the limit ---- */

/*
 * A run that grows in place commits the released pages after it: that is
 * an allocation like any other and must stay under the watermark. A fresh
 * 64 MiB-limited heap: a 9-page run at the start of the zone, the other 15
 * top blocks taken, so 503 pages remain below the min mark and the rest of
 * the run's 4 MiB block is free and released.
 */
static void case_realloc_limit(void)
{
	const size_t lpages = reserve_limit >> ZA_PAGE_SHIFT;
	za_set_limit(reserve_limit);
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	const size_t mark = lpages - wm.min;

	char *p = za_malloc(9 * ZA_PAGE_SIZE);
	CHECK(p && za_malloc_usable_size(p) == 9 * ZA_PAGE_SIZE);
	if (!p)
		return;
	memset(p, 0x42, 9 * ZA_PAGE_SIZE);
	za_status st = ZA_OK;
	size_t n = 0;
	while (n < MAX_BLOCKS) {
		void *b = za_alloc_pages(ZA_MAX_ORDER - 1, ZA_F_NONE, &st);
		if (!b)
			break;
		blocks[n++] = b;
	}
	CHECK_MSG(n == 15 && st == ZA_ENOMEM_LIMIT, "%zu top blocks, then %s", n,
		  za_status_str(st));
	CHECK(committed_pages() == 9 + 15 * ZA_MAX_BLOCK_PAGES);

	/* Growing past the budget must not happen in place: it fails like
	 * any allocation, and the run is kept. */
	CHECK_MALLOC_FAILS(za_realloc(p, ZA_MAX_BLOCK_PAGES * ZA_PAGE_SIZE), ZA_ENOMEM_LIMIT);
	CHECK_MSG(committed_pages() <= mark, "realloc committed %zu pages, mark at %zu",
		  committed_pages(), mark);
	CHECK(za_malloc_usable_size(p) == 9 * ZA_PAGE_SIZE && p[0] == 0x42 &&
	      p[9 * ZA_PAGE_SIZE - 1] == 0x42);
	/* Up to the mark it grows in place. */
	size_t fit = 9 + (mark - committed_pages());
	char *q = za_realloc(p, fit * ZA_PAGE_SIZE);
	CHECK_MSG(q == p, "realloc to %zu pages moved or failed: %p", fit, (void *)q);
	if (q)
		p = q;
	CHECK(committed_pages() <= mark);
	CHECK(p[0] == 0x42 && p[9 * ZA_PAGE_SIZE - 1] == 0x42);
	CHECK_HEAP();
	za_free(p);
	while (n > 0)
		za_free_pages(blocks[--n], ZA_MAX_ORDER - 1);
	za_set_limit(0);
	check_usable();
}

/* ---- NOFAIL waits for memory another thread frees ---- */

static _Atomic int freer_started_free;
static _Atomic uint64_t freer_free_ms;
static void *freer_block;

static void *freer_main(void *arg)
{
	(void)arg;
	sleep_ms(200);
	atomic_store(&freer_free_ms, mono_ms());
	atomic_store(&freer_started_free, 1);
	za_free_pages(freer_block, 4);
	return NULL;
}

static void case_nofail(void)
{
	za_set_limit(reserve_limit);
	za_status st = ZA_OK;
	size_t n = 0;
	fill_order4(ZA_F_HIGH, &n, &st);
	CHECK(st == ZA_ENOMEM_LIMIT && committed_pages() == reserve_limit >> ZA_PAGE_SHIFT);
	/* The heap is full to the limit: nothing may be committed, nothing is
	 * free to reuse or reclaim. A bounded request fails at once... */
	uint64_t t0 = mono_ms();
	CHECK_STATUS(za_alloc_pages(4, ZA_F_HIGH, &st), st, ZA_ENOMEM_LIMIT);
	CHECK(mono_ms() - t0 < 150);

	/* ...and a NOFAIL one waits until another thread frees a block. */
	freer_block = blocks[--n];
	pthread_t t;
	t0 = mono_ms();
	CHECK(pthread_create(&t, NULL, freer_main, NULL) == 0);
	void *p = za_alloc_pages(4, ZA_F_NOFAIL, &st);
	uint64_t t1 = mono_ms();
	int freed = atomic_load(&freer_started_free);
	CHECK_MSG(p && st == ZA_OK, "NOFAIL returned %p: %s", p, za_status_str(st));
	CHECK_MSG(freed, "NOFAIL returned before the other thread freed anything");
	CHECK_MSG(t1 - t0 >= 190, "NOFAIL returned after %llu ms", (unsigned long long)(t1 - t0));
	/* Backoff is at most 64 ms a round: it notices the free soon. */
	uint64_t lag = t1 - atomic_load(&freer_free_ms);
	CHECK_MSG(lag < 1000, "NOFAIL took %llu ms to notice the free", (unsigned long long)lag);
	CHECK(p == freer_block);
	pthread_join(t, NULL);
	printf("    NOFAIL blocked %llu ms, returned %llu ms after the free\n",
	       (unsigned long long)(t1 - t0), (unsigned long long)lag);

	/* The same through za_alloc (a run), with ZERO. */
	atomic_store(&freer_started_free, 0);
	freer_block = p;
	memset(p, 0xee, 64 * KiB);
	t0 = mono_ms();
	CHECK(pthread_create(&t, NULL, freer_main, NULL) == 0);
	char *q = za_alloc(64 * KiB, 0, ZA_F_NOFAIL | ZA_F_ZERO, &st);
	t1 = mono_ms();
	CHECK(q && st == ZA_OK && atomic_load(&freer_started_free) && t1 - t0 >= 190);
	if (q)
		CHECK(pt_all_zero(q, 64 * KiB));
	pthread_join(t, NULL);
	za_free(q);
	CHECK_HEAP();

	while (n > 0)
		za_free_pages(blocks[--n], 4);
	za_set_limit(0);
	check_usable();
}

int main(void)
{
	run_case("einval", case_einval, 30);
	run_case("too_large", case_too_large, 30);
	run_case("beyond_memory", case_beyond_memory, 30);
	run_case("limit", case_limit, 30);
	run_case("os_first_zone", case_os_first_zone, 30);
	run_case("os_full_zone", case_os_full_zone, 30);
	run_case("fragmented", case_fragmented, 30);
	run_case("reserve", case_reserve, 30);
	run_case("realloc_limit", case_realloc_limit, 30);
	run_case("nofail", case_nofail, 30);
	return test_done("test_policy_outcomes");
}
