/*
 * Conformance of the malloc family against glibc's behaviour: size 0,
 * sizes near SIZE_MAX, calloc overflow and zeroing, every power-of-two
 * alignment from 1 B to 1 MiB and the non-powers of two, realloc across
 * the tiers (slab <= 32 KiB < run <= 4 MiB < huge) and back, in-place
 * realloc, usable sizes, errno, the 16-byte minimum alignment.
 *
 * Built twice (see tests/malloc_test.h): test_malloc_conformance calls the
 * za_* functions; test_malloc_names calls the exported names of
 * libzonealloc.so, and adds the functions only the replaced malloc has
 * (mallinfo, mallinfo2, malloc_stats, mallopt, the __libc_* aliases and
 * cfree), checking that every name resolves to zonealloc.
 *
 * test_malloc_names also runs under ZONEALLOC_BACKEND=mimalloc and =libc
 * (tests/test_backends.sh): then the contract is checked (sizes, alignment,
 * zeroing, contents kept, errno) and what only zonealloc's own tiers
 * promise (class sizes, in-place reallocs, pages taken) is not (`own`).
 */
#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "tests/malloc_test.h"

#ifdef TEST_NAMES
#include <dlfcn.h>
/* Not declared by every glibc; zonealloc exports them all. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);
void cfree(void *ptr);
void *__libc_malloc(size_t size);
void __libc_free(void *ptr);
void *__libc_calloc(size_t nmemb, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
int __posix_memalign(void **out, size_t alignment, size_t size);
#define NAME "malloc_names"
#else
#define NAME "malloc_conformance"
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* zonealloc's own tiers serve (not another backend). */
static bool own = true;

static size_t usable(void *p)
{
	return F(malloc_usable_size)(p);
}

/* ---- size 0 ---- */

static void test_zero(void)
{
	void *a = F(malloc)(opaque_size(0)), *b = F(malloc)(opaque_size(0));
	CHECK(a && b && a != b);
	CHECK(((uintptr_t)a & 15) == 0 && usable(a) >= 16);
	F(free)(a);
	F(free)(b);

	void *c = F(calloc)(0, 5), *d = F(calloc)(5, 0), *e = F(calloc)(0, 0);
	CHECK(c && d && e);
	F(free)(c);
	F(free)(d);
	F(free)(e);

	/* glibc: realloc(NULL, 0) is malloc(0); realloc(p, 0) frees, NULL. */
	void *r = F(realloc)(NULL, opaque_size(0));
	CHECK(r != NULL);
	errno = 1234;
	CHECK(F(realloc)(r, opaque_size(0)) == NULL);
	CHECK(errno == 1234);
	r = F(reallocarray)(NULL, 0, 8);
	CHECK(r != NULL);
	F(free)(r);

	void *m = F(memalign)(64, opaque_size(0));
	CHECK(m && ((uintptr_t)m & 63) == 0);
	F(free)(m);
	void *al = F(aligned_alloc)(256, opaque_size(0));
	CHECK(al && ((uintptr_t)al & 255) == 0);
	F(free)(al);
	void *pm = NULL;
	CHECK(F(posix_memalign)(&pm, 128, opaque_size(0)) == 0 && pm && ((uintptr_t)pm & 127) == 0);
	F(free)(pm);
	void *v = F(valloc)(opaque_size(0));
	CHECK(v && ((uintptr_t)v & (ZA_PAGE_SIZE - 1)) == 0);
	F(free)(v);
	void *pv = F(pvalloc)(opaque_size(0));
	CHECK(pv && ((uintptr_t)pv & (ZA_PAGE_SIZE - 1)) == 0 && usable(pv) >= ZA_PAGE_SIZE);
	F(free)(pv);

	F(free)(NULL);
	F(free_sized)(NULL, 16);
	F(free_aligned_sized)(NULL, 64, 64);
	CHECK(usable(NULL) == 0);
	CHECK_HEAP();
}

/* ---- sizes that can never be served ---- */

static void expect_enomem(void *p, const char *what, size_t size)
{
	CHECK_MSG(p == NULL && errno == ENOMEM, "%s(%zu) = %p, errno %d", what, size, p, errno);
#ifndef TEST_NAMES
	za_status st = za_last_status();
	CHECK_MSG(st == ZA_ENOMEM_TOO_LARGE || st == ZA_ENOMEM_OS, "%s(%zu): status %s", what,
		  size, za_status_str(st));
#endif
}

