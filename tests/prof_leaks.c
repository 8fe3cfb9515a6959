/*
 * A program with two leaking allocation sites and one that frees all it
 * takes, for the heap-profile test (test_prof.sh): 30,000,000 bytes stay
 * live from leak_small_site (30,000 x 1,000 B), 20,000,000 from
 * leak_large_site (400 x 50,000 B, on a second thread), and churn_site allocates and frees
 * 60,000,000 bytes (some with free_sized, some with operator new and the
 * sized operator delete, so sampled blocks meet the size checks). With "signal" as its argument it raises SIGUSR2 before exit.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *keep[30400];
static unsigned nkeep;

__attribute__((noinline)) static void leak_small_site(void)
{
	for (int i = 0; i < 30000; i++) {
		char *p = malloc(1000);
		if (!p)
			abort();
		memset(p, 1, 1000);
		keep[nkeep++] = p;
	}
}

__attribute__((noinline)) static void *leak_large_site(void *arg)
{
	(void)arg;
	for (int i = 0; i < 400; i++) {
		char *p = calloc(1, 50000);
		if (!p)
			abort();
		p[0] = 1;
		keep[30000 + i] = p;
	}
	return NULL;
}

__attribute__((noinline)) static void churn_site(void)
{
	void (*free_sized)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
	/* operator new(size_t) and the sized operator delete(void *, size_t),
	 * as zonealloc exports them */
	void *(*op_new)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "_Znwm");
	void (*op_delete_sized)(void *, size_t) =
		(void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "_ZdlPvm");
	static const size_t sizes[] = { 24, 200, 3000, 20000, 70000 };
	size_t total = 0;
	for (unsigned i = 0; total < 60000000; i++) {
		size_t n = sizes[i % 5];
		bool cxx = op_new && op_delete_sized && i % 3 == 0;
		char *p = cxx ? op_new(n) : malloc(n);
		if (!p)
			abort();
		p[n - 1] = 2;
		if (cxx)
			op_delete_sized(p, n);
		else if (free_sized && i % 2)
			free_sized(p, n);
		else
			free(p);
		total += n;
	}
}

int main(int argc, char **argv)
{
	leak_small_site();
	churn_site();
	/* On a thread of its own: threads started after profiling did are
	 * sampled too. */
	pthread_t t;
	if (pthread_create(&t, NULL, leak_large_site, NULL) || pthread_join(t, NULL))
		abort();
	nkeep += 400;
	if (argc > 1 && !strcmp(argv[1], "signal"))
		raise(SIGUSR2);
	printf("%u blocks kept\n", nkeep);
	return 0;
}
