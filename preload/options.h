/*
 * ZONEALLOC_* options: a table of name, default and parsed value, read
 * from `environ` directly (no getenv, no stdio, no allocation), once.
 */
#ifndef ZA_OPTIONS_H
#define ZA_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

enum za_option {
	ZA_OPT_STATS,      /* ZONEALLOC_STATS=1: print the report at exit */
	ZA_OPT_CHECK,      /* ZONEALLOC_CHECK=1: run za_buddy_check at exit */
	ZA_OPT_LIMIT,      /* ZONEALLOC_LIMIT=256M: cap committed memory */
	ZA_OPT_DECAY_MS,   /* ZONEALLOC_DECAY_MS=1000: release free pages older */
	ZA_OPT_RECLAIM,    /* ZONEALLOC_RECLAIM=dontneed|free: how to release */
	ZA_OPT_BACKGROUND, /* ZONEALLOC_BACKGROUND=1: the background reclaimer */
	ZA_OPT_COUNT
};

void za_options_init(void);
long long za_option(enum za_option opt);

#endif