static void test_huge_sizes(void)
{
	static const size_t sizes[] = {
		SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX - 4 * MiB, SIZE_MAX - 64 * MiB,
		SIZE_MAX / 2 + 1, PTRDIFF_MAX, (size_t)1 << 62, (size_t)1 << 48,
	};
	void *slab = F(malloc)(100), *run = F(malloc)(100 * KiB), *huge = F(malloc)(6 * MiB);
	CHECK(slab && run && huge);
	fill_bytes(slab, 100, 1);
	fill_bytes(run, 100 * KiB, 2);
	fill_bytes(huge, 6 * MiB, 3);

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t s = opaque_size(sizes[i]);
		errno = 0;
		expect_enomem(F(malloc)(s), "malloc", s);
		errno = 0;
		expect_enomem(F(calloc)(1, s), "calloc(1, n)", s);
		errno = 0;
		expect_enomem(F(calloc)(s, 1), "calloc(n, 1)", s);
		errno = 0;
		expect_enomem(F(memalign)(64, s), "memalign", s);
		errno = 0;
		expect_enomem(F(memalign)(2 * MiB, s), "memalign(2M)", s);
		errno = 0;
		expect_enomem(F(aligned_alloc)(4096, s), "aligned_alloc", s);
		errno = 0;
		expect_enomem(F(valloc)(s), "valloc", s);
		errno = 0;
		expect_enomem(F(pvalloc)(s), "pvalloc", s);
		void *out = (void *)0x1234;
		errno = 4321;
		CHECK(F(posix_memalign)(&out, 64, s) == ENOMEM);
		CHECK(out == (void *)0x1234);
		/* realloc fails and leaves the block alone. */
		void *olds[3] = { slab, run, huge };
		for (int k = 0; k < 3; k++) {
			errno = 0;
			expect_enomem(F(realloc)(olds[k], s), "realloc", s);
			errno = 0;
			expect_enomem(F(reallocarray)(olds[k], s, 1), "reallocarray", s);
		}
	}
	CHECK(check_bytes(slab, 100, 1) == 100);
	CHECK(check_bytes(run, 100 * KiB, 2) == 100 * KiB);
	CHECK(check_bytes(huge, 6 * MiB, 3) == 6 * MiB);
	F(free)(slab);
	F(free)(run);
	F(free)(huge);

	/* An alignment that cannot be served. */
	errno = 0;
	void *p = F(memalign)(opaque_size(SIZE_MAX / 2 + 1), 16);
	CHECK(p == NULL && (errno == ENOMEM || errno == EINVAL));
	errno = 0;
	p = F(memalign)(opaque_size(SIZE_MAX), 16);
	CHECK(p == NULL && (errno == ENOMEM || errno == EINVAL));

	/* The heap still serves. */
	void *q = F(malloc)(100);
	CHECK(q != NULL);
	F(free)(q);
	CHECK_HEAP();
}

/* ---- calloc ---- */

