/*
 * Per-thread page caches (buddy/pcp.c): the structure and the fast paths
 * of the run cache, inline for the malloc/free of medium sizes.
 *
 * A cache is its owner's: the owner marks itself `busy` around each use,
 * with no atomic read-modify-write and no fence. Another thread that must
 * empty the caches (reclaim under pressure, the checker, fork) sets `steal`
 * and then waits until the owner is not busy. That is Dekker's handshake,
 * which needs a full fence on both sides between the store and the load;
 * the owner's half is paid by the rare thief instead, with membarrier(2)
 * (kernel: per-CPU lists are kept by disabling interrupts, and a remote
 * drain is an IPI). Where membarrier is missing, owners fence.
 */
#ifndef ZA_PCP_H
#define ZA_PCP_H

#include "buddy/buddy.h"

#define ZA_PCP_RUN_SLOTS 8
#define ZA_PCP_RUN_PAGES 256   /* 1 MiB of runs at most per thread */

struct za_pcp {
	_Atomic int busy;    /* the owner is using the cache */
	_Atomic int steal;   /* a thief wants it: the owner keeps out */
	uint32_t nruns, run_pages;
	/* Freed exact runs, oldest first: the head page, its address and its
	 * length, so a hit reads no page map entry. */
	uint32_t run_npages[ZA_PCP_RUN_SLOTS];
	struct za_page *run_head[ZA_PCP_RUN_SLOTS];
	void *run_addr[ZA_PCP_RUN_SLOTS];
	uint32_t count[ZA_PCP_ORDERS];
	struct za_page *list[ZA_PCP_ORDERS];
	struct za_pcp *next, *prev;   /* all caches, under pcp_list_lock */
	/* Run cache outcomes, the owner's plain counters (summed by the stats,
	 * carried into a global total when the thread exits). */
	uint64_t run_hits, run_misses;
};

extern __thread struct za_pcp *za_tls_pcp __attribute__((tls_model("initial-exec")));
/* Set once membarrier's expedited command is registered: thieves then
 * fence for the owners. */
extern _Atomic bool za_pcp_asym;

void za_pcp_enter_slow(struct za_pcp *pcp);
void *za_pcp_run_alloc_scan(uint32_t npages);
/* Run cache hits and misses, over every thread that ever had a cache. */
void za_pcp_run_stats(uint64_t *hits, uint64_t *misses);
bool za_pcp_run_free_slow(struct za_page *head, void *addr, uint32_t npages);

/* Owner only. */
static inline void za_pcp_enter(struct za_pcp *pcp)
{
	atomic_store_explicit(&pcp->busy, 1, memory_order_relaxed);
	if (likely(atomic_load_explicit(&za_pcp_asym, memory_order_relaxed)))
		atomic_signal_fence(memory_order_seq_cst);   /* the thief fences for us */
	else
		atomic_thread_fence(memory_order_seq_cst);
	if (unlikely(atomic_load_explicit(&pcp->steal, memory_order_acquire)))
		za_pcp_enter_slow(pcp);
}

static inline void za_pcp_exit(struct za_pcp *pcp)
{
	atomic_store_explicit(&pcp->busy, 0, memory_order_release);
}

/* The newest cached run if it has exactly npages pages (state back to
 * ZA_PG_RUN), or NULL: a loop that frees and takes one size finds it
 * there. za_pcp_run_alloc_scan looks at every slot. */
static inline void *za_pcp_run_alloc(uint32_t npages)
{
	struct za_pcp *pcp = za_tls_pcp;
	if (unlikely(!pcp))
		return NULL;
	za_pcp_enter(pcp);
	uint32_t n = pcp->nruns;
	if (likely(n && pcp->run_npages[n - 1] == npages)) {
		void *addr = pcp->run_addr[n - 1];
		__atomic_store_n(&pcp->run_head[n - 1]->state, (uint8_t)ZA_PG_RUN, __ATOMIC_RELAXED);
		pcp->nruns = n - 1;
		pcp->run_pages -= npages;
		pcp->run_hits++;
		za_pcp_exit(pcp);
		return addr;
	}
	za_pcp_exit(pcp);
	return NULL;
}

/* Keeps a freed run (its head `head`, state ZA_PG_RUN) for reuse; false
 * when it is not cached and must go back to its zone. */
static inline bool za_pcp_run_free(struct za_page *head, void *addr, uint32_t npages)
{
	struct za_pcp *pcp = za_tls_pcp;
	if (unlikely(!pcp || npages > ZA_PCP_RUN_PAGES))
		return za_pcp_run_free_slow(head, addr, npages);
	za_pcp_enter(pcp);
	uint32_t n = pcp->nruns;
	if (unlikely(n == ZA_PCP_RUN_SLOTS || pcp->run_pages + npages > ZA_PCP_RUN_PAGES)) {
		za_pcp_exit(pcp);
		return za_pcp_run_free_slow(head, addr, npages);
	}
	head->flags = 0;   /* used memory is not fresh */
	__atomic_store_n(&head->state, (uint8_t)ZA_PG_RUN_CACHED, __ATOMIC_RELAXED);
	pcp->run_npages[n] = npages;
	pcp->run_head[n] = head;
	pcp->run_addr[n] = addr;
	pcp->nruns = n + 1;
	pcp->run_pages += npages;
	za_pcp_exit(pcp);
	return true;
}

#endif
