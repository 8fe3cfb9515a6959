/*
 * Misuse through the malloc API. Each case runs in a forked child that
 * must die of SIGABRT after writing one exact line to stderr: double frees
 * (slab object, from its own thread and from another, into a slab trimmed
 * while idle; run; huge mapping),
 * interior pointers (slab, run, huge), pointers zonealloc never returned
 * (stack, static data, a private mmap, wild addresses), realloc and
 * malloc_usable_size of a foreign pointer, free_sized with a size larger
 * than the allocation, free_aligned_sized with the wrong alignment, a
 * page block freed with free, and a free-list link overwritten after
 * free (local and remote lists); and that a report's backtrace names the
 * caller. Pointers pass through volatile so the
 * compiler cannot drop or reason about the calls.
 *
 * Built twice (tests/malloc_test.h): with the za_* calls, and with the
 * exported names of the replaced malloc.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "config.h"
#include "tests/malloc_test.h"

#ifdef TEST_NAMES
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);
#define NAME "malloc_misuse_names"
#else
#define NAME "malloc_misuse"
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static char *expect;   /* shared with the children */
static const char *death_rest;   /* what the child wrote after its first line */

static unsigned long pfn_of(const void *p)
{
	/* Zones are 64 MiB aligned; the page map index is the page in the zone. */
	return (unsigned long)(((uintptr_t)p & (((uintptr_t)64 << 20) - 1)) >> ZA_PAGE_SHIFT);
}

#define EXPECT(...) snprintf(expect, DEATH_EXPECT_MAX, __VA_ARGS__)

static void run_death(const char *name, void (*fn)(void))
{
	death_rest = run_death_sig(name, fn, SIGABRT, expect);
}

/* ---- double frees ---- */

static void *live[8];

static void slab_double_free(void)
{
	for (int i = 0; i < 8; i++)
		live[i] = F(malloc)(100);
	void *p = opaque_ptr(live[4]);
	EXPECT("zonealloc: free(%p): double free of a 112-byte slab object (zone #)", p);
	F(free)(p);
	F(free)(opaque_ptr(p));
}

static void slab_double_free_big_class(void)
{
	void *keep = F(malloc)(20000);
	void *p = opaque_ptr(F(malloc)(20000));
	EXPECT("zonealloc: free(%p): double free of a 20480-byte slab object (zone #)", p);
	F(free)(p);
	F(free)(opaque_ptr(p));
	F(free)(keep);
}

/* The slab was trimmed while its class was idle (slab.c: slab_idle_scan):
 * its free list is gone and the freed object's page with its mark, so
 * only the count of objects out can tell. */
static void slab_double_free_trimmed(void)
{
	void *objs[16];   /* a class the warm-up left alone */
	for (int i = 0; i < 16; i++)
		objs[i] = F(malloc)(7000);
	for (int i = 0; i < 16; i++)
		F(free)(objs[i]);
	for (int i = 0; i < 8192; i++)   /* three idle scans (slab.c) or more */
		F(free)(opaque_ptr(F(malloc)(opaque_size(40))));
	void *p = opaque_ptr(objs[12]);
	EXPECT("zonealloc: free(%p): double free of a 7168-byte slab object (zone #)", p);
	F(free)(p);
}

/* The report's backtrace must name the function that misused the heap:
 * global and not inlined, so its name is in the symbol table. */
__attribute__((noinline)) void za_test_misuse_caller(void *p);
__attribute__((noinline)) void za_test_misuse_caller(void *p)
{
	F(free)(p);
	F(free)(opaque_ptr(p));
	__asm__ volatile("" ::: "memory");   /* no tail call: keep the frame */
}

static void slab_double_free_backtrace(void)
{
	void *p = opaque_ptr(F(malloc)(200));
	EXPECT("zonealloc: free(%p): double free of a 208-byte slab object (zone #)", p);
	za_test_misuse_caller(p);
}

static void *free_twice(void *arg)
{
	F(free)(arg);
	F(free)(opaque_ptr(arg));
	return NULL;
}

/* Both frees come from a thread that does not own the slab: the second
 * finds the object on the slab's remote list. */
