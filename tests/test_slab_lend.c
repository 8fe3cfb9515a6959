/*
 * Lending (slab/size_class.h): a class above ZA_LEND_MIN that would carve
 * a new object takes a free one of the next few classes (at most a
 * quarter bigger) instead, so a heap's pages follow the peak of its
 * classes' sum, not the sum of their peaks.
 *
 * Checks: with the 4608-byte class holding free objects, a 4300-byte
 * allocation past its class's first objects gets one of them (its usable
 * size says so) and no new page is carved; the object is the lender's
 * again after free; a class's first objects are its own; sizes of 2 KiB
 * and below, aligned allocations and lenders more than a quarter bigger
 * never lend; a sized free of a lent object by the size it was asked
 * with is accepted (tests/test_cxx.cc: the exact check of sized delete);
 * the heap checks clean.
 *
 * Calls the za_* functions (libza_core): runs under the sanitizers too.
 */
#include <stdint.h>
#include <stdlib.h>

#include "slab/slab.h"
#include "tests/malloc_test.h"

/* Objects of `size` taken and given back, so the class's current slab
 * holds `n` free objects. */
static void leave_free(size_t size, size_t n)
{
	void *p[16];
	for (size_t i = 0; i < n; i++) {
		p[i] = F(malloc)(opaque_size(size));
		CHECK(p[i] != NULL);
		memset(p[i], 0x11, size);
	}
	for (size_t i = 0; i < n; i++)
		F(free)(p[i]);
}

static size_t usable(void *p)
{
	return F(malloc_usable_size)(p);
}

/* Eight allocations of `size` (aligned to `align` if not 0) kept in
 * own[], four of `lender` left free, then one more of `size`: its usable
 * size (0 if it failed or broke its alignment), freed again. */
static size_t past_own(void **own, size_t size, size_t align, size_t lender)
{
	for (int i = 0; i < 8; i++)
		own[i] = align ? F(aligned_alloc)(align, opaque_size(size)) : F(malloc)(opaque_size(size));
	leave_free(lender, 4);
	void *p = align ? F(aligned_alloc)(align, opaque_size(size)) : F(malloc)(opaque_size(size));
	size_t u = p && (!align || ((uintptr_t)p & (align - 1)) == 0) ? usable(p) : 0;
	F(free)(p);
	return u;
}

int main(void)
{
	/* A class's first four objects are its own, whatever lenders have;
	 * past them, the 4608-byte class lends. */
	leave_free(4600, 12);   /* the 4608-byte class: twelve free objects */
	void *own[8];
	for (int i = 0; i < 8; i++) {
		own[i] = F(malloc)(opaque_size(4300));   /* the 4352-byte class */
		CHECK(own[i] != NULL);
		memset(own[i], 0x33, 4300);
		CHECK_MSG(usable(own[i]) == (i < 4 ? 4352u : 4608u), "object %d of the class: %zu usable",
			  i, usable(own[i]));
	}
	size_t lent = 0;
	void *more[4];
	for (int i = 0; i < 4; i++) {
		more[i] = F(malloc)(opaque_size(4300));
		CHECK(more[i] != NULL);
		memset(more[i], 0x22, 4300);
		lent += usable(more[i]) == 4608;
	}
	printf("  4300-byte allocations past the class's first: %zu of 4 lent by the 4608-byte class\n",
	       lent);
	CHECK_MSG(lent == 4, "%zu of 4 lent", lent);
	/* Sized frees by the size asked for: no mismatch. */
	for (int i = 0; i < 4; i++)
		F(free_sized)(more[i], 4300);
	/* Home again: the lender's own allocations take them back. */
	void *back[6];
	for (int i = 0; i < 6; i++) {
		back[i] = F(malloc)(opaque_size(4600));
		CHECK(back[i] != NULL && usable(back[i]) == 4608);
	}
	for (int i = 0; i < 6; i++)
		F(free)(back[i]);

	/* 2 KiB and below never lend: carving there is a page's worth. */
	void *small[8], *mid[8], *al[8];
	size_t u = past_own(small, 2000, 0, 2100);   /* 2048; 2176 has free objects */
	CHECK_MSG(u == 2048, "a 2000-byte allocation got %zu usable bytes", u);
	/* Only the next four classes lend: 6144's are 6400 to 7168. */
	u = past_own(mid, 6100, 0, 7700);             /* 6144; 7936 */
	CHECK_MSG(u == 6144, "a 6100-byte allocation got %zu usable bytes", u);
	/* An aligned allocation is its class's own: the 4608-byte class was
	 * picked for 512-byte alignment, which 4864 would not give. */
	u = past_own(al, 4400, 512, 4800);            /* 4608; 4864 */
	CHECK_MSG(u == 4608, "aligned_alloc(512, 4400): %zu usable bytes", u);

	for (int i = 0; i < 8; i++) {
		F(free)(own[i]);
		F(free)(small[i]);
		F(free)(mid[i]);
		F(free)(al[i]);
	}
	CHECK_HEAP();
	return test_done("slab_lend");
}
