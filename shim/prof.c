/*
 * Sampled heap profiling (prof.h): the sampler, the records of live
 * sampled allocations, and the profile in the gperftools heap-profile
 * format ("heap_v2/RATE": google-pprof scales each stack's counts by
 * 1 / (1 - e^(-avg/RATE)) itself), plus a text summary of the top sites.
 *
 * Nothing here calls malloc: records are meta memory, output goes through
 * write(2) from a fixed buffer, and the stack comes from libunwind's local
 * unw_backtrace, loaded when profiling starts (os/backtrace.c). A thread
 * that is recording does not sample (libunwind may allocate on first use).
 */
#include "shim/prof.h"
#include "shim/trace.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "shim/backend.h"
#include "shim/guard.h"
#include "shim/shim.h"

#define PROF_DEPTH 32

struct prof_sample {
	struct prof_sample *next, *prev;   /* the live list */
	void *ptr;
	size_t size;                       /* asked for (at least 1) */
	uint32_t depth, hash;
	void *pcs[PROF_DEPTH];             /* pcs[0]: the program's call site */
};

static __thread uint64_t prof_rng __attribute__((tls_model("initial-exec")));
static __thread bool prof_busy __attribute__((tls_model("initial-exec")));

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static struct prof_sample live = { .next = &live, .prev = &live };
static uint64_t live_count, live_bytes, samples_total;
static _Atomic bool prof_on;
static uint64_t prof_rate = 512 * 1024;
ZA_BULK static char prof_path[4096];
static int prof_report_fd = -1;
static _Atomic unsigned prof_signal_seq;

/* ---- the sampler ---- */

/* ln x for 0 < x <= 1, no libm: the exponent, and ln of the mantissa in
 * [1, 2) from the atanh series (error below 1e-7). */
static double prof_log(double x)
{
	union { double d; uint64_t u; } v = { x };
	int e = (int)((v.u >> 52) & 0x7ff) - 1023;
	v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
	double t = (v.d - 1) / (v.d + 1), t2 = t * t;
	double s = 1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9 + t2 / 11))));
	return e * 0.6931471805599453 + 2 * t * s;
}

/* e^-x for x >= 0: 2^-k times a Taylor series on [0, ln 2). */
static double prof_exp_neg(double x)
{
	if (x > 700)
		return 0;
	double y = x * 1.4426950408889634;
	int k = (int)y;
	double f = (y - k) * 0.6931471805599453, term = 1, sum = 1;
	for (int i = 1; i <= 12; i++) {
		term *= -f / i;
		sum += term;
	}
	while (k-- > 0)
		sum *= 0.5;
	return sum;
}

