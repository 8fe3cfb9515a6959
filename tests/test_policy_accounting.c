/*
 * Committed accounting stays exact (issue 4). Random sequences of page
 * blocks, exact runs, malloc/calloc/realloc of every tier, frees, direct
 * and decay reclaim, trims, cache drains and limit changes; after every
 * step the stats must satisfy
 *
 *     committed_bytes == (pages_total - pages_released) * page size
 *                        + bytes of huge mappings
 *
 * (committed = allocated + retained free pages + huge mappings), with a
 * limit set committed never exceeds it, failures are typed, and
 * za_buddy_check() (which recounts per-page residency) stays clean. Data
 * written to live blocks survives every reclaim.
 */
#include <pthread.h>
#include <stdlib.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "shim/shim.h"
#include "tests/policy_test.h"

enum kind { K_PAGES, K_EXACT, K_MALLOC };

struct live {
	void *p;
	size_t size;      /* bytes the caller asked for */
	unsigned order;   /* K_PAGES: order; K_EXACT: pages in size */
	enum kind kind;
	uint64_t tag;
};

#define MAX_LIVE 1500
#define LIVE_BYTES_MAX (160 * MiB)

struct state {
	struct test_rng rng;
	struct live live[MAX_LIVE];
	size_t n, bytes;
	uint64_t next_tag;
	size_t limit;     /* bytes; 0 = none */
	unsigned failures, failures_by[ZA_STATUS_COUNT];
	bool exact;       /* single-threaded: the identity must hold now */
	bool pressure;    /* fewer frees, no mass frees: run into the limit */
	size_t peak;      /* most bytes committed after a step */
};

/* The first word of every page carries the tag (xor its offset), and the
 * last word of the block the tag itself; a page word that would overlap
 * the last word is left out. */
static void stamp(void *p, size_t size, uint64_t tag)
{
	unsigned char *b = p;
	if (size < 16)
		return;
	for (size_t off = 0; off + 16 <= size; off += ZA_PAGE_SIZE)
		memcpy(b + off, &(uint64_t){ tag ^ off }, 8);
	memcpy(b + size - 8, &tag, 8);
}

/* The page words of the first `keep` bytes of a block stamped at `size`. */
static bool stamp_prefix_ok(const void *p, size_t size, size_t keep, uint64_t tag)
{
	const unsigned char *b = p;
	for (size_t off = 0; off + 16 <= size && off + 8 <= keep; off += ZA_PAGE_SIZE) {
		uint64_t w;
		memcpy(&w, b + off, 8);
		if (w != (tag ^ off))
			return false;
	}
	return true;
}

static bool stamp_ok(const void *p, size_t size, uint64_t tag)
{
	uint64_t last;
	if (size < 16)
		return true;
	memcpy(&last, (const unsigned char *)p + size - 8, 8);
	return last == tag && stamp_prefix_ok(p, size, size, tag);
}

/* Huge mappings, live and kept for reuse: both committed. */
static size_t huge_bytes_live(void)
{
	struct za_huge_stats hs;
	za_huge_stats(&hs);
	return hs.bytes + hs.cached_bytes;
}

static void check_identity(const struct state *s, const char *after)
{
	struct za_stats st = pt_stats();
	size_t huge = huge_bytes_live();
	size_t zone_committed = (st.pages_total - st.pages_released) * ZA_PAGE_SIZE;
	CHECK_MSG(st.committed_bytes == zone_committed + huge,
		  "after %s: committed %zu != zones %zu (%zu - %zu pages) + huge %zu", after,
		  st.committed_bytes, zone_committed, st.pages_total, st.pages_released, huge);
	CHECK_MSG(st.pages_released <= st.pages_free,
		  "after %s: %zu released pages but only %zu free", after, st.pages_released,
		  st.pages_free);
	if (s->limit)
		CHECK_MSG(st.committed_bytes <= s->limit, "after %s: committed %zu over limit %zu",
			  after, st.committed_bytes, s->limit);
}

