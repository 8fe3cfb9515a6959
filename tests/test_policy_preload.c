/*
 * The policy under the real, replaced malloc (linked with libzonealloc,
 * as LD_PRELOAD would give it), driven by the ZONEALLOC_* options that
 * the library reads when the process starts. With no argument the program
 * runs itself once per mode below, each with its own environment:
 *
 *   limit       ZONEALLOC_LIMIT=32M ZONEALLOC_STATS=1: malloc fails with
 *               ENOMEM and za_last_status() == LIMIT, the heap serves again
 *               after frees, and the exit report counts the failures.
 *   trim        1 GiB in mixed sizes freed, malloc_trim(0): RSS back within
 *               8 MiB of where it started.
 *   decay       ZONEALLOC_DECAY_MS=200: the same without a trim, while the
 *               program keeps allocating a little.
 *   background  ZONEALLOC_BACKGROUND=1 ZONEALLOC_DECAY_MS=200: the reclaimer
 *               starts, gives memory back while the program sleeps, works in
 *               a forked child (its own, started on demand) and stops at
 *               exit.
 *   calloc      calloc over released pages reads zero, with the default
 *   calloc_free MADV_DONTNEED and with ZONEALLOC_RECLAIM=free.
 */
#include <malloc.h>
#include <stdlib.h>

#include "tests/policy_test.h"

extern char **environ;

#define SLACK (8 * MiB)

/* ---- the modes, each in its own process ---- */

#define MAX_ALLOCS 40000
static struct pt_alloc allocs[MAX_ALLOCS];

static size_t warm_baseline(void)
{
	memset(allocs, 0, sizeof allocs);
	printf("%s", "");   /* stdio's buffers exist before the baseline */
	void *p = malloc(64), *q = malloc(100 * KiB);
	free(q);
	free(p);
	return rss_bytes();
}

static void free_all(size_t n)
{
	/* Every other one first, then the rest: frees out of order. */
	for (size_t i = 0; i < n; i += 2)
		free(allocs[i].p);
	for (size_t i = 1; i < n; i += 2)
		free(allocs[i].p);
	memset(allocs, 0, n * sizeof allocs[0]);
}

static int mode_limit(void)
{
	const size_t limit = 32 * MiB;
	struct za_stats s = pt_stats();
	CHECK_MSG(s.limit_bytes == limit, "limit from ZONEALLOC_LIMIT: %zu", s.limit_bytes);
	size_t n = 0;
	void *p;
	errno = 0;
	while (n < 1000 && (p = malloc(1 * MiB)) != NULL) {
		memset(p, 1, 1 * MiB);
		allocs[n++].p = p;
	}
	int e = errno;
	za_status st = za_last_status();
	CHECK_MSG(n >= 24 && n < 32, "%zu MiB fit under a 32 MiB limit", n);
	CHECK_MSG(e == ENOMEM && st == ZA_ENOMEM_LIMIT, "malloc failed with errno %d, %s", e,
		  za_status_str(st));
	errno = 0;
	CHECK(malloc(100 * MiB) == NULL && errno == ENOMEM && za_last_status() == ZA_ENOMEM_LIMIT);
	errno = 0;
	CHECK(calloc(1, 2 * MiB) == NULL && errno == ENOMEM);
	void *q = NULL;
	CHECK(posix_memalign(&q, 64 * KiB, 2 * MiB) == ENOMEM && q == NULL);
	CHECK(pt_stats().committed_bytes <= limit);
	CHECK_HEAP();

	free_all(n);
	void *big = malloc(8 * MiB);   /* a huge mapping, charged to the limit */
	CHECK(big != NULL);
	if (big)
		memset(big, 2, 8 * MiB);
	void *more = malloc(8 * MiB);
	CHECK(more != NULL);
	free(more);
	free(big);
	CHECK(pt_stats().enomem[ZA_ENOMEM_LIMIT] >= 4);
	CHECK_HEAP();
	return test_done("  limit");
}

