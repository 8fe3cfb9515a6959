/*
 * zonealloc — a process heap for Linux built on a zoned buddy page allocator.
 *
 * This is the whole public API. Everything here is exported from
 * libzonealloc.so and libzonealloc.a; nothing else is.
 */
#ifndef ZONEALLOC_H
#define ZONEALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZA_PAGE_SHIFT 12
#define ZA_PAGE_SIZE  ((size_t)1 << ZA_PAGE_SHIFT)

/* Orders 0 .. ZA_MAX_ORDER-1: the largest buddy block is 2^10 pages = 4 MiB. */
#define ZA_MAX_ORDER  11

/*
 * Outcome of an allocation. The malloc family turns every ZA_ENOMEM_* into
 * NULL + errno = ENOMEM; the za_* calls that take a `za_status *` say which.
 */
typedef enum za_status {
	ZA_OK = 0,
	ZA_ENOMEM_LIMIT,      /* the heap limit or a reserve rule forbids it */
	ZA_ENOMEM_OS,         /* the kernel refused to map more memory */
	ZA_ENOMEM_TOO_LARGE,  /* size, order or alignment can never be served */
	ZA_ENOMEM_FRAGMENTED, /* pages are free, but no block of the order */
	ZA_EINVAL,            /* contradictory flags or an invalid argument */
	ZA_STATUS_COUNT
} za_status;

/*
 * Caller intent. These say what the caller needs, never how the heap gets
 * it: one function (policy/policy.c) turns them into an allocation policy.
 */
typedef unsigned int za_flags;
#define ZA_F_NONE    0x00u
#define ZA_F_ZERO    0x01u /* memory reads as zero */
#define ZA_F_NOFAIL  0x02u /* retry until it succeeds; may block */
#define ZA_F_NORETRY 0x04u /* one attempt after the fast path, then fail */
#define ZA_F_ATOMIC  0x08u /* no reclaim, no draining, no blocking */
#define ZA_F_HIGH    0x10u /* may dip into the reserve below the min mark */
#define ZA_F_NOWARN  0x20u /* do not count a failure as a warning */
#define ZA_F_ALL     0x3fu

const char *za_status_str(za_status status);

/* The outcome of this thread's last failed allocation (plain malloc's
 * callers see only NULL and ENOMEM). */
za_status za_last_status(void);

/* The malloc family, under the za_ prefix: the same functions libzonealloc
 * exports as malloc, free, ... when it replaces the process heap. */
void *za_malloc(size_t size);
void za_free(void *ptr);
void *za_calloc(size_t nmemb, size_t size);
void *za_realloc(void *ptr, size_t size);
void *za_reallocarray(void *ptr, size_t nmemb, size_t size);
void *za_memalign(size_t alignment, size_t size);
int za_posix_memalign(void **out, size_t alignment, size_t size);
void *za_aligned_alloc(size_t alignment, size_t size);
void *za_valloc(size_t size);
void *za_pvalloc(size_t size);
size_t za_malloc_usable_size(void *ptr);
void za_free_sized(void *ptr, size_t size);
void za_free_aligned_sized(void *ptr, size_t alignment, size_t size);
int za_malloc_trim(size_t pad);

/* Page allocator: blocks of 2^order pages, aligned to their size. */
void *za_alloc_pages(unsigned int order, za_flags flags, za_status *status);
void za_free_pages(void *block, unsigned int order);

/* Exact runs of npages pages (page aligned); waste is under one page. */
void *za_alloc_pages_exact(size_t npages, za_flags flags, za_status *status);
void za_free_pages_exact(void *run, size_t npages);

/* Hands every page held in per-thread caches back to the zones. */
void za_drain_caches(void);

/*
 * Any size and alignment (a power of two, or 0) under the caller's intent:
 * ZA_F_ZERO zeroes, ZA_F_HIGH may use the reserve, ZA_F_NOFAIL waits until
 * it succeeds, ZA_F_ATOMIC neither reclaims nor blocks... The outcome is in
 * *status (if not NULL); errno is left alone.
 */