static void slab_double_free_remote(void)
{
	for (int i = 0; i < 8; i++)
		live[i] = F(malloc)(48);
	void *p = opaque_ptr(live[3]);
	EXPECT("zonealloc: free(%p): double free of a 48-byte slab object (zone #)", p);
	pthread_t t;
	pthread_create(&t, NULL, free_twice, p);
	pthread_join(t, NULL);
}

static void run_double_free(void)
{
	void *keep = F(malloc)(100 * KiB);
	void *p = opaque_ptr(F(malloc)(100 * KiB));
	/* The freed run waits in the thread's run cache for reuse. */
	EXPECT("zonealloc: free(%p): double free: zone # pfn %lu is a freed run in a per-thread cache (double free) (order #, # pages), expected order -1",
	       p, pfn_of(p));
	F(free)(p);
	F(free)(opaque_ptr(p));
	F(free)(keep);
}

/* Freed twice after merging with its lower buddy: its head is now inside
 * a larger free block. Two runs of 32 pages taken one after the other are
 * the two halves of one split block. */
static void run_double_free_merged(void)
{
	/* Two runs that are buddies: a 256 KiB run cut in place to its lower
	 * half gives the upper half back, first on its free list, and the
	 * next 128 KiB run takes it. */
	char *a = F(malloc)(256 * KiB);
	a = F(realloc)(a, 128 * KiB);
	char *b = F(malloc)(128 * KiB);
	if ((pfn_of(a) ^ 32) != pfn_of(b)) {
		fprintf(stderr, "setup: runs at pfn %lu and %lu are not buddies\n", pfn_of(a),
			pfn_of(b));
		_exit(0);
	}
	char *hi = opaque_ptr(a < b ? b : a);
	EXPECT("zonealloc: free(%p): double free: zone # pfn %lu is free (double free): inside the free block at pfn # (order #), expected order -1",
	       (void *)hi, pfn_of(hi));
	F(free)(a);
	F(free)(b);
	za_drain_caches();   /* out of the run cache, so the two runs merge */
	F(free)(hi);
}

static void huge_double_free(void)
{
	void *p = opaque_ptr(F(malloc)(8 * MiB));
	EXPECT("zonealloc: free(%p): double free of a huge block (8388608 bytes, freed before)", p);
	F(free)(p);
	F(free)(opaque_ptr(p));
}

/* The same once its mapping is gone (not kept for reuse). */
static void huge_double_free_unmapped(void)
{
	void *p = opaque_ptr(F(malloc)(8 * MiB));
	EXPECT("zonealloc: free(%p): double free of a huge block (8388608 bytes, freed before)", p);
	F(free)(p);
	F(malloc_trim)(0);   /* unmaps the kept mappings */
	F(free)(opaque_ptr(p));
}

/* ---- interior pointers ---- */

static void slab_interior(void)
{
	char *p = F(malloc)(100);
	void *q = opaque_ptr(p + 16);
	EXPECT("zonealloc: free(%p): interior pointer: not the start of an object in the slab at zone # pfn %lu",
	       q, pfn_of(q));
	F(free)(q);
}

/* 48-byte objects fill a 64 KiB slab (a block aligned to its size) up
 * to 1365 * 48 = 65520: the 16 bytes left are where an object would
 * start by its alignment, but past the last one. */
static void slab_past_last(void)
{
	char *p = F(malloc)(48);
	uintptr_t base = (uintptr_t)p & ~(uintptr_t)0xffff;
	void *q = opaque_ptr((char *)base + 1365 * 48);
	EXPECT("zonealloc: free(%p): interior pointer: not the start of an object in the slab at zone # pfn %lu",
	       q, pfn_of(q));
	F(free)(q);
}

static void slab_interior_realloc(void)
{
	char *p = F(malloc)(3000);
	void *q = opaque_ptr(p + 1);
	EXPECT("zonealloc: realloc(%p): interior pointer: not the start of an object in the slab at zone # pfn %lu",
	       q, pfn_of(q));
	p = F(realloc)(q, 5000);
	F(free)(p);
}

static void run_interior_page(void)
{
	char *p = F(malloc)(100 * KiB);
	void *q = opaque_ptr(p + 2 * ZA_PAGE_SIZE);
	EXPECT("zonealloc: free(%p): not the start of an allocation: zone # pfn %lu is inside a block (not a block head): the block at pfn %lu is an allocated exact run (order 5), expected order -1",
	       q, pfn_of(q), pfn_of(p));
	F(free)(q);
}

