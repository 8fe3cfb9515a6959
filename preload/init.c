/*
 * Process-level set-up of the preloaded heap: options, fork handlers, the
 * report at exit. The allocator serves before any of this runs (its state
 * starts as static empty structures); nothing here allocates.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "preload/options.h"
#include "shim/backend.h"
#include "shim/guard.h"
#include "shim/prof.h"
#include "shim/shim.h"
#include "shim/trace.h"

/* Fork: take every allocator lock, in the one order every path takes them,
 * so the child starts with consistent free lists; the child then re-creates
 * the locks and hands the other (now gone) threads' caches back. */
static void fork_prepare(void)
{
	za_trace_lock();
	za_guard_lock();
	za_prof_lock();
	za_background_lock();
	za_slab_lock_all();
	za_pcp_lock_all();
	za_reclaim_lock();
	za_buddy_lock_all();
	za_huge_lock_all();
	za_meta_lock();
}

static void fork_parent(void)
{
	za_meta_unlock();
	za_huge_unlock_all();
	za_buddy_unlock_all();
	za_reclaim_unlock();
	za_pcp_unlock_all();
	za_slab_unlock_all();
	za_background_unlock();
	za_prof_unlock();
	za_guard_unlock();
	za_trace_unlock();
}

static void fork_child(void)
{
	za_meta_reset_child();
	za_huge_reset_child();
	za_buddy_reset_child();
	za_reclaim_reset_child();
	za_pcp_reset_child();
	za_slab_reset_child();
	za_background_reset_child();
	za_prof_reset_child();
	za_guard_reset_child();
	za_trace_reset_child();
	za_policy_shrink_reset_child();
}

static void fork_register(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Where the exit report goes: a copy of the standard error the program
 * started with, taken at start-up, so a program that closes its stderr
 * before exit (coreutils' close_stdout) still shows the report. Above the
 * low numbers a program may expect to get from open(), and close-on-exec. */
static int report_fd = -1;

static void report_fd_open(void)
{
	report_fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
	if (report_fd < 0)
		report_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (report_fd < 0)
		report_fd = 2;
}

void za_preload_init(void)
{
	static int done;
	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return;
	za_options_init();
	if (za_option(ZA_OPT_STATS) != ZA_STATS_OFF || za_option(ZA_OPT_PROF) ||
	    za_option(ZA_OPT_TRACE))
		report_fd_open();
	za_reclaim_set_mode(za_option(ZA_OPT_RECLAIM) == 1 ? ZA_RELEASE_FREE : ZA_RELEASE_DONTNEED);
	za_policy_set_decay_ms((uint64_t)za_option(ZA_OPT_DECAY_MS));
	za_thp_mode = (int)za_option(ZA_OPT_THP);
	if (za_thp_mode == ZA_THP_NEVER || za_thp_mode == ZA_THP_ALWAYS)
		za_zones_thp_advise();   /* (mapped before the options were read) */
	za_buddy_grouping = za_option(ZA_OPT_GROUPING) != 0;
	za_misuse_warn = za_option(ZA_OPT_ON_ERROR) == 1;
	if (za_option(ZA_OPT_LIMIT))
		za_policy_set_limit((size_t)za_option(ZA_OPT_LIMIT));
	za_background_enable(za_option(ZA_OPT_BACKGROUND) != 0);
	/* Registered when a second thread first takes a lock (za_lock); a
	 * trace reopens its file in a forked child, so it needs them now. */
	__atomic_store_n(&za_fork_register, fork_register, __ATOMIC_RELEASE);
	za_backend_init((enum za_backend_kind)za_option(ZA_OPT_BACKEND),
			za_option(ZA_OPT_FALLBACK) != 0, za_option(ZA_OPT_VERBOSE) != 0);
	if (za_option(ZA_OPT_PROF))
		za_prof_start((size_t)za_option(ZA_OPT_PROF_RATE), za_option_prof_file(),
			      za_option(ZA_OPT_PROF_SIGUSR2) != 0, report_fd);
	/* Guard mode sets itself up now, not at the program's first
	 * allocation: a fuzzer's fork server (which starts after this
	 * constructor) then forks children that have it all. */
	if (za_guard_active())
		za_shim_free(za_shim_malloc(1));
	if (za_option_trace_file()) {
		za_fork_arm(true);
		za_trace_start(za_option_trace_file(), report_fd);
	}
}

__attribute__((destructor)) static void za_dtor(void)
{
	za_background_stop();
	za_prof_exit();
	if (za_option(ZA_OPT_STATS) == ZA_STATS_TEXT) {
		za_stats_print(report_fd);
	} else if (za_option(ZA_OPT_STATS) == ZA_STATS_JSON) {
		za_stats_print_json(report_fd);
	} else if (za_option(ZA_OPT_STATS) == ZA_STATS_FILE) {
		char path[4096];
		za_option_stats_path(path, sizeof path);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			if (za_option_stats_path_json())
				za_stats_print_json(fd);
			else
				za_stats_print(fd);
			close(fd);
		} else {
			za_dprintf(report_fd, "zonealloc: ZONEALLOC_STATS: cannot write %s (%s)\n", path,
				   strerrorname_np(errno));
		}
	}
	za_trace_exit();
	za_guard_exit();
	if (za_option(ZA_OPT_CHECK)) {
		struct za_check_result res;
		if (za_buddy_check(&res))
			za_fatal("heap check at exit: zone %d pfn %lu order %d: %s", res.zone,
				 (unsigned long)res.pfn, res.order, res.what);
	}
}

void za_mallinfo_fill(struct mallinfo2 *mi)
{
	struct za_stats st;
	struct za_huge_stats hs;
	za_stats_get(&st);
	za_huge_stats(&hs);
	memset(mi, 0, sizeof *mi);
	size_t free_pages = st.pages_free + st.pages_cached;
	size_t free_blocks = 0;
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		free_blocks += st.free_blocks[k];
	mi->arena = st.pages_total * ZA_PAGE_SIZE;
	mi->ordblks = free_blocks;
	mi->hblks = hs.count;
	mi->hblkhd = hs.bytes;
	mi->uordblks = (st.pages_total - free_pages) * ZA_PAGE_SIZE;
	mi->fordblks = free_pages * ZA_PAGE_SIZE;
	mi->keepcost = 0;
}
