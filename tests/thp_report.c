/* For test_preload_options.sh: writes a 64 MiB block, frees it (zonealloc
 * keeps it mapped in its huge cache) and prints AnonHugePages from
 * /proc/self/smaps_rollup, for the exit report to match. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	size_t n = (size_t)64 << 20;
	char *volatile p = malloc(n);
	if (!p)
		return 1;
	memset(p, 1, n);
	free(p);
	char line[256];
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	printf("program: AnonHugePages %ld KiB\n", kb);
	return 0;
}