static void test_calloc(void)
{
	static const size_t over[][2] = {
		{ SIZE_MAX, 2 }, { 2, SIZE_MAX }, { (size_t)1 << 32, (size_t)1 << 32 },
		{ SIZE_MAX / 2 + 1, 2 }, { SIZE_MAX / 3 + 1, 3 }, { SIZE_MAX, SIZE_MAX },
	};
	for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
		errno = 0;
		void *p = F(calloc)(opaque_size(over[i][0]), opaque_size(over[i][1]));
		CHECK_MSG(p == NULL && errno == ENOMEM, "calloc(%zu, %zu)", over[i][0], over[i][1]);
		void *r = F(malloc)(64);
		errno = 0;
		void *q = F(reallocarray)(opaque_ptr(r), opaque_size(over[i][0]), opaque_size(over[i][1]));
		CHECK(q == NULL && errno == ENOMEM);
		F(free)(r);
	}

	/* Zero after dirty reuse, in every tier; the block is dirtied up to its
	 * usable size, then calloc must hand back zeroes up to the size. */
	static const size_t sizes[] = {
		1, 8, 16, 17, 100, 128, 129, 1000, 4095, 4096, 5000, 16 * KiB, 32 * KiB - 1,
		32 * KiB, 32 * KiB + 1, 64 * KiB, 100 * KiB, 1 * MiB, 4 * MiB - 1, 4 * MiB,
		4 * MiB + 1, 6 * MiB,
	};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t s = sizes[i];
		for (int round = 0; round < 4; round++) {
			void *dirty[4];
			for (int k = 0; k < 4; k++) {
				dirty[k] = F(malloc)(s);
				CHECK(dirty[k] != NULL);
				memset(dirty[k], 0xa5, usable(dirty[k]));
			}
			for (int k = 0; k < 4; k++)
				F(free)(dirty[k]);
			unsigned char *z = round & 1 ? F(calloc)(1, s)
					 : F(calloc)(s >= 8 && s % 8 == 0 ? s / 8 : s,
						     s >= 8 && s % 8 == 0 ? 8 : 1);
			CHECK(z != NULL);
			if (!z)
				continue;
			size_t bad = s;
			for (size_t j = 0; j < s; j++)
				if (z[j]) {
					bad = j;
					break;
				}
			CHECK_MSG(bad == s, "calloc(%zu): byte %zu is 0x%02x", s, bad, z[bad]);
			F(free)(z);
		}
	}
	CHECK_HEAP();

	/* Zero when free blocks are a mix of released pages (trimmed) and
	 * dirty resident ones: calloc may skip its memset only for blocks that
	 * are wholly released. */
	struct test_rng rng;
	rng_seed(&rng, 11);
	enum { N = 96 };
	for (int round = 0; round < 6; round++) {
		void *d[N];
		for (int i = 0; i < N; i++) {
			size_t s = i % 3 ? 1 + rng_below(&rng, 32 * KiB)
					 : 32 * KiB + rng_below(&rng, 600 * KiB);
			d[i] = F(malloc)(s);
			memset(d[i], 0x5a, usable(d[i]));
		}
		for (int i = 0; i < N; i += 2)
			F(free)(d[i]);
		F(malloc_trim)(0);   /* these pages are released */
		for (int i = 1; i < N; i += 2)
			F(free)(d[i]);   /* and these stay resident and dirty */
		if (round & 1)
			F(malloc_trim)(0);
		for (int i = 0; i < N; i++) {
			size_t s = i % 2 ? 1 + rng_below(&rng, 64 * KiB)
					 : ZA_PAGE_SIZE * (1 + rng_below(&rng, 300));
			unsigned char *z = F(calloc)(1, s);
			d[i] = z;
			CHECK(z != NULL);
			size_t bad = s;
			for (size_t j = 0; z && j < s; j++)
				if (z[j]) {
					bad = j;
					break;
				}
			CHECK_MSG(bad == s, "round %d: calloc(%zu): byte %zu is not zero", round, s,
				  bad);
			if (z)
				memset(z, 0x77, s);
		}
		for (int i = 0; i < N; i++)
			F(free)(d[i]);
		CHECK_HEAP();
	}
}

/* ---- alignment ---- */

/* usable - size stays below the alignment plus the tier's rounding. */
static void check_aligned(void *p, size_t align, size_t size, const char *what)
{
	size_t a = align < 16 ? 16 : align;
	CHECK_MSG(p != NULL, "%s(%zu, %zu) failed", what, align, size);
	if (!p)
		return;
	CHECK_MSG(((uintptr_t)p & (a - 1)) == 0, "%s(%zu, %zu) = %p", what, align, size, p);
	size_t u = usable(p);
	size_t rounding = size <= 32 * KiB ? size / 8 + 16 : ZA_PAGE_SIZE - 1;
	CHECK_MSG(u >= size && (!own || u - size < a + rounding), "%s(%zu, %zu): usable %zu", what,
		  align, size, u);
	fill_bytes(p, u, align ^ size);
	CHECK(check_bytes(p, u, align ^ size) == u);
}

