/*
 * Per-thread page caches for orders 0..ZA_PCP_ORDERS-1, in front of the zone
 * locks (kernel: per-CPU page lists). A cached block is allocated as far as
 * its zone is concerned (state ZA_PG_PCP); the cache refills and flushes in
 * batches, so a thread that allocates and frees pages in a loop takes a zone
 * lock once per batch. Each cache has a lock only its owner normally takes
 * (uncontended); others take it to drain the cache under memory pressure,
 * for the checker, and around fork.
 */
#include "buddy/buddy.h"

#include <sched.h>

#define RUN_SLOTS 8
#define RUN_CACHE_PAGES 256   /* 1 MiB */

struct za_pcp {
	_Atomic int lock;
	uint32_t count[ZA_PCP_ORDERS];
	struct za_page *list[ZA_PCP_ORDERS];
	struct za_page *runs[RUN_SLOTS];   /* oldest first */
	uint32_t nruns, run_pages;
	struct za_pcp *next, *prev;   /* all caches, under pcp_list_lock */
};

/* High marks in blocks: each order may hold 32 pages at most, so a thread
 * hoards no more than 128 pages (512 KiB). Refill and flush move half. */
static const uint32_t pcp_high[ZA_PCP_ORDERS] = { 32, 16, 8, 4 };

static __thread struct za_pcp *tls_pcp __attribute__((tls_model("initial-exec")));
static struct za_pcp *pcp_all;
static pthread_mutex_t pcp_list_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t pcp_key;
static pthread_once_t pcp_key_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t pcp_drains;

static inline void pcp_lock(struct za_pcp *pcp)
{
	while (atomic_exchange_explicit(&pcp->lock, 1, memory_order_acquire))
		sched_yield();
}

static inline void pcp_unlock(struct za_pcp *pcp)
{
	atomic_store_explicit(&pcp->lock, 0, memory_order_release);
}

static inline struct za_zone *pcp_page_zone(const struct za_page *page)
{
	return &za_zones[page->prev];
}

static inline void pcp_push(struct za_pcp *pcp, struct za_zone *zone, uint32_t pfn,
			    unsigned order)
{
	struct za_page *page = &zone->pages[pfn];
	/* The state byte changes here under the cache lock while a zone-lock
	 * holder may read it as a buddy: an atomic byte store, never FREE. */
	__atomic_store_n(&page->state, (uint8_t)ZA_PG_PCP, __ATOMIC_RELAXED);
	page->order = (uint8_t)order;
	page->prev = (uint32_t)zone->index;
	page->pcp_next = pcp->list[order];
	pcp->list[order] = page;
	pcp->count[order]++;
}

/* Returns `nr` cached blocks of `order` to their zones (pcp lock held). */
static void __pcp_flush(struct za_pcp *pcp, unsigned order, uint32_t nr)
{
	while (nr-- && pcp->list[order]) {
		struct za_page *page = pcp->list[order];
		struct za_zone *zone = pcp_page_zone(page);
		uint32_t pfn = (uint32_t)(page - zone->pages);

		pcp->list[order] = page->pcp_next;
		pcp->count[order]--;
		page->pcp_next = NULL;
		page->prev = ZA_PFN_NONE;

		pthread_mutex_lock(&zone->lock);
		page->state = ZA_PG_TAIL;
		zone->free_calls[order]++;
		__za_free_one(zone, pfn, order, 0);
		pthread_mutex_unlock(&zone->lock);
	}
}

/* Takes up to half the high mark of `order` from the zones, committing at
 * most `budget` pages (pcp lock held). */
static void __pcp_refill(struct za_pcp *pcp, unsigned order, size_t budget)
{
	uint32_t want = pcp_high[order] / 2;
	int n = atomic_load_explicit(&za_nr_zones, memory_order_acquire);

	for (int i = 0; i < n && want; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!atomic_load_explicit(&zone->active, memory_order_relaxed) ||
		    !(atomic_load_explicit(&zone->free_mask, memory_order_relaxed) >> order))
			continue;
		pthread_mutex_lock(&zone->lock);
		while (want && atomic_load_explicit(&zone->active, memory_order_relaxed)) {
			uint32_t pfn = __za_rmqueue(zone, order, &budget);
			if (pfn == ZA_PFN_NONE)
				break;
			pcp_push(pcp, zone, pfn, order);
			want--;
		}
		pthread_mutex_unlock(&zone->lock);
	}
}

