/*
 * A fuzz target with two planted heap bugs, for AFL++ users' use of guard
 * mode (tests/test_afl_guard.sh, README "Guard mode for fuzzing"): an input
 * starting with 'O' overflows an 8-byte block by one byte; one starting
 * with 'U' writes into a 32-byte block after freeing it. Neither crashes
 * on glibc's heap (the byte lands in a chunk's slack, the write beside a
 * tcache link), so a campaign without a bug-catching heap finds nothing.
 * It reads its input from stdin or from the file named first.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile keep;

int main(int argc, char **argv)
{
	unsigned char buf[64];
	int fd = argc > 1 ? open(argv[1], O_RDONLY) : 0;
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
	if (n < 2)
		return 0;
	char *p = malloc(8);
	keep = p;
	if (buf[0] == 'O')
		memcpy(p, buf, 9);   /* planted: one byte past the end */
	else
		memcpy(p, buf, 8);
	free(p);
	char *q = malloc(32);
	keep = q;
	memcpy(q, buf, 32 < n ? 32 : (size_t)n);
	free(q);
	if (buf[0] == 'U')
		q[20] = (char)buf[1];   /* planted: a write after free */
	return buf[2] == 'x';
}
