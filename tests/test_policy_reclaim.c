/*
 * Reclaim gives memory back (issue 4), through the za_* API:
 *  - 1 GiB in mixed sizes (slab objects, page runs, huge mappings), every
 *    page touched, all freed, za_malloc_trim(0): resident memory is back
 *    within 8 MiB of where it started;
 *  - by decay alone, with a program that keeps allocating a little, within
 *    the decay time and some slack, and never a trim; also the free pages
 *    around a block that is taken and freed again and again (their block
 *    is split and merged each time, which must not make it young again);
 *  - released pages read as zero: calloc and ZA_F_ZERO give zeros, and
 *    skip the memset (no page faulted in) where MADV_DONTNEED released
 *    them; with MADV_FREE they are cleared;
 *  - the background reclaimer starts (lazily, on the first slow path),
 *    gives memory back while the program does nothing, and stops.
 * The preloaded variants (options from the environment, malloc_trim, fork)
 * are in test_policy_preload.c.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "shim/shim.h"
#include "tests/policy_test.h"

#define SLACK (8 * MiB)

#define MAX_ALLOCS 40000
static struct pt_alloc allocs[MAX_ALLOCS];

/* A warm start: the thread's heap and first zone exist, and this file's
 * own arrays are resident, before the baseline is read. */
static size_t baseline(void)
{
	memset(allocs, 0, sizeof allocs);
	void *p = za_malloc(64);
	void *q = za_malloc(100 * KiB);
	za_free(q);
	za_free(p);
	return rss_bytes();
}

/* Frees in a scrambled order. */
static void free_all(size_t n, uint64_t seed)
{
	struct test_rng r;
	rng_seed(&r, seed);
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rng_below(&r, i);
		struct pt_alloc t = allocs[i - 1];
		allocs[i - 1] = allocs[j];
		allocs[j] = t;
	}
	for (size_t i = 0; i < n; i++) {
		za_free(allocs[i].p);
		allocs[i].p = NULL;
	}
}

static void check_committed_identity(void)
{
	/* Huge mappings kept for reuse are still committed. */
	struct za_huge_stats hs;
	za_huge_stats(&hs);
	size_t hbytes = hs.bytes + hs.cached_bytes;
	struct za_stats s = pt_stats();
	CHECK_MSG(s.committed_bytes == (s.pages_total - s.pages_released) * ZA_PAGE_SIZE + hbytes,
		  "committed %zu != (%zu - %zu) pages + %zu huge bytes", s.committed_bytes,
		  s.pages_total, s.pages_released, hbytes);
}

static void case_trim_1gib(void)
{
	size_t rss0 = baseline();
	uint64_t t0 = mono_ms();
	size_t n = pt_alloc_mixed(za_malloc, allocs, MAX_ALLOCS, 1 * GiB, 15, true, 42);
	uint64_t t1 = mono_ms();
	size_t peak = rss_bytes();
	CHECK_MSG(peak >= rss0 + 900 * MiB, "peak RSS %zu MiB over a base of %zu MiB",
		  peak / MiB, rss0 / MiB);
	CHECK_HEAP();
	free_all(n, 43);
	size_t after_free = rss_bytes();
	check_committed_identity();
	CHECK_HEAP();

	size_t released_before = pt_stats().reclaimed_pages;
	uint64_t t2 = mono_ms();
	za_malloc_trim(0);
	uint64_t t3 = mono_ms();
	size_t rss1 = rss_bytes();
	struct za_stats s = pt_stats();
	printf("    %zu allocations, 1 GiB in %llu ms; RSS %zu MiB -> peak %zu MiB -> %zu MiB "
	       "freed -> %zu KiB after trim (base %zu KiB), trim %llu ms\n",
	       n, (unsigned long long)(t1 - t0), rss0 / MiB, peak / MiB, after_free / MiB,
	       rss1 / KiB, rss0 / KiB, (unsigned long long)(t3 - t2));
	CHECK_MSG(rss1 <= rss0 + SLACK, "RSS after trim %zu KiB, base %zu KiB", rss1 / KiB,
		  rss0 / KiB);
	CHECK(s.reclaimed_pages > released_before);
	CHECK(s.zones <= 2);
	CHECK(s.committed_bytes <= 2 * MiB);
	check_committed_identity();
	CHECK_HEAP();

	/* The heap serves again from released memory, and gives it back again. */
	n = pt_alloc_mixed(za_malloc, allocs, MAX_ALLOCS, 256 * MiB, 10, true, 44);
	CHECK(rss_bytes() >= rss0 + 200 * MiB);
	free_all(n, 45);
	CHECK(za_reclaim() > 0);
	CHECK_MSG(rss_bytes() <= rss0 + SLACK, "RSS after the second trim %zu KiB",
		  rss_bytes() / KiB);
	check_committed_identity();
	CHECK_HEAP();
}

