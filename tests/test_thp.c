/*
 * Transparent huge pages (issue 14 item 4), in the library:
 *  - ZONEALLOC_THP=always: the decay gives back only whole 2 MiB blocks (a
 *    smaller madvise would split the huge page under it); a free block of
 *    order 3 stays resident after a decay pass, and direct reclaim (no
 *    age) still takes it; under madvise the decay takes it;
 *  - a cached huge mapping reused for less is cut at a 2 MiB boundary when
 *    huge pages are on (its mapping rounded up to 2 MiB), at the page
 *    boundary when they are off; the usable size is the request's either
 *    way (free_sized with the size asked for is exact);
 *  - the advice itself: a zone gets MADV_HUGEPAGE under always only, a
 *    huge mapping under madvise and always, MADV_NOHUGEPAGE under never
 *    (VmFlags hg / nh in /proc/self/smaps); under reuse (the default) a
 *    huge mapping asks nothing until a huge block has been freed, then a
 *    fresh mapping asks, and a cached one when it is reused.
 */
#include <sys/mman.h>

#include "buddy/buddy.h"
#include "os/os.h"
#include "policy/policy.h"
#include "tests/policy_test.h"

static bool resident(const void *p)
{
	unsigned char v = 0;
	CHECK(mincore((void *)((uintptr_t)p & ~(uintptr_t)(ZA_PAGE_SIZE - 1)), ZA_PAGE_SIZE, &v) == 0);
	return v & 1;
}

/* An order-3 block, written and freed, whose buddy stays allocated (so it
 * cannot merge into a 2 MiB block): of 64 blocks, one whose buddy is
 * among them; the others are freed. */
static void *lone_free_block(void **keep)
{
	enum { N = 64 };
	void *blk[N];
	za_status st;
	for (int i = 0; i < N; i++) {
		blk[i] = za_alloc_pages(3, ZA_F_NONE, &st);
		CHECK(blk[i]);
		memset(blk[i], 1, 8 * ZA_PAGE_SIZE);
	}
	int a = -1, b = -1;
	for (int i = 0; i < N && a < 0; i++)
		for (int j = 0; j < N; j++)
			if (((uintptr_t)blk[i] ^ (uintptr_t)blk[j]) == (uintptr_t)8 << ZA_PAGE_SHIFT) {
				a = i;
				b = j;
				break;
			}
	CHECK_MSG(a >= 0, "no two of %d order-3 blocks are buddies", N);
	for (int i = 0; i < N; i++)
		if (i != b)
			za_free_pages(blk[i], 3);
	*keep = blk[b];
	return blk[a];
}

static void case_decay_whole_huge_pages(void)
{
	void *keep;
	za_thp_mode = ZA_THP_ALWAYS;
	void *a = lone_free_block(&keep);
	za_drain_caches();   /* off the per-CPU lists, onto the free lists */
	sleep_ms(5);
	CHECK(resident(a));
	za_reclaim_pass(1, SIZE_MAX, SIZE_MAX);
	CHECK_MSG(resident(a), "THP always: the decay released an order-3 block");
	za_reclaim_pass(0, SIZE_MAX, SIZE_MAX);
	CHECK_MSG(!resident(a), "THP always: direct reclaim did not release an order-3 block");

	za_free_pages(keep, 3);
	za_thp_mode = ZA_THP_MADVISE;
	a = lone_free_block(&keep);
	za_drain_caches();
	sleep_ms(5);
	CHECK(resident(a));
	za_reclaim_pass(1, SIZE_MAX, SIZE_MAX);
	CHECK_MSG(!resident(a), "THP madvise: the decay kept an order-3 block");
	za_free_pages(keep, 3);
	CHECK_HEAP();
}

static size_t reused_mapping(int mode)
{
	za_thp_mode = mode;
	void *big = za_malloc(24 * MiB);
	CHECK(big);
	memset(big, 1, 24 * MiB);
	za_free(big);   /* kept warm in the huge cache */
	void *p = za_malloc(9 * MiB + 1);
	CHECK(p == big);   /* the cached mapping, cut to size */
	size_t mapped = za_region_of(p)->size;
	CHECK_MSG(za_malloc_usable_size(p) == 9 * MiB + ZA_PAGE_SIZE, "usable %zu, want 9 MiB + 4 KiB",
		  za_malloc_usable_size(p));
	za_free_sized(p, 9 * MiB + 1);   /* (aborts if the size were not exact) */
	za_reclaim();
	return mapped;
}

