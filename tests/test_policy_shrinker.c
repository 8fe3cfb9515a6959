/*
 * Shrinkers and the OOM handler (issue 14, item 3). Under a limit, the
 * program keeps an "application cache" of blocks it could drop:
 *   - without a shrinker, an allocation that does not fit fails with
 *     ZA_ENOMEM_LIMIT (the heap cannot free the program's memory);
 *   - with a shrinker that drops cache entries, the same allocation
 *     succeeds (runs, slab objects and huge blocks), and the shrinker was
 *     asked for about what was missing, not for everything;
 *   - the shrinker is not called while memory is plentiful, nor again from
 *     an allocation it makes itself, and unregistered it is not called;
 *   - an OOM handler that frees nothing and asks to retry ends in the typed
 *     failure after ZA_OOM_TRIES tries; one that answers "no" fails at
 *     once; one that drops the cache makes the allocation succeed;
 *   - ZA_F_NOFAIL keeps calling the OOM handler until it frees memory;
 *   - the report and the JSON count rounds, calls, bytes and OOM calls;
 *   - a compaction hook is asked before ZA_ENOMEM_FRAGMENTED: one that
 *     moves the pinning blocks makes the allocation succeed, one that
 *     moves nothing is asked once;
 *   - za_defrag_hint picks the survivors of a 90% free, za_defrag_alloc
 *     packs them, and the emptied slabs go back (committed memory drops).
 * Each case runs in a fresh forked child (tests/policy_test.h).
 */
#include <pthread.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "slab/slab.h"
#include "tests/policy_test.h"

#define LIMIT (32 * MiB)
#define ENTRY (256 * KiB)
#define MAX_ENTRIES 256

/* The application cache: blocks of ENTRY bytes, dropped newest first. */
static void *cache[MAX_ENTRIES];
static int cached;
static int count_calls, scan_calls;
static size_t scan_asked, scan_freed;
static bool scan_allocates;

static int cache_full;   /* entries the first fill got: the headroom */

/* Fills the cache until the limit stops it (no shrinker or OOM handler
 * may be set then, or they would free what this adds), and remembers how
 * many entries that took. */
static void cache_fill(void)
{
	while (cached < MAX_ENTRIES) {
		void *p = za_malloc(ENTRY);
		if (!p)
			break;
		memset(p, 7, ENTRY);
		cache[cached++] = p;
	}
	cache_full = cached;
}

/* Back to the first fill's size (a bounded number of tries). */
static void cache_refill(void)
{
	for (int tries = 0; cached < cache_full && tries < 2 * MAX_ENTRIES; tries++) {
		void *p = za_malloc(ENTRY);
		if (!p)
			break;
		memset(p, 7, ENTRY);
		cache[cached++] = p;
	}
}

static size_t cache_drop(size_t bytes)
{
	size_t freed = 0;
	while (cached > 0 && freed < bytes) {
		za_free(cache[--cached]);
		freed += ENTRY;
	}
	return freed;
}

static size_t count_fn(void *arg)
{
	CHECK(arg == (void *)cache);
	count_calls++;
	return (size_t)cached * ENTRY;
}

static size_t scan_fn(void *arg, size_t bytes)
{
	(void)arg;
	scan_calls++;
	scan_asked += bytes;
	if (scan_allocates) {
		/* An allocation inside a callback: served or not, never a
		 * second round of shrinkers. */
		void *p = za_malloc(ENTRY);
		za_free(p);
	}
	size_t f = cache_drop(bytes);
	scan_freed += f;
	return f;
}

static void case_no_shrinker(void)
{
	za_set_limit(LIMIT);
	cache_fill();
	CHECK_MSG(cached > 64, "cache of %d entries", cached);
	za_status st = ZA_OK;
	void *p = za_alloc(4 * MiB, 0, ZA_F_NONE, &st);
	CHECK_MSG(!p && st == ZA_ENOMEM_LIMIT, "%p %s", p, za_status_str(st));
	errno = 0;
	CHECK(!za_malloc(2 * MiB) && errno == ENOMEM && za_last_status() == ZA_ENOMEM_LIMIT);
}

