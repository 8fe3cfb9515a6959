/*
 * Allocation traces (ZONEALLOC_TRACE=FILE): every malloc-family and za_*
 * call of a program, one fixed-size record each, for zonealloc-replay
 * (the same calls against any allocator) and zonealloc-trace (what the
 * program's heap does). The file format, version 1, little-endian:
 *
 *   header, 64 bytes:  char magic[8] = "zatrace\0"; u32 version = 1;
 *                      u32 record_size = 48; u32 pid; u32 ppid;
 *                      u64 realtime_ns (CLOCK_REALTIME when recording began);
 *                      u64 reserved; char comm[24] (the program's name)
 *   records, 48 bytes: u64 t_ns (CLOCK_MONOTONIC when the call began,
 *                      from the start of the trace); u32 dur_ns (how long
 *                      it took, saturating); u32 thread (1, 2, ... in the
 *                      order threads first called); u64 addr (the result,
 *                      or the pointer freed); u64 size (asked for; calloc:
 *                      n * size; the free_sized forms: the size given);
 *                      u64 old (realloc: the pointer given; za_alloc and
 *                      the page calls: the flags); u8 op (enum
 *                      za_trace_op); u8 align_log2 (0: none asked);
 *                      u16 flags (ZA_TRACE_FAILED); u32 reserved
 *
 * Records of one thread are in the order it made the calls; threads'
 * records interleave in blocks (each thread writes its own buffer), so a
 * reader orders them by time. A block is freed at t_ns, before any other
 * thread could get its address again, and handed out at t_ns + dur_ns,
 * before any other thread could free it: that order pairs every free with
 * its allocation. operator new and new[] are recorded as malloc, delete as
 * free (with its size, as free_sized), realloc(NULL, n) as malloc and
 * realloc(p, 0) as free (what they are); calls made inside a recorded call
 * (realloc's own malloc) are not recorded.
 */
#ifndef ZA_TRACE_H
#define ZA_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

enum za_trace_op {
	ZA_TOP_MALLOC = 1,    /* malloc, operator new */
	ZA_TOP_CALLOC = 2,
	ZA_TOP_REALLOC = 3,   /* realloc, reallocarray of a block to a size (old: the block) */
	ZA_TOP_MEMALIGN = 4,  /* memalign, posix_memalign, aligned_alloc, valloc, pvalloc,
			       * aligned operator new */
	ZA_TOP_FREE = 5,      /* free, operator delete */
	ZA_TOP_FREE_SIZED = 6, /* free_sized, free_aligned_sized, sized delete */
	ZA_TOP_ZA_ALLOC = 7,  /* za_alloc (old: the flags) */
	ZA_TOP_ALLOC_PAGES = 8, /* za_alloc_pages, za_alloc_pages_exact (size in bytes) */
	ZA_TOP_FREE_PAGES = 9, /* za_free_pages, za_free_pages_exact */
};

#define ZA_TRACE_FAILED 1u    /* the call returned NULL (or an error) */
#define ZA_TRACE_VERSION 1u
#define ZA_TRACE_MAGIC "zatrace"

struct za_trace_header {
	char magic[8];
	uint32_t version, record_size;
	uint32_t pid, ppid;
	uint64_t realtime_ns;
	uint64_t reserved;
	char comm[24];
};

struct za_trace_record {
	uint64_t t_ns;
	uint32_t dur_ns;
	uint32_t thread;
	uint64_t addr;
	uint64_t size;
	uint64_t old;
	uint8_t op;
	uint8_t align_log2;
	uint16_t flags;
	uint32_t reserved;
};

_Static_assert(sizeof(struct za_trace_header) == 64, "trace header is 64 bytes");
_Static_assert(sizeof(struct za_trace_record) == 48, "trace record is 48 bytes");

/* Set once, before main, when ZONEALLOC_TRACE names a file. */
extern bool za_trace_on ZA_HIDDEN;

/* One recorded call: begin it before the call, end it after. */
struct za_trace_call {
	uint64_t t0;
};

/* False when this thread is inside a recorded call already (its inner
 * allocations are the allocator's business, not the program's). */
bool za_trace_begin(struct za_trace_call *c);
/* Records the call begun by c (errno is kept). */
void za_trace_end(struct za_trace_call *c, enum za_trace_op op, const void *addr, size_t size,
		  uintptr_t old, size_t align, unsigned flags);

/* Opens the trace file (%p: the process id) and starts recording. A file
 * of that name being written by another live process (a parent that ran
 * this program) is left alone: this process writes FILE.PID instead. */
void za_trace_start(const char *path, int report_fd);
/* At exit: writes out every thread's records and says how many. */
void za_trace_exit(void);
void za_trace_lock(void);
void za_trace_unlock(void);
/* In a forked child: drops the parent's records and opens a file of its own. */
void za_trace_reset_child(void);

#endif
