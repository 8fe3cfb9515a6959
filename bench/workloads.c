/*
 * The benchmark workloads (see workloads.h for the contract).
 *
 * Everything goes through the plain malloc family; the file is compiled
 * with -fno-builtin-malloc and friends, and every pointer is passed through
 * escape(), so the compiler can neither drop nor merge an allocation.
 * Memory handed out is written (first and last byte, or a byte per page
 * for big blocks) so that an allocator cannot win by handing out memory
 * that is never made resident.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/workloads.h"

#define PAGE 4096u

/* Keeps the compiler from dropping a block nobody reads. */
static inline void escape(void *p)
{
	__asm__ volatile("" : : "g"(p) : "memory");
}

/* One line to stderr with write(2) (the heap may be what broke), abort. */
static void __attribute__((noreturn, cold)) fail(const char *msg, const char *what)
{
	ssize_t rc = write(2, "bench: ", 7);
	rc = write(2, msg, strlen(msg));
	rc = write(2, what, strlen(what));
	rc = write(2, "\n", 1);
	(void)rc;
	abort();
}

static void __attribute__((noreturn, cold)) oom(const char *what)
{
	fail("out of memory in workload ", what);
}

static inline void *xmalloc(size_t n, const char *what)
{
	void *p = malloc(n);
	if (__builtin_expect(!p, 0))
		oom(what);
	return p;
}

/* First and last byte: the object's memory is really used. */
static inline void touch_ends(char *p, size_t n, char v)
{
	p[0] = v;
	p[n - 1] = v;
}

/* A byte per page, from `from` to `to`: big blocks made resident. */
static inline void touch_pages(char *p, size_t from, size_t to, char v)
{
	for (size_t off = from; off < to; off += PAGE)
		p[off] = v;
	if (to > from)
		p[to - 1] = v;
}

/* ---- /proc readers (no stdio, no malloc) ---- */