/* Gives the oldest cached run back to its zone (pcp lock held). */
static void __pcp_run_evict(struct za_pcp *pcp)
{
	struct za_page *head = pcp->runs[0];
	struct za_zone *zone = pcp_page_zone(head);
	uint32_t pfn = (uint32_t)(head - zone->pages), n = head->count;

	pcp->nruns--;
	for (uint32_t i = 0; i < pcp->nruns; i++)
		pcp->runs[i] = pcp->runs[i + 1];
	pcp->run_pages -= n;
	pthread_mutex_lock(&zone->lock);
	head->state = ZA_PG_TAIL;
	head->count = 0;
	head->prev = ZA_PFN_NONE;
	__za_free_range(zone, pfn, pfn + n, false);
	pthread_mutex_unlock(&zone->lock);
}

static void __pcp_flush_all(struct za_pcp *pcp)
{
	for (unsigned k = 0; k < ZA_PCP_ORDERS; k++)
		__pcp_flush(pcp, k, pcp->count[k]);
	while (pcp->nruns)
		__pcp_run_evict(pcp);
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

/* A thread's cache goes back when the thread exits. */
static void pcp_thread_exit(void *arg)
{
	struct za_pcp *pcp = arg;
	pthread_mutex_lock(&pcp_list_lock);
	pcp_lock(pcp);
	__pcp_flush_all(pcp);
	pcp_unlink(pcp);
	pthread_mutex_unlock(&pcp_list_lock);
	if (tls_pcp == pcp)
		tls_pcp = NULL;
	za_meta_free(pcp, sizeof *pcp);
}

static void pcp_key_create(void)
{
	pthread_key_create(&pcp_key, pcp_thread_exit);
}

static ZA_NOINLINE struct za_pcp *pcp_create(void)
{
	pthread_once(&pcp_key_once, pcp_key_create);
	struct za_pcp *pcp = za_meta_alloc(sizeof *pcp);
	if (!pcp)
		return NULL;
	pthread_mutex_lock(&pcp_list_lock);
	pcp->next = pcp_all;
	if (pcp_all)
		pcp_all->prev = pcp;
	pcp_all = pcp;
	pthread_mutex_unlock(&pcp_list_lock);
	tls_pcp = pcp;
	pthread_setspecific(pcp_key, pcp);
	return pcp;
}

static inline struct za_pcp *pcp_self(void)
{
	struct za_pcp *pcp = tls_pcp;
	return likely(pcp) ? pcp : pcp_create();
}

void *za_pcp_alloc(unsigned order, size_t budget)
{
	struct za_pcp *pcp = pcp_self();
	if (unlikely(!pcp))
		return NULL;
	pcp_lock(pcp);
	if (!pcp->list[order])
		__pcp_refill(pcp, order, budget);
	struct za_page *page = pcp->list[order];
	if (!page) {
		pcp_unlock(pcp);
		return NULL;
	}
	pcp->list[order] = page->pcp_next;
	pcp->count[order]--;
	struct za_zone *zone = pcp_page_zone(page);
	page->pcp_next = NULL;
	page->prev = ZA_PFN_NONE;
	__atomic_store_n(&page->state, (uint8_t)ZA_PG_BLOCK, __ATOMIC_RELAXED);
	pcp_unlock(pcp);
	return za_page_addr(zone, (uint32_t)(page - zone->pages));
}

bool za_pcp_free(struct za_zone *zone, uint32_t pfn, unsigned order)
{
	struct za_pcp *pcp = pcp_self();
	if (unlikely(!pcp))
		return false;
	pcp_lock(pcp);
	zone->pages[pfn].flags &= (uint8_t)~ZA_PGF_FRESH;   /* used memory is not fresh */
	pcp_push(pcp, zone, pfn, order);
	if (unlikely(pcp->count[order] > pcp_high[order]))
		__pcp_flush(pcp, order, pcp_high[order] / 2);
	pcp_unlock(pcp);
	return true;
}

void *za_pcp_run_alloc(uint32_t npages)
{
	struct za_pcp *pcp = tls_pcp;
	if (!pcp || !pcp->nruns)
		return NULL;
	pcp_lock(pcp);
	for (uint32_t i = pcp->nruns; i-- > 0;) {
		struct za_page *head = pcp->runs[i];
		if (head->count != npages)
			continue;
		pcp->nruns--;
		for (uint32_t j = i; j < pcp->nruns; j++)
			pcp->runs[j] = pcp->runs[j + 1];
		pcp->run_pages -= npages;
		struct za_zone *zone = pcp_page_zone(head);
		head->prev = ZA_PFN_NONE;
		__atomic_store_n(&head->state, (uint8_t)ZA_PG_RUN, __ATOMIC_RELAXED);
		pcp_unlock(pcp);
		return za_page_addr(zone, (uint32_t)(head - zone->pages));
	}
	pcp_unlock(pcp);
	return NULL;
}

bool za_pcp_run_free(struct za_zone *zone, uint32_t pfn, uint32_t npages)
{
	if (npages > RUN_CACHE_PAGES)
		return false;
	struct za_pcp *pcp = pcp_self();
	if (unlikely(!pcp))
		return false;
	pcp_lock(pcp);
	while (pcp->nruns == RUN_SLOTS || pcp->run_pages + npages > RUN_CACHE_PAGES)
		__pcp_run_evict(pcp);
	struct za_page *head = &zone->pages[pfn];
	head->prev = (uint32_t)zone->index;
	head->flags = 0;
	__atomic_store_n(&head->state, (uint8_t)ZA_PG_RUN_CACHED, __ATOMIC_RELAXED);
	pcp->runs[pcp->nruns++] = head;
	pcp->run_pages += npages;
	pcp_unlock(pcp);
	return true;
}

void za_pcp_drain_self(void)
{
	struct za_pcp *pcp = tls_pcp;
	if (!pcp)
		return;
	pcp_lock(pcp);
	__pcp_flush_all(pcp);
	pcp_unlock(pcp);
}

void za_pcp_drain_all(void)
{
	pthread_mutex_lock(&pcp_list_lock);
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next) {
		pcp_lock(pcp);
		__pcp_flush_all(pcp);
		pcp_unlock(pcp);
	}
	pthread_mutex_unlock(&pcp_list_lock);
	atomic_fetch_add_explicit(&pcp_drains, 1, memory_order_relaxed);
}

