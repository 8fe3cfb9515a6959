/*
 * Backends (backend.h). mimalloc is dlopen'ed with RTLD_LOCAL, so its own
 * malloc never interposes ours and a program preloading zonealloc starts
 * whether or not libmimalloc is installed; glibc's allocator is the
 * definition of malloc in libc.so.6 itself. Both are looked up once; after
 * that a backend call is an indirect call and a counter.
 *
 * The limit (ZONEALLOC_LIMIT) covers the backend's bytes too: a backend
 * allocation that would take committed memory plus the backend's live
 * bytes past the limit (less the reserve) fails with ZA_ENOMEM_LIMIT.
 */
#include "shim/backend.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "shim/shim.h"

_Atomic int za_backend_serving_kind;

struct ops {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*realloc)(void *, size_t);
	void *(*memalign)(size_t align, size_t size);    /* libc */
	void *(*mi_aligned_at)(size_t size, size_t align, size_t offset);  /* mimalloc */
	size_t (*usable)(void *);
};
/* mimalloc's, and glibc's. glibc's are looked up at start-up (it is
 * loaded already): they are the fallback where mimalloc is missing, and
 * they serve what loading mimalloc allocates while zonealloc cannot; those
 * few blocks are remembered (by the dynamic loader: tens), because once a
 * backend serves, every pointer that is not zonealloc's is taken to be
 * the backend's (mimalloc cannot tell its own pointers from others').
 */
static struct ops mi_ops, libc_ops;
#define LOADING_MAX 256
static void *_Atomic loading_blocks[LOADING_MAX];
static uintptr_t loading_lo = UINTPTR_MAX, loading_hi;
static unsigned loading_n;
static _Atomic int loaded_kind;   /* the ops serving: set (release) once */
static bool fallback, fallback_on, verbose_on;
static enum za_backend_kind chosen;
static _Atomic uint64_t n_allocs, n_frees;
static _Atomic size_t live_bytes;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread bool loading;

static const char *const names[] = { "zonealloc", "mimalloc", "libc" };
#define MIMALLOC_SONAME "libmimalloc.so.2"

static bool load_mimalloc(void)
{
	void *h = dlopen(MIMALLOC_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return false;
	struct ops o = { 0 };
	*(void **)&o.malloc = dlsym(h, "mi_malloc");
	*(void **)&o.free = dlsym(h, "mi_free");
	*(void **)&o.realloc = dlsym(h, "mi_realloc");
	/* Not mi_malloc_aligned: in Debian's mimalloc 2.0.9 it returns a
	 * misaligned block now and then (about 1 in 8000 in a test of
	 * threads taking 16 B - 4 KiB alignments); its _at form with offset
	 * 0 takes another path and does not. */
	*(void **)&o.mi_aligned_at = dlsym(h, "mi_malloc_aligned_at");
	*(void **)&o.usable = dlsym(h, "mi_usable_size");
	if (!(o.malloc && o.free && o.realloc && o.mi_aligned_at && o.usable))
		return false;
	mi_ops = o;
	return true;
}

/* glibc's own definitions, in libc.so.6 (a program linked with
 * libzonealloc.a has them too; a static program has none). */
static void resolve_libc(void)
{
	void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!h)
		return;
	struct ops o = { 0 };
	*(void **)&o.malloc = dlsym(h, "malloc");
	*(void **)&o.free = dlsym(h, "free");
	*(void **)&o.realloc = dlsym(h, "realloc");
	*(void **)&o.memalign = dlsym(h, "memalign");
	*(void **)&o.usable = dlsym(h, "malloc_usable_size");
	if (o.malloc && o.free && o.realloc && o.memalign && o.usable)
		libc_ops = o;
}

static bool loading_block(const void *p, bool forget)
{
	if ((uintptr_t)p < loading_lo || (uintptr_t)p > loading_hi)
		return false;
	for (unsigned i = 0; i < loading_n; i++)
		if (atomic_load_explicit(&loading_blocks[i], memory_order_relaxed) == p) {
			if (forget)
				atomic_store_explicit(&loading_blocks[i], NULL, memory_order_relaxed);
			return true;
		}
	return false;
}

/* Which ops own p, a pointer that is not zonealloc's; NULL: nobody's (no
 * backend has served: it is misuse). */
