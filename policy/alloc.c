/*
 * The allocation slow path (kernel: __alloc_pages_slowpath) and the public
 * page-level API that goes through it.
 */
#include "policy/policy.h"

#include <string.h>
#include <time.h>

#include "buddy/buddy.h"

__thread za_status za_tls_status __attribute__((tls_model("initial-exec")));

static _Atomic uint64_t stat_rounds;
static _Atomic uint64_t stat_outcomes[ZA_STATUS_COUNT];

za_status za_policy_outcome(za_status status, const struct za_policy *policy)
{
	(void)policy;
	if (status != ZA_OK) {
		atomic_fetch_add_explicit(&stat_outcomes[status], 1, memory_order_relaxed);
		za_tls_status = status;
	}
	return status;
}

void za_policy_stats_get(struct za_policy_stats *out)
{
	out->slowpath_rounds = atomic_load_explicit(&stat_rounds, memory_order_relaxed);
	for (int i = 0; i < ZA_STATUS_COUNT; i++)
		out->enomem[i] = atomic_load_explicit(&stat_outcomes[i], memory_order_relaxed);
}

static void backoff(unsigned round)
{
	/* 1 ms growing to 64 ms: long enough for others to free memory. */
	unsigned ms = round < 6 ? 1u << round : 64;
	struct timespec ts = { 0, (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

static ZA_NOINLINE void *slowpath(unsigned order, const struct za_policy *policy,
				  za_status *status)
{
	za_status last = ZA_ENOMEM_OS;

	for (unsigned round = 0;; round++) {
		bool progress = false;
		atomic_fetch_add_explicit(&stat_rounds, 1, memory_order_relaxed);

		/* Blocks parked in per-thread caches may be the buddies that a
		 * larger block needs (the user-space analogue of compaction). */
		if (policy->may_drain) {
			size_t before = za_pcp_pages_cached();
			za_pcp_drain_all();
			void *p = za_buddy_alloc(order);
			if (p)
				return p;
			progress |= before > 0;
		}

		last = za_zone_grow(order);
		if (last == ZA_OK) {
			void *p = za_buddy_alloc(order);
			if (p)
				return p;
			progress = true;
		}

		if (policy->nofail) {
			backoff(round);
			void *p = za_buddy_alloc(order);
			if (p)
				return p;
			continue;
		}
		if (!progress || round >= policy->max_retries)
			break;
	}

	/* Enough free pages but no block of the order: fragmentation, not a
	 * shortage. */
	if (za_buddy_free_pages_total() >= ((size_t)1 << order))
		last = ZA_ENOMEM_FRAGMENTED;
	*status = za_policy_outcome(last, policy);
	return NULL;
}

void *za_policy_alloc_block(unsigned order, const struct za_policy *policy, za_status *status)
{
	void *p = za_buddy_alloc(order);
	if (unlikely(!p))
		p = slowpath(order, policy, status);
	if (p)
		*status = ZA_OK;
	return p;
}

/* ---- the public page API ---- */

static void *page_alloc_fail(za_status *status, za_status st)
{
	/* Counted whether or not the caller asked for the status. */
	st = za_policy_outcome(st, NULL);
	if (status)
		*status = st;
	return NULL;
}

ZA_EXPORT void *za_alloc_pages(unsigned int order, za_flags flags, za_status *status)
{
	struct za_policy policy;
	za_status st = za_policy_from_flags(flags, &policy);
	if (st != ZA_OK)
		return page_alloc_fail(status, st);
	if (order >= ZA_MAX_ORDER)
		return page_alloc_fail(status, ZA_ENOMEM_TOO_LARGE);

	void *p = za_policy_alloc_block(order, &policy, &st);
	if (p && policy.zero)
		memset(p, 0, ZA_PAGE_SIZE << order);
	if (status)
		*status = st;
	return p;
}

ZA_EXPORT void za_free_pages(void *block, unsigned int order)
{
	if (!block)
		return;
	za_buddy_free(block, order);
}

ZA_EXPORT void *za_alloc_pages_exact(size_t npages, za_flags flags, za_status *status)
{
	struct za_policy policy;
	za_status st = za_policy_from_flags(flags, &policy);
	if (st != ZA_OK)
		return page_alloc_fail(status, st);
	if (npages == 0)
		return page_alloc_fail(status, ZA_EINVAL);
	if (npages > ZA_MAX_BLOCK_PAGES)
		return page_alloc_fail(status, ZA_ENOMEM_TOO_LARGE);

	unsigned order = npages <= 1 ? 0 : 32u - (unsigned)__builtin_clz((uint32_t)npages - 1);
	void *p = za_policy_alloc_block(order, &policy, &st);
	if (p) {
		za_buddy_make_run(p, order, (uint32_t)npages);
		if (policy.zero)
			memset(p, 0, npages * ZA_PAGE_SIZE);
	}
	if (status)
		*status = st;
	return p;
}

ZA_EXPORT void za_free_pages_exact(void *run, size_t npages)
{
	if (!run)
		return;
	if (npages == 0 || npages > ZA_MAX_BLOCK_PAGES)
		za_fatal("za_free_pages_exact(%p): %zu pages is not a run size", run, npages);
	za_buddy_free_run(run, (uint32_t)npages);
}

ZA_EXPORT za_status za_last_status(void)
{
	return za_tls_status;
}

ZA_EXPORT void za_drain_caches(void)
{
	za_pcp_drain_all();
}
