/*
 * Transparent huge pages (os.h): which mappings ask for them, and how many
 * the process holds.
 *
 * A 2 MiB page covers what 512 TLB entries would, so a large table read at
 * random runs much faster on them (bench_driver hash_1g: see
 * DESIGN-NOTES.md, issue 14); but the kernel fills a whole 2 MiB page on
 * the first touch, so a zone of small slabs asked for huge pages would
 * hold 2 MiB for every 4 KiB slab page touched in a fresh 2 MiB range. The
 * modes (ZONEALLOC_THP):
 *  - never:   no mapping of the heap gets huge pages, whatever the system
 *             setting (MADV_NOHUGEPAGE on zones and huge mappings);
 *  - reuse:   huge mappings (allocations above the largest buddy block)
 *             ask for them (MADV_HUGEPAGE) once the program has freed
 *             one; zones follow the system setting. The default: a
 *             program that recycles big buffers refaults each one and
 *             gains most (mimalloc-bench's malloc-large, 5x), while one
 *             that allocates a few big tables once and fills them in
 *             part would hold 2 MiB at every table's frontier (barnes:
 *             six tables, 64.6 MB against 58.2 on small pages);
 *  - madvise: every huge mapping asks for them from its first touch;
 *  - always:  zones ask for them too; reclaim's decay then gives back only
 *             whole 2 MiB blocks (buddy/reclaim.c), so it splits none.
 */
#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int za_thp_mode = ZA_THP_REUSE;

void za_os_thp_advise(void *addr, size_t size, bool zone)
{
	int advice;
	if (za_thp_mode == ZA_THP_NEVER)
		advice = MADV_NOHUGEPAGE;
	else if (za_thp_mode == ZA_THP_ALWAYS || !zone)
		advice = MADV_HUGEPAGE;
	else
		return;
	int saved = errno;
	madvise(addr, size, advice);   /* (EINVAL where the kernel has no THP) */
	errno = saved;
}

long za_os_anon_huge_kb(void)
{
	int saved = errno;
	int fd = open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		errno = saved;
		return -1;
	}
	char buf[2048];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	errno = saved;
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *at = strstr(buf, "AnonHugePages:");
	if (!at)
		return -1;
	at += sizeof "AnonHugePages:" - 1;
	while (*at == ' ')
		at++;
	long kb = 0;
	while (*at >= '0' && *at <= '9')
		kb = kb * 10 + (*at++ - '0');
	return kb;
}
