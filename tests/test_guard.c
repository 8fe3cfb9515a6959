/*
 * Guard mode (ZONEALLOC_GUARD=1, shim/guard.h): each misuse kind in a
 * forked child that must die of the named signal after writing one exact
 * line (SIGABRT for what a free, malloc_usable_size or a hand-out finds;
 * SIGSEGV for an access to a no-access page: a guard page, a quarantined
 * block, a 0-byte allocation). Then what guard mode promises that is not a
 * death: reads after free see the pattern, calloc is zero, alignments
 * hold, slots come in a random order, and the heap checks clean.
 *
 * The mode is read at the first allocation, so the test starts itself
 * again with the variable set. With "warn" it runs a second phase under
 * ZONEALLOC_ON_ERROR=warn: the misuses are reported and the process goes on
 * with a consistent heap.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "tests/malloc_test.h"

void free_sized(void *ptr, size_t size);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static char *expect;

#define EXPECT(...) snprintf(expect, DEATH_EXPECT_MAX, __VA_ARGS__)

/* The expected line lives in shared memory: the child dying writes it. */
static bool expect_map(void)
{
	expect = mmap(NULL, DEATH_EXPECT_MAX, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return expect != MAP_FAILED;
}

static void run_death(const char *name, void (*fn)(void), int sig)
{
	run_death_sig(name, fn, sig, expect);
}

static volatile char *vp;

/* ---- writes after free ---- */

/* A byte written into a freed object; the report says where it is
 * `found`. */
static void write_after_free(size_t size, const char *found)
{
	char *p = opaque_ptr(malloc(opaque_size(size)));
	free(p);
	EXPECT("zonealloc: use after free: the freed %zu-byte object at %p was written at offset "
	       "40 (0x41 where the free pattern 0xdf was), found %s", size, p, found);
	vp = p;
	vp[40] = 'A';
}

static void slab_uaf_quarantine(void)
{
	write_after_free(128, "as it left the quarantine");
	for (int i = 0; i < 100000; i++)   /* 4 MiB of 144-byte slots, and more */
		free(opaque_ptr(malloc(opaque_size(128))));
}

/* The same write with the program ending before the object leaves. */
static void slab_uaf_exit(void)
{
	write_after_free(100, "at exit");
	exit(0);
}

/* The same write by a thread that then ends: what it freed last still
 * goes through the quarantine (a thread with a heap keeps its frees in a
 * quarantine of its own, which its end hands to the shared one; blocks
 * freed after it push it out of that). */
static void *free_and_write(void *arg)
{
	char *p = arg;
	void *own = opaque_ptr(malloc(16));   /* this thread's heap */
	free(p);
	vp = p;
	vp[40] = 'A';
	return own;
}

static void slab_uaf_thread(void)
{
	char *p = opaque_ptr(malloc(128));
	EXPECT("zonealloc: use after free: the freed 128-byte object at %p was written at offset "
	       "40 (0x41 where the free pattern 0xdf was), found as it left the quarantine", p);
	pthread_t t;
	pthread_create(&t, NULL, free_and_write, p);
	pthread_join(t, NULL);
	for (int i = 0; i < 200; i++)   /* 13 MB of blocks through the shared quarantine */
		free(opaque_ptr(malloc(opaque_size(64 * KiB))));
}

static void *others[2000];

static void slab_uaf_handout(void)
{
	/* Live neighbours keep the slab from emptying (an emptied slab is
	 * carved afresh, its pattern with it). */
	for (int i = 0; i < 8; i++)
		opaque_ptr(malloc(opaque_size(3000)));
	char *p = opaque_ptr(malloc(3000));
	for (int i = 0; i < 2000; i++)
		others[i] = malloc(opaque_size(3000));
	free(p);
	for (int i = 0; i < 2000; i++)   /* 6 MB: p leaves the quarantine for its slab */
		free(others[i]);
	vp = p;
	vp[100] = 'B';
	EXPECT("zonealloc: use after free: the 3072-byte slot at %p, being handed out again, was "
	       "written at offset 100 after it was freed (0x42 where the free pattern 0xdf was)", p);
	for (int i = 0; i < 100000; i++)
		opaque_ptr(malloc(opaque_size(3000)));
}

static void realloc_stale(void)
{
	char *p = opaque_ptr(malloc(100));
	char *q = opaque_ptr(realloc(p, 200));   /* always moves */
	vp = p;
	vp[0] = 'C';
	EXPECT("zonealloc: use after free: the freed 100-byte object at %p was written at offset "
	       "0 (0x43 where the free pattern 0xdf was), found as it left the quarantine", p);
	for (int i = 0; i < 100000; i++)
		free(opaque_ptr(malloc(opaque_size(100))));
	free(q);
}

/* Blocks of up to 64 KiB wait in the quarantine filled with the pattern,
 * as slab objects do: a write into one is found as it leaves (pushed out
 * by blocks freed after it). */
static void write_past(char *p, size_t off, size_t size);

static void small_run_uaf_quarantine(void)
{
	char *p = opaque_ptr(malloc(opaque_size(40 * KiB)));
	free(p);
	EXPECT("zonealloc: use after free: the freed 40960-byte block at %p was written at offset "
	       "100 (0x42 where the free pattern 0xdf was), found as it left the quarantine", p);
	vp = p;
	vp[100] = 'B';
	/* 100 blocks freed after it push it out of the quarantine, and then
	 * out of the run cache, which keeps 32 runs. */
	static char *held[100];
	for (int i = 0; i < 100; i++)
		held[i] = opaque_ptr(malloc(opaque_size(64 * KiB)));
	for (int i = 0; i < 100; i++)
		free(held[i]);
}

/* A freed 40 KiB block pushed out of the quarantine by 64 KiB blocks
 * cycled after it: its run is kept in the run cache (theirs come and go
 * there, and never push it out). */
static char *freed_into_run_cache(void)
{
	char *p = opaque_ptr(malloc(opaque_size(40 * KiB)));
	free(p);
	for (int i = 0; i < 200; i++)
		free(opaque_ptr(malloc(opaque_size(64 * KiB))));
	return p;
}

/* After the quarantine such a block's run is kept, its guard page closed,
 * for the next block of its page count: a write into it there is found
 * as it is handed out again. */
static void small_run_uaf_cached(void)
{
	char *p = freed_into_run_cache();
	EXPECT("zonealloc: use after free: the freed 40960-byte block at %p, being handed out "
	       "again, was written at offset 200 after it was freed (0x43 where the free pattern "
	       "0xdf was)", p);
	vp = p;
	vp[200] = 'C';
	for (int i = 0; i < 64; i++)
		opaque_ptr(malloc(opaque_size(40 * KiB)));
}

/* The same write with the program ending while the run is kept. */
static void small_run_uaf_exit(void)
{
	char *p = freed_into_run_cache();
	EXPECT("zonealloc: use after free: the freed 40960-byte block at %p was written at offset "
	       "300 (0x44 where the free pattern 0xdf was), found at exit", p);
	vp = p;
	vp[300] = 'D';
	exit(0);
}

/* A block whose run came back from the cache still ends against its
 * closed guard page. */
static void small_run_cached_overflow(void)
{
	char *p = NULL, *first = freed_into_run_cache();
	for (int i = 0; i < 64 && p != first; i++)
		p = opaque_ptr(malloc(opaque_size(40 * KiB)));
	if (p != first) {
		fprintf(stderr, "the cached run was not handed out again\n");
		exit(3);
	}
	write_past(p, 40 * KiB, 40 * KiB);
}

static void run_uaf_write(void)
{
	char *p = opaque_ptr(malloc(256 * KiB));
	free(p);
	EXPECT("zonealloc: use after free: a write at %p, offset 100 of the freed 262144-byte block "
	       "at %p", p + 100, p);
	vp = p;
	vp[100] = 1;
}

static void huge_uaf_read(void)
{
	char *p = opaque_ptr(malloc(8 * MiB));
	free(p);
	EXPECT("zonealloc: use after free: a read at %p, offset 4096 of the freed 8388608-byte "
	       "block at %p", p + 4096, p);
	vp = p;
	(void)vp[4096];
}

/* ---- overflows ---- */

static void slab_overflow_1(void)
{
	char *p = opaque_ptr(malloc(8));
	EXPECT("zonealloc: free(%p): heap overflow: the canary after the object at %p (a 16-byte "
	       "slot) was overwritten (written past its end)", p, p);
	vp = p;
	vp[8] = (char)~vp[8];   /* a byte that differs: writing 1 missed 1 run in 256 */
	free(p);
}

static void slab_overflow_8(void)
{
	char *p = opaque_ptr(malloc(8));
	EXPECT("zonealloc: free(%p): heap overflow: the canary after the object at %p (a 16-byte "
	       "slot) was overwritten (written past its end)", p, p);
	memset(opaque_ptr(p), 'x', opaque_size(16));
	free(p);
}

static void slab_overflow_pad(void)
{
	char *p = opaque_ptr(malloc(10));
	EXPECT("zonealloc: free(%p): heap overflow: the 10-byte object at %p was written past its "
	       "end, at offset 10 (0x1 where 0xa5 was)", p, p);
	vp = p;
	vp[10] = 1;
	free(p);
}

/* A write `off` bytes into the `size`-byte block at p, past its end into
 * no-access pages: it faults at once. */
static void write_past(char *p, size_t off, size_t size)
{
	EXPECT("zonealloc: heap overflow: a write at %p, offset %zu of the %zu-byte block at %p "
	       "(past its end, in its guard page)", p + off, off, size, p);
	vp = p;
	vp[off] = 1;
}

static void run_overflow_guard(void)
{
	write_past(opaque_ptr(malloc(256 * KiB)), 256 * KiB, 256 * KiB);
}

static void run_overflow_pad(void)
{
	char *p = opaque_ptr(malloc(100001));
	EXPECT("zonealloc: free(%p): heap overflow: the 100001-byte block at %p was written past "
	       "its end, at offset 100001 (0x1 where 0xa5 was)", p, p);
	vp = p;
	vp[100001] = 1;
	free(p);
}

/* realloc's headroom: a block grown by realloc gets room for half as much
 * again, and the room's pages past the block's last one are no-access:
 * a write there faults at once. */
static void realloc_headroom(void)
{
	char *p = opaque_ptr(malloc(40000));
	p = opaque_ptr(realloc(p, 100000));
	write_past(p, 106496, 100000);
}

/* A block shrunk in place: the pages it gave up are no-access. */
static void realloc_shrunk(void)
{
	char *p = opaque_ptr(malloc(200000));
	char *q = opaque_ptr(realloc(p, 50000));
	if (q != p)
		return;
	write_past(p, 57344, 50000);
}

static void run_underflow(void)
{
	char *p = opaque_ptr(malloc(100000));
	EXPECT("zonealloc: free(%p): heap underflow: the # bytes before the 100000-byte block at %p "
	       "were written (0x1 where 0xa5 was, 1 bytes before it)", p, p);
	vp = p;
	vp[-1] = 1;
	free(p);
}

static void huge_overflow_read(void)
{
	char *p = opaque_ptr(malloc(8 * MiB));
	EXPECT("zonealloc: heap overflow: a read at %p, offset 8388608 of the 8388608-byte block at "
	       "%p (past its end, in its guard page)", p + 8 * MiB, p);
	vp = p;
	(void)vp[8 * MiB];
}

static void aligned_overflow(void)
{
	char *p;
	if (posix_memalign((void **)&p, 64, 40))
		return;
	EXPECT("zonealloc: free(%p): heap overflow: the 40-byte object at %p was written past its "
	       "end, at offset 40 (0x1 where 0xa5 was)", p, p);
	vp = p;
	vp[40] = 1;
	free(p);
}

/* ---- zero-size allocations ---- */

static void zero_write(void)
{
	char *p = opaque_ptr(malloc(0));
	EXPECT("zonealloc: zero-size access: a write at %p, into a 0-byte allocation (malloc(0) in "
	       "guard mode)", p);
	vp = p;
	vp[0] = 1;
}

static void zero_read(void)
{
	char *p = opaque_ptr(malloc(0));
	EXPECT("zonealloc: zero-size access: a read at %p, into a 0-byte allocation (malloc(0) in "
	       "guard mode)", p);
	vp = p;
	(void)vp[0];
}

static void zero_double_free(void)
{
	char *p = opaque_ptr(malloc(0));
	EXPECT("zonealloc: free(%p): double free of a 0-byte allocation (or a pointer into one)", p);
	free(p);
	free(opaque_ptr(p));
}

/* ---- sizes ---- */

static void sized_smaller_run(void)
{
	char *p = opaque_ptr(malloc(1 * MiB));
	EXPECT("zonealloc: free_sized(%p, 524288): size does not match the allocation (1048576 bytes)",
	       p);
	free_sized(p, 512 * KiB);
}

static void sized_smaller_slab(void)
{
	char *p = opaque_ptr(malloc(4096));
	EXPECT("zonealloc: free_sized(%p, 16): size does not match the allocation (4096 bytes)", p);
	free_sized(p, 16);
}

static void sized_larger(void)
{
	char *p = opaque_ptr(malloc(100));
	EXPECT("zonealloc: free_sized(%p, 101): size does not match the allocation (100 bytes)", p);
	free_sized(p, 101);
}

static void usable_freed_slab(void)
{
	char *p = opaque_ptr(malloc(100));
	free(p);
	EXPECT("zonealloc: malloc_usable_size(%p): the 112-byte slab object was freed", p);
	malloc_usable_size(opaque_ptr(p));
}

static void usable_freed_run(void)
{
	char *p = opaque_ptr(malloc(100000));
	free(p);
	EXPECT("zonealloc: malloc_usable_size(%p): the pointer is to a freed block: the 100000-byte "
	       "block at %p", p, p);
	malloc_usable_size(opaque_ptr(p));
}

/* ---- double frees and bad pointers ---- */

static void slab_double_free(void)
{
	char *p = opaque_ptr(malloc(100));
	EXPECT("zonealloc: free(%p): double free of the 112-byte slab object (it is in the "
	       "quarantine)", p);
	free(p);
	free(opaque_ptr(p));
}

/* A slot carved (a page's worth at a time) but never handed out: 1900
 * bytes (+ 8 for the canary) take a 1920-byte slot, a class nothing else
 * here uses, carved two at a time from the start of a new slab; the
 * first allocation's batch-mate is such a slot. */
static void slab_never_allocated(void)
{
	char *p = opaque_ptr(malloc(opaque_size(1900)));
	char *q = ((uintptr_t)p & 0xfff) ? p - 1920 : p + 1920;
	EXPECT("zonealloc: free(%p): the 1920-byte slab slot at %p was never allocated", q, q);
	free(q);
}

static void run_double_free(void)
{
	char *p = opaque_ptr(malloc(100000));
	EXPECT("zonealloc: free(%p): double free of the 100000-byte block at %p (it is in the "
	       "quarantine)", p, p);
	free(p);
	free(opaque_ptr(p));
}

static void huge_double_free(void)
{
	char *p = opaque_ptr(malloc(8 * MiB));
	EXPECT("zonealloc: free(%p): double free of the 8388608-byte block at %p (it is in the "
	       "quarantine)", p, p);
	free(p);
	free(opaque_ptr(p));
}

static void huge_interior(void)
{
	char *p = opaque_ptr(malloc(8 * MiB));
	EXPECT("zonealloc: free(%p): interior pointer into the 8388608-byte block at %p", p + 4096, p);
	free(opaque_ptr(p + 4096));
}

static void slab_interior(void)
{
	char *p = opaque_ptr(malloc(100));
	EXPECT("zonealloc: free(%p): interior pointer: not the start of an object in the slab at "
	       "zone # pfn #", p + 16);
	free(opaque_ptr(p + 16));
}

static void foreign_pointer(void)
{
	char local[64];
	EXPECT("zonealloc: free(%p): pointer not allocated by zonealloc (no zone or huge mapping "
	       "owns it)", (void *)local);
	free(opaque_ptr(local));
}

/* ---- what is not a death ---- */

/* How many of n allocations and frees of `size` bytes succeed, in turn,
 * under a limit `headroom` above what is committed after a trim. */
static int made_under_limit(size_t headroom, size_t size, int n)
{
	struct za_stats st;
	malloc_trim(0);
	za_stats_get(&st);
	za_set_limit(st.committed_bytes + headroom);
	int made = 0;
	for (; made < n; made++) {
		char *b = malloc(opaque_size(size));
		if (!b)
			break;
		free(b);
	}
	return made;
}

static void behaviour(void)
{
	/* A read after free sees the pattern, not the old bytes. */
	unsigned char *p = opaque_ptr(malloc(200));
	memset(p, 'A', 200);
	free(p);
	CHECK(((volatile unsigned char *)p)[100] == 0xdf);

	/* calloc is zero; malloc's bytes are the pattern, never old data. */
	for (int i = 0; i < 100; i++) {
		unsigned char *z = opaque_ptr(calloc(1, 300));
		bool zero = true;
		for (int k = 0; k < 300; k++)
			zero &= z[k] == 0;
		CHECK(zero);
		memset(z, 'Z', 300);
		free(z);
	}
	unsigned char *m = opaque_ptr(malloc(300));
	CHECK(m[150] == 0xdf);
	free(m);

	/* Sizes are exact; alignments hold at every size. */
	size_t sizes[] = { 0, 1, 15, 16, 17, 100, 4000, 32760, 32768, 100000, 5 * MiB };
	for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		char *q = opaque_ptr(malloc(sizes[i]));
		CHECK(q && ((uintptr_t)q & 15) == 0);
		CHECK(malloc_usable_size(q) == sizes[i]);
		memset(q, 1, sizes[i]);
		free_sized(q, sizes[i]);
		for (size_t a = 32; a <= 2 * MiB; a <<= 3) {
			void *r = NULL;
			CHECK(posix_memalign(&r, a, sizes[i]) == 0 && ((uintptr_t)r & (a - 1)) == 0);
			memset(r, 2, sizes[i]);
			free(r);
		}
	}

	/* A request too large to serve counts nothing down: the next small
	 * allocation is still a guarded one (its canary says its size). */
	errno = 0;
	CHECK(malloc(opaque_size(SIZE_MAX - 100)) == NULL && errno == ENOMEM);
	char *after = opaque_ptr(malloc(11));
	CHECK_MSG(malloc_usable_size(after) == 11, "usable %zu after a failed huge request",
		  malloc_usable_size(after));
	free(after);

	/* realloc keeps the bytes. */
	char *r = NULL;
	for (size_t n = 1, old = 0; n < 300000; old = n, n = n * 3 + 1) {
		r = opaque_ptr(realloc(r, n));
		bool kept = r != NULL;
		for (size_t k = 0; kept && k < old; k++)
			kept = r[k] == (char)(k % 100);
		CHECK_MSG(kept, "realloc to %zu lost the first %zu bytes", n, old);
		for (size_t k = 0; r && k < n; k++)
			r[k] = (char)(k % 100);
	}
	free(r);

	/* realloc within a block's room stays in place and opens the pages
	 * it grows into; shrinking and growing again too. */
	r = opaque_ptr(malloc(40000));
	r = opaque_ptr(realloc(r, 100000));
	char *same = opaque_ptr(realloc(r, 140000));
	CHECK_MSG(same == r, "realloc to 140000 within the room moved (%p -> %p)", (void *)r,
		  (void *)same);
	same = opaque_ptr(realloc(same, 20000));
	same = opaque_ptr(realloc(same, 145000));
	CHECK_MSG(same == r, "realloc down and up again within the room moved");
	memset(same, 7, 145000);
	free(same);

	/* A long realloc copies the pages that were written and skips those
	 * never touched, which read zero in the new block too. The new block
	 * is made to come from pages that hold the free pattern: 60 KiB
	 * blocks wait in the quarantine filled, and go back to the heap
	 * as they are, pushed out by huge blocks (the quarantine) and 100 KiB
	 * ones (the run cache); a skipped page handed out as it was would
	 * read 0xdf. */
	size_t sparse_n = 1 * MiB + 100;
	char *sp = opaque_ptr(calloc(1, sparse_n));   /* before: fresh pages */
	for (int i = 0; i < 256; i++)
		others[i] = opaque_ptr(malloc(opaque_size(60 * KiB)));
	for (int i = 0; i < 256; i++)
		free(others[i]);
	free(opaque_ptr(malloc(opaque_size(5 * MiB))));
	for (int i = 0; i < 40; i++)
		free(opaque_ptr(malloc(opaque_size(100 * KiB))));
	free(opaque_ptr(malloc(opaque_size(5 * MiB))));
	static const size_t sparse_at[] = { 0, 5000, 70000, 400000, 1 * MiB + 99 };
	for (size_t i = 0; i < sizeof sparse_at / sizeof sparse_at[0]; i++)
		sp[sparse_at[i]] = (char)(i + 1);
	char *sq = opaque_ptr(realloc(sp, 2 * MiB));
	size_t bad = SIZE_MAX;
	for (size_t k = 0, i = 0; sq && k < sparse_n && bad == SIZE_MAX; k++) {
		char want = 0;
		if (i < sizeof sparse_at / sizeof sparse_at[0] && k == sparse_at[i])
			want = (char)(++i);
		if (sq[k] != want)
			bad = k;
	}
	CHECK_MSG(sq && bad == SIZE_MAX, "realloc of a sparse 1 MiB block: byte %zu is 0x%x", bad,
		  sq && bad != SIZE_MAX ? (unsigned char)sq[bad] : 0);
	free(sq);

	/* A huge block's mapping goes to the huge cache marked reopened:
	 * calloc reusing it reads zero, not what the program wrote, without
	 * writing zeros over it. */
	char *huge = opaque_ptr(malloc(opaque_size(8 * MiB)));
	memset(huge, 'H', 8 * MiB);
	free(huge);
	free(opaque_ptr(malloc(opaque_size(9 * MiB))));   /* pushes it out */
	char *huge2 = opaque_ptr(calloc(1, opaque_size(8 * MiB)));
	bad = SIZE_MAX;
	for (size_t k = 0; huge2 && k < 8 * MiB && bad == SIZE_MAX; k++)
		if (huge2[k])
			bad = k;
	CHECK_MSG(huge2 && bad == SIZE_MAX, "calloc of 8 MiB after a freed one: byte %zu is 0x%x",
		  bad, huge2 && bad != SIZE_MAX ? (unsigned char)huge2[bad] : 0);
	free(huge2);

	struct za_check_result cr;
	/* A freed block of up to 64 KiB reads as the pattern; its run comes
	 * back (from the run cache) for a block of its page count, cleared
	 * for calloc, its pads in place. */
	char *small = opaque_ptr(malloc(opaque_size(40000)));
	memset(small, 'S', 40000);
	free(small);
	bool pattern = true;
	for (size_t k = 0; k < 40000; k++)
		pattern &= ((volatile char *)small)[k] == (char)0xdf;
	CHECK_MSG(pattern, "a freed 40000-byte block does not read as the free pattern");
	for (int i = 0; i < 200; i++)   /* out of the quarantine */
		free(opaque_ptr(malloc(opaque_size(64 * KiB))));
	char *back = NULL;
	for (int i = 0; i < 64 && back != small; i++)
		back = opaque_ptr(calloc(1, opaque_size(40000)));
	CHECK_MSG(back == small, "the 40000-byte block's run was not handed out again");
	bool zeroed = true;
	for (size_t k = 0; back == small && k < 40000; k++)
		zeroed &= back[k] == 0;
	CHECK_MSG(zeroed, "calloc's block from the run cache is not zero");
	CHECK_MSG(malloc_usable_size(back) == 40000, "usable %zu", malloc_usable_size(back));
	CHECK_HEAP();
	free(back);
	/* Out of the quarantine into the run cache, pushed by blocks too
	 * large to be kept there: back's run is the cache's newest, which
	 * the checker reads first. */
	for (int i = 0; i < 20; i++)
		free(opaque_ptr(malloc(opaque_size(300 * KiB))));
	((volatile char *)back)[1000] = 'K';
	CHECK_MSG(za_buddy_check(&cr) != 0 && strstr(cr.what, "written in the run cache"), "%s",
		  cr.what);
	((volatile char *)back)[1000] = (char)0xdf;
	CHECK_HEAP();

	/* Slots come in a random order: of 64 objects of a class nothing
	 * else uses, about half come at a higher address than the one before,
	 * not all (address order) or none (its reverse). */
	uintptr_t prev = 0;
	int rising = 0;
	for (int i = 0; i < 64; i++) {
		uintptr_t a = (uintptr_t)opaque_ptr(malloc(opaque_size(70)));
		rising += a > prev;
		prev = a;
	}
	CHECK_MSG(rising > 8 && rising < 56, "%d of 64 slots at rising addresses", rising);
	CHECK_HEAP();

	/* The checker reads every live object's canary and the quarantine's
	 * pattern, and names what it found. */
	char *live = opaque_ptr(malloc(30));   /* 30 + 8 in a 48-byte slot */
	char saved = live[30];
	live[30] = 'X';
	CHECK_MSG(za_buddy_check(&cr) != 0 && strstr(cr.what, "was written past its end"), "%s",
		  cr.what);
	live[30] = saved;
	CHECK_HEAP();
	saved = live[40];
	live[40] = (char)~saved;   /* (the canary's byte might be 'X': 1 run in 256) */
	CHECK_MSG(za_buddy_check(&cr) != 0 && strstr(cr.what, "canary after the object"), "%s",
		  cr.what);
	live[40] = saved;
	CHECK_HEAP();
	char *gone = opaque_ptr(malloc(40));
	free(gone);
	gone[20] = 'Y';
	CHECK_MSG(za_buddy_check(&cr) != 0 && strstr(cr.what, "was written in the quarantine"),
		  "%s", cr.what);
	gone[20] = (char)0xdf;
	CHECK_HEAP();

	/* Short of memory, the quarantine gives way: with a limit 3 MiB above
	 * what is committed, a loop of 256 KiB allocations and frees (whose
	 * quarantine holds up to 4 MiB) goes on only if an allocation that
	 * meets the limit empties it. The same for huge blocks, charged to
	 * the limit as they are mapped: the quarantine keeps its newest entry,
	 * one 8 MiB block. */
	int made = made_under_limit(3 * MiB, 256 * KiB, 64);
	CHECK_MSG(made == 64, "under the limit, %d of 64 allocations of 256 KiB (%s)", made,
		  za_status_str(za_last_status()));
	made = made_under_limit(12 * MiB, 8 * MiB, 4);
	CHECK_MSG(made == 4, "under the limit, %d of 4 allocations of 8 MiB (%s)", made,
		  za_status_str(za_last_status()));
	za_set_limit(0);
	CHECK_HEAP();
}

