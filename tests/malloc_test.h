/*
 * Helpers shared by the malloc-family tests: a seeded generator, byte
 * patterns, the pages the heap holds, and a runner for death tests (a
 * forked child that must die of a signal with one exact message).
 *
 * The tests come in two builds: with TEST_NAMES they call the exported
 * glibc names (linked against libzonealloc.so, which replaces malloc for
 * the whole process); without it they call the za_* functions of
 * libza_core, which leaves the process's malloc alone and so also runs
 * under ASan. F(malloc) names the function of the build.
 */
#ifndef ZA_TEST_MALLOC_TEST_H
#define ZA_TEST_MALLOC_TEST_H

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zonealloc.h"
#include "tests/check.h"
#include "tests/rng.h"

#ifdef TEST_NAMES
#define F(name) name
#else
#define F(name) za_##name
#endif

/* Hides a value from the optimizer: no folding of malloc(SIZE_MAX), no
 * "free of a non-heap object" reasoning. */
static inline size_t opaque_size(size_t v)
{
	volatile size_t x = v;
	return x;
}

static inline void *opaque_ptr(void *p)
{
	void *volatile x = p;
	return x;
}

static inline unsigned char mt_byte(uint64_t seed, size_t i)
{
	return (unsigned char)(seed ^ (i * 0x9d) ^ (i >> 8) ^ (i >> 16));
}

/* Every byte of [p, p+n). */
static inline void fill_bytes(void *p, size_t n, uint64_t seed)
{
	unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = mt_byte(seed, i);
}

/* Index of the first wrong byte, or n when all hold. */
static inline size_t check_bytes(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != mt_byte(seed, i))
			return i;
	return n;
}

/* Pages held in allocated blocks (runs, slabs, page blocks): what the
 * heap has committed to callers, caches not counted. */
static inline size_t pages_used(void)
{
	struct za_stats s;
	za_stats_get(&s);
	return s.pages_total - s.pages_free - s.pages_cached;
}

/*
 * Death tests. `expect` is the exact first line the child must write to
 * stderr, where '#' stands for one or more decimal digits (zone indexes,
 * orders: facts the test cannot know in advance). The child writes its
 * expectation into shared memory, since only it knows the addresses.
 */
#define DEATH_EXPECT_MAX 512

static inline bool line_matches(const char *line, const char *pat)
{
	while (*pat) {
		if (*pat == '~') {   /* a pointer printed with %p */
			if (line[0] != '0' || line[1] != 'x' || !isxdigit((unsigned char)line[2]))
				return false;
			line += 2;
			while (isxdigit((unsigned char)*line))
				line++;
			pat++;
			continue;
		}
		if (*pat == '#') {
			if (*line < '0' || *line > '9')
				return false;
			while (*line >= '0' && *line <= '9')
				line++;
			pat++;
			continue;
		}
		if (*line != *pat)
			return false;
		line++;
		pat++;
	}
	return *line == '\0';
}

/*
 * Runs fn in a forked child whose stderr is captured. The child must die
 * of `sig` after writing, as its first line, what fn put in `expect`
 * (shared memory). Prints the line; returns what the child wrote after
 * it (a backtrace), valid until the next run.
 */
static inline const char *run_death_sig(const char *name, void (*fn)(void), int sig,
					char *expect)
{
	int pfd[2];
	if (pipe(pfd)) {
		CHECK(!"pipe");
		return "";
	}
	memset(expect, 0, DEATH_EXPECT_MAX);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		dup2(pfd[1], 2);
		close(pfd[1]);
		alarm(30);
		fn();
		_exit(0);   /* survived the misuse: the parent reports it */
	}
	close(pfd[1]);
	static char out[64 * 1024];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof out - 1 && (n = read(pfd[0], out + len, sizeof out - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
	}
	out[len] = '\0';
	close(pfd[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == sig,
		  "%s: child %s %d (wanted signal %d), stderr: %s", name,
		  WIFSIGNALED(status) ? "died of signal" : "exited with",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), sig, out);
	CHECK_MSG(expect[0] && line_matches(out, expect), "%s:\n  got    \"%s\"\n  wanted \"%s\"",
		  name, out, expect);
	printf("  %-28s %s\n", name, out);
	return nl ? nl + 1 : "";
}

#endif
