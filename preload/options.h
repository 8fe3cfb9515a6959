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
	ZA_OPT_COUNT
};

void za_options_init(void);
long long za_option(enum za_option opt);

#endif