void *za_alloc(size_t size, size_t align, za_flags flags, za_status *status);

/*
 * Caps committed memory (allocated plus retained free pages, plus huge
 * mappings) at `bytes`; 0 removes the cap. Normal allocations stop 1/32
 * below it (the min watermark); ZA_F_HIGH and ZA_F_NOFAIL may use that
 * reserve. The same as ZONEALLOC_LIMIT.
 */
void za_set_limit(size_t bytes);

/* Gives every free page the heap can spare back to the OS now (what
 * malloc_trim does); returns the bytes released. */
size_t za_reclaim(void);

/*
 * Shrinkers: the program's own caches as memory the heap may ask for back
 * (the kernel's shrinker contract). `count` says how many bytes the cache
 * could free now; `scan` frees about `bytes` of them (with free()) and
 * says how many it freed. When the heap is short (under a limit, or when
 * the OS refuses memory), reclaim asks the shrinkers in registration order
 * for what its own free pages do not cover: the background reclaimer below
 * the low watermark, and the allocation slow path before it fails. The
 * callbacks may free and allocate; an allocation inside one never calls
 * the shrinkers again. The background reclaimer (ZONEALLOC_BACKGROUND)
 * calls them from its own thread, so a cache shared with the program's
 * threads needs its lock. At most 16. Returns an id (>= 0), or -1 with
 * errno EINVAL (a NULL callback) or ENOSPC.
 */
typedef size_t (*za_shrink_count_fn)(void *arg);
typedef size_t (*za_shrink_scan_fn)(void *arg, size_t bytes);
int za_register_shrinker(za_shrink_count_fn count, za_shrink_scan_fn scan, void *arg);
/* Removes shrinker `id`; waits for a round that may be calling it (unless
 * called from a callback). Returns 0, or -1 with errno EINVAL. */
int za_unregister_shrinker(int id);

/*
 * The OOM handler: called last, when an allocation of `size` bytes is about
 * to fail with `status` after reclaim, draining and the shrinkers. It frees
 * what it can and returns true to try again, false to fail. Without
 * ZA_F_NOFAIL the handler is asked at most 16 times in one allocation call
 * (however many slow paths it runs), each "true" a new try; with ZA_F_NOFAIL the handler is called every round,
 * which never ends in failure. NULL removes it.
 */
typedef bool (*za_oom_fn)(void *arg, size_t size, za_status status);
void za_set_oom_handler(za_oom_fn fn, void *arg);

/*
 * Cooperative compaction: the program moves objects the heap points out
 * (as Redis and Valkey do with jemalloc). za_defrag_hint(p) is true when
 * moving p would help: its slab is under three quarters used and is not
 * the one allocations go to. za_defrag_alloc(size) allocates from the
 * fullest slab of the class with room, so moved objects pack together;
 * za_defrag_free(p) frees the old copy. Emptied slabs go back to the buddy
 * core (za_reclaim() returns their pages to the OS at once).
 */
bool za_defrag_hint(const void *p);
void *za_defrag_alloc(size_t size);
void za_defrag_free(void *p);

/*
 * The compaction hook: called when an allocation of `size` bytes is about
 * to fail with ZA_ENOMEM_FRAGMENTED (pages enough, no block large enough),
 * after the caches were drained. The program moves what it can (the defrag
 * calls above) and returns true if it moved anything; the allocation is
 * then tried again; the hook is asked at most 16 times in one allocation
 * call. NULL removes it.
 */
typedef bool (*za_compact_fn)(void *arg, size_t size);
void za_set_compaction_hook(za_compact_fn fn, void *arg);

/*
 * Walks every zone and verifies the buddy invariants (see buddy/check.c).
 * Returns 0 when all hold. Otherwise returns -1 and, if `result` is not
 * NULL, fills it with the first broken invariant.
 */
