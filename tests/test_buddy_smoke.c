#include "zonealloc.h"
#include "tests/check.h"

int main(void)
{
	za_status st;
	void *p[ZA_MAX_ORDER];
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
		p[k] = za_alloc_pages(k, 0, &st);
		CHECK(p[k] && st == ZA_OK);
		CHECK(((uintptr_t)p[k] & ((ZA_PAGE_SIZE << k) - 1)) == 0);
		CHECK_HEAP();
	}
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		za_free_pages(p[k], k);
	CHECK_HEAP();
	za_drain_caches();
	struct za_stats s;
	za_stats_get(&s);
	CHECK(s.pages_free == s.pages_total);
	za_stats_print(1);
	return test_done("buddy_smoke");
}