static void run_interior_first_page(void)
{
	char *p = F(malloc)(100 * KiB);
	void *q = opaque_ptr(p + 64);
	EXPECT("zonealloc: free(%p): not the start of an allocation: zone # pfn %lu is an allocated exact run (order 5, 25 pages), expected order -1",
	       q, pfn_of(q));
	F(free)(q);
}

static void huge_interior(void)
{
	char *p = F(malloc)(8 * MiB);
	void *q = opaque_ptr(p + 4096);
	EXPECT("zonealloc: free(%p): interior pointer into the huge allocation at %p", q,
	       (void *)p);
	F(free)(q);
}

/* A page past a run's end, in the unused tail of its buddy block that went
 * back free: never allocated, so not a double free. 40 KiB + 1 takes 11
 * pages of a 16-page block; pages 11 to 15 are free. */
static void run_tail_pointer(void)
{
	char *p = F(malloc)(40 * KiB + 1);
	void *q = opaque_ptr(p + 44 * KiB);
	EXPECT("zonealloc: free(%p): not the start of an allocation: zone # pfn %lu is free (not allocated, or freed long ago) (order #, # pages), expected order -1",
	       q, pfn_of(q));
	F(free)(q);
}

/* ---- writes after free into a free-list link (safe-linking) ---- */

static void slab_write_after_free(void)
{
	for (int i = 0; i < 8; i++)
		live[i] = F(malloc)(128);
	char *p = opaque_ptr(live[5]);
	F(free)(p);
	memset(p, 'A', 8);   /* the link, as a stale pointer's write would */
	EXPECT("zonealloc: malloc: corrupted free list: the freed 128-byte object at %p links to ~, outside its slab (written after free?)",
	       (void *)p);
	(void)F(malloc)(opaque_size(128));
}

static void *free_one(void *arg)
{
	F(free)(arg);
	return NULL;
}

/* The object waits on its slab's remote list (freed by a thread that
 * has exited): the owner's collection checks the link it walks. */
static void slab_write_after_remote_free(void)
{
	void *objs[8];   /* a whole 128 KiB slab of the 16 KiB class */
	for (int i = 0; i < 8; i++)
		objs[i] = F(malloc)(16 * KiB);
	char *p = opaque_ptr(objs[2]);
	pthread_t t;
	pthread_create(&t, NULL, free_one, p);
	pthread_join(t, NULL);
	memset(p, 'B', 8);
	EXPECT("zonealloc: malloc: corrupted free list: the freed 16384-byte object at %p links to ~, outside its slab (written after free?)",
	       (void *)p);
	(void)F(malloc)(opaque_size(16 * KiB));
}

/* ---- malloc_usable_size of what was freed ---- */

static void usable_freed_slab(void)
{
	char *p = F(malloc)(100);
	F(free)(p);
	EXPECT("zonealloc: malloc_usable_size(%p): the 112-byte slab object was freed", (void *)p);
	(void)F(malloc_usable_size)(opaque_ptr(p));
}

static void usable_freed_run(void)
{
	char *p = F(malloc)(100 * KiB);
	F(free)(p);
	EXPECT("zonealloc: malloc_usable_size(%p): the run was freed", (void *)p);
	(void)F(malloc_usable_size)(opaque_ptr(p));
}

static void usable_freed_run_merged(void)
{
	char *p = F(malloc)(100 * KiB);
	F(free)(p);
	za_drain_caches();   /* out of the run cache, merged into free blocks */
	EXPECT("zonealloc: malloc_usable_size(%p): the run was freed", (void *)p);
	(void)F(malloc_usable_size)(opaque_ptr(p));
}

static void usable_freed_huge(void)
{
	char *p = F(malloc)(8 * MiB);
	F(free)(p);
	EXPECT("zonealloc: malloc_usable_size(%p): the huge block was freed (8388608 bytes)",
	       (void *)p);
	(void)F(malloc_usable_size)(opaque_ptr(p));
}

/* ---- pointers zonealloc never returned ---- */

