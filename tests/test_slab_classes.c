/*
 * The size-class table: sizes are multiples of 16 and increasing, a size
 * maps to the smallest class that holds it, the direct slots of small
 * sizes name that class, slabs hold their capacity, and the division-free
 * test of free() (za_class_index below the capacity) agrees with
 * off % size == 0 && off / size < capacity for every offset of every
 * class's slab and past its end.
 */
#include <stdio.h>

#include "buddy/buddy.h"
#include "slab/size_class.h"
#include "tests/check.h"

int main(void)
{
	for (unsigned c = 0; c < ZA_NCLASSES; c++) {
		const struct za_class_info *ci = &za_classes[c];
		uint32_t slab_bytes = (uint32_t)ZA_PAGE_SIZE << ci->order;
		CHECK_MSG(ci->size % 16 == 0, "class %u: size %u", c, ci->size);
		CHECK_MSG(c == 0 || ci->size > za_classes[c - 1].size, "class %u not increasing", c);
		CHECK_MSG(ci->capacity == slab_bytes / ci->size, "class %u: capacity %u", c,
			  ci->capacity);
		CHECK_MSG(ci->order <= ZA_SLAB_MAX_ORDER, "class %u: order %u", c, ci->order);
		unsigned wrong = 0;
		for (uint32_t off = 0; off <= slab_bytes + ci->size; off++) {
			uint32_t x = za_class_index(ci->inv, ci->shift, off);
			bool object = off % ci->size == 0 && off / ci->size < ci->capacity;
			wrong += (x < ci->capacity) != object || (object && x != off / ci->size);
		}
		CHECK_MSG(wrong == 0, "class %u (%u B): %u offsets misjudged", c, ci->size, wrong);
	}
	for (size_t size = 0; size <= ZA_SLAB_MAX; size++) {
		unsigned c = za_size_class(size);
		CHECK_MSG(c < ZA_NCLASSES && za_classes[c].size >= size &&
				  (c == 0 || za_classes[c - 1].size < size),
			  "size %zu -> class %u", size, c);
		if (size <= ZA_DIRECT_MAX) {
			unsigned i = za_direct_index(size);
			unsigned lo = c ? za_classes[c - 1].size / 16 + 1 : 0;
			CHECK_MSG(i >= lo && i <= za_classes[c].size / 16,
				  "size %zu: direct slot %u outside class %u's", size, i, c);
		}
	}
	return test_done("slab_classes");
}