/*
 * Decay alone: short decay, everything freed, then a program that every
 * 20 ms allocates and frees a 64 KiB run (which reaches the buddy core):
 * memory must go back within the decay time plus slack, with no trim.
 */
static void case_decay(void)
{
	const uint64_t decay = 200, slack_ms = 2000;
	za_policy_set_decay_ms(decay);
	size_t rss0 = baseline();
	size_t n = pt_alloc_mixed(za_malloc, allocs, MAX_ALLOCS, 256 * MiB, 5, false, 7);
	size_t peak = rss_bytes();
	struct za_stats s0 = pt_stats();
	free_all(n, 8);
	uint64_t t0 = mono_ms();
	size_t after_free = rss_bytes();
	/* Freeing keeps memory warm for reuse: nothing goes back at once. */
	CHECK_MSG(after_free >= rss0 + 200 * MiB, "RSS fell to %zu MiB on free",
		  after_free / MiB);

	size_t rss = after_free;
	uint64_t t = t0;
	unsigned rounds = 0;
	while (t - t0 < decay + slack_ms + 1000) {
		/* A burst per round: the heap looks at the clock once in 32
		 * allocations (za_policy_decay_tick), so on a loaded machine,
		 * where a round takes 100 ms, one allocation a round left the
		 * clock unread for 3 s. */
		for (int i = 0; i < 32; i++) {
			void *p = za_malloc(64 * KiB);
			CHECK(p != NULL);
			if (p)
				*(volatile char *)p = 1;
			za_free(p);
		}
		rounds++;
		rss = rss_bytes();
		t = mono_ms();
		if (rss <= rss0 + SLACK)
			break;
		sleep_ms(20);
	}
	struct za_stats s1 = pt_stats();
	/* Some more of the same: where it settles. */
	for (int i = 0; i < 50; i++) {
		za_free(za_malloc(64 * KiB));
		sleep_ms(20);
	}
	struct za_stats s2 = pt_stats();
	struct za_slab_stats ss;
	za_slab_stats_get(&ss);
	printf("    decay %llu ms: RSS %zu MiB peak, %zu MiB freed, %zu KiB after %llu ms "
	       "(%u rounds, %llu decay passes), base %zu KiB; 1 s later %zu KiB: %zu KiB "
	       "committed, %zu zones, %llu slabs\n",
	       (unsigned long long)decay, peak / MiB, after_free / MiB, rss / KiB,
	       (unsigned long long)(t - t0), rounds,
	       (unsigned long long)(s1.decay_passes - s0.decay_passes), rss0 / KiB,
	       rss_bytes() / KiB, s2.committed_bytes / KiB, s2.zones,
	       (unsigned long long)ss.slabs_live);
	CHECK_MSG(rss <= rss0 + SLACK, "RSS %zu KiB after %llu ms, base %zu KiB", rss / KiB,
		  (unsigned long long)(t - t0), rss0 / KiB);
	CHECK_MSG(t - t0 <= decay + slack_ms, "released after %llu ms", (unsigned long long)(t - t0));
	CHECK(s1.decay_passes > s0.decay_passes);
	check_committed_identity();
	CHECK_HEAP();
}

/*
 * Decay of memory next to a block in use: a 4 MiB block is dirtied and
 * freed, then the program takes and frees one 64 KiB block every 20 ms,
 * which the heap splits off that resident 4 MiB and merges back each time.
 * The other 3.9 MiB have been free since the start and must go back
 * within the decay time and slack, even though their block keeps being
 * split and merged.
 */