static int mode_trim(void)
{
	size_t rss0 = warm_baseline();
	uint64_t t0 = mono_ms();
	size_t n = pt_alloc_mixed(malloc, allocs, MAX_ALLOCS, 1 * GiB, 15, true, 1);
	uint64_t t1 = mono_ms();
	size_t peak = rss_bytes();
	free_all(n);
	size_t after_free = rss_bytes();
	uint64_t t2 = mono_ms();
	malloc_trim(0);
	uint64_t t3 = mono_ms();
	size_t rss1 = rss_bytes();
	printf("    %zu mallocs, 1 GiB in %llu ms; RSS %zu KiB -> peak %zu MiB -> %zu MiB freed "
	       "-> %zu KiB after malloc_trim (%llu ms)\n",
	       n, (unsigned long long)(t1 - t0), rss0 / KiB, peak / MiB, after_free / MiB,
	       rss1 / KiB, (unsigned long long)(t3 - t2));
	CHECK(peak >= rss0 + 900 * MiB);
	CHECK_MSG(rss1 <= rss0 + SLACK, "RSS after malloc_trim %zu KiB, base %zu KiB", rss1 / KiB,
		  rss0 / KiB);
	CHECK_HEAP();
	return test_done("  trim");
}

static int mode_decay(void)
{
	const uint64_t decay = 200, slack_ms = 2000;
	size_t rss0 = warm_baseline();
	size_t n = pt_alloc_mixed(malloc, allocs, MAX_ALLOCS, 256 * MiB, 5, false, 2);
	size_t peak = rss_bytes();
	free_all(n);
	uint64_t t0 = mono_ms(), t = t0;
	size_t after_free = rss_bytes(), rss = after_free;
	unsigned rounds = 0;
	while (t - t0 < decay + slack_ms + 1000) {
		void *p = malloc(64 * KiB);
		CHECK(p != NULL);
		if (p)
			*(volatile char *)p = 1;
		free(p);
		rounds++;
		rss = rss_bytes();
		t = mono_ms();
		if (rss <= rss0 + SLACK)
			break;
		sleep_ms(20);
	}
	printf("    ZONEALLOC_DECAY_MS=200: RSS %zu MiB peak, %zu MiB freed, %zu KiB after %llu ms "
	       "(%u rounds), base %zu KiB\n",
	       peak / MiB, after_free / MiB, rss / KiB, (unsigned long long)(t - t0), rounds,
	       rss0 / KiB);
	CHECK_MSG(after_free >= rss0 + 200 * MiB, "RSS fell to %zu MiB on free", after_free / MiB);
	CHECK_MSG(rss <= rss0 + SLACK && t - t0 <= decay + slack_ms,
		  "RSS %zu KiB after %llu ms, base %zu KiB", rss / KiB, (unsigned long long)(t - t0),
		  rss0 / KiB);
	CHECK(pt_stats().decay_passes > 0);
	CHECK_HEAP();
	return test_done("  decay");
}

/* Polls RSS, reading /proc only (no allocation), until it is within
 * SLACK of `base` or `max_ms` pass; returns the time it took. */
static uint64_t idle_until_released(size_t base, uint64_t max_ms, size_t *rss)
{
	uint64_t t0 = mono_ms(), t = t0;
	while (t - t0 < max_ms) {
		*rss = rss_bytes();
		t = mono_ms();
		if (*rss <= base + SLACK)
			break;
		sleep_ms(10);
	}
	return t - t0;
}

