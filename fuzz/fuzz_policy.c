/*
 * fuzz_policy: random flags, limits, sizes and orders through za_alloc and
 * za_alloc_pages. Every outcome must be one of the documented statuses and
 * agree with the result (NULL iff not ZA_OK; ZA_EINVAL exactly for invalid
 * flag sets); the heap stays consistent; and after everything is freed and
 * reclaimed, committed memory is back where it started: nothing leaks.
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

static size_t committed(void)
{
	struct za_stats st;
	za_stats_get(&st);
	return st.committed_bytes;
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
		switch (op % 5) {
		case 0: { /* pages */
			unsigned order = fuzz_u8(&in) % (ZA_MAX_ORDER + 2);
			void *p = za_alloc_pages(order, flags, &st);
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
		}
		FUZZ_CHECK_HEAP();
	}
	while (nlive) {
		nlive--;
		if (live[nlive].order >= 0)
			za_free_pages(live[nlive].p, (unsigned)live[nlive].order);
		else
			za_free(live[nlive].p);
	}
	za_set_limit(0);
	za_reclaim();
	FUZZ_CHECK_HEAP();
	size_t now = committed();
	FUZZ_ASSERT(now == committed_at_start, "committed %zu bytes, started at %zu: a leak", now,
		    committed_at_start);
}
