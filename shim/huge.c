/*
 * Huge allocations: larger than the biggest buddy block, each a mapping of
 * its own, aligned to the zone size and registered in the region table so
 * free() knows it.
 *
 * Reuse before release, for these too. A freed mapping is kept, warm, in
 * a small cache for a decay time, and the next huge allocation takes the
 * best fit: a larger one is cut to size (its tail unmapped), a smaller one
 * grown with mremap(2) (in place, or moved page tables and all to a new
 * aligned reservation, never copied). A program that allocates and frees
 * big buffers in a loop then pays neither mmap/munmap nor a page fault per
 * 4 KiB each time (glibc gets the same from its dynamic mmap threshold).
 * realloc grows a huge block the same way. The cache holds at most
 * HUGE_CACHE_SLOTS mappings and the larger of HUGE_CACHE_MIN and an eighth
 * of the live huge bytes. On mimalloc-bench's malloc-large (20 live
 * buffers of 5-25 MiB, replaced at random) half the live bytes took 13.5 s,
 * as glibc's 13.1, but 537 MB of RSS; a quarter, with a larger mapping
 * kept whole when at most half as big again as the request, 37-50 s and
 * 491 MB; an eighth (so 64 MiB there), every reuse cut to size, 37-45 s
 * and 445 MB; 32 MiB, 47-53 s and 424 MB; mimalloc, which keeps none,
 * 90-115 s and 450 MB. The decay pass unmaps what has waited a decay
 * time, and trim or a drain unmaps everything. Under a heap limit nothing
 * is cached: there, committed memory is meant to be exact.
 */
#include <string.h>

#include "policy/policy.h"
#include "shim/prof.h"
#include "shim/shim.h"

#define HUGE_CACHE_SLOTS 16
#define HUGE_CACHE_MIN   ((size_t)64 << 20)

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t huge_count, huge_bytes;         /* live */
static struct za_huge *cache[HUGE_CACHE_SLOTS];   /* oldest first */
static unsigned cache_n;
static size_t cache_bytes;
static uint64_t cache_hits;
static bool huge_recycled;   /* a huge block has been freed */
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
/* The last HUGE_FREED_SLOTS huge blocks freed, so a second free of one
 * (its mapping kept in the cache or unmapped, in no region either way) is
 * called a double free, not a foreign pointer. (A free of an address the
 * program has mapped there since is named so too: a misuse either way.) */
#define HUGE_FREED_SLOTS 64
static struct { uintptr_t base; size_t size; } freed_ring[HUGE_FREED_SLOTS];
static unsigned freed_next;

/* ---- the cache (huge_lock held) ---- */

static void __cache_remove(unsigned i)
{
	cache_bytes -= cache[i]->region.size;
	cache_n--;
	memmove(&cache[i], &cache[i + 1], (cache_n - i) * sizeof cache[0]);
}

/* The entry to reuse for `size` bytes: the smallest that holds it, else
 * the largest that holds at least half of it (to be grown); -1 if none. */
static int __cache_pick(size_t size)
{
	int fit = -1, grow = -1;
	for (unsigned i = 0; i < cache_n; i++) {
		size_t have = cache[i]->region.size;
		if (have >= size) {
			if (fit < 0 || have < cache[fit]->region.size)
				fit = (int)i;
		} else if (have >= size / 2 && (grow < 0 || have > cache[grow]->region.size)) {
			grow = (int)i;
		}
	}
	return fit >= 0 ? fit : grow;
}

static size_t __cache_cap(void)
{
	return huge_bytes / 8 > HUGE_CACHE_MIN ? huge_bytes / 8 : HUGE_CACHE_MIN;
}

/* ---- mappings ---- */

static void mapping_release(struct za_huge *h)
{
	void *base = (void *)h->region.base;
	size_t size = h->region.size;
	za_meta_free(h, sizeof *h);
	za_os_unmap(base, size);
	za_policy_uncharge(size >> ZA_PAGE_SHIFT);
}

/* Unmaps the entries taken off the cache, chained through `next_free`. */
static size_t release_chain(struct za_huge *h)
{
	size_t n = 0;
	while (h) {
		struct za_huge *next = h->next_free;
		mapping_release(h);
		h = next;
		n++;
	}
	return n;
}

/*
 * Gives the mapping of `h` the size `mapped`, keeping its contents: cut in
 * place, grown in place, or moved to a new aligned reservation. The extra
 * pages are charged first. False (nothing changed) when it cannot.
 */
