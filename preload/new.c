/*
 * C++'s replaceable operator new and delete, under their Itanium-ABI names,
 * so a C++ program reaches the heap directly instead of through
 * libstdc++'s wrappers (which drop the size of a sized delete and call
 * malloc and free). Written in C: the library must not need libstdc++,
 * which C programs would then load too. What only C++ can do (throw
 * std::bad_alloc, ask for the new_handler) goes through libstdc++'s own
 * exported functions, referenced weakly: any program that calls these
 * operators has them.
 *
 * Semantics (the standard's, [new.delete]): a throwing new calls the
 * new_handler in a loop while allocation fails and throws std::bad_alloc
 * when there is none; a nothrow new does the same but returns NULL where
 * the other throws. A sized or aligned delete whose size or alignment does
 * not match the allocation is misuse, and reported as such.
 */
#include <stddef.h>

#include "shim/shim.h"

typedef void (*za_new_handler)(void);
/* std::get_new_handler() and std::__throw_bad_alloc(), from libstdc++. */
extern za_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

/* The allocation failed: true to try again (a new_handler ran), false to
 * give up (no handler: nothrow returns NULL). */
static ZA_NOINLINE bool new_retry(void)
{
	za_new_handler h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
	if (!h)
		return false;
	h();
	return true;
}

static ZA_NOINLINE __attribute__((noreturn)) void new_throw(size_t size)
{
	if (_ZSt17__throw_bad_allocv)
		_ZSt17__throw_bad_allocv();
	za_fatal("operator new(%zu): out of memory, and no C++ runtime to throw std::bad_alloc", size);
}

static ZA_NOINLINE void *new_slow(size_t size, size_t align, bool nothrow)
{
	for (;;) {
		void *p = align ? za_shim_aligned(align, size) : za_shim_malloc(size);
		if (p)
			return p;
		if (!new_retry()) {
			if (nothrow)
				return NULL;
			new_throw(size);
		}
	}
}

static inline void *new_fast(size_t size)
{
	void *p = za_shim_malloc(size);
	return likely(p) ? p : new_slow(size, 0, false);
}

/* align_val_t: a power of two, by the standard's precondition; anything
 * else is misuse. */
static size_t new_align(size_t align, const char *call)
{
	if (unlikely(!align || (align & (align - 1))))
		za_fatal("%s: alignment %zu is not a power of two", call, align);
	return align;
}

#define NEW(name) ZA_EXPORT void *name
#define DELETE(name) ZA_EXPORT void name

/* The prototypes: C never declares these names. */
void *_Znwm(size_t);
void *_Znam(size_t);
void *_ZnwmRKSt9nothrow_t(size_t, const void *);
void *_ZnamRKSt9nothrow_t(size_t, const void *);
void *_ZnwmSt11align_val_t(size_t, size_t);
void *_ZnamSt11align_val_t(size_t, size_t);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t, size_t, const void *);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t, size_t, const void *);
void _ZdlPv(void *);
void _ZdaPv(void *);
void _ZdlPvm(void *, size_t);
void _ZdaPvm(void *, size_t);
void _ZdlPvRKSt9nothrow_t(void *, const void *);
void _ZdaPvRKSt9nothrow_t(void *, const void *);
void _ZdlPvSt11align_val_t(void *, size_t);
void _ZdaPvSt11align_val_t(void *, size_t);
void _ZdlPvmSt11align_val_t(void *, size_t, size_t);
void _ZdaPvmSt11align_val_t(void *, size_t, size_t);
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *, size_t, const void *);
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *, size_t, const void *);

/* operator new(size_t), new[](size_t) */
NEW(_Znwm)(size_t size) { return new_fast(size); }
NEW(_Znam)(size_t size) { return new_fast(size); }
/* operator new(size_t, const nothrow_t&) */
NEW(_ZnwmRKSt9nothrow_t)(size_t size, const void *nt)
{
	(void)nt;
	void *p = za_shim_malloc(size);
	return likely(p) ? p : new_slow(size, 0, true);
}
NEW(_ZnamRKSt9nothrow_t)(size_t size, const void *nt)
{
	(void)nt;
	void *p = za_shim_malloc(size);
	return likely(p) ? p : new_slow(size, 0, true);
}
/* operator new(size_t, align_val_t) */
NEW(_ZnwmSt11align_val_t)(size_t size, size_t align)
{
	return new_slow(size, new_align(align, "operator new"), false);
}
NEW(_ZnamSt11align_val_t)(size_t size, size_t align)
{
	return new_slow(size, new_align(align, "operator new[]"), false);
}
/* operator new(size_t, align_val_t, const nothrow_t&) */
NEW(_ZnwmSt11align_val_tRKSt9nothrow_t)(size_t size, size_t align, const void *nt)
{
	(void)nt;
	return new_slow(size, new_align(align, "operator new"), true);
}
NEW(_ZnamSt11align_val_tRKSt9nothrow_t)(size_t size, size_t align, const void *nt)
{
	(void)nt;
	return new_slow(size, new_align(align, "operator new[]"), true);
}

/* operator delete(void*), delete[](void*), and their nothrow forms */
DELETE(_ZdlPv)(void *p) { za_shim_free(p); }
DELETE(_ZdaPv)(void *p) { za_shim_free(p); }
DELETE(_ZdlPvRKSt9nothrow_t)(void *p, const void *nt) { (void)nt; za_shim_free(p); }
DELETE(_ZdaPvRKSt9nothrow_t)(void *p, const void *nt) { (void)nt; za_shim_free(p); }
/* operator delete(void*, size_t): the size must be what new was given */
DELETE(_ZdlPvm)(void *p, size_t size) { za_shim_free_exact(p, size, "operator delete"); }
DELETE(_ZdaPvm)(void *p, size_t size) { za_shim_free_exact(p, size, "operator delete[]"); }
/* operator delete(void*, align_val_t) and the sized and nothrow forms */
DELETE(_ZdlPvSt11align_val_t)(void *p, size_t align)
{
	za_shim_free_aligned_exact(p, 0, new_align(align, "operator delete"), false, "operator delete");
}
DELETE(_ZdaPvSt11align_val_t)(void *p, size_t align)
{
	za_shim_free_aligned_exact(p, 0, new_align(align, "operator delete[]"), false,
				   "operator delete[]");
}
DELETE(_ZdlPvmSt11align_val_t)(void *p, size_t size, size_t align)
{
	za_shim_free_aligned_exact(p, size, new_align(align, "operator delete"), true,
				   "operator delete");
}
DELETE(_ZdaPvmSt11align_val_t)(void *p, size_t size, size_t align)
{
	za_shim_free_aligned_exact(p, size, new_align(align, "operator delete[]"), true,
				   "operator delete[]");
}
DELETE(_ZdlPvSt11align_val_tRKSt9nothrow_t)(void *p, size_t align, const void *nt)
{
	(void)nt;
	za_shim_free_aligned_exact(p, 0, new_align(align, "operator delete"), false, "operator delete");
}
DELETE(_ZdaPvSt11align_val_tRKSt9nothrow_t)(void *p, size_t align, const void *nt)
{
	(void)nt;
	za_shim_free_aligned_exact(p, 0, new_align(align, "operator delete[]"), false,
				   "operator delete[]");
}