#define NOT_OURS "pointer not allocated by zonealloc (no zone or huge mapping owns it)"

static void free_stack(void)
{
	char buf[64];
	void *q = opaque_ptr(buf + 16);
	EXPECT("zonealloc: free(%p): " NOT_OURS, q);
	F(free)(q);
}

static char static_data[4096];

static void free_static(void)
{
	void *q = opaque_ptr(static_data);
	EXPECT("zonealloc: free(%p): " NOT_OURS, q);
	F(free)(q);
}

static void free_mmap(void)
{
	void *q = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	q = opaque_ptr(q);
	EXPECT("zonealloc: free(%p): " NOT_OURS, q);
	F(free)(q);
}

/* The lookup never faults, whatever the address. */
static void free_wild_low(void)
{
	void *q = opaque_ptr((void *)(uintptr_t)0x10);
	EXPECT("zonealloc: free(%p): " NOT_OURS, q);
	F(free)(q);
}

static void free_wild_high(void)
{
	void *q = opaque_ptr((void *)(uintptr_t)0xffff800000001000ull);
	EXPECT("zonealloc: free(%p): " NOT_OURS, q);
	F(free)(q);
}

/* Just past a huge mapping, in the region-table slot that it shares. */
static void free_after_huge(void)
{
	char *p = F(malloc)(5 * MiB);
	void *q = opaque_ptr(p + 5 * MiB + 4096);
	EXPECT("zonealloc: free(%p): " NOT_OURS, q);
	F(free)(q);
}

static void realloc_foreign(void)
{
	char buf[64];
	void *q = opaque_ptr(buf);
	EXPECT("zonealloc: realloc(%p): " NOT_OURS, q);
	q = F(realloc)(q, 100);
	F(free)(q);
}

static void usable_size_foreign(void)
{
	void *q = opaque_ptr(static_data + 64);
	EXPECT("zonealloc: malloc_usable_size(%p): pointer not allocated by zonealloc", q);
	size_t n = F(malloc_usable_size)(q);
	printf("%zu\n", n);
}

/* ---- sized frees ---- */

static void free_sized_larger(void)
{
	void *p = opaque_ptr(F(malloc)(100));
	EXPECT("zonealloc: free_sized(%p, 113): size is larger than the allocation (112 usable bytes)",
	       p);
	F(free_sized)(p, opaque_size(113));
}

/* C23: the size is what malloc was given. 4 KiB freed as 16, 1 MiB as
 * 512 KiB (an 8 MiB huge block as 5 MiB), and an aligned block freed with
 * the size of another class. */
static void free_sized_smaller(void)
{
	char *p = F(malloc)(4096);
	EXPECT("zonealloc: free_sized(%p, 16): size is smaller than the allocation's (4096 usable bytes)",
	       (void *)p);
	F(free_sized)(p, opaque_size(16));
}

static void free_sized_smaller_run(void)
{
	char *p = F(malloc)(1 * MiB);
	EXPECT("zonealloc: free_sized(%p, 524288): size is smaller than the allocation's (1048576 usable bytes)",
	       (void *)p);
	F(free_sized)(p, opaque_size(512 * KiB));
}

static void free_sized_smaller_huge(void)
{
	char *p = F(malloc)(8 * MiB);
	/* 11/16 of the pages: below the three quarters realloc may leave. */
	EXPECT("zonealloc: free_sized(%p, 5767168): size is smaller than the allocation's (8388608 usable bytes)",
	       (void *)p);
	F(free_sized)(p, opaque_size(5632 * KiB));
}

static void free_aligned_sized_other_class(void)
{
	char *p = F(aligned_alloc)(256, 1024);
	EXPECT("zonealloc: free_aligned_sized(%p, 256): size is smaller than the allocation's (1024 usable bytes)",
	       (void *)p);
	F(free_aligned_sized)(p, 256, opaque_size(256));
}

static void free_sized_larger_run(void)
{
	void *p = opaque_ptr(F(malloc)(100 * KiB));
	EXPECT("zonealloc: free_sized(%p, 200000): size is larger than the allocation (102400 usable bytes)",
	       p);
	F(free_sized)(p, opaque_size(200000));
}

