/*
 * The malloc family as za_* functions: the public names of the shim's
 * entry points. preload/malloc.c exports the same bodies under the glibc
 * names. errno changes only on failure.
 */
#include <string.h>

#include "policy/policy.h"
#include "shim/shim.h"
#include "shim/trace.h"

ZA_EXPORT void *za_malloc(size_t size)
{
	return za_shim_malloc(size);
}

ZA_EXPORT void za_free(void *ptr)
{
	za_shim_free(ptr);
}

ZA_EXPORT void *za_calloc(size_t nmemb, size_t size)
{
	return za_shim_calloc(nmemb, size);
}

ZA_EXPORT void *za_realloc(void *ptr, size_t size)
{
	return za_shim_realloc(ptr, size);
}

ZA_EXPORT void *za_reallocarray(void *ptr, size_t nmemb, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(nmemb, size, &total))
		return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
	return za_shim_realloc(ptr, total);
}

/* glibc rounds a memalign alignment that is not a power of two up to one. */
ZA_EXPORT void *za_memalign(size_t alignment, size_t size)
{
	if (alignment & (alignment - 1)) {
		if (alignment > ((size_t)1 << 62))
			return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
		alignment = (size_t)1 << (64 - __builtin_clzll(alignment));
	}
	return za_shim_aligned(alignment, size);
}

ZA_EXPORT int za_posix_memalign(void **out, size_t alignment, size_t size)
{
	if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
		return EINVAL;
	int saved = errno;
	void *p = za_shim_aligned(alignment, size);
	errno = saved;   /* posix_memalign reports through its result only */
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

ZA_EXPORT void *za_aligned_alloc(size_t alignment, size_t size)
{
	if (alignment == 0 || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	return za_shim_aligned(alignment, size);
}

ZA_EXPORT void *za_valloc(size_t size)
{
	return za_shim_aligned(ZA_PAGE_SIZE, size);
}

ZA_EXPORT void *za_pvalloc(size_t size)
{
	size_t rounded = (size + ZA_PAGE_SIZE - 1) & ~(ZA_PAGE_SIZE - 1);
	if (rounded < size)
		return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
	return za_shim_aligned(ZA_PAGE_SIZE, rounded ? rounded : ZA_PAGE_SIZE);
}

ZA_EXPORT size_t za_malloc_usable_size(void *ptr)
{
	return za_shim_usable_size(ptr, "malloc_usable_size");
}

ZA_EXPORT void za_free_sized(void *ptr, size_t size)
{
	za_shim_free_sized(ptr, 0, size, "free_sized");
}

ZA_EXPORT void za_free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
	za_shim_free_sized(ptr, alignment, size, "free_aligned_sized");
}

ZA_EXPORT int za_malloc_trim(size_t pad)
{
	(void)pad;
	return za_shim_trim();
}

/* Any size and alignment, with the caller's intent: small requests still
 * come from the slabs, but a slab or run that must be taken from the buddy
 * core is taken under the caller's policy. */
ZA_EXPORT void *za_alloc(size_t size, size_t align, za_flags flags, za_status *status)
{
	if (unlikely(za_trace_on)) {
		struct za_trace_call c;
		if (za_trace_begin(&c)) {
			void *p = za_alloc(size, align, flags, status);
			za_trace_end(&c, ZA_TOP_ZA_ALLOC, p, size, flags, align,
				     p ? 0 : ZA_TRACE_FAILED);
			return p;
		}
	}
	struct za_policy policy;
	za_status st = za_policy_from_flags(flags, &policy);
	if (st == ZA_OK && (align & (align - 1)))
		st = ZA_EINVAL;
	if (st != ZA_OK) {
		/* Counted and remembered whether or not the caller asked. */
		st = za_policy_outcome(st, NULL);
		if (status)
			*status = st;
		return NULL;
	}
	const struct za_policy *saved;
	int saved_errno = errno;
	za_tls_status_clear();
	za_policy_push(&policy, &saved);
	void *p = policy.zero ? (align <= 16 ? za_shim_calloc(1, size) : za_shim_aligned(align, size))
			      : za_shim_aligned(align, size);
	za_policy_pop(saved);
	if (p && policy.zero && align > 16)
		memset(p, 0, size);
	errno = saved_errno;
	if (status) {
		za_status last = za_last_status();
		*status = p ? ZA_OK : last != ZA_OK ? last : ZA_ENOMEM_OS;
	}
	return p;
}

/* The page calls (policy/alloc.c), recorded while calls are traced. */
ZA_EXPORT void *za_alloc_pages(unsigned int order, za_flags flags, za_status *status)
{
	struct za_trace_call c;
	if (likely(!za_trace_on) || !za_trace_begin(&c))
		return za_policy_alloc_pages(order, flags, status);
	void *p = za_policy_alloc_pages(order, flags, status);
	size_t bytes = order < ZA_MAX_ORDER ? ZA_PAGE_SIZE << order : 0;
	za_trace_end(&c, ZA_TOP_ALLOC_PAGES, p, bytes, flags, bytes, p ? 0 : ZA_TRACE_FAILED);
	return p;
}

ZA_EXPORT void za_free_pages(void *block, unsigned int order)
{
	struct za_trace_call c;
	if (likely(!za_trace_on) || !block || !za_trace_begin(&c)) {
		za_policy_free_pages(block, order);
		return;
	}
	za_policy_free_pages(block, order);
	za_trace_end(&c, ZA_TOP_FREE_PAGES, block, ZA_PAGE_SIZE << order, 0, 0, 0);
}

ZA_EXPORT void *za_alloc_pages_exact(size_t npages, za_flags flags, za_status *status)
{
	struct za_trace_call c;
	if (likely(!za_trace_on) || !za_trace_begin(&c))
		return za_policy_alloc_pages_exact(npages, flags, status);
	void *p = za_policy_alloc_pages_exact(npages, flags, status);
	za_trace_end(&c, ZA_TOP_ALLOC_PAGES, p, npages * ZA_PAGE_SIZE, flags, ZA_PAGE_SIZE,
		     p ? 0 : ZA_TRACE_FAILED);
	return p;
}

ZA_EXPORT void za_free_pages_exact(void *run, size_t npages)
{
	struct za_trace_call c;
	if (likely(!za_trace_on) || !run || !za_trace_begin(&c)) {
		za_policy_free_pages_exact(run, npages);
		return;
	}
	za_policy_free_pages_exact(run, npages);
	za_trace_end(&c, ZA_TOP_FREE_PAGES, run, npages * ZA_PAGE_SIZE, 0, 0, 0);
}