static void test_alignment(void)
{
	static const size_t sizes[] = {
		0, 1, 8, 15, 16, 17, 31, 64, 100, 255, 1000, 4095, 4096, 4097, 10000,
		32 * KiB - 1, 32 * KiB, 32 * KiB + 1, 64 * KiB, 100 * KiB, 1 * MiB, 1 * MiB + 1,
		3 * MiB,
	};
	const size_t nsizes = sizeof sizes / sizeof sizes[0];

	for (size_t align = 1; align <= 1 * MiB; align <<= 1) {
		for (size_t i = 0; i < nsizes; i++) {
			size_t s = sizes[i];
			void *p = F(memalign)(align, s);
			check_aligned(p, align, s, "memalign");
			F(free)(p);

			p = F(aligned_alloc)(align, s);
			check_aligned(p, align, s, "aligned_alloc");
			F(free_aligned_sized)(p, align, s);

			p = (void *)0x1234;
			int rc = F(posix_memalign)(&p, align, s);
			if (align < sizeof(void *)) {
				CHECK(rc == EINVAL && p == (void *)0x1234);
			} else {
				CHECK(rc == 0);
				check_aligned(p, align, s, "posix_memalign");
				F(free)(p);
			}

			/* Above the slab tier an aligned block costs its pages, not its
			 * alignment: the rest of the buddy block goes back. */
			if (own && (align > ZA_PAGE_SIZE || s > 32 * KiB)) {
				za_drain_caches();
				size_t before = pages_used();
				p = F(memalign)(align, s);
				za_drain_caches();
				size_t after = pages_used();
				CHECK_MSG(p && after - before == usable(p) / ZA_PAGE_SIZE,
					  "memalign(%zu, %zu) took %zu pages for %zu usable", align, s,
					  after - before, p ? usable(p) : 0);
				F(free)(p);
			}
		}
		CHECK_HEAP();
	}

	/* Alignments the buddy blocks cannot give go to their own mapping. */
	for (size_t align = 2 * MiB; align <= 64 * MiB; align <<= 1) {
		void *p = F(memalign)(align, 100);
		check_aligned(p, align, 100, "memalign");
		F(free)(p);
		p = F(aligned_alloc)(align, 5 * MiB);
		check_aligned(p, align, 5 * MiB, "aligned_alloc");
		F(free)(p);
	}

	/* Non-powers of two. */
	static const size_t odd[] = { 3, 5, 6, 7, 9, 12, 24, 48, 100, 1000, 4095, 4097, 12288,
				      65537, 3 * MiB, 3 * MiB + 1 };
	for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
		size_t a = odd[i], up = 1;
		while (up < a)
			up <<= 1;
		void *out = (void *)0x1234;
		errno = 777;
		CHECK(F(posix_memalign)(&out, a, 100) == EINVAL);
		CHECK(errno == 777 && out == (void *)0x1234);
		errno = 0;
		CHECK(F(aligned_alloc)(opaque_size(a), 100) == NULL && errno == EINVAL);
		/* memalign rounds the alignment up to a power of two, as glibc. */
		void *p = F(memalign)(a, 100);
		check_aligned(p, up, 100, "memalign(odd)");
		F(free)(p);
	}
	void *out = (void *)0x1234;
	errno = 777;
	CHECK(F(posix_memalign)(&out, 0, 100) == EINVAL);
	CHECK(F(posix_memalign)(&out, sizeof(void *) / 2, 100) == EINVAL);
	CHECK(F(posix_memalign)(&out, SIZE_MAX, 100) == EINVAL);
	CHECK(errno == 777 && out == (void *)0x1234);
	errno = 0;
	CHECK(F(aligned_alloc)(opaque_size(0), 100) == NULL && errno == EINVAL);

	/* valloc and pvalloc. */
	for (size_t i = 0; i < nsizes; i++) {
		size_t s = sizes[i];
		void *p = F(valloc)(s);
		check_aligned(p, ZA_PAGE_SIZE, s, "valloc");
		F(free)(p);
		p = F(pvalloc)(s);
		size_t rounded = s ? (s + ZA_PAGE_SIZE - 1) & ~(ZA_PAGE_SIZE - 1) : ZA_PAGE_SIZE;
		check_aligned(p, ZA_PAGE_SIZE, rounded, "pvalloc");
		F(free)(p);
	}
	CHECK_HEAP();
}

/* ---- realloc ---- */

/* Walks one block through the tiers and back; each step keeps the bytes
 * both sizes share. */