static void case_huge_cut(void)
{
	size_t reuse = reused_mapping(ZA_THP_REUSE);
	size_t on = reused_mapping(ZA_THP_MADVISE), off = reused_mapping(ZA_THP_NEVER);
	CHECK_MSG(on == 10 * MiB, "THP on: 9 MiB + 1 from a cached 24 MiB mapping keeps %zu mapped, "
				  "want 10 MiB (cut at a 2 MiB boundary)", on);
	CHECK_MSG(reuse == 10 * MiB, "THP reuse: the reused mapping keeps %zu mapped, want 10 MiB "
				     "(it asks for huge pages when reused)", reuse);
	CHECK_MSG(off == 9 * MiB + ZA_PAGE_SIZE, "THP off: %zu mapped, want 9 MiB + 4 KiB", off);
}

/* The VmFlags line of the mapping holding p, read without stdio. */
static bool vm_flag(const void *p, const char *flag)
{
	static char buf[1 << 20];
	int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r;
	while (fd >= 0 && n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
		n += (size_t)r;
	if (fd >= 0)
		close(fd);
	buf[n] = 0;
	bool in = false;
	for (char *line = buf; line && *line;) {
		char *next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		unsigned long lo, hi;
		char *dash = strchr(line, '-'), *sp = strchr(line, ' ');
		if (dash && sp && dash < sp && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			char want[8];
			snprintf(want, sizeof want, " %s", flag);
			return strstr(line, want) != NULL;
		}
		line = next;
	}
	return false;
}

/* One mode per case (each a fresh process): a zone's advice cannot be
 * taken back to the system's default, only changed. */
static void advice(int mode)
{
	static const char *const names[] = { "never", "madvise", "always", "reuse" };
	za_thp_mode = mode;
	za_zones_thp_advise();
	void *small = za_malloc(100), *big = za_malloc(8 * MiB);
	CHECK(small && big);
	bool zone_hg = vm_flag(small, "hg"), zone_nh = vm_flag(small, "nh");
	bool huge_hg = vm_flag(big, "hg"), huge_nh = vm_flag(big, "nh");
	CHECK_MSG(zone_hg == (mode == ZA_THP_ALWAYS) && zone_nh == (mode == ZA_THP_NEVER),
		  "THP %s: zone VmFlags hg %d nh %d", names[mode], zone_hg, zone_nh);
	CHECK_MSG(huge_hg == (mode != ZA_THP_NEVER) && huge_nh == (mode == ZA_THP_NEVER),
		  "THP %s: huge mapping VmFlags hg %d nh %d", names[mode], huge_hg, huge_nh);
	za_free(big);
	za_free(small);
}

/* The default: huge pages for huge blocks once the program recycles them. */
static void case_advice_reuse(void)
{
	za_thp_mode = ZA_THP_REUSE;
	za_zones_thp_advise();
	void *small = za_malloc(100), *first = za_malloc(8 * MiB);
	CHECK(small && first);
	CHECK_MSG(!vm_flag(small, "hg") && !vm_flag(small, "nh"), "THP reuse: the zone was advised");
	CHECK_MSG(!vm_flag(first, "hg") && !vm_flag(first, "nh"),
		  "THP reuse: the first huge block asked for huge pages before any was freed");
	za_free(first);   /* kept in the cache */
	void *fresh = za_malloc(40 * MiB), *again = za_malloc(8 * MiB);
	CHECK(fresh && again);
	CHECK_MSG(again == first, "the 8 MiB block did not come from the cache");
	CHECK_MSG(vm_flag(fresh, "hg"), "THP reuse: a huge block mapped after a free asks nothing");
	CHECK_MSG(vm_flag(again, "hg"), "THP reuse: a cached mapping reused asks nothing");
	za_free(again);
	za_free(fresh);
	za_free(small);
}

static void case_advice_never(void)
{
	advice(ZA_THP_NEVER);
}

static void case_advice_madvise(void)
{
	advice(ZA_THP_MADVISE);
}

static void case_advice_always(void)
{
	advice(ZA_THP_ALWAYS);
}

int main(void)
{
	run_case("decay_whole_huge_pages", case_decay_whole_huge_pages, 60);
	run_case("huge_cut", case_huge_cut, 60);
	run_case("advice_never", case_advice_never, 60);
	run_case("advice_madvise", case_advice_madvise, 60);
	run_case("advice_reuse", case_advice_reuse, 60);
	run_case("advice_always", case_advice_always, 60);
	return test_done("test_thp");
}
