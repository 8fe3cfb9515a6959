/*
 * Size classes of the slab tier, 16 B to 32 KiB, all multiples of 16 so
 * every object keeps malloc's 16-byte alignment.
 *
 *   classes 0..7:    16, 32, ..., 128 (step 16)
 *   classes 8..31:   eight per doubling: (9..16) << (b - 3) for sizes in
 *                    (2^b, 2^(b+1)], b = 7..9 (up to 1 KiB)
 *   classes 32..111: sixteen per doubling: (17..32) << (b - 4), b = 10..14
 *
 * From 129 B to 1 KiB the worst internal waste is under 1/9 (11.1%); from
 * 65 to 128 B up to 15/80 (18.75%): steps finer than 16 B would break the
 * 16-byte alignment. Above 1 KiB it is under 1/17 (5.9%): that is where
 * the bytes are (a database's 4 KiB pages plus a header were 12% bigger
 * with eight classes per doubling, and sqlite3 12 MB fatter than glibc).
 */
#ifndef ZA_SIZE_CLASS_H
#define ZA_SIZE_CLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

#define ZA_SLAB_MAX      ((size_t)32 << 10)
#define ZA_NCLASSES      112
#define ZA_SLAB_MAX_ORDER 5   /* slabs of the largest classes are 128 KiB */

/*
 * `inv`, `shift` and `div_limit` test "is this offset a multiple of the
 * object size?" with a multiply and a rotate, no division (Granlund and
 * Montgomery; Hacker's Delight 10-17): with size = 2^shift * odd and inv
 * the inverse of odd mod 2^32, off is a multiple of size iff
 * rotr32(off * inv, shift) <= div_limit = (2^32 - 1) / size.
 */
struct za_class_info {
	uint32_t size;        /* object size */
	uint32_t inv;
	uint32_t div_limit;
	uint16_t capacity;    /* objects per slab */
	uint8_t order;        /* slab is a 2^order-page buddy block */
	uint8_t shift;
};
_Static_assert(sizeof(struct za_class_info) == 16, "a class is a shift away");

extern const struct za_class_info za_classes[ZA_NCLASSES] ZA_HIDDEN;

/* size -> class without a loop or a division: two branches, a clz. */
static inline unsigned za_size_class(size_t size)
{
	if (size <= 128)
		return size <= 16 ? 0 : (unsigned)((size - 1) >> 4);
	size_t s = size - 1;
	unsigned b = 63u - (unsigned)__builtin_clzll(s);
	if (b < 10)
		return 8u + (b - 7u) * 8u + (unsigned)((s >> (b - 3u)) & 7u);
	return 32u + (b - 10u) * 16u + (unsigned)((s >> (b - 4u)) & 15u);
}

/* malloc of up to ZA_DIRECT_MAX bytes finds its slab in one load: each
 * heap keeps, per 16-byte step of size, the current slab of the step's
 * class (mimalloc's pages_free_direct). */
#define ZA_DIRECT_MAX   1024u
#define ZA_DIRECT_SLOTS (ZA_DIRECT_MAX / 16 + 1)

static inline unsigned za_direct_index(size_t size)
{
	return (unsigned)((size + 15) >> 4);
}

/*
 * Lending. A class above ZA_LEND_MIN carves one object per page or so,
 * and each object it carves stays resident while the class sleeps: with
 * many such classes each holding its own high-water mark, the pages a
 * heap keeps are the sum of the classes' peaks, not the peak of their sum
 * (rpmalloc's rptest: carved bytes 1.5x those in use). So before carving,
 * such a class takes a free object of one of the next ZA_LEND_CLASSES
 * classes (at most a quarter bigger: sixteen classes per doubling), if
 * that class's current slab has one (slab.c: slab_lender). The object
 * stays its slab's: free, usable size and the checker see the bigger
 * class. A sized free of it names the smaller class: za_class_lends tells
 * the sized frees that this is no mismatch.
 */
#define ZA_LEND_MIN     2048u
#define ZA_LEND_CLASSES 4u

/* Whether an allocation of class `want` may be served by an object of
 * class `have` (> want) lent to it. */
static inline bool za_class_lends(unsigned want, unsigned have)
{
	return have - want - 1u < ZA_LEND_CLASSES && za_classes[want].size > ZA_LEND_MIN;
}

static inline size_t za_class_size(unsigned cls)
{
	return za_classes[cls].size;
}

/* The index of the object that starts `offset` bytes into a slab of the
 * class whose `inv` and `shift` these are; for an offset that is no
 * object's start, a number above the class's div_limit, so above any
 * capacity: free's whole check is this and one compare. */
static inline uint32_t za_class_index(uint32_t inv, unsigned shift, uint32_t offset)
{
	uint32_t x = offset * inv;
	return (x >> shift) | (x << ((32 - shift) & 31));
}

#endif