static void case_shrinker(void)
{
	za_set_limit(LIMIT);
	int id = za_register_shrinker(count_fn, scan_fn, cache);
	CHECK(id >= 0);
	/* Plenty of memory: nobody asks. */
	void *small[100];
	for (int i = 0; i < 100; i++)
		small[i] = za_malloc(100);
	for (int i = 0; i < 100; i++)
		za_free(small[i]);
	CHECK_MSG(count_calls == 0 && scan_calls == 0, "asked while memory was plentiful");
	CHECK(za_unregister_shrinker(id) == 0);
	cache_fill();
	id = za_register_shrinker(count_fn, scan_fn, cache);
	CHECK(id >= 0);
	int before = cached;
	za_status st = ZA_EINVAL;
	void *run = za_alloc(4 * MiB, 0, ZA_F_NONE, &st);
	CHECK_MSG(run && st == ZA_OK, "4 MiB run with a shrinker: %s", za_status_str(st));
	CHECK_MSG(scan_calls >= 1 && scan_freed >= 4 * MiB - 64 * KiB,
		  "%d scans freed %zu bytes", scan_calls, scan_freed);
	/* Asked for what was missing, not for the whole cache. */
	CHECK_MSG(cached > before / 4, "the shrinker emptied %d of %d entries", before - cached,
		  before);
	memset(run, 1, 4 * MiB);
	za_free(run);

	/* A huge block (charged against the limit directly). */
	cache_refill();
	int scans = scan_calls;
	void *huge = za_malloc(12 * MiB);
	CHECK_MSG(huge && scan_calls > scans, "12 MiB huge with a shrinker: %p", huge);
	if (huge)
		memset(huge, 1, 12 * MiB);
	za_free(huge);

	/* Slab objects: 1 MiB of 1 KiB ones beyond a full limit. */
	cache_refill();
	scans = scan_calls;
	static void *objs[1024];
	for (int i = 0; i < 1024; i++) {
		objs[i] = za_malloc(1000);
		CHECK_MSG(objs[i], "slab object %d with a shrinker", i);
		if (objs[i])
			memset(objs[i], 1, 1000);
	}
	CHECK(scan_calls > scans);
	for (int i = 0; i < 1024; i++)
		za_free(objs[i]);

	/* A shrinker that allocates: one round, no recursion. */
	cache_refill();
	scan_allocates = true;
	scans = scan_calls;
	void *again = za_alloc(4 * MiB, 0, ZA_F_NONE, &st);
	CHECK_MSG(again && st == ZA_OK, "with an allocating shrinker: %s", za_status_str(st));
	CHECK_MSG(scan_calls - scans <= 4, "%d scans for one allocation", scan_calls - scans);
	za_free(again);
	scan_allocates = false;

	struct za_shrink_stats sh;
	za_policy_shrink_stats(&sh);
	CHECK_MSG(sh.shrinkers == 1 && sh.calls == (uint64_t)scan_calls &&
			  sh.bytes_freed == scan_freed && sh.rounds >= 4,
		  "stats: %u shrinkers, %llu rounds, %llu calls, %llu bytes", sh.shrinkers,
		  (unsigned long long)sh.rounds, (unsigned long long)sh.calls,
		  (unsigned long long)sh.bytes_freed);

	/* Unregistered: never called again, and the allocation fails. */
	CHECK(za_unregister_shrinker(id) == 0);
	CHECK(za_unregister_shrinker(id) == -1 && errno == EINVAL);
	cache_refill();
	scans = scan_calls;
	CHECK_STATUS(za_alloc(4 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK(scan_calls == scans);
	CHECK(za_register_shrinker(NULL, scan_fn, NULL) == -1 && errno == EINVAL);
}

static int oom_calls;
static size_t oom_size;

static bool oom_retry_nothing(void *arg, size_t size, za_status status)
{
	CHECK(arg == (void *)&oom_calls && status == ZA_ENOMEM_LIMIT);
	oom_calls++;
	oom_size = size;
	return true;
}

static bool oom_refuse(void *arg, size_t size, za_status status)
{
	(void)arg;
	(void)size;
	(void)status;
	oom_calls++;
	return false;
}

static bool oom_drop_cache(void *arg, size_t size, za_status status)
{
	(void)arg;
	(void)status;
	oom_calls++;
	return cache_drop(size + ENTRY) > 0;
}

static void case_oom(void)
{
	za_set_limit(LIMIT);
	cache_fill();
	za_status st = ZA_OK;

	za_set_oom_handler(oom_retry_nothing, &oom_calls);
	CHECK_STATUS(za_alloc(4 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_MSG(oom_calls == ZA_OOM_TRIES, "a handler that frees nothing: %d calls, want %d",
		  oom_calls, ZA_OOM_TRIES);
	CHECK_MSG(oom_size >= 4 * MiB, "asked for %zu bytes", oom_size);
	oom_calls = 0;
	errno = 0;
	CHECK(!za_malloc(20 * MiB) && errno == ENOMEM);   /* huge: bounded too */
	CHECK_MSG(oom_calls == ZA_OOM_TRIES, "huge: %d calls", oom_calls);

	za_set_oom_handler(oom_refuse, NULL);
	oom_calls = 0;
	CHECK_STATUS(za_alloc(4 * MiB, 0, ZA_F_NONE, &st), st, ZA_ENOMEM_LIMIT);
	CHECK_MSG(oom_calls == 1, "a handler that says no: %d calls", oom_calls);

	za_set_oom_handler(oom_drop_cache, NULL);
	oom_calls = 0;
	void *p = za_alloc(4 * MiB, 0, ZA_F_NONE, &st);
	CHECK_MSG(p && st == ZA_OK && oom_calls >= 1, "a handler that frees: %s after %d calls",
		  za_status_str(st), oom_calls);
	za_free(p);

	/* ZA_F_ATOMIC never calls it. */
	za_set_oom_handler(NULL, NULL);
	cache_refill();
	za_set_oom_handler(oom_drop_cache, NULL);
	oom_calls = 0;
	CHECK_STATUS(za_alloc(4 * MiB, 0, ZA_F_ATOMIC, &st), st, ZA_ENOMEM_LIMIT);
	CHECK(oom_calls == 0);
	za_set_oom_handler(NULL, NULL);
	CHECK(za_buddy_check(NULL) == 0);
}

/* NOFAIL: the handler frees nothing for 20 rounds, then drops the cache. */
static bool oom_late(void *arg, size_t size, za_status status)
{
	(void)arg;
	(void)status;
	if (++oom_calls < 20)
		return true;
	return cache_drop(size + ENTRY) > 0;
}

static void case_nofail(void)
{
	za_set_limit(LIMIT);
	cache_fill();
	za_set_oom_handler(oom_late, NULL);
	za_status st = ZA_EINVAL;
	void *p = za_alloc(4 * MiB, 0, ZA_F_NOFAIL, &st);
	CHECK_MSG(p && st == ZA_OK && oom_calls >= 20, "NOFAIL: %s after %d calls",
		  za_status_str(st), oom_calls);
	za_free(p);
}

/* Compaction: a zone of single pages, every other one freed: pages
 * enough for an order-5 block, but no block. */
#define ZONE_PAGES ((size_t)ZA_ZONE_PAGES)
static void *pages[ZA_ZONE_PAGES + 64];
static size_t npages;
static int compact_calls;
static size_t compact_size;

static bool compact_move_all(void *arg, size_t size)
{
	CHECK(arg == (void *)pages);
	compact_calls++;
	compact_size = size;
	/* "moves" the pinning pages away: frees them */
	bool moved = false;
	for (size_t i = 0; i < npages; i++)
		if (pages[i]) {
			za_free_pages(pages[i], 0);
			pages[i] = NULL;
			moved = true;
		}
	return moved;
}

static bool compact_nothing(void *arg, size_t size)
{
	(void)arg;
	(void)size;
	compact_calls++;
	return false;
}

static void fragment(void)
{
	za_set_limit(ZONE_PAGES << ZA_PAGE_SHIFT);
	za_status st = ZA_OK;
	while (npages < ZONE_PAGES + 64) {
		void *p = za_alloc_pages(0, ZA_F_HIGH, &st);
		if (!p)
			break;
		pages[npages++] = p;
	}
	for (size_t i = 0; i < npages; i++) {
		struct za_zone *zone = za_zone_of(pages[i]);
		if (!(za_pfn_of(zone, pages[i]) & 1)) {
			za_free_pages(pages[i], 0);
			pages[i] = NULL;
		}
	}
	za_drain_caches();
}

static void case_compaction(void)
{
	fragment();
	za_status st = ZA_OK;
	CHECK_STATUS(za_alloc_pages(5, ZA_F_NONE, &st), st, ZA_ENOMEM_FRAGMENTED);

	za_set_compaction_hook(compact_nothing, NULL);
	CHECK_STATUS(za_alloc_pages(5, ZA_F_NONE, &st), st, ZA_ENOMEM_FRAGMENTED);
	CHECK_MSG(compact_calls == 1, "a hook that moves nothing: %d calls", compact_calls);

	za_set_compaction_hook(compact_move_all, pages);
	compact_calls = 0;
	void *b = za_alloc_pages(5, ZA_F_NONE, &st);
	CHECK_MSG(b && st == ZA_OK && compact_calls == 1 && compact_size == 32 * ZA_PAGE_SIZE,
		  "a hook that moves: %s, %d calls, size %zu", za_status_str(st), compact_calls,
		  compact_size);
	za_free_pages(b, 5);
	za_set_compaction_hook(NULL, NULL);
	struct za_shrink_stats sh;
	za_policy_shrink_stats(&sh);
	CHECK(sh.compaction_calls == 2);
	CHECK(za_buddy_check(NULL) == 0);
}

/* Defragmentation: 20,000 objects of 48 bytes, 90% freed at random; the
 * survivors moved by the hint pack into few slabs and the rest go back. */
#define NOBJ 20000
static char *objs_d[NOBJ];

static void case_defrag(void)
{
	struct test_rng r;
	rng_seed(&r, 42);
	for (int i = 0; i < NOBJ; i++) {
		objs_d[i] = za_malloc(48);
		memset(objs_d[i], (char)i, 48);
	}
	int live = 0;
	for (int i = 0; i < NOBJ; i++)
		if (rng_next(&r) % 10) {
			za_free(objs_d[i]);
			objs_d[i] = NULL;
		} else {
			live++;
		}
	za_reclaim();
	size_t before = pt_stats().committed_bytes;
	int hinted = 0;
	for (int i = 0; i < NOBJ; i++)
		hinted += objs_d[i] && za_defrag_hint(objs_d[i]);
	CHECK_MSG(hinted > live * 8 / 10, "%d of %d sparse objects hinted", hinted, live);
	void *run = za_malloc(64 * KiB);
	int on_stack;
	CHECK(!za_defrag_hint(run) && !za_defrag_hint(NULL) && !za_defrag_hint(&on_stack));
	za_free(run);

	int moves = 0;
	for (int i = 0; i < NOBJ; i++) {
		if (!objs_d[i] || !za_defrag_hint(objs_d[i]))
			continue;
		char *copy = za_defrag_alloc(48);
		memcpy(copy, objs_d[i], 48);
		za_defrag_free(objs_d[i]);
		objs_d[i] = copy;
		moves++;
	}
	za_reclaim();
	size_t after = pt_stats().committed_bytes;
	int still = 0, intact = 0;
	for (int i = 0; i < NOBJ; i++)
		if (objs_d[i]) {
			still += za_defrag_hint(objs_d[i]);
			intact += objs_d[i][0] == (char)i && objs_d[i][47] == (char)i;
		}
	CHECK_MSG(intact == live, "%d of %d objects intact", intact, live);
	CHECK_MSG(still * 10 < live, "%d of %d still hinted after %d moves", still, live, moves);
	/* ~20 slabs of 64 KiB held 2,000 objects; after: 2 or 3 */
	CHECK_MSG(after + 512 * KiB < before, "committed %zu KiB before, %zu KiB after %d moves",
		  before >> 10, after >> 10, moves);
	for (int i = 0; i < NOBJ; i++)
		za_free(objs_d[i]);
	CHECK(za_buddy_check(NULL) == 0);
}

/* The moves fill the fullest slab first, and (after the first, made before
 * there is a target) never move its objects: the first slab keeps 60% of
 * its objects, the next nine 10%. */
static void case_defrag_target(void)
{
	const int per_slab = 65536 / 48;
	const int n = 10 * per_slab;
	for (int i = 0; i < n; i++)
		objs_d[i] = za_malloc(48);
	struct za_slab *first = za_slab_of_object(objs_d[0]);
	int in_first = 0;
	for (int i = 0; i < n; i++) {
		bool there = za_slab_of_object(objs_d[i]) == first;
		in_first += there;
		if ((there && i % 10 >= 6) || (!there && i % 10)) {
			za_free(objs_d[i]);
			objs_d[i] = NULL;
		}
	}
	CHECK_MSG(in_first == per_slab, "%d objects in the first slab", in_first);
	int moved_first = 0, moves = 0;
	for (int i = 0; i < n; i++) {
		if (!objs_d[i] || !za_defrag_hint(objs_d[i]))
			continue;
		moved_first += za_slab_of_object(objs_d[i]) == first;
		char *copy = za_defrag_alloc(48);
		za_defrag_free(objs_d[i]);
		objs_d[i] = copy;
		moves++;
	}
	/* The first move is hinted before any target is chosen. */
	CHECK_MSG(moves > 0 && moved_first <= 1,
		  "%d of %d moves took objects out of the fullest slab", moved_first, moves);
	for (int i = 0; i < n; i++)
		za_free(objs_d[i]);
}

int main(void)
{
	run_case("no_shrinker", case_no_shrinker, 60);
	run_case("shrinker", case_shrinker, 60);
	run_case("oom", case_oom, 60);
	run_case("nofail", case_nofail, 60);
	run_case("compaction", case_compaction, 60);
	run_case("defrag", case_defrag, 60);
	run_case("defrag_target", case_defrag_target, 60);
	return test_done("test_policy_shrinker");
}
