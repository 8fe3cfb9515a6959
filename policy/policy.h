/*
 * Policy: caller intent (za_flags, public) becomes an explicit allocation
 * policy (struct za_policy, internal) in exactly one function,
 * za_policy_from_flags(). Nothing after that reads raw flags. Every buddy
 * allocation goes through za_policy_alloc_block().
 */
#ifndef ZA_POLICY_H
#define ZA_POLICY_H

#include <stdbool.h>

#include "buddy/pcp.h"
#include "zonealloc.h"

struct za_policy {
	bool may_reclaim;      /* may give memory back / take it from retained */
	bool may_drain;        /* may drain per-thread caches so buddies merge */
	bool may_use_reserve;  /* may go below the min watermark */
	bool may_block;        /* may sleep between rounds */
	bool nofail;           /* loops until it succeeds */
	bool zero;             /* memory must read as zero */
	bool warn;             /* count the failure as a warning */
	unsigned max_retries;  /* slow-path rounds after the first */
};

/* The policy of plain malloc: may reclaim and drain, bounded retries. */
extern const struct za_policy za_policy_default;

/* ZA_OK, or ZA_EINVAL for unknown bits or contradictions (ATOMIC|NOFAIL,
 * NORETRY|NOFAIL). */
za_status za_policy_from_flags(za_flags flags, struct za_policy *out);

/*
 * A 2^order block, by the kernel's order of attempts: the free lists, then
 * the slow path (drain caches, grow a zone, retry while progress is made).
 * `kind` says whose pageblocks it comes from (buddy.h: ZA_KIND_*). On
 * failure returns NULL and sets *status to the typed outcome.
 */
void *za_policy_alloc_block(unsigned order, unsigned kind, const struct za_policy *policy,
			    za_status *status);

/* Periodic decay from the allocation path: a countdown, and a look at the
 * clock every 32 allocations that reach the buddy core or its caches. */
extern __thread unsigned za_decay_countdown __attribute__((tls_model("initial-exec")));
void za_policy_decay_due(void);
static inline void za_policy_decay_tick(void)
{
	if (likely(za_decay_countdown--))
		return;
	za_policy_decay_due();
}

void *za_policy_alloc_run_slow(uint32_t npages, unsigned align_order,
			       const struct za_policy *policy, za_status *status, bool *zero_ok);

/*
 * An exact run of npages pages aligned to 2^align_order pages: a run of
 * that size this thread freed recently if there is one (no new memory), or
 * a block through za_policy_alloc_block trimmed to the run. *zero_ok says
 * whether the run is known to read as zero. A NULL policy is the thread's
 * current one (za_policy_current), looked up only when the cache misses.
 */
static inline void *za_policy_alloc_run(uint32_t npages, unsigned align_order,
					const struct za_policy *policy, za_status *status,
					bool *zero_ok)
{
	if (likely(align_order == 0)) {   /* cached runs are only page aligned for sure */
		void *p = za_pcp_run_alloc(npages);
		if (likely(p)) {
			*status = ZA_OK;
			*zero_ok = false;
			za_policy_decay_tick();   /* served from caches, the rest still ages */
			return p;
		}
	}
	return za_policy_alloc_run_slow(npages, align_order, policy, status, zero_ok);
}

/* Counts an outcome in the stats, remembers it for za_last_status(), and
 * returns it. */
za_status za_policy_outcome(za_status status, const struct za_policy *policy);

/* Forgets this thread's last failure (za_last_status() reads ZA_OK). */
void za_tls_status_clear(void);

/* The policy in force for this thread's next allocation: za_alloc() sets
 * one for the length of a call; otherwise plain malloc's. */
const struct za_policy *za_policy_current(void);
void za_policy_push(const struct za_policy *policy, const struct za_policy **saved);
void za_policy_pop(const struct za_policy *saved);

/* ---- limit and watermarks (policy/watermark.c) ----
 *
 * With a limit of L pages, committed memory (allocated + retained free,
 * za_committed_pages) stays at or below L - min for normal allocations and
 * at or below L for those that may use the reserve. Zones may span at most
 * L rounded up to whole zones, so a full heap can be fragmented, as a
 * machine's memory can. low and high drive the background reclaimer: it
 * wakes when headroom falls below low and works until it is back at high.
 */