static void case_decay_neighbors(void)
{
	const uint64_t decay = 200, slack_ms = 2000;
	za_policy_set_decay_ms(decay);
	za_status st;
	unsigned char *big = za_alloc_pages(ZA_MAX_ORDER - 1, ZA_F_NONE, &st);
	CHECK(big != NULL);
	if (!big)
		return;
	memset(big, 0x99, ZA_MAX_BLOCK_PAGES * ZA_PAGE_SIZE);
	za_free_pages(big, ZA_MAX_ORDER - 1);
	size_t c0 = pt_stats().committed_bytes;
	CHECK_MSG(c0 >= ZA_MAX_BLOCK_PAGES * ZA_PAGE_SIZE, "committed %zu after the free", c0);

	uint64_t t0 = mono_ms(), t = t0;
	size_t committed = c0;
	bool inside = true;
	while (t - t0 < decay + slack_ms + 1000) {
		unsigned char *p = za_alloc_pages(4, ZA_F_NONE, &st);
		CHECK(p != NULL);
		if (!p)
			break;
		inside &= p >= big && p < big + ZA_MAX_BLOCK_PAGES * ZA_PAGE_SIZE;
		memset(p, 0x11, 16 * ZA_PAGE_SIZE);
		za_free_pages(p, 4);
		committed = pt_stats().committed_bytes;
		t = mono_ms();
		if (committed <= 64 * ZA_PAGE_SIZE)
			break;
		sleep_ms(20);
	}
	printf("    decay next to a busy block: %zu KiB committed after the free, %zu KiB after "
	       "%llu ms\n", c0 / KiB, committed / KiB, (unsigned long long)(t - t0));
	CHECK_MSG(inside, "the 64 KiB blocks did not come from the freed 4 MiB");
	CHECK_MSG(committed <= 64 * ZA_PAGE_SIZE && t - t0 <= decay + slack_ms,
		  "%zu KiB still committed after %llu ms", committed / KiB,
		  (unsigned long long)(t - t0));
	check_committed_identity();
	CHECK_HEAP();
}

/* Bytes of [p, p + size) whose pages are resident: what a write by the
 * allocator would have faulted in. Measured on the block itself, not as
 * the process's RSS, which other mappings (ASan's own heap, libc pages
 * faulted around on a first call) can grow by a few pages at any time. */
static size_t resident_in(const void *p, size_t size)
{
	uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(ZA_PAGE_SIZE - 1);
	uintptr_t hi = ((uintptr_t)p + size + ZA_PAGE_SIZE - 1) & ~(uintptr_t)(ZA_PAGE_SIZE - 1);
	static unsigned char vec[2048];
	size_t npages = (hi - lo) / ZA_PAGE_SIZE, n = 0;
	CHECK(npages <= sizeof vec);
	if (npages > sizeof vec || mincore((void *)lo, hi - lo, vec) != 0)
		return SIZE_MAX;
	for (size_t i = 0; i < npages; i++)
		n += vec[i] & 1;
	return n * ZA_PAGE_SIZE;
}

/* calloc of `size` after that much was dirtied, freed and released: all
 * zero. Returns how much of the block calloc itself made resident. */
static size_t calloc_after_release(size_t size, bool trim)
{
	unsigned char *p = za_malloc(size);
	CHECK(p != NULL);
	if (!p)
		return 0;
	memset(p, 0xa5, size);
	za_free(p);
	if (trim)
		za_reclaim();
	unsigned char *q = za_calloc(1, size);
	size_t grew = q ? resident_in(q, size) : 0;
	CHECK(q != NULL);
	if (q) {
		CHECK_MSG(pt_all_zero(q, size), "calloc(%zu) after release is not zero", size);
		memset(q, 0x5a, size);
		za_free(q);
	}
	return grew;
}

