/*
 * The heap's metadata stays out of an overflow's reach (issue 12 item 4):
 * a zone's page map and the chunks of internal records (thread heaps,
 * huge-mapping records) live in mappings of their own with a no-access
 * page on each side (os.c: za_os_map_guarded). Checks: the pages just
 * before and after each such mapping fault when written (in a child), and
 * the metadata itself is intact and the heap checks clean afterwards.
 *
 * Calls the za_* functions and buddy internals (libza_core).
 */
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buddy/buddy.h"
#include "slab/slab.h"
#include "tests/malloc_test.h"

/* Writes a byte at p in a child: true when the child died of SIGSEGV. */
static bool write_faults(volatile char *p)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		*p = 1;
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

static bool can_write(volatile char *p)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		char c = *p;
		*p = c;
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(void)
{
	void *obj = za_malloc(100);
	CHECK(obj != NULL);
	struct za_zone *zone = za_zone_of(obj);
	CHECK(zone != NULL);
	if (!zone)
		return 1;

	/* The page map: [pages, pages + ZA_PAGE_MAP_BYTES rounded to pages). */
	char *map = (char *)zone->pages;
	size_t len = (ZA_PAGE_MAP_BYTES + ZA_PAGE_SIZE - 1) & ~(ZA_PAGE_SIZE - 1);
	CHECK_MSG(can_write(map) && can_write(map + len - 1), "the page map is not writable");
	CHECK_MSG(write_faults(map - 1), "a write just below the page map did not fault");
	CHECK_MSG(write_faults(map + len), "a write just above the page map did not fault");

	/* The thread's heap is a record from the metadata chunks. */
	char *heap = (char *)za_tls_heap;
	CHECK(heap != NULL && heap != (char *)&za_theap_empty);
	/* Walk down page by page from the heap to the chunk's guard. */
	char *lo = (char *)((uintptr_t)heap & ~(uintptr_t)(ZA_PAGE_SIZE - 1));
	unsigned steps = 0;
	while (steps < 64 && can_write(lo - 1)) {
		lo -= ZA_PAGE_SIZE;
		steps++;
	}
	CHECK_MSG(steps < 64 && write_faults(lo - 1),
		  "no guard page below the metadata chunk of the thread heap");
	char *hi = (char *)((uintptr_t)heap & ~(uintptr_t)(ZA_PAGE_SIZE - 1));
	steps = 0;
	while (steps < 64 && can_write(hi + ZA_PAGE_SIZE)) {
		hi += ZA_PAGE_SIZE;
		steps++;
	}
	CHECK_MSG(steps < 64 && write_faults(hi + ZA_PAGE_SIZE),
		  "no guard page above the metadata chunk of the thread heap");
	CHECK_MSG(hi + ZA_PAGE_SIZE - lo == (256 << 10), "the chunk spans %zu bytes",
		  (size_t)(hi + ZA_PAGE_SIZE - lo));

	za_free(obj);
	CHECK_HEAP();
	printf("meta_guard: %d checks, %d failed\n", za_test_checks, za_test_failures);
	return za_test_failures ? 1 : 0;
}
