/*
 * libzonealloc.so loaded with dlopen by a program that is not linked with
 * it: the program's malloc stays glibc's, and the za_* functions found
 * with dlsym work from several threads, including one that existed before
 * the library was loaded (its thread-local heap pointer must be set up in
 * a thread the loader did not create) and ones created after. Frees cross
 * threads. The library path comes from ZA_LIB, else the build tree.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#include "tests/malloc_test.h"

#ifndef ZA_LIB_PATH
#define ZA_LIB_PATH "libzonealloc.so"
#endif

#define NTHREADS 4
#define OPS      50000
#define SLOTS    256

static void *(*my_malloc)(size_t);
static void (*my_free)(void *);
static void *(*my_realloc)(void *, size_t);
static size_t (*my_usable)(void *);
static int (*my_check)(struct za_check_result *);
static void *(*lib_malloc)(size_t);   /* the library's exported "malloc" */

static pthread_barrier_t loaded;
static void *handoff[NTHREADS][SLOTS];   /* freed by the next thread */
static pthread_barrier_t handed;

struct result {
	int errors;
	unsigned long ops;
};

static void *work(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct result *res = calloc(1, sizeof *res);   /* glibc's */
	struct test_rng rng;
	rng_seed(&rng, 31 + (uint64_t)id);
	void *slot[SLOTS] = { 0 };
	size_t size[SLOTS] = { 0 };

	for (int op = 0; op < OPS; op++) {
		unsigned k = rng_below(&rng, SLOTS);
		if (slot[k]) {
			size_t n = size[k] < 256 ? size[k] : 256;
			if (check_bytes(slot[k], n, (uintptr_t)slot[k]) != n)
				res->errors++;
			if (op & 1)
				my_free(slot[k]);
			else {
				size[k] = 1 + rng_below(&rng, 64 * 1024);
				slot[k] = my_realloc(slot[k], size[k]);
				if (!slot[k] || my_usable(slot[k]) < size[k])
					res->errors++;
				else
					fill_bytes(slot[k], size[k] < 256 ? size[k] : 256,
						   (uintptr_t)slot[k]);
				continue;
			}
			slot[k] = NULL;
		} else {
			size[k] = rng_below(&rng, 100) ? 1 + rng_below(&rng, 4096)
						      : 32 * 1024 + rng_below(&rng, 300 * 1024);
			slot[k] = (op & 3) == 3 ? lib_malloc(size[k]) : my_malloc(size[k]);
			if (!slot[k] || ((uintptr_t)slot[k] & 15) || my_usable(slot[k]) < size[k]) {
				res->errors++;
				continue;
			}
			fill_bytes(slot[k], size[k] < 256 ? size[k] : 256, (uintptr_t)slot[k]);
		}
		res->ops++;
	}
	/* Hand the survivors to the next thread, free the previous one's. */
	for (int k = 0; k < SLOTS; k++)
		handoff[id][k] = slot[k];
	pthread_barrier_wait(&handed);
	for (int k = 0; k < SLOTS; k++)
		my_free(handoff[(id + NTHREADS - 1) % NTHREADS][k]);
	return res;
}

/* A thread that exists before dlopen, and allocates only after. */
static void *early(void *arg)
{
	pthread_barrier_wait(&loaded);
	return work(arg);
}

int main(void)
{
	const char *path = getenv("ZA_LIB");
	if (!path || !*path)
		path = ZA_LIB_PATH;

	pthread_barrier_init(&loaded, NULL, 2);
	pthread_barrier_init(&handed, NULL, NTHREADS);
	pthread_t th[NTHREADS];
	pthread_create(&th[0], NULL, early, (void *)(intptr_t)0);

	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
		CHECK(lib != NULL);
		return test_done("dlopen");
	}
	my_malloc = (void *(*)(size_t))dlsym(lib, "za_malloc");
	my_free = (void (*)(void *))dlsym(lib, "za_free");
	my_realloc = (void *(*)(void *, size_t))dlsym(lib, "za_realloc");
	my_usable = (size_t (*)(void *))dlsym(lib, "za_malloc_usable_size");
	my_check = (int (*)(struct za_check_result *))dlsym(lib, "za_buddy_check");
	lib_malloc = (void *(*)(size_t))dlsym(lib, "malloc");
	CHECK(my_malloc && my_free && my_realloc && my_usable && my_check && lib_malloc);
	if (!(my_malloc && my_free && my_realloc && my_usable && my_check && lib_malloc))
		return test_done("dlopen");

	/* Loaded locally, it replaced nobody's malloc. */
	CHECK(dlsym(RTLD_DEFAULT, "malloc") != (void *)lib_malloc);
	void *g = malloc(100);
	CHECK(g && malloc_usable_size(g) < 112);   /* glibc: 104 */
	free(g);

	/* The main thread first, then the others. */
	void *p = my_malloc(100);
	CHECK(p && my_usable(p) == 112);
	my_free(p);

	pthread_barrier_wait(&loaded);
	for (int i = 1; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, work, (void *)(intptr_t)i);
	unsigned long ops = 0;
	int errors = 0;
	for (int i = 0; i < NTHREADS; i++) {
		struct result *res = NULL;
		pthread_join(th[i], (void **)&res);
		CHECK(res != NULL);
		if (res) {
			ops += res->ops;
			errors += res->errors;
			free(res);
		}
	}
	printf("%d threads (one older than the library), %lu ops through dlopen'ed %s\n",
	       NTHREADS, ops, path);
	CHECK(errors == 0);
	CHECK(ops > (unsigned long)NTHREADS * OPS / 2);
	struct za_check_result cr;
	int rc = my_check(&cr);
	CHECK_MSG(rc == 0, "za_buddy_check: zone %d pfn %lu: %s", cr.zone, (unsigned long)cr.pfn,
		  cr.what);
	/* Not closed: exiting threads of a longer-lived program would still
	 * run the library's thread-exit destructors. */
	return test_done("dlopen");
}
