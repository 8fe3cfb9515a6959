/*
 * A program linked against the static library libzonealloc.a. It must get
 * zonealloc for every allocation: its own malloc calls, glibc's (strdup,
 * stdio, getline), and those of other threads; and malloc_trim, mallinfo,
 * mallinfo2, mallopt and malloc_stats must link and give zonealloc's
 * answers. Built twice: a dynamic executable with the archive linked in
 * (test_static_link), and a fully static one (test_static_full) where
 * pulling glibc's malloc in beside ours would fail the link with duplicate
 * symbols.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#include "tests/malloc_test.h"

#define MiB ((size_t)1 << 20)

/* Ours, or za_malloc_usable_size aborts with "not allocated by zonealloc". */
static bool ours(void *p)
{
	return p && za_malloc_usable_size(p) == malloc_usable_size(p);
}

static void *thread_allocs(void *arg)
{
	(void)arg;
	void *p = malloc(100);
	bool ok = ours(p) && malloc_usable_size(p) == 112;
	free(p);
	return ok ? p : NULL;
}

int main(void)
{
	struct za_stats st;
	za_stats_get(&st);
	/* Before main, glibc and the constructors may have allocated: if they
	 * did, it was from our zones. */
	size_t zones0 = st.zones;

	void *p = malloc(opaque_size(100));
	CHECK(p != NULL);
	/* glibc would say 104 for malloc(100); zonealloc's class is 112. */
	CHECK(malloc_usable_size(p) == 112);
	CHECK(za_malloc_usable_size(p) == 112);
	za_stats_get(&st);
	CHECK(st.zones >= 1 && st.zones >= zones0);
	free(p);

	/* Every tier, and the aligned and zeroing calls. */
	void *run = malloc(opaque_size(100 * 1024)), *huge = malloc(opaque_size(6 * MiB));
	void *al = aligned_alloc(4096, 100), *c = calloc(10, 10), *m = memalign(64, 10);
	void *pm = NULL;
	CHECK(posix_memalign(&pm, 256, 300) == 0);
	CHECK(ours(run) && malloc_usable_size(run) == 100 * 1024);
	CHECK(ours(huge) && malloc_usable_size(huge) == 6 * MiB);
	CHECK(ours(al) && ours(c) && ours(m) && ours(pm));
	run = realloc(run, opaque_size(200 * 1024));
	CHECK(ours(run) && malloc_usable_size(run) == 200 * 1024);

	/* glibc's own allocations come from us. */
	char *dup = strdup("static");
	CHECK(ours(dup) && malloc_usable_size(dup) == 16);
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f != NULL);
	char *line = NULL;
	size_t cap = 0;
	if (f) {
		CHECK(getline(&line, &cap, f) > 0);
		CHECK(ours(line));
		fclose(f);
	}
	free(line);
	free(dup);

	/* Another thread's allocations too. */
	pthread_t t;
	void *res = NULL;
	CHECK(pthread_create(&t, NULL, thread_allocs, NULL) == 0);
	pthread_join(t, &res);
	CHECK(res != NULL);

	/* The glibc extras answer with zonealloc's numbers. */
	za_stats_get(&st);
	struct mallinfo2 mi = mallinfo2();
	CHECK(mi.arena == st.zones * 64 * MiB);
	CHECK(mi.hblks == 1 && mi.hblkhd == 6 * MiB);
	CHECK(mi.fordblks == (st.pages_free + st.pages_cached) * ZA_PAGE_SIZE);
	struct mallinfo mi1 = mallinfo();
	CHECK((size_t)mi1.arena == mi.arena && mi1.hblks == 1);
	CHECK(mallopt(M_ARENA_MAX, 1) == 1);
	CHECK(mallopt(M_MMAP_THRESHOLD, 64 * 1024) == 1);
	free(huge);
	free(run);
	free(al);
	free(c);
	free(m);
	free(pm);
	int trimmed = malloc_trim(0);
	CHECK(trimmed == 0 || trimmed == 1);
	mi = mallinfo2();
	CHECK(mi.hblks == 0 && mi.hblkhd == 0);
	malloc_stats();   /* zonealloc's report, on stderr */

	CHECK_HEAP();
	return test_done("static_link");
}
