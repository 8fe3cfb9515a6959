/*
 * An idle class gives its pages back. A class's current slab stays with
 * it when it empties, so a program that uses a hundred sizes by turns
 * (espresso) would keep every page each size ever carved resident. An
 * empty current slab found unused at two idle scans in a row (slab.c:
 * slab_idle_scan, every ZA_IDLE_SCAN_CALLS slow-path calls) gives back
 * every page it carved, its first too; a class that comes back soon after
 * its trim waits longer before the next.
 *
 * Checks, with mincore(2) and the tier's trim counter:
 *  - the pages of a freed class's objects are resident after the frees
 *    and not resident after other classes have kept the heap busy, the
 *    slab's first page included; so is the single page of a class that
 *    carved one page only;
 *  - a class still in use is not trimmed, nor is the class of a
 *    malloc/free loop at one object (its slab empties at every free);
 *  - a class used once every few scans is trimmed a few times at most,
 *    not once per use;
 *  - the trimmed class serves objects again (written and read back in
 *    full), and the heap checks clean.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "slab/slab.h"
#include "tests/malloc_test.h"

#define OBJ 3000    /* the 3072-byte class: ~1.3 objects a page */
#define NOBJ 24     /* 18 pages carved, in one slab */
#define PG ((uintptr_t)ZA_PAGE_SIZE)

/* Resident pages among the pages holding objs[0..n) of `size` bytes. */
static size_t resident_pages(void **objs, size_t n, size_t size)
{
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (size_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)objs[i];
		if (a < lo)
			lo = a;
		if (a + size > hi)
			hi = a + size;
	}
	lo &= ~(PG - 1);
	hi = (hi + PG - 1) & ~(PG - 1);
	unsigned char vec[256];
	size_t npages = (hi - lo) / PG;
	if (npages > sizeof vec || mincore((void *)lo, hi - lo, vec) != 0)
		return SIZE_MAX;
	size_t r = 0;
	for (size_t i = 0; i < npages; i++)
		if (vec[i] & 1)
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

static uint64_t trims(void)
{
	return atomic_load(&za_slab_counters.idle_trims);
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
	/* A class that carved one page: one object, freed. */
	void *one = F(malloc)(200);
	CHECK(one != NULL);
	memset(one, 0x3c, 200);
	F(free)(one);
	size_t before = resident_pages(objs, NOBJ, OBJ);
	size_t busy_before = resident_pages(busy, NOBJ, OBJ + 600);
	size_t one_before = resident_pages(&one, 1, 200);
	printf("  after the frees: %zu pages resident (busy class %zu, one-page class %zu)\n",
	       before, busy_before, one_before);
	CHECK_MSG(before >= 16 && before != SIZE_MAX, "%zu pages resident", before);
	CHECK_MSG(one_before == 1, "the one-page class: %zu pages resident", one_before);

	/* A malloc/free loop at one object: every free empties its class's
	 * current slab, which is busy, not idle. */
	uint64_t t0 = trims();
	keep_busy(40, 3 * ZA_IDLE_SCAN_CALLS);
	uint64_t loop_trims = trims() - t0;
	size_t after = resident_pages(objs, NOBJ, OBJ);
	size_t busy_after = resident_pages(busy, NOBJ, OBJ + 600);
	size_t one_after = resident_pages(&one, 1, 200);
	printf("  after 3 scan intervals of malloc/free pairs of another class: %zu (busy class %zu, "
	       "one-page class %zu), %llu trims\n", after, busy_after, one_after,
	       (unsigned long long)loop_trims);
	CHECK_MSG(one_after == 0, "the idle one-page class kept its page");
	/* (the two idle classes above: the loop's own class is not among them) */
	CHECK_MSG(loop_trims <= 2, "%llu trims in 3 scan intervals", (unsigned long long)loop_trims);
	t0 = trims();
	keep_busy(40, 40 * ZA_IDLE_SCAN_CALLS);
	loop_trims = trims() - t0;
	printf("  40 more scan intervals of the loop: %llu trims\n", (unsigned long long)loop_trims);
	CHECK_MSG(loop_trims == 0, "the loop's class was trimmed %llu times",
		  (unsigned long long)loop_trims);
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

	/* A class used once every 4 scan intervals: trimmed the first times,
	 * then it waits longer than it sleeps. */
	t0 = trims();
	unsigned uses = 100;
	for (unsigned i = 0; i < uses; i++) {
		void *q = F(malloc)(opaque_size(700));
		CHECK(q != NULL);
		memset(q, 7, 700);
		F(free)(q);
		keep_busy(40, 4 * ZA_IDLE_SCAN_CALLS);
	}
	uint64_t turn_trims = trims() - t0;
	printf("  a class used once every 4 scan intervals, %u times: %llu trims\n", uses,
	       (unsigned long long)turn_trims);
	CHECK_MSG(turn_trims >= 1 && turn_trims <= 8, "%llu trims", (unsigned long long)turn_trims);

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
