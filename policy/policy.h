/*
 * Policy: caller intent (za_flags, public) becomes an explicit allocation
 * policy (struct za_policy, internal) in exactly one function,
 * za_policy_from_flags(). Nothing after that reads raw flags. Every buddy
 * allocation goes through za_policy_alloc_block().
 */
#ifndef ZA_POLICY_H
#define ZA_POLICY_H

#include <stdbool.h>

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
 * On failure returns NULL and sets *status to the typed outcome.
 */
void *za_policy_alloc_block(unsigned order, const struct za_policy *policy, za_status *status);

/* Counts an outcome in the stats and returns it. */
za_status za_policy_outcome(za_status status, const struct za_policy *policy);

struct za_policy_stats {
	uint64_t slowpath_rounds;
	uint64_t enomem[ZA_STATUS_COUNT];
};
void za_policy_stats_get(struct za_policy_stats *out);

#endif
