/*
 * Sampled heap profiling (ZONEALLOC_PROF=1), after tcmalloc's sampler: each
 * thread counts down the bytes it allocates from an exponentially
 * distributed interval of mean ZONEALLOC_PROF_RATE; the allocation that
 * crosses zero is sampled (a Poisson process over bytes, so a site's
 * sampled bytes, scaled by 1 / (1 - e^(-size/rate)), estimate its bytes
 * without bias). A sampled allocation records its stack and is served as
 * a page run (or a huge mapping), flagged in its head's page-map entry:
 * free of a slab object never looks, and free of a run tests one flag on a
 * path that loads that entry anyway.
 *
 * The countdown is the thread's `za_tls.prof_left`, beside its heap
 * pointer (slab.h), subtracted by malloc,
 * calloc and operator new (shim.h); while profiling is off it starts at
 * INT64_MAX and is never used up, so the fast path pays a subtraction
 * and a branch that is never taken.
 */
#ifndef ZA_PROF_H
#define ZA_PROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

/* The allocation that crossed the countdown: sampled (or, the first time
 * a thread gets here, the countdown drawn and the allocation plain).
 * `caller` is the program's return address, where the recorded stack
 * starts. */
ZA_NOINLINE void *za_prof_alloc(size_t size, bool zero, void *caller);

/* Starts profiling (options read): the mean interval in bytes, the file
 * written at exit (%p: the process id), whether SIGUSR2 writes one too,
 * and where the text summary goes at exit (-1: nowhere). */
void za_prof_start(size_t rate, const char *path, bool on_sigusr2, int report_fd);
bool za_prof_active(void);
/* At exit: the profile file and the text summary. */
void za_prof_exit(void);

/* A sampled block is freed (its record is `sample`). */
void za_prof_forget(void *sample);
/* The size a sampled block was asked for; 0 when p is not sampled. */
size_t za_prof_sampled_size(const void *p);

struct za_prof_stats {
	uint64_t samples, live_samples;
	uint64_t live_bytes;       /* asked for by the live sampled allocations */
	uint64_t rate;
};
void za_prof_stats_get(struct za_prof_stats *st);
/* Fork: the records' lock, taken before every allocator lock. */
void za_prof_lock(void);
void za_prof_unlock(void);
void za_prof_reset_child(void);

#endif