static void test_realloc_tiers(void)
{
	static const size_t steps[] = {
		100, 1000, 32 * KiB, 32 * KiB + 1, 100 * KiB, 4 * MiB, 4 * MiB + 1, 10 * MiB,
		20 * MiB, 5 * MiB, 4 * MiB, 1 * MiB, 40 * KiB, 32 * KiB, 5000, 16, 1,
		6 * MiB, 24, 2 * MiB, 8 * MiB, 64, 0,
	};
	for (int pass = 0; pass < 2; pass++) {
		size_t old = steps[0];
		unsigned char *p = pass ? F(calloc)(1, old) : F(malloc)(old);
		uint64_t seed = 99;
		fill_bytes(p, old, seed);
		for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
			size_t s = steps[i];
			errno = 1234;
			unsigned char *q = pass ? F(reallocarray)(p, 1, s) : F(realloc)(p, s);
			CHECK(errno == 1234);
			if (s == 0) {
				CHECK(q == NULL);   /* freed, as glibc */
				break;
			}
			CHECK_MSG(q != NULL, "realloc(%zu -> %zu)", old, s);
			if (!q)
				break;
			size_t keep = old < s ? old : s;
			CHECK_MSG(check_bytes(q, keep, seed) == keep, "realloc(%zu -> %zu) lost data",
				  old, s);
			CHECK(usable(q) >= s && ((uintptr_t)q & 15) == 0);
			seed++;
			fill_bytes(q, s, seed);
			p = q;
			old = s;
			CHECK_HEAP();
		}
	}

	if (!own)
		return;
	/* In place: within the slab object's usable size. */
	void *p = F(malloc)(100);
	size_t u = usable(p);
	CHECK(u == 112);
	CHECK(F(realloc)(p, u) == p);
	CHECK(F(realloc)(p, 101) == p);
	CHECK(F(realloc)(p, 60) == p);
	F(free)(p);

	/* Runs shrink in place, and grow in place into free pages after them. */
	p = F(malloc)(200 * KiB);
	fill_bytes(p, 200 * KiB, 5);
	void *q = F(realloc)(p, 100 * KiB);
	CHECK(q == p && usable(q) == 100 * KiB);
	CHECK(check_bytes(q, 100 * KiB, 5) == 100 * KiB);
	q = F(realloc)(p, 150 * KiB);
	CHECK(q == p && usable(q) == 152 * KiB);
	CHECK(check_bytes(q, 100 * KiB, 5) == 100 * KiB);
	CHECK_HEAP();
	F(free)(q);

	/* A run that shrinks to a slab size above 8 KiB stays in place. */
	p = F(malloc)(64 * KiB);
	fill_bytes(p, 64 * KiB, 7);
	q = F(realloc)(p, 9 * KiB);
	CHECK(q == p && usable(q) == 12 * KiB);
	CHECK(check_bytes(q, 9 * KiB, 7) == 9 * KiB);
	F(free)(q);

	/* Huge blocks shrink in place. */
	p = F(malloc)(20 * MiB);
	fill_bytes(p, 64, 6);
	q = F(realloc)(p, 10 * MiB);
	CHECK(q == p && usable(q) == 10 * MiB);
	CHECK(check_bytes(q, 64, 6) == 64);
	F(free)(q);

	/* realloc(p, 0) of every tier frees it. */
	za_drain_caches();
	size_t before = pages_used();
	for (int k = 0; k < 3; k++) {
		void *b = F(malloc)(k == 0 ? 2000 : k == 1 ? 300 * KiB : 9 * MiB);
		CHECK(F(realloc)(b, 0) == NULL);
	}
	za_drain_caches();
	CHECK(pages_used() <= before + 8);   /* the 2000 B class may keep a slab */
	CHECK_HEAP();
}

/*
 * A buffer grown by small appends (a string builder) must not be copied
 * once per size class: a move to grow takes a quarter more, and past 8 KiB
 * the buffer moves into a run that grows where it is. Here the free pages
 * after the run are given back to the OS every 4 KiB of growth (as decay
 * does in time), which is the worst case: every step past the run's room
 * moves. A quarter more each time bounds the moves by log(16384)/log(1.25)
 * = 44 and the bytes copied by 5 times the final size; the same growth one
 * class or one page at a time takes about 90 moves and 30 times the size.
 */
