/*
 * fuzz_misuse: every kind of misuse the allocator promises to catch —
 * double frees, interior and foreign pointers, wrong-order page frees,
 * sized frees with the wrong size — each run in a forked child. The child
 * must die by SIGABRT with the allocator's own one-line report on stderr;
 * surviving the misuse, or dying any other way (a crash elsewhere), aborts
 * the harness so the fuzzer records it.
 */
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz/harness.h"

const char *const fuzz_name = "fuzz_misuse";

static char static_buf[256];

void fuzz_init(void)
{
}

static size_t small_size(struct fuzz_in *in)
{
	return 1 + fuzz_u16(in) % 32768;
}

/* Runs in the child: commits the misuse chosen by the input. */
static void misuse(struct fuzz_in *in, unsigned kind)
{
	volatile size_t off;
	char stack_buf[64];
	void *volatile p;

	switch (kind) {
	case 0: /* double free of a slab object */
		p = za_malloc(small_size(in));
		za_free(p);
		za_free(p);
		break;
	case 1: /* double free of a page run */
		p = za_malloc(40000 + (size_t)fuzz_u16(in) * 16);
		za_free(p);
		za_free(p);
		break;
	case 2: /* double free of a huge allocation */
		p = za_malloc((8u << 20) + fuzz_u16(in));
		za_free(p);
		za_free(p);
		break;
	case 3: { /* interior pointer into a slab object */
		size_t n = small_size(in);
		char *q = za_malloc(n);
		size_t usable = za_malloc_usable_size(q);
		/* (guard mode's usable size is the size asked for: 1 can be) */
		off = 1 + fuzz_u16(in) % (usable > 1 ? usable - 1 : 1);
		za_free(q + off);
		break;
	}
	case 4: { /* interior pointer into a run */
		char *q = za_malloc(65536);
		off = 1 + fuzz_u16(in) % 65535;
		za_free(q + off);
		break;
	}
	case 5: { /* interior pointer into a huge allocation */
		char *q = za_malloc(6u << 20);
		off = 1 + fuzz_u32(in) % ((6u << 20) - 1);
		za_free(q + off);
		break;
	}
	case 6: { /* pointers that were never ours */
		uint8_t which = fuzz_u8(in) % 4;
		if (which == 0)
			p = stack_buf;
		else if (which == 1)
			p = static_buf + (fuzz_u8(in) & 0xf0);
		else if (which == 2)
			p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		else
			p = (void *)(uintptr_t)(((uint64_t)fuzz_u32(in) << 14) | 0x10);   /* below 2^46: never a zone */
		za_free(p);
		break;
	}
	case 7: { /* page block freed with the wrong order */
		unsigned order = fuzz_u8(in) % ZA_MAX_ORDER;
		unsigned wrong = (order + 1 + fuzz_u8(in) % (ZA_MAX_ORDER - 1)) % ZA_MAX_ORDER;
		za_status st;
		p = za_alloc_pages(order, 0, &st);
		za_free_pages(p, wrong);
		break;
	}
	case 8: { /* page block freed twice */
		unsigned order = fuzz_u8(in) % ZA_MAX_ORDER;
		za_status st;
		p = za_alloc_pages(order, 0, &st);
		za_free_pages(p, order);
		za_free_pages(p, order);
		break;
	}
	case 9: { /* sized free with a size larger than the allocation */
		size_t n = small_size(in);
		p = za_malloc(n);
		za_free_sized(p, za_malloc_usable_size(p) + 1 + fuzz_u8(in));
		break;
	}
	case 10: { /* exact run freed with the wrong page count */
		size_t n = 1 + fuzz_u16(in) % 1023;
		za_status st;
		p = za_alloc_pages_exact(n, 0, &st);
		za_free_pages_exact(p, n + 1);
		break;
	}
	default: /* realloc of a pointer that is not ours */
		p = za_realloc(stack_buf, 100);
		break;
	}
}

static void run_one(struct fuzz_in *in, unsigned kind)
{
	int fds[2];
	FUZZ_ASSERT(pipe(fds) == 0, "pipe");
	pid_t pid = fork();
	FUZZ_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		misuse(in, kind);
		_exit(3);   /* the misuse went unnoticed */
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	ssize_t r;
	while ((r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)r;
	buf[len] = 0;
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	FUZZ_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
		    "misuse %u: child %s %d, stderr: %s", kind,
		    WIFSIGNALED(status) ? "died by signal" : "exited with", WIFSIGNALED(status)
		    ? WTERMSIG(status) : WEXITSTATUS(status), buf);
	FUZZ_ASSERT(strncmp(buf, "zonealloc: ", 11) == 0,
		    "misuse %u: the abort did not come from the allocator's report: %s", kind, buf);
}

void fuzz_one(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, data + size };
	int ops = 0;
	while (fuzz_more(&in) && ops++ < 8) {
		unsigned kind = fuzz_u8(&in) % 12;
		struct fuzz_in child_in = in;
		run_one(&child_in, kind);
		in.p += in.end - in.p < 6 ? in.end - in.p : 6;   /* each op reads up to 6 bytes */
	}
	FUZZ_CHECK_END();
}
