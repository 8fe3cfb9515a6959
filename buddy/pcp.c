/*
 * Per-thread page caches for orders 0..ZA_PCP_ORDERS-1 and for exact runs,
 * in front of the zone locks (kernel: per-CPU page lists). A cached block
 * is allocated as far as its zone is concerned (state ZA_PG_PCP or
 * ZA_PG_RUN_CACHED); the order caches refill and flush in batches, so a
 * thread that allocates and frees pages in a loop takes a zone lock once per
 * batch.
 *
 * How an owner and a thief share a cache: buddy/pcp.h. Every thief holds
 * pcp_list_lock, so thieves never meet each other.
 */
#include "buddy/pcp.h"

#include <sched.h>
#include <unistd.h>

/* High marks in blocks: each order may hold 32 pages at most, so a thread
 * hoards no more than 128 pages (512 KiB). Refill and flush move half. */
static const uint32_t pcp_high[ZA_PCP_ORDERS] = { 32, 16, 8, 4 };

__thread struct za_pcp *za_tls_pcp __attribute__((tls_model("initial-exec")));
_Atomic bool za_pcp_asym;
static struct za_pcp *pcp_all;
static _Atomic uint64_t run_hits_gone, run_misses_gone;   /* of exited threads */
static pthread_mutex_t pcp_list_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t pcp_key;
static pthread_once_t pcp_key_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t pcp_drains;

/* The owner found `steal` set: it steps out until the thief is done. */
void za_pcp_enter_slow(struct za_pcp *pcp)
{
	for (;;) {
		atomic_store_explicit(&pcp->busy, 0, memory_order_release);
		while (atomic_load_explicit(&pcp->steal, memory_order_acquire))
			sched_yield();
		atomic_store_explicit(&pcp->busy, 1, memory_order_relaxed);
		atomic_thread_fence(memory_order_seq_cst);
		if (!atomic_load_explicit(&pcp->steal, memory_order_acquire))
			return;
	}
}

static void pcp_asym_register(void)
{
	atomic_store_explicit(&za_pcp_asym, za_os_membarrier_register() == 0, memory_order_relaxed);
}

/* Every owner that could have missed a thief's `steal` is now seen busy. */
static void pcp_asym_fence(void)
{
	if (!atomic_load_explicit(&za_pcp_asym, memory_order_relaxed))
		return;
	if (za_os_membarrier() != 0) {
		/* Not expected once registered. Owners fence from now on; one
		 * that is mid-way without a fence has its store seen after a
		 * pause far longer than any store buffer holds it. */
		atomic_store_explicit(&za_pcp_asym, false, memory_order_relaxed);
		usleep(1000);
	}
}

/* Thief: keeps every owner out of its cache (pcp_list_lock held). */
static void pcp_steal_all(void)
{
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next)
		atomic_store_explicit(&pcp->steal, 1, memory_order_seq_cst);
	pcp_asym_fence();
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next)
		while (atomic_load_explicit(&pcp->busy, memory_order_acquire))
			sched_yield();
}

static void pcp_unsteal_all(void)
{
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next)
		atomic_store_explicit(&pcp->steal, 0, memory_order_release);
}

static inline struct za_zone *pcp_page_zone(const struct za_page *page)
{
	return &za_zones[page->prev];
}

static inline void pcp_push(struct za_pcp *pcp, struct za_zone *zone, uint32_t pfn,
			    unsigned order)
{
	struct za_page *page = za_page_at(zone, pfn);
	/* The state byte changes here under the cache lock while a zone-lock
	 * holder may read it as a buddy: an atomic byte store, never FREE. */
	__atomic_store_n(&page->state, (uint8_t)ZA_PG_PCP, __ATOMIC_RELAXED);
	page->order = (uint8_t)order;
	page->prev = (uint32_t)zone->index;
	page->pcp_next = pcp->list[order];
	pcp->list[order] = page;
	pcp->count[order]++;
}

/* Returns `nr` cached blocks of `order` to their zones (cache held). */
static void __pcp_flush(struct za_pcp *pcp, unsigned order, uint32_t nr)
{
	while (nr-- && pcp->list[order]) {
		struct za_page *page = pcp->list[order];
		struct za_zone *zone = pcp_page_zone(page);
		uint32_t pfn = za_page_pfn(zone, page);

		pcp->list[order] = page->pcp_next;
		pcp->count[order]--;
		page->pcp_next = NULL;
		page->prev = ZA_PFN_NONE;

		za_lock(&zone->lock);
		page->state = ZA_PG_TAIL;
		zone->free_calls[order]++;
		__za_free_one(zone, pfn, order, 0);
		pthread_mutex_unlock(&zone->lock);
	}
}

/* Takes up to half the high mark of `order` from the zones, committing at
 * most `budget` pages (cache held). */
