/*
 * The checker checked: each case corrupts one invariant of a zone on
 * purpose (under the zone lock), asserts that za_buddy_check fails and
 * names the zone, pfn, order and invariant, then restores the original
 * bytes and asserts that the check passes again.
 */
#include "buddy/buddy.h"
#include "tests/buddy_test.h"
#include "tests/check.h"

#define TOP (ZA_MAX_ORDER - 1)
#define TOP_BLOCKS (ZA_ZONE_PAGES / ZA_MAX_BLOCK_PAGES)
#define NONE ZA_PFN_NONE

/* Everything of a zone that a case may touch. */
struct zone_copy {
	struct za_page *pages;
	uint64_t resident[ZA_ZONE_PAGES / 64];
	uint32_t free_head[ZA_FREE_LISTS][ZA_MAX_ORDER], free_tail[ZA_FREE_LISTS][ZA_MAX_ORDER];
	uint32_t nr_free[ZA_MAX_ORDER];
	uint16_t list_mask[ZA_FREE_LISTS];
	uint8_t pageblock_kind[ZA_ZONE_PAGES >> ZA_PAGEBLOCK_ORDER];
	uint32_t free_mask, pages_free, pages_released;
	uint8_t slab_map[ZA_ZONE_PAGES];
};

static struct zone_copy saved;

static void corrupt_begin(struct za_zone *z)
{
	pthread_mutex_lock(&z->lock);
	memcpy(saved.pages, z->pages, (size_t)ZA_ZONE_PAGES * sizeof(struct za_page));
	memcpy(saved.resident, z->resident, sizeof saved.resident);
	memcpy(saved.slab_map, z->slab_map, sizeof saved.slab_map);
	memcpy(saved.free_head, z->free_head, sizeof saved.free_head);
	memcpy(saved.free_tail, z->free_tail, sizeof saved.free_tail);
	memcpy(saved.nr_free, z->nr_free, sizeof saved.nr_free);
	memcpy(saved.list_mask, z->list_mask, sizeof saved.list_mask);
	memcpy(saved.pageblock_kind, z->pageblock_kind, sizeof saved.pageblock_kind);
	saved.free_mask = atomic_load(&z->free_mask);
	saved.pages_free = atomic_load(&z->pages_free);
	saved.pages_released = atomic_load(&z->pages_released);
}

static void corrupt_end(struct za_zone *z)
{
	pthread_mutex_unlock(&z->lock);
}

static void repair(struct za_zone *z)
{
	pthread_mutex_lock(&z->lock);
	memcpy(z->pages, saved.pages, (size_t)ZA_ZONE_PAGES * sizeof(struct za_page));
	memcpy(z->resident, saved.resident, sizeof saved.resident);
	memcpy(z->slab_map, saved.slab_map, sizeof saved.slab_map);
	memcpy(z->free_head, saved.free_head, sizeof saved.free_head);
	memcpy(z->free_tail, saved.free_tail, sizeof saved.free_tail);
	memcpy(z->nr_free, saved.nr_free, sizeof saved.nr_free);
	memcpy(z->list_mask, saved.list_mask, sizeof saved.list_mask);
	memcpy(z->pageblock_kind, saved.pageblock_kind, sizeof saved.pageblock_kind);
	atomic_store(&z->free_mask, saved.free_mask);
	atomic_store(&z->pages_free, saved.pages_free);
	atomic_store(&z->pages_released, saved.pages_released);
	pthread_mutex_unlock(&z->lock);
}

static void expect(const char *name, int zone, uint32_t pfn, int order, const char *what)
{
	struct za_check_result r;
	int rc = za_buddy_check(&r);
	CHECK_MSG(rc == -1, "%s: check passed", name);
	CHECK_MSG(za_buddy_check(NULL) == -1, "%s: check without a result passed", name);
	if (rc != -1)
		return;
	CHECK_MSG(r.zone == zone && r.pfn == pfn && r.order == order && strstr(r.what, what),
		  "%s: got zone %d pfn %lu order %d \"%s\", expected zone %d pfn %lu order %d \"%s\"",
		  name, r.zone, (unsigned long)r.pfn, r.order, r.what, zone, (unsigned long)pfn,
		  order, what);
}