static bool mapping_resize(struct za_huge *h, size_t mapped)
{
	void *base = (void *)h->region.base, *q;
	size_t old = h->region.size;
	if (mapped == old)
		return true;
	if (mapped < old) {
		/* On huge pages, cut at a 2 MiB boundary: a cut inside one
		 * splits it into 512 small ones (the mapping keeps the rest). */
		size_t huge = (size_t)ZA_PAGE_SIZE << ZA_THP_ORDER;
		if (h->thp && ((mapped + huge - 1) & ~(huge - 1)) < old)
			mapped = (mapped + huge - 1) & ~(huge - 1);
		else if (h->thp)
			return true;   /* (less than a huge page to cut) */
		za_os_unmap((char *)base + mapped, old - mapped);
		za_policy_uncharge((old - mapped) >> ZA_PAGE_SHIFT);
		h->region.size = mapped;
		return true;
	}
	size_t more = (mapped - old) >> ZA_PAGE_SHIFT;
	if (mapped > za_os_memory_max())
		return false;
	if (za_policy_charge(more, za_policy_current()) != ZA_OK)
		return false;
	if (za_os_remap(base, old, mapped, NULL, &q) != 0) {
		void *to;
		if (za_os_map_aligned(mapped, ZA_ZONE_SIZE, &to) != 0) {
			za_policy_uncharge(more);
			return false;
		}
		if (za_os_remap(base, old, mapped, to, &q) != 0) {
			za_os_unmap(to, mapped);
			za_policy_uncharge(more);
			return false;
		}
	}
	h->region.base = (uintptr_t)q;
	h->region.size = mapped;
	return true;
}

static size_t huge_drain(bool all);

static void hook_register(void)
{
	za_policy_register_drain(huge_drain);
}

/* Whether a huge mapping asks for huge pages now (os/thp.c: the modes).
 * Under reuse, from the first free of a huge block on: a fresh mapping
 * then, and a cached one when it is reused. */
static bool thp_wanted(void)
{
	return za_thp_mode == ZA_THP_MADVISE || za_thp_mode == ZA_THP_ALWAYS ||
	       (za_thp_mode == ZA_THP_REUSE && __atomic_load_n(&huge_recycled, __ATOMIC_RELAXED));
}

/* ---- the tier ---- */

static void *huge_alloc(size_t size, size_t align, bool zero);

/* One request for the policy's handler bounds: a cached mapping grown,
 * then a fresh one, may each charge the limit. */
void *za_huge_alloc(size_t size, size_t align, bool zero)
{
	za_policy_request_enter();
	void *p = huge_alloc(size, align, zero);
	za_policy_request_exit();
	return p;
}

static void *huge_alloc(size_t size, size_t align, bool zero)
{
	size_t mapped = (size + ZA_PAGE_SIZE - 1) & ~(ZA_PAGE_SIZE - 1);
	if (mapped < size || mapped >= ((size_t)1 << ZA_VA_BITS) ||
	    align >= ((size_t)1 << (ZA_VA_BITS - 1)))
		return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
	if (align < ZA_ZONE_SIZE)
		align = ZA_ZONE_SIZE;   /* region table slots start on zone bounds */

	struct za_huge *h = NULL;
	if (align == ZA_ZONE_SIZE && cache_n) {
		za_lock(&huge_lock);
		int i = __cache_pick(mapped);
		if (i >= 0) {
			h = cache[i];
			__cache_remove((unsigned)i);
			cache_hits++;
		}
		pthread_mutex_unlock(&huge_lock);
	}
	if (h) {
		size_t warm = h->region.size < mapped ? h->region.size : mapped;
		if (!h->thp && thp_wanted()) {
			za_os_thp_advise((void *)h->region.base, h->region.size, false);
			h->thp = true;
		}
		/* A larger mapping is cut to size: its tail's pages were
		 * touched, and kept they would be resident and unused. */
		if (mapping_resize(h, mapped)) {
			/* Used memory; what a grow added is fresh. */
			if (zero && !(h->reopened && za_os_decommit((void *)h->region.base, warm) == 0))
				memset((void *)h->region.base, 0, warm);
			goto publish;
		}
		mapping_release(h);
		h = NULL;
	}

	/* More than the machine's memory and swap: refused at once, as the
	 * kernel would without MAP_NORESERVE (os.c: za_os_memory_max). */
	if (mapped > za_os_memory_max())
		return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
	za_status st = za_policy_charge(mapped >> ZA_PAGE_SHIFT, za_policy_current());
	if (st != ZA_OK)
		return za_shim_nomem(st);
	h = za_meta_alloc(sizeof *h);
	void *base;
	int err = h ? za_os_map_aligned(mapped, align, &base) : ENOMEM;
	if (err) {
		za_meta_free(h, sizeof *h);
		za_policy_uncharge(mapped >> ZA_PAGE_SHIFT);
		return za_shim_nomem(err == ENOMEM ? ZA_ENOMEM_OS : ZA_ENOMEM_TOO_LARGE);
	}
	h->thp = thp_wanted();
	if (h->thp || za_thp_mode == ZA_THP_NEVER)
		za_os_thp_advise(base, mapped, false);
	h->region.base = (uintptr_t)base;
	h->region.size = mapped;
	h->region.kind = ZA_REGION_HUGE;
publish:
	h->usable = mapped;   /* (the mapping may be longer: cut at 2 MiB) */
	h->prof = NULL;
	h->guard = h->guard_freed = h->reopened = false;
	za_lock(&huge_lock);
	za_region_register(&h->region);
	huge_count++;
	huge_bytes += h->region.size;
	pthread_mutex_unlock(&huge_lock);
	return (void *)h->region.base;
}