uint64_t za_pcp_drain_count(void)
{
	return atomic_load_explicit(&pcp_drains, memory_order_relaxed);
}

size_t za_pcp_pages_cached(void)
{
	size_t pages = 0;
	pthread_mutex_lock(&pcp_list_lock);
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next) {
		for (unsigned k = 0; k < ZA_PCP_ORDERS; k++)
			pages += (size_t)__atomic_load_n(&pcp->count[k], __ATOMIC_RELAXED) << k;
		pages += __atomic_load_n(&pcp->run_pages, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&pcp_list_lock);
	return pages;
}

void za_pcp_lock_all(void)
{
	pthread_mutex_lock(&pcp_list_lock);
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next)
		pcp_lock(pcp);
}

void za_pcp_unlock_all(void)
{
	for (struct za_pcp *pcp = pcp_all; pcp; pcp = pcp->next)
		pcp_unlock(pcp);
	pthread_mutex_unlock(&pcp_list_lock);
}

/* In a forked child only the forking thread lives on: the other threads'
 * caches are orphans, so their blocks go back to the zones. Zone locks
 * must already be usable. */
void za_pcp_reset_child(void)
{
	pthread_mutex_init(&pcp_list_lock, NULL);
	struct za_pcp *pcp = pcp_all;
	while (pcp) {
		struct za_pcp *next = pcp->next;
		atomic_store(&pcp->lock, 0);
		if (pcp != tls_pcp) {
			__pcp_flush_all(pcp);
			pcp_unlink(pcp);
			za_meta_free(pcp, sizeof *pcp);
		}
		pcp = next;
	}
}
