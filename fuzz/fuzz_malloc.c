/*
 * fuzz_malloc: the malloc family across every tier (slab, page runs, huge
 * mappings). Every allocation carries a pattern that is verified before it
 * is freed and after realloc moves it; usable sizes are written to the last
 * byte; alignment and zeroing promises are checked. The checker runs every
 * FUZZ_CHECK_EVERY operations and at the end, after everything is freed.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz/harness.h"

const char *const fuzz_name = "fuzz_malloc";

#define MAX_LIVE 128

struct live {
	uint8_t *p;
	size_t size;
	uint32_t tag;
	size_t align;   /* an aligned allocation's, until a realloc; 0: malloc's */
};

static struct live live[MAX_LIVE];
static int nlive;
static uint32_t next_tag;

void fuzz_init(void)
{
}

/* Sizes spread over the tiers: mostly small, some page runs, a few huge. */
static size_t pick_size(struct fuzz_in *in)
{
	uint8_t kind = fuzz_u8(in);
	switch (kind % 8) {
	case 0: case 1: case 2: case 3:
		return fuzz_u8(in);                          /* 0..255 */
	case 4: case 5:
		return fuzz_u16(in) % 32769;                 /* up to the slab max */
	case 6:
		return 32768 + (size_t)fuzz_u16(in) * 64;    /* page runs */
	default:
		/* Huge blocks (above the 4 MiB run maximum) touch megabytes
		 * in the library (calloc's clearing, realloc's copies) and
		 * the kernel (faults, unmaps): a thirty-second of the picks, and
		 * up to 8 MiB, leave the rest of the input fast. */
		if ((kind & 0xc0) == 0xc0)
			return ((size_t)fuzz_u8(in) << 15) + fuzz_u16(in); /* up to 8 MiB */
		return 32768 + (size_t)fuzz_u16(in) * 16;    /* page runs */
	}
}

/* A size whose touching (`cost` bytes: the fill's sampled pages, or the
 * library's clearing or copying) the input can afford, else a small one
 * from the same bytes. */
static size_t afford(size_t n, size_t cost)
{
	return n <= 256 || fuzz_afford(cost) ? n : n % 256;
}

static void track_aligned(uint8_t *p, size_t size, size_t align);

static void track(uint8_t *p, size_t size)
{
	track_aligned(p, size, 0);
}

static void track_aligned(uint8_t *p, size_t size, size_t align)
{
	next_tag++;
	size_t usable = za_malloc_usable_size(p);
	FUZZ_ASSERT(usable >= size, "usable %zu < requested %zu", usable, size);
	FUZZ_ASSERT(((uintptr_t)p & 15) == 0, "%p not 16-byte aligned", (void *)p);
	if (usable)
		p[usable - 1] = 0x5a;   /* writing up to the usable size is safe */
	fuzz_fill(p, size, next_tag);
	live[nlive++] = (struct live){ p, size, next_tag, align };
}

static void verify(const struct live *l)
{
	FUZZ_ASSERT(fuzz_verify(l->p, l->size, l->tag), "allocation %p (%zu bytes) was corrupted",
		    (void *)l->p, l->size);
}