static za_flags random_flags(struct test_rng *r)
{
	static const za_flags choice[] = {
		ZA_F_NONE, ZA_F_NONE, ZA_F_HIGH, ZA_F_ZERO, ZA_F_NORETRY, ZA_F_ATOMIC,
		ZA_F_NOWARN | ZA_F_HIGH, ZA_F_ZERO | ZA_F_ATOMIC,
	};
	return choice[rng_below(r, sizeof choice / sizeof choice[0])];
}

static void note_failure(struct state *s, za_status st, const char *what)
{
	s->failures++;
	if ((unsigned)st < ZA_STATUS_COUNT)
		s->failures_by[st]++;
	/* Without a limit nothing may fail; with one, only by the limit or
	 * fragmentation. */
	CHECK_MSG(s->limit && (st == ZA_ENOMEM_LIMIT || st == ZA_ENOMEM_FRAGMENTED),
		  "%s failed with %s (limit %zu)", what, za_status_str(st), s->limit);
}

static void add_live(struct state *s, void *p, size_t size, unsigned order, enum kind k)
{
	struct live *l = &s->live[s->n++];
	l->p = p;
	l->size = size;
	l->order = order;
	l->kind = k;
	l->tag = ++s->next_tag * 0x9e3779b97f4a7c15ULL;
	stamp(p, size, l->tag);
	s->bytes += size;
}

static void drop_live(struct state *s, size_t i)
{
	struct live *l = &s->live[i];
	CHECK_MSG(stamp_ok(l->p, l->size, l->tag), "block %p (%zu bytes) changed under its owner",
		  l->p, l->size);
	switch (l->kind) {
	case K_PAGES:
		za_free_pages(l->p, l->order);
		break;
	case K_EXACT:
		za_free_pages_exact(l->p, l->order);
		break;
	case K_MALLOC:
		/* C23: an aligned block's sized free is free_aligned_sized. */
		if (rng_below(&s->rng, 2))
			za_free(l->p);
		else if (l->order > 16)
			za_free_aligned_sized(l->p, l->order, l->size);
		else
			za_free_sized(l->p, l->size);
		break;
	}
	s->bytes -= l->size;
	s->live[i] = s->live[--s->n];
}

static size_t random_malloc_size(struct test_rng *r)
{
	unsigned pick = (unsigned)rng_below(r, 100);
	if (pick < 50)
		return pt_range(r, 1, 2048);
	if (pick < 70)
		return pt_range(r, 2049, 32 * KiB);
	if (pick < 97)
		return pt_range(r, 32 * KiB + 1, 4 * MiB);
	return pt_range(r, 4 * MiB + 1, 12 * MiB);
}

static unsigned random_order(struct test_rng *r)
{
	unsigned pick = (unsigned)rng_below(r, 100);
	if (pick < 55)
		return (unsigned)rng_below(r, 4);
	if (pick < 90)
		return 4 + (unsigned)rng_below(r, 4);
	return 8 + (unsigned)rng_below(r, 3);
}