struct za_check_result {
	int zone;           /* zone index, or -1 for global state */
	uintptr_t pfn;      /* page frame number within the zone */
	int order;          /* order involved, or -1 */
	char what[128];     /* which invariant, in words */
};
int za_buddy_check(struct za_check_result *result);

/* Heap statistics, a consistent-enough snapshot (counters are not frozen). */
struct za_stats {
	size_t zones;                 /* zones mapped now */
	size_t zones_mapped_total;    /* zones ever mapped */
	size_t zones_unmapped_total;  /* zones returned to the OS */
	size_t pages_total;           /* pages in all zones */
	size_t pages_free;            /* pages on buddy free lists */
	size_t pages_cached;          /* pages in per-thread caches */
	size_t free_blocks[ZA_MAX_ORDER]; /* free blocks per order */
	uint64_t splits;              /* blocks halved by expand() */
	uint64_t merges;              /* buddy pairs joined by free_one() */
	uint64_t alloc_calls[ZA_MAX_ORDER];
	uint64_t free_calls[ZA_MAX_ORDER];
	uint64_t enomem[ZA_STATUS_COUNT]; /* failures by outcome */
	uint64_t slowpath_rounds;     /* rounds through the allocation slow path */
	uint64_t cache_drains;        /* per-thread caches drained */
	size_t committed_bytes;       /* allocated + retained free + huge */
	size_t limit_bytes;           /* ZONEALLOC_LIMIT / za_set_limit, 0: none */
	size_t pages_released;        /* free pages given back to the OS */
	uint64_t reclaim_passes;      /* reclaim passes (decay, direct, trim) */
	uint64_t reclaimed_pages;     /* pages released by madvise, in all */
	uint64_t madvise_calls;
	uint64_t decay_passes;
	uint64_t direct_reclaim_pages;
	uint64_t background_wakeups;
	/* The backend serving new allocations (ZONEALLOC_BACKEND, or the
	 * fallback when zones could no longer be mapped) and what it holds. */
	const char *backend;          /* "zonealloc", "mimalloc" or "libc" */
	int backend_fallback;         /* 1: serving since zones could not be mapped */
	uint64_t backend_allocs, backend_frees;
	size_t backend_bytes;         /* live bytes in the backend's blocks */
	/* 2 MiB pageblocks by the kind of allocation they hold (slabs, page
	 * runs, the reserve's) and wholly free ones (in all zones, the
	 * unlisted rest of a zone included); allocations that fell back to
	 * another kind's pageblock, and pageblocks those claimed whole. */
	size_t pageblocks_slab, pageblocks_run, pageblocks_reserve, pageblocks_free;
	uint64_t pageblock_fallbacks, pageblock_claims;
};
void za_stats_get(struct za_stats *stats);

/* Writes the heap report (as ZONEALLOC_STATS=1 prints at exit) to fd. */
void za_stats_print(int fd);
/* The same as one JSON object (ZONEALLOC_STATS=json), schema
 * "zonealloc.stats" version 1, described in the README. */
void za_stats_print_json(int fd);

/* Writes the sampled heap profile (ZONEALLOC_PROF=1) to `path`, in the
 * gperftools heap-profile format: the live sampled allocations by stack.
 * 0, or -1 with errno. With profiling off the profile is empty. */
int za_prof_dump(const char *path);

/* Writes every ZONEALLOC_* option, its default, what it accepts and what
 * it does, one entry per option, to fd (the launcher's --options). Only in
 * libzonealloc.so and libzonealloc.a, which read the options. */
void za_options_print(int fd);
/* Checks the ZONEALLOC_* variables of the environment as the library
 * reads them at start-up, without applying them: one line on fd per value
 * it would refuse; returns how many. */
int za_options_validate(int fd);

#ifdef __cplusplus
}
#endif

#endif /* ZONEALLOC_H */
