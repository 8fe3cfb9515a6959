/*
 * The benchmark workloads: deterministic programs that exercise a heap
 * through the plain malloc family, so that whichever allocator the process
 * runs with (glibc, or one given by LD_PRELOAD) is the one measured.
 *
 * A workload is a C function that does `iters` rounds of its work with a
 * given seed and returns how many operations it did. One operation is one
 * allocation call (malloc, calloc or realloc); every allocation is freed
 * before the function returns, and frees are not counted separately. The
 * same seed gives the same sequence of requests in every thread; only the
 * interleaving of threads varies from run to run.
 *
 * Two programs run them: bench/bench_driver.c (plain C, always built) and
 * bench/gbench_main.c (Google Benchmark through bench/gbench_shim.h). The
 * page-level za_alloc_pages against mmap comparison is bench/page_bench.c.
 */
#ifndef ZA_BENCH_WORKLOADS_H
#define ZA_BENCH_WORKLOADS_H

#include <stddef.h>
#include <stdint.h>

/* Called by a workload at the end of each of its phases (only the
 * fragmentation workload has phases); it reads what it wants to know,
 * e.g. wl_rss_kb(), and may stop the clock while it does. */
typedef void (*wl_phase_fn)(void *ctx, unsigned idx, const char *name);

struct wl_args {
	long iters;            /* rounds of work; each workload defines a round */
	size_t size;           /* object size, for the fixed-size workloads */
	unsigned threads;      /* threads, for the multi-threaded workloads */
	unsigned k;            /* survivors: one object kept of every k */
	uint64_t seed;
	wl_phase_fn phase;     /* may be NULL */
	void *phase_ctx;
};

typedef uint64_t (*wl_fn)(const struct wl_args *args);

#define WL_THREADED   0x1u   /* runs threads of its own */
#define WL_NO_WARMUP  0x2u   /* a warm-up round would change what it reports */
#define WL_SLOW       0x4u   /* takes seconds by design (idles): not in "all" */

struct workload {
	const char *name;
	const char *what;      /* one line for --list */
	wl_fn fn;
	size_t size;
	unsigned threads;
	unsigned flags;
	long iters;            /* full run: a few hundred ms for a fast allocator */
	long iters_quick;      /* --quick: a tenth of that */
	unsigned k;            /* survivors: one object kept of every k */
};

extern const struct workload wl_table[];
extern const size_t wl_count;

const struct workload *wl_find(const char *name);

/* The workloads themselves (see workloads.c for what a round is). */
uint64_t wl_pair(const struct wl_args *a);
uint64_t wl_random_small(const struct wl_args *a);
uint64_t wl_random_powerlaw(const struct wl_args *a);
uint64_t wl_batch(const struct wl_args *a);
uint64_t wl_realloc_string(const struct wl_args *a);
uint64_t wl_realloc_vector(const struct wl_args *a);
uint64_t wl_prodcons(const struct wl_args *a);
uint64_t wl_larson(const struct wl_args *a);
uint64_t wl_frag(const struct wl_args *a);
uint64_t wl_frag_mixed(const struct wl_args *a);
uint64_t wl_calloc_large(const struct wl_args *a);
uint64_t wl_rss_cycle(const struct wl_args *a);
uint64_t wl_survivors(const struct wl_args *a);
uint64_t wl_hash_1g(const struct wl_args *a);

/* Resident set now (/proc/self/statm), and peak (VmHWM in
 * /proc/self/status), in KiB; -1 when /proc cannot be read. Neither
 * allocates. */
long wl_rss_kb(void);
long wl_hwm_kb(void);

/* Small deterministic generator (splitmix64 seeding, xorshift64*). */
struct wl_rng {
	uint64_t s;
};

static inline void wl_rng_seed(struct wl_rng *r, uint64_t seed)
{
	uint64_t z = seed + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	r->s = (z ^ (z >> 31)) | 1;
}

static inline uint64_t wl_rng_next(struct wl_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n), n < 2^32, without a division. */
static inline uint32_t wl_rng_below(struct wl_rng *r, uint32_t n)
{
	return (uint32_t)(((wl_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#endif