static void __pcp_refill(struct za_pcp *pcp, unsigned order, size_t budget)
{
	uint32_t want = pcp_high[order] / 2;
	int n = atomic_load_explicit(&za_nr_zones, memory_order_acquire);

	for (int i = 0; i < n && want; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!atomic_load_explicit(&zone->active, memory_order_relaxed) ||
		    !(atomic_load_explicit(&zone->free_mask, memory_order_relaxed) >> order))
			continue;
		za_lock(&zone->lock);
		while (want && atomic_load_explicit(&zone->active, memory_order_relaxed)) {
			uint32_t pfn = __za_rmqueue(zone, order, ZA_KIND_RUN, &budget);
			if (pfn == ZA_PFN_NONE)
				break;
			pcp_push(pcp, zone, pfn, order);
			want--;
		}
		pthread_mutex_unlock(&zone->lock);
	}
}

/* Closes the gap of slot `i`, keeping the slots oldest first. */
static void pcp_run_remove(struct za_pcp *pcp, uint32_t i)
{
	pcp->run_pages -= pcp->run_npages[i];
	pcp->nruns--;
	for (; i < pcp->nruns; i++) {
		pcp->run_npages[i] = pcp->run_npages[i + 1];
		pcp->run_head[i] = pcp->run_head[i + 1];
		pcp->run_addr[i] = pcp->run_addr[i + 1];
	}
}

/* Gives the cached run in slot `i` back to its zone (cache held). */
static void __pcp_run_evict(struct za_pcp *pcp, uint32_t i)
{
	struct za_page *head = pcp->run_head[i];
	struct za_zone *zone = za_zone_of(pcp->run_addr[i]);
	uint32_t pfn = za_page_pfn(zone, head), n = pcp->run_npages[i];

	za_buddy_freed_note(pcp->run_addr[i]);   /* a freed run leaves its RUN_CACHED state */
	pcp_run_remove(pcp, i);
	za_lock(&zone->lock);
	head->state = ZA_PG_TAIL;
	head->count = 0;
	__za_free_range(zone, pfn, pfn + n, false);
	pthread_mutex_unlock(&zone->lock);
}

static void __pcp_flush_all(struct za_pcp *pcp)
{
	for (unsigned k = 0; k < ZA_PCP_ORDERS; k++)
		__pcp_flush(pcp, k, pcp->count[k]);
	while (pcp->nruns)
		__pcp_run_evict(pcp, 0);
}

static void pcp_unlink(struct za_pcp *pcp)
{
	if (pcp->prev)
		pcp->prev->next = pcp->next;
	else
		pcp_all = pcp->next;
	if (pcp->next)
		pcp->next->prev = pcp->prev;
}

/* A thread's cache goes back when the thread exits. Thieves hold
 * pcp_list_lock for as long as they steal, so with it held the cache is
 * ours alone. */
static void pcp_thread_exit(void *arg)
{
	struct za_pcp *pcp = arg;
	za_lock(&pcp_list_lock);
	__pcp_flush_all(pcp);
	pcp_unlink(pcp);
	atomic_fetch_add(&run_hits_gone, pcp->run_hits);
	atomic_fetch_add(&run_misses_gone, pcp->run_misses);
	pthread_mutex_unlock(&pcp_list_lock);
	if (za_tls_pcp == pcp)
		za_tls_pcp = NULL;
	za_meta_free(pcp, sizeof *pcp);
}

static void pcp_key_create(void)
{
	pcp_asym_register();
	pthread_key_create(&pcp_key, pcp_thread_exit);
}

static ZA_NOINLINE struct za_pcp *pcp_create(void)
{
	pthread_once(&pcp_key_once, pcp_key_create);
	struct za_pcp *pcp = za_meta_alloc(sizeof *pcp);
	if (!pcp)
		return NULL;
	za_lock(&pcp_list_lock);
	pcp->next = pcp_all;
	if (pcp_all)
		pcp_all->prev = pcp;
	pcp_all = pcp;
	pthread_mutex_unlock(&pcp_list_lock);
	za_tls_pcp = pcp;
	pthread_setspecific(pcp_key, pcp);
	return pcp;
}

static inline struct za_pcp *pcp_self(void)
{
	struct za_pcp *pcp = za_tls_pcp;
	return likely(pcp) ? pcp : pcp_create();
}

void *za_pcp_alloc(unsigned order, size_t budget)
{
	struct za_pcp *pcp = pcp_self();
	if (unlikely(!pcp))
		return NULL;
	za_pcp_enter(pcp);
	if (!pcp->list[order])
		__pcp_refill(pcp, order, budget);
	struct za_page *page = pcp->list[order];
	if (!page) {
		za_pcp_exit(pcp);
		return NULL;
	}
	pcp->list[order] = page->pcp_next;
	pcp->count[order]--;
	struct za_zone *zone = pcp_page_zone(page);
	page->pcp_next = NULL;
	page->prev = ZA_PFN_NONE;
	__atomic_store_n(&page->state, (uint8_t)ZA_PG_BLOCK, __ATOMIC_RELAXED);
	za_pcp_exit(pcp);
	return za_page_addr(zone, za_page_pfn(zone, page));
}