static const struct ops *owner_of(const void *p)
{
	int kind = atomic_load_explicit(&loaded_kind, memory_order_acquire);
	if (loading_block(p, false))
		return &libc_ops;
	return kind == ZA_BACKEND_MIMALLOC ? &mi_ops : kind == ZA_BACKEND_LIBC ? &libc_ops : NULL;
}

static const struct ops *serving_ops(void)
{
	return atomic_load_explicit(&loaded_kind, memory_order_acquire) == ZA_BACKEND_MIMALLOC &&
			       !loading
		       ? &mi_ops
		       : &libc_ops;
}

/* Makes `kind` the serving backend, once; false if it cannot be loaded. */
static bool load(enum za_backend_kind kind)
{
	if (atomic_load_explicit(&loaded_kind, memory_order_acquire))
		return atomic_load_explicit(&loaded_kind, memory_order_relaxed) == (int)kind;
	if (loading)
		return false;
	za_lock(&load_lock);
	bool ok = atomic_load(&loaded_kind) == (int)kind;
	if (!atomic_load(&loaded_kind)) {
		if (kind == ZA_BACKEND_MIMALLOC) {
			/* What dlopen allocates while zonealloc cannot serve it
			 * goes to glibc (serving_ops while `loading`). */
			loading = true;
			ok = load_mimalloc();
			loading = false;
		} else {
			ok = libc_ops.malloc != NULL;
		}
		if (ok)
			atomic_store_explicit(&loaded_kind, (int)kind, memory_order_release);
	}
	pthread_mutex_unlock(&load_lock);
	return ok;
}

/* The slab tier's requests it cannot serve, or that a thread without a
 * heap makes (slab.h): the class's size, aligned as the class's objects
 * are in a slab (za_shim_aligned picks classes by that) unless the
 * backend was chosen, when za_shim_aligned goes to it directly. */
static void *divert(unsigned cls)
{
	size_t size = za_classes[cls].size;
	size_t align = size & (0 - size);
	if (align > ZA_PAGE_SIZE)
		align = ZA_PAGE_SIZE;
	if (za_backend_serving())
		return za_backend_alloc(size, fallback ? align : 16, false);
	return za_backend_fallback(size, align, false);
}

void za_backend_init(enum za_backend_kind kind, bool allow_fallback, bool verbose)
{
	verbose_on = verbose;
	fallback_on = allow_fallback;
	chosen = kind;
	resolve_libc();
	za_slab_divert = divert;
	if (kind == ZA_BACKEND_ZONEALLOC)
		return;
	if (!load(kind)) {
		za_dprintf(2, "zonealloc: ZONEALLOC_BACKEND=%s: %s cannot be loaded; zonealloc serves\n",
			   names[kind], kind == ZA_BACKEND_MIMALLOC ? MIMALLOC_SONAME : "glibc's malloc");
		chosen = ZA_BACKEND_ZONEALLOC;
		return;
	}
	/* From here on no thread gets a heap; the calling thread's goes to
	 * the orphan pool, its objects still zonealloc's to free. */
	atomic_store(&za_slab_no_heaps, true);
	atomic_store_explicit(&za_backend_serving_kind, (int)kind, memory_order_release);
	__atomic_store_n(&za_shim_run_max, 0, __ATOMIC_RELEASE);
	za_slab_detach_heap();
	if (verbose)
		za_dprintf(2, "zonealloc: backend %s serves new allocations (ZONEALLOC_BACKEND)\n",
			   names[kind]);
}

static bool limit_allows(size_t bytes)
{
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	if (likely(!wm.limit))
		return true;
	const struct za_policy *policy = za_policy_current();
	size_t allowed = (wm.limit - (policy->may_use_reserve ? 0 : wm.min)) << ZA_PAGE_SHIFT;
	int64_t committed = atomic_load_explicit(&za_committed_pages, memory_order_relaxed);
	size_t used = (committed > 0 ? (size_t)committed << ZA_PAGE_SHIFT : 0) +
		      atomic_load_explicit(&live_bytes, memory_order_relaxed);
	return used <= allowed && bytes <= allowed - used;
}