static ssize_t read_proc(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

long wl_rss_kb(void)
{
	char buf[128];
	if (read_proc("/proc/self/statm", buf, sizeof buf) <= 0)
		return -1;
	char *s = strchr(buf, ' ');   /* second field: resident pages */
	if (!s)
		return -1;
	long pages = strtol(s + 1, NULL, 10);
	return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

long wl_hwm_kb(void)
{
	char buf[4096];
	if (read_proc("/proc/self/status", buf, sizeof buf) <= 0)
		return -1;
	char *s = strstr(buf, "VmHWM:");
	return s ? strtol(s + 6, NULL, 10) : -1;
}

static void phase(const struct wl_args *a, unsigned idx, const char *name)
{
	if (a->phase)
		a->phase(a->phase_ctx, idx, name);
}

/* ---- size distributions ---- */

/* Small-heavy, 8 B .. 32 KiB: an octave [8·2^e, 16·2^e) with probability
 * 2^-(e+1), uniform inside it; half the requests are 8..15 B, one in 64 is
 * 512 B or more. */
static inline size_t size_small_heavy(struct wl_rng *r)
{
	uint64_t x = wl_rng_next(r);
	unsigned e = (unsigned)__builtin_ctzll(x | (1ull << 12));
	size_t lo = (size_t)8 << e;
	size_t sz = lo + (size_t)(((x >> 32) * (uint64_t)lo) >> 32);
	return sz > 32768 ? 32768 : sz;
}

/* Power law (Pareto-like, alpha ~0.74), 16 B .. 1 MiB: octave k with
 * probability 0.4·0.6^k, uniform inside it; one request in ~40 is 16 KiB
 * or more, so page runs and huge blocks are part of the mix. */
static inline size_t size_powerlaw(struct wl_rng *r)
{
	const uint32_t q = (uint32_t)(0.6 * 4294967296.0);
	unsigned k = 0;
	while (k < 16 && (uint32_t)wl_rng_next(r) < q)
		k++;
	size_t lo = (size_t)16 << k;
	size_t sz = lo + (size_t)(((wl_rng_next(r) >> 32) * (uint64_t)lo) >> 32);
	return sz > ((size_t)1 << 20) ? ((size_t)1 << 20) : sz;
}

/* Uniform in [lo, hi]. */
static inline size_t size_uniform(struct wl_rng *r, size_t lo, size_t hi)
{
	return lo + wl_rng_below(r, (uint32_t)(hi - lo + 1));
}

/* ---- fixed-size pairs ---- */

/* A round: malloc(size), write its first and last byte, free. */
uint64_t wl_pair(const struct wl_args *a)
{
	size_t n = a->size;
	for (long i = 0; i < a->iters; i++) {
		char *p = xmalloc(n, "pair");
		touch_ends(p, n, (char)i);
		escape(p);
		free(p);
	}
	return (uint64_t)a->iters;
}

/* ---- random sizes over a window of live objects ---- */

static uint64_t window_replace(const struct wl_args *a, unsigned nslots,
			       size_t (*size_of)(struct wl_rng *), const char *what)
{
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	char **slot = xmalloc(nslots * sizeof *slot, what);
	size_t *len = xmalloc(nslots * sizeof *len, what);
	for (unsigned i = 0; i < nslots; i++) {
		len[i] = size_of(&r);
		slot[i] = xmalloc(len[i], what);
		touch_ends(slot[i], len[i], (char)i);
	}
	for (long i = 0; i < a->iters; i++) {
		unsigned k = wl_rng_below(&r, nslots);
		if (slot[k][0] != (char)slot[k][len[k] - 1])
			fail("corrupted object in workload ", what);
		free(slot[k]);
		len[k] = size_of(&r);
		slot[k] = xmalloc(len[k], what);
		touch_ends(slot[k], len[k], (char)i);
		escape(slot[k]);
	}
	for (unsigned i = 0; i < nslots; i++)
		free(slot[i]);
	free(slot);
	free(len);
	return (uint64_t)a->iters + nslots;
}

/* A round: free a random one of 4096 live objects, allocate a new one
 * (small-heavy 8 B .. 32 KiB) in its place. */
uint64_t wl_random_small(const struct wl_args *a)
{
	return window_replace(a, 4096, size_small_heavy, "random_small");
}

/* The same over 1024 live objects with power-law sizes 16 B .. 1 MiB. */
uint64_t wl_random_powerlaw(const struct wl_args *a)
{
	return window_replace(a, 1024, size_powerlaw, "random_powerlaw");
}

/* ---- batch: allocate N, free in random order ---- */

#define BATCH_N 4096u

/* A round: 4096 objects of 16..512 B, then all freed in a random order
 * (one fixed permutation, made once). */
uint64_t wl_batch(const struct wl_args *a)
{
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	char **obj = xmalloc(BATCH_N * sizeof *obj, "batch");
	unsigned *order = xmalloc(BATCH_N * sizeof *order, "batch");
	for (unsigned i = 0; i < BATCH_N; i++)
		order[i] = i;
	for (unsigned i = BATCH_N - 1; i > 0; i--) {
		unsigned j = wl_rng_below(&r, i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (long round = 0; round < a->iters; round++) {
		for (unsigned i = 0; i < BATCH_N; i++) {
			size_t n = size_uniform(&r, 16, 512);
			obj[i] = xmalloc(n, "batch");
			touch_ends(obj[i], n, (char)i);
		}
		escape(obj);
		for (unsigned i = 0; i < BATCH_N; i++)
			free(obj[order[i]]);
	}
	free(obj);
	free(order);
	return (uint64_t)a->iters * BATCH_N;
}

/* ---- realloc growth ---- */

/* A round: a string built by appending 1..32 bytes at a time, each append
 * a realloc to the exact new length (as naive C code does), until it
 * reaches a random target of 4..64 KiB; then freed. */
uint64_t wl_realloc_string(const struct wl_args *a)
{
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	uint64_t ops = 0;
	for (long round = 0; round < a->iters; round++) {
		size_t target = size_uniform(&r, 4096, 65536), len = 0;
		char *s = NULL;
		while (len < target) {
			size_t add = size_uniform(&r, 1, 32);
			char *t = realloc(s, len + add + 1);
			if (!t)
				oom("realloc_string");
			s = t;
			memset(s + len, 'a' + (int)(len & 15), add);
			len += add;
			s[len] = '\0';
			ops++;
		}
		escape(s);
		free(s);
	}
	return ops;
}

#define NVEC 8u

/* A round: 8 vectors grown side by side by doubling, 16 B .. 256 KiB, a
 * byte per new page written after each growth; then all freed. */
uint64_t wl_realloc_vector(const struct wl_args *a)
{
	uint64_t ops = 0;
	for (long round = 0; round < a->iters; round++) {
		char *v[NVEC] = { 0 };
		size_t cap = 0;
		for (size_t next = 16; next <= ((size_t)256 << 10); next *= 2) {
			for (unsigned k = 0; k < NVEC; k++) {
				char *t = realloc(v[k], next);
				if (!t)
					oom("realloc_vector");
				v[k] = t;
				touch_pages(t, cap, next, (char)k);
				ops++;
			}
			cap = next;
		}
		for (unsigned k = 0; k < NVEC; k++) {
			escape(v[k]);
			free(v[k]);
		}
	}
	return ops;
}

/* ---- producer-consumer: every free is a cross-thread free ---- */

#define RING 1024u   /* a power of two */

struct prodcons {
	_Alignas(64) _Atomic unsigned long head;   /* written by the producer */
	_Alignas(64) _Atomic unsigned long tail;   /* written by the consumer */
	_Alignas(64) char *ring[RING];
	long n;
	uint64_t seed;
};

static void *producer(void *arg)
{
	struct prodcons *pc = arg;
	struct wl_rng r;
	wl_rng_seed(&r, pc->seed);
	unsigned long head = 0, tail = 0;
	for (long i = 0; i < pc->n; i++) {
		size_t n = size_uniform(&r, 16, 256);
		char *p = xmalloc(n, "prodcons");
		touch_ends(p, n, (char)n);
		while (head - tail >= RING) {
			tail = atomic_load_explicit(&pc->tail, memory_order_acquire);
			if (head - tail >= RING)
				sched_yield();
		}
		pc->ring[head % RING] = p;
		atomic_store_explicit(&pc->head, ++head, memory_order_release);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct prodcons *pc = arg;
	unsigned long head = 0, tail = 0;
	for (long i = 0; i < pc->n; i++) {
		while (tail == head) {
			head = atomic_load_explicit(&pc->head, memory_order_acquire);
			if (tail == head)
				sched_yield();
		}
		char *p = pc->ring[tail % RING];
		escape(p);
		free(p);
		atomic_store_explicit(&pc->tail, ++tail, memory_order_release);
	}
	return NULL;
}

/* A round: one object of 16..256 B made by a producer thread, handed over
 * a 1024-slot ring, and freed by a consumer thread. */
uint64_t wl_prodcons(const struct wl_args *a)
{
	struct prodcons *pc = xmalloc(sizeof *pc, "prodcons");
	memset(pc, 0, sizeof *pc);
	pc->n = a->iters;
	pc->seed = a->seed;
	pthread_t tp, tc;
	if (pthread_create(&tc, NULL, consumer, pc) || pthread_create(&tp, NULL, producer, pc))
		fail("pthread_create failed in workload ", "prodcons");
	pthread_join(tp, NULL);
	pthread_join(tc, NULL);
	free(pc);
	return (uint64_t)a->iters;
}

/* ---- larson: threads replacing random slots of one shared array ---- */

#define LARSON_SLOTS 8192u

struct larson {
	_Atomic(char *) *slot;
	long rounds;
	uint64_t seed;
};

static void *larson_thread(void *arg)
{
	struct larson *l = arg;
	struct wl_rng r;
	wl_rng_seed(&r, l->seed);
	for (long i = 0; i < l->rounds; i++) {
		size_t n = size_uniform(&r, 8, 1000);
		char *p = xmalloc(n, "larson");
		touch_ends(p, n, (char)n);
		char *old = atomic_exchange_explicit(&l->slot[wl_rng_below(&r, LARSON_SLOTS)], p,
						     memory_order_acq_rel);
		free(old);
	}
	return NULL;
}

/* A round: a thread allocates 8..1000 B and swaps it into a random slot of
 * an 8192-slot array shared by all threads, freeing what was there; with 4
 * threads, 3 frees in 4 are of another thread's object. `iters` rounds in
 * all, split evenly between the threads. */
uint64_t wl_larson(const struct wl_args *a)
{
	unsigned nt = a->threads ? a->threads : 4;
	if (nt > 64)
		nt = 64;
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	_Atomic(char *) *slot = xmalloc(LARSON_SLOTS * sizeof *slot, "larson");
	for (unsigned i = 0; i < LARSON_SLOTS; i++) {
		size_t n = size_uniform(&r, 8, 1000);
		char *p = xmalloc(n, "larson");
		touch_ends(p, n, 1);
		atomic_init(&slot[i], p);
	}
	struct larson l[64];
	pthread_t t[64];
	for (unsigned i = 0; i < nt; i++) {
		l[i] = (struct larson){ slot, a->iters / nt, a->seed + 1 + i };
		if (pthread_create(&t[i], NULL, larson_thread, &l[i]))
			fail("pthread_create failed in workload ", "larson");
	}
	for (unsigned i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < LARSON_SLOTS; i++)
		free(atomic_load(&slot[i]));
	free(slot);
	return (uint64_t)(a->iters / nt) * nt + LARSON_SLOTS;
}

/* ---- fragmentation: interleaved lifetimes, RSS after each phase ---- */

/*
 * `iters` = N small objects. Phases, each reported with the RSS at its end:
 *  0 start        nothing allocated yet
 *  1 fill         N objects of 16..512 B, every 64th one of 1..16 KiB instead
 *  2 free-7/8     all but every 8th freed, in a scattered order: the
 *                 survivors pin most pages
 *  3 large        N/4096 blocks of 64 KiB..1 MiB, a byte per page written
 *  4 refill       N/2 objects of 16..512 B: can the holes take them?
 *  5 free-large   the big blocks freed
 *  6 trim         malloc_trim(0): what the survivors keep resident
 *  7 free-all     everything freed
 */
uint64_t wl_frag(const struct wl_args *a)
{
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	size_t n = a->iters > 64 ? (size_t)a->iters : 64;
	size_t nbig = n / 4096 ? n / 4096 : 1, nre = n / 2;
	char **obj = xmalloc(n * sizeof *obj, "frag");
	char **big = xmalloc(nbig * sizeof *big, "frag");
	char **re = xmalloc(nre * sizeof *re, "frag");
	phase(a, 0, "start");

	for (size_t i = 0; i < n; i++) {
		size_t len = i % 64 == 63 ? size_uniform(&r, 1024, 16384) : size_uniform(&r, 16, 512);
		obj[i] = xmalloc(len, "frag");
		touch_ends(obj[i], len, (char)i);
	}
	phase(a, 1, "fill");

	/* j -> (j * stride) mod n visits every index once when gcd(stride, n)
	 * is 1; a stride near n / golden ratio scatters the order. */
	size_t stride = (size_t)((double)n * 0.6180339887) | 1;
	while (stride > 1) {
		size_t x = n, y = stride;
		while (y) {
			size_t t = x % y;
			x = y;
			y = t;
		}
		if (x == 1)
			break;
		stride += 2;
	}
	for (size_t j = 0, i = 0; j < n; j++, i = (i + stride) % n)
		if (i % 8 != 0) {
			free(obj[i]);
			obj[i] = NULL;
		}
	phase(a, 2, "free-7/8");

	for (size_t i = 0; i < nbig; i++) {
		size_t len = size_uniform(&r, (size_t)64 << 10, (size_t)1 << 20);
		big[i] = xmalloc(len, "frag");
		touch_pages(big[i], 0, len, (char)i);
	}
	phase(a, 3, "large");

	for (size_t i = 0; i < nre; i++) {
		size_t len = size_uniform(&r, 16, 512);
		re[i] = xmalloc(len, "frag");
		touch_ends(re[i], len, (char)i);
	}
	phase(a, 4, "refill");

	for (size_t i = 0; i < nbig; i++)
		free(big[i]);
	phase(a, 5, "free-large");

	malloc_trim(0);
	phase(a, 6, "trim");

	for (size_t i = 0; i < n; i += 8)
		free(obj[i]);
	for (size_t i = 0; i < nre; i++)
		free(re[i]);
	phase(a, 7, "free-all");

	free(obj);
	free(big);
	free(re);
	return n + nbig + nre;
}

/*
 * Small objects and page runs allocated by turns, as a program reading
 * records builds small nodes and large buffers side by side; the buffers
 * and most nodes then go. `iters` = N small objects (16..512 B), a run of
 * 64..256 KiB after every 1024 of them. Phases, each with the RSS:
 *  0 start
 *  1 fill        N objects and N/1024 runs, interleaved
 *  2 free        every run and 7/8 of the objects freed, scattered
 *  3 trim        malloc_trim(0)
 *  4 large       N/16384 blocks of 2 MiB, a byte per page written
 *  5 free-all
 * The 2 MiB blocks fit where the runs were only if the survivors did not
 * land among them (buddy.h: pageblocks).
 */
uint64_t wl_frag_mixed(const struct wl_args *a)
{
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	size_t n = a->iters > 1024 ? (size_t)a->iters : 1024;
	size_t nrun = n / 1024, nbig = n / 16384 ? n / 16384 : 1;
	char **obj = xmalloc(n * sizeof *obj, "frag_mixed");
	char **run = xmalloc(nrun * sizeof *run, "frag_mixed");
	char **big = xmalloc(nbig * sizeof *big, "frag_mixed");
	phase(a, 0, "start");

	for (size_t i = 0; i < n; i++) {
		size_t len = size_uniform(&r, 16, 512);
		obj[i] = xmalloc(len, "frag_mixed");
		touch_ends(obj[i], len, (char)i);
		if (i % 1024 == 1023) {
			len = size_uniform(&r, (size_t)64 << 10, (size_t)256 << 10);
			run[i / 1024] = xmalloc(len, "frag_mixed");
			touch_pages(run[i / 1024], 0, len, (char)i);
		}
	}
	phase(a, 1, "fill");

	for (size_t i = 0; i < nrun; i++)
		free(run[i]);
	for (size_t i = 0; i < n; i++)
		if (wl_rng_next(&r) % 8 != 0) {
			free(obj[i]);
			obj[i] = NULL;
		}
	phase(a, 2, "free");

	malloc_trim(0);
	phase(a, 3, "trim");

	for (size_t i = 0; i < nbig; i++) {
		big[i] = xmalloc((size_t)2 << 20, "frag_mixed");
		touch_pages(big[i], 0, (size_t)2 << 20, (char)i);
	}
	phase(a, 4, "large");

	for (size_t i = 0; i < nbig; i++)
		free(big[i]);
	for (size_t i = 0; i < n; i++)
		free(obj[i]);
	phase(a, 5, "free-all");

	free(obj);
	free(run);
	free(big);
	return n + nrun + nbig;
}

/* ---- calloc of large zeroed buffers ---- */

/* A round: calloc of 128 KiB, 256 KiB, 1 MiB or 4 MiB in turn, checked
 * to read zero where the rounds before wrote, a byte per page written (the
 * buffer is used, as calloc'd buffers are), then freed. */
uint64_t wl_calloc_large(const struct wl_args *a)
{
	static const size_t sizes[4] = { 128u << 10, 256u << 10, 1u << 20, 4u << 20 };
	for (long i = 0; i < a->iters; i++) {
		size_t n = sizes[i & 3];
		char *p = calloc(1, n);
		if (!p)
			oom("calloc_large");
		if (p[0] != 0 || p[n / 2] != 0 || p[n - 1] != 0)
			fail("calloc memory not zeroed in workload ", "calloc_large");
		touch_pages(p, 0, n, 1);
		escape(p);
		free(p);
	}
	return (uint64_t)a->iters;
}

/* ---- survivors among freed neighbours ---- */

/*
 * A round: k objects of one size, each written whole (as a parser fills
 * in what it builds), then all but the last freed; the last lives to the
 * end, among freed neighbours (how parsers, interpreters and JSON tools
 * build their results). The live set is rounds x size, and with every
 * byte written the peak RSS measures it; a heap that lets each survivor
 * pin its slab holds k times that.
 */
uint64_t wl_survivors(const struct wl_args *a)
{
	size_t size = a->size;
	unsigned k = a->k ? a->k : 40;
	char *tmp[64];
	if (k > 64)
		k = 64;
	char **keep = xmalloc((size_t)a->iters * sizeof *keep, "survivors");
	for (long i = 0; i < a->iters; i++) {
		for (unsigned j = 0; j < k; j++) {
			tmp[j] = xmalloc(size, "survivors");
			memset(tmp[j], (int)j, size);
		}
		for (unsigned j = 0; j + 1 < k; j++)
			free(tmp[j]);
		keep[i] = tmp[k - 1];
	}
	for (long i = 0; i < a->iters; i++) {
		escape(keep[i]);
		free(keep[i]);
	}
	free(keep);
	return (uint64_t)a->iters * k;
}

/* ---- a large random-access table (huge pages) ---- */

/*
 * A 1 GiB open-addressing hash table of 64-bit keys: allocated, cleared,
 * then `iters` random keys inserted with linear probing. Every insert
 * lands on a random page: with 4 KiB pages the table needs 262,144 TLB
 * entries, with 2 MiB pages 512 (ZONEALLOC_THP). The phases "cleared" and
 * "inserted" time the two parts: clearing is page faults (and, in a VM,
 * the host's); inserting is memory latency and the TLB, though the
 * inserts are independent, so a core overlaps their page walks.
 */
uint64_t wl_hash_1g(const struct wl_args *a)
{
	const size_t slots = (size_t)1 << 27;   /* x 8 B = 1 GiB */
	uint64_t *table = xmalloc(slots * sizeof *table, "hash_1g");
	memset(table, 0, slots * sizeof *table);
	phase(a, 0, "cleared");
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	for (long i = 0; i < a->iters; i++) {
		uint64_t key = wl_rng_next(&r) | 1;
		size_t at = (size_t)(key * 0x9e3779b97f4a7c15ull >> 37);
		while (table[at] && table[at] != key)
			at = (at + 1) & (slots - 1);
		table[at] = key;
	}
	phase(a, 1, "inserted");
	escape(table);
	free(table);
	return (uint64_t)a->iters;
}

/* ---- the table ---- */

#define PAIR(nm, sz, it) \
	{ "pair_" nm, "malloc+free of size " nm ", first and last byte written", wl_pair, sz, 1, 0, \
	  it, (it) / 10, 0 }

#define SURVIVORS(nm, sz, kk, n) \
	{ "survivors_" nm "_k" #kk, "keep 1 of every " #kk " objects of " nm " B, free the rest", \
	  wl_survivors, sz, 1, 0, n, (n) / 10, kk }

const struct workload wl_table[] = {
	PAIR("16", 16, 20000000),
	PAIR("64", 64, 20000000),
	PAIR("256", 256, 20000000),
	PAIR("1k", 1024, 20000000),
	PAIR("4k", 4096, 10000000),
	PAIR("16k", 16384, 10000000),
	PAIR("64k", 65536, 1000000),
	PAIR("256k", 262144, 1000000),
	PAIR("1m", 1048576, 1000000),
	{ "random_small", "replace random slots of 4096 live objects, sizes 8 B..32 KiB small-heavy",
	  wl_random_small, 0, 1, 0, 10000000, 1000000, 0 },
	{ "random_powerlaw", "replace random slots of 1024 live objects, sizes 16 B..1 MiB power law",
	  wl_random_powerlaw, 0, 1, 0, 4000000, 400000, 0 },
	{ "batch", "allocate 4096 objects of 16..512 B, free them in random order",
	  wl_batch, 0, 1, 0, 2000, 200, 0 },
	{ "realloc_string", "string builder: realloc to exact length, appends of 1..32 B to 4..64 KiB",
	  wl_realloc_string, 0, 1, 0, 5000, 500, 0 },
	{ "realloc_vector", "8 vectors growing side by side by doubling, 16 B..256 KiB",
	  wl_realloc_vector, 0, 1, 0, 1000, 100, 0 },
	{ "prodcons", "producer thread allocates 16..256 B, consumer thread frees",
	  wl_prodcons, 0, 2, WL_THREADED, 5000000, 500000, 0 },
	{ "larson", "4 threads swap 8..1000 B objects into random slots of a shared array",
	  wl_larson, 0, 4, WL_THREADED, 8000000, 800000, 0 },
	{ "frag", "interleaved lifetimes in 6 phases, RSS after each (N small objects)",
	  wl_frag, 0, 1, WL_NO_WARMUP, 500000, 125000, 0 },
	{ "frag_mixed", "small objects and 64-256 KiB runs by turns, runs and 7/8 freed, then 2 MiB blocks",
	  wl_frag_mixed, 0, 1, WL_NO_WARMUP | WL_SLOW, 500000, 125000, 0 },
	{ "calloc_large", "calloc of 128 KiB..4 MiB, a byte per page written, free",
	  wl_calloc_large, 0, 1, 0, 4000, 400, 0 },
	{ "rss_cycle", "3 days: grow ~N KiB, free 90%, idle lightly 1.5 s; RSS at each peak and night",
	  wl_rss_cycle, 0, 1, WL_NO_WARMUP | WL_SLOW, 262144, 65536, 0 },
	{ "hash_1g", "1 GiB open-addressing table: cleared, then N random 64-bit inserts",
	  wl_hash_1g, 0, 1, WL_NO_WARMUP | WL_SLOW, 20000000, 2000000, 0 },
	SURVIVORS("16", 16, 64, 160000),
	SURVIVORS("128", 128, 40, 160000),
	SURVIVORS("392", 392, 40, 160000),
	SURVIVORS("392", 392, 4, 160000),
	SURVIVORS("2000", 2000, 40, 80000),
	SURVIVORS("8k", 8000, 8, 20000),
	SURVIVORS("32k", 32768, 64, 2000),
	SURVIVORS("32k", 32768, 2, 4000),
};
const size_t wl_count = sizeof wl_table / sizeof wl_table[0];

/* ---- RSS over time: a server's daily cycle ---- */

static void quiet_period(struct wl_rng *r, long ms)
{
	/* A quiet server still works a little: every 10 ms a few requests
	 * allocate and free small and medium buffers. */
	for (long t = 0; t < ms; t += 10) {
		void *p[8];
		for (int i = 0; i < 8; i++)
			p[i] = xmalloc(i < 6 ? size_uniform(r, 16, 1024) : size_uniform(r, 16384, 131072),
				       "cycle");
		for (int i = 0; i < 8; i++)
			free(p[i]);
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

/*
 * Three days of a server: each "day" grows a working set of ~`iters` KiB
 * of mixed sizes (slabs, page runs, a few huge buffers), keeps a tenth of
 * it overnight and frees the rest, then idles lightly for 1.5 s. RSS is
 * read after each growth ("peak") and after each night ("release"). What
 * the heap keeps after the night is what it hoards.
 */
uint64_t wl_rss_cycle(const struct wl_args *a)
{
	struct wl_rng r;
	wl_rng_seed(&r, a->seed);
	uint64_t ops = 0;
	size_t target = (size_t)(a->iters > 1024 ? a->iters : 1024) << 10;
	size_t cap = target / 64 + 1024;
	char **obj = xmalloc(cap * sizeof *obj, "cycle");
	static const char *const peak[] = { "day1-peak", "day2-peak", "day3-peak" };
	static const char *const night[] = { "day1-release", "day2-release", "day3-release" };
	phase(a, 0, "start");
	for (unsigned day = 0; day < 3; day++) {
		size_t n = 0, bytes = 0;
		while (bytes < target && n < cap) {
			uint64_t k = wl_rng_next(&r) % 100;
			size_t len = k < 80 ? size_uniform(&r, 16, 2048)
				     : k < 98 ? size_uniform(&r, 8192, 262144)
				     : size_uniform(&r, 4u << 20, 12u << 20);
			obj[n] = xmalloc(len, "cycle");
			touch_ends(obj[n], len, (char)n);
			for (size_t off = 4096; off < len; off += 4096)
				obj[n][off] = 1;
			bytes += len;
			n++;
			ops++;
		}
		phase(a, 1 + 2 * day, peak[day]);
		for (size_t i = 0; i < n; i++)
			if (i % 10)
				free(obj[i]);
		quiet_period(&r, 1500);
		ops += 150 * 8;
		phase(a, 2 + 2 * day, night[day]);
		for (size_t i = 0; i < n; i += 10)
			free(obj[i]);
	}
	free(obj);
	return ops;
}

const struct workload *wl_find(const char *name)
{
	for (size_t i = 0; i < wl_count; i++)
		if (strcmp(wl_table[i].name, name) == 0)
			return &wl_table[i];
	return NULL;
}
