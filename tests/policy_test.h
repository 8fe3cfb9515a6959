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
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zonealloc.h"
#include "tests/check.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

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

static inline size_t rss_bytes(void)
{
	return statm_field(1);
}

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

/* xorshift64*: deterministic for a given seed. */
struct pt_rng {
	uint64_t s;
};

static inline void pt_seed(struct pt_rng *r, uint64_t seed)
{
	r->s = seed * 0x9e3779b97f4a7c15ULL + 0x2545f4914f6cdd1dULL;
	if (!r->s)
		r->s = 1;
}

static inline uint64_t pt_next(struct pt_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n). */
static inline uint64_t pt_below(struct pt_rng *r, uint64_t n)
{
	return (pt_next(r) >> 11) % n;
}

/* Uniform in [lo, hi]. */
static inline size_t pt_range(struct pt_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)pt_below(r, hi - lo + 1);
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
