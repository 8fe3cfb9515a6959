/*
 * zonealloc-replay: replays an allocation trace (ZONEALLOC_TRACE, format in
 * shim/trace.h) against whichever allocator serves this process's malloc
 * (preload one with LD_PRELOAD, or none for glibc's), with the recorded
 * thread split, and says how long the calls took and how much memory
 * they needed.
 *
 * The trace's calls are paired first (every free with the allocation it
 * frees, in time order: a block is released when its free began and taken
 * when its allocation returned), so each allocation gets an id and the
 * replay needs no address map. Each recorded thread becomes a thread that
 * makes its calls in order; a free of a block another thread allocates
 * waits until that allocation was replayed. Threads keep the program's
 * fork-join shape: a thread starts once the calls recorded before its
 * first were replayed, and a call recorded after another thread's last
 * waits until that thread is done. Threads that ran side by side in the
 * program run side by side here. The tool's own memory comes
 * from mmap, never from the allocator measured, and the replay runs in a
 * child process so that the pairing's memory is not in its peak RSS.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shim/trace.h"

enum { K_NOP, K_MALLOC, K_CALLOC, K_ALIGNED, K_REALLOC, K_FREE };

struct op {
	uint64_t t;      /* when it was called, for the threads' start order */
	uint64_t size;
	uint32_t id;     /* the block this call makes (0: none) */
	uint32_t old;    /* the block it frees or resizes (0: none) */
	uint8_t kind;
	uint8_t align_log2;
};

struct event {
	uint64_t t;
	uint32_t rec;
	uint32_t acquire;   /* 0: a release, 1: an acquisition (later at equal times) */
};

static const char *op_names[] = { "?", "malloc", "calloc", "realloc", "memalign", "free",
				  "free_sized", "za_alloc", "za_alloc_pages", "za_free_pages" };
