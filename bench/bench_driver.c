/*
 * bench_driver: runs the workloads of bench/workloads.c with no dependency
 * but libc, and prints one machine-readable line per run.
 *
 * It links no allocator of its own: run it under another with LD_PRELOAD
 * (bench/compare does, for each peer). Each workload runs in a child
 * process of its own when more than one is asked for, so that its peak RSS
 * is its own; a single workload runs in the driver itself (as valgrind
 * wants it).
 *
 * Output, one line per run (times from CLOCK_MONOTONIC, wall clock):
 *   workload=<name> ops=<n> seconds=<t> ops_per_s=<x> ns_per_op=<y>
 *     maxrss_kb=<getrusage ru_maxrss> hwm_kb=<VmHWM> threads=<n> iters=<n> seed=<n>
 * and for workloads with phases (frag), before it, one line per phase:
 *   phase workload=<name> idx=<i> name=<phase> rss_kb=<k> t=<seconds since start>
 *
 * usage: bench_driver [options] [all | workload ...]      (default: all)
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/workloads.h"
#include "zonealloc.h"

struct opts {
	int quick;
	long iters;          /* > 0: overrides the table */
	double scale;
	uint64_t seed;
	unsigned threads;    /* > 0: overrides the table for threaded workloads */
	int warmup;
	int fork_each;       /* -1: decide from the number of runs */
	int repeat;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct phase_ctx {
	const char *name;
	double t0;
};

/* Under zonealloc (preloaded), a phase also says how many free blocks of
 * 2 MiB or more its zones hold, and how often an allocation fell back to
 * another kind's pageblock (buddy.h: pageblocks). */
static void print_phase(void *arg, unsigned idx, const char *name)
{
	struct phase_ctx *ctx = arg;
	static void (*stats_get)(struct za_stats *);
	static int looked;
	if (!looked) {
		*(void **)&stats_get = dlsym(RTLD_DEFAULT, "za_stats_get");
		looked = 1;
	}
	printf("phase workload=%s idx=%u name=%s rss_kb=%ld t=%.6f", ctx->name, idx, name,
	       wl_rss_kb(), now_s() - ctx->t0);
	if (stats_get) {
		struct za_stats st;
		stats_get(&st);
		printf(" free_2m_blocks=%zu pageblock_fallbacks=%llu", st.free_blocks[9] + st.free_blocks[10],
		       (unsigned long long)st.pageblock_fallbacks);
	}
	printf("\n");
}

static long rounds_of(const struct workload *w, const struct opts *o)
{
	long n = o->iters > 0 ? o->iters : o->quick ? w->iters_quick : w->iters;
	n = (long)((double)n * o->scale);
	return n > 0 ? n : 1;
}

static int run_one(const struct workload *w, const struct opts *o)
{
	struct wl_args a = {
		.iters = rounds_of(w, o),
		.size = w->size,
		.k = w->k,
		.threads = (w->flags & WL_THREADED) && o->threads ? o->threads : w->threads,
		.seed = o->seed,
	};
	if (o->warmup && !(w->flags & WL_NO_WARMUP)) {
		struct wl_args warm = a;
		warm.iters = a.iters / 20 ? a.iters / 20 : 1;
		w->fn(&warm);
	}
	struct phase_ctx ctx = { w->name, 0 };
	a.phase = print_phase;
	a.phase_ctx = &ctx;

	ctx.t0 = now_s();
	uint64_t ops = w->fn(&a);
	double secs = now_s() - ctx.t0;

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("workload=%s ops=%" PRIu64 " seconds=%.6f ops_per_s=%.0f ns_per_op=%.3f "
	       "maxrss_kb=%ld hwm_kb=%ld threads=%u iters=%ld seed=%" PRIu64 "\n",
	       w->name, ops, secs, secs > 0 ? (double)ops / secs : 0.0,
	       ops ? secs * 1e9 / (double)ops : 0.0, ru.ru_maxrss, wl_hwm_kb(), a.threads,
	       a.iters, o->seed);
	fflush(stdout);
	return 0;
}

