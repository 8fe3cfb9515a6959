/*
 * Options. Switches accept 1/0, on/off, true/false, yes/no; sizes and
 * times are plain numbers, sizes with K, M or G suffixes (powers of 1024).
 * A value the heap cannot honour is refused with one line that names the
 * option and what it accepts, and the default stays.
 */
#include "preload/options.h"

#include <string.h>
#include <unistd.h>

#include "os/os.h"
#include "shim/stats_json.h"
#include "zonealloc.h"

extern char **environ;

enum opt_kind { OPT_SWITCH, OPT_SIZE, OPT_MS, OPT_CHOICE, OPT_STATS, OPT_PATH };

struct za_option_desc {
	const char *name;       /* after the ZONEALLOC_ prefix */
	enum opt_kind kind;
	long long value;        /* the default until parsed */
	long long min, max;     /* sizes and times */
	const char *words[4];   /* a choice: the words, valued 0, 1, 2, 3 */
	const char *shown;      /* the default, as --options shows it */
	const char *accepts;    /* what the value may be */
	const char *meaning;
	bool zero_ok;           /* a size of 0 means "none" */
	char *path;             /* a path: where its value is kept */
};

/* ZONEALLOC_STATS=FILE and the paths keep their values here (environ may
 * change later). */
ZA_BULK static char stats_path[4096];
ZA_BULK static char prof_path[4096];   /* empty: the default, zonealloc.%p.heap */
ZA_BULK static char trace_path[4096];

static struct za_option_desc options[ZA_OPT_COUNT] = {
	[ZA_OPT_STATS] = { "STATS", OPT_STATS, ZA_STATS_OFF, 0, 0, { 0 }, "0",
			   "0, 1, text or json, or a FILE name (%p: the process id)",
			   "print the heap report at exit, as text or json: to the standard error "
			   "the program started with (kept open even if the program closes it), or "
			   "into FILE (JSON when its name ends in .json)" },
	[ZA_OPT_CHECK] = { "CHECK", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
			   "check every zone's invariants at exit (za_buddy_check); abort on a fault" },
	[ZA_OPT_LIMIT] = { "LIMIT", OPT_SIZE, 0, ZA_LIMIT_MIN, (long long)1 << 50, { 0 }, "0 (none)",
			   "0, or a size from 1M (K, M, G suffixes)",
			   "cap the memory the heap commits; requests beyond it fail with "
			   "ZA_ENOMEM_LIMIT (NULL and ENOMEM from malloc)", .zero_ok = true },
	[ZA_OPT_DECAY_MS] = { "DECAY_MS", OPT_MS, 1000, 0, 86400000, { 0 }, "1000",
			      "milliseconds, 0 to 86400000",
			      "free pages unused this long are given back to the OS" },
	[ZA_OPT_RECLAIM] = { "RECLAIM", OPT_CHOICE, 0, 0, 0, { "dontneed", "free", 0 }, "dontneed",
			     "dontneed or free",
			     "how pages are given back: MADV_DONTNEED (RSS drops at once) or "
			     "MADV_FREE (the kernel takes them when it needs them)" },
	[ZA_OPT_BACKGROUND] = { "BACKGROUND", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
				"a background thread gives back decayed pages while the program "
				"sleeps" },
	[ZA_OPT_BACKEND] = { "BACKEND", OPT_CHOICE, 0, 0, 0, { "zonealloc", "mimalloc", "libc" },
			     "zonealloc", "zonealloc, mimalloc or libc",
			     "who serves new allocations: zonealloc's own tiers, Debian's libmimalloc "
			     "(loaded at start-up) or glibc's malloc; zonealloc's report, limit and "
			     "za_* API stay on top" },
	[ZA_OPT_FALLBACK] = { "FALLBACK", OPT_SWITCH, 1, 0, 1, { 0 }, "1", "0 or 1",
			      "when zones can no longer be mapped (RLIMIT_AS, vm.max_map_count, "
			      "address space taken), new allocations go to mimalloc (else glibc) "
			      "instead of failing; 0: they fail with ZA_ENOMEM_OS" },
	[ZA_OPT_VERBOSE] = { "VERBOSE", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
			     "say on stderr which backend serves, and when and why zonealloc falls "
			     "back to another (zones can no longer be mapped)" },
	[ZA_OPT_PROF] = { "PROF", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
			  "sampled heap profiling: the live heap by allocation stack, written at "
			  "exit into ZONEALLOC_PROF_FILE in the gperftools heap-profile format "
			  "(google-pprof reads it), and the top sites on the standard error" },
	[ZA_OPT_PROF_RATE] = { "PROF_RATE", OPT_SIZE, 512 * 1024, 1, (long long)1 << 40, { 0 },
			       "512K", "a size from 1 byte (K, M, G suffixes)",
			       "mean bytes allocated between two samples (a Poisson process)" },
	[ZA_OPT_PROF_FILE] = { "PROF_FILE", OPT_PATH, 0, 0, 0, { 0 }, "zonealloc.%p.heap",
			       "a file name (%p: the process id)",
			       "where the heap profile is written at exit (SIGUSR2's get .1, .2, ...)",
			       .path = prof_path },
	[ZA_OPT_PROF_SIGUSR2] = { "PROF_SIGUSR2", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
				  "SIGUSR2 writes a numbered heap profile too (the handler "
				  "replaces the program's)" },
	[ZA_OPT_TRACE] = { "TRACE", OPT_PATH, 0, 0, 0, { 0 }, "none",
			   "a file name (%p: the process id)",
			   "record every malloc-family and za_* call (op, size, alignment, "
			   "result, thread, time) into FILE, for zonealloc-replay and "
			   "zonealloc-trace",
			   .path = trace_path },
	[ZA_OPT_THP] = { "THP", OPT_CHOICE, 3, 0, 0, { "never", "madvise", "always", "reuse" }, "reuse",
			 "never, reuse, madvise or always",
			 "transparent huge pages: never for none; reuse for huge allocations "
			 "(above 4 MiB) once the program has freed one; madvise for every huge "
			 "allocation; always for the zones too" },
	[ZA_OPT_GROUPING] = { "GROUPING", OPT_SWITCH, 1, 0, 1, { 0 }, "1", "0 or 1",
			      "group allocations by kind into 2 MiB pageblocks (slabs, page runs, "
			      "the reserve's), so long-lived slabs do not pin every free 2 MiB; 0: "
			      "one kind for all (to compare)" },
	[ZA_OPT_ON_ERROR] = { "ON_ERROR", OPT_CHOICE, 0, 0, 0, { "abort", "warn" }, "abort",
			      "abort or warn",
			      "what a misuse (double free, bad pointer or size, a write after free "
			      "found in a free list) does after its report: abort, or warn: go on, "
			      "the call doing nothing more (the object leaks) so the heap stays "
			      "consistent" },
	[ZA_OPT_GUARD] = { "GUARD", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
			   "guard mode: a canary after every small object, freed memory filled "
			   "with a pattern and quarantined, a no-access page after every larger "
			   "block and in place of malloc(0)'s, each misuse reported by name "
			   "(read at the first allocation)" },
	[ZA_OPT_QUARANTINE] = { "QUARANTINE", OPT_SIZE, 1 << 20, 0, (long long)1 << 40, { 0 }, "1M",
				"a size (K, M, G suffixes); 0 for none",
				"guard mode: how many bytes of freed memory wait, no reuse, before "
				"they are reused (oldest first), in each thread's quarantine",
				.zero_ok = true },
	[ZA_OPT_GUARD_PAGES] = { "GUARD_PAGES", OPT_SWITCH, 0, 0, 1, { 0 }, "0", "0 or 1",
				 "guard mode with every allocation, small ones too, on pages of "
				 "its own against a no-access page (like AFL++'s libdislocator), so "
				 "a read past a small object's end faults too; two pages and three "
				 "mprotect calls per allocation" },
};


