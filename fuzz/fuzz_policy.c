/*
 * fuzz_policy: random flags, limits, sizes and orders through za_alloc and
 * za_alloc_pages, with the program's side of the policy in play: a cache
 * offered through a shrinker, an OOM handler and a compaction hook that free,
 * refuse or lie (say "try again" with nothing freed), registered and removed
 * at random. Every outcome must be one of the documented statuses and agree
 * with the result (NULL iff not ZA_OK; ZA_EINVAL exactly for invalid flag
 * sets); a shrinker is never entered again from inside itself nor called once
 * removed; the OOM handler and the compaction hook are asked at most 16
 * times for one failing request (a handler that lies cannot loop the heap);
 * the heap stays consistent; and after everything is freed and reclaimed,
 * committed memory is back where it started: nothing leaks.
 */
#include <string.h>

#include "fuzz/harness.h"

const char *const fuzz_name = "fuzz_policy";

#define MAX_LIVE 64

struct live {
	void *p;
	int order;   /* -1: from za_alloc */
};

static struct live live[MAX_LIVE];
static int nlive;
static size_t committed_at_start;

/* The program's cache, which the shrinker offers. */
#define MAX_CACHED 32
static void *cached[MAX_CACHED];
static size_t cached_size[MAX_CACHED];
static int ncached;
static int shrinker_id = -1;
static int in_scan;
static unsigned long scans_while_off;

/* Single pages held with every other one freed: a fragmented zone. */
#define MAX_FRAG 16448
static void *frag[MAX_FRAG];
static int nfrag;

/* What the OOM handler and the compaction hook do: 0 absent, 1 free one
 * live block and say "again", 2 say "fail", 3 say "again" freeing nothing. */
static int oom_mode, compact_mode;
static unsigned oom_calls, compact_calls;   /* within one request */

static size_t committed(void)
{
	struct za_stats st;
	za_stats_get(&st);
	return st.committed_bytes;
}

static size_t cache_count(void *arg)
{
	FUZZ_ASSERT(arg == cached, "shrinker called with arg %p", arg);
	size_t n = 0;
	for (int i = 0; i < ncached; i++)
		n += cached_size[i];
	return n;
}

static size_t cache_scan(void *arg, size_t bytes)
{
	FUZZ_ASSERT(arg == cached, "shrinker called with arg %p", arg);
	FUZZ_ASSERT(!in_scan, "shrinker entered again from inside itself");
	if (shrinker_id < 0)
		scans_while_off++;
	in_scan = 1;
	/* An allocation inside a scan must not call the shrinkers again. */
	void *tmp = za_malloc(64);
	za_free(tmp);
	size_t freed = 0;
	while (ncached && freed < bytes) {
		ncached--;
		freed += cached_size[ncached];
		za_free(cached[ncached]);
	}
	in_scan = 0;
	return freed;
}

static bool free_one_live(void)
{
	if (!nlive)
		return false;
	nlive--;
	if (live[nlive].order >= 0)
		za_free_pages(live[nlive].p, (unsigned)live[nlive].order);
	else
		za_free(live[nlive].p);
	return true;
}

static bool oom_handler(void *arg, size_t size, za_status status)
{
	(void)arg;
	(void)size;
	FUZZ_ASSERT(status != ZA_OK && status != ZA_EINVAL && (unsigned)status < ZA_STATUS_COUNT,
		    "OOM handler called with %s", za_status_str(status));
	oom_calls++;
	return oom_mode == 1 ? free_one_live() : oom_mode == 3;
}

/* "Moving" the fragmenting pages: freed, as if their objects moved out. */
static bool free_frag(void)
{
	if (!nfrag)
		return false;
	while (nfrag)
		za_free_pages(frag[--nfrag], 0);
	return true;
}