#define NOPS 10

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("zonealloc-replay: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* Memory of the tool's own: mmap, so the allocator measured sees none of it. */
static void *map(size_t bytes)
{
	if (!bytes)
		bytes = 1;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("out of memory (%zu bytes)", bytes);
	return p;
}

static void unmap(void *p, size_t bytes)
{
	munmap(p, bytes ? bytes : 1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- address -> block id, for the pairing: linear probing ---- */

struct amap {
	uint64_t *key;
	uint32_t *val;
	size_t cap, used;
};

static size_t amap_slot(const struct amap *m, uint64_t a)
{
	return (size_t)((a >> 4) * 0x9e3779b97f4a7c15ull >> 20) & (m->cap - 1);
}

static void amap_init(struct amap *m, size_t cap)
{
	m->cap = cap;
	m->used = 0;
	m->key = map(cap * sizeof *m->key);
	m->val = map(cap * sizeof *m->val);
}

static void amap_put(struct amap *m, uint64_t a, uint32_t v);

static void amap_grow(struct amap *m)
{
	struct amap old = *m;
	amap_init(m, old.cap * 2);
	for (size_t i = 0; i < old.cap; i++)
		if (old.key[i])
			amap_put(m, old.key[i], old.val[i]);
	unmap(old.key, old.cap * sizeof *old.key);
	unmap(old.val, old.cap * sizeof *old.val);
}

/* Sets a's id; returns the id it replaces (0: none). */
static uint32_t amap_set(struct amap *m, uint64_t a, uint32_t v)
{
	if (2 * (m->used + 1) > m->cap)
		amap_grow(m);
	size_t i = amap_slot(m, a);
	while (m->key[i] && m->key[i] != a)
		i = (i + 1) & (m->cap - 1);
	uint32_t prev = m->key[i] ? m->val[i] : 0;
	if (!m->key[i])
		m->used++;
	m->key[i] = a;
	m->val[i] = v;
	return prev;
}

static void amap_put(struct amap *m, uint64_t a, uint32_t v)
{
	(void)amap_set(m, a, v);
}

/* Removes a; returns its id (0: not there). Backward-shift deletion. */
static uint32_t amap_take(struct amap *m, uint64_t a)
{
	size_t i = amap_slot(m, a);
	while (m->key[i] && m->key[i] != a)
		i = (i + 1) & (m->cap - 1);
	if (!m->key[i])
		return 0;
	uint32_t v = m->val[i];
	size_t j = i;
	for (;;) {
		j = (j + 1) & (m->cap - 1);
		if (!m->key[j])
			break;
		size_t home = amap_slot(m, m->key[j]);
		/* j's entry may move to i if its home is not in (i, j] */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->key[i] = m->key[j];
			m->val[i] = m->val[j];
			i = j;
		}
	}
	m->key[i] = 0;
	m->used--;
	return v;
}

/*
 * Events in time order, releases before acquisitions at equal times, and
 * otherwise in the order they were made (record order): an LSD radix sort,
 * stable, 16 bits a pass, over mmap'd memory. Not qsort: glibc's takes
 * its buffer from malloc, the allocator under measurement, whose state
 * (and RSS) the replay must find untouched.
 */
static uint64_t event_key(const struct event *e)
{
	return e->t << 1 | e->acquire;
}

static void sort_events(struct event *ev, size_t n)
{
	if (n < 2)
		return;
	uint64_t all_or = 0;
	for (size_t i = 0; i < n; i++)
		all_or |= event_key(&ev[i]);
	struct event *tmp = map(n * sizeof *tmp);
	size_t *count = map(65536 * sizeof *count);
	struct event *from = ev, *to = tmp;
	for (unsigned shift = 0; shift < 64 && (all_or >> shift); shift += 16) {
		memset(count, 0, 65536 * sizeof *count);
		for (size_t i = 0; i < n; i++)
			count[(event_key(&from[i]) >> shift) & 0xffff]++;
		size_t sum = 0;
		for (size_t d = 0; d < 65536; d++) {
			size_t c = count[d];
			count[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			to[count[(event_key(&from[i]) >> shift) & 0xffff]++] = from[i];
		struct event *swap = from;
		from = to;
		to = swap;
	}
	if (from != ev)
		memcpy(ev, from, n * sizeof *ev);
	unmap(tmp, n * sizeof *tmp);
	unmap(count, 65536 * sizeof *count);
}

/* ---- the replay ---- */


enum touch { TOUCH_NONE, TOUCH_PAGES, TOUCH_ALL };

struct thread_end {
	uint64_t t;
	uint32_t thread;
};

/* Insertion sort by time (few threads; and no malloc, as above). */
static void sort_ends(struct thread_end *e, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct thread_end x = e[i];
		size_t j = i;
		for (; j > 0 && e[j - 1].t > x.t; j--)
			e[j] = e[j - 1];
		e[j] = x;
	}
}

/* A thread's progress, on a cache line of its own. */
struct progress {
	_Atomic size_t done;
	char pad[64 - sizeof(size_t)];
};

struct replay {
	struct op **ops;          /* per thread */
	size_t *nops;
	struct progress *progress;
	struct thread_end *ends;  /* every thread's last call, in time order */
	uint32_t threads;
	uint64_t *sizes;          /* per block id */
	_Atomic(void *) *slots;   /* per block id: the replayed pointer */
	enum touch touch;
	pthread_barrier_t start;
	_Atomic int64_t live;
	_Atomic int64_t peak;
	_Atomic uint64_t failed, waits;
};

#define FAILED_BLOCK ((void *)1)

static struct replay R;

static void touch(void *p, size_t size)
{
	char *c = p;
	if (R.touch == TOUCH_ALL)
		memset(c, 0x5a, size);
	else if (R.touch == TOUCH_PAGES)
		for (size_t off = 0; off < size; off += 4096)
			c[off] = 1;
}

static void live_add(int64_t d)
{
	int64_t now = atomic_fetch_add_explicit(&R.live, d, memory_order_relaxed) + d;
	int64_t peak = atomic_load_explicit(&R.peak, memory_order_relaxed);
	while (now > peak &&
	       !atomic_compare_exchange_weak_explicit(&R.peak, &peak, now, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/* The block `id` as replayed: waits while its allocation, on another
 * thread, has not been replayed yet. NULL: it failed there. */
static void *block(uint32_t id)
{
	void *p = atomic_load_explicit(&R.slots[id], memory_order_acquire);
	if (!p) {
		atomic_fetch_add_explicit(&R.waits, 1, memory_order_relaxed);
		while (!(p = atomic_load_explicit(&R.slots[id], memory_order_acquire)))
			sched_yield();
	}
	return p == FAILED_BLOCK ? NULL : p;
}

static void made(uint32_t id, void *p)
{
	if (!p) {
		atomic_fetch_add_explicit(&R.failed, 1, memory_order_relaxed);
		if (id)
			atomic_store_explicit(&R.slots[id], FAILED_BLOCK, memory_order_release);
		return;
	}
	if (!id) {   /* recorded as failed, made now: give it back */
		free(p);
		return;
	}
	live_add((int64_t)R.sizes[id]);
	atomic_store_explicit(&R.slots[id], p, memory_order_release);
}

/* Calls of thread j recorded before time t. */
static size_t calls_before(uint32_t j, uint64_t t)
{
	size_t lo = 0, hi = R.nops[j];
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (R.ops[j][mid].t < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A thread starts when every call recorded before its first one was
 * replayed: a thread the program started after joining another does not
 * run beside it (nor its blocks live beside the other's). Waiting only
 * for calls recorded earlier cannot deadlock. */
static void wait_for_start(uint32_t t)
{
	if (!R.nops[t])
		return;
	uint64_t first = R.ops[t][0].t;
	for (uint32_t j = 0; j < R.threads; j++) {
		if (j == t)
			continue;
		size_t need = calls_before(j, first);
		if (atomic_load_explicit(&R.progress[j].done, memory_order_acquire) >= need)
			continue;
		atomic_fetch_add_explicit(&R.waits, 1, memory_order_relaxed);
		while (atomic_load_explicit(&R.progress[j].done, memory_order_acquire) < need)
			sched_yield();
	}
}

static void *replay_thread(void *arg)
{
	uint32_t t = (uint32_t)(uintptr_t)arg;
	const struct op *ops = R.ops[t];
	size_t n = R.nops[t];
	pthread_barrier_wait(&R.start);
	wait_for_start(t);
	size_t next_end = 0;   /* in R.ends */
	for (size_t i = 0; i < n; i++) {
		const struct op *o = &ops[i];
		atomic_store_explicit(&R.progress[t].done, i, memory_order_release);
		/* A call recorded after another thread's last one waits for that
		 * thread to finish: the program had joined it. */
		while (next_end < R.threads && R.ends[next_end].t < o->t) {
			uint32_t j = R.ends[next_end++].thread;
			if (j != t)
				while (atomic_load_explicit(&R.progress[j].done, memory_order_acquire) <
				       R.nops[j])
					sched_yield();
		}
		void *p;
		switch (o->kind) {
		case K_MALLOC:
			p = malloc(o->size);
			if (p)
				touch(p, o->size);
			made(o->id, p);
			break;
		case K_CALLOC:
			p = calloc(1, o->size);
			if (p)
				touch(p, o->size);
			made(o->id, p);
			break;
		case K_ALIGNED: {
			size_t align = (size_t)1 << o->align_log2;
			if (align < sizeof(void *))
				align = sizeof(void *);
			if (posix_memalign(&p, align, o->size))
				p = NULL;
			if (p)
				touch(p, o->size);
			made(o->id, p);
			break;
		}
		case K_REALLOC: {
			void *old = o->old ? block(o->old) : NULL;
			if (o->old && !old) {   /* its allocation failed here */
				made(o->id, NULL);
				break;
			}
			if (!o->id) {   /* recorded as realloc(p, 0): a free */
				free(old);
				live_add(-(int64_t)R.sizes[o->old]);
				break;
			}
			p = realloc(old, o->size);
			if (p) {
				touch(p, o->size);
				if (o->old)
					live_add(-(int64_t)R.sizes[o->old]);
			}
			made(o->id, p);
			break;
		}
		case K_FREE:
			p = block(o->old);
			if (p) {
				free(p);
				live_add(-(int64_t)R.sizes[o->old]);
			}
			break;
		default:
			break;
		}
	}
	atomic_store_explicit(&R.progress[t].done, n, memory_order_release);
	return NULL;
}

/* Resident KiB now (/proc/self/statm; read(2), not stdio: no malloc). */
static long rss_now_kb(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	const char *rss = strchr(buf, ' ');
	return rss ? strtol(rss + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024) : 0;
}

static void usage(FILE *f)
{
	fputs("usage: zonealloc-replay [--touch none|pages|all] [--kv] FILE\n"
	      "Replays the allocation trace FILE (recorded with ZONEALLOC_TRACE=FILE or\n"
	      "zonealloc --trace FILE) against the malloc of this process: preload the\n"
	      "allocator to measure (LD_PRELOAD=...), none for glibc's. The recorded\n"
	      "threads replay on threads of their own.\n"
	      "  --touch pages   write a byte in every page of a new block (default)\n"
	      "  --touch all     write every byte;  --touch none: write nothing\n"
	      "  --kv            one line of key=value results only\n", f);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool kv = false;
	R.touch = TOUCH_PAGES;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--kv")) {
			kv = true;
		} else if (!strcmp(argv[i], "--touch") && i + 1 < argc) {
			const char *w = argv[++i];
			R.touch = !strcmp(w, "none") ? TOUCH_NONE : !strcmp(w, "all") ? TOUCH_ALL
				: !strcmp(w, "pages") ? TOUCH_PAGES : (die("--touch: none, pages or all, not %s", w), 0);
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || path) {
			usage(stderr);
			return 2;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}

	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || st.st_size < (off_t)sizeof(struct za_trace_header))
		die("%s: not a trace (too short)", path);
	const unsigned char *file = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED)
		die("%s: %s", path, strerror(errno));
	close(fd);
	struct za_trace_header h;
	memcpy(&h, file, sizeof h);
	if (memcmp(h.magic, ZA_TRACE_MAGIC, 8))
		die("%s: not a zonealloc trace (bad magic)", path);
	if (h.version != ZA_TRACE_VERSION || h.record_size != sizeof(struct za_trace_record))
		die("%s: trace version %u with %u-byte records; this tool reads version %u", path,
		    h.version, h.record_size, ZA_TRACE_VERSION);
	size_t body = (size_t)st.st_size - sizeof h;
	size_t n = body / sizeof(struct za_trace_record);
	if (body % sizeof(struct za_trace_record))
		fprintf(stderr, "zonealloc-replay: %s: a partial record at the end is ignored\n", path);
	if (n > UINT32_MAX - 2)
		die("%s: %zu records: at most %u are replayed", path, n, UINT32_MAX - 2);
	const struct za_trace_record *rec = (const void *)(file + sizeof h);

	/* Events: each record releases a block, takes one, or both. */
	struct event *ev = map(2 * n * sizeof *ev);
	size_t nev = 0;
	uint32_t threads = 0;
	uint64_t per_op[NOPS] = { 0 };
	for (size_t i = 0; i < n; i++) {
		const struct za_trace_record *r = &rec[i];
		if (r->op == 0 || r->op >= NOPS)
			die("%s: record %zu: unknown call %u", path, i, r->op);
		per_op[r->op]++;
		if (r->thread > threads)
			threads = r->thread;
		bool failed = r->flags & ZA_TRACE_FAILED;
		uint64_t rel = 0, acq = 0;
		switch (r->op) {
		case ZA_TOP_FREE:
		case ZA_TOP_FREE_SIZED:
		case ZA_TOP_FREE_PAGES:
			rel = r->addr;
			break;
		case ZA_TOP_REALLOC:
			if (!failed) {
				rel = r->old;
				acq = r->addr;
			}
			break;
		default:
			acq = failed ? 0 : r->addr;
			break;
		}
		if (rel)
			ev[nev++] = (struct event){ r->t_ns, (uint32_t)i, 0 };
		if (acq)
			ev[nev++] = (struct event){ r->t_ns + r->dur_ns, (uint32_t)i, 1 };
	}
	if (!threads)
		threads = 1;
	sort_events(ev, nev);

	/* Pairing: ids in time order; the recorded peak of live bytes. */
	uint32_t *rec_id = map(n * sizeof *rec_id), *rec_old = map(n * sizeof *rec_old);
	size_t idcap = 1024;
	uint64_t *sizes = map(idcap * sizeof *sizes);
	uint32_t nid = 0;
	struct amap am;
	amap_init(&am, 1 << 16);
	int64_t live = 0, peak = 0;
	uint64_t unmatched = 0, overlaps = 0;
	for (size_t e = 0; e < nev; e++) {
		const struct za_trace_record *r = &rec[ev[e].rec];
		if (!ev[e].acquire) {
			uint64_t a = r->op == ZA_TOP_REALLOC ? r->old : r->addr;
			uint32_t id = amap_take(&am, a);
			if (!id) {
				unmatched++;   /* allocated before the trace began */
				continue;
			}
			rec_old[ev[e].rec] = id;
			live -= (int64_t)sizes[id];
		} else {
			if (nid + 2 >= idcap) {
				uint64_t *bigger = map(2 * idcap * sizeof *bigger);
				memcpy(bigger, sizes, idcap * sizeof *sizes);
				unmap(sizes, idcap * sizeof *sizes);
				sizes = bigger;
				idcap *= 2;
			}
			uint32_t id = ++nid;
			sizes[id] = r->size;
			rec_id[ev[e].rec] = id;
			if (amap_set(&am, r->addr, id))
				overlaps++;   /* a block handed out twice: a torn trace */
			live += (int64_t)r->size;
			if (live > peak)
				peak = live;
		}
	}
	unmap(ev, 2 * n * sizeof *ev);
	unmap(am.key, am.cap * sizeof *am.key);
	unmap(am.val, am.cap * sizeof *am.val);

	/* Per-thread call lists, in each thread's order. */
	R.threads = threads;
	R.nops = map(threads * sizeof *R.nops);
	R.ops = map(threads * sizeof *R.ops);
	for (size_t i = 0; i < n; i++)
		R.nops[rec[i].thread ? rec[i].thread - 1 : 0]++;
	size_t *fill = map(threads * sizeof *fill);
	for (uint32_t t = 0; t < threads; t++)
		R.ops[t] = map(R.nops[t] * sizeof(struct op));
	for (size_t i = 0; i < n; i++) {
		const struct za_trace_record *r = &rec[i];
		uint32_t t = r->thread ? r->thread - 1 : 0;
		struct op *o = &R.ops[t][fill[t]++];
		o->t = r->t_ns;
		o->size = r->size;
		o->id = rec_id[i];
		o->old = rec_old[i];
		o->align_log2 = r->align_log2;
		switch (r->op) {
		case ZA_TOP_MALLOC:
			o->kind = K_MALLOC;
			break;
		case ZA_TOP_CALLOC:
			o->kind = K_CALLOC;
			break;
		case ZA_TOP_MEMALIGN:
		case ZA_TOP_ZA_ALLOC:
		case ZA_TOP_ALLOC_PAGES:
			o->kind = o->align_log2 > 4 ? K_ALIGNED : K_MALLOC;
			break;
		case ZA_TOP_REALLOC:
			/* failed: nothing happened; unmatched old: a new block */
			o->kind = (r->flags & ZA_TRACE_FAILED) ? K_NOP
				: (o->old || o->id) ? K_REALLOC : K_NOP;
			break;
		default:
			o->kind = o->old ? K_FREE : K_NOP;
			break;
		}
		if ((o->kind == K_MALLOC || o->kind == K_CALLOC || o->kind == K_ALIGNED) && !o->id)
			o->kind = K_NOP;   /* failed when recorded */
	}
	unmap(fill, threads * sizeof *fill);
	unmap(rec_id, n * sizeof *rec_id);
	unmap(rec_old, n * sizeof *rec_old);
	R.progress = map(threads * sizeof *R.progress);
	R.ends = map(threads * sizeof *R.ends);
	for (uint32_t t = 0; t < threads; t++)
		R.ends[t] = (struct thread_end){ R.nops[t] ? R.ops[t][R.nops[t] - 1].t : 0, t };
	sort_ends(R.ends, threads);
	R.sizes = sizes;
	R.slots = map(((size_t)nid + 1) * sizeof *R.slots);
	/* Resident before the replay's RSS is read, so that it counts in
	 * rss_before under every allocator alike. */
	memset((void *)R.slots, 0, ((size_t)nid + 1) * sizeof *R.slots);
	char comm[sizeof h.comm + 1];
	memcpy(comm, h.comm, sizeof h.comm);
	comm[sizeof h.comm] = 0;
	munmap((void *)file, (size_t)st.st_size);

	if (!kv) {
		printf("trace %s: %s (pid %u), %u thread%s, %zu calls:", path, comm[0] ? comm : "?",
		       h.pid, threads, threads == 1 ? "" : "s", n);
		for (int k = 1; k < NOPS; k++)
			if (per_op[k])
				printf(" %llu %s", (unsigned long long)per_op[k], op_names[k]);
		printf("\n  recorded: %u blocks, peak live %lld bytes", nid, (long long)peak);
		if (unmatched)
			printf(", %llu frees of blocks from before the trace (skipped)",
			       (unsigned long long)unmatched);
		if (overlaps)
			printf(", %llu blocks handed out while live (a torn trace?)",
			       (unsigned long long)overlaps);
		printf("\n");
		fflush(stdout);
	}

	/* The replay, in a child: the pairing's memory is not in its peak. */
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child) {
		int status;
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status))
			die("the replay died of signal %d", WTERMSIG(status));
		return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	}
	long rss_before = rss_now_kb();
	pthread_barrier_init(&R.start, NULL, threads + 1);
	pthread_t *tid = map(threads * sizeof *tid);
	for (uint32_t t = 0; t < threads; t++)
		if (pthread_create(&tid[t], NULL, replay_thread, (void *)(uintptr_t)t))
			die("cannot start thread %u of %u", t + 1, threads);
	double t0 = now_s();
	pthread_barrier_wait(&R.start);
	for (uint32_t t = 0; t < threads; t++)
		pthread_join(tid[t], NULL);
	double secs = now_s() - t0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	if (kv) {
		printf("calls=%zu threads=%u seconds=%.6f peak_live=%lld recorded_peak_live=%lld "
		       "maxrss_kb=%ld rss_before_kb=%ld failed=%llu blocks=%u unmatched=%llu "
		       "overlaps=%llu\n",
		       n, threads, secs, (long long)atomic_load(&R.peak), (long long)peak,
		       ru.ru_maxrss, rss_before, (unsigned long long)atomic_load(&R.failed), nid,
		       (unsigned long long)unmatched, (unsigned long long)overlaps);
	} else {
		printf("  replayed: %zu calls in %.3f s (%.2f M calls/s), peak live %lld bytes, "
		       "peak RSS %ld KiB (%ld KiB before the first call)",
		       n, secs, secs > 0 ? (double)n / secs / 1e6 : 0.0,
		       (long long)atomic_load(&R.peak), ru.ru_maxrss, rss_before);
		if (atomic_load(&R.failed))
			printf(", %llu allocations failed", (unsigned long long)atomic_load(&R.failed));
		printf("\n");
	}
	fflush(stdout);
	_exit(0);
}