static const char *step(struct state *s)
{
	struct test_rng *r = &s->rng;
	unsigned op = (unsigned)rng_below(r, 1000);
	za_status st = ZA_OK;
	bool room = s->n < MAX_LIVE && s->bytes < LIVE_BYTES_MAX;

	if (op < 200 && room) {
		unsigned order = random_order(r);
		void *p = za_alloc_pages(order, random_flags(r), &st);
		if (p)
			add_live(s, p, ZA_PAGE_SIZE << order, order, K_PAGES);
		else
			note_failure(s, st, "za_alloc_pages");
		return "za_alloc_pages";
	}
	if (op < 280 && room) {
		size_t npages = pt_range(r, 1, ZA_MAX_BLOCK_PAGES);
		if (rng_below(r, 2))
			npages = pt_range(r, 1, 40);
		void *p = za_alloc_pages_exact(npages, random_flags(r), &st);
		if (p)
			add_live(s, p, npages * ZA_PAGE_SIZE, (unsigned)npages, K_EXACT);
		else
			note_failure(s, st, "za_alloc_pages_exact");
		return "za_alloc_pages_exact";
	}
	if (op < 480 && room) {
		size_t size = random_malloc_size(r);
		bool zero = rng_below(r, 4) == 0;
		za_flags fl = rng_below(r, 3) == 0 ? random_flags(r) : ZA_F_NONE;
		void *p;
		size_t align = 0;
		if (fl != ZA_F_NONE) {
			align = rng_below(r, 4) ? 0 : (size_t)16 << rng_below(r, 10);
			p = za_alloc(size, align, fl, &st);
		} else {
			p = zero ? za_calloc(1, size) : za_malloc(size);
			st = za_last_status();
		}
		if (p) {
			if (fl != ZA_F_NONE ? (fl & ZA_F_ZERO) != 0 : zero)
				CHECK_MSG(pt_all_zero(p, size < 8192 ? size : 8192),
					  "zeroed allocation of %zu is not zero", size);
			/* `order` keeps the alignment (0: malloc's) for the sized free. */
			add_live(s, p, size, (unsigned)align, K_MALLOC);
		} else {
			note_failure(s, st, "za_malloc");
		}
		return "za_malloc";
	}
	if (op < 560 && s->n) {
		size_t i = (size_t)rng_below(r, s->n);
		struct live *l = &s->live[i];
		if (l->kind != K_MALLOC)
			return "nothing";
		size_t size = rng_below(r, 2) ? random_malloc_size(r)
					     : (l->size + pt_range(r, 1, 64 * KiB));
		CHECK(stamp_ok(l->p, l->size, l->tag));
		za_tls_status_clear();
		void *q = za_realloc(l->p, size);
		if (!q) {
			note_failure(s, za_last_status(), "za_realloc");
			return "za_realloc (failed)";
		}
		size_t keep = l->size < size ? l->size : size;
		/* The kept prefix survived the move or the resize. */
		CHECK_MSG(stamp_prefix_ok(q, l->size, keep, l->tag), "realloc(%zu -> %zu) lost data",
			  l->size, size);
		s->bytes += size - l->size;
		l->p = q;
		l->size = size;
		l->order = 0;   /* a realloc'ed block is malloc's, whatever it was */
		stamp(q, size, l->tag);
		return "za_realloc";
	}
	if (op < (s->pressure ? 700u : 900u) && s->n) {
		drop_live(s, (size_t)rng_below(r, s->n));
		return "free";
	}
	if (op < 920) {
		za_drain_caches();
		return "za_drain_caches";
	}
	if (op < 950) {
		za_policy_direct_reclaim(pt_range(r, 1, 4096));
		return "direct reclaim";
	}
	if (op < 975) {
		za_reclaim_pass(rng_below(r, 3), pt_range(r, 1, 100000), pt_range(r, 1, 600));
		za_reclaim_zones();
		return "decay pass";
	}
	if (op < 985) {
		za_reclaim();
		return "za_reclaim";
	}
	if (op < 990) {
		za_malloc_trim(0);
		return "za_malloc_trim";
	}
	if (s->pressure)
		return "nothing";
	/* Drop a lot at once, so zones empty and get unmapped. */
	size_t drop = s->n / 2;
	while (drop-- && s->n)
		drop_live(s, (size_t)rng_below(r, s->n));
	return "mass free";
}

static void run_steps(struct state *s, unsigned steps, unsigned check_every)
{
	for (unsigned i = 0; i < steps; i++) {
		const char *what = step(s);
		if (s->exact)
			check_identity(s, what);
		size_t committed = pt_stats().committed_bytes;
		if (committed > s->peak)
			s->peak = committed;
		if (i % check_every == 0 || i + 1 == steps) {
			struct za_check_result cr;
			int rc = za_buddy_check(&cr);
			CHECK_MSG(rc == 0, "step %u (%s): zone %d pfn %lu order %d: %s", i, what,
				  cr.zone, (unsigned long)cr.pfn, cr.order, cr.what);
			if (rc)
				break;
		}
		if (za_test_failures > 20)
			break;
	}
}