static void *backend_alloc(const struct ops *o, size_t size, size_t align, bool zero)
{
	if (!limit_allows(size))
		return za_shim_nomem(ZA_ENOMEM_LIMIT);
	void *p = align > 16 ? (o->mi_aligned_at ? o->mi_aligned_at(size, align, 0)
						 : o->memalign(align, size))
			     : o->malloc(size < 16 ? 16 : size);   /* (as realloc, below) */
	if (!p)
		return za_shim_nomem(ZA_ENOMEM_OS);
	size_t usable = o->usable(p);
	if (zero)
		memset(p, 0, usable < size ? usable : size);
	atomic_fetch_add_explicit(&live_bytes, usable, memory_order_relaxed);
	atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
	return p;
}

void *za_backend_alloc(size_t size, size_t align, bool zero)
{
	return backend_alloc(serving_ops(), size, align, zero);
}

/* The OS refused a new zone: ZA_ENOMEM_OS, or, without a limit (which
 * bounds the zones' span), ZA_ENOMEM_FRAGMENTED, which then means the
 * free pages left are in pieces and no zone could be added. */
static bool zones_refused(void)
{
	za_status st = za_last_status();
	if (st == ZA_ENOMEM_OS)
		return true;
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	return st == ZA_ENOMEM_FRAGMENTED && !wm.limit;
}

void *za_backend_fallback(size_t size, size_t align, bool zero)
{
	if (!fallback_on || chosen != ZA_BACKEND_ZONEALLOC || !zones_refused())
		return NULL;
	if (loading) {
		/* dlopen of mimalloc (load_lock held), below: glibc serves,
		 * and the block is remembered as glibc's. */
		if (!libc_ops.malloc || loading_n == LOADING_MAX)
			return NULL;
		void *p = backend_alloc(&libc_ops, size, align, zero);
		if (p) {
			atomic_store_explicit(&loading_blocks[loading_n++], p, memory_order_relaxed);
			if ((uintptr_t)p < loading_lo)
				loading_lo = (uintptr_t)p;
			if ((uintptr_t)p > loading_hi)
				loading_hi = (uintptr_t)p;
		}
		return p;
	}
	if (!za_backend_serving()) {
		za_status why = za_last_status();
		if (!load(ZA_BACKEND_MIMALLOC) && !load(ZA_BACKEND_LIBC))
			return NULL;
		int expected = 0;
		int kind = atomic_load(&loaded_kind);
		if (atomic_compare_exchange_strong(&za_backend_serving_kind, &expected, kind)) {
			fallback = true;
			__atomic_store_n(&za_shim_run_max, 0, __ATOMIC_RELEASE);
			if (verbose_on)
				za_dprintf(2, "zonealloc: the OS refused to map a new zone (%s): "
					      "new allocations go to %s from now on\n",
					   why == ZA_ENOMEM_OS ? "mmap failed"
							       : "mmap failed, and the free pages left are in pieces",
					   names[kind]);
		}
	}
	za_tls_status_clear();
	return za_backend_alloc(size, align, zero);
}

bool za_backend_owns(const void *p)
{
	return owner_of(p) != NULL;
}

void za_backend_free(void *p)
{
	const struct ops *o = loading_block(p, true) ? &libc_ops : owner_of(p);
	size_t usable = o->usable(p);
	o->free(p);
	atomic_fetch_sub_explicit(&live_bytes, usable, memory_order_relaxed);
	atomic_fetch_add_explicit(&n_frees, 1, memory_order_relaxed);
}

void *za_backend_realloc(void *p, size_t size)
{
	const struct ops *o = owner_of(p);
	size_t old = o->usable(p);
	if (size > old && !limit_allows(size - old))
		return za_shim_nomem(ZA_ENOMEM_LIMIT);
	/* malloc's 16-byte alignment: mimalloc keeps blocks under 16 bytes
	 * 8-byte aligned. */
	void *q = o->realloc(p, size < 16 ? 16 : size);
	if (!q)
		return za_shim_nomem(ZA_ENOMEM_OS);
	size_t usable = o->usable(q);
	atomic_fetch_add_explicit(&live_bytes, usable - old, memory_order_relaxed);
	return q;
}

size_t za_backend_usable_size(void *p)
{
	return owner_of(p)->usable(p);
}

void za_backend_stats_get(struct za_backend_stats *st)
{
	st->name = names[atomic_load(&za_backend_serving_kind)];
	st->fallback = fallback;
	st->allocs = atomic_load(&n_allocs);
	st->frees = atomic_load(&n_frees);
	st->live_bytes = atomic_load(&live_bytes);
}
