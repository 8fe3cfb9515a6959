/*
 * An idle class gives its pages back. A class's current slab stays with
 * it when it empties, so a program that uses a hundred sizes by turns
 * (espresso) would keep every page each size ever carved resident. After
 * two idle scans (slab.c: slab_idle_scan, every ZA_IDLE_SCAN_CALLS
 * slow-path calls) an empty current slab keeps its first page only.
 *
 * Checks, with mincore(2): the pages of a freed class's objects beyond the
 * slab's first are resident after the frees and not resident after other
 * classes have kept the heap busy; a class still in use is not trimmed;
 * the trimmed class serves objects again (written and read back in full),
 * and the heap checks clean.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "slab/slab.h"
#include "tests/malloc_test.h"

#define OBJ 3000    /* the 3072-byte class: ~1.3 objects a page */
#define NOBJ 24     /* 18 pages carved, in one slab */
#define PG ((uintptr_t)ZA_PAGE_SIZE)

/* Resident pages among the pages holding objs[from..n), not counting the
 * page of objs[0] (the slab's first page, which a trim keeps). */
static size_t resident_pages(void **objs, size_t n)
{
	uintptr_t first = (uintptr_t)objs[0] & ~(PG - 1);
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (size_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)objs[i];
		if (a < lo)
			lo = a;
		if (a + OBJ > hi)
			hi = a + OBJ;
	}
	lo &= ~(PG - 1);
	hi = (hi + PG - 1) & ~(PG - 1);
	unsigned char vec[256];
	size_t npages = (hi - lo) / PG;
	if (npages > sizeof vec || mincore((void *)lo, hi - lo, vec) != 0)
		return SIZE_MAX;
	size_t r = 0;
	for (size_t i = 0; i < npages; i++)
		if ((vec[i] & 1) && lo + i * PG != first)
			r++;
	return r;
}

/* Slow-path calls from another class: each free empties that class's
 * current slab. */
static void keep_busy(size_t size, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		void *p = F(malloc)(opaque_size(size));
		CHECK(p != NULL);
		memset(p, 1, 8);
		F(free)(p);
	}
}

int main(void)
{
	void *objs[NOBJ], *busy[NOBJ];
	for (size_t i = 0; i < NOBJ; i++) {
		objs[i] = F(malloc)(OBJ);
		busy[i] = F(malloc)(OBJ + 600);   /* the 3712-byte class, kept */
		CHECK(objs[i] != NULL && busy[i] != NULL);
		memset(objs[i], 0xa5, OBJ);
		memset(busy[i], 0x5a, OBJ + 600);
	}
	/* Objects of one slab, in address order: a fresh slab carves them so. */
	for (size_t i = 1; i < NOBJ; i++)
		CHECK((uintptr_t)objs[i] == (uintptr_t)objs[0] + i * 3072);
	/* One object of the busy class goes and comes back: a current slab
	 * that emptied once is not idle while objects are out. */
	F(free)(busy[NOBJ - 1]);
	busy[NOBJ - 1] = F(malloc)(OBJ + 600);
	memset(busy[NOBJ - 1], 0x5a, OBJ + 600);

	for (size_t i = 0; i < NOBJ; i++)
		F(free)(objs[i]);
	size_t before = resident_pages(objs, NOBJ);
	size_t busy_before = resident_pages(busy, NOBJ);
	printf("  after the frees: %zu pages resident beyond the first (busy class %zu)\n",
	       before, busy_before);
	CHECK_MSG(before >= 15 && before != SIZE_MAX, "%zu pages resident", before);

	keep_busy(40, 3 * ZA_IDLE_SCAN_CALLS);
	size_t after = resident_pages(objs, NOBJ);
	size_t busy_after = resident_pages(busy, NOBJ);
	printf("  after 3 scan intervals of malloc/free pairs of another class: %zu (busy class %zu)\n", after,
	       busy_after);
	CHECK_MSG(after == 0, "%zu pages of an idle class still resident", after);
	CHECK_MSG(busy_after == busy_before, "a class in use lost pages: %zu -> %zu", busy_before,
		  busy_after);
	for (size_t i = 0; i < NOBJ; i++) {
		const unsigned char *b = busy[i];
		size_t j = 0;
		while (j < OBJ + 600 && b[j] == 0x5a)
			j++;
		CHECK_MSG(j == OBJ + 600, "busy object %zu changed at byte %zu", i, j);
	}

	/* The trimmed class works as before: the same slab, carved again. */
	void *again[NOBJ];
	for (size_t i = 0; i < NOBJ; i++) {
		again[i] = F(malloc)(OBJ);
		CHECK(again[i] != NULL);
		fill_bytes(again[i], OBJ, i + 1);
	}
	for (size_t i = 0; i < NOBJ; i++) {
		CHECK_MSG(check_bytes(again[i], OBJ, i + 1) == OBJ, "object %zu corrupted", i);
		F(free)(again[i]);
	}
	for (size_t i = 0; i < NOBJ; i++)
		F(free)(busy[i]);
	CHECK_HEAP();
	return test_done("slab_idle");
}