static void drop_all(struct state *s)
{
	while (s->n)
		drop_live(s, s->n - 1);
}

static struct state main_state;

/* One phase of `steps` steps under `limit` (0: none), from an empty,
 * trimmed heap (lowering a limit releases nothing by itself). */
static void phase(struct state *s, const char *name, size_t limit, bool pressure,
		  unsigned steps)
{
	drop_all(s);
	za_reclaim();
	check_identity(s, "trim");
	s->limit = limit;
	s->pressure = pressure;
	s->peak = 0;
	s->failures = 0;
	memset(s->failures_by, 0, sizeof s->failures_by);
	za_set_limit(limit);
	check_identity(s, "set limit");
	struct za_stats st0 = pt_stats();
	run_steps(s, steps, 20);
	struct za_stats st = pt_stats();
	printf("    %-14s peak %zu KiB committed, %zu zones now, %u failures (%u limit, "
	       "%u fragmented), %llu pages reclaimed (%llu direct)\n", name, s->peak >> 10,
	       st.zones, s->failures, s->failures_by[ZA_ENOMEM_LIMIT],
	       s->failures_by[ZA_ENOMEM_FRAGMENTED],
	       (unsigned long long)(st.reclaimed_pages - st0.reclaimed_pages),
	       (unsigned long long)(st.direct_reclaim_pages - st0.direct_reclaim_pages));
	if (limit)
		CHECK_MSG(s->peak <= limit, "%s: peak %zu over the limit", name, s->peak);
	if (limit && pressure)
		CHECK_MSG(s->failures_by[ZA_ENOMEM_LIMIT] > 0, "%s: the limit was never reached",
			  name);
}

/* Unlimited, then under limits (committed never over them), then
 * everything freed and reclaimed. */
static void case_single(void)
{
	struct state *s = &main_state;
	rng_seed(&s->rng, 20240604);
	s->exact = true;
	za_policy_set_decay_ms(5);

	phase(s, "unlimited", 0, false, 5000);
	/* 96 MiB: zones may span two, so the heap can fragment. */
	phase(s, "limit 96 MiB", 96 * MiB, true, 5000);
	phase(s, "limit 24 MiB", 24 * MiB, true, 4000);
	phase(s, "unlimited", 0, true, 2000);

	drop_all(s);
	za_set_limit(0);
	za_reclaim();
	s->limit = 0;
	check_identity(s, "final trim");
	struct za_stats st = pt_stats();
	CHECK_MSG(st.pages_released + st.pages_cached >= st.pages_total - 64,
		  "after the final trim %zu of %zu pages still resident",
		  st.pages_total - st.pages_released, st.pages_total);
	CHECK(st.zones <= 1);
	CHECK_HEAP();
}

/* Threads doing the same concurrently (identity checked once they are
 * joined; the checker runs while they work). */
#define THREADS 3
static struct state thread_state[THREADS];

static void *thread_main(void *arg)
{
	struct state *s = arg;
	run_steps(s, 3000, 100);
	drop_all(s);
	return NULL;
}

static void case_threads(void)
{
	za_policy_set_decay_ms(5);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		rng_seed(&thread_state[i].rng, 777 + (uint64_t)i);
		thread_state[i].exact = false;
		CHECK(pthread_create(&t[i], NULL, thread_main, &thread_state[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	check_identity(&thread_state[0], "threads joined");
	CHECK_HEAP();
	za_reclaim();
	check_identity(&thread_state[0], "trim after threads");
	struct za_stats st = pt_stats();
	CHECK(st.pages_free + st.pages_cached == st.pages_total);
	CHECK_HEAP();
}

int main(void)
{
	run_case("single", case_single, 60);
	run_case("threads", case_threads, 60);
	return test_done("test_policy_accounting");
}