static void zero_cases(bool dontneed)
{
	za_reclaim_set_mode(dontneed ? ZA_RELEASE_DONTNEED : ZA_RELEASE_FREE);
	CHECK(za_released_reads_zero() == dontneed);
	baseline();

	/* Runs: released with madvise, then taken by calloc. */
	static const size_t sizes[] = { 40 * KiB, 1 * MiB, 3 * MiB + 12345, 4 * MiB };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t grew = calloc_after_release(sizes[i], true);
		/* With MADV_DONTNEED the pages read as the kernel's zero page and
		 * calloc writes nothing: none are faulted in. (MADV_FREE pages
		 * keep their old contents, stay resident until the kernel needs
		 * them, and must be cleared.) */
		if (dontneed)
			CHECK_MSG(grew < sizes[i] / 2, "calloc(%zu) faulted in %zu KiB", sizes[i],
				  grew / KiB);
	}
	/* Handed out, written on three pages, freed, never released: the
	 * heap counts the block resident, the kernel holds three of its
	 * pages (after a reclaim with MADV_DONTNEED). Clearing it for the next taker must not fault in the rest
	 * (za_buddy_block_clear), through calloc or ZA_F_ZERO. */
	for (int k = 0; k < 2; k++) {
		const size_t size = 4 * MiB;
		za_status st;
		za_reclaim();   /* what came before leaves its blocks in memory */
		unsigned char *p = k ? za_malloc(size) : za_alloc_pages(10, ZA_F_NONE, &st);
		CHECK(p != NULL);
		if (!p)
			continue;
		p[0] = p[size / 2] = p[size - 1] = 0xa5;
		if (k)
			za_free(p);
		else
			za_free_pages(p, 10);
		unsigned char *q = k ? za_calloc(1, size) : za_alloc_pages(10, ZA_F_ZERO, &st);
		/* The same block again, or the case proves nothing. */
		CHECK_MSG(q == p, "%s took another block", k ? "calloc" : "ZA_F_ZERO");
		if (!q)
			continue;
		size_t grew = resident_in(q, size);
		/* (MADV_FREE leaves released pages in memory until the
		 * kernel wants them: those are cleared by writing.) */
		if (dontneed)
			CHECK_MSG(grew < size / 2,
				  "%s of a block with 3 pages in memory faulted in %zu KiB",
				  k ? "calloc" : "ZA_F_ZERO", grew / KiB);
		CHECK_MSG(pt_all_zero(q, size), "cleared block not zero");
		if (k)
			za_free(q);
		else
			za_free_pages(q, 10);
	}

	/* Not released (no trim): calloc must clear what it reuses. */
	calloc_after_release(2 * MiB, false);
	calloc_after_release(20 * KiB, false);
	calloc_after_release(100, false);

	/* A block half released, half dirty: the resident half is cleared. */
	za_status st;
	unsigned char *b = za_alloc_pages(8, ZA_F_NONE, &st);
	CHECK(b != NULL);
	if (b) {
		memset(b, 0x77, ZA_PAGE_SIZE << 8);
		za_free_pages(b, 8);
		za_reclaim();
		unsigned char *lo = za_alloc_pages(7, ZA_F_NONE, &st);
		if (lo) {
			memset(lo, 0x66, ZA_PAGE_SIZE << 7);
			za_free_pages(lo, 7);
		}
		za_drain_caches();
		unsigned char *z = za_alloc_pages(8, ZA_F_ZERO, &st);
		CHECK(z && st == ZA_OK);
		if (z) {
			CHECK_MSG(pt_all_zero(z, ZA_PAGE_SIZE << 8), "ZA_F_ZERO block not zero");
			memset(z, 0x11, ZA_PAGE_SIZE << 8);
			za_free_pages(z, 8);
		}
	}
	/* ZA_F_ZERO through za_alloc and za_alloc_pages_exact, after release. */
	za_reclaim();
	unsigned char *a = za_alloc(300 * KiB, 0, ZA_F_ZERO, &st);
	CHECK(a && st == ZA_OK && pt_all_zero(a, 300 * KiB));
	if (a)
		memset(a, 0x33, 300 * KiB);
	za_free(a);
	unsigned char *e = za_alloc_pages_exact(77, ZA_F_ZERO, &st);
	CHECK(e && st == ZA_OK && pt_all_zero(e, 77 * ZA_PAGE_SIZE));
	if (e)
		memset(e, 0x44, 77 * ZA_PAGE_SIZE);
	za_free_pages_exact(e, 77);
	za_reclaim();
	e = za_alloc_pages_exact(77, ZA_F_ZERO, &st);
	CHECK(e && pt_all_zero(e, 77 * ZA_PAGE_SIZE));
	za_free_pages_exact(e, 77);
	unsigned char *al = za_alloc(256 * KiB, 64 * KiB, ZA_F_ZERO, &st);
	CHECK(al && ((uintptr_t)al & (64 * KiB - 1)) == 0 && pt_all_zero(al, 256 * KiB));
	za_free(al);
	check_committed_identity();
	CHECK_HEAP();
}

static void case_zero_dontneed(void)
{
	zero_cases(true);
}

static void case_zero_free(void)
{
	zero_cases(false);
}

/*
 * The background reclaimer: enabled, it starts on the first slow path (the
 * first zone), wakes every decay/2, gives memory back while the program
 * sleeps, and stops when asked.
 */