/*
 * At vm.max_map_count no new guard page can be made (closing pages splits
 * a mapping): a block's allocation then fails with a typed ENOMEM instead
 * of handing out a block whose overflows go unseen. In a child, whose own
 * mappings (alternately readable and not, so none merge) use up the count;
 * with them gone, the same allocation works. Exit status: 0 when it holds.
 */
static void *maps[1 << 17];

static int map_limit_child(void)
{
	char *warm = malloc(opaque_size(300 * KiB));   /* the zone is mapped and has room */
	memset(warm, 1, 300 * KiB);
	free(warm);
	size_t n = 0;
	while (n < sizeof maps / sizeof *maps) {
		void *m = mmap(NULL, 4096, n & 1 ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (m == MAP_FAILED)
			break;
		maps[n++] = m;
	}
	errno = 0;
	char *p = malloc(opaque_size(100 * KiB));
	int err = errno;
	za_status st = za_last_status();
	for (size_t i = 0; i < n; i++)
		munmap(maps[i], 4096);
	if (p || err != ENOMEM || st != ZA_ENOMEM_OS) {
		fprintf(stderr, "at the map limit (%zu maps made): malloc gave %p, errno %d, %s\n", n,
			(void *)p, err, za_status_str(st));
		return 1;
	}
	p = malloc(opaque_size(100 * KiB));
	if (!p)
		return 2;
	memset(p, 2, 100 * KiB);
	free(p);
	printf("  at vm.max_map_count (%zu maps made): malloc(100 KiB) failed with %s; "
	       "below it, it works\n", n, za_status_str(st));
	fflush(stdout);
	return 0;
}

/*
 * Threads freeing small objects fill their quarantines by count (4 MiB of
 * 32-byte slots is more entries than one holds), and their ends hand them
 * to the shared ring, which fills by count too. Each entry into the ring
 * may evict; between the two another thread's entry must not land on the
 * oldest one (which was then released twice: a slot on a free list while
 * in the quarantine, reported as a use after free when it left).
 */
static void *ring_churn(void *arg)
{
	(void)arg;
	void *keep[64] = { 0 };
	for (unsigned i = 0; i < 400000; i++) {
		unsigned k = i % 64;
		free(keep[k]);
		keep[k] = malloc(opaque_size(8 + i % 24));
		memset(keep[k], (int)i, 8);
	}
	for (unsigned k = 0; k < 64; k++)
		free(keep[k]);
	return NULL;
}

static int ring_threads_child(void)
{
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, ring_churn, NULL);
	ring_churn(NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	struct za_check_result cr;
	if (za_buddy_check(&cr) != 0) {
		fprintf(stderr, "heap check: %s\n", cr.what);
		return 1;
	}
	printf("  4 threads, 1.6 million small frees through the quarantine: no report, the heap "
	       "checks clean\n");
	fflush(stdout);
	return 0;
}

/* ---- ZONEALLOC_GUARD_PAGES: small objects on pages of their own ---- */

/* A string read running past the end of a 10-byte object: through the
 * pad up to the 16-byte boundary, then into the no-access page. */
static void pages_string_read(void)
{
	char *s = opaque_ptr(malloc(10));
	memcpy(s, "0123456789", 10);
	EXPECT("zonealloc: heap overflow: a read at %p, offset 16 of the 10-byte block at %p "
	       "(past its end, in its guard page)", s + 16, s);
	vp = s;
	size_t n = 0;
	while (vp[n])
		n++;
	printf("%zu\n", n);
}

/* One byte past an 8-byte object: in the pad before the 16-byte boundary,
 * found at free. */
static void pages_overflow_1(void)
{
	char *p = opaque_ptr(malloc(8));
	EXPECT("zonealloc: free(%p): heap overflow: the 8-byte block at %p was written past its "
	       "end, at offset 8 (0x5a where 0xa5 was)", p, p);
	vp = p;
	vp[8] = (char)~vp[8];
	free(p);
}

/* A write into a freed small object faults at once: on pages of its own,
 * it waits in the quarantine closed, not filled. */
static void pages_small_uaf(void)
{
	char *p = opaque_ptr(malloc(100));
	free(p);
	EXPECT("zonealloc: use after free: a write at %p, offset 10 of the freed 100-byte block at "
	       "%p", p + 10, p);
	vp = p;
	vp[10] = 1;
}

static int pages_phase(void)
{
	if (!expect_map())
		return 1;
	printf("ZONEALLOC_GUARD_PAGES=1:\n");
	run_death("small string read", pages_string_read, SIGSEGV);
	run_death("small +1", pages_overflow_1, SIGABRT);
	run_death("run uaf write", run_uaf_write, SIGSEGV);
	run_death("small uaf write", pages_small_uaf, SIGSEGV);
	/* Small objects keep malloc's promises on their pages. */
	char *p[100];
	for (int i = 0; i < 100; i++) {
		size_t n = (size_t)i * 7 + 1;
		p[i] = opaque_ptr(i % 3 ? malloc(n) : calloc(1, n));
		CHECK_MSG(p[i] && ((uintptr_t)p[i] & 15) == 0, "malloc(%zu): %p", n, (void *)p[i]);
		CHECK_MSG(malloc_usable_size(p[i]) == n, "usable %zu of %zu", malloc_usable_size(p[i]),
			  n);
		bool zero = true;
		for (size_t k = 0; i % 3 == 0 && k < n; k++)
			zero = zero && p[i][k] == 0;
		CHECK_MSG(zero, "calloc(1, %zu) not zero", n);
		memset(p[i], i, n);
	}
	for (int i = 0; i < 100; i++) {
		p[i] = opaque_ptr(realloc(p[i], (size_t)i * 7 + 40));
		bool kept = true;
		for (size_t k = 0; k < (size_t)i * 7 + 1; k++)
			kept = kept && p[i][k] == (char)i;
		CHECK_MSG(kept, "realloc lost the bytes of object %d", i);
	}
	for (int i = 0; i < 100; i++)
		free(p[i]);
	CHECK_HEAP();
	return test_done("guard (pages)");
}

/* ---- warn: reported, and the process goes on ---- */

static int warn_phase(void)
{
	char *a = opaque_ptr(malloc(8));
	vp = a;
	vp[8] = (char)~vp[8];
	free(a);   /* canary */
	char *b = opaque_ptr(malloc(100));
	free(b);
	free(opaque_ptr(b));   /* double free */
	char *c = opaque_ptr(malloc(100));
	free_sized(c, 50);   /* size */
	char *d = opaque_ptr(malloc(256 * KiB));
	free(d);
	free(opaque_ptr(d));   /* run double free */
	for (int i = 0; i < 10000; i++) {
		char *x = malloc((size_t)i % 5000 + 1);
		memset(x, 3, (size_t)i % 5000 + 1);
		free(x);
	}
	CHECK_HEAP();
	return test_done("guard (warn)");
}

int main(int argc, char **argv)
{
	bool warn = argc > 1 && !strcmp(argv[1], "warn");
	if (argc > 1 && !strcmp(argv[1], "pages")) {
		/* ZONEALLOC_GUARD_PAGES=1 alone turns guard mode on. */
		if (!getenv("ZONEALLOC_GUARD_PAGES")) {
			unsetenv("ZONEALLOC_GUARD");
			setenv("ZONEALLOC_GUARD_PAGES", "1", 1);
			execv("/proc/self/exe", argv);
			perror("execv");
			return 1;
		}
		return pages_phase();
	}
	if (!getenv("ZONEALLOC_GUARD")) {
		setenv("ZONEALLOC_GUARD", "1", 1);
		/* The limit test (run_uaf_write) wants a quarantine larger
		 * than the room its limit leaves. */
		setenv("ZONEALLOC_QUARANTINE", "4M", 1);
		if (warn)
			setenv("ZONEALLOC_ON_ERROR", "warn", 1);
		execv("/proc/self/exe", argv);
		perror("execv");
		return 1;
	}
	if (warn)
		return warn_phase();
	if (!expect_map())
		return 1;
	printf("writes and reads after free:\n");
	run_death("slab uaf (quarantine)", slab_uaf_quarantine, SIGABRT);
	run_death("slab uaf (at exit)", slab_uaf_exit, SIGABRT);
	run_death("slab uaf (thread ended)", slab_uaf_thread, SIGABRT);
	run_death("slab uaf (hand-out)", slab_uaf_handout, SIGABRT);
	run_death("realloc's old block", realloc_stale, SIGABRT);
	run_death("run uaf write", run_uaf_write, SIGSEGV);
	run_death("40 KiB uaf (quarantine)", small_run_uaf_quarantine, SIGABRT);
	run_death("40 KiB uaf (run cache)", small_run_uaf_cached, SIGABRT);
	run_death("40 KiB uaf (at exit)", small_run_uaf_exit, SIGABRT);
	run_death("40 KiB from the cache +0", small_run_cached_overflow, SIGSEGV);
	run_death("huge uaf read", huge_uaf_read, SIGSEGV);
	printf("overflows:\n");
	run_death("slab +1", slab_overflow_1, SIGABRT);
	run_death("slab +8", slab_overflow_8, SIGABRT);
	run_death("slab pad", slab_overflow_pad, SIGABRT);
	run_death("aligned slab pad", aligned_overflow, SIGABRT);
	run_death("run guard page", run_overflow_guard, SIGSEGV);
	run_death("run pad", run_overflow_pad, SIGABRT);
	run_death("realloc headroom", realloc_headroom, SIGSEGV);
	run_death("realloc shrunk", realloc_shrunk, SIGSEGV);
	run_death("run underflow", run_underflow, SIGABRT);
	run_death("huge guard page read", huge_overflow_read, SIGSEGV);
	printf("zero-size allocations:\n");
	run_death("malloc(0) write", zero_write, SIGSEGV);
	run_death("malloc(0) read", zero_read, SIGSEGV);
	run_death("malloc(0) double free", zero_double_free, SIGABRT);
	printf("sizes:\n");
	run_death("free_sized smaller run", sized_smaller_run, SIGABRT);
	run_death("free_sized smaller slab", sized_smaller_slab, SIGABRT);
	run_death("free_sized larger", sized_larger, SIGABRT);
	run_death("usable size, freed slab", usable_freed_slab, SIGABRT);
	run_death("usable size, freed run", usable_freed_run, SIGABRT);
	printf("double frees and bad pointers:\n");
	run_death("slab double free", slab_double_free, SIGABRT);
	run_death("slab slot never allocated", slab_never_allocated, SIGABRT);
	run_death("run double free", run_double_free, SIGABRT);
	run_death("huge double free", huge_double_free, SIGABRT);
	run_death("huge interior", huge_interior, SIGABRT);
	run_death("slab interior", slab_interior, SIGABRT);
	run_death("foreign pointer", foreign_pointer, SIGABRT);
	behaviour();
	{
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0)
			_exit(map_limit_child());
		int status = 0;
		waitpid(pid, &status, 0);
		CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "map limit: status %d",
			  status);
		fflush(stdout);
		pid = fork();
		if (pid == 0)
			_exit(ring_threads_child());
		waitpid(pid, &status, 0);
		CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "threads through the quarantine: status %d", status);
	}

	/* warn: four reports, the child goes on to a clean heap check. */
	int pfd[2];
	if (pipe(pfd) == 0) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			dup2(pfd[1], 2);
			close(pfd[0]);
			unsetenv("ZONEALLOC_GUARD");
			char *args[] = { argv[0], "warn", NULL };
			execv("/proc/self/exe", args);
			_exit(127);
		}
		close(pfd[1]);
		static char out[64 * 1024];
		size_t len = 0;
		ssize_t n;
		while (len < sizeof out - 1 && (n = read(pfd[0], out + len, sizeof out - 1 - len)) > 0)
			len += (size_t)n;
		out[len] = 0;
		close(pfd[0]);
		int status = 0;
		waitpid(pid, &status, 0);
		int reports = 0;
		for (char *l = out; (l = strstr(l, "zonealloc: ")); l++)
			reports += !strncmp(l, "zonealloc: free", 15);
		CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "warn phase: status %d: %s",
			  status, out);
		CHECK_MSG(reports == 4, "warn phase: %d reports, wanted 4:\n%s", reports, out);
		printf("  warn: %d misuses reported, the process went on, the heap checks clean\n",
		       reports);
	}
	/* ZONEALLOC_GUARD_PAGES=1: its own process, its result ours. */
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char *args[] = { argv[0], "pages", NULL };
		execv("/proc/self/exe", args);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pages phase: status %d", status);
	return test_done("guard");
}
