/*
 * The size-class table, built by the compiler: sizes, slab orders,
 * capacities and the reciprocals that turn an offset into an object index
 * without a division.
 */
#include "slab/size_class.h"

#include "buddy/buddy.h"

/* Size of class c (see the layout in size_class.h). */
#define CMID(c) ((c) < 8 ? 0u : (unsigned)(c) - 8u)     /* no wide shifts in */
#define CHI(c) ((c) < 32 ? 0u : (unsigned)(c) - 32u)    /* the unused branches */
#define CSIZE(c) ((c) < 8 ? 16u * ((c) + 1u) \
		  : (c) < 32 ? (9u + CMID(c) % 8u) << (CMID(c) / 8u + 4u) \
		  : (17u + CHI(c) % 16u) << (CHI(c) / 16u + 6u))

/*
 * A slab is the smallest block of order SLAB_MIN_ORDER..5 that holds at
 * least SLAB_MIN_OBJECTS objects of the class (the biggest classes settle
 * for what fits in 128 KiB): a slab's tail waste stays small next to its
 * size, and a thread changes slabs (the generic path, a full list move)
 * once per that many objects at most. Slabs are carved a page at a time,
 * so a bigger slab costs no memory until it is used.
 */
#ifndef SLAB_MIN_OBJECTS
#define SLAB_MIN_OBJECTS 64u
#endif
#ifndef SLAB_MIN_ORDER
#define SLAB_MIN_ORDER 4u
#endif
/* free() finds a slab head's entry in plane 0 (buddy.h: za_page_at_plane0) */
_Static_assert(SLAB_MIN_ORDER >= ZA_MAP_PLANE_ORDER, "slab heads in plane 0");
#define SLAB_FITS(sz, k) ((k) >= SLAB_MIN_ORDER && (4096u << (k)) >= SLAB_MIN_OBJECTS * (sz))
#define SLAB_ORDER(sz) \
	(SLAB_FITS(sz, 0u) ? 0u : SLAB_FITS(sz, 1u) ? 1u : SLAB_FITS(sz, 2u) ? 2u \
	 : SLAB_FITS(sz, 3u) ? 3u : SLAB_FITS(sz, 4u) ? 4u : 5u)
#define SLAB_BYTES(sz) (4096u << SLAB_ORDER(sz))
/* The divisibility test's constants (size_class.h): the odd part of the
 * size, its inverse mod 2^32 by Newton's iteration (each step doubles the
 * correct low bits, from 3), and the limit. */
#define TZ(sz) ((unsigned)__builtin_ctz(sz))
#define ODD(sz) ((uint32_t)(sz) >> TZ(sz))
#define NEWTON(o, x) ((uint32_t)((x) * (2u - (o) * (x))))
#define INV(o) NEWTON(o, NEWTON(o, NEWTON(o, NEWTON(o, (uint32_t)(o)))))
#define DIV_LIMIT(sz) ((uint32_t)(0xffffffffu / (sz)))

#define CLASS(c) { CSIZE(c), INV(ODD(CSIZE(c))), DIV_LIMIT(CSIZE(c)), \
		   (uint16_t)(SLAB_BYTES(CSIZE(c)) / CSIZE(c)), SLAB_ORDER(CSIZE(c)), TZ(CSIZE(c)) }
#define CLASS8(c) CLASS(c), CLASS(c + 1), CLASS(c + 2), CLASS(c + 3), CLASS(c + 4), \
		  CLASS(c + 5), CLASS(c + 6), CLASS(c + 7)

const struct za_class_info za_classes[ZA_NCLASSES] = {
	CLASS8(0), CLASS8(8), CLASS8(16), CLASS8(24), CLASS8(32), CLASS8(40), CLASS8(48),
	CLASS8(56), CLASS8(64), CLASS8(72), CLASS8(80), CLASS8(88), CLASS8(96), CLASS8(104),
};

_Static_assert(CSIZE(31) == 1024 && CSIZE(32) == 1088, "sixteen per doubling above 1 KiB");
_Static_assert(CSIZE(ZA_NCLASSES - 1) == 32768, "the last class is the slab maximum");
_Static_assert(SLAB_ORDER(32768) <= ZA_SLAB_MAX_ORDER, "slab orders fit");