static void test_realloc_appends(void)
{
	size_t len = 16, moves = 0, copied = 0;
	unsigned char *s = F(malloc)(len);
	fill_bytes(s, len, 11);
	while (len < 256 * KiB) {
		unsigned char *t = F(realloc)(s, len + 16);
		CHECK_MSG(t != NULL, "realloc(%zu)", len + 16);
		if (!t)
			break;
		if (t != s) {
			moves++;
			copied += len;
			CHECK_MSG(check_bytes(t, len, 11) == len, "moving %zu bytes lost data", len);
		}
		s = t;
		for (size_t i = len; i < len + 16; i++)
			s[i] = mt_byte(11, i);
		len += 16;
		if (len % (4 * KiB) == 0)
			F(malloc_trim)(0);
	}
	printf("appends to %zu KiB: %zu moves, %zu KiB copied\n", len / KiB, moves, copied / KiB);
	CHECK_MSG(!own || moves <= 44, "%zu moves", moves);
	CHECK_MSG(!own || copied <= 5 * len, "%zu bytes copied to grow to %zu", copied, len);
	CHECK(usable(s) >= len);
	F(free)(s);
	CHECK_HEAP();
}

/* ---- usable size ---- */

static void test_usable_size(void)
{
	enum { LIVE = 64 };
	void *live[LIVE] = { 0 };
	size_t lsize[LIVE] = { 0 };
	struct test_rng rng;
	rng_seed(&rng, 7);

	/* Every size to 5000, then samples in each tier; each block is filled
	 * to its usable size while its neighbours are live and checked. */
	for (size_t s = 0; s < 5000 + 300; s++) {
		size_t size = s <= 5000 ? s : (size_t)1 << (13 + (s % 11)) | rng_below(&rng, 4096);
		unsigned slot = (unsigned)(s % LIVE);
		if (live[slot]) {
			CHECK_MSG(check_bytes(live[slot], lsize[slot], (uintptr_t)live[slot]) ==
					  lsize[slot],
				  "block of %zu usable bytes was overwritten", lsize[slot]);
			F(free)(live[slot]);
		}
		void *p = F(malloc)(size);
		CHECK(p != NULL);
		size_t u = usable(p);
		CHECK_MSG(u >= size, "usable(%zu) = %zu", size, u);
		fill_bytes(p, u, (uintptr_t)p);
		live[slot] = p;
		lsize[slot] = u;
	}
	for (unsigned i = 0; i < LIVE; i++) {
		CHECK(check_bytes(live[i], lsize[i], (uintptr_t)live[i]) == lsize[i]);
		F(free)(live[i]);
	}
	/* Class sizes, as documented in slab/size_class.h. */
	static const size_t want[][2] = { { 1, 16 }, { 16, 16 }, { 17, 32 }, { 100, 112 },
					  { 129, 144 }, { 1000, 1024 }, { 5000, 5120 },
					  { 32 * KiB, 32 * KiB }, { 32 * KiB + 1, 36 * KiB },
					  { 5 * MiB + 1, 5 * MiB + 4 * KiB } };
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		void *p = F(malloc)(want[i][0]);
		CHECK_MSG(!own || usable(p) == want[i][1], "usable(malloc(%zu)) = %zu", want[i][0],
			  usable(p));
		F(free_sized)(p, want[i][0]);
	}
	CHECK_HEAP();
}

/* ---- errno ---- */

