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

uint64_t za_policy_decay_passes(void);
uint64_t za_policy_direct_pages(void);
uint64_t za_background_wakeups(void);

void za_policy_stats_get(struct za_policy_stats *out)
{
	out->slowpath_rounds = atomic_load_explicit(&stat_rounds, memory_order_relaxed);
	out->decay_passes = za_policy_decay_passes();
	out->direct_reclaim_pages = za_policy_direct_pages();
	out->background_wakeups = za_background_wakeups();
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

static inline void *try_alloc(unsigned order, unsigned kind, const struct za_policy *policy)
{
	return za_buddy_alloc(order, kind, za_policy_budget(policy));
}

/* After the slow path has given up on a new zone: what was just freed
 * may lie in another kind's pageblocks, which the mixing fallback takes
 * (a shrinker's or the quarantine's pages once went unused so, and one
 * page was refused as "fragmented" with a free page and budget for it). */
static inline void *try_alloc_mixed(unsigned order, unsigned kind, const struct za_policy *policy)
{
	void *p = try_alloc(order, kind, policy);
	return p ? p : za_buddy_alloc_fallback(order, kind, za_policy_budget(policy));
}

/* The pageblocks an allocation of this policy's goes to (buddy.h): what may
 * use the reserve keeps to pageblocks of its own. */
static inline unsigned run_kind(const struct za_policy *policy)
{
	return policy->may_use_reserve ? ZA_KIND_RESERVE : ZA_KIND_RUN;
}

/* Why an allocation of `need` pages fails. */
static za_status failure(const struct za_policy *policy, size_t need, bool os_refused)
{
	if (za_policy_budget(policy) < need)
		return ZA_ENOMEM_LIMIT;         /* committing more would cross the mark */
	if (za_buddy_free_pages_total() >= need)
		return ZA_ENOMEM_FRAGMENTED;    /* pages enough, no block, no room */
	if (os_refused)
		return ZA_ENOMEM_OS;
	return ZA_ENOMEM_LIMIT;                 /* the limit caps the zones' span */
}

/*
 * The slow path, in the kernel's order: wake the background reclaimer,
 * retry; reclaim directly; drain per-thread caches and empty slabs so
 * buddies can merge; grow by a zone if the limit allows; and go round again
 * only while the last round made progress, at most max_retries times
 * (NOFAIL: until it succeeds). Each round also asks the program's
 * shrinkers (shrink.c); after the last, its compaction hook when the
 * failure is fragmentation, then its OOM handler, each of which may start
 * the rounds again, a bounded number of times. Then the typed outcome.
 */
static ZA_NOINLINE void *slowpath(unsigned order, unsigned kind, const struct za_policy *policy,
				  za_status *status)
{
	const size_t need = (size_t)1 << order;
	bool os_refused = false;
	void *p;
	unsigned oom_tries = 0, compact_tries = 0;

again:
	for (unsigned round = 0;; round++) {
		bool progress = false;
		atomic_fetch_add_explicit(&stat_rounds, 1, memory_order_relaxed);

		za_background_wake();
		if ((p = try_alloc(order, kind, policy)))
			return p;

		size_t short_by = za_policy_shortfall(policy, need);
		if (policy->may_reclaim && short_by) {
			/* A little more than the shortfall, so the next few
			 * allocations don't come straight back here. */
			if (za_policy_direct_reclaim(short_by + 64) > 0) {
				progress = true;
				if ((p = try_alloc(order, kind, policy)))
					return p;
			}
		}

		if (policy->may_drain && za_policy_drain() > 0) {
			progress = true;
			if ((p = try_alloc(order, kind, policy)))
				return p;
		}

		if (za_policy_budget(policy) >= need && za_policy_may_grow()) {
			za_status st = za_zone_grow(order);
			if (st == ZA_OK) {
				progress = true;
				if ((p = try_alloc(order, kind, policy)))
					return p;
			} else {
				os_refused = true;
			}
		}
		/* No zone to add (or none that helped): any block of another
		 * kind's pageblocks, mixing them as the kernel would at once. */
		if ((p = za_buddy_alloc_fallback(order, kind, za_policy_budget(policy))))
			return p;

		if (za_policy_quarantine_give(policy)) {
			progress = true;
			if ((p = try_alloc_mixed(order, kind, policy)))
				return p;
		}

		/* The program's caches, for what the heap's own pages did not
		 * cover (kernel: shrink_slab in direct reclaim). */
		if (policy->may_reclaim) {
			size_t short_by = za_policy_shortfall(policy, need);
			if (za_policy_shrink((short_by ? short_by : need) << ZA_PAGE_SHIFT) > 0) {
				progress = true;
				if ((p = try_alloc_mixed(order, kind, policy)))
					return p;
			}
		}

		if (policy->nofail) {
			if (policy->may_reclaim)
				(void)za_policy_oom(need << ZA_PAGE_SHIFT,
						    failure(policy, need, os_refused), true);
			if ((p = try_alloc_mixed(order, kind, policy)))
				return p;
			if (policy->may_block)
				backoff(round);
			continue;
		}
		if (!progress || round >= policy->max_retries)
			break;
	}

	za_status st = failure(policy, need, os_refused);
	/* Pages enough but no block: the program may move objects (kernel:
	 * compaction, bounded as its retries are). */
	if (st == ZA_ENOMEM_FRAGMENTED && policy->may_reclaim && compact_tries < ZA_COMPACT_TRIES &&
	    za_policy_compact(need << ZA_PAGE_SHIFT)) {
		compact_tries++;
		if ((p = try_alloc_mixed(order, kind, policy)))
			return p;
		goto again;
	}
	/* Last, the program's OOM handler: on its word, all of it again, a
	 * bounded number of times. */
	if (policy->may_reclaim && oom_tries < ZA_OOM_TRIES &&
	    za_policy_oom(need << ZA_PAGE_SHIFT, st, false)) {
		oom_tries++;
		if ((p = try_alloc_mixed(order, kind, policy)))
			return p;
		goto again;
	}
	*status = za_policy_outcome(st, policy);
	return NULL;
}

void *za_policy_alloc_block(unsigned order, unsigned kind, const struct za_policy *policy,
			    za_status *status)
{
	void *p = try_alloc(order, kind, policy);
	if (unlikely(!p)) {
		/* A request of its own unless a caller's is open: allocations
		 * the program's callbacks make inside it join it. */
		za_policy_request_enter();
		p = slowpath(order, kind, policy, status);
		za_policy_request_exit();
		if (!p)
			return NULL;
	}
	*status = ZA_OK;
	za_policy_decay_tick();
	return p;
}

void *za_policy_alloc_run_slow(uint32_t npages, unsigned align_order,
			       const struct za_policy *policy, za_status *status, bool *zero_ok)
{
	if (!policy)
		policy = za_policy_current();
	unsigned order = za_order_for_pages(npages);
	if (align_order == 0) {
		/* The newest cached run did not fit: any other of the size. */
		void *p = za_pcp_run_alloc_scan(npages);
		if (p) {
			*status = ZA_OK;
			*zero_ok = false;
			za_policy_decay_tick();
			return p;
		}
	}
	if (align_order > order)
		order = align_order;
	void *p = za_policy_alloc_block(order, run_kind(policy), policy, status);
	if (!p)
		return NULL;
	*zero_ok = za_buddy_block_fresh(p);
	za_buddy_make_run(p, order, npages);
	return p;
}

static const struct za_policy *const_default = &za_policy_default;
static __thread const struct za_policy *tls_policy __attribute__((tls_model("initial-exec")));

const struct za_policy *za_policy_current(void)
{
	const struct za_policy *p = tls_policy;
	return p ? p : const_default;
}

void za_policy_push(const struct za_policy *policy, const struct za_policy **saved)
{
	*saved = tls_policy;
	tls_policy = policy;
}

void za_policy_pop(const struct za_policy *saved)
{
	tls_policy = saved;
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

void *za_policy_alloc_pages(unsigned int order, za_flags flags, za_status *status)
{
	struct za_policy policy;
	za_status st = za_policy_from_flags(flags, &policy);
	if (st != ZA_OK)
		return page_alloc_fail(status, st);
	if (order >= ZA_MAX_ORDER)
		return page_alloc_fail(status, ZA_ENOMEM_TOO_LARGE);

	void *p = za_policy_alloc_block(order, run_kind(&policy), &policy, &st);
	if (p && policy.zero && !za_buddy_block_fresh(p))
		za_buddy_block_clear(p, ZA_PAGE_SIZE << order);
	if (status)
		*status = st;
	return p;
}

void za_policy_free_pages(void *block, unsigned int order)
{
	if (!block)
		return;
	za_buddy_free(block, order);
}

void *za_policy_alloc_pages_exact(size_t npages, za_flags flags, za_status *status)
{
	struct za_policy policy;
	za_status st = za_policy_from_flags(flags, &policy);
	if (st != ZA_OK)
		return page_alloc_fail(status, st);
	if (npages == 0)
		return page_alloc_fail(status, ZA_EINVAL);
	if (npages > ZA_MAX_BLOCK_PAGES)
		return page_alloc_fail(status, ZA_ENOMEM_TOO_LARGE);

	bool fresh;
	void *p = za_policy_alloc_run((uint32_t)npages, 0, &policy, &st, &fresh);
	if (p && policy.zero && !fresh)
		za_buddy_block_clear(p, npages * ZA_PAGE_SIZE);
	if (status)
		*status = st;
	return p;
}

void za_policy_free_pages_exact(void *run, size_t npages)
{
	if (!run)
		return;
	if (npages == 0 || npages > ZA_MAX_BLOCK_PAGES) {
		za_misuse("za_free_pages_exact(%p): %zu pages is not a run size", run, npages);
		return;
	}
	za_buddy_free_run(run, (uint32_t)npages);
}

void za_tls_status_clear(void)
{
	za_tls_status = ZA_OK;
}

ZA_EXPORT za_status za_last_status(void)
{
	return za_tls_status;
}

ZA_EXPORT void za_drain_caches(void)
{
	za_pcp_drain_all();
}