static void after_repair(const char *name, struct za_zone *z)
{
	repair(z);
	struct za_check_result r;
	int rc = za_buddy_check(&r);
	CHECK_MSG(rc == 0, "%s: still broken after repair: zone %d pfn %lu: %s", name, r.zone,
		  (unsigned long)r.pfn, r.what);
}

/* Unlinks pfn from its free list, touching nothing else. */
static void unlink_only(struct za_zone *z, uint32_t pfn, unsigned k)
{
	struct za_page *p = za_page_at(z, pfn);
	unsigned l = za_free_list_of(z, pfn, k);
	if (p->prev != NONE)
		za_page_at(z, p->prev)->next = p->next;
	else
		z->free_head[l][k] = p->next;
	if (p->next != NONE)
		za_page_at(z, p->next)->prev = p->prev;
}

/* Links pfn (an allocated, resident block) at the head of free list k
 * with its counters, as __list_add does. */
static void link_free(struct za_zone *z, uint32_t pfn, unsigned k)
{
	struct za_page *p = za_page_at(z, pfn);
	unsigned l = za_free_list_of(z, pfn, k);
	p->state = ZA_PG_FREE;
	p->order = (uint8_t)k;
	p->count = 0;   /* no released pages */
	p->prev = NONE;
	p->next = z->free_head[l][k];
	if (p->next != NONE)
		za_page_at(z, p->next)->prev = pfn;
	else
		z->free_tail[l][k] = pfn;
	z->free_head[l][k] = pfn;
	z->list_mask[l] |= (uint16_t)(1u << k);
	z->nr_free[k]++;
	atomic_fetch_or(&z->free_mask, 1u << k);
	atomic_fetch_add(&z->pages_free, 1u << k);
}