static bool compaction_hook(void *arg, size_t size)
{
	(void)arg;
	/* The hook is asked only for a request that failed as fragmented. One
	 * page never is: with budget for it, any free page will do. */
	if (size <= ZA_PAGE_SIZE) {
		struct za_stats s;
		za_stats_get(&s);
		FUZZ_ASSERT(0, "one page refused as fragmented (%zu pages free, %zu released)",
			    s.pages_free, s.pages_released);
	}
	compact_calls++;
	return compact_mode == 1 ? free_frag() || free_one_live() : compact_mode == 3;
}

/* A request is over: neither callback was asked more often than allowed. */
static void request_done(void)
{
	FUZZ_ASSERT(oom_calls <= 16, "OOM handler asked %u times for one request", oom_calls);
	FUZZ_ASSERT(compact_calls <= 16, "compaction hook asked %u times for one request",
		    compact_calls);
	FUZZ_ASSERT(scans_while_off == 0, "a removed shrinker was called %lu times",
		    scans_while_off);
	oom_calls = compact_calls = 0;
}

void fuzz_init(void)
{
	/* Bring the heap to its resting state once: a zone and the slabs and
	 * caches that any first use makes. */
	void *p = za_malloc(1);
	za_free(p);
	za_reclaim();
	committed_at_start = committed();
}

static int flags_valid(za_flags f)
{
	if (f & ~ZA_F_ALL)
		return 0;
	if ((f & ZA_F_NOFAIL) && (f & (ZA_F_ATOMIC | ZA_F_NORETRY)))
		return 0;
	return 1;
}

static void check_outcome(void *p, za_status st, za_flags flags)
{
	FUZZ_ASSERT((unsigned)st < ZA_STATUS_COUNT, "undocumented status %d", (int)st);
	FUZZ_ASSERT((p != NULL) == (st == ZA_OK), "result %p with status %s", p, za_status_str(st));
	if (!flags_valid(flags))
		FUZZ_ASSERT(st == ZA_EINVAL, "invalid flags %#x gave %s", flags, za_status_str(st));
	else
		FUZZ_ASSERT(st != ZA_EINVAL || p == NULL, "valid flags %#x rejected", flags);
}

