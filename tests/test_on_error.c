/*
 * ZONEALLOC_ON_ERROR=warn (issue 12 item 3): each misuse is reported with
 * its usual line and the program goes on; the call does nothing more with
 * what it was handed (it leaks), so the heap checks clean after every case
 * and serves allocations as before. The library's switch is set directly
 * (the preload sets it from the option; test_preload_options runs that).
 * Reports go to a file standing in for stderr, where each case finds its
 * line. In the default mode each of these aborts (test_malloc_misuse).
 *
 * Calls the za_* functions (libza_core).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "os/os.h"
#include "tests/malloc_test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static int out_fd;     /* where fd 2 writes */
static off_t seen;     /* how far the cases have read it */
static unsigned cases;

/* The report the last case wrote starts with `want` (%p filled in). */
static void expect_report(const char *name, const char *want)
{
	char buf[8192];
	off_t end = lseek(out_fd, 0, SEEK_END);
	ssize_t n = pread(out_fd, buf, sizeof buf - 1, seen);
	seen = end;
	buf[n > 0 ? n : 0] = '\0';
	CHECK_MSG(!strncmp(buf, want, strlen(want)), "%s: wanted a report starting\n  \"%s\"\n  got \"%.200s\"",
		  name, want, buf);
	CHECK_HEAP();
	/* The heap still serves and takes back what it serves. */
	void *p[64];
	for (int i = 0; i < 64; i++) {
		p[i] = za_malloc((size_t)i * 61 + 1);
		CHECK(p[i]);
	}
	for (int i = 0; i < 64; i++)
		za_free(p[i]);
	CHECK_HEAP();
	cases++;
}

/* No report since the last case. */
static void expect_quiet(const char *name)
{
	off_t end = lseek(out_fd, 0, SEEK_END);
	CHECK_MSG(end == seen, "%s: an unexpected report", name);
	seen = end;
}

int main(void)
{
	char path[] = "/tmp/za-on-error-XXXXXX";
	out_fd = mkstemp(path);
	if (out_fd < 0)
		return 99;
	unlink(path);
	int saved_err = dup(2);
	dup2(out_fd, 2);
	za_misuse_warn = true;
	char want[256];

	/* A slab object freed twice: the second free is refused. */
	char *p = opaque_ptr(za_malloc(100));
	za_free(p);
	za_free(p);
	snprintf(want, sizeof want, "zonealloc: free(%p): double free of a 112-byte slab object", (void *)p);
	expect_report("slab double free", want);
	void *a = za_malloc(100), *b = za_malloc(100);   /* p is free once, not twice */
	CHECK(a && b && a != b);
	za_free(a);
	za_free(b);

	/* An interior pointer into a live object: the object stays live. */
	p = opaque_ptr(za_malloc(100));
	memset(p, 0x5a, 100);
	za_free(p + 16);
	snprintf(want, sizeof want, "zonealloc: free(%p): interior pointer", (void *)(p + 16));
	expect_report("slab interior", want);
	CHECK(p[0] == 0x5a && p[99] == 0x5a);
	za_free(p);
	expect_quiet("slab interior: the real free");

	/* A run and a huge block freed twice. */
	p = opaque_ptr(za_malloc(100 * KiB));
	za_free(p);
	za_free(p);
	snprintf(want, sizeof want, "zonealloc: free(%p): double free", (void *)p);
	expect_report("run double free", want);
	p = opaque_ptr(za_malloc(8 * MiB));
	za_free(p);
	za_free(p);
	snprintf(want, sizeof want, "zonealloc: free(%p): double free of a huge block", (void *)p);
	expect_report("huge double free", want);

	/* A pointer the heap never handed out. */
	static char not_ours[64];
	za_free(opaque_ptr(not_ours + 16));
	snprintf(want, sizeof want, "zonealloc: free(%p): pointer not allocated by zonealloc",
		 (void *)(not_ours + 16));
	expect_report("foreign pointer", want);

	/* Sized frees with the wrong size: the object stays live. */
	p = opaque_ptr(za_malloc(4 * KiB));
	za_free_sized(p, opaque_size(16));
	snprintf(want, sizeof want, "zonealloc: free_sized(%p, 16): size is smaller", (void *)p);
	expect_report("free_sized smaller", want);
	za_free_sized(p, opaque_size(200 * KiB));
	snprintf(want, sizeof want, "zonealloc: free_sized(%p, 204800): size is larger", (void *)p);
	expect_report("free_sized larger", want);
	za_free_sized(p, 4 * KiB);
	expect_quiet("free_sized: the right size");

	/* malloc_usable_size of a freed object: 0. */
	p = opaque_ptr(za_malloc(100));
	za_free(p);
	size_t usable = za_malloc_usable_size(p);
	CHECK(usable == 0);
	snprintf(want, sizeof want, "zonealloc: malloc_usable_size(%p): the 112-byte slab object was freed",
		 (void *)p);
	expect_report("usable size of a freed object", want);

	/* realloc of an interior pointer fails (EINVAL); the object is kept. */
	p = opaque_ptr(za_malloc(100));
	memset(p, 0x6b, 100);
	errno = 0;
	void *q = za_realloc(p + 32, 300);
	CHECK(q == NULL && errno == EINVAL);
	snprintf(want, sizeof want, "zonealloc: realloc(%p): interior pointer", (void *)(p + 32));
	expect_report("realloc interior", want);
	CHECK(p[0] == 0x6b && p[99] == 0x6b);
	za_free(p);

	/* A write after free into a free-list link: the allocation that
	 * meets it is served, the rest of that list is dropped. */
	void *objs[8];
	for (int i = 0; i < 8; i++)
		objs[i] = za_malloc(128);
	p = opaque_ptr(objs[5]);
	za_free(p);
	memset(p, 'A', 8);
	q = za_malloc(opaque_size(128));
	CHECK(q == p);
	snprintf(want, sizeof want, "zonealloc: malloc: corrupted free list: the freed 128-byte object at %p",
		 (void *)p);
	expect_report("write after free", want);
	for (int i = 0; i < 8; i++)
		za_free(objs[i]);
	expect_quiet("write after free: the frees");

	/* Page-level frees with the wrong order or count. */
	p = za_alloc_pages(2, ZA_F_NONE, NULL);
	CHECK(p);
	za_free_pages(p, 3);
	snprintf(want, sizeof want, "zonealloc: za_free_pages(%p): wrong order", (void *)p);
	expect_report("za_free_pages wrong order", want);
	za_free_pages(p, 2);
	expect_quiet("za_free_pages: the right order");
	p = za_alloc_pages_exact(5, ZA_F_NONE, NULL);
	CHECK(p);
	za_free_pages_exact(p, 6);
	snprintf(want, sizeof want, "zonealloc: za_free_pages_exact(%p): run has 5 pages, caller says 6",
		 (void *)p);
	expect_report("za_free_pages_exact wrong count", want);
	za_free_pages_exact(p, 5);
	expect_quiet("za_free_pages_exact: the right count");

	unsigned long counted = atomic_load(&za_misuse_count);
	dup2(saved_err, 2);
	CHECK_MSG(counted == cases, "%lu misuses counted, %u cases", counted, cases);
	printf("  %u misuses reported and gone on from\n", cases);
	return test_done("on_error");
}
