/*
 * The heap limit and the watermarks derived from it (kernel: zone
 * watermarks from min_free_kbytes). Without a limit every check here is
 * one predictable branch.
 */
#include "policy/policy.h"

#include "buddy/buddy.h"

static _Atomic size_t wm_limit, wm_min, wm_low, wm_high;

void za_policy_set_limit(size_t bytes)
{
	size_t limit = bytes >> ZA_PAGE_SHIFT;
	/* The reserve is 1/32 of the limit (at least 64 pages); low and high
	 * sit a quarter and a half of it above. */
	size_t min = limit / 32 > 64 ? limit / 32 : 64;
	if (min > limit / 2)
		min = limit / 2;
	atomic_store(&wm_min, min);
	atomic_store(&wm_low, min + min / 4);
	atomic_store(&wm_high, min + min / 2);
	atomic_store(&wm_limit, limit);
}

void za_watermarks_get(struct za_watermarks *wm)
{
	wm->limit = atomic_load(&wm_limit);
	wm->min = atomic_load(&wm_min);
	wm->low = atomic_load(&wm_low);
	wm->high = atomic_load(&wm_high);
}

size_t za_policy_budget(const struct za_policy *policy)
{
	size_t limit = atomic_load_explicit(&wm_limit, memory_order_relaxed);
	if (likely(!limit))
		return SIZE_MAX;
	size_t allowed = limit - (policy->may_use_reserve ? 0
				  : atomic_load_explicit(&wm_min, memory_order_relaxed));
	int64_t committed = atomic_load_explicit(&za_committed_pages, memory_order_relaxed);
	return committed >= (int64_t)allowed ? 0 : allowed - (size_t)committed;
}

size_t za_policy_shortfall(const struct za_policy *policy, size_t need)
{
	size_t limit = atomic_load_explicit(&wm_limit, memory_order_relaxed);
	if (likely(!limit))
		return 0;
	size_t allowed = limit - (policy->may_use_reserve ? 0
				  : atomic_load_explicit(&wm_min, memory_order_relaxed));
	int64_t over = atomic_load_explicit(&za_committed_pages, memory_order_relaxed) +
		       (int64_t)need - (int64_t)allowed;
	return over > 0 ? (size_t)over : 0;
}

bool za_policy_may_grow(void)
{
	size_t limit = atomic_load_explicit(&wm_limit, memory_order_relaxed);
	if (likely(!limit))
		return true;
	size_t span_max = (limit + ZA_ZONE_PAGES - 1) / ZA_ZONE_PAGES * ZA_ZONE_PAGES;
	return (size_t)atomic_load(&za_zone_span_pages) + ZA_ZONE_PAGES <= span_max;
}

za_status za_policy_charge(size_t pages, const struct za_policy *policy)
{
	if (atomic_load_explicit(&wm_limit, memory_order_relaxed)) {
		za_policy_request_enter();   /* (callbacks' allocations join it) */
		size_t budget = za_policy_budget(policy);
		if (budget < pages && policy->may_reclaim) {
			za_policy_direct_reclaim(za_policy_shortfall(policy, pages));
			budget = za_policy_budget(policy);
		}
		if (budget < pages && za_policy_quarantine_give(policy)) {
			za_policy_direct_reclaim(za_policy_shortfall(policy, pages));
			budget = za_policy_budget(policy);
		}
		/* Then the program's caches and its OOM handler (shrink.c):
		 * what they free is given back before the budget is read. */
		if (budget < pages && policy->may_reclaim &&
		    za_policy_shrink(za_policy_shortfall(policy, pages) << ZA_PAGE_SHIFT)) {
			za_policy_direct_reclaim(za_policy_shortfall(policy, pages));
			budget = za_policy_budget(policy);
		}
		for (unsigned tries = 0; budget < pages && policy->may_reclaim &&
		     tries < ZA_OOM_TRIES && za_policy_oom(pages << ZA_PAGE_SHIFT, ZA_ENOMEM_LIMIT, false);
		     tries++) {
			za_policy_direct_reclaim(za_policy_shortfall(policy, pages));
			budget = za_policy_budget(policy);
		}
		za_policy_request_exit();
		if (budget < pages)
			return ZA_ENOMEM_LIMIT;
	}
	za_commit_add((int64_t)pages);
	return ZA_OK;
}

void za_policy_uncharge(size_t pages)
{
	atomic_fetch_sub(&za_committed_pages, (int64_t)pages);
}