#define KEEPS_ERRNO(expr)                                                    \
	do {                                                                 \
		errno = 1234;                                                \
		expr;                                                        \
		CHECK_MSG(errno == 1234, "%s set errno to %d", #expr, errno); \
	} while (0)

static void test_errno(void)
{
	void *p = NULL, *q = NULL;
	int rc = 0;
	static const size_t sizes[] = { 0, 24, 4000, 32 * KiB, 40 * KiB, 3 * MiB, 5 * MiB, 70 * MiB };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t s = sizes[i];
		KEEPS_ERRNO(p = F(malloc)(s));
		KEEPS_ERRNO(F(free)(p));
		KEEPS_ERRNO(p = F(calloc)(1, s));
		KEEPS_ERRNO(p = F(realloc)(p, s * 2 + 1));
		KEEPS_ERRNO(p = F(realloc)(p, s / 3 + 1));
		KEEPS_ERRNO(F(free)(p));
		KEEPS_ERRNO(p = F(memalign)(8192, s));
		KEEPS_ERRNO(F(free_aligned_sized)(p, 8192, s));
		KEEPS_ERRNO(rc = F(posix_memalign)(&p, 64, s));
		CHECK(rc == 0);
		KEEPS_ERRNO(q = F(aligned_alloc)(4096, s));
		KEEPS_ERRNO((void)usable(p));
		KEEPS_ERRNO(F(free_aligned_sized)(p, 64, s));
		KEEPS_ERRNO(F(free)(q));
		KEEPS_ERRNO(p = F(valloc)(s));
		KEEPS_ERRNO(F(free)(p));
		KEEPS_ERRNO(p = F(pvalloc)(s));
		KEEPS_ERRNO(F(free)(p));
	}
	/* More than a zone of runs, then all freed: a zone is unmapped and a
	 * page map decommitted inside free. */
	enum { N = 40 };
	void *big[N];
	for (int i = 0; i < N; i++) {
		KEEPS_ERRNO(big[i] = F(malloc)(3 * MiB));
		CHECK(big[i] != NULL);
		memset(big[i], i, 4096);
	}
	for (int i = 0; i < N; i++)
		KEEPS_ERRNO(F(free)(big[i]));
	KEEPS_ERRNO(F(malloc_trim)(0));
	KEEPS_ERRNO(za_drain_caches());
	struct za_stats st;
	za_stats_get(&st);
	CHECK(!own || st.zones_unmapped_total > 0);
	CHECK_HEAP();
}

/* ---- 16-byte minimum alignment ---- */

static void test_min_alignment(void)
{
	void *r = NULL;
	for (size_t s = 0; s <= 4096; s++) {
		void *a = F(malloc)(s), *c = F(calloc)(1, s);
		void *m = F(memalign)(8, s), *al = F(aligned_alloc)(1 << (s % 4), s);
		r = F(realloc)(r, s + 1);
		CHECK_MSG(((uintptr_t)a & 15) == 0 && ((uintptr_t)c & 15) == 0 &&
				  ((uintptr_t)m & 15) == 0 && ((uintptr_t)al & 15) == 0 &&
				  ((uintptr_t)r & 15) == 0,
			  "size %zu: %p %p %p %p %p", s, a, c, m, al, r);
		F(free)(a);
		F(free)(c);
		F(free)(m);
		F(free)(al);
	}
	F(free)(r);
	CHECK_HEAP();
}

/* ---- sized frees, trim ---- */

static void test_sized_and_trim(void)
{
	static const size_t sizes[] = { 1, 100, 4096, 32 * KiB, 50 * KiB, 5 * MiB };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t s = sizes[i];
		void *p = F(malloc)(s);
		F(free_sized)(p, s);
		p = F(malloc)(s);
		F(free_sized)(p, usable(p));   /* the usable size is a valid size */
		p = F(memalign)(256, s);
		F(free_aligned_sized)(p, 256, s);
		p = F(aligned_alloc)(64 * KiB, s);
		F(free_aligned_sized)(p, 64 * KiB, s);
	}
	int rc = F(malloc_trim)(0);
	CHECK(rc == 0 || rc == 1);
	rc = F(malloc_trim)(1 * MiB);
	CHECK(rc == 0 || rc == 1);
	CHECK_HEAP();
}

#ifdef TEST_NAMES
/* ---- the functions only the replaced malloc has ---- */

static bool from_zonealloc(void *fn)
{
	Dl_info info;
	return fn && dladdr(fn, &info) && info.dli_fname && strstr(info.dli_fname, "libzonealloc");
}

