/*
 * A C API over Google Benchmark (bench/gbench_shim.cc), so that benchmarks
 * are written in plain C and still run with Google Benchmark's flags,
 * statistics and JSON/CSV output:
 *
 *	static void bm_pair(zb_state *st, void *arg)
 *	{
 *		size_t size = (size_t)zb_range(st, 0);
 *		while (zb_keep_running(st))
 *			free(malloc(size));
 *		zb_set_items_processed(st, zb_iterations(st));
 *	}
 *
 *	int main(int argc, char **argv)
 *	{
 *		zb_bench *b = zb_register("pair", bm_pair, NULL);
 *		zb_range_multiplier(b, 4);
 *		zb_range_set(b, 16, 1 << 20);
 *		return zb_main(&argc, argv);
 *	}
 *
 * The names follow benchmark::State and benchmark::internal::Benchmark;
 * every zb_bench setter returns its argument, so calls can be nested. No
 * C++ exception crosses this API.
 */
#ifndef ZA_BENCH_GBENCH_SHIM_H
#define ZA_BENCH_GBENCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zb_state zb_state;   /* a benchmark::State */
typedef struct zb_bench zb_bench;   /* a registered benchmark */

typedef void (*zb_fn)(zb_state *state, void *arg);

enum zb_unit { ZB_NS, ZB_US, ZB_MS, ZB_S };

/* benchmark::Counter::Flags */
enum zb_counter_flags {
	ZB_COUNTER_DEFAULT = 0,
	ZB_COUNTER_RATE = 1 << 0,             /* divided by the time */
	ZB_COUNTER_AVG_THREADS = 1 << 1,      /* divided by the threads */
	ZB_COUNTER_ITER_INVARIANT = 1 << 2,   /* multiplied by the iterations */
	ZB_COUNTER_AVG_ITERATIONS = 1 << 3,   /* divided by the iterations */
	ZB_COUNTER_INVERT = 1 << 4,           /* inverted, last */
};

/* ---- registration (before zb_main) ---- */

/* Registers `fn(state, arg)` under `name`; NULL if Google Benchmark
 * refused it. */
zb_bench *zb_register(const char *name, zb_fn fn, void *arg);

zb_bench *zb_arg(zb_bench *b, int64_t x);                          /* Arg */
zb_bench *zb_args(zb_bench *b, const int64_t *x, size_t n);        /* Args */
zb_bench *zb_range_set(zb_bench *b, int64_t lo, int64_t hi);       /* Range */
zb_bench *zb_dense_range(zb_bench *b, int64_t lo, int64_t hi, int step);
zb_bench *zb_range_multiplier(zb_bench *b, int multiplier);
zb_bench *zb_arg_name(zb_bench *b, const char *name);
zb_bench *zb_threads(zb_bench *b, int threads);                    /* Threads */
zb_bench *zb_thread_range(zb_bench *b, int lo, int hi);
zb_bench *zb_set_iterations(zb_bench *b, int64_t n);               /* Iterations */
zb_bench *zb_repetitions(zb_bench *b, int n);
zb_bench *zb_min_time(zb_bench *b, double seconds);
zb_bench *zb_use_real_time(zb_bench *b);
zb_bench *zb_measure_process_cpu_time(zb_bench *b);
zb_bench *zb_unit(zb_bench *b, enum zb_unit unit);

/* Initialize, run what the command line selects, shut down. Returns 0, or
 * 1 on unrecognized arguments. */
int zb_main(int *argc, char **argv);

/* ---- inside a benchmark function ---- */

int zb_keep_running(zb_state *st);                      /* KeepRunning */
int zb_keep_running_batch(zb_state *st, int64_t n);     /* KeepRunningBatch */
int64_t zb_iterations(const zb_state *st);              /* iterations() */
int64_t zb_range(const zb_state *st, size_t i);         /* range(i) */
int zb_thread_index(const zb_state *st);
int zb_thread_count(const zb_state *st);                /* threads() */
void zb_pause(zb_state *st);                            /* PauseTiming */
void zb_resume(zb_state *st);                           /* ResumeTiming */
void zb_set_items_processed(zb_state *st, int64_t items);
void zb_set_bytes_processed(zb_state *st, int64_t bytes);
void zb_set_counter(zb_state *st, const char *name, double value, unsigned flags);
void zb_set_label(zb_state *st, const char *label);
void zb_skip_with_error(zb_state *st, const char *msg);

/* Keeps the compiler from dropping a value nobody reads (DoNotOptimize). */
static inline void zb_escape(void *p)
{
	__asm__ volatile("" : : "g"(p) : "memory");
}

#ifdef __cplusplus
}
#endif

#endif
