/*
 * Guard mode (ZONEALLOC_GUARD=1): the same tiers, with every allocation
 * checked. What it adds, and where it looks (shim/guard.c):
 *
 *  - a slab object gets its class for size + 8: the last word of its slot
 *    is a canary (the requested size, keyed with a per-process secret and
 *    the object's address), and the bytes between the size and the canary
 *    hold a pattern; free checks both, so one byte written past the end is
 *    found;
 *  - a block above the slab tier (a run, or a huge mapping) is placed
 *    against a no-access page at its end, so a write past it faults at
 *    once, and the SIGSEGV handler names the block before the default
 *    action;
 *  - freed memory is filled with a pattern and held in a FIFO quarantine
 *    bounded in bytes (ZONEALLOC_QUARANTINE, default 1 MiB; one per thread
 *    for its small objects, one shared for blocks); freed blocks of more
 *    than 16 pages are made no-access while there. The pattern is checked
 *    when the object leaves the quarantine and again when the slab hands
 *    it out, so a write after free is found and a read after free sees the
 *    pattern, not the old bytes; runs leaving it are kept, guard page and
 *    all, for the next block of their size;
 *  - malloc(0) returns a distinct pointer into a no-access reservation;
 *  - slabs thread their objects in a random order (slab.c);
 *  - realloc moves when the block outgrows its slot or room (the old
 *    block then waits in the quarantine: a stale pointer to it is a use
 *    after free); a growing block gets room to grow, as glibc's would,
 *    its pages past the block's last one no-access until it grows into
 *    them.
 *
 * The default mode pays nothing: the mode is found at the first
 * allocation, and then every allocation reaches it through the heap
 * profiler's countdown (kept at ZA_PROF_ASK, as traces keep it) and every free
 * through the traced tag of the zones, both of which already leave the
 * fast paths.
 */
#ifndef ZA_GUARD_H
#define ZA_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "os/os.h"

enum { ZA_GUARD_UNKNOWN = 0, ZA_GUARD_OFF = 1, ZA_GUARD_ON = 2 };
extern int za_guard_state ZA_HIDDEN;

/* Reads ZONEALLOC_GUARD once, at the first allocation (before any slab
 * exists), and starts guard mode when it asks; true when on. */
ZA_NOINLINE bool za_guard_detect(void);

static inline bool za_guard_active(void)
{
	int s = __atomic_load_n(&za_guard_state, __ATOMIC_RELAXED);
	if (likely(s == ZA_GUARD_OFF))
		return false;
	return s == ZA_GUARD_ON || za_guard_detect();
}

void *za_guard_alloc(size_t size, size_t align, bool zero);
void *za_guard_realloc(void *p, size_t size);
/* free, and the sized and aligned frees: `size` is checked exactly when
 * `sized`, the alignment when `align` > 1. */
void za_guard_free(void *p, size_t size, size_t align, bool sized, const char *call);
size_t za_guard_usable_size(const void *p, const char *call);
/* At exit: reports a write into an object still in the quarantine. */
void za_guard_exit(void);
void za_guard_lock(void);
void za_guard_unlock(void);
void za_guard_reset_child(void);

#endif
