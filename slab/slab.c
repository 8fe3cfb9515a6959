/*
 * Slabs: creating one over a buddy block, refilling a thread's current
 * slab (remote frees, carving), and giving empty slabs back.
 */
#include "slab/slab.h"

#include "policy/policy.h"

uintptr_t za_slab_free_mark;

/* The sentinel every class of a new heap starts on: never has objects. */
struct za_slab za_slab_empty;

struct za_slab_counters za_slab_counters;

static inline char *slab_base(struct za_slab *slab)
{
	struct za_page *page = za_slab_page(slab);
	struct za_zone *zone = &za_zones[page->prev];
	return za_page_addr(zone, (uint32_t)(page - zone->pages));
}

/* Moves every remote free onto the local list (owner, or the abandoned
 * lists' lock holder). */
bool za_slab_collect(struct za_slab *slab)
{
	/* A load first: most slabs have no remote frees, and the exchange
	 * would take the line exclusive for nothing. */
	if (!atomic_load_explicit(&slab->remote, memory_order_relaxed))
		return false;
	void **list = atomic_exchange_explicit(&slab->remote, NULL, memory_order_acquire);
	if (!list)
		return false;
	uint32_t n = 1;
	void **tail = list;
	while (tail[0]) {
		tail = tail[0];
		n++;
	}
	tail[0] = slab->free;
	slab->free = list;
	slab->used -= n;
	return true;
}

/* Threads the next page's worth of never-used objects onto the free list:
 * a slab touches its memory as it is used, not when it is made. */
static bool slab_carve(struct za_slab *slab, unsigned cls)
{
	uint32_t size = za_classes[cls].size;
	if (slab->carved >= slab->capacity)
		return false;
	uint32_t batch = size >= ZA_PAGE_SIZE ? 1 : (uint32_t)(ZA_PAGE_SIZE / size);
	uint32_t end = slab->carved + batch;
	if (end > slab->capacity)
		end = slab->capacity;
	char *base = slab_base(slab);
	void *head = slab->free;
	for (uint32_t i = end; i-- > slab->carved;) {
		void **obj = (void **)(base + (size_t)i * size);
		obj[0] = head;
		head = obj;
	}
	slab->free = head;
	slab->carved = (uint16_t)end;
	return true;
}

static bool slab_refill(struct za_slab *slab, unsigned cls)
{
	if (slab->free)
		return true;
	za_slab_collect(slab);
	return slab->free || slab_carve(slab, cls);
}

static void ring_insert(struct za_theap *heap, unsigned cls, struct za_slab *slab)
{
	struct za_slab *head = heap->ring[cls];
	if (!head) {
		slab->next = slab->prev = slab;
		heap->ring[cls] = slab;
	} else {
		slab->next = head;
		slab->prev = head->prev;
		head->prev->next = slab;
		head->prev = slab;
	}
	heap->nslabs[cls]++;
}

void za_slab_ring_remove(struct za_theap *heap, unsigned cls, struct za_slab *slab)
{
	if (slab->next == slab) {
		heap->ring[cls] = NULL;
	} else {
		slab->prev->next = slab->next;
		slab->next->prev = slab->prev;
		if (heap->ring[cls] == slab)
			heap->ring[cls] = slab->next;
	}
	slab->next = slab->prev = NULL;
	heap->nslabs[cls]--;
	za_slab_unkeep(heap, slab);
	if (heap->cur[cls] == slab)
		heap->cur[cls] = heap->ring[cls] ? heap->ring[cls] : &za_slab_empty;
}

void za_slab_adopt(struct za_theap *heap, unsigned cls, struct za_slab *slab)
{
	atomic_store_explicit(&slab->owner, heap, memory_order_release);
	ring_insert(heap, cls, slab);
}

static struct za_slab *slab_new(struct za_theap *heap, unsigned cls)
{
	const struct za_class_info *ci = &za_classes[cls];
	za_status st;
	void *block = za_policy_alloc_block(ci->order, za_policy_current(), &st);
	if (!block)
		return NULL;
	struct za_page *head = za_buddy_make_slab(block, ci->order);
	head->owner_data = (uint8_t)cls;
	head->prev = (uint32_t)za_zone_of(block)->index;
	head->count = 0;   /* not kept */
	struct za_slab *slab = za_page_slab(head);
	slab->free = NULL;
	atomic_store_explicit(&slab->remote, NULL, memory_order_relaxed);
	slab->used = 0;
	slab->capacity = ci->capacity;
	slab->carved = 0;
	za_slab_adopt(heap, cls, slab);
	atomic_fetch_add_explicit(&za_slab_counters.created, 1, memory_order_relaxed);
	return slab;
}

