/*
 * All of zonealloc's memory system calls. Reservations are made with
 * MAP_NORESERVE: a zone is address space, and only the pages the heap
 * touches count against the machine's memory.
 */
#include "os/os.h"
#include "zonealloc.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int za_os_map(size_t size, void **out)
{
	int saved = errno;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int err = (p == MAP_FAILED) ? errno : 0;
	errno = saved;
	if (err)
		return err ? err : ENOMEM;
	*out = p;
	return 0;
}

/*
 * The heap's own metadata (page maps, heaps, records) lives in mappings of
 * its own, out of the objects' way; a no-access page on each side keeps a
 * linear overflow out of an object's mapping from running into them (it
 * faults at the guard instead), wherever the kernel places the mappings.
 */
int za_os_map_guarded(size_t size, void **out)
{
	size = (size + ZA_PAGE_SIZE - 1) & ~(ZA_PAGE_SIZE - 1);
	size_t span = size + 2 * ZA_PAGE_SIZE;
	if (size == 0 || span < size)
		return ENOMEM;
	int saved = errno;
	void *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int err = 0;
	if (p == MAP_FAILED)
		err = errno ? errno : ENOMEM;
	else if (mprotect((char *)p + ZA_PAGE_SIZE, size, PROT_READ | PROT_WRITE)) {
		err = errno ? errno : ENOMEM;
		munmap(p, span);
	}
	errno = saved;
	if (!err)
		*out = (char *)p + ZA_PAGE_SIZE;
	return err;
}

/* Address space no access may touch (guard mode's malloc(0) pointers). */
int za_os_reserve(size_t size, void **out)
{
	int saved = errno;
	void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int err = p == MAP_FAILED ? (errno ? errno : ENOMEM) : 0;
	errno = saved;
	if (!err)
		*out = p;
	return err;
}

/* Makes pages no-access, or readable and writable again (guard pages and
 * quarantined blocks). */
int za_os_protect(void *addr, size_t size, bool access)
{
	int saved = errno;
	int err = mprotect(addr, size, access ? PROT_READ | PROT_WRITE : PROT_NONE) ? errno : 0;
	errno = saved;
	return err;
}

/*
 * The most one mapping may ever hold: the machine's memory and swap. The
 * kernel's heuristic overcommit (vm.overcommit_memory = 0) refuses a
 * single mapping above this, but MAP_NORESERVE skips that check, and mode
 * 1 skips it always; a request this big would only end in the OOM killer,
 * so the heap refuses it itself. Read each time (swap comes and goes):
 * one system call beside a mapping of megabytes.
 */
size_t za_os_memory_max(void)
{
	struct sysinfo si;
	int saved = errno;
	int err = sysinfo(&si);
	errno = saved;
	if (err)
		return SIZE_MAX;
	unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
	unsigned long long total = ((unsigned long long)si.totalram + si.totalswap) * unit;
	return total > SIZE_MAX ? SIZE_MAX : (size_t)total;
}

int za_os_map_aligned(size_t size, size_t align, void **out)
{
	/* Over-map by the alignment, then cut the misaligned head and the
	 * unused tail: two munmaps buy an alignment the kernel won't promise. */
	size_t span = size + align;
	void *raw;
	int err;

	if (span < size)
		return ENOMEM;
	err = za_os_map(span, &raw);
	if (err)
		return err;
	uintptr_t start = (uintptr_t)raw;
	uintptr_t aligned = (start + align - 1) & ~(uintptr_t)(align - 1);
	if (aligned > start)
		za_os_unmap(raw, aligned - start);
	uintptr_t end = aligned + size;
	if (start + span > end)
		za_os_unmap((void *)end, start + span - end);
	*out = (void *)aligned;
	return 0;
}

int za_os_unmap(void *addr, size_t size)
{
	int saved = errno;
	int err = munmap(addr, size) ? errno : 0;
	errno = saved;
	return err;
}

int za_os_remap(void *addr, size_t old_size, size_t new_size, void *to, void **out)
{
	int saved = errno;
	void *p = to ? mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to)
		     : mremap(addr, old_size, new_size, 0);
	int err = (p == MAP_FAILED) ? errno : 0;
	errno = saved;
	if (!err)
		*out = p;
	return err;
}

int za_os_decommit(void *addr, size_t size)
{
	int saved = errno;
	int err = madvise(addr, size, MADV_DONTNEED) ? errno : 0;
	errno = saved;
	return err;
}

size_t za_os_resident_pages(const void *addr, size_t size, size_t enough)
{
	unsigned char vec[256];
	size_t pages = size >> ZA_PAGE_SHIFT, seen = 0;
	int saved = errno;
	for (size_t i = 0; i < pages && seen <= enough; i += sizeof vec) {
		size_t n = pages - i < sizeof vec ? pages - i : sizeof vec;
		if (mincore((char *)addr + (i << ZA_PAGE_SHIFT), n << ZA_PAGE_SHIFT, vec)) {
			seen = SIZE_MAX;
			break;
		}
		for (size_t j = 0; j < n; j++)
			seen += vec[j] & 1;
	}
	errno = saved;
	return seen;
}

/* Opened for each question, not kept: a descriptor kept across a fork
 * (one that skips the atfork handlers too) would answer for the parent. */
bool za_os_pages_held(const void *addr, size_t pages, uint64_t *held)
{
	uint64_t ent[ZA_OS_PAGEMAP_MAX];
	if (pages > ZA_OS_PAGEMAP_MAX)
		return false;
	int saved = errno;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t want = (ssize_t)(pages * sizeof ent[0]), got = -1;
	if (fd >= 0) {
		got = pread(fd, ent, (size_t)want, (off_t)(((uintptr_t)addr >> ZA_PAGE_SHIFT) * sizeof ent[0]));
		close(fd);
	}
	errno = saved;
	if (got != want)
		return false;
	for (size_t i = 0; i < pages; i++) {
		/* bit 63: in memory; bit 62: in swap */
		if (i % 64 == 0)
			held[i / 64] = 0;
		held[i / 64] |= (uint64_t)((ent[i] >> 62) != 0) << (i % 64);
	}
	return true;
}

int za_os_lazy_free(void *addr, size_t size)
{
	int saved = errno;
	int err = madvise(addr, size, MADV_FREE) ? errno : 0;
	errno = saved;
	return err;
}

int za_os_membarrier_register(void)
{
	int saved = errno;
	int err = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) ? errno : 0;
	errno = saved;
	return err;
}

int za_os_membarrier(void)
{
	int saved = errno;
	int err = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) ? errno : 0;
	errno = saved;
	return err;
}

void za_os_write(int fd, const char *buf, size_t len)
{
	int saved = errno;
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		buf += n;
		len -= (size_t)n;
	}
	errno = saved;
}