static int mode_background(void)
{
	const uint64_t decay = 200, slack_ms = 2000;
	size_t rss0 = warm_baseline();
	sleep_ms(150);
	/* Started by the first allocation's slow path (the first zone). */
	CHECK_MSG(pt_stats().background_wakeups > 0, "the reclaimer never woke");

	size_t n = pt_alloc_mixed(malloc, allocs, MAX_ALLOCS, 256 * MiB, 5, false, 3);
	size_t peak = rss_bytes();
	free_all(n);
	size_t after_free = rss_bytes(), rss = after_free;
	uint64_t w0 = pt_stats().background_wakeups;
	uint64_t took = idle_until_released(rss0, decay + slack_ms + 1000, &rss);
	uint64_t w1 = pt_stats().background_wakeups;
	printf("    ZONEALLOC_BACKGROUND=1: RSS %zu MiB peak, %zu MiB freed, %zu KiB after %llu ms "
	       "idle (%llu wakeups), base %zu KiB\n",
	       peak / MiB, after_free / MiB, rss / KiB, (unsigned long long)took,
	       (unsigned long long)(w1 - w0), rss0 / KiB);
	CHECK_MSG(after_free >= rss0 + 150 * MiB, "RSS fell to %zu MiB on free", after_free / MiB);
	CHECK_MSG(rss <= rss0 + SLACK && took <= decay + slack_ms,
		  "RSS %zu KiB after %llu ms idle, base %zu KiB", rss / KiB,
		  (unsigned long long)took, rss0 / KiB);
	CHECK(w1 > w0);
	CHECK_HEAP();
	const size_t rss_idle = rss;

	/* A child of fork has no reclaimer thread until it needs one; then
	 * it has its own, which gives the child's memory back. */
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(20);
		size_t crss0 = rss_bytes();
		uint64_t cw0 = pt_stats().background_wakeups;
		size_t cn = pt_alloc_mixed(malloc, allocs, MAX_ALLOCS, 192 * MiB, 5, false, 4);
		free_all(cn);
		size_t crss;
		uint64_t ctook = idle_until_released(crss0, decay + slack_ms + 1000, &crss);
		uint64_t cw1 = pt_stats().background_wakeups;
		CHECK_MSG(crss <= crss0 + SLACK && ctook <= decay + slack_ms,
			  "child: RSS %zu KiB after %llu ms idle, base %zu KiB", crss / KiB,
			  (unsigned long long)ctook, crss0 / KiB);
		CHECK_MSG(cw1 > cw0, "child: its reclaimer never woke");
		void *p = malloc(3 * MiB);
		CHECK(p != NULL);
		free(p);
		malloc_trim(0);
		CHECK_HEAP();
		printf("    child: RSS back to %zu KiB after %llu ms idle (%llu wakeups)\n",
		       crss / KiB, (unsigned long long)ctook, (unsigned long long)(cw1 - cw0));
		/* exit(), not _exit(): the destructor stops the child's thread. */
		exit(test_done("  background child"));
	}
	CHECK(pid > 0);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);

	/* The parent's reclaimer still works after the fork: RSS goes back to
	 * where the first idle spell left it (the thread keeps a current slab
	 * per size class it used, with the pages it carved, while it lives). */
	uint64_t w2 = pt_stats().background_wakeups;
	size_t base2 = rss_idle > rss0 ? rss_idle : rss0;
	n = pt_alloc_mixed(malloc, allocs, MAX_ALLOCS, 64 * MiB, 5, false, 5);
	free_all(n);
	took = idle_until_released(base2, decay + slack_ms + 1000, &rss);
	CHECK_MSG(rss <= base2 + SLACK, "after fork: RSS %zu KiB after %llu ms (first idle: %zu KiB)",
		  rss / KiB, (unsigned long long)took, rss_idle / KiB);
	CHECK(pt_stats().background_wakeups > w2);
	/* Exit joins the thread (the library's destructor): the runner sees
	 * exit status 0 and no hang. */
	return test_done("  background");
}

static size_t calloc_after_release(size_t size)
{
	unsigned char *p = malloc(size);
	CHECK(p != NULL);
	if (!p)
		return 0;
	memset(p, 0xa5, size);
	free(p);
	malloc_trim(0);
	size_t before = rss_bytes();
	unsigned char *q = calloc(1, size);
	size_t grew = rss_bytes() - before;
	CHECK(q != NULL);
	if (q) {
		CHECK_MSG(pt_all_zero(q, size), "calloc(%zu) after release is not zero", size);
		free(q);
	}
	return grew;
}

