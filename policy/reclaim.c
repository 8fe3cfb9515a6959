/*
 * When memory goes back to the OS (the buddy core's reclaim.c knows how):
 * by decay, a bounded pass every so often from the allocation path or the
 * background reclaimer; directly, when a limited heap needs headroom; and
 * all at once for malloc_trim and za_reclaim.
 */
#include "policy/policy.h"

#include "buddy/buddy.h"

#define DRAIN_HOOKS 4

static _Atomic uint64_t decay_ms = 1000;
static _Atomic uint64_t next_decay_ms;
static _Atomic uint64_t st_decay_passes, st_direct_pages;
static za_drain_fn drain_hooks[DRAIN_HOOKS];
__thread unsigned za_decay_countdown __attribute__((tls_model("initial-exec")));

void za_policy_set_decay_ms(uint64_t ms)
{
	atomic_store(&decay_ms, ms);
}

uint64_t za_policy_decay_ms(void)
{
	return atomic_load_explicit(&decay_ms, memory_order_relaxed);
}

uint64_t za_policy_decay_passes(void)
{
	return atomic_load(&st_decay_passes);
}

uint64_t za_policy_direct_pages(void)
{
	return atomic_load(&st_direct_pages);
}

/* Blocks freed more than a decay time ago go back, a bounded batch at a
 * time, at most twice per decay time. */
static void decay_run(void)
{
	uint64_t decay = za_policy_decay_ms();
	for (int i = 0; i < DRAIN_HOOKS; i++) {
		za_drain_fn fn = __atomic_load_n(&drain_hooks[i], __ATOMIC_ACQUIRE);
		if (fn)
			fn(false);
	}
	za_reclaim_pass(decay, SIZE_MAX, 512);
	za_reclaim_zones();
	atomic_fetch_add_explicit(&st_decay_passes, 1, memory_order_relaxed);
}

void za_policy_decay_due(void)
{
	za_decay_countdown = 32;
	uint64_t now = za_now_ms(), due = atomic_load_explicit(&next_decay_ms, memory_order_relaxed);
	if (now < due)
		return;
	uint64_t next = now + za_policy_decay_ms() / 2 + 1;
	if (!atomic_compare_exchange_strong(&next_decay_ms, &due, next))
		return;   /* another thread runs this one */
	/* With the reclaimer on, the decay is its work: a child of fork,
	 * which has no thread yet, starts its own here, on its first decay
	 * (it may never take the slow path that starts one otherwise). */
	if (za_background_enabled()) {
		za_background_wake();
		if (za_background_running())
			return;
	}
	decay_run();
}

void za_policy_decay_now(void)
{
	decay_run();
}

size_t za_policy_direct_reclaim(size_t want)
{
	size_t got = za_reclaim_pass(0, want, 4096);
	atomic_fetch_add_explicit(&st_direct_pages, got, memory_order_relaxed);
	return got;
}

void za_policy_register_drain(za_drain_fn fn)
{
	for (int i = 0; i < DRAIN_HOOKS; i++) {
		za_drain_fn cur = __atomic_load_n(&drain_hooks[i], __ATOMIC_ACQUIRE);
		if (cur == fn)
			return;
		if (!cur && __atomic_compare_exchange_n(&drain_hooks[i], &cur, fn, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
		if (cur == fn)
			return;
	}
}

size_t za_policy_drain(void)
{
	size_t pages = za_pcp_pages_cached();
	za_pcp_drain_all();
	for (int i = 0; i < DRAIN_HOOKS; i++) {
		za_drain_fn fn = __atomic_load_n(&drain_hooks[i], __ATOMIC_ACQUIRE);
		if (fn)
			pages += fn(true);
	}
	/* Slabs given back land in this thread's cache: drain once more. */
	za_pcp_drain_self();
	return pages;
}

size_t (*za_policy_quarantine_hook)(void);

bool za_policy_quarantine_give(const struct za_policy *policy)
{
	if (!policy->may_drain || !za_policy_quarantine_hook || !za_policy_quarantine_hook())
		return false;
	za_policy_drain();
	return true;
}

size_t za_policy_reclaim_all(void)
{
	if (za_policy_quarantine_hook)
		za_policy_quarantine_hook();
	za_policy_drain();
	size_t pages = za_reclaim_pass(0, SIZE_MAX, SIZE_MAX);
	za_reclaim_zones();
	return pages << ZA_PAGE_SHIFT;
}

ZA_EXPORT size_t za_reclaim(void)
{
	return za_policy_reclaim_all();
}

ZA_EXPORT void za_set_limit(size_t bytes)
{
	za_policy_set_limit(bytes);
	if (!bytes)
		return;
	/* A lowered limit takes effect now: retained memory above the new
	 * normal mark goes back before the next allocation has to find out. */
	size_t over = za_policy_shortfall(&za_policy_default, 0);
	if (over)
		za_policy_direct_reclaim(over);
	za_background_wake();
}
