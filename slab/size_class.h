/*
 * Size classes of the slab tier, 16 B to 32 KiB, all multiples of 16 so
 * every object keeps malloc's 16-byte alignment.
 *
 *   classes 0..7:   16, 32, ..., 128 (step 16)
 *   classes 8..71:  eight per doubling: (9..16) << (b - 3) for sizes in
 *                   (2^b, 2^(b+1)], b = 7..14
 *
 * Above 128 B the worst internal waste is under 1/9 (11.1%); from 65 to
 * 128 B it is up to 15/80 (18.75%): steps finer than 16 B would break the
 * 16-byte alignment that malloc promises.
 */
#ifndef ZA_SIZE_CLASS_H
#define ZA_SIZE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

#define ZA_SLAB_MAX      ((size_t)32 << 10)
#define ZA_NCLASSES      72
#define ZA_SLAB_MAX_ORDER 5   /* slabs of the largest classes are 128 KiB */

struct za_class_info {
	uint32_t size;        /* object size */
	uint32_t div_magic;   /* offset * magic >> 32 == offset / size in a slab */
	uint16_t capacity;    /* objects per slab */
	uint8_t order;        /* slab is a 2^order-page buddy block */
};

extern const struct za_class_info za_classes[ZA_NCLASSES];

/* size -> class without a loop or a division: two branches, a clz. */
static inline unsigned za_size_class(size_t size)
{
	if (size <= 128)
		return size <= 16 ? 0 : (unsigned)((size - 1) >> 4);
	size_t s = size - 1;
	unsigned b = 63u - (unsigned)__builtin_clzll(s);
	return 8u + (b - 7u) * 8u + (unsigned)((s >> (b - 3u)) & 7u);
}

static inline size_t za_class_size(unsigned cls)
{
	return za_classes[cls].size;
}

/* Object index of `offset` bytes into a slab of class `cls`. */
static inline uint32_t za_class_index(unsigned cls, uint32_t offset)
{
	return (uint32_t)(((uint64_t)offset * za_classes[cls].div_magic) >> 32);
}

#endif
