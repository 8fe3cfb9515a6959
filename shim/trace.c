/*
 * Allocation traces: the recorder (format and hooks in trace.h).
 *
 * Each thread appends to a buffer of its own, so recording takes no
 * shared lock: a buffer's spin flag is contended only at exit and fork,
 * when it is written out from another thread. A full buffer is written
 * with one write(2) to a file opened O_APPEND, so blocks of different
 * threads never tear. Buffers outlive their threads: one whose thread
 * exited is taken by the next thread that starts, and any left holding
 * records are written at exit.
 */
#include "shim/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim/prof.h"
#include "slab/slab.h"

#define TBUF_BYTES (64u * 1024u)
#define TBUF_RECORDS ((TBUF_BYTES - 64u) / sizeof(struct za_trace_record))

struct tbuf {
	atomic_flag busy;           /* held while appending or writing out */
	_Atomic bool owned;         /* a live thread appends here */
	uint32_t n;
	uint64_t written;           /* records written out from here */
	struct tbuf *next;          /* every buffer ever made */
	struct za_trace_record rec[TBUF_RECORDS];
};
_Static_assert(sizeof(struct tbuf) <= TBUF_BYTES, "a trace buffer fits its mapping");

bool za_trace_on;

static int trace_fd = -1, report_fd = 2;
static const char *trace_pattern;
ZA_BULK static char trace_name[4096];
static uint64_t trace_t0;
static _Atomic uint32_t next_thread;
static _Atomic uint64_t dropped;
static _Atomic(struct tbuf *) buffers;
static bool exiting;
static pthread_key_t buf_key;
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread struct {
	struct tbuf *buf;
	uint32_t thread;
	bool inside;
} tt __attribute__((tls_model("initial-exec")));

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_lock(struct tbuf *b)
{
	while (atomic_flag_test_and_set_explicit(&b->busy, memory_order_acquire))
		sched_yield();
}

static void spin_unlock(struct tbuf *b)
{
	atomic_flag_clear_explicit(&b->busy, memory_order_release);
}

/* Writes out b's records; b is held. */
static void tbuf_write(struct tbuf *b)
{
	if (b->n && trace_fd >= 0) {
		za_os_write(trace_fd, (const char *)b->rec, b->n * sizeof b->rec[0]);
		b->written += b->n;
	}
	b->n = 0;
}

static void thread_exit(void *arg)
{
	struct tbuf *b = arg;
	spin_lock(b);
	tbuf_write(b);
	spin_unlock(b);
	atomic_store_explicit(&b->owned, false, memory_order_release);
	tt.buf = NULL;
}

/* A buffer for this thread: one an exited thread left, else a new one. */
static struct tbuf *tbuf_take(void)
{
	struct tbuf *b;
	for (b = atomic_load_explicit(&buffers, memory_order_acquire); b; b = b->next) {
		bool no = false;
		if (!atomic_load_explicit(&b->owned, memory_order_relaxed) &&
		    atomic_compare_exchange_strong(&b->owned, &no, true))
			break;
	}
	if (!b) {
		void *map;
		if (za_os_map(TBUF_BYTES, &map))
			return NULL;
		b = map;
		atomic_flag_clear(&b->busy);
		atomic_store(&b->owned, true);
		b->n = 0;
		b->written = 0;
		b->next = atomic_load(&buffers);
		while (!atomic_compare_exchange_weak(&buffers, &b->next, b))
			;
	}
	tt.buf = b;
	/* The key's destructor writes it out when the thread exits (it runs
	 * again if a later destructor records more). */
	pthread_setspecific(buf_key, b);
	return b;
}

bool za_trace_begin(struct za_trace_call *c)
{
	if (!za_trace_on || tt.inside)
		return false;
	tt.inside = true;
	c->t0 = now_ns();
	return true;
}

void za_trace_end(struct za_trace_call *c, enum za_trace_op op, const void *addr, size_t size,
		  uintptr_t old, size_t align, unsigned flags)
{
	int saved = errno;
	uint64_t t1 = now_ns();
	if (!tt.thread)
		tt.thread = atomic_fetch_add_explicit(&next_thread, 1, memory_order_relaxed) + 1;
	struct tbuf *b = tt.buf ? tt.buf : tbuf_take();
	if (unlikely(!b)) {
		atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
		tt.inside = false;
		errno = saved;
		return;
	}
	spin_lock(b);
	if (b->n == TBUF_RECORDS)
		tbuf_write(b);
	uint64_t dur = t1 - c->t0;
	b->rec[b->n++] = (struct za_trace_record){
		.t_ns = c->t0 - trace_t0,
		.dur_ns = dur > UINT32_MAX ? UINT32_MAX : (uint32_t)dur,
		.thread = tt.thread,
		.addr = (uintptr_t)addr,
		.size = size,
		.old = old,
		.op = (uint8_t)op,
		.align_log2 = align > 1 ? (uint8_t)(63 - __builtin_clzll(align)) : 0,
		.flags = (uint16_t)flags,
	};
	if (unlikely(exiting))
		tbuf_write(b);   /* calls after the exit's write-out */
	spin_unlock(b);
	tt.inside = false;
	errno = saved;
}

