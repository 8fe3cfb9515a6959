/*
 * The exported malloc family: the names a program, glibc itself and C++'s
 * operator new call. Each is the shim's entry point under the glibc name;
 * glibc's internal aliases (__libc_*) are the same functions. Everything is
 * in this one file so that a static link that references any of them takes
 * all of them, and glibc's malloc is never pulled in beside ours.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/shim.h"
#include "shim/stats_json.h"

void za_preload_init(void);
void za_mallinfo_fill(struct mallinfo2 *mi);

/* Runs before main; the allocator itself needs no init, this registers the
 * fork handlers and reads the options. */
__attribute__((constructor)) static void za_ctor(void)
{
	za_preload_init();
}

#define ALIAS(name) __attribute__((alias(#name), used))

ZA_EXPORT void *malloc(size_t size)
{
	return za_shim_malloc(size);
}

ZA_EXPORT void free(void *ptr)
{
	za_shim_free(ptr);
}

ZA_EXPORT void *calloc(size_t nmemb, size_t size)
{
	return za_shim_calloc(nmemb, size);
}

ZA_EXPORT void *realloc(void *ptr, size_t size)
{
	return za_shim_realloc(ptr, size);
}

ZA_EXPORT void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
	return za_reallocarray(ptr, nmemb, size);
}

ZA_EXPORT void *memalign(size_t alignment, size_t size)
{
	return za_memalign(alignment, size);
}

ZA_EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
	return za_posix_memalign(out, alignment, size);
}

ZA_EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
	return za_aligned_alloc(alignment, size);
}

ZA_EXPORT void *valloc(size_t size)
{
	return za_valloc(size);
}

ZA_EXPORT void *pvalloc(size_t size)
{
	return za_pvalloc(size);
}

ZA_EXPORT size_t malloc_usable_size(void *ptr)
{
	return za_shim_usable_size(ptr, "malloc_usable_size");
}

void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

ZA_EXPORT void free_sized(void *ptr, size_t size)
{
	za_shim_free_sized(ptr, 0, size, "free_sized");
}

ZA_EXPORT void free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
	za_shim_free_sized(ptr, alignment, size, "free_aligned_sized");
}

ZA_EXPORT int malloc_trim(size_t pad)
{
	return za_malloc_trim(pad);
}

ZA_EXPORT struct mallinfo2 mallinfo2(void)
{
	struct mallinfo2 mi;
	za_mallinfo_fill(&mi);
	return mi;
}

static int clamp_int(size_t v)
{
	return v > (size_t)__INT_MAX__ ? __INT_MAX__ : (int)v;
}

ZA_EXPORT struct mallinfo mallinfo(void)
{
	struct mallinfo2 m;
	struct mallinfo mi;
	za_mallinfo_fill(&m);
	mi.arena = clamp_int(m.arena);
	mi.ordblks = clamp_int(m.ordblks);
	mi.smblks = clamp_int(m.smblks);
	mi.hblks = clamp_int(m.hblks);
	mi.hblkhd = clamp_int(m.hblkhd);
	mi.usmblks = clamp_int(m.usmblks);
	mi.fsmblks = clamp_int(m.fsmblks);
	mi.uordblks = clamp_int(m.uordblks);
	mi.fordblks = clamp_int(m.fordblks);
	mi.keepcost = clamp_int(m.keepcost);
	return mi;
}

ZA_EXPORT void malloc_stats(void)
{
	za_stats_print(2);
}

static void file_write(void *ctx, const char *s, size_t n)
{
	fwrite(s, 1, n, ctx);
}

/* malloc_info(3): glibc's XML (shim/stats_json.c). Its contract is a stdio
 * stream; the writes happen in the caller's call, never inside an
 * allocation, so stdio (which may allocate) is safe here. */
ZA_EXPORT int malloc_info(int options, FILE *fp)
{
	if (options != 0 || !fp) {
		errno = EINVAL;
		return -1;
	}
	struct za_out o = { .write = file_write, .ctx = fp };
	za_heap_info_xml(&o);
	return 0;
}

/* Every glibc tunable is accepted; none changes this heap's behaviour. */
ZA_EXPORT int mallopt(int param, int value)
{
	(void)param;
	(void)value;
	return 1;
}

/* glibc's prototypes carry attributes (nothrow, leaf, ...) that aliases
 * need not repeat: they are the same functions. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"

void cfree(void *ptr);
void *__libc_malloc(size_t size);
void __libc_free(void *ptr);
void *__libc_calloc(size_t nmemb, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
int __posix_memalign(void **out, size_t alignment, size_t size);

ZA_EXPORT void cfree(void *ptr) ALIAS(free);
ZA_EXPORT void *__libc_malloc(size_t size) ALIAS(malloc);
ZA_EXPORT void __libc_free(void *ptr) ALIAS(free);
ZA_EXPORT void *__libc_calloc(size_t nmemb, size_t size) ALIAS(calloc);
ZA_EXPORT void *__libc_realloc(void *ptr, size_t size) ALIAS(realloc);
ZA_EXPORT void *__libc_memalign(size_t alignment, size_t size) ALIAS(memalign);
ZA_EXPORT void *__libc_valloc(size_t size) ALIAS(valloc);
ZA_EXPORT void *__libc_pvalloc(size_t size) ALIAS(pvalloc);
ZA_EXPORT int __posix_memalign(void **out, size_t alignment, size_t size) ALIAS(posix_memalign);