/* Gives an empty slab's block back to the buddy core. */
void za_slab_release(struct za_slab *slab)
{
	char *base = slab_base(slab);
	struct za_page *page = za_slab_page(slab);
	page->prev = ZA_PFN_NONE;
	page->owner_data = 0;
	page->count = 0;
	za_buddy_free_slab(base);
	atomic_fetch_add_explicit(&za_slab_counters.released, 1, memory_order_relaxed);
}

/*
 * The generic allocation path: the current slab ran dry. Look for objects
 * in this order: remote frees and uncarved objects of the current slab,
 * the next few slabs of the ring, a slab abandoned by an exited thread,
 * and last a new slab from the buddy core.
 */
void *za_slab_alloc_generic(struct za_theap *heap, unsigned cls)
{
	if (unlikely(heap->is_empty_sentinel)) {
		heap = za_theap_create();
		if (!heap)
			return NULL;
	}
	struct za_slab *slab = heap->cur[cls];
	if (slab != &za_slab_empty && !slab_refill(slab, cls)) {
		struct za_slab *s = slab->next;
		for (int i = 0; i < 16 && s != slab; i++, s = s->next)
			if (slab_refill(s, cls)) {
				za_slab_unkeep(heap, s);   /* in use again */
				break;
			}
		slab = s;
		heap->cur[cls] = s;   /* the next search starts further on */
	}
	if (!slab->free) {
		/* An abandoned slab may be full (its objects live on after their
		 * thread): it is adopted all the same, its objects come home as
		 * remote frees, and the search goes on. */
		while ((slab = za_slab_abandoned_take(cls, heap)) && !slab_refill(slab, cls))
			;
		if (!slab) {
			slab = slab_new(heap, cls);
			if (!slab || !slab_refill(slab, cls))
				return NULL;
		}
		heap->cur[cls] = slab;
	}
	void **p = slab->free;
	slab->free = p[0];
	p[1] = NULL;
	slab->used++;
	return p;
}

/* A local free emptied `slab`. The current slab of its class stays (so a
 * malloc/free loop at a slab boundary doesn't take and return a block each
 * time); any other empty slab goes back to the buddy core. */
void za_slab_free_slow(struct za_theap *heap, struct za_slab *slab)
{
	unsigned cls = za_slab_class(slab);
	if (heap->cur[cls] == slab)
		return;
	/* Hysteresis: empty slabs, up to 1 MiB per thread, stay for the next
	 * burst of allocations, so a program that fills and empties slabs in
	 * waves doesn't take and return a block each time. */
	uint32_t pages = 1u << za_classes[cls].order;
	if (!za_slab_kept(slab) && heap->empty_pages + pages <= ZA_SLAB_KEEP_EMPTY_PAGES) {
		za_slab_keep(heap, slab);
		return;
	}
	za_slab_ring_remove(heap, cls, slab);
	za_slab_release(slab);
}

void za_slab_free_remote(struct za_slab *slab, void *obj)
{
	void **p = obj;
	void *old = atomic_load_explicit(&slab->remote, memory_order_relaxed);
	p[1] = (void *)(za_slab_free_mark ^ (uintptr_t)p);
	do {
		p[0] = old;
	} while (!atomic_compare_exchange_weak_explicit(&slab->remote, &old, p,
							memory_order_release,
							memory_order_relaxed));
	struct za_theap *heap = za_tls_heap;
	if (likely(!heap->is_empty_sentinel))
		__atomic_store_n(&heap->remote_frees, heap->remote_frees + 1, __ATOMIC_RELAXED);
	else
		atomic_fetch_add_explicit(&za_slab_counters.remote_frees, 1, memory_order_relaxed);
}

static bool list_holds(void *list, void *p, uint32_t limit)
{
	for (void **q = list; q && limit; q = q[0], limit--)
		if (q == p)
			return true;
	return false;
}

/* The free mark was found: confirm against the lists before calling it a
 * double free (user data may hold the mark by chance), then free as usual.
 * Only the owner may walk the local list; anyone may walk the remote one. */
void za_slab_free_marked(struct za_slab *slab, void *p)
{
	bool owner = atomic_load_explicit(&slab->owner, memory_order_relaxed) == za_tls_heap;
	uint32_t cap = slab->capacity;
	if ((owner && list_holds(slab->free, p, cap)) ||
	    list_holds(atomic_load_explicit(&slab->remote, memory_order_acquire), p, cap)) {
		struct za_page *page = za_slab_page(slab);
		za_fatal("free(%p): double free of a %u-byte slab object (zone %u)", p,
			 za_classes[za_slab_class(slab)].size, page->prev);
	}
	za_slab_free_unmarked(slab, p);
}
