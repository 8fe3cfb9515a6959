/* Run under the preload by test_linkage.sh: says whether libunwind is
 * mapped before anything went wrong, then frees a block twice, so the
 * report's backtrace has to load it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int libunwind_mapped(void)
{
	char line[512];
	int found = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (strstr(line, "libunwind"))
			found = 1;
	fclose(f);
	return found;
}

__attribute__((noinline)) void unwind_lazy_double_free(void *volatile *slot)
{
	free(*slot);
	free(*slot);
	__asm__ volatile("" ::: "memory");   /* (no tail call: keep the frame) */
}

int main(void)
{
	printf("libunwind mapped at start: %s\n", libunwind_mapped() ? "yes" : "no");
	fflush(stdout);
	void *volatile p = malloc(32);
	unwind_lazy_double_free(&p);
	puts("the double free was not reported");
	return 0;
}
