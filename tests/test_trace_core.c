/*
 * The trace recorder in-process (shim/trace.c), so that the sanitizer
 * build tests it too: calls of every kind through the za_* API on two
 * threads, then the file read back record by record. The numbers of
 * records per call, their sizes, results and pairing (every free names a
 * block an earlier record handed out, after it was handed out) must be
 * what the calls were; calls made inside a recorded call are not
 * recorded; errno is kept. tests/test_trace.sh checks the preloaded whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zonealloc.h"
#include "shim/trace.h"
#include "tests/check.h"

static void *handed[64];

static void *other_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 64; i++)   /* frees of the main thread's blocks */
		za_free(handed[i]);
	return NULL;
}

int main(void)
{
	char path[] = "/tmp/za-trace-core-XXXXXX";
	int tmpfd = mkstemp(path);
	CHECK(tmpfd >= 0);
	close(tmpfd);
	unlink(path);   /* the recorder creates it */
	za_trace_start(path, 2);
	CHECK(za_trace_on);

	void *a = za_malloc(100);                       /* 1 malloc */
	void *b = za_calloc(10, 30);                    /* 1 calloc (300) */
	void *c = za_realloc(a, 5000);                  /* 1 realloc */
	void *d = NULL;
	CHECK(za_posix_memalign(&d, 256, 700) == 0);    /* 1 memalign */
	void *e = za_aligned_alloc(4096, 8192);         /* 1 memalign */
	za_status st;
	void *f = za_alloc(1000, 64, ZA_F_ZERO, &st);   /* 1 za_alloc */
	void *g = za_alloc_pages(2, ZA_F_NONE, &st);    /* 1 za_alloc_pages */
	void *h = za_malloc(3 << 20);                   /* 1 malloc (huge) */
	errno = 1234;
	za_free_sized(b, 300);                          /* 1 free_sized */
	CHECK_MSG(errno == 1234, "errno %d after a recorded free", errno);
	za_free(c);
	za_free(d);
	za_free(e);
	za_free(f);
	za_free(h);                                     /* 5 free */
	za_free_pages(g, 2);                            /* 1 za_free_pages: 79 on thread 1 */
	for (int i = 0; i < 64; i++)
		handed[i] = za_malloc(48);              /* 64 malloc */
	pthread_t t;
	pthread_create(&t, NULL, other_thread, NULL);   /* 64 free, thread 2 */
	pthread_join(t, NULL);
	za_trace_exit();

	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	struct stat sb;
	CHECK(fstat(fd, &sb) == 0);
	size_t n = ((size_t)sb.st_size - sizeof(struct za_trace_header)) / sizeof(struct za_trace_record);
	CHECK_MSG((size_t)sb.st_size == sizeof(struct za_trace_header) +
			  n * sizeof(struct za_trace_record), "file of %lld bytes",
		  (long long)sb.st_size);
	static char buf[1 << 20];
	CHECK((size_t)sb.st_size <= sizeof buf);
	CHECK(read(fd, buf, (size_t)sb.st_size) == sb.st_size);
	close(fd);
	unlink(path);
	struct za_trace_header hd;
	memcpy(&hd, buf, sizeof hd);
	CHECK(!memcmp(hd.magic, ZA_TRACE_MAGIC, 8) && hd.version == ZA_TRACE_VERSION &&
	      hd.record_size == sizeof(struct za_trace_record) && hd.pid == (uint32_t)getpid());

	/* pthread_create may allocate through the za_* API only if it is the
	 * program's malloc; here it is not, so the counts are exact. */
	unsigned count[16] = { 0 }, thread2 = 0;
	const struct za_trace_record *r = (const void *)(buf + sizeof hd);
	for (size_t i = 0; i < n; i++) {
		CHECK(r[i].op >= 1 && r[i].op <= 9);
		count[r[i].op < 16 ? r[i].op : 0]++;
		thread2 += r[i].thread == 2;
		if (r[i].op == ZA_TOP_FREE || r[i].op == ZA_TOP_FREE_SIZED ||
		    r[i].op == ZA_TOP_FREE_PAGES) {
			/* the block was handed out by an earlier record, which
			 * returned before this free began */
			bool found = false;
			for (size_t j = 0; j < n && !found; j++)
				found = r[j].op != ZA_TOP_FREE && r[j].op != ZA_TOP_FREE_SIZED &&
					r[j].op != ZA_TOP_FREE_PAGES && r[j].addr == r[i].addr &&
					r[j].t_ns + r[j].dur_ns <= r[i].t_ns;
			CHECK_MSG(found, "record %zu frees %#llx, never handed out before", i,
				  (unsigned long long)r[i].addr);
		}
	}
	CHECK_MSG(n == 143, "%zu records, want 143", n);
	CHECK_MSG(count[ZA_TOP_MALLOC] == 66 && count[ZA_TOP_CALLOC] == 1 &&
			  count[ZA_TOP_REALLOC] == 1 && count[ZA_TOP_MEMALIGN] == 2 &&
			  count[ZA_TOP_ZA_ALLOC] == 1 && count[ZA_TOP_ALLOC_PAGES] == 1 &&
			  count[ZA_TOP_FREE] == 69 && count[ZA_TOP_FREE_SIZED] == 1 &&
			  count[ZA_TOP_FREE_PAGES] == 1,
		  "malloc %u calloc %u realloc %u memalign %u za_alloc %u pages %u free %u "
		  "free_sized %u free_pages %u",
		  count[1], count[2], count[3], count[4], count[7], count[8], count[5], count[6],
		  count[9]);
	CHECK_MSG(thread2 == 64, "%u records of thread 2", thread2);
	/* The details of the main thread's first calls (thread 2's buffer was
	 * written when it exited, before the main thread's: the file is in
	 * blocks, each thread's in its order). */
	static struct za_trace_record m[256];
	size_t nm = 0;
	for (size_t i = 0; i < n && nm < 256; i++)
		if (r[i].thread == 1)
			m[nm++] = r[i];
	CHECK(nm == 143 - 64);
	r = m;
	CHECK(r[0].op == ZA_TOP_MALLOC && r[0].size == 100 && r[0].addr == (uintptr_t)a &&
	      r[0].thread == 1);
	CHECK(r[1].op == ZA_TOP_CALLOC && r[1].size == 300 && r[1].addr == (uintptr_t)b);
	CHECK(r[2].op == ZA_TOP_REALLOC && r[2].old == (uintptr_t)a && r[2].addr == (uintptr_t)c &&
	      r[2].size == 5000);
	CHECK(r[3].op == ZA_TOP_MEMALIGN && r[3].align_log2 == 8 && r[3].size == 700);
	CHECK(r[5].op == ZA_TOP_ZA_ALLOC && r[5].old == ZA_F_ZERO && r[5].align_log2 == 6);
	CHECK(r[6].op == ZA_TOP_ALLOC_PAGES && r[6].size == 4 * 4096);
	CHECK(r[8].op == ZA_TOP_FREE_SIZED && r[8].size == 300 && r[8].addr == (uintptr_t)b);
	for (size_t i = 1; i < nm; i++)
		CHECK(r[i].t_ns >= r[i - 1].t_ns);
	CHECK(za_buddy_check(NULL) == 0);
	return test_done("test_trace_core");
}
