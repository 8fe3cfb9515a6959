/*
 * Helpers shared by the policy tests (issue 4): resident memory read from
 * /proc without allocating, a monotonic clock, a seeded generator, and a
 * runner that gives each case a fresh heap in a forked child.
 *
 * Every case runs in a child forked from a parent that has not touched
 * the heap, so limits, zones and counters start from nothing and one
 * case's memory never blurs another's RSS figures.
 */
#ifndef ZA_TEST_POLICY_TEST_H
#define ZA_TEST_POLICY_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zonealloc.h"
#include "tests/check.h"
#include "tests/rng.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* A call that must fail with status `want` in `st` (a block it returns
 * anyway is freed). */
#define CHECK_STATUS(call, st, want)                                                \
	do {                                                                        \
		st = ZA_OK;                                                         \
		void *p_ = (call);                                                  \
		CHECK_MSG(!p_ && st == (want), "%s: %p status %s, want %s", #call,   \
			  p_, za_status_str(st), za_status_str(want));               \
		if (p_)                                                             \
			za_free(p_);                                                \
	} while (0)

/* Reads /proc/self/statm field `field` (0: size, 1: resident) in bytes,
 * with open/read only: nothing here allocates. */
static inline size_t statm_field(int field)
{
	char buf[256];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	const char *s = buf;
	for (int i = 0; i < field; i++) {
		while (*s && *s != ' ')
			s++;
		while (*s == ' ')
			s++;
	}
	size_t v = 0;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (size_t)(*s - '0');
	return v * (size_t)sysconf(_SC_PAGESIZE);
}

#ifdef __SANITIZE_ADDRESS__
/*
 * Under ASan the resident set also holds ASan's shadow of every byte the
 * program touched, which the heap cannot give back (on some kernels a
 * read of the shadow of our memory makes it resident): the resident set
 * here is every mapping's but the shadow's (x86-64: 0x7fff8000 up to
 * 0x10007fff8000). Read with open/read only, in pieces.
 */
static inline size_t rss_bytes(void)
{
	int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return statm_field(1);
	static char buf[1 << 16];
	char line[512];
	size_t len = 0, total = 0;
	int shadow = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c != '\n') {
				if (len < sizeof line - 1)
					line[len++] = c;
				continue;
			}
			line[len] = 0;
			len = 0;
			unsigned long lo, hi;
			if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
				shadow = lo >= 0x7fff8000ul && hi <= 0x10007fff8000ul;
			else if (!shadow && !strncmp(line, "Rss:", 4))
				total += (size_t)strtoul(line + 4, NULL, 10) * 1024;
		}
	}
	close(fd);
	return total;
}
#else
static inline size_t rss_bytes(void)
{
	return statm_field(1);
}
#endif

static inline size_t vm_size_bytes(void)
{
	return statm_field(0);
}

static inline uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Uniform in [lo, hi]. */
static inline size_t pt_range(struct test_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)rng_below(r, hi - lo + 1);
}

struct pt_alloc {
	void *p;
	size_t size;
};

/*
 * Allocates about `total` bytes with `alloc_fn` into out[0 .. max):
 * `slab_pct` percent of them in slab objects (16 B .. 32 KiB), the rest in
 * page runs (32 KiB .. 4 MiB) and, if `huge`, 40% of it in huge mappings
 * (4 .. 24 MiB), interleaved at random; every page is written. Returns how
 * many allocations.
 */
static inline size_t pt_alloc_mixed(void *(*alloc_fn)(size_t), struct pt_alloc *out, size_t max,
				    size_t total, unsigned slab_pct, bool huge, uint64_t seed)
{
	struct test_rng r;
	rng_seed(&r, seed);
	size_t want[3], got[3] = { 0, 0, 0 }, n = 0;
	want[0] = total / 100 * slab_pct;
	want[2] = huge ? (total - want[0]) / 10 * 4 : 0;
	want[1] = total - want[0] - want[2];
	while (n < max) {
		size_t left = 0;
		for (int t = 0; t < 3; t++)
			left += want[t] > got[t] ? want[t] - got[t] : 0;
		if (!left)
			break;
		/* A tier with bytes still to go, chosen in proportion to them. */
		uint64_t pick = rng_below(&r, left);
		int tier = 0;
		for (; tier < 2; tier++) {
			size_t l = want[tier] > got[tier] ? want[tier] - got[tier] : 0;
			if (pick < l)
				break;
			pick -= l;
		}
		size_t size = tier == 0 ? pt_range(&r, 16, 32 * KiB)
			      : tier == 1 ? pt_range(&r, 32 * KiB + 1, 4 * MiB)
					  : pt_range(&r, 4 * MiB + 1, 24 * MiB);
		void *p = alloc_fn(size);
		CHECK_MSG(p != NULL, "allocating %zu bytes failed: %s", size,
			  za_status_str(za_last_status()));
		if (!p)
			break;
		memset(p, (int)(n & 0xff) | 1, size);
		out[n].p = p;
		out[n].size = size;
		n++;
		got[tier] += size;
	}
	return n;
}

static inline struct za_stats pt_stats(void)
{
	struct za_stats s;
	za_stats_get(&s);
	return s;
}

static inline bool pt_all_zero(const void *p, size_t bytes)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < bytes; i++)
		if (b[i])
			return false;
	return true;
}

/* Writes one byte in every page of [p, p+n) and the last byte. */
static inline void pt_touch(void *p, size_t n, unsigned char v)
{
	unsigned char *b = p;
	for (size_t i = 0; i < n; i += 4096)
		b[i] = v;
	if (n)
		b[n - 1] = v;
}

/*
 * Runs `fn` in a forked child and counts one check for its verdict: the
 * child exits 0 when none of its own checks failed. A case that dies or
 * hangs past `timeout_s` fails.
 */
static inline void run_case(const char *name, void (*fn)(void), unsigned timeout_s)
{
	fflush(NULL);
	uint64_t t0 = mono_ms();
	pid_t pid = fork();
	if (pid < 0) {
		CHECK_MSG(pid >= 0, "%s: fork: %s", name, strerror(errno));
		return;
	}
	if (pid == 0) {
		alarm(timeout_s);
		za_test_checks = za_test_failures = 0;   /* this case's own */
		fn();
		printf("  %-28s %d checks, %d failed\n", name, za_test_checks, za_test_failures);
		fflush(NULL);
		_exit(za_test_failures ? 1 : 0);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	CHECK_MSG(ok, "case %s: %s %d", name, WIFSIGNALED(status) ? "killed by signal" : "exit",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	printf("  %-28s %s in %llu ms\n", name, ok ? "passed" : "FAILED",
	       (unsigned long long)(mono_ms() - t0));
}

#endif
