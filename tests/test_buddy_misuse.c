/*
 * Misuse of the page API: each case runs in a forked child, which must die
 * by SIGABRT after printing the expected diagnosis on stderr (captured
 * through a pipe). The parent holds the blocks the children misuse and
 * checks after each case that its own heap and blocks are untouched.
 * Pointers go through volatile variables so no call can be optimized out.
 */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buddy/buddy.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

/* Blocks the parent holds; children inherit them. */
static void *blk0;        /* order 0 (from the per-thread cache) */
static void *blk3;        /* order 3 */
static void *pair5[2];    /* two order-5 buddies: freeing one cannot merge */
static void *blk5;        /* order 5, its (upper) buddy free: freeing it merges */
static void *run7;        /* exact run of 7 pages */
static char static_buf[2 * 4096];

static void free_pages_v(void *p, unsigned order)
{
	void *volatile vp = p;
	volatile unsigned vo = order;
	za_free_pages(vp, vo);
}

static void free_exact_v(void *p, size_t n)
{
	void *volatile vp = p;
	volatile size_t vn = n;
	za_free_pages_exact(vp, vn);
}

static void free_stack(void)
{
	char buf[64];
	buf[0] = 1;
	free_pages_v(buf, 0);
	__asm__ volatile("" : : "r"(buf) : "memory");
}

static void free_static(void) { free_pages_v(static_buf + 4096 - ((uintptr_t)static_buf & 4095), 0); }

static void free_malloced(void)
{
	void *volatile m = malloc(100);
	free_pages_v(m, 0);
}

static void free_big_malloced(void)
{
	/* glibc serves this with mmap: page aligned memory that is not ours. */
	char *volatile m = malloc(1 << 20);
	free_pages_v(m + 4096 - ((uintptr_t)m & 4095), 0);
}

static void exact_stack(void)
{
	char buf[64];
	buf[0] = 1;
	free_exact_v(buf, 1);
	__asm__ volatile("" : : "r"(buf) : "memory");
}

static void interior(void) { free_pages_v((char *)blk5 + 100, 5); }
static void interior_exact(void) { free_exact_v((char *)run7 + 8, 7); }
static void tail_page(void) { free_pages_v((char *)blk3 + ZA_PAGE_SIZE, 0); }
static void tail_page_order3(void) { free_pages_v((char *)blk3 + 4 * ZA_PAGE_SIZE, 3); }

static void double_free0(void)
{
	free_pages_v(blk0, 0);
	free_pages_v(blk0, 0);
}

static void double_free5_merged(void)
{
	free_pages_v(blk5, 5);
	free_pages_v(blk5, 5);
}

static void double_free5_listed(void)
{
	free_pages_v(pair5[0], 5);
	free_pages_v(pair5[0], 5);
}

/* The upper buddy merges into the lower one: its head page becomes a
 * tail page of the merged free block. */
static void double_free5_upper(void)
{
	free_pages_v(pair5[0], 5);
	free_pages_v(pair5[1], 5);
	free_pages_v(pair5[1], 5);
}

static void double_free_exact(void)
{
	free_exact_v(run7, 7);
	free_exact_v(run7, 7);
}

static void wrong_order_low(void) { free_pages_v(blk5, 4); }
static void wrong_order_high(void) { free_pages_v(blk5, 6); }
static void order_out_of_range(void) { free_pages_v(blk5, ZA_MAX_ORDER); }
static void run_as_block(void) { free_pages_v(run7, 3); }
static void block_as_run(void) { free_exact_v(blk3, 8); }
static void run_wrong_count(void) { free_exact_v(run7, 6); }
static void run_zero_count(void) { free_exact_v(run7, 0); }
static void run_huge_count(void) { free_exact_v(run7, ZA_MAX_BLOCK_PAGES + 1); }
static void never_allocated(void)
{
	/* A page inside blk5's free buddy, never handed out. */
	struct za_zone *z = za_zone_of(blk5);
	uint32_t pfn = (za_pfn_of(z, blk5) ^ 32) + 1;
	free_pages_v(za_page_addr(z, pfn), 0);
}
static void no_misuse(void) { }

/* Runs fn in a child; returns the child's stderr in buf. */
static int run_child(void (*fn)(void), char *buf, size_t cap)
{
	int fds[2];
	if (pipe(fds))
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no_core);
		close(fds[0]);
		dup2(fds[1], 2);
		close(fds[1]);
		fn();
		_exit(0);   /* the misuse went unnoticed */
	}
	close(fds[1]);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fds[0], buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap - 1) {   /* keep the first part, drain the rest */
			char sink[256];
			while (read(fds[0], sink, sizeof sink) > 0)
				;
			break;
		}
	}
	buf[len] = '\0';
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

/* The parent's blocks are as they were, and its heap is sound. */
static void parent_intact(const char *name)
{
	struct za_check_result r;
	int rc = za_buddy_check(&r);
	CHECK_MSG(rc == 0, "%s: parent heap broken: zone %d pfn %lu: %s", name, r.zone,
		  (unsigned long)r.pfn, r.what);
	CHECK_MSG(pattern_verify(blk0, 1, 10) == 1 && pattern_verify(blk3, 8, 13) == 8 &&
			  pattern_verify(blk5, 32, 15) == 32 && pattern_verify(run7, 7, 17) == 7 &&
			  pattern_verify(pair5[0], 32, 20) == 32,
		  "%s: parent blocks changed", name);
}