static void free_aligned_sized_misaligned(void)
{
	void *p = NULL;
	for (int i = 0; i < 8; i++) {
		live[i] = F(malloc)(100);   /* objects 112 bytes apart */
		if ((uintptr_t)live[i] & 63)
			p = live[i];
	}
	p = opaque_ptr(p);
	EXPECT("zonealloc: free_aligned_sized(%p): pointer is not aligned to 64", p);
	F(free_aligned_sized)(p, 64, 100);
}

static void free_page_block(void)
{
	void *p = opaque_ptr(za_alloc_pages(2, ZA_F_NONE, NULL));
	EXPECT("zonealloc: free(%p): page block from za_alloc_pages freed with free: zone # pfn %lu is an allocated page block (order 2, # pages), expected order -1",
	       p, pfn_of(p));
	F(free)(p);
}

int main(void)
{
	expect = mmap(NULL, DEATH_EXPECT_MAX, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (expect == MAP_FAILED)
		return 99;

	/* Warm the heap up a little, as a program would have. */
	void *warm[64];
	for (int i = 0; i < 64; i++)
		warm[i] = F(malloc)((size_t)i * 97);

	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{ "slab double free", slab_double_free },
		{ "slab double free 20 KiB", slab_double_free_big_class },
		{ "slab double free remote", slab_double_free_remote },
		{ "slab double free trimmed", slab_double_free_trimmed },
		{ "run double free", run_double_free },
		{ "run double free merged", run_double_free_merged },
		{ "huge double free", huge_double_free },
		{ "huge double free unmapped", huge_double_free_unmapped },
		{ "slab interior", slab_interior },
		{ "slab interior realloc", slab_interior_realloc },
		{ "slab past the last object", slab_past_last },
		{ "run tail pointer", run_tail_pointer },
		{ "slab write after free", slab_write_after_free },
		{ "slab write after a remote free", slab_write_after_remote_free },
		{ "usable size of a freed slab object", usable_freed_slab },
		{ "usable size of a freed run", usable_freed_run },
		{ "usable size of a freed run, merged", usable_freed_run_merged },
		{ "usable size of a freed huge block", usable_freed_huge },
		{ "run interior page", run_interior_page },
		{ "run interior first page", run_interior_first_page },
		{ "huge interior", huge_interior },
		{ "free stack", free_stack },
		{ "free static", free_static },
		{ "free mmap", free_mmap },
		{ "free wild low", free_wild_low },
		{ "free wild high", free_wild_high },
		{ "free after huge", free_after_huge },
		{ "realloc foreign", realloc_foreign },
		{ "usable_size foreign", usable_size_foreign },
		{ "free_sized larger", free_sized_larger },
		{ "free_sized larger run", free_sized_larger_run },
		{ "free_sized smaller", free_sized_smaller },
		{ "free_sized smaller run", free_sized_smaller_run },
		{ "free_sized smaller huge", free_sized_smaller_huge },
		{ "free_aligned_sized of another class", free_aligned_sized_other_class },
		{ "free_aligned_sized misaligned", free_aligned_sized_misaligned },
		{ "free page block", free_page_block },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_death(cases[i].name, cases[i].fn);

	/* The line is followed by a backtrace through the caller, or where
	 * libunwind was not built in, a line that says so. */
	run_death("backtrace", slab_double_free_backtrace);
#ifdef HAVE_LIBUNWIND
	CHECK_MSG(strstr(death_rest, "za_test_misuse_caller+0x") != NULL,
		  "the report's backtrace does not name the caller:\n%s", death_rest);
#else
	CHECK_MSG(strstr(death_rest, "(no backtrace: built without libunwind)") != NULL,
		  "no word on the missing backtrace:\n%s", death_rest);
#endif
	printf("  backtrace:\n%s", death_rest);

	/* Safe-linking: a freed object's link is not the plain address of
	 * the object freed before it, so a read after free learns nothing. */
	void *a = F(malloc)(64), *b = F(malloc)(64);
	F(free)(a);
	F(free)(b);
	void *link = *(void *volatile *)b;
	CHECK_MSG(link != a, "the freed object's link is the plain address %p", a);
	F(free)(F(malloc)(64));

	for (int i = 0; i < 64; i++)
		F(free)(warm[i]);
	CHECK_HEAP();
	return test_done(NAME);
}