static bool parse_choice(const struct za_option_desc *o, const char *s, long long *out)
{
	for (int i = 0; i < 4 && o->words[i]; i++)
		if (!strcasecmp(s, o->words[i])) {
			*out = i;
			return true;
		}
	return false;
}

static bool parse_switch(const char *s, long long *out)
{
	static const struct { const char *word; long long v; } words[] = {
		{ "1", 1 }, { "on", 1 }, { "true", 1 }, { "yes", 1 },
		{ "0", 0 }, { "off", 0 }, { "false", 0 }, { "no", 0 },
	};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (!strcasecmp(s, words[i].word)) {
			*out = words[i].v;
			return true;
		}
	return false;
}

static bool parse_number(const char *s, bool suffixes, long long *out)
{
	if (*s < '0' || *s > '9')
		return false;
	long long v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (1LL << 53))
			return false;
		v = v * 10 + (*s - '0');
	}
	int shift = 0;
	if (suffixes) {
		switch (*s) {
		case 'k': case 'K': shift = 10; s++; break;
		case 'm': case 'M': shift = 20; s++; break;
		case 'g': case 'G': shift = 30; s++; break;
		}
		if (*s == 'b' || *s == 'B')
			s++;
	}
	if (*s || v > (1LL << (62 - shift)))
		return false;
	*out = v << shift;
	return true;
}

static bool parse(struct za_option_desc *o, const char *s)
{
	long long v;
	switch (o->kind) {
	case OPT_SWITCH:
		if (!parse_switch(s, &v))
			return false;
		break;
	case OPT_CHOICE:
		if (!parse_choice(o, s, &v))
			return false;
		break;
	case OPT_SIZE:
	case OPT_MS:
		if (!parse_number(s, o->kind == OPT_SIZE, &v))
			return false;
		if ((v || !o->zero_ok) && (v < o->min || v > o->max))
			return false;
		break;
	case OPT_STATS:
		if (parse_switch(s, &v))
			break;
		if (!strcasecmp(s, "text")) {
			v = ZA_STATS_TEXT;
			break;
		}
		if (!strcasecmp(s, "json")) {
			v = ZA_STATS_JSON;
			break;
		}
		if (!*s || strlen(s) >= sizeof stats_path - 32)
			return false;
		memcpy(stats_path, s, strlen(s) + 1);
		v = ZA_STATS_FILE;
		break;
	case OPT_PATH:
		if (!*s || strlen(s) >= sizeof prof_path - 32)
			return false;
		memcpy(o->path, s, strlen(s) + 1);
		v = 1;
		break;
	default:
		return false;
	}
	o->value = v;
	return true;
}