void fuzz_one(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, data + size };
	int ops = 0;

	while (fuzz_more(&in) && ops++ < 200) {
		uint8_t op = fuzz_u8(&in);
		za_flags flags = fuzz_u8(&in);
		/* NOFAIL could wait forever on a heap nobody frees; keep it to
		 * requests that fit an unlimited heap. */
		if ((flags & ZA_F_NOFAIL) && flags_valid(flags))
			flags &= ~ZA_F_NOFAIL;
		if (flags & 0x80)
			flags |= 0x100;   /* an unknown bit */
		za_status st = ZA_OK;
		switch (op % 8) {
		case 0: { /* pages */
			unsigned order = fuzz_u8(&in) % (ZA_MAX_ORDER + 2);
			void *p = za_alloc_pages(order, flags, &st);
			request_done();
			check_outcome(p, st, flags);
			if (order >= ZA_MAX_ORDER && flags_valid(flags))
				FUZZ_ASSERT(st == ZA_ENOMEM_TOO_LARGE, "order %u gave %s", order,
					    za_status_str(st));
			if (p && nlive < MAX_LIVE)
				live[nlive++] = (struct live){ p, (int)order };
			else if (p)
				za_free_pages(p, order);
			break;
		}
		case 1: { /* any size and alignment */
			size_t n = fuzz_u8(&in) & 1 ? fuzz_u16(&in) : (size_t)fuzz_u32(&in) % (64u << 20);
			size_t align = (size_t)1 << (fuzz_u8(&in) % 24);
			void *p = za_alloc(n, align, flags, &st);
			request_done();
			check_outcome(p, st, flags);
			if (p) {
				FUZZ_ASSERT(((uintptr_t)p & (align - 1)) == 0, "not aligned to %zu", align);
				if (flags & ZA_F_ZERO)
					FUZZ_ASSERT(n == 0 || (((uint8_t *)p)[0] == 0 &&
							       ((uint8_t *)p)[n - 1] == 0),
						    "ZA_F_ZERO memory not zero");
				if (n)
					memset(p, 0xa5, n < 8192 ? n : 8192);
				if (nlive < MAX_LIVE)
					live[nlive++] = (struct live){ p, -1 };
				else
					za_free(p);
			}
			break;
		}
		case 2: { /* free */
			if (!nlive)
				break;
			int i = fuzz_u8(&in) % nlive;
			if (live[i].order >= 0)
				za_free_pages(live[i].p, (unsigned)live[i].order);
			else
				za_free(live[i].p);
			live[i] = live[--nlive];
			break;
		}
		case 3: { /* limit: none, or 8 MiB .. 2 GiB */
			uint8_t b = fuzz_u8(&in);
			za_set_limit(b < 64 ? 0 : ((size_t)8 << 20) << (b % 9));
			break;
		}
		case 4:
			if (fuzz_u8(&in) & 1)
				za_reclaim();
			else
				za_drain_caches();
			break;
		case 5: { /* the cache: fill it, or register or remove its shrinker */
			uint8_t b = fuzz_u8(&in);
			if (b < 160) {
				size_t n = (size_t)1024 << (b % 11);   /* 1 KiB .. 1 MiB */
				void *p = za_malloc(n);
				request_done();
				if (p && ncached < MAX_CACHED) {
					memset(p, 0x5a, n);
					cached[ncached] = p;
					cached_size[ncached++] = n;
				} else {
					za_free(p);
				}
			} else if (shrinker_id < 0) {
				shrinker_id = za_register_shrinker(cache_count, cache_scan, cached);
				FUZZ_ASSERT(shrinker_id >= 0, "za_register_shrinker failed");
			} else {
				FUZZ_ASSERT(za_unregister_shrinker(shrinker_id) == 0, "unregister %d",
					    shrinker_id);
				FUZZ_ASSERT(za_unregister_shrinker(shrinker_id) == -1,
					    "shrinker %d removed twice", shrinker_id);
				shrinker_id = -1;
			}
			break;
		}
		case 6: { /* the OOM handler and the compaction hook */
			uint8_t b = fuzz_u8(&in);
			oom_mode = b & 3;
			compact_mode = (b >> 2) & 3;
			za_set_oom_handler(oom_mode ? oom_handler : NULL, NULL);
			za_set_compaction_hook(compact_mode ? compaction_hook : NULL, NULL);
			break;
		}
		case 7: { /* fragment: single pages up to the limit, every other freed */
			if (nfrag)
				break;
			while (nfrag < MAX_FRAG) {
				void *p = za_alloc_pages(0, ZA_F_HIGH | ZA_F_NORETRY, &st);
				request_done();
				if (!p)
					break;
				frag[nfrag++] = p;
			}
			/* Free the even pages now: the odd ones pin every pair. */
			int j = 0;
			for (int i = 0; i < nfrag; i++) {
				if ((uintptr_t)frag[i] >> ZA_PAGE_SHIFT & 1)
					frag[j++] = frag[i];
				else
					za_free_pages(frag[i], 0);
			}
			nfrag = j;
			za_drain_caches();
			break;
		}
		}
		FUZZ_CHECK_SOME(ops);
	}
	while (free_one_live())
		;
	free_frag();
	if (shrinker_id >= 0)
		za_unregister_shrinker(shrinker_id);
	shrinker_id = -1;
	while (ncached)
		za_free(cached[--ncached]);
	za_set_oom_handler(NULL, NULL);
	za_set_compaction_hook(NULL, NULL);
	oom_mode = compact_mode = 0;
	za_set_limit(0);
	za_reclaim();
	FUZZ_CHECK_END();
	size_t now = committed();
	FUZZ_ASSERT(now == committed_at_start, "committed %zu bytes, started at %zu: a leak", now,
		    committed_at_start);
}
