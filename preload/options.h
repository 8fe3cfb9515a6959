/*
 * ZONEALLOC_* options: one table of name, kind, default, accepted range and
 * meaning, read from `environ` directly (no getenv, no stdio, no
 * allocation), once. The launcher's `--options` prints the same table.
 */
#ifndef ZA_OPTIONS_H
#define ZA_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

enum za_option {
	ZA_OPT_STATS,      /* ZONEALLOC_STATS=1|text|FILE: the report at exit */
	ZA_OPT_CHECK,      /* ZONEALLOC_CHECK=1: run za_buddy_check at exit */
	ZA_OPT_LIMIT,      /* ZONEALLOC_LIMIT=256M: cap committed memory */
	ZA_OPT_DECAY_MS,   /* ZONEALLOC_DECAY_MS=1000: release free pages older */
	ZA_OPT_RECLAIM,    /* ZONEALLOC_RECLAIM=dontneed|free: how to release */
	ZA_OPT_BACKGROUND, /* ZONEALLOC_BACKGROUND=1: the background reclaimer */
	ZA_OPT_BACKEND,    /* ZONEALLOC_BACKEND=zonealloc|mimalloc|libc */
	ZA_OPT_FALLBACK,   /* ZONEALLOC_FALLBACK=0: typed ENOMEM, no fallback */
	ZA_OPT_VERBOSE,    /* ZONEALLOC_VERBOSE=1: say what the heap decides */
	ZA_OPT_PROF,       /* ZONEALLOC_PROF=1: sampled heap profile */
	ZA_OPT_PROF_RATE,  /* ZONEALLOC_PROF_RATE=512K: mean bytes between samples */
	ZA_OPT_PROF_FILE,  /* ZONEALLOC_PROF_FILE=zonealloc.%p.heap */
	ZA_OPT_PROF_SIGUSR2, /* ZONEALLOC_PROF_SIGUSR2=1: SIGUSR2 writes one too */
	ZA_OPT_TRACE,      /* ZONEALLOC_TRACE=FILE: record every call */
	ZA_OPT_THP,        /* ZONEALLOC_THP=never|madvise|always: huge pages */
	ZA_OPT_GROUPING,   /* ZONEALLOC_GROUPING=0: pageblocks of one kind only */
	ZA_OPT_ON_ERROR,   /* ZONEALLOC_ON_ERROR=abort|warn: what misuse does */
	ZA_OPT_GUARD,      /* ZONEALLOC_GUARD=1: guard mode (shim/guard.h) */
	ZA_OPT_QUARANTINE, /* ZONEALLOC_QUARANTINE=1M: guard mode's quarantines */
	ZA_OPT_GUARD_PAGES, /* ZONEALLOC_GUARD_PAGES=1: guard mode, every block on pages */
	ZA_OPT_COUNT
};

/* Values of ZA_OPT_STATS. */
enum { ZA_STATS_OFF = 0, ZA_STATS_TEXT = 1, ZA_STATS_FILE = 2, ZA_STATS_JSON = 3 };

/* The smallest ZONEALLOC_LIMIT the heap honours (0 is "no limit"). */
#define ZA_LIMIT_MIN ((long long)1 << 20)

void za_options_init(void);
long long za_option(enum za_option opt);
/* ZONEALLOC_STATS=FILE: the file name, with %p replaced by the process id
 * (written into buf, which must hold 4096 bytes); NULL if not a file. */
const char *za_option_stats_path(char *buf, size_t cap);
/* ZONEALLOC_PROF_FILE as given (%p not replaced). */
const char *za_option_prof_file(void);
/* ZONEALLOC_TRACE as given (%p not replaced); NULL when not tracing. */
const char *za_option_trace_file(void);
/* The report file gets JSON: its name ends in .json. */
bool za_option_stats_path_json(void);

#endif
