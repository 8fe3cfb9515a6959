/*
 * The operating system, as zonealloc sees it: every mmap, munmap, madvise,
 * membarrier and write(2) of the heap goes through this header (os/os.c,
 * os/report.c, os/backtrace.c, os/thp.c).
 * Calls return 0 or an errno value and never touch the caller's errno.
 */
#ifndef ZA_OS_H
#define ZA_OS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The cold files (Makefile.am's libza_cold) are built for size. */
#if defined(ZA_COLD_FILE) && !defined(__clang__)
#pragma GCC optimize("Os")
#endif

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ZA_HIDDEN   __attribute__((visibility("hidden")))
#define ZA_EXPORT   __attribute__((visibility("default")))
#define ZA_NOINLINE __attribute__((noinline))
#define ZA_COLD     __attribute__((cold, noinline))
/*
 * For zeroed arrays of a page or more (the zone and region tables, paths,
 * report buffers): they go after every small variable (x86-64's .lbss
 * follows .bss), so the small ones share a few pages where the arrays
 * between them spread them over six, each made resident by a variable or
 * two. The arrays themselves are resident only where written.
 */
#if defined(__x86_64__)
#define ZA_BULK     __attribute__((section(".lbss")))
#else
#define ZA_BULK
#endif


/* Maps `size` bytes of fresh zero memory aligned to `align` (a power of two
 * >= the page size). */
int za_os_map_aligned(size_t size, size_t align, void **out);
int za_os_map(size_t size, void **out);
/* The same with a no-access page before and after:
 * for the heap's metadata. Never unmapped. */
int za_os_map_guarded(size_t size, void **out);
int za_os_reserve(size_t size, void **out);
int za_os_protect(void *addr, size_t size, bool access);
/* RAM and swap in bytes: no single mapping may be larger (os.c). */
size_t za_os_memory_max(void);
int za_os_unmap(void *addr, size_t size);
/* Resizes the mapping at addr: in place when `to` is NULL, else moved (its
 * pages, not copied) to the address `to`, replacing what is mapped there. */
int za_os_remap(void *addr, size_t old_size, size_t new_size, void *to, void **out);
/* Gives the pages back; they read as zero afterwards (MADV_DONTNEED). */
int za_os_decommit(void *addr, size_t size);
/* Lets the kernel take the pages when it needs them (MADV_FREE); until
 * then they keep their contents. */
int za_os_lazy_free(void *addr, size_t size);
/* How many of the pages of [addr, addr + size) are in memory, counted
 * until more than `enough` are seen; SIZE_MAX if the kernel cannot say. */
size_t za_os_resident_pages(const void *addr, size_t size, size_t enough);
/* Which of the `pages` pages (at most ZA_OS_PAGEMAP_MAX) from page-aligned
 * addr of a private anonymous mapping may hold data: bit i of held[i / 64]
 * is clear only for a page in neither memory nor swap, which reads as zero.
 * False (held unset) when the kernel will not say: /proc/self/pagemap
 * cannot be opened or read. */
#define ZA_OS_PAGEMAP_MAX 512
bool za_os_pages_held(const void *addr, size_t pages, uint64_t *held);

/* Transparent huge pages (thp.c): ZONEALLOC_THP's mode, the advice for a
 * new zone (`zone`) or huge mapping, and AnonHugePages of the process in
 * KiB (-1 where /proc cannot say). */
enum { ZA_THP_NEVER, ZA_THP_MADVISE, ZA_THP_ALWAYS, ZA_THP_REUSE };
extern int za_thp_mode;
#define ZA_THP_ORDER 9   /* a 2 MiB page, in 4 KiB pages' orders */
void za_os_thp_advise(void *addr, size_t size, bool zone);
long za_os_anon_huge_kb(void);

/* membarrier(2), private expedited: once registered, za_os_membarrier
 * makes every other running thread of the process execute a full memory
 * barrier before it returns. */
int za_os_membarrier_register(void);
int za_os_membarrier(void);

/*
 * Fork handlers are registered late (os/fork.c): a process that never has
 * a second thread never needs them, and registering them at start-up
 * costs every small program a 64 KiB read-only window of libc it would not
 * otherwise touch (__register_atfork's first call). Every allocator lock
 * is taken through za_lock, which registers them first once the process
 * has more than one thread; a thread thus holds none of our locks before
 * they are registered, and fork() either runs them or sees none held.
 */
/* Set by whoever has handlers to register (preload/init.c). */
extern void (*za_fork_register)(void) ZA_HIDDEN;
/* Registers them now if there is a second thread (or when `force`). */
void za_fork_arm(bool force);
/* pthread_mutex_lock and _trylock, after za_fork_arm. Out of line: the
 * check is two loads and branches, and 70 lock sites inlining it cost
 * 2 KiB of text that every process maps. */
void za_lock(pthread_mutex_t *m);
int za_trylock(pthread_mutex_t *m);

/* CLOCK_MONOTONIC_COARSE in milliseconds (os/clock.c). */
uint64_t za_os_clock_ms(void);

/* write(2) the whole buffer, retrying short writes and EINTR. */
void za_os_write(int fd, const char *buf, size_t len);

/*
 * A small printf for diagnostics that never allocates: %s %c %d %u %ld %lu (with width and -)
 * %lld %llu %zu %zd %x %lx %zx %p and %%. Output is cut at `cap` - 1 bytes
 * and always NUL-terminated; returns the length written.
 */
size_t za_vfmt(char *buf, size_t cap, const char *fmt, va_list ap);
size_t za_fmt(char *buf, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Formats into a fixed stack buffer and writes it to fd. */
void za_dprintf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A file name from a pattern in which %p stands for the process id (read
 * when called, so a forked child names its own file); NUL-terminated in
 * buf. Returns the length. */
size_t za_fmt_path(char *buf, size_t cap, const char *pattern);

/*
 * Misuse and corruption: one line "zonealloc: <message>" on stderr, a
 * backtrace where libunwind is available, then abort(). Never allocates.
 */
void za_fatal(const char *fmt, ...)
	__attribute__((noreturn, cold, format(printf, 1, 2)));

/*
 * A misuse by the program (a bad pointer or size handed to free, realloc,
 * malloc_usable_size, a write after free found in a free list): reported
 * as za_fatal reports, then, unless ZONEALLOC_ON_ERROR=warn, the same
 * abort. Under warn it returns, and the caller does nothing more with what
 * it was given (the object leaks), so the heap stays as it was.
 */
void za_misuse(const char *fmt, ...) __attribute__((cold, format(printf, 1, 2)));
extern bool za_misuse_warn ZA_HIDDEN;
extern _Atomic unsigned long za_misuse_count ZA_HIDDEN;

/* Backtraces (backtrace.c), from libunwind loaded on first use.
 * za_backtrace prints the calling thread's stack to fd, or a line saying
 * why there is none; za_backtrace_pcs stores up to max return addresses
 * and returns how many (0 without libunwind); za_unwind_load loads it
 * ahead of use and says whether it could. */
void za_backtrace(int fd);
int za_backtrace_pcs(void **pcs, int max);
bool za_unwind_load(void);

#endif