void fuzz_one(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, data + size };
	int ops = 0;
	bool trimmed = false;

	fuzz_budget_reset();

	while (fuzz_more(&in) && ops++ < 400) {
		uint8_t op = fuzz_u8(&in);
		switch (op % 8) {
		case 0:
		case 1: { /* malloc */
			size_t n = pick_size(&in);
			if (nlive == MAX_LIVE)
				break;
			n = afford(n, fuzz_fill_cost(n));
			uint8_t *p = za_malloc(n);
			FUZZ_ASSERT(p, "malloc(%zu) failed: %s", n, za_status_str(za_last_status()));
			track(p, n);
			break;
		}
		case 2: { /* calloc */
			size_t n = fuzz_u8(&in) % 64, m = pick_size(&in) / 64 + 1;   /* up to 8 MiB */
			if (nlive == MAX_LIVE)
				break;
			if (n * m > 256 && !fuzz_afford(n * m))
				m = m % 4 + 1;   /* cleared in full unless fresh */
			uint8_t *p = za_calloc(n, m);
			FUZZ_ASSERT(p, "calloc(%zu, %zu) failed", n, m);
			FUZZ_ASSERT(fuzz_zero(p, n * m, next_tag + 1), "calloc(%zu, %zu) memory not zero",
				    n, m);
			track(p, n * m);
			break;
		}
		case 3: { /* realloc */
			if (!nlive)
				break;
			int i = fuzz_u8(&in) % nlive;
			size_t n = pick_size(&in);
			verify(&live[i]);
			struct live l = live[i];
			n = afford(n, (n < l.size ? n : l.size) + fuzz_fill_cost(n));   /* copied, filled */
			uint8_t *q = za_realloc(l.p, n);
			if (n == 0) {
				FUZZ_ASSERT(!q, "realloc(p, 0) returned %p", (void *)q);
				live[i] = live[--nlive];
				break;
			}
			FUZZ_ASSERT(q, "realloc to %zu failed", n);
			size_t keep = l.size < n ? l.size : n;
			FUZZ_ASSERT(fuzz_verify_prefix(q, keep, l.size, l.tag),
				    "realloc from %zu to %zu bytes lost contents", l.size, n);
			live[i] = live[--nlive];
			track(q, n);
			break;
		}
		case 4: { /* aligned */
			size_t align = (size_t)1 << (fuzz_u8(&in) % 22);
			size_t n = pick_size(&in);
			if (nlive == MAX_LIVE)
				break;
			n = afford(n, fuzz_fill_cost(n));
			uint8_t *p;
			if (op & 8) {
				p = za_memalign(align, n);
			} else {
				void *q = NULL;
				int rc = za_posix_memalign(&q, align < sizeof(void *) ? sizeof(void *) : align, n);
				FUZZ_ASSERT(rc == 0, "posix_memalign rc %d", rc);
				p = q;
			}
			FUZZ_ASSERT(p, "aligned %zu/%zu failed", align, n);
			FUZZ_ASSERT(((uintptr_t)p & (align - 1)) == 0, "%p not aligned to %zu", (void *)p,
				    align);
			/* posix_memalign raises the alignment to a pointer's. */
			size_t a = op & 8 || align >= sizeof(void *) ? align : sizeof(void *);
			track_aligned(p, n, a > 16 ? a : 0);
			break;
		}
		case 5:
		case 6: /* free */
			if (nlive) {
				int i = fuzz_u8(&in) % nlive;
				verify(&live[i]);
				if ((op & 8) && live[i].align)   /* C23: its own sized free */
					za_free_aligned_sized(live[i].p, live[i].align, live[i].size);
				else if (op & 8)
					za_free_sized(live[i].p, live[i].size);
				else
					za_free(live[i].p);
				live[i] = live[--nlive];
			}
			break;
		case 7: { /* errors that must fail cleanly */
			errno = 0;
			void *p = za_malloc(SIZE_MAX - (fuzz_u8(&in) & 0x7f));
			FUZZ_ASSERT(!p && errno == ENOMEM, "huge malloc: %p errno %d", p, errno);
			p = za_calloc(SIZE_MAX / 2, 3);
			FUZZ_ASSERT(!p && errno == ENOMEM, "calloc overflow: %p", p);
			p = za_aligned_alloc(24, 48);
			FUZZ_ASSERT(!p && errno == EINVAL, "aligned_alloc(24) gave %p", p);
			/* A trim gives every free page back, and each one
			 * faults when used again: one value in 64, which
			 * zero-filled inputs do not hold, once an input (on an
			 * eighth of the values, zero among them, trims were
			 * two thirds of a replayed queue's faults). */
			if ((fuzz_u8(&in) & 63) == 42 && !trimmed) {
				za_malloc_trim(0);
				trimmed = true;
			}
			break;
		}
		}
		FUZZ_CHECK_SOME(ops);
	}
	while (nlive) {
		verify(&live[nlive - 1]);
		za_free(live[--nlive].p);
	}
	FUZZ_CHECK_END();
}
