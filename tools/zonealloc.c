/*
 * zonealloc: runs a program with zonealloc as its heap.
 *
 *   zonealloc [OPTIONS] [--] PROGRAM [ARGS...]
 *
 * Sets the ZONEALLOC_* variables the options name, puts the library this
 * launcher is linked with (the installed one, or the build tree's when run
 * from there) first in LD_PRELOAD, and execs PROGRAM. The values are
 * checked with the library's own option table before anything runs.
 * (After jemalloc's jemalloc.sh and gperftools' HEAPCHECK= usage.)
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zonealloc.h"

static const char usage[] =
	"usage: zonealloc [OPTIONS] [--] PROGRAM [ARGS...]\n"
	"Runs PROGRAM with zonealloc as its heap (LD_PRELOAD).\n"
	"\n"
	"  --backend B         who serves: zonealloc (default), mimalloc or libc\n"
	"  --limit SIZE        cap the heap's committed memory (ZONEALLOC_LIMIT)\n"
	"  --stats[=WHERE]     the heap report at exit: on stderr (text, the default;\n"
	"                      json: as one JSON object) or into the file WHERE (%p:\n"
	"                      the process id; JSON when WHERE ends in .json)\n"
	"  --check             check the heap's invariants at exit (ZONEALLOC_CHECK)\n"
	"  --guard             guard mode: canaries, quarantined and poisoned frees, guard\n"
	"                      pages; every misuse found is reported (ZONEALLOC_GUARD)\n"
	"  --guard=pages       guard mode with every allocation on pages of its own, so a\n"
	"                      read past a small object faults too (ZONEALLOC_GUARD_PAGES)\n"
	"  --quarantine SIZE   guard mode's quarantine of freed memory, per thread (default 1M)\n"
	"  --prof[=FILE]       sampled heap profile at exit, for google-pprof, into FILE\n"
	"                      (default zonealloc.%p.heap), top sites on stderr\n"
	"  --prof-rate SIZE    mean bytes between samples (default 512K)\n"
	"  --trace FILE        record every allocation call into FILE (%p: the process\n"
	"                      id), for zonealloc-replay and zonealloc-trace\n"
	"  --decay MS          give back free pages unused for MS ms (ZONEALLOC_DECAY_MS)\n"
	"  --reclaim HOW       dontneed or free (ZONEALLOC_RECLAIM)\n"
	"  --thp MODE          huge pages: never, reuse, madvise or always (ZONEALLOC_THP)\n"
	"  --background        a background thread gives back decayed pages\n"
	"  --no-fallback       fail with ZA_ENOMEM_OS instead of falling back to mimalloc\n"
	"  --verbose           say which backend serves, and when zonealloc falls back\n"
	"  --options           every ZONEALLOC_* option, its default and meaning\n"
	"  --version           the version\n"
	"  --help              this text\n"
	"\n"
	"Options may also be given as ZONEALLOC_* variables; see zonealloc(1).\n";

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "zonealloc: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
	fprintf(stderr, "Try 'zonealloc --help'.\n");
	exit(2);
}

static void set(const char *name, const char *value)
{
	if (setenv(name, value, 1))
		die("cannot set the environment", name);
}

/* The path of the libzonealloc.so this process loaded. */
static const char *library_path(void)
{
	Dl_info info;
	static char path[PATH_MAX];
	if (!dladdr((void *)za_options_print, &info) || !info.dli_fname || !*info.dli_fname)
		return NULL;
	if (!realpath(info.dli_fname, path))
		return NULL;
	return path;
}

/* --name VALUE or --name=VALUE: the value, advancing *i past it. */
static const char *value_of(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 >= argc)
		die("a value is missing after", name);
	return argv[++*i];
}

static int matches(const char *arg, const char *name)
{
	size_t n = strlen(name);
	return !strncmp(arg, name, n) && (arg[n] == 0 || arg[n] == '=');
}

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("zonealloc %s\n", PACKAGE_VERSION);
			return 0;
		} else if (!strcmp(a, "--options")) {
			fflush(stdout);
			za_options_print(1);
			return 0;
		} else if (matches(a, "--backend")) {
			set("ZONEALLOC_BACKEND", value_of(argc, argv, &i, "--backend"));
		} else if (!strcmp(a, "--no-fallback")) {
			set("ZONEALLOC_FALLBACK", "0");
		} else if (!strcmp(a, "--verbose")) {
			set("ZONEALLOC_VERBOSE", "1");
		} else if (matches(a, "--limit")) {
			set("ZONEALLOC_LIMIT", value_of(argc, argv, &i, "--limit"));
		} else if (matches(a, "--decay")) {
			set("ZONEALLOC_DECAY_MS", value_of(argc, argv, &i, "--decay"));
		} else if (matches(a, "--reclaim")) {
			set("ZONEALLOC_RECLAIM", value_of(argc, argv, &i, "--reclaim"));
		} else if (matches(a, "--thp")) {
			set("ZONEALLOC_THP", value_of(argc, argv, &i, "--thp"));
		} else if (!strcmp(a, "--stats")) {
			set("ZONEALLOC_STATS", "text");
		} else if (!strncmp(a, "--stats=", 8)) {
			set("ZONEALLOC_STATS", a + 8);
		} else if (!strcmp(a, "--check")) {
			set("ZONEALLOC_CHECK", "1");
		} else if (!strcmp(a, "--guard")) {
			set("ZONEALLOC_GUARD", "1");
		} else if (!strcmp(a, "--guard=pages")) {
			set("ZONEALLOC_GUARD", "1");
			set("ZONEALLOC_GUARD_PAGES", "1");
		} else if (matches(a, "--quarantine")) {
			set("ZONEALLOC_QUARANTINE", value_of(argc, argv, &i, "--quarantine"));
		} else if (!strcmp(a, "--prof")) {
			set("ZONEALLOC_PROF", "1");
		} else if (!strncmp(a, "--prof=", 7)) {
			set("ZONEALLOC_PROF", "1");
			set("ZONEALLOC_PROF_FILE", a + 7);
		} else if (matches(a, "--trace")) {
			set("ZONEALLOC_TRACE", value_of(argc, argv, &i, "--trace"));
		} else if (matches(a, "--prof-rate")) {
			set("ZONEALLOC_PROF_RATE", value_of(argc, argv, &i, "--prof-rate"));
		} else if (!strcmp(a, "--background")) {
			set("ZONEALLOC_BACKGROUND", "1");
		} else {
			die("unknown option", a);
		}
	}
	if (i >= argc)
		die("no program to run", NULL);
	if (za_options_validate(2))
		exit(2);

	const char *lib = library_path();
	if (!lib)
		die("cannot find the zonealloc library this launcher was linked with", NULL);
	const char *old = getenv("LD_PRELOAD");
	if (old && *old) {
		size_t n = strlen(lib) + strlen(old) + 2;
		char *both = malloc(n);
		if (!both)
			die("out of memory", NULL);
		snprintf(both, n, "%s:%s", lib, old);
		set("LD_PRELOAD", both);
	} else {
		set("LD_PRELOAD", lib);
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "zonealloc: cannot run %s: %s\n", argv[i], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
