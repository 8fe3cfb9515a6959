/*
 * gbench_main: the workloads of bench/workloads.c under Google Benchmark,
 * through the C shim (bench/gbench_shim.h). Built when configure finds
 * Google Benchmark; bench/bench_driver.c runs the same workloads without it.
 *
 * Like the driver it links no allocator: run it with LD_PRELOAD to measure
 * one. Google Benchmark's flags apply, e.g.
 *   LD_PRELOAD=.libs/libzonealloc.so bench/gbench_main \
 *	--benchmark_filter='pair|larson' --benchmark_repetitions=5 \
 *	--benchmark_format=json
 *
 * Registered:
 *  - pair/size:N         malloc+free pairs, N = 16 B .. 1 MiB (x4 steps)
 *  - pair_threads/64     the same at 64 B in 1, 2 and 4 threads at once
 *  - wl/<name>           every workload of the table; one iteration is a
 *                        tenth of the workload's --quick size
 * Each reports items_per_second (allocations per second) and the peak RSS
 * (maxrss_kb, the process's so far); wl/frag also the RSS after each phase
 * (rss<i>_<phase>_kb, read with the clock stopped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/gbench_shim.h"
#include "bench/workloads.h"

static void set_rss_counters(zb_state *st)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	zb_set_counter(st, "maxrss_kb", (double)ru.ru_maxrss, ZB_COUNTER_DEFAULT);
}

static void bm_pair(zb_state *st, void *arg)
{
	(void)arg;
	struct wl_args a = { .iters = 1000, .size = (size_t)zb_range(st, 0), .seed = 1 };
	while (zb_keep_running_batch(st, a.iters))
		wl_pair(&a);
	zb_set_items_processed(st, zb_iterations(st));
	if (zb_thread_index(st) == 0)
		set_rss_counters(st);
}

struct phase_ctx {
	zb_state *st;
};

/* The RSS after each phase, read with the clock stopped. */
static void gb_phase(void *arg, unsigned idx, const char *name)
{
	struct phase_ctx *ctx = arg;
	char key[64];
	zb_pause(ctx->st);
	snprintf(key, sizeof key, "rss%u_%s_kb", idx, name);
	zb_set_counter(ctx->st, key, (double)wl_rss_kb(), ZB_COUNTER_DEFAULT);
	zb_resume(ctx->st);
}

static void bm_workload(zb_state *st, void *arg)
{
	const struct workload *w = arg;
	struct phase_ctx ctx = { st };
	struct wl_args a = {
		.iters = w->iters_quick / 10 ? w->iters_quick / 10 : 1,
		.size = w->size,
		.threads = w->threads,
		.seed = 1,
		.phase = gb_phase,
		.phase_ctx = &ctx,
	};
	int64_t ops = 0;
	while (zb_keep_running(st)) {
		ops += (int64_t)w->fn(&a);
		a.seed++;
	}
	zb_set_items_processed(st, ops);
	set_rss_counters(st);
}

int main(int argc, char **argv)
{
	zb_bench *b = zb_register("pair", bm_pair, NULL);
	zb_arg_name(zb_range_set(zb_range_multiplier(b, 4), 16, 1 << 20), "size");

	b = zb_register("pair_threads", bm_pair, NULL);
	zb_use_real_time(zb_thread_range(zb_arg(b, 64), 1, 4));

	for (size_t i = 0; i < wl_count; i++) {
		char name[64];
		snprintf(name, sizeof name, "wl/%s", wl_table[i].name);
		b = zb_register(name, bm_workload, (void *)&wl_table[i]);
		if (!b) {
			fprintf(stderr, "gbench_main: cannot register %s\n", name);
			return 1;
		}
		if (wl_table[i].flags & WL_THREADED)
			zb_use_real_time(b);
		zb_unit(b, ZB_US);
	}
	return zb_main(&argc, argv);
}
