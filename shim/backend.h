/*
 * Backends: who serves new requests (shim/backend.c). zonealloc's own
 * tiers by default; Debian's libmimalloc or glibc's allocator when chosen
 * (ZONEALLOC_BACKEND), or from the moment zones can no longer be mapped
 * (the fallback). zonealloc's layer stays on top either way: the exit
 * report, the za_* API, the limit, typed ENOMEM; frees go to whoever owns
 * the pointer (the region table knows ours).
 */
#ifndef ZA_BACKEND_H
#define ZA_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

enum za_backend_kind { ZA_BACKEND_ZONEALLOC = 0, ZA_BACKEND_MIMALLOC, ZA_BACKEND_LIBC };

/* Set once: 0 while zonealloc serves, else the backend that does. */
extern _Atomic int za_backend_serving_kind ZA_HIDDEN;

static inline bool za_backend_serving(void)
{
	return unlikely(atomic_load_explicit(&za_backend_serving_kind, memory_order_acquire) != 0);
}

/* At start-up (the preload's init; a program linked with libza_core alone
 * has neither backends nor the fallback): the backend the options chose,
 * whether zonealloc may fall back, and whether to say what happens. */
void za_backend_init(enum za_backend_kind kind, bool allow_fallback, bool verbose);
/* A request for the backend serving now: size bytes aligned to align
 * (zeroed when zero); NULL and a typed status when it fails. */
void *za_backend_alloc(size_t size, size_t align, bool zero);
/* A request zonealloc could not serve: NULL unless zones can no longer be
 * mapped (ZA_ENOMEM_OS) and a fallback backend can be loaded, which then
 * serves this request and every later one. */
void *za_backend_fallback(size_t size, size_t align, bool zero);
/* p is not zonealloc's: is it the backend's (when there is one)? */
bool za_backend_owns(const void *p);
void za_backend_free(void *p);
void *za_backend_realloc(void *p, size_t size);
size_t za_backend_usable_size(void *p);

struct za_backend_stats {
	const char *name;      /* "zonealloc", "mimalloc" or "libc" */
	bool fallback;         /* serving since zones could not be mapped */
	uint64_t allocs, frees;
	size_t live_bytes;
};
void za_backend_stats_get(struct za_backend_stats *st);

#endif
