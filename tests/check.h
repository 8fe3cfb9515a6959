/* A tiny test harness: CHECK counts and reports, main returns the verdict. */
#ifndef ZA_TEST_CHECK_H
#define ZA_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int za_test_checks, za_test_failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		za_test_checks++;                                              \
		if (!(cond)) {                                                 \
			za_test_failures++;                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_MSG(cond, ...)                                                   \
	do {                                                                   \
		za_test_checks++;                                              \
		if (!(cond)) {                                                 \
			za_test_failures++;                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

/* Verifies the buddy invariants and reports the first broken one. */
#define CHECK_HEAP()                                                           \
	do {                                                                   \
		struct za_check_result za_cr_;                                 \
		int za_rc_ = za_buddy_check(&za_cr_);                          \
		CHECK_MSG(za_rc_ == 0, "za_buddy_check: zone %d pfn %lu order %d: %s", \
			  za_cr_.zone, (unsigned long)za_cr_.pfn, za_cr_.order,  \
			  za_cr_.what);                                        \
	} while (0)

static inline int test_done(const char *name)
{
	printf("%s: %d checks, %d failed\n", name, za_test_checks, za_test_failures);
	return za_test_failures ? 1 : 0;
}

#endif