static int run_forked(const struct workload *w, const struct opts *o)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("bench_driver: fork");
		return 1;
	}
	if (pid == 0)
		_exit(run_one(w, o));
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			perror("bench_driver: waitpid");
			return 1;
		}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "bench_driver: workload %s failed (%s %d)\n", w->name,
		WIFSIGNALED(status) ? "signal" : "exit status",
		WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_driver [options] [all | workload ...]   (default: all)\n"
		"  -q, --quick        quick sizes (about a tenth of a full run)\n"
		"  -n, --iters N      rounds of work, overriding the table\n"
		"  -s, --scale F      multiply the rounds by F\n"
		"      --seed N       seed of the request sequences (default 1)\n"
		"  -t, --threads N    threads for the threaded workloads\n"
		"  -r, --repeat N     run each workload N times\n"
		"      --no-warmup    no untimed warm-up run (a twentieth of the rounds)\n"
		"      --fork         each run in a child process of its own (default for\n"
		"                     more than one run, so peak RSS is per run)\n"
		"      --no-fork      every run in this process\n"
		"  -l, --list         list the workloads\n"
		"Output: one line per run, key=value pairs (see bench/bench_driver.c).\n");
}

int main(int argc, char **argv)
{
	struct opts o = { .scale = 1.0, .seed = 1, .warmup = 1, .fork_each = -1, .repeat = 1 };
	enum { OPT_SEED = 256, OPT_NO_WARMUP, OPT_FORK, OPT_NO_FORK };
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "iters", required_argument, NULL, 'n' },
		{ "scale", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "threads", required_argument, NULL, 't' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "no-warmup", no_argument, NULL, OPT_NO_WARMUP },
		{ "fork", no_argument, NULL, OPT_FORK },
		{ "no-fork", no_argument, NULL, OPT_NO_FORK },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "qn:s:t:r:lh", longopts, NULL)) != -1) {
		switch (c) {
		case 'q': o.quick = 1; break;
		case 'n': o.iters = atol(optarg); break;
		case 's': o.scale = atof(optarg); break;
		case OPT_SEED: o.seed = strtoull(optarg, NULL, 0); break;
		case 't': o.threads = (unsigned)atoi(optarg); break;
		case 'r': o.repeat = atoi(optarg); break;
		case OPT_NO_WARMUP: o.warmup = 0; break;
		case OPT_FORK: o.fork_each = 1; break;
		case OPT_NO_FORK: o.fork_each = 0; break;
		case 'l':
			for (size_t i = 0; i < wl_count; i++)
				printf("%-16s %s%s\n", wl_table[i].name, wl_table[i].what,
				       wl_table[i].flags & WL_SLOW ? " (slow: run by name)" : "");
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!(o.scale > 0) || o.repeat < 1 || o.threads > 64) {
		usage(stderr);
		return 2;
	}

	const struct workload *list[256];
	size_t n = 0;
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "all") == 0) {
			for (size_t k = 0; k < wl_count && n < 256; k++)
				if (!(wl_table[k].flags & WL_SLOW))
					list[n++] = &wl_table[k];
			continue;
		}
		const struct workload *w = wl_find(argv[i]);
		if (!w) {
			fprintf(stderr, "bench_driver: no workload '%s' (see --list)\n", argv[i]);
			return 2;
		}
		if (n < 256)
			list[n++] = w;
	}
	if (n == 0)
		for (size_t k = 0; k < wl_count; k++)
			if (!(wl_table[k].flags & WL_SLOW))
				list[n++] = &wl_table[k];

	int fork_each = o.fork_each >= 0 ? o.fork_each : n * (size_t)o.repeat > 1;
	int failed = 0;
	for (int r = 0; r < o.repeat; r++)
		for (size_t i = 0; i < n; i++)
			failed |= fork_each ? run_forked(list[i], &o) : run_one(list[i], &o);
	return failed;
}