static bool pid_alive(pid_t pid)
{
	return pid > 0 && pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM);
}

static void read_comm(char *out, size_t cap)
{
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, cap - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 0)
		n = 0;
	while (n > 0 && out[n - 1] == '\n')
		n--;
	out[n] = 0;
}

/* Opens the file for this process: the pattern with %p expanded, or
 * NAME.PID when NAME is another live process's trace. */
static int trace_open(void)
{
	size_t len = za_fmt_path(trace_name, sizeof trace_name - 16, trace_pattern);
	int fd = open(trace_name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST) {
		struct za_trace_header h;
		int rfd = open(trace_name, O_RDONLY | O_CLOEXEC);
		ssize_t n = rfd >= 0 ? read(rfd, &h, sizeof h) : -1;
		if (rfd >= 0)
			close(rfd);
		if (n == (ssize_t)sizeof h && !memcmp(h.magic, ZA_TRACE_MAGIC, 8) &&
		    pid_alive((pid_t)h.pid))
			za_fmt(trace_name + len, sizeof trace_name - len, ".%d", (int)getpid());
		fd = open(trace_name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	}
	if (fd < 0) {
		za_dprintf(report_fd, "zonealloc: ZONEALLOC_TRACE: cannot write %s (%s); not tracing\n",
			   trace_name, strerrorname_np(errno));
		return -1;
	}
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	struct za_trace_header h = {
		.magic = ZA_TRACE_MAGIC,
		.version = ZA_TRACE_VERSION,
		.record_size = sizeof(struct za_trace_record),
		.pid = (uint32_t)getpid(),
		.ppid = (uint32_t)getppid(),
		.realtime_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec,
	};
	read_comm(h.comm, sizeof h.comm);
	za_os_write(fd, (const char *)&h, sizeof h);
	trace_t0 = now_ns();
	return fd;
}

void za_trace_start(const char *path, int fd)
{
	report_fd = fd;
	trace_pattern = path;
	if (pthread_key_create(&buf_key, thread_exit))
		return;
	trace_fd = trace_open();
	if (trace_fd < 0)
		return;
	/* Every allocation now takes the profiler's call, which records it
	 * (prof.c), and every free the call its zone's traced tag leads to. */
	za_region_retag_zones(ZA_REGION_TAG_TRACED);
	za_tls.prof_left = ZA_PROF_ASK;
	__atomic_store_n(&za_trace_on, true, __ATOMIC_RELEASE);
}

void za_trace_exit(void)
{
	if (!za_trace_on || trace_fd < 0)
		return;
	za_lock(&trace_lock);
	exiting = true;
	uint64_t n = 0;
	for (struct tbuf *b = atomic_load(&buffers); b; b = b->next) {
		spin_lock(b);
		tbuf_write(b);
		n += b->written;
		spin_unlock(b);
	}
	pthread_mutex_unlock(&trace_lock);
	uint64_t lost = atomic_load(&dropped);
	za_dprintf(report_fd, "zonealloc: trace: %llu calls of %u threads recorded into %s%s",
		   (unsigned long long)n, atomic_load(&next_thread), trace_name,
		   lost ? "" : "\n");
	if (lost)
		za_dprintf(report_fd, " (%llu not: no memory for a buffer)\n",
			   (unsigned long long)lost);
}

/* fork: no buffer may be half-written when the child copies it. */
void za_trace_lock(void)
{
	if (!za_trace_on)
		return;
	za_lock(&trace_lock);
	for (struct tbuf *b = atomic_load(&buffers); b; b = b->next)
		spin_lock(b);
}

void za_trace_unlock(void)
{
	if (!za_trace_on)
		return;
	for (struct tbuf *b = atomic_load(&buffers); b; b = b->next)
		spin_unlock(b);
	pthread_mutex_unlock(&trace_lock);
}

void za_trace_reset_child(void)
{
	if (!za_trace_on)
		return;
	/* The parent writes its own records; the other threads are gone. */
	for (struct tbuf *b = atomic_load(&buffers); b; b = b->next) {
		b->n = 0;
		b->written = 0;
		if (b != tt.buf)
			atomic_store(&b->owned, false);
		spin_unlock(b);
	}
	pthread_mutex_init(&trace_lock, NULL);
	atomic_store(&dropped, 0);
	close(trace_fd);
	trace_fd = trace_open();
	if (trace_fd < 0)
		__atomic_store_n(&za_trace_on, false, __ATOMIC_RELEASE);
}