static void expect_abort(const char *name, void (*fn)(void), const char *msg1, const char *msg2)
{
	char out[8192];
	int status = run_child(fn, out, sizeof out);
	CHECK_MSG(status != -1, "%s: fork failed", name);
	bool aborted = status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
	CHECK_MSG(aborted, "%s: child %s %d, expected SIGABRT", name,
		  status != -1 && WIFSIGNALED(status) ? "died by signal" : "exited with",
		  status == -1 ? -1 : WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	bool said = strncmp(out, "zonealloc: ", 11) == 0 && strstr(out, msg1) &&
		    (!msg2 || strstr(out, msg2));
	CHECK_MSG(said, "%s: stderr was \"%.400s\", expected \"%s\"%s%s", name, out, msg1,
		  msg2 ? " and " : "", msg2 ? msg2 : "");
	parent_intact(name);
}

int main(void)
{
	blk0 = za_alloc_pages(0, ZA_F_NONE, NULL);
	blk3 = za_alloc_pages(3, ZA_F_NONE, NULL);
	run7 = za_alloc_pages_exact(7, ZA_F_NONE, NULL);
	/* Order-5 blocks until two are buddies and a later one is a lower
	 * half whose buddy is free (splits hand out lower halves first). */
	void *o5[8];
	unsigned n5 = 0;
	while (n5 < 8 && (!pair5[0] || !blk5)) {
		void *p = za_alloc_pages(5, ZA_F_NONE, NULL);
		CHECK(p != NULL);
		if (!p)
			break;
		o5[n5++] = p;
		struct za_zone *z = za_zone_of(p);
		uint32_t pfn = za_pfn_of(z, p);
		for (unsigned i = 0; i + 1 < n5 && !pair5[0]; i++)
			if (za_zone_of(o5[i]) == z && za_pfn_of(z, o5[i]) == (pfn ^ 32) &&
			    (pfn & 32)) {
				pair5[0] = o5[i];
				pair5[1] = p;
			}
		if (pair5[0] && !(pfn & 32) && za_page_at(z, pfn ^ 32)->state == ZA_PG_FREE &&
		    za_page_at(z, pfn ^ 32)->order == 5)
			blk5 = p;
	}
	CHECK(blk0 && blk3 && blk5 && pair5[0] && pair5[1] && run7);
	if (!blk0 || !blk3 || !blk5 || !pair5[0] || !pair5[1] || !run7)
		return test_done("buddy_misuse");
	pattern_fill(blk0, 1, 10);
	pattern_fill(blk3, 8, 13);
	pattern_fill(blk5, 32, 15);
	pattern_fill(run7, 7, 17);
	pattern_fill(pair5[0], 32, 20);
	parent_intact("setup");

	/* The harness itself: a child that misuses nothing exits 0. */
	char out[256];
	int status = run_child(no_misuse, out, sizeof out);
	CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && out[0] == '\0');

	expect_abort("stack pointer", free_stack, "za_free_pages(", "pointer not owned by any zone");
	expect_abort("static pointer", free_static, "za_free_pages(",
		     "pointer not owned by any zone");
	expect_abort("malloc pointer", free_malloced, "za_free_pages(",
		     "pointer not owned by any zone");
	expect_abort("mmap'd malloc pointer", free_big_malloced, "za_free_pages(",
		     "pointer not owned by any zone");
	expect_abort("exact: stack pointer", exact_stack, "za_free_pages_exact(",
		     "pointer not owned by any zone");

	expect_abort("interior pointer", interior, "not page aligned (interior pointer)",
		     "is an allocated page block (order 5");
	expect_abort("exact: interior pointer", interior_exact, "za_free_pages_exact(",
		     "not page aligned (interior pointer)");
	expect_abort("tail page", tail_page, "not an allocated block",
		     "inside a block (not a block head)");
	expect_abort("tail page, order 3", tail_page_order3, "inside a block (not a block head)",
		     "an allocated page block (order 3)");

	expect_abort("double free, order 0", double_free0, "not an allocated block",
		     "free in a per-thread cache (double free)");
	expect_abort("double free, order 5 (listed)", double_free5_listed,
		     "not an allocated block", "is free (double free)");
	expect_abort("double free, order 5 (merged)", double_free5_merged,
		     "not an allocated block", "double free");
	expect_abort("double free, order 5 (upper buddy merged)", double_free5_upper,
		     "not an allocated block", "is free (double free): inside the free block");
	expect_abort("double free, exact run", double_free_exact, "double free",
		     "is a freed run in a per-thread cache");
	expect_abort("never allocated", never_allocated, "not an allocated block",
		     "is free (not allocated, or freed long ago): inside the free block");

	expect_abort("wrong order (low)", wrong_order_low, "wrong order", "expected order 4");
	expect_abort("wrong order (high)", wrong_order_high, "wrong order", "expected order 6");
	expect_abort("order out of range", order_out_of_range, "order out of range", NULL);
	expect_abort("za_free_pages on a run", run_as_block, "not an allocated block",
		     "an allocated exact run");
	expect_abort("za_free_pages_exact on a block", block_as_run,
		     "not an allocated exact run", "an allocated page block");
	expect_abort("run page count", run_wrong_count, "run has 7 pages, caller says 6", NULL);
	expect_abort("run page count 0", run_zero_count, "0 pages is not a run size", NULL);
	expect_abort("run page count too big", run_huge_count, "1025 pages is not a run size",
		     NULL);

	/* The parent frees everything properly; the heap coalesces. */
	za_free_pages(blk0, 0);
	za_free_pages(blk3, 3);
	for (unsigned i = 0; i < n5; i++)
		za_free_pages(o5[i], 5);
	za_free_pages_exact(run7, 7);
	za_drain_caches();
	CHECK_HEAP();
	CHECK(first_uncoalesced_zone() < 0);
	CHECK(pages_in_use() == 0);
	return test_done("buddy_misuse");
}
