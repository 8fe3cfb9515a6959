/*
 * Writing the stats as data (shim/stats_json.c): a fixed buffer and a
 * sink, so the same writers serve a descriptor and a stdio stream.
 */
#ifndef ZA_STATS_JSON_H
#define ZA_STATS_JSON_H

#include <stdarg.h>
#include <stddef.h>

#include "os/os.h"

struct za_out {
	void (*write)(void *ctx, const char *s, size_t n);
	void *ctx;
	size_t n;
	char buf[4096];
};

void za_out_fmt(struct za_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The JSON object (schema zonealloc.stats, version 1), flushed. */
void za_stats_json(struct za_out *o);
/* malloc_info(3)'s XML, flushed. */
void za_heap_info_xml(struct za_out *o);
/* The preload's options as a JSON object (preload/options.c). */
void za_options_json(struct za_out *o);

#endif