static void test_names(void)
{
	static const char *const names[] = {
		"malloc", "free", "calloc", "realloc", "reallocarray", "memalign",
		"posix_memalign", "aligned_alloc", "valloc", "pvalloc", "malloc_usable_size",
		"free_sized", "free_aligned_sized", "malloc_trim", "mallinfo", "mallinfo2",
		"malloc_stats", "mallopt", "cfree", "__libc_malloc", "__libc_free",
		"__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
		"__libc_pvalloc", "__posix_memalign",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		CHECK_MSG(from_zonealloc(dlsym(RTLD_DEFAULT, names[i])),
			  "%s does not resolve to libzonealloc", names[i]);
	CHECK(dlsym(RTLD_DEFAULT, "__libc_malloc") == dlsym(RTLD_DEFAULT, "malloc"));
	CHECK(dlsym(RTLD_DEFAULT, "cfree") == dlsym(RTLD_DEFAULT, "free"));
	if (!own) {
		/* Another backend serves: what is left is zonealloc's report. */
		void *p = __libc_malloc(100);
		CHECK(p && malloc_usable_size(p) >= 100);
		__libc_free(p);
		goto report;
	}

	/* The aliases behave as the functions they stand for. */
	void *p = __libc_malloc(100);
	CHECK(p && za_malloc_usable_size(p) == 112);
	p = __libc_realloc(p, 5000);
	CHECK(p && za_malloc_usable_size(p) == 5120);
	__libc_free(p);
	unsigned char *z = __libc_calloc(10, 100);
	CHECK(z && z[0] == 0 && z[999] == 0);
	cfree(z);
	p = __libc_memalign(512, 100);
	CHECK(p && ((uintptr_t)p & 511) == 0);
	__libc_free(p);
	p = __libc_valloc(100);
	CHECK(p && ((uintptr_t)p & (ZA_PAGE_SIZE - 1)) == 0);
	__libc_free(p);
	p = __libc_pvalloc(100);
	CHECK(p && za_malloc_usable_size(p) == ZA_PAGE_SIZE);
	__libc_free(p);
	p = NULL;
	CHECK(__posix_memalign(&p, 1024, 10) == 0 && ((uintptr_t)p & 1023) == 0);
	free(p);

	/* glibc's own allocations are ours too. */
	char *copy = strdup("zonealloc");
	CHECK(copy && za_malloc_usable_size(copy) == 16);
	free(copy);
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f != NULL);
	if (f)
		fclose(f);

	/* mallinfo2 reports the zones and the huge mappings. */
	void *h1 = malloc(5 * MiB), *h2 = malloc(9 * MiB);
	struct za_stats st;
	za_stats_get(&st);
	struct mallinfo2 mi = mallinfo2();
	CHECK(st.zones > 0 && mi.arena == st.zones * ((size_t)64 << 20));
	CHECK(mi.hblks >= 2 && mi.hblkhd >= 14 * MiB);
	CHECK(mi.uordblks + mi.fordblks == mi.arena);
	CHECK(mi.fordblks == (st.pages_free + st.pages_cached) * ZA_PAGE_SIZE);
	struct mallinfo mi1 = mallinfo();
	CHECK(mi1.arena == (int)mi.arena && mi1.hblks == (int)mi.hblks);
	free(h1);
	free(h2);
	mi = mallinfo2();
	CHECK(mi.hblks == 0 && mi.hblkhd == 0);

	/* mallopt accepts every tunable. */
	CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
	CHECK(mallopt(M_ARENA_MAX, 1) == 1);
	CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1);

report:
	/* malloc_stats writes zonealloc's report to stderr. */
	int pipefd[2];
	CHECK(pipe(pipefd) == 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(pipefd[1], 2);
	malloc_stats();
	dup2(saved, 2);
	close(saved);
	close(pipefd[1]);
	char buf[4096] = { 0 };
	ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
	close(pipefd[0]);
	CHECK(n > 0 && strstr(buf, "zonealloc report") && strstr(buf, "zones:"));
	CHECK_HEAP();
}
#endif

int main(void)
{
	struct za_stats st;
	za_stats_get(&st);
	own = !strcmp(st.backend, "zonealloc");
	if (!own)
		printf("%s: backend %s serves; checking the malloc contract\n", NAME, st.backend);
	test_zero();
	test_huge_sizes();
	test_calloc();
	test_alignment();
	test_realloc_tiers();
	test_realloc_appends();
	test_usable_size();
	test_errno();
	test_min_alignment();
	test_sized_and_trim();
#ifdef TEST_NAMES
	test_names();
#endif
	CHECK_HEAP();
	return test_done(NAME);
}