static uint64_t rng_next(void)
{
	uint64_t x = prof_rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	prof_rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Bytes to the next sample: exponential with mean prof_rate. */
static uint64_t next_interval(void)
{
	double u = (double)((rng_next() >> 11) + 1) * (1.0 / 9007199254740992.0);   /* (0, 1] */
	double v = -prof_log(u) * (double)prof_rate;
	return v > 4e18 ? (uint64_t)4e18 : (uint64_t)v + 1;
}

static void *plain_alloc(size_t size, bool zero)
{
	return zero ? za_shim_calloc_uncounted(size) : za_shim_malloc_uncounted(size);
}

static uint32_t capture(void **pcs, void *caller)
{
	void *buf[PROF_DEPTH + 8];
	int n = za_backtrace_pcs(buf, PROF_DEPTH + 8);
	for (int i = 0; i < n; i++) {
		if (buf[i] != caller)
			continue;
		int d = n - i < PROF_DEPTH ? n - i : PROF_DEPTH;
		memcpy(pcs, buf + i, (size_t)d * sizeof *pcs);
		return (uint32_t)d;
	}
	pcs[0] = caller;
	return 1;
}

static uint32_t stack_hash(void *const *pcs, uint32_t depth)
{
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (uint32_t i = 0; i < depth; i++)
		h = (h ^ (uintptr_t)pcs[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static void *sampled_alloc(size_t size, bool zero, void *caller)
{
	if (za_backend_serving())
		return plain_alloc(size, zero);
	struct prof_sample *s = za_meta_alloc(sizeof *s);
	if (!s)
		return plain_alloc(size, zero);
	void *p = za_shim_malloc_large(size ? size : 1, 0, zero);
	struct za_region *r = p ? za_region_of(p) : NULL;
	if (!r) {   /* failed, or the fallback backend's */
		za_meta_free(s, sizeof *s);
		return p;
	}
	s->ptr = p;
	s->size = size ? size : 1;
	s->depth = capture(s->pcs, caller);
	s->hash = stack_hash(s->pcs, s->depth);
	za_lock(&prof_lock);
	s->next = &live;
	s->prev = live.prev;
	live.prev->next = s;
	live.prev = s;
	live_count++;
	live_bytes += s->size;
	samples_total++;
	pthread_mutex_unlock(&prof_lock);
	if (r->kind == ZA_REGION_HUGE) {
		((struct za_huge *)r)->prof = s;
	} else {
		struct za_zone *zone = (struct za_zone *)r;
		struct za_page *head = za_page_at(zone, za_pfn_of(zone, p));
		head->prof_sample = s;
		head->flags |= ZA_PGF_SAMPLED;
	}
	return p;
}

static void *prof_alloc(size_t size, bool zero, void *caller)
{
	if (!atomic_load_explicit(&prof_on, memory_order_relaxed)) {
		/* Not profiling: a thread's first allocation (threads start
		 * at ZA_PROF_ASK, so those that start after profiling did count too),
		 * 2^63 bytes counted, or a request near SIZE_MAX. */
		za_tls.prof_left = INT64_MAX;
		return plain_alloc(size, zero);
	}
	if (unlikely(!prof_rng)) {
		/* The thread's first crossing (armed at ZA_PROF_ASK): seed and
		 * draw; this allocation is sampled only if it crosses the
		 * drawn interval too. */
		prof_rng = ((uintptr_t)&prof_rng * 0x9e3779b97f4a7c15ull) ^ za_now_ms() ^ 1;
		uint64_t first = next_interval();
		if (size < first) {
			za_tls.prof_left = first - size;
			return plain_alloc(size, zero);
		}
	}
	za_tls.prof_left = next_interval();
	if (prof_busy)
		return plain_alloc(size, zero);
	prof_busy = true;
	void *p = sampled_alloc(size, zero, caller);
	prof_busy = false;
	return p;
}

/* While calls are traced, the countdown stays at ZA_PROF_ASK so that every
 * allocation comes here to be recorded; the profiler's own countdown waits
 * in prof_shadow, as if the inline subtraction had counted it. */
static __thread uint64_t prof_shadow __attribute__((tls_model("initial-exec")));

static ZA_NOINLINE void *traced_alloc(size_t size, bool zero, void *caller)
{
	struct za_trace_call c;
	bool recording = za_trace_begin(&c);
	void *p;
	prof_shadow -= size;
	if ((int64_t)prof_shadow < 0) {
		za_tls.prof_left = prof_shadow;
		p = prof_alloc(size, zero, caller);
		prof_shadow = za_tls.prof_left;
	} else {
		p = plain_alloc(size, zero);
	}
	za_tls.prof_left = ZA_PROF_ASK;
	if (recording)
		za_trace_end(&c, zero ? ZA_TOP_CALLOC : ZA_TOP_MALLOC, p, size, 0, 0,
			     p ? 0 : ZA_TRACE_FAILED);
	return p;
}

void *za_prof_alloc(size_t size, bool zero, void *caller)
{
	/* Guard mode keeps the countdown at ZA_PROF_ASK: every allocation
	 * comes here. */
	if (unlikely(za_guard_active())) {
		za_tls.prof_left = ZA_PROF_ASK;
		return za_guard_alloc(size, 16, zero);
	}
	if (unlikely(za_trace_on))
		return traced_alloc(size, zero, caller);
	return prof_alloc(size, zero, caller);
}

void za_prof_forget(void *sample)
{
	struct prof_sample *s = sample;
	za_lock(&prof_lock);
	s->prev->next = s->next;
	s->next->prev = s->prev;
	live_count--;
	live_bytes -= s->size;
	pthread_mutex_unlock(&prof_lock);
	za_meta_free(s, sizeof *s);
}

size_t za_prof_sampled_size(const void *p)
{
	struct za_region *r = za_region_of(p);
	if (!r)
		return 0;
	if (r->kind == ZA_REGION_HUGE) {
		const struct za_huge *h = (const struct za_huge *)r;
		return (uintptr_t)p == r->base && h->prof ? ((struct prof_sample *)h->prof)->size : 0;
	}
	const struct za_zone *zone = (const struct za_zone *)r;
	if ((uintptr_t)p & (ZA_PAGE_SIZE - 1))
		return 0;
	const struct za_page *head = za_page_at(zone, za_pfn_of(zone, p));
	if (head->state != ZA_PG_RUN || !(head->flags & ZA_PGF_SAMPLED))
		return 0;
	return ((const struct prof_sample *)head->prof_sample)->size;
}

/* ---- output ---- */

struct wbuf {
	int fd;
	size_t n;
	char buf[8192];
};

static void wb_flush(struct wbuf *w)
{
	za_os_write(w->fd, w->buf, w->n);
	w->n = 0;
}

#define wb_fmt(w, ...)                                                                      \
	do {                                                                                \
		if (sizeof (w)->buf - (w)->n < 256)                                         \
			wb_flush(w);                                                        \
		(w)->n += za_fmt((w)->buf + (w)->n, sizeof (w)->buf - (w)->n, __VA_ARGS__); \
	} while (0)

/* One aggregate: the live samples with one stack (or one call site). */
struct prof_bucket {
	struct prof_sample *rep;
	uint64_t count, bytes;
	double estimate;   /* unsampled bytes */
};

/* Estimated bytes a sample of `size` stands for. */
static double unsample(size_t size)
{
	double q = 1 - prof_exp_neg((double)size / (double)prof_rate);
	return q > 0 ? (double)size / q : (double)size;
}

/* Groups the live samples by stack (by_site: by call site only) into a
 * table of *cap buckets; NULL when there is no memory for it. Lock held. */
static struct prof_bucket *__aggregate(bool by_site, size_t *cap)
{
	size_t n = 16;
	while (n < live_count * 2)
		n *= 2;
	void *mem;
	if (za_os_map(n * sizeof(struct prof_bucket), &mem))   /* zeroed */
		return NULL;
	struct prof_bucket *t = mem;
	for (struct prof_sample *s = live.next; s != &live; s = s->next) {
		uint32_t h = by_site ? stack_hash(s->pcs, 1) : s->hash;
		size_t i = h & (n - 1);
		for (;; i = (i + 1) & (n - 1)) {
			struct prof_bucket *b = &t[i];
			if (!b->rep) {
				b->rep = s;
				break;
			}
			if (by_site ? b->rep->pcs[0] == s->pcs[0]
				    : b->rep->hash == s->hash && b->rep->depth == s->depth &&
					      !memcmp(b->rep->pcs, s->pcs, s->depth * sizeof s->pcs[0]))
				break;
		}
		t[i].count++;
		t[i].bytes += s->size;
		t[i].estimate += unsample(s->size);
	}
	*cap = n;
	return t;
}

static void copy_maps(struct wbuf *w)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (;;) {
		if (w->n == sizeof w->buf)
			wb_flush(w);
		ssize_t r = read(fd, w->buf + w->n, sizeof w->buf - w->n);
		if (r <= 0)
			break;
		w->n += (size_t)r;
	}
	close(fd);
}

/* Writes the profile to fd; false when the table could not be had. */
static bool __write_profile(int fd)
{
	size_t cap;
	struct prof_bucket *t = __aggregate(false, &cap);
	if (!t)
		return false;
	ZA_BULK static struct wbuf w;   /* prof_lock held */
	w.fd = fd;
	w.n = 0;
	wb_fmt(&w, "heap profile: %lu: %lu [%lu: %lu] @ heap_v2/%lu\n", (unsigned long)live_count,
	       (unsigned long)live_bytes, (unsigned long)live_count, (unsigned long)live_bytes,
	       (unsigned long)prof_rate);
	for (size_t i = 0; i < cap; i++) {
		const struct prof_bucket *b = &t[i];
		if (!b->rep)
			continue;
		wb_fmt(&w, "%lu: %lu [%lu: %lu] @", (unsigned long)b->count, (unsigned long)b->bytes,
		       (unsigned long)b->count, (unsigned long)b->bytes);
		for (uint32_t d = 0; d < b->rep->depth; d++)
			wb_fmt(&w, " %p", b->rep->pcs[d]);
		wb_fmt(&w, "\n");
	}
	wb_fmt(&w, "\nMAPPED_LIBRARIES:\n");
	copy_maps(&w);
	wb_flush(&w);
	za_os_unmap(t, cap * sizeof *t);
	return true;
}

static void format_path(char *out, size_t cap, const char *pattern, unsigned seq)
{
	size_t n = za_fmt_path(out, cap - 16, pattern);
	if (seq)
		za_fmt(out + n, cap - n, ".%u", seq);
}

static int dump_to(const char *path, bool wait)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (wait) {
		za_lock(&prof_lock);
	} else if (za_trylock(&prof_lock)) {
		close(fd);
		errno = EBUSY;
		return -1;
	}
	bool was_busy = prof_busy;
	prof_busy = true;
	bool ok = __write_profile(fd);
	prof_busy = was_busy;
	pthread_mutex_unlock(&prof_lock);
	close(fd);
	if (!ok)
		errno = ENOMEM;
	return ok ? 0 : -1;
}

ZA_EXPORT int za_prof_dump(const char *path)
{
	if (!path) {
		errno = EINVAL;
		return -1;
	}
	return dump_to(path, true);
}

/* SIGUSR2: a numbered profile beside the exit one. Skipped (with a line)
 * when the signal interrupted a thread that holds the profile's lock. */
static void on_sigusr2(int sig)
{
	(void)sig;
	int saved = errno;
	char path[4096];
	unsigned seq = atomic_fetch_add(&prof_signal_seq, 1) + 1;
	format_path(path, sizeof path, prof_path, seq);
	if (dump_to(path, false))
		za_dprintf(2, "zonealloc: SIGUSR2: heap profile %s not written (%s)\n", path,
			   strerrorname_np(errno));
	errno = saved;
}

void za_prof_start(size_t rate, const char *path, bool on_sigusr2_too, int report_fd)
{
	prof_rate = rate ? rate : 1;
	size_t n = strlen(path);
	if (n >= sizeof prof_path)
		n = sizeof prof_path - 1;
	memcpy(prof_path, path, n);
	prof_path[n] = 0;
	prof_report_fd = report_fd;
	za_unwind_load();   /* before the first sample: the loader allocates */
	atomic_store(&prof_on, true);
	za_tls.prof_left = ZA_PROF_ASK;   /* this thread draws at its next allocation */
	if (on_sigusr2_too) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_sigusr2;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR2, &sa, NULL);
	}
}