struct za_watermarks {
	size_t limit, min, low, high;   /* pages; limit 0 = unlimited */
};
void za_watermarks_get(struct za_watermarks *wm);
void za_policy_set_limit(size_t bytes);
/* Pages this policy may still newly commit (SIZE_MAX without a limit). */
size_t za_policy_budget(const struct za_policy *policy);
/* How many pages committed memory must drop by before `need` more fit
 * under this policy's mark (0 without a limit). */
size_t za_policy_shortfall(const struct za_policy *policy, size_t need);
bool za_policy_may_grow(void);
/* Charges a mapping of `pages` outside the zones (huge allocations). */
za_status za_policy_charge(size_t pages, const struct za_policy *policy);
void za_policy_uncharge(size_t pages);

/* ---- reclaim (policy/reclaim.c) ---- */
void za_policy_set_decay_ms(uint64_t ms);
uint64_t za_policy_decay_ms(void);
/* Guard mode's quarantine (shim/guard.c): freed memory held back, which
 * an explicit trim (za_reclaim, malloc_trim) and an allocation under
 * pressure (the slow path, before it asks the program's caches or fails)
 * make it give up; returns the bytes it let go. Called with no allocator
 * lock held. */
extern size_t (*za_policy_quarantine_hook)(void) ZA_HIDDEN;
/* Under pressure (the slow path, a limit's charge), before the program's
 * caches are asked: the quarantine's memory back to the buddy core, when
 * the policy may drain. True if there was any. */
bool za_policy_quarantine_give(const struct za_policy *policy);
/* Releases everything that can be released now; returns bytes. */
size_t za_policy_reclaim_all(void);
/* Releases retained pages until `want` pages are released or nothing is
 * left; returns pages released. */
size_t za_policy_direct_reclaim(size_t want);
/* Upper layers register how to drain their caches (slab: empty slabs):
 * everything they hold for reuse when `all` (the slow path, trim), else
 * what has waited a decay time (the decay pass). Returns blocks given
 * back. */
typedef size_t (*za_drain_fn)(bool all);
void za_policy_register_drain(za_drain_fn fn);
size_t za_policy_drain(void);

/* ---- the background reclaimer (policy/kswapd.c) ---- */
void za_background_enable(bool on);
void za_background_wake(void);
void za_background_stop(void);
bool za_background_running(void);
bool za_background_enabled(void);   /* ZONEALLOC_BACKGROUND=1 */
void za_background_lock(void);
void za_background_unlock(void);
void za_background_reset_child(void);

struct za_policy_stats {
	uint64_t slowpath_rounds;
	uint64_t direct_reclaim_pages;
	uint64_t decay_passes;
	uint64_t background_wakeups;
	uint64_t enomem[ZA_STATUS_COUNT];
};
void za_policy_stats_get(struct za_policy_stats *out);

/* The public page calls' bodies (shim/api.c exports them, traced). */
void *za_policy_alloc_pages(unsigned int order, za_flags flags, za_status *status);
void za_policy_free_pages(void *block, unsigned int order);
void *za_policy_alloc_pages_exact(size_t npages, za_flags flags, za_status *status);
void za_policy_free_pages_exact(void *run, size_t npages);

/* Shrinkers and the OOM handler (shrink.c). Asks the shrinkers for `want`
 * bytes; returns the bytes they freed (drained back already). */
size_t za_policy_shrink(size_t want);
/* Asks the OOM handler; true: try again. At most ZA_OOM_TRIES times in
 * one request (shrink.c), unless `nofail`. */
bool za_policy_oom(size_t size, za_status status, bool nofail);
/* An allocation request begins and ends: nested calls are one request,
 * over which the handlers' bounds hold. */
void za_policy_request_enter(void);
void za_policy_request_exit(void);
/* Asks the compaction hook; true: it moved objects (drained already). */
bool za_policy_compact(size_t size);
#define ZA_OOM_TRIES 16
#define ZA_COMPACT_TRIES 16
struct za_shrink_stats {
	unsigned shrinkers;
	uint64_t rounds, calls, bytes_freed, oom_calls, compaction_calls;
};
void za_policy_shrink_stats(struct za_shrink_stats *out);
void za_policy_shrink_reset_child(void);

#endif