/* Reads every ZONEALLOC_* variable of environ into `table`, refusing (one
 * line on fd each) what it cannot honour; returns how many it refused. */
static int options_read(struct za_option_desc *table, int fd)
{
	static const char prefix[] = "ZONEALLOC_";
	int refused = 0;
	if (!environ)
		return 0;
	for (char **e = environ; *e; e++) {
		if (strncmp(*e, prefix, sizeof prefix - 1))
			continue;
		const char *name = *e + sizeof prefix - 1;
		const char *eq = strchr(name, '=');
		if (!eq)
			continue;
		size_t len = (size_t)(eq - name);
		bool known = false;
		for (int i = 0; i < ZA_OPT_COUNT; i++) {
			if (strlen(options[i].name) != len || strncmp(name, options[i].name, len))
				continue;
			known = true;
			if (!parse(&table[i], eq + 1)) {
				za_dprintf(fd, "zonealloc: ignoring %s: ZONEALLOC_%s takes %s\n", *e,
					   table[i].name, table[i].accepts);
				refused++;
			}
		}
		if (!known) {
			za_dprintf(fd, "zonealloc: unknown option ignored: %s\n", *e);
			refused++;
		}
	}
	return refused;
}

void za_options_init(void)
{
	options_read(options, 2);
}

/* The launcher checks what it is about to pass on, with the same table,
 * without changing the options in force. */
ZA_EXPORT int za_options_validate(int fd)
{
	struct za_option_desc scratch[ZA_OPT_COUNT];
	char path[sizeof stats_path], ppath[sizeof prof_path], tpath[sizeof trace_path];
	memcpy(scratch, options, sizeof scratch);
	memcpy(path, stats_path, sizeof path);
	memcpy(ppath, prof_path, sizeof ppath);
	memcpy(tpath, trace_path, sizeof tpath);
	int refused = options_read(scratch, fd);
	memcpy(stats_path, path, sizeof path);
	memcpy(prof_path, ppath, sizeof ppath);
	memcpy(trace_path, tpath, sizeof tpath);
	return refused;
}

long long za_option(enum za_option opt)
{
	return options[opt].value;
}

const char *za_option_stats_path(char *buf, size_t cap)
{
	if (options[ZA_OPT_STATS].value != ZA_STATS_FILE)
		return NULL;
	za_fmt_path(buf, cap, stats_path);
	return buf;
}

const char *za_option_prof_file(void)
{
	return prof_path[0] ? prof_path : "zonealloc.%p.heap";
}

const char *za_option_trace_file(void)
{
	return options[ZA_OPT_TRACE].value ? trace_path : NULL;
}

bool za_option_stats_path_json(void)
{
	size_t n = strlen(stats_path);
	return n > 5 && !strcmp(stats_path + n - 5, ".json");
}

void za_options_json(struct za_out *o)
{
	static const char *const stats_words[] = { "off", "text", "file", "json" };
	za_out_fmt(o, "{");
	for (int i = 0; i < ZA_OPT_COUNT; i++) {
		const struct za_option_desc *d = &options[i];
		char key[32];
		size_t k = 0;
		for (const char *s = d->name; *s && k < sizeof key - 1; s++)
			key[k++] = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
		key[k] = 0;
		za_out_fmt(o, "%s\"%s\":", i ? "," : "", key);
		switch (d->kind) {
		case OPT_SWITCH:
			za_out_fmt(o, "%s", d->value ? "true" : "false");
			break;
		case OPT_SIZE:
		case OPT_MS:
			za_out_fmt(o, "%lld", d->value);
			break;
		case OPT_CHOICE:
			za_out_fmt(o, "\"%s\"", d->words[d->value]);
			break;
		case OPT_STATS:
			za_out_fmt(o, "\"%s\"", stats_words[d->value]);
			break;
		case OPT_PATH:
			za_out_fmt(o, "\"");
			for (const char *c = d->path; *c; c++) {
				if (*c == '"' || *c == '\\')
					za_out_fmt(o, "\\");
				za_out_fmt(o, "%c", (unsigned char)*c < 32 ? '?' : *c);
			}
			za_out_fmt(o, "\"");
			break;
		}
	}
	za_out_fmt(o, "}");
}

ZA_EXPORT void za_options_print(int fd)
{
	for (int i = 0; i < ZA_OPT_COUNT; i++) {
		const struct za_option_desc *o = &options[i];
		za_dprintf(fd, "ZONEALLOC_%s (default %s; %s)\n    %s\n", o->name, o->shown,
			   o->accepts, o->meaning);
	}
}