bool za_prof_active(void)
{
	return atomic_load_explicit(&prof_on, memory_order_relaxed);
}

/* The text summary: the call sites holding the most estimated live bytes. */
static void __write_top(int fd, const char *path)
{
	size_t cap;
	struct prof_bucket *t = __aggregate(true, &cap);
	double total = 0;
	for (size_t i = 0; t && i < cap; i++)
		total += t[i].estimate;
	za_dprintf(fd, "zonealloc heap profile: %lu live samples (one per %lu bytes on average), "
		       "about %lu KiB live in sampled sites; written to %s\n",
		   (unsigned long)live_count, (unsigned long)prof_rate,
		   (unsigned long)(total / 1024), path);
	for (int rank = 0; t && rank < 10; rank++) {
		struct prof_bucket *best = NULL;
		for (size_t i = 0; i < cap; i++)
			if (t[i].rep && t[i].count && (!best || t[i].estimate > best->estimate))
				best = &t[i];
		if (!best)
			break;
		void *pc = best->rep->pcs[0];
		Dl_info info;
		const char *obj = "?", *sym = NULL;
		uintptr_t off = 0;
		if (dladdr(pc, &info)) {
			obj = info.dli_fname ? info.dli_fname : "?";
			if (info.dli_sname) {
				sym = info.dli_sname;
				off = (uintptr_t)pc - (uintptr_t)info.dli_saddr;
			} else {
				off = (uintptr_t)pc - (uintptr_t)info.dli_fbase;
			}
		}
		/* Without a dynamic symbol (a static function, an executable
		 * without -rdynamic), the object and the offset addr2line takes. */
		za_dprintf(fd, "  %10lu KiB %3u%% %8lu samples  %p %s+0x%lx%s%s%s\n",
			   (unsigned long)(best->estimate / 1024),
			   (unsigned)(total > 0 ? best->estimate * 100 / total : 0),
			   (unsigned long)best->count, pc, sym ? sym : obj, (unsigned long)off,
			   sym ? " (" : "", sym ? obj : "", sym ? ")" : "");
		best->count = 0;
		best->estimate = -1;
	}
	if (t)
		za_os_unmap(t, cap * sizeof *t);
}

void za_prof_exit(void)
{
	if (!za_prof_active())
		return;
	char path[4096];
	format_path(path, sizeof path, prof_path, 0);
	prof_busy = true;
	int rc = dump_to(path, true);
	if (rc)
		za_dprintf(prof_report_fd >= 0 ? prof_report_fd : 2,
			   "zonealloc: heap profile %s not written (%s)\n", path,
			   strerrorname_np(errno));
	if (prof_report_fd >= 0) {
		za_lock(&prof_lock);
		__write_top(prof_report_fd, path);
		pthread_mutex_unlock(&prof_lock);
	}
}

void za_prof_stats_get(struct za_prof_stats *st)
{
	za_lock(&prof_lock);
	st->samples = samples_total;
	st->live_samples = live_count;
	st->live_bytes = live_bytes;
	st->rate = prof_rate;
	pthread_mutex_unlock(&prof_lock);
}

void za_prof_lock(void)
{
	za_lock(&prof_lock);
}

void za_prof_unlock(void)
{
	pthread_mutex_unlock(&prof_lock);
}

void za_prof_reset_child(void)
{
	pthread_mutex_init(&prof_lock, NULL);
}