int main(void)
{
	saved.pages = malloc((size_t)ZA_ZONE_PAGES * sizeof(struct za_page));
	if (!saved.pages)
		return 99;

	/* Zone 0 full of top blocks, so the cases below live in zone 1. */
	void *top[TOP_BLOCKS];
	for (unsigned i = 0; i < TOP_BLOCKS; i++) {
		top[i] = za_alloc_pages(TOP, ZA_F_NONE, NULL);
		CHECK(top[i] && za_zone_of(top[i]) == &za_zones[0]);
	}
	/* In zone 1: a run R of 3 pages and an order-2 block C (both through
	 * this thread's cache), then an order-5 spacer and an order-5 block A
	 * whose upper half B is a free order-5 block, then one page more so
	 * that the cache holds blocks (state ZA_PG_PCP) while we check. */
	void *run = za_alloc_pages_exact(3, ZA_F_NONE, NULL);
	void *c = za_alloc_pages(2, ZA_F_NONE, NULL);
	za_drain_caches();
	void *spacer = za_alloc_pages(5, ZA_F_NONE, NULL);
	void *a = za_alloc_pages(5, ZA_F_NONE, NULL);
	void *page = za_alloc_pages(0, ZA_F_NONE, NULL);
	CHECK(a && run && c && spacer && page);
	if (!a || !run || !c || !spacer || !page)
		return test_done("buddy_checker");
	struct za_zone *z = za_zone_of(a);
	CHECK(z == &za_zones[1] && za_zone_of(run) == z && za_zone_of(c) == z);
	const int zi = z->index;
	const uint32_t A = za_pfn_of(z, a), B = A ^ 32, R = za_pfn_of(z, run);
	CHECK((A & 32) == 0 && za_page_at(z, B)->state == ZA_PG_FREE && za_page_at(z, B)->order == 5);
	CHECK(za_page_at(z, R)->state == ZA_PG_RUN && za_page_at(z, R)->count == 3);
	unsigned cached = 0;
	for (uint32_t pfn = 0; pfn < ZA_ZONE_PAGES; pfn++)
		cached += za_page_at(z, pfn)->state == ZA_PG_PCP;
	CHECK(cached > 0);
	CHECK_HEAP();

	/* 0. The wilderness (the zone's unlisted tail) must be untouched. */
	CHECK(z->wild_pfn < ZA_ZONE_PAGES);
	corrupt_begin(z);
	za_page_at(z, ZA_ZONE_PAGES - 5)->state = ZA_PG_BLOCK;
	corrupt_end(z);
	expect("wilderness in use", zi, ZA_ZONE_PAGES - 5, -1, "wilderness page");
	after_repair("wilderness in use", z);
	corrupt_begin(z);
	atomic_fetch_and(&z->free_mask, ~(1u << ZA_MAX_ORDER));
	corrupt_end(z);
	expect("wilderness bit", zi, NONE, -1, "wilderness bit");
	after_repair("wilderness bit", z);
	/* The cases below want the zone's max-order blocks on their list. */
	pthread_mutex_lock(&z->lock);
	__za_wild_list_all(z);
	pthread_mutex_unlock(&z->lock);
	CHECK_HEAP();

	/* 1. A free block's order flipped down: its upper half is orphaned. */
	corrupt_begin(z);
	za_page_at(z, B)->order = 4;
	corrupt_end(z);
	expect("order flipped down", zi, B + 16, -1, "belongs to no block");
	after_repair("order flipped down", z);

	/* 2. Flipped up: B (pfn 32 mod 64) is not aligned to order 6. */
	corrupt_begin(z);
	za_page_at(z, B)->order = 6;
	corrupt_end(z);
	expect("misaligned", zi, B, 6, "not aligned to its order");
	after_repair("misaligned", z);

	/* 3. An allocated block whose order grew over its free buddy. */
	corrupt_begin(z);
	za_page_at(z, A)->order = 6;
	corrupt_end(z);
	expect("block covers a free block", zi, B, 6, "inside the block at pfn");
	after_repair("block covers a free block", z);

	/* 4. Unlinked from its free list, still marked free. */
	corrupt_begin(z);
	unlink_only(z, B, 5);
	corrupt_end(z);
	expect("unlinked", zi, NONE, 5, "page map has");
	after_repair("unlinked", z);

	/* 5. nr_free, free_mask and pages_free disagree with the lists. */
	corrupt_begin(z);
	z->nr_free[7]++;
	corrupt_end(z);
	expect("nr_free", zi, NONE, 7, "nr_free[7]");
	after_repair("nr_free", z);

	corrupt_begin(z);
	atomic_fetch_and(&z->free_mask, ~(1u << 9));
	corrupt_end(z);
	expect("free_mask", zi, NONE, 9, "free_mask bit 9");
	after_repair("free_mask", z);

	corrupt_begin(z);
	atomic_fetch_or(&z->free_mask, 1u << 20);
	corrupt_end(z);
	expect("free_mask high", zi, NONE, -1, "above the max order");
	after_repair("free_mask high", z);

	corrupt_begin(z);
	atomic_fetch_add(&z->pages_free, 1);
	corrupt_end(z);
	expect("pages_free", zi, NONE, -1, "pages_free");
	after_repair("pages_free", z);

	/* 6. Tail pages with a state: inside an allocated block, a free
	 * block and a run. */
	corrupt_begin(z);
	za_page_at(z, A + 3)->state = ZA_PG_BLOCK;
	corrupt_end(z);
	expect("tail of a block", zi, A + 3, 5, "inside the block at pfn");
	after_repair("tail of a block", z);

	corrupt_begin(z);
	za_page_at(z, B + 31)->state = ZA_PG_FREE;
	corrupt_end(z);
	expect("tail of a free block", zi, B + 31, 5, "inside the block at pfn");
	after_repair("tail of a free block", z);

	corrupt_begin(z);
	za_page_at(z, R + 2)->state = ZA_PG_PCP;
	corrupt_end(z);
	expect("tail of a run", zi, R + 2, za_page_at(z, R)->order, "inside the block at pfn");
	after_repair("tail of a run", z);

	/* 7. Two free buddies left unmerged: A marked free beside B. */
	corrupt_begin(z);
	link_free(z, A, 5);
	corrupt_end(z);
	expect("unmerged buddies", zi, A, 5, "not merged");
	after_repair("unmerged buddies", z);

	/* 8. Broken free-list links. */
	corrupt_begin(z);
	za_page_at(z, B)->next = ZA_ZONE_PAGES + 5;
	corrupt_end(z);
	expect("link outside", zi, ZA_ZONE_PAGES + 5, 5, "outside the zone");
	after_repair("link outside", z);

	uint32_t h9 = z->free_head[ZA_KIND_NONE][9];
	corrupt_begin(z);
	za_page_at(z, h9)->prev = 7;
	corrupt_end(z);
	expect("prev link", zi, h9, 9, "prev link is 7");
	after_repair("prev link", z);

	/* A listed block that is not free (allocated behind the list's back). */
	corrupt_begin(z);
	za_page_at(z, h9)->state = ZA_PG_BLOCK;
	corrupt_end(z);
	expect("listed but allocated", zi, h9, 9, "holds a block with state 2");
	after_repair("listed but allocated", z);

	/* 9. Residency: released pages are counted exactly, only free pages
	 * may be released, and resident free blocks come first on a list. */
	corrupt_begin(z);
	atomic_fetch_add(&z->pages_released, 1);
	corrupt_end(z);
	expect("pages_released", zi, NONE, -1, "pages_released");
	after_repair("pages_released", z);

	corrupt_begin(z);
	za_mark_resident(z, A + 3, 1, false);
	corrupt_end(z);
	expect("released page in a block", zi, A, 5, "allocated block has 1 released pages");
	after_repair("released page in a block", z);

	uint32_t nonres = 0;
	for (uint32_t i = 0; i < 32; i++)
		nonres += !za_page_resident(z, B + i);
	CHECK(za_page_at(z, B)->count == nonres);
	corrupt_begin(z);
	za_page_at(z, B)->count = nonres ^ 1;   /* and the zone total agrees with it */
	atomic_store(&z->pages_released, atomic_load(&z->pages_released) - nonres + (nonres ^ 1));
	corrupt_end(z);
	char what[64];
	snprintf(what, sizeof what, "free block counts %u released pages, has %u", nonres ^ 1,
		 nonres);
	expect("free block's released count", zi, B, 5, what);
	after_repair("free block's released count", z);

	uint32_t t1 = z->free_head[ZA_KIND_NONE][TOP], t2 = t1 == NONE ? NONE : za_page_at(z, t1)->next;
	CHECK(t2 != NONE && za_page_at(z, t1)->count == ZA_MAX_BLOCK_PAGES &&
	      za_page_at(z, t2)->count == ZA_MAX_BLOCK_PAGES);
	if (t2 != NONE) {
		corrupt_begin(z);
		za_page_at(z, t2)->count--;   /* now "resident", but behind a released block */
		atomic_fetch_sub(&z->pages_released, 1);
		corrupt_end(z);
		expect("list order", zi, t2, TOP, "resident pages after a released one");
		after_repair("list order", z);

		corrupt_begin(z);
		z->free_tail[ZA_KIND_NONE][TOP] = t1;
		corrupt_end(z);
		char tail[64];
		uint32_t last = t2;
		while (za_page_at(z, last)->next != NONE)
			last = za_page_at(z, last)->next;
		snprintf(tail, sizeof tail, "tail is %u, last block is %u", t1, last);
		expect("list tail", zi, last, TOP, tail);
		after_repair("list tail", z);
	}

	/* 10. Garbage in a head. */
	corrupt_begin(z);
	za_page_at(z, A)->state = 42;
	corrupt_end(z);
	expect("state", zi, A, -1, "page state 42 is corrupt");
	after_repair("state", z);

	corrupt_begin(z);
	za_page_at(z, A)->order = ZA_MAX_ORDER + 1;
	corrupt_end(z);
	expect("order range", zi, A, ZA_MAX_ORDER + 1, "out of range");
	after_repair("order range", z);

	corrupt_begin(z);
	za_page_at(z, R)->count = 0;
	corrupt_end(z);
	expect("run count", zi, R, -1, "exact run of 0 pages");
	after_repair("run count", z);

	/* A head that vanished: its pages belong to no block. */
	corrupt_begin(z);
	za_page_at(z, A)->state = ZA_PG_TAIL;
	corrupt_end(z);
	expect("lost head", zi, A, -1, "belongs to no block");
	after_repair("lost head", z);

	/* A slab head that the slab map does not know: free() would not
	 * find the slab of its objects. */
	corrupt_begin(z);
	za_page_at(z, A)->state = ZA_PG_SLAB;
	corrupt_end(z);
	expect("slab without map", zi, A, 5, "slab map byte 0 at pfn");
	after_repair("slab without map", z);

	/* A slab smaller than a page-map plane: free() would look for its
	 * head's entry in plane 0, where it is not (buddy.h: za_page_at). */
	corrupt_begin(z);
	za_page_at(z, A)->state = ZA_PG_SLAB;
	za_page_at(z, A)->order = ZA_MAP_PLANE_ORDER - 1;
	corrupt_end(z);
	expect("slab order", zi, A, ZA_MAP_PLANE_ORDER - 1, "below the page map's plane order");
	after_repair("slab order", z);

	/* A page block that the slab map calls a slab page: free() would
	 * take one of its addresses for a slab object. */
	corrupt_begin(z);
	z->slab_map[A + 3] = 1;
	corrupt_end(z);
	expect("slab map", zi, A + 3, 5, "slab map byte 1 at pfn");
	after_repair("slab map", z);

	/* 10b. Pageblock kinds: a free block on the list of a kind its
	 * pageblock no longer has, and a wholly free pageblock given a kind. */
	uint32_t pbA = A >> ZA_PAGEBLOCK_ORDER;
	CHECK(z->pageblock_kind[pbA] < ZA_KIND_NONE);
	corrupt_begin(z);
	z->pageblock_kind[pbA] = (uint8_t)((z->pageblock_kind[pbA] + 1) % ZA_KINDS);
	corrupt_end(z);
	{
		/* (which block is met first depends on the lists' order) */
		struct za_check_result r;
		int rc = za_buddy_check(&r);
		CHECK_MSG(rc == -1 && r.zone == zi && r.pfn >> ZA_PAGEBLOCK_ORDER == pbA &&
			  strstr(r.what, "holds a block of pageblock kind"),
			  "pageblock kind: rc %d zone %d pfn %lu \"%s\"", rc, r.zone,
			  (unsigned long)r.pfn, r.what);
	}
	after_repair("pageblock kind changed under its free blocks", z);

	uint32_t tfree = z->free_head[ZA_KIND_NONE][TOP];
	CHECK(tfree != NONE);
	if (tfree != NONE) {
		corrupt_begin(z);
		z->pageblock_kind[(tfree >> ZA_PAGEBLOCK_ORDER) + 1] = ZA_KIND_SLAB;
		corrupt_end(z);
		expect("kind of a free pageblock", zi, tfree + ZA_PAGEBLOCK_PAGES, -1,
		       "has kind 0 but is wholly free");
		after_repair("kind of a free pageblock", z);
	}

	/* 11. The first broken zone is reported: zone 0 before zone 1. */
	struct za_zone *z0 = &za_zones[0];
	corrupt_begin(z);
	z->nr_free[3]++;
	corrupt_end(z);
	pthread_mutex_lock(&z0->lock);
	CHECK(z0->nr_free[3] == 0);
	z0->nr_free[3] = 1;
	pthread_mutex_unlock(&z0->lock);
	expect("first zone", 0, NONE, 3, "nr_free[3] = 1, recount = 0");
	pthread_mutex_lock(&z0->lock);
	z0->nr_free[3] = 0;
	pthread_mutex_unlock(&z0->lock);
	expect("second zone", zi, NONE, 3, "nr_free[3]");
	after_repair("first zone", z);

	/* All restored: free everything and the heap is whole. */
	za_free_pages(a, 5);
	za_free_pages_exact(run, 3);
	za_free_pages(c, 2);
	za_free_pages(spacer, 5);
	za_free_pages(page, 0);
	for (unsigned i = 0; i < TOP_BLOCKS; i++)
		za_free_pages(top[i], TOP);
	za_drain_caches();
	CHECK_HEAP();
	CHECK(first_uncoalesced_zone() < 0);
	CHECK(pages_in_use() == 0);
	free(saved.pages);
	return test_done("buddy_checker");
}
