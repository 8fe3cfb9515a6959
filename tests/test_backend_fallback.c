/*
 * The fallback: once zones can no longer be mapped (here an address-space
 * limit set after start-up, RLIMIT_AS, leaves room for mimalloc's
 * mappings but not for a 64 MiB zone), new requests go to mimalloc (glibc's
 * malloc where libmimalloc is not installed) instead of failing, frees go
 * to whoever owns the pointer, and the report counts the fallback's
 * allocations. The program keeps running with both kinds of pointer live,
 * freed, reallocated from one to the other, and the heap checks clean.
 *
 * Linked with libzonealloc.so (malloc is zonealloc's, as under LD_PRELOAD).
 * Run with ZONEALLOC_VERBOSE=1 it also says, once, why it fell back.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/check.h"
#include "zonealloc.h"

static size_t vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kb = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb << 10;
}

static void fill(void *p, size_t n, int c)
{
	memset(p, c, n);
}

static int filled(const unsigned char *p, size_t n, int c)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)c)
			return 0;
	return 1;
}

#define OURS 2000
#define BIG (1u << 20)

int main(void)
{
	struct za_stats st;
	static void *ours[OURS], *big[256], *theirs[OURS];
	for (int i = 0; i < OURS; i++) {
		size_t n = i % 10 == 0 ? 40000 : 16 + (size_t)i % 500;
		ours[i] = malloc(n);
		fill(ours[i], n < 64 ? n : 64, i & 0xff);
	}
	za_stats_get(&st);
	CHECK_MSG(!strcmp(st.backend, "zonealloc") && st.backend_allocs == 0,
		  "before the limit: %s serves, %llu backend allocations", st.backend,
		  (unsigned long long)st.backend_allocs);

	/* Room for mimalloc's segments, not for a zone (64 MiB, mapped with
	 * 64 MiB more to align it). */
	struct rlimit rl = { vm_size() + (96u << 20), RLIM_INFINITY };
	CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

	/* 1 MiB runs until the zone is full and the fallback serves. */
	int nbig = 0;
	for (; nbig < 256; nbig++) {
		big[nbig] = malloc(BIG);
		CHECK_MSG(big[nbig] != NULL, "malloc(1 MiB) #%d failed instead of falling back", nbig);
		if (!big[nbig])
			break;
		fill(big[nbig], 4096, 0x5a);
		za_stats_get(&st);
		if (st.backend_fallback)
			break;
	}
	za_stats_get(&st);
	CHECK_MSG(st.backend_fallback == 1 &&
			  (!strcmp(st.backend, "mimalloc") || !strcmp(st.backend, "libc")),
		  "after %d MiB under RLIMIT_AS: backend %s, fallback %d", nbig, st.backend,
		  st.backend_fallback);
	if (!st.backend_fallback)
		return test_done("backend_fallback");
	printf("    fell back to %s after %d MiB\n", st.backend, nbig);

	/* Small and large requests are served by the fallback now. */
	uint64_t before = st.backend_allocs;
	for (int i = 0; i < OURS; i++) {
		size_t n = i % 10 == 0 ? 40000 : 16 + (size_t)i % 500;
		theirs[i] = malloc(n);
		CHECK_MSG(theirs[i] != NULL, "malloc(%zu) after the fallback", n);
		if (theirs[i])
			fill(theirs[i], n < 64 ? n : 64, (i + 1) & 0xff);
	}
	void *aligned = aligned_alloc(256, 1000);
	CHECK(aligned && ((uintptr_t)aligned & 255) == 0);
	void *zeroed = calloc(1000, 10);
	CHECK(zeroed && filled(zeroed, 10000, 0));
	za_stats_get(&st);
	CHECK_MSG(st.backend_allocs > before + OURS / 10, "backend allocations: %llu -> %llu",
		  (unsigned long long)before, (unsigned long long)st.backend_allocs);

	/* Both kinds live: check, free half of each, move some across by
	 * realloc (zonealloc's grows into the fallback, and back is not
	 * needed), and free the rest. */
	for (int i = 0; i < OURS; i++) {
		size_t n = i % 10 == 0 ? 40000 : 16 + (size_t)i % 500;
		n = n < 64 ? n : 64;
		CHECK_MSG(filled(ours[i], n, i & 0xff), "zonealloc's object %d changed", i);
		if (theirs[i])
			CHECK_MSG(filled(theirs[i], n, (i + 1) & 0xff), "fallback object %d changed", i);
		CHECK(malloc_usable_size(ours[i]) >= (size_t)n);
		if (theirs[i])
			CHECK(malloc_usable_size(theirs[i]) >= (size_t)n);
	}
	for (int i = 0; i < OURS; i += 2) {
		free(ours[i]);
		free(theirs[i]);
	}
	for (int i = 1; i < OURS; i += 10) {
		ours[i] = realloc(ours[i], 100 << 10);
		CHECK(ours[i] && filled(ours[i], 16, i & 0xff));
		theirs[i] = realloc(theirs[i], 5000);
		CHECK(theirs[i] && filled(theirs[i], 16, (i + 1) & 0xff));
	}
	for (int i = 1; i < OURS; i += 2) {
		free(ours[i]);
		free(theirs[i]);
	}
	for (int i = 0; i <= nbig && i < 256; i++)
		free(big[i]);
	free(aligned);
	free(zeroed);

	struct za_check_result res;
	CHECK_MSG(za_buddy_check(&res) == 0, "heap check: %s", res.what);
	za_stats_get(&st);
	/* What the test took from the fallback went back to it (what the
	 * dynamic loader took while mimalloc loaded may stay). */
	CHECK_MSG(st.backend_frees > (uint64_t)OURS / 10 && st.backend_bytes < (1u << 20),
		  "backend frees: %llu, %zu bytes live", (unsigned long long)st.backend_frees,
		  st.backend_bytes);

	/* The report says it. */
	int fds[2];
	CHECK(pipe(fds) == 0);
	za_stats_print(fds[1]);
	close(fds[1]);
	char report[8192] = { 0 };
	ssize_t n = read(fds[0], report, sizeof report - 1);
	(void)n;
	close(fds[0]);
	char want[128];
	snprintf(want, sizeof want, "  backend: %s (fallback: zones could not be mapped): ", st.backend);
	CHECK_MSG(strstr(report, want) != NULL, "report:\n%s", report);
	return test_done("backend_fallback");
}