void za_huge_free(struct za_huge *h)
{
	size_t size = h->region.size;
	struct za_huge *evict = NULL;
	bool kept = false;
	if (unlikely(h->prof)) {
		za_prof_forget(h->prof);
		h->prof = NULL;
	}
	pthread_once(&hook_once, hook_register);
	za_lock(&huge_lock);
	za_region_unregister(&h->region);
	huge_count--;
	huge_bytes -= size;
	freed_ring[freed_next].base = h->region.base;
	freed_ring[freed_next].size = size;
	freed_next = (freed_next + 1) % HUGE_FREED_SLOTS;
	__atomic_store_n(&huge_recycled, true, __ATOMIC_RELAXED);
	if (za_policy_budget(za_policy_current()) == SIZE_MAX && size <= __cache_cap()) {
		/* The oldest make room. */
		while (cache_n && (cache_n == HUGE_CACHE_SLOTS || cache_bytes + size > __cache_cap())) {
			struct za_huge *old = cache[0];
			__cache_remove(0);
			old->next_free = evict;
			evict = old;
		}
		h->freed_ms = za_now_ms_cheap();
		h->next_free = NULL;
		cache[cache_n++] = h;
		cache_bytes += size;
		kept = true;
	}
	pthread_mutex_unlock(&huge_lock);
	if (!kept)
		mapping_release(h);
	release_chain(evict);
}

/* realloc of a huge block to `size` (> ZA_RUN_MAX): in place, by a cut or
 * an mremap; NULL when the mapping cannot take that size. */
void *za_huge_resize(struct za_huge *h, size_t size)
{
	size_t mapped = (size + ZA_PAGE_SIZE - 1) & ~(ZA_PAGE_SIZE - 1);
	if (mapped < size || mapped >= ((size_t)1 << ZA_VA_BITS))
		return NULL;
	size_t old = h->region.size;
	if (mapped == old) {
		h->usable = mapped;
		return (void *)h->region.base;
	}
	za_lock(&huge_lock);
	za_region_unregister(&h->region);
	pthread_mutex_unlock(&huge_lock);
	bool ok = mapping_resize(h, mapped);
	za_lock(&huge_lock);
	if (ok) {
		huge_bytes += h->region.size - old;
		h->usable = mapped;
	}
	za_region_register(&h->region);
	pthread_mutex_unlock(&huge_lock);
	return ok ? (void *)h->region.base : NULL;
}

/* The policy's drain and decay: cached mappings that waited a decay time
 * (all of them when `all`) are unmapped. */
static size_t huge_drain(bool all)
{
	uint64_t now = za_now_ms(), decay = za_policy_decay_ms();
	struct za_huge *out = NULL;
	za_lock(&huge_lock);
	while (cache_n && (all || now - cache[0]->freed_ms >= decay)) {
		struct za_huge *h = cache[0];
		__cache_remove(0);
		h->next_free = out;
		out = h;
	}
	pthread_mutex_unlock(&huge_lock);
	return release_chain(out);
}

void za_huge_stats(struct za_huge_stats *st)
{
	za_lock(&huge_lock);
	st->count = huge_count;
	st->bytes = huge_bytes;
	st->cached = cache_n;
	st->cached_bytes = cache_bytes;
	st->reused = cache_hits;
	pthread_mutex_unlock(&huge_lock);
}

void za_huge_lock_all(void)
{
	za_lock(&huge_lock);
}

void za_huge_unlock_all(void)
{
	pthread_mutex_unlock(&huge_lock);
}

size_t za_huge_freed_size(const void *p)
{
	size_t size = 0;
	za_lock(&huge_lock);
	for (unsigned i = 0; i < HUGE_FREED_SLOTS; i++)
		if (freed_ring[i].base == (uintptr_t)p && freed_ring[i].size)
			size = freed_ring[i].size;
	pthread_mutex_unlock(&huge_lock);
	return size;
}

void za_huge_reset_child(void)
{
	pthread_mutex_init(&huge_lock, NULL);
}