static void case_background(void)
{
	const uint64_t decay = 200, slack_ms = 2000;
	za_policy_set_decay_ms(decay);
	za_background_enable(true);
	CHECK(!za_background_running());
	size_t rss0 = baseline();   /* the first allocation starts it */
	CHECK(za_background_running());
	sleep_ms(50);
	CHECK(pt_stats().background_wakeups > 0);

	size_t n = pt_alloc_mixed(za_malloc, allocs, MAX_ALLOCS, 256 * MiB, 5, false, 99);
	size_t peak = rss_bytes();
	free_all(n, 100);
	size_t after_free = rss_bytes();
	uint64_t w0 = pt_stats().background_wakeups;

	/* No allocation, no trim from here: only /proc is read. */
	uint64_t t0 = mono_ms(), t = t0;
	size_t rss = after_free;
	while (t - t0 < decay + slack_ms + 1000) {
		rss = rss_bytes();
		t = mono_ms();
		if (rss <= rss0 + SLACK)
			break;
		sleep_ms(10);
	}
	uint64_t w1 = pt_stats().background_wakeups;
	sleep_ms(500);
	printf("    background: RSS %zu MiB peak, %zu MiB freed, %zu KiB after %llu ms idle "
	       "(%llu wakeups), base %zu KiB, %zu KiB 0.5 s later\n",
	       peak / MiB, after_free / MiB, rss / KiB, (unsigned long long)(t - t0),
	       (unsigned long long)(w1 - w0), rss0 / KiB, rss_bytes() / KiB);
	w1 = pt_stats().background_wakeups;
	CHECK_MSG(after_free >= rss0 + 150 * MiB, "RSS fell to %zu MiB on free", after_free / MiB);
	CHECK_MSG(rss <= rss0 + SLACK, "RSS %zu KiB after %llu ms idle, base %zu KiB", rss / KiB,
		  (unsigned long long)(t - t0), rss0 / KiB);
	CHECK_MSG(t - t0 <= decay + slack_ms, "released after %llu ms", (unsigned long long)(t - t0));
	CHECK(w1 > w0);

	/* Woken explicitly, it runs at once. */
	za_background_wake();
	sleep_ms(30);
	CHECK(pt_stats().background_wakeups > w1);

	/* Stop joins the thread; nothing wakes after. */
	za_background_enable(false);
	za_background_stop();
	CHECK(!za_background_running());
	uint64_t w2 = pt_stats().background_wakeups;
	sleep_ms(300);
	za_background_wake();
	CHECK(pt_stats().background_wakeups == w2);
	CHECK(!za_background_running());

	/* Enabled again, it starts again, and stops again. */
	za_background_enable(true);
	za_background_wake();
	CHECK(za_background_running());
	sleep_ms(30);
	CHECK(pt_stats().background_wakeups > w2);
	za_background_stop();
	CHECK(!za_background_running());
	check_committed_identity();
	CHECK_HEAP();
}

/* The heap's clock (os/clock.c, read through the vDSO) is the kernel's
 * CLOCK_MONOTONIC_COARSE in milliseconds: decay ages are measured on it. */
static void case_clock(void)
{
	for (int i = 0; i < 5; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC_COARSE, &a);
		uint64_t ours = za_os_clock_ms();
		clock_gettime(CLOCK_MONOTONIC_COARSE, &b);
		uint64_t lo = (uint64_t)a.tv_sec * 1000u + (uint64_t)a.tv_nsec / 1000000u;
		uint64_t hi = (uint64_t)b.tv_sec * 1000u + (uint64_t)b.tv_nsec / 1000000u;
		CHECK_MSG(ours >= lo && ours <= hi, "clock %llu ms outside [%llu, %llu]",
			  (unsigned long long)ours, (unsigned long long)lo, (unsigned long long)hi);
		struct timespec nap = { 0, 20 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
}

int main(void)
{
	run_case("clock", case_clock, 10);
	run_case("trim_1gib", case_trim_1gib, 60);
	run_case("decay", case_decay, 30);
	run_case("decay_neighbors", case_decay_neighbors, 30);
	run_case("zero_dontneed", case_zero_dontneed, 30);
	run_case("zero_madv_free", case_zero_free, 30);
	run_case("background", case_background, 30);
	return test_done("test_policy_reclaim");
}
