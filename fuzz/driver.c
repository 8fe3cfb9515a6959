/*
 * One main for every harness. Built with afl-cc (-DZA_FUZZ_AFL) it is an
 * AFL++ persistent-mode target with deferred init; built with the plain
 * compiler it replays inputs: each argument is a file or a folder of files,
 * and with no argument it replays the harness's corpus and regression
 * inputs from $srcdir/fuzz (what `make check` runs).
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz/harness.h"
#include "policy/policy.h"

/*
 * The heap's decay gives back memory freed more than a second ago, by the
 * clock: it would make what an input does depend on when it ran (a crash
 * that does not replay from its input). The harnesses release memory by
 * their own operations (reclaim, trim, limits), so their heap does not
 * decay.
 */
static void fuzz_setup(void)
{
	za_policy_set_decay_ms((uint64_t)1 << 31);
	fuzz_init();
}

#ifdef ZA_FUZZ_AFL
__AFL_FUZZ_INIT();

int main(void)
{
	fuzz_setup();
	__AFL_INIT();
	const unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
	while (__AFL_LOOP(10000))
		fuzz_one(buf, (size_t)__AFL_FUZZ_TESTCASE_LEN);
	return 0;
}
#else

static size_t replayed;

static void replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	fuzz_one(buf, n);
	replayed++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void replay_path(const char *path, int must_exist)
{
	struct stat st;
	if (stat(path, &st)) {
		if (must_exist) {
			perror(path);
			exit(2);
		}
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		replay_file(path);
		return;
	}
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		exit(2);
	}
	char *names[4096];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 4096)
		if (e->d_name[0] != '.' && strcmp(e->d_name, "README"))
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, n, sizeof names[0], by_name);
	for (size_t i = 0; i < n; i++) {
		char full[4096];
		snprintf(full, sizeof full, "%s/%s", path, names[i]);
		replay_path(full, 1);
		free(names[i]);
	}
}

int main(int argc, char **argv)
{
	fuzz_setup();
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			replay_path(argv[i], 1);
	} else {
		const char *srcdir = getenv("srcdir");
		char path[4096];
		snprintf(path, sizeof path, "%s/fuzz/corpus/%s", srcdir ? srcdir : ".", fuzz_name);
		replay_path(path, 1);
		snprintf(path, sizeof path, "%s/fuzz/regressions/%s", srcdir ? srcdir : ".", fuzz_name);
		replay_path(path, 0);
	}
	printf("%s: %zu inputs replayed, all invariants held\n", fuzz_name, replayed);
	return replayed ? 0 : 1;
}
#endif
