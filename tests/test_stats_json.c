/*
 * The stats as data: after a known set of allocations, za_stats_print_json
 * writes one JSON object that python3's json module parses, and its
 * counters say what this program did (tests/check_stats_json.py checks
 * them); malloc_info writes glibc's XML shape, which python3's XML parser
 * reads, with the same free blocks. Linked with libzonealloc.so.
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "zonealloc.h"

int main(int argc, char **argv)
{
	(void)argc;
	char dir[] = "/tmp/za-json-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char json[64], xml[64];
	snprintf(json, sizeof json, "%s/stats.json", dir);
	snprintf(xml, sizeof xml, "%s/info.xml", dir);

	/* 1000 objects of 100 B (the 112-byte class), 500 of 3000 B (3072),
	 * 20 runs of 100 KiB, 3 huge blocks of 6 MiB, 2 page blocks of order 3. */
	static void *small[1000], *mid[500], *runs[20], *huge[3];
	for (int i = 0; i < 1000; i++)
		small[i] = malloc(100);
	for (int i = 0; i < 500; i++)
		mid[i] = malloc(3000);
	for (int i = 0; i < 20; i++)
		runs[i] = malloc(100 << 10);
	for (int i = 0; i < 3; i++)
		huge[i] = malloc(6 << 20);
	za_status st;
	void *blocks[2] = { za_alloc_pages(3, ZA_F_NONE, &st), za_alloc_pages(3, ZA_F_NONE, &st) };
	/* One typed failure of each kind it is easy to cause. */
	CHECK(za_alloc(16, 3, ZA_F_NONE, &st) == NULL && st == ZA_EINVAL);
	CHECK(za_alloc((size_t)1 << 62, 0, ZA_F_NONE, &st) == NULL && st == ZA_ENOMEM_TOO_LARGE);

	/* Both files open, the stream unbuffered, before either snapshot:
	 * nothing allocates between the two. */
	int fd = open(json, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FILE *f = fopen(xml, "w");
	CHECK(fd >= 0 && f && setvbuf(f, NULL, _IONBF, 0) == 0);
	za_stats_print_json(fd);
	CHECK(malloc_info(0, f) == 0);
	close(fd);
	fclose(f);
	CHECK(malloc_info(1, stdout) == -1);

	char cmd[512];
	snprintf(cmd, sizeof cmd, "env -u LD_PRELOAD python3 %s/tests/check_stats_json.py %s %s",
		 getenv("srcdir") ? getenv("srcdir") : ".", json, xml);
	int rc = system(cmd);
	CHECK_MSG(rc == 0, "%s: exit %d", cmd, rc);

	for (int i = 0; i < 1000; i++)
		free(small[i]);
	for (int i = 0; i < 500; i++)
		free(mid[i]);
	for (int i = 0; i < 20; i++)
		free(runs[i]);
	for (int i = 0; i < 3; i++)
		free(huge[i]);
	za_free_pages(blocks[0], 3);
	za_free_pages(blocks[1], 3);
	unlink(json);
	unlink(xml);
	rmdir(dir);
	(void)argv;
	return test_done("stats_json");
}