bool za_pcp_free(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	struct za_pcp *pcp = pcp_self();
	if (unlikely(!pcp))
		return false;
	za_pcp_enter(pcp);
	za_page_at(zone, pfn)->flags &= (uint8_t)~ZA_PGF_FRESH;   /* used memory is not fresh */
	pcp_push(pcp, zone, pfn, order);
	if (unlikely(pcp->count[order] > pcp_high[order]))
		__pcp_flush(pcp, order, pcp_high[order] / 2);
	za_pcp_exit(pcp);
	return true;
}

void *za_pcp_run_alloc_scan(uint32_t npages)
{
	struct za_pcp *pcp = za_tls_pcp;
	if (!pcp)
		return NULL;
	za_pcp_enter(pcp);
	for (uint32_t i = pcp->nruns; i-- > 0;) {
		if (pcp->run_npages[i] != npages)
			continue;
		void *addr = pcp->run_addr[i];
		__atomic_store_n(&pcp->run_head[i]->state, (uint8_t)ZA_PG_RUN, __ATOMIC_RELAXED);
		pcp_run_remove(pcp, i);
		pcp->run_hits++;
		za_pcp_exit(pcp);
		return addr;
	}
	pcp->run_misses++;
	za_pcp_exit(pcp);
	return NULL;
}

void za_pcp_run_stats(uint64_t *hits, uint64_t *misses)
{
	za_lock(&pcp_list_lock);
	*hits = atomic_load(&run_hits_gone);
	*misses = atomic_load(&run_misses_gone);
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next) {
		*hits += __atomic_load_n(&pcp->run_hits, __ATOMIC_RELAXED);
		*misses += __atomic_load_n(&pcp->run_misses, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&pcp_list_lock);
}

/* No cache yet, or a full one: the oldest runs make room. */
bool za_pcp_run_free_slow(struct za_page *head, void *addr, uint32_t npages)
{
	if (npages > ZA_PCP_RUN_PAGES)
		return false;
	struct za_pcp *pcp = pcp_self();
	if (unlikely(!pcp))
		return false;
	za_pcp_enter(pcp);
	while (pcp->nruns == ZA_PCP_RUN_SLOTS || pcp->run_pages + npages > ZA_PCP_RUN_PAGES)
		__pcp_run_evict(pcp, 0);
	za_pcp_exit(pcp);
	return za_pcp_run_free(head, addr, npages);
}

void za_pcp_drain_self(void)
{
	struct za_pcp *pcp = za_tls_pcp;
	if (!pcp)
		return;
	za_pcp_enter(pcp);
	__pcp_flush_all(pcp);
	za_pcp_exit(pcp);
}

void za_pcp_drain_all(void)
{
	za_lock(&pcp_list_lock);
	pcp_steal_all();
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next)
		__pcp_flush_all(pcp);
	pcp_unsteal_all();
	pthread_mutex_unlock(&pcp_list_lock);
	atomic_fetch_add_explicit(&pcp_drains, 1, memory_order_relaxed);
}

uint64_t za_pcp_drain_count(void)
{
	return atomic_load_explicit(&pcp_drains, memory_order_relaxed);
}

/* A statistic: counts read while their owners work. */
size_t za_pcp_pages_cached(void)
{
	size_t pages = 0;
	za_lock(&pcp_list_lock);
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next) {
		for (unsigned k = 0; k < ZA_PCP_ORDERS; k++)
			pages += (size_t)__atomic_load_n(&pcp->count[k], __ATOMIC_RELAXED) << k;
		pages += __atomic_load_n(&pcp->run_pages, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&pcp_list_lock);
	return pages;
}

/* For fork and the checker: every cache held until za_pcp_unlock_all. */
void za_pcp_lock_all(void)
{
	za_lock(&pcp_list_lock);
	pcp_steal_all();
}

void za_pcp_unlock_all(void)
{
	pcp_unsteal_all();
	pthread_mutex_unlock(&pcp_list_lock);
}

/* In a forked child only the forking thread lives on: the other threads'
 * caches are orphans (stolen before the fork, so none was mid-way), and
 * their blocks go back to the zones. Zone locks must already be usable.
 * The membarrier registration belongs to the address space, which the
 * child has anew: register again. */
void za_pcp_reset_child(void)
{
	pthread_mutex_init(&pcp_list_lock, NULL);
	if (atomic_load_explicit(&za_pcp_asym, memory_order_relaxed))
		pcp_asym_register();
	struct za_pcp *pcp = pcp_all;
	while (pcp) {
		struct za_pcp *next = pcp->next;
		atomic_store(&pcp->busy, 0);
		atomic_store(&pcp->steal, 0);
		if (pcp != za_tls_pcp) {
			__pcp_flush_all(pcp);
			pcp_unlink(pcp);
			za_meta_free(pcp, sizeof *pcp);
		}
		pcp = next;
	}
}
