/*
 * Backtraces (os.h), from libunwind loaded when the first one is wanted.
 *
 * Linked in, libunwind and the liblzma it depends on were mapped and
 * relocated in every process, and liblzma's ifunc resolvers fault in its
 * text: 108 KiB of resident pages in a program that never prints a
 * backtrace, 4-7% of the peak RSS of the small programs of mimalloc-bench
 * (see DESIGN-NOTES.md). Most processes never print one, so the library is
 * dlopen'ed on the first misuse report (za_fatal) or when the heap
 * profiler starts, and its entry points are called through pointers.
 *
 * Loading runs the dynamic loader, which allocates through malloc, that is
 * through zonealloc. The profiler loads before it samples; za_fatal loads
 * with no zone lock held (misuse is found before a lock is taken), and
 * with SIGSEGV and SIGBUS turned into the abort it was about to do, so a
 * heap too damaged to load a library still ends in SIGABRT after the
 * report's first line.
 */
#include "config.h"   /* HAVE_LIBUNWIND, ZA_LIBUNWIND_SONAME */
#include "os/os.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#ifdef HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <libunwind.h>

/* libunwind's names are macros (unw_init_local is _ULx86_64_init_local
 * where only local unwinding is asked for): dlsym wants what they expand to. */
#define ZA_STR(x) #x
#define ZA_SYM(x) ZA_STR(x)

static struct {
	int (*getcontext)(unw_context_t *);
	int (*init_local)(unw_cursor_t *, unw_context_t *);
	int (*step)(unw_cursor_t *);
	int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
	int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
	int (*backtrace)(void **, int);
} uw;

enum { UW_UNTRIED, UW_LOADING, UW_LOADED, UW_MISSING };
static _Atomic int uw_state;
static __thread bool uw_loading_here;

static bool resolve(void *h)
{
	*(void **)&uw.getcontext = dlsym(h, ZA_SYM(unw_tdep_getcontext));
	*(void **)&uw.init_local = dlsym(h, ZA_SYM(unw_init_local));
	*(void **)&uw.step = dlsym(h, ZA_SYM(unw_step));
	*(void **)&uw.get_reg = dlsym(h, ZA_SYM(unw_get_reg));
	*(void **)&uw.get_proc_name = dlsym(h, ZA_SYM(unw_get_proc_name));
	*(void **)&uw.backtrace = dlsym(h, ZA_SYM(unw_backtrace));
	return uw.getcontext && uw.init_local && uw.step && uw.get_reg && uw.get_proc_name &&
	       uw.backtrace;
}

bool za_unwind_load(void)
{
	int st = atomic_load_explicit(&uw_state, memory_order_acquire);
	if (st == UW_LOADED)
		return true;
	if (st == UW_MISSING || uw_loading_here)
		return false;   /* (a misuse inside the loader's own allocations) */
	int expected = UW_UNTRIED;
	if (atomic_compare_exchange_strong(&uw_state, &expected, UW_LOADING)) {
		uw_loading_here = true;
		void *h = dlopen(ZA_LIBUNWIND_SONAME, RTLD_NOW | RTLD_LOCAL);
		bool ok = h && resolve(h);
		uw_loading_here = false;
		atomic_store_explicit(&uw_state, ok ? UW_LOADED : UW_MISSING, memory_order_release);
		return ok;
	}
	while ((st = atomic_load_explicit(&uw_state, memory_order_acquire)) == UW_LOADING)
		sched_yield();
	return st == UW_LOADED;
}

int za_backtrace_pcs(void **pcs, int max)
{
	if (!za_unwind_load())
		return 0;
	int n = uw.backtrace(pcs, max);
	return n > 0 ? n : 0;
}

static void load_fault(int sig)
{
	(void)sig;
	static const char msg[] = "  (no backtrace: loading libunwind faulted: the heap is damaged)\n";
	za_os_write(2, msg, sizeof msg - 1);
	signal(SIGABRT, SIG_DFL);
	raise(SIGABRT);
	_exit(134);
}

void za_backtrace(int fd)
{
	if (atomic_load_explicit(&uw_state, memory_order_acquire) != UW_LOADED) {
		struct sigaction fault = { .sa_handler = load_fault }, old_segv, old_bus;
		sigaction(SIGSEGV, &fault, &old_segv);
		sigaction(SIGBUS, &fault, &old_bus);
		bool ok = za_unwind_load();
		sigaction(SIGSEGV, &old_segv, NULL);
		sigaction(SIGBUS, &old_bus, NULL);
		if (!ok) {
			za_dprintf(fd, "  (no backtrace: %s cannot be loaded)\n", ZA_LIBUNWIND_SONAME);
			return;
		}
	}
	unw_context_t ctx;
	unw_cursor_t cur;
	if (uw.getcontext(&ctx) || uw.init_local(&cur, &ctx))
		return;
	for (int depth = 0; depth < 32 && uw.step(&cur) > 0; depth++) {
		unw_word_t ip = 0, off = 0;
		char name[128];
		uw.get_reg(&cur, UNW_REG_IP, &ip);
		if (uw.get_proc_name(&cur, name, sizeof name, &off))
			za_fmt(name, sizeof name, "?");
		za_dprintf(fd, "  #%d %p %s+0x%lx\n", depth, (void *)ip, name, (unsigned long)off);
	}
}

#else /* !HAVE_LIBUNWIND */

bool za_unwind_load(void)
{
	return false;
}

int za_backtrace_pcs(void **pcs, int max)
{
	(void)pcs;
	(void)max;
	return 0;
}

void za_backtrace(int fd)
{
	za_dprintf(fd, "  (no backtrace: built without libunwind)\n");
}

#endif