static int mode_calloc(bool lazy)
{
	warm_baseline();
	static const size_t list[] = { 40 * KiB, 512 * KiB, 1 * MiB + 1, 4 * MiB, 9 * MiB };
	for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
		size_t grew = calloc_after_release(list[i]);
		/* MADV_DONTNEED: calloc writes nothing, no page is faulted in. */
		if (!lazy)
			CHECK_MSG(grew < list[i] / 2, "calloc(%zu) faulted in %zu KiB", list[i],
				  grew / KiB);
	}
	/* Dirty memory reused without a trim is cleared too. */
	for (int i = 0; i < 3; i++) {
		unsigned char *p = malloc(300 * KiB);
		memset(p, 0x3c, 300 * KiB);
		free(p);
		unsigned char *q = calloc(300, KiB);
		CHECK(q && pt_all_zero(q, 300 * KiB));
		free(q);
	}
	CHECK_HEAP();
	return test_done(lazy ? "  calloc (ZONEALLOC_RECLAIM=free)" : "  calloc");
}

/* ---- the runner ---- */

static char self[4096];

/* Runs this program in `mode` with `extra` added to the environment;
 * stderr goes to `err` (if not NULL). Returns the wait status. */
static int run_mode(const char *mode, const char *const *extra, char *err, size_t errcap)
{
	int fds[2] = { -1, -1 };
	if (err && pipe(fds))
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		static char *env[512];
		size_t n = 0;
		for (char **e = environ; *e && n < 400; e++)
			if (strncmp(*e, "ZONEALLOC_", 10))
				env[n++] = *e;
		for (; *extra; extra++)
			env[n++] = (char *)*extra;
		env[n] = NULL;
		if (err) {
			dup2(fds[1], 2);
			close(fds[0]);
			close(fds[1]);
		}
		alarm(30);
		char *argv[] = { self, (char *)mode, NULL };
		execve(self, argv, env);
		_exit(127);
	}
	if (err) {
		close(fds[1]);
		size_t len = 0;
		ssize_t r;
		while ((r = read(fds[0], err + len, errcap - 1 - len)) > 0 ||
		       (r < 0 && errno == EINTR))
			if (r > 0)
				len += (size_t)r;
		err[len] = 0;
		close(fds[0]);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static void expect_mode(const char *mode, const char *const *extra)
{
	uint64_t t0 = mono_ms();
	int status = run_mode(mode, extra, NULL, 0);
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	CHECK_MSG(ok, "mode %s: wait status %#x", mode, status);
	printf("  %-28s %s in %llu ms\n", mode, ok ? "passed" : "FAILED",
	       (unsigned long long)(mono_ms() - t0));
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		if (!strcmp(argv[1], "limit"))
			return mode_limit();
		if (!strcmp(argv[1], "trim"))
			return mode_trim();
		if (!strcmp(argv[1], "decay"))
			return mode_decay();
		if (!strcmp(argv[1], "background"))
			return mode_background();
		if (!strcmp(argv[1], "calloc"))
			return mode_calloc(false);
		if (!strcmp(argv[1], "calloc_free"))
			return mode_calloc(true);
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self[len] = 0;

	/* The limit, with the report at exit: it must count the failures. */
	static char report[1 << 16];
	const char *const limit_env[] = { "ZONEALLOC_LIMIT=32M", "ZONEALLOC_STATS=1", NULL };
	uint64_t t0 = mono_ms();
	int status = run_mode("limit", limit_env, report, sizeof report);
	bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	CHECK_MSG(ok, "mode limit: wait status %#x; stderr:\n%s", status, report);
	CHECK_MSG(strstr(report, "zonealloc report") && strstr(report, "of a 32768 KiB limit") &&
		  strstr(report, "failures: ") && strstr(report, "heap limit reached"),
		  "ZONEALLOC_STATS=1 report lacks the limit or its failures:\n%s", report);
	printf("  %-28s %s in %llu ms\n", "limit", ok ? "passed" : "FAILED",
	       (unsigned long long)(mono_ms() - t0));

	const char *const none[] = { NULL };
	const char *const decay_env[] = { "ZONEALLOC_DECAY_MS=200", NULL };
	const char *const bg_env[] = { "ZONEALLOC_BACKGROUND=1", "ZONEALLOC_DECAY_MS=200", NULL };
	const char *const free_env[] = { "ZONEALLOC_RECLAIM=free", NULL };
	expect_mode("trim", none);
	expect_mode("decay", decay_env);
	expect_mode("background", bg_env);
	expect_mode("calloc", none);
	expect_mode("calloc_free", free_env);
	return test_done("test_policy_preload");
}
