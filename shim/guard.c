/*
 * Guard mode (guard.h): the checks, the quarantine, the no-access pages
 * and the SIGSEGV handler that names what a fault hit.
 */
#include "shim/guard.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <ucontext.h>
#include <unistd.h>

#include "policy/policy.h"
#include "shim/backend.h"
#include "shim/shim.h"

extern char **environ;

int za_guard_state;

#define POISON 0xdf   /* freed memory */
#define PAD    0xa5   /* between an object's end and its canary */
#define POISON_WORD ((uintptr_t)0xdfdfdfdfdfdfdfdfull)

enum qkind { Q_SLAB = 1, Q_RUN, Q_HUGE };
struct qent {
	void *p;
	size_t size;    /* what the program asked for */
	size_t bytes;   /* what the quarantine holds for it */
	int kind;
};
#define Q_SLOTS 65536u
#define RC_FILL_PAGES 16   /* run cache (below): blocks filled, not closed, in the quarantine */
#define RC_MAX_PAGES 64
#define RC_SLOTS 32
#define RC_BYTES ((size_t)2 << 20)
#define SPARSE_MIN ((size_t)128 << 10)   /* realloc: copies this long skip unwritten pages */

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static bool all_pages;   /* ZONEALLOC_GUARD_PAGES: small objects get pages too */
static uintptr_t canary_key;
static struct qent *ring;
static unsigned q_head, q_n;
static size_t q_bytes, q_limit = (size_t)1 << 20;

/* malloc(0): 16-byte slots of a no-access reservation, handed out in turn
 * (so a freed one comes back only after the others), a bit each. */
#define ZERO_SPAN  ((size_t)64 << 20)
#define ZERO_SLOTS (ZERO_SPAN / 16)
static char *zero_base;
static uint64_t *zero_bits;
static size_t zero_next;

static struct sigaction old_segv;

/* A page of each pattern, to compare with (libc's memcmp is many times
 * faster than a loop of ours); filled when guard mode starts, untouched
 * otherwise. */
ZA_BULK static unsigned char poison_page[ZA_PAGE_SIZE];
ZA_BULK static unsigned char pad_page[ZA_PAGE_SIZE];


/* ---- the mode: found at the first allocation ---- */

/* The value of environment variable `name` into out; before libc has set
 * environ (the dynamic loader's first calls), the kernel's copy. */
static bool env_get(const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	if (environ) {
		for (char **e = environ; *e; e++)
			if (!strncmp(*e, name, nl) && (*e)[nl] == '=') {
				size_t i = 0;
				for (const char *v = *e + nl + 1; *v && i + 1 < cap; v++)
					out[i++] = *v;
				out[i] = 0;
				return true;
			}
		return false;
	}
	int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char buf[512];
	size_t pos = 0, n_out = 0;
	bool match = true, value = false;
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c == 0) {
				if (value && match) {
					out[n_out] = 0;
					close(fd);
					return true;
				}
				pos = n_out = 0;
				match = true;
				value = false;
			} else if (value) {
				if (n_out + 1 < cap)
					out[n_out++] = c;
			} else if (match) {
				if (pos < nl)
					match = c == name[pos];
				else if (c == '=')
					value = true;
				else
					match = false;
				pos++;
			}
		}
	}
	close(fd);
	return false;
}

static bool word_on(const char *v)
{
	return !strcmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "true") ||
	       !strcasecmp(v, "yes");
}

/* A size with K, M or G (powers of 1024), as the options take it. */
static bool size_parse(const char *v, size_t *out)
{
	size_t n = 0;
	const char *s = v;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++)
		if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (size_t)(*s - '0'), &n))
			return false;
	unsigned shift = 0;
	if (*s == 'K' || *s == 'k')
		shift = 10;
	else if (*s == 'M' || *s == 'm')
		shift = 20;
	else if (*s == 'G' || *s == 'g')
		shift = 30;
	if (shift)
		s++;
	if (*s || (shift && n > (SIZE_MAX >> shift)))
		return false;
	*out = n << shift;
	return true;
}

static void guard_segv(int sig, siginfo_t *si, void *uc);
static size_t quarantine_drain(void);
static void tq_flush(void);
static int check_zone_slabs(struct za_zone *zone, struct za_check_result *res);
static int check_quarantine(struct za_check_result *res);

static void guard_start(void)
{
	char v[32];
	if (env_get("ZONEALLOC_QUARANTINE", v, sizeof v) && !size_parse(v, &q_limit))
		q_limit = (size_t)1 << 20;   /* (options.c says what it takes) */
	if (getrandom(&canary_key, sizeof canary_key, GRND_NONBLOCK) != (ssize_t)sizeof canary_key)
		canary_key = (uintptr_t)&canary_key * 0x9e3779b97f4a7c15ull ^ za_os_clock_ms();
	void *r;
	if (!za_os_map(Q_SLOTS * sizeof(struct qent), &r))
		ring = r;
	else
		q_limit = 0;
	memset(poison_page, POISON, sizeof poison_page);
	memset(pad_page, PAD, sizeof pad_page);
	za_slab_guard = true;
	za_slab_exit_hook = tq_flush;
	za_check_zone_hook = check_zone_slabs;
	za_check_hook = check_quarantine;
	za_policy_quarantine_hook = quarantine_drain;
	/* Every free now leaves free's inline path (it tests the untraced
	 * zone tag only), as while calls are traced. */
	za_region_retag_zones(ZA_REGION_TAG_TRACED);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = guard_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
}

bool za_guard_detect(void)
{
	za_lock(&guard_lock);
	int s = za_guard_state;
	if (s == ZA_GUARD_UNKNOWN) {
		char v[16];
		all_pages = env_get("ZONEALLOC_GUARD_PAGES", v, sizeof v) && word_on(v);
		bool on = all_pages || (env_get("ZONEALLOC_GUARD", v, sizeof v) && word_on(v));
		if (on)
			guard_start();
		s = on ? ZA_GUARD_ON : ZA_GUARD_OFF;
		__atomic_store_n(&za_guard_state, s, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&guard_lock);
	return s == ZA_GUARD_ON;
}

/* ---- patterns ---- */

/* The offset of the first byte in [p, p + n) that is not `c` (POISON or
 * PAD); n if none. Most slots and pads are a few words: those are read 32
 * bytes at a time here, where a call of libc's memcmp cost more than the
 * compare (glibc-bench's simple test: a fifth of guard mode's time in
 * memcmp's entry); from 256 bytes on memcmp (a page at a time) is faster. */
static inline size_t pattern_find(const void *p, size_t n, unsigned char c)
{
	const unsigned char *b = p;
	size_t i = 0;
	if (n < 256) {
		uint64_t w = (uint64_t)c * 0x0101010101010101ull;
		for (; i + 32 <= n; i += 32) {
			uint64_t x[4];
			memcpy(x, b + i, 32);
			if (unlikely(((x[0] ^ w) | (x[1] ^ w) | (x[2] ^ w) | (x[3] ^ w)) != 0))
				break;
		}
		for (; i + 8 <= n; i += 8) {
			uint64_t x;
			memcpy(&x, b + i, 8);
			if (unlikely(x != w))
				break;
		}
	} else {
		const unsigned char *ref = c == POISON ? poison_page : pad_page;
		while (i < n) {
			size_t k = n - i < ZA_PAGE_SIZE ? n - i : ZA_PAGE_SIZE;
			if (unlikely(memcmp(b + i, ref, k)))
				break;
			i += k;
		}
	}
	for (; i < n; i++)
		if (b[i] != c)
			return i;
	return n;
}

/* A slot's canary: a keyed hash of the object's address with the size
 * asked for in its top 16 bits. A linear overflow reaches the canary's
 * low bytes first, which are all hash: any change there is seen. */
static uintptr_t canary_hash(const void *p)
{
	return (canary_key ^ (uintptr_t)p) * 0x9e3779b97f4a7c15ull;
}

static uintptr_t canary_of(const void *p, size_t size)
{
	return canary_hash(p) ^ ((uintptr_t)size << 48);
}

/* The size the canary of the object at p (its slot `slot` bytes) records;
 * SIZE_MAX when it was overwritten. */
static size_t canary_size(const void *p, size_t slot)
{
	uintptr_t c = *(const uintptr_t *)(const void *)((const char *)p + slot - 8);
	uintptr_t x = c ^ canary_hash(p);
	size_t size = (size_t)(x >> 48);
	return (x << 16) == 0 && size + 8 <= slot ? size : SIZE_MAX;
}

/* ---- the quarantine ---- */

/* A guarded run's block, in its head's private bytes (the run is the
 * shim's while allocated; guard mode samples nothing for the profiler). */
struct guard_run {
	void *user;
	size_t size;
};

static struct guard_run *run_of(struct za_page *head)
{
	return (struct guard_run *)(void *)head->private;
}


static void release(const struct qent *e);
static void slab_release(void *p, size_t size);
static char *block_tail(const char *p, size_t size, const char *end);

/* The oldest entry out of the ring (guard_lock held, q_n > 0). */
static struct qent ring_pop(void)
{
	struct qent e = ring[q_head];
	q_bytes -= e.bytes;
	q_head = (q_head + 1) % Q_SLOTS;
	q_n--;
	return e;
}

/* Takes the oldest entries out, eight at a time under the lock, and
 * releases them outside it: while the quarantine is over its limit (the
 * newest entry always stays), or all of them. Returns the bytes released. */
static size_t quarantine_evict(bool all)
{
	struct qent out[8];
	unsigned n_out;
	size_t bytes = 0;
	do {
		za_lock(&guard_lock);
		n_out = 0;
		while (n_out < 8 && (all ? q_n > 0
					 : q_n > 1 && (q_bytes > q_limit || q_n == Q_SLOTS)))
			out[n_out++] = ring_pop();
		pthread_mutex_unlock(&guard_lock);
		for (unsigned i = 0; i < n_out; i++) {
			bytes += out[i].bytes;
			release(&out[i]);
		}
	} while (n_out == 8);
	return bytes;
}

/* Entries into the ring, and what is over the limit out of it, in one
 * lock round; released outside it. */
#define RING_IN 16
static void ring_push(const struct qent *in, unsigned n)
{
	struct qent out[2 * RING_IN];
	unsigned n_out = 0;
	za_lock(&guard_lock);
	for (unsigned i = 0; i < n; i++) {
		/* Full by count: the oldest goes first, or the entry would
		 * land on it (lost, and q_n past the ring: a slot released
		 * twice). */
		if (q_n == Q_SLOTS)
			out[n_out++] = ring_pop();
		ring[(q_head + q_n) % Q_SLOTS] = in[i];
		q_n++;
		q_bytes += in[i].bytes;
	}
	while (n_out < 2 * RING_IN && q_n > 1 && q_bytes > q_limit)
		out[n_out++] = ring_pop();
	pthread_mutex_unlock(&guard_lock);
	for (unsigned i = 0; i < n_out; i++)
		release(&out[i]);
	if (n_out == 2 * RING_IN)
		quarantine_evict(false);
}

/*
 * A thread's quarantine. Each thread with a heap keeps the slab objects
 * it frees in a FIFO of its own, bounded in bytes by the same limit, and
 * releases the oldest itself. The shared ring (above) holds the blocks
 * above the slab tier, the frees of threads without a heap, and what an
 * ending thread's own quarantine held.
 *
 * One shared ring for everything made each free of a small object an
 * entry under one lock (batched 16 at a time, still contended), and
 * released it on whichever thread next went over the limit: with two
 * threads most releases were remote frees into the other thread's slabs
 * (larson 22x the default mode's time, glibc-bench's thread test 8x; perf:
 * a third of the time in the ring, remote pushes and the cache misses of
 * the other thread's lines). A thread's own FIFO takes no lock, and
 * releases where the default mode would have freed.
 *
 * The cost: each thread may hold up to the limit, so a program's
 * quarantine grows with its threads; a thread's objects are reported as
 * they leave its FIFO, at its end (into the shared ring), at exit, or
 * when za_buddy_check() runs on that thread.
 */
#define TQ_SLOTS 32768u   /* a power of two */
struct tqent {
	void *p;
	uint32_t size;    /* what the program asked for */
	uint32_t bytes;   /* its slot */
};
struct tquar {
	unsigned head, n;
	size_t bytes;
	struct tqent e[TQ_SLOTS];
};
static __thread struct tquar *tq __attribute__((tls_model("initial-exec")));
#define TQ_AHEAD 4   /* quarantine(): prefetch distance, in objects */
#define TQ_SPARE 4
static struct tquar *tq_spare[TQ_SPARE];   /* ended threads' FIFOs (guard_lock) */
static unsigned tq_n_spare;

static struct qent tq_entry(const struct tqent *t)
{
	return (struct qent){ t->p, t->size, t->bytes, Q_SLAB };
}

/* This thread's quarantine into the shared ring (a thread's end, or
 * before it empties or checks the quarantine), and its FIFO unmapped. */
static void tq_flush(void)
{
	struct tquar *t = tq;
	if (!t)
		return;
	tq = NULL;
	while (t->n) {
		struct qent in[RING_IN];
		unsigned k = 0;
		for (; k < RING_IN && t->n; k++, t->n--, t->head = (t->head + 1) & (TQ_SLOTS - 1))
			in[k] = tq_entry(&t->e[t->head]);
		ring_push(in, k);
	}
	t->head = 0;
	t->bytes = 0;
	/* Kept for the next thread (a program that starts a thread per task
	 * would map and fault in a FIFO for each). */
	za_lock(&guard_lock);
	bool kept = tq_n_spare < TQ_SPARE;
	if (kept)
		tq_spare[tq_n_spare++] = t;
	pthread_mutex_unlock(&guard_lock);
	if (!kept)
		za_os_unmap(t, sizeof *t);
}

static ZA_NOINLINE struct tquar *tq_new(void)
{
	void *m = NULL;
	za_lock(&guard_lock);
	if (tq_n_spare)
		m = tq_spare[--tq_n_spare];
	pthread_mutex_unlock(&guard_lock);
	if (!m && za_os_map(sizeof(struct tquar), &m))
		return NULL;
	return tq = m;
}

static void quarantine(void *p, size_t size, size_t bytes, int kind)
{
	struct qent e = { p, size, bytes, kind };
	if (!q_limit) {
		release(&e);
		return;
	}
	/* (A thread without a heap has no end hook: its frees go to the
	 * shared ring, as does a block's.) */
	struct tquar *t = tq;
	if (kind != Q_SLAB || za_tls_heap->is_empty_sentinel || (!t && !(t = tq_new()))) {
		ring_push(&e, 1);
		return;
	}
	t->e[(t->head + t->n) & (TQ_SLOTS - 1)] = (struct tqent){ p, (uint32_t)size, (uint32_t)bytes };
	t->n++;
	t->bytes += bytes;
	while (t->n > 1 && (t->bytes > q_limit || t->n == TQ_SLOTS)) {
		struct tqent *o = &t->e[t->head];
		/* The object a few frees from leaving, fetched before its check
		 * reads it (it has waited out of the cache). */
		if (t->n > TQ_AHEAD)
			__builtin_prefetch(t->e[(t->head + TQ_AHEAD) & (TQ_SLOTS - 1)].p);
		t->head = (t->head + 1) & (TQ_SLOTS - 1);
		t->n--;
		t->bytes -= o->bytes;
		slab_release(o->p, o->size);
	}
}

static void slab_release(void *p, size_t size)
{
	struct za_zone *zone = za_zone_of(p);
	struct za_slab *slab = za_slab_of_object(p);
	size_t slot = za_classes[za_slab_class(slab)].size;
	size_t at = pattern_find(p, slot, POISON);
	if (unlikely(at < slot)) {
		za_misuse("use after free: the freed %zu-byte object at %p was written at offset %zu "
			  "(0x%x where the free pattern 0x%x was), found as it left the quarantine",
			  size, p, at, ((unsigned char *)p)[at], POISON);
		memset(p, POISON, slot);   /* (warn) it leaks, as a freed slot */
		return;
	}
	za_shim_free_in_zone(zone, p);
}

/*
 * Guarded runs kept for reuse. A run's life in guard mode took three
 * `mprotect` calls (its guard page closed, the block closed for the
 * quarantine, all of it opened to go back to the heap); the two that take
 * access away flush the TLB of every CPU running the process, and on this
 * project's VMs each cost 20-60 us (test-stress: a fifth of guard mode's
 * time). So:
 *  - a block of up to RC_FILL_PAGES pages waits in the quarantine filled
 *    with the free pattern, as a slab object does, checked as it leaves
 *    (a read after free sees the pattern; a write is found then, not as it
 *    happens); larger blocks are closed as before;
 *  - a run leaving the quarantine (up to RC_MAX_PAGES) is kept here as it
 *    is, its guard page still closed, and a block of the same page count
 *    takes it: its pages are opened (giving access needs no TLB flush) or,
 *    filled, checked for the pattern again.
 * A filled block of a size used over and over then costs no `mprotect` at
 * all. The cache is FIFO, bounded in entries and bytes (guard_lock); an
 * allocation short of memory empties it with the quarantine.
 */
struct rcent {
	char *base;
	uint32_t pages;   /* the block's pages (the guard page after them) */
	uint32_t open;    /* bytes from base that are accessible (the pattern) */
};
static struct rcent rc[RC_SLOTS];
static unsigned rc_n;
static size_t rc_bytes;

/* Whether a block of `pages` pages waits in the quarantine filled (not
 * closed): never when every allocation asked for pages of its own. */
static bool run_filled(uint32_t pages)
{
	return pages <= RC_FILL_PAGES && !all_pages;
}

/* The bytes from quarantined block e's first page `base` to its tail: what
 * a filled block (of `pages` pages) holds the pattern in. */
static size_t filled_bytes(const struct qent *e, const char *base, uint32_t pages)
{
	return (size_t)(block_tail(e->p, e->size, base + ((size_t)pages << ZA_PAGE_SHIFT)) - base);
}

/* A run (guarded, leaving the quarantine) back to the heap: opened whole. */
static void run_give_back(struct za_zone *zone, uint32_t pfn, char *base)
{
	struct za_page *head = za_page_at(zone, pfn);
	if (za_os_protect(base, (size_t)head->count << ZA_PAGE_SHIFT, true) != 0)
		return;   /* kept no-access, out of the heap's reach: a leak */
	head->flags &= (uint8_t)~(ZA_PGF_GUARD | ZA_PGF_GUARD_FREED);
	za_shim_free_run(zone, pfn, base);
}

/* Whether kept run c still holds the free pattern where it is open;
 * false after a report (`handout`: as it is handed out again; else found
 * as it left the quarantine, or `found`). */
static bool rc_unwritten(const struct rcent *c, bool handout, const char *found)
{
	size_t at = pattern_find(c->base, c->open, POISON);
	if (likely(at == c->open))
		return true;
	struct za_zone *zone = za_zone_of(c->base);
	const struct guard_run *was = run_of(za_page_at(zone, za_pfn_of(zone, c->base)));
	za_misuse("use after free: the freed %zu-byte block at %p%s was written at offset %zd "
		  "%s(0x%x where the free pattern 0x%x was)%s", was->size, was->user,
		  handout ? ", being handed out again," : "",
		  (ssize_t)(c->base + at - (char *)was->user), handout ? "after it was freed " : "",
		  (unsigned char)c->base[at], POISON,
		  handout ? "" : found ? found : ", found as it left the quarantine");
	return false;
}

/* A kept run back to the heap (unless written: then it leaks, after the
 * report). */
static void rc_give_back(const struct rcent *c)
{
	if (!rc_unwritten(c, false, NULL))
		return;
	struct za_zone *zone = za_zone_of(c->base);
	run_give_back(zone, za_pfn_of(zone, c->base), c->base);
}

/* Keeps the run; false when it is too large for the cache. The oldest
 * entries make room, given back outside the lock. */
static bool rc_put(const struct rcent *c)
{
	size_t bytes = (size_t)(c->pages + 1) << ZA_PAGE_SHIFT;
	if (c->pages > RC_MAX_PAGES)
		return false;
	struct rcent out[RC_SLOTS];
	unsigned n_out = 0;
	za_lock(&guard_lock);
	while (rc_n && (rc_n == RC_SLOTS || rc_bytes + bytes > RC_BYTES)) {
		out[n_out++] = rc[0];
		rc_bytes -= (size_t)(rc[0].pages + 1) << ZA_PAGE_SHIFT;
		memmove(rc, rc + 1, --rc_n * sizeof *rc);
	}
	rc[rc_n++] = *c;
	rc_bytes += bytes;
	pthread_mutex_unlock(&guard_lock);
	for (unsigned i = 0; i < n_out; i++)
		rc_give_back(&out[i]);
	return true;
}

/* The newest kept run of `pages` pages, out of the cache. */
static bool rc_take(uint32_t pages, struct rcent *out)
{
	bool found = false;
	za_lock(&guard_lock);
	for (unsigned i = rc_n; i-- > 0;)
		if (rc[i].pages == pages) {
			*out = rc[i];
			rc_bytes -= (size_t)(pages + 1) << ZA_PAGE_SHIFT;
			memmove(rc + i, rc + i + 1, (--rc_n - i) * sizeof *rc);
			found = true;
			break;
		}
	pthread_mutex_unlock(&guard_lock);
	return found;
}

/* Every kept run back to the heap; the bytes. */
static size_t rc_drain(void)
{
	size_t bytes = 0;
	struct rcent c;
	for (;;) {
		za_lock(&guard_lock);
		bool any = rc_n > 0;
		if (any) {
			c = rc[--rc_n];
			rc_bytes -= (size_t)(c.pages + 1) << ZA_PAGE_SHIFT;
		}
		pthread_mutex_unlock(&guard_lock);
		if (!any)
			return bytes;
		bytes += (size_t)(c.pages + 1) << ZA_PAGE_SHIFT;
		rc_give_back(&c);
	}
}

static void release(const struct qent *e)
{
	if (e->kind == Q_SLAB) {
		slab_release(e->p, e->size);
		return;
	}
	struct za_region *r = za_region_of(e->p);
	if (e->kind == Q_HUGE) {
		struct za_huge *h = (struct za_huge *)r;
		if (za_os_protect((void *)h->region.base, h->region.size, true) != 0)
			return;   /* kept no-access, out of the heap's reach: a leak */
		h->guard = h->guard_freed = false;
		h->reopened = true;
		za_huge_free(h);
		return;
	}
	struct za_zone *zone = (struct za_zone *)r;
	uint32_t pfn = za_pfn_of(zone, e->p);
	struct za_page *head = za_page_at(zone, pfn);
	char *base = (char *)((uintptr_t)e->p & ~(uintptr_t)(ZA_PAGE_SIZE - 1));
	uint32_t pages = head->count - 1;
	size_t open = 0;
	if (run_filled(pages))
		open = filled_bytes(e, base, pages);
	/* (A filled block is checked once: as the cache hands it out, or as
	 * it leaves the cache for the heap.) */
	struct rcent c = { base, pages, (uint32_t)open };
	if (!rc_put(&c))
		rc_give_back(&c);
}

/* za_reclaim, malloc_trim and an allocation short of memory: everything
 * in the quarantine (the shared ring, and this thread's: other threads'
 * are theirs) leaves it, checked as it goes, so what the program freed
 * can be used again or go back to the OS. */
static size_t quarantine_drain(void)
{
	tq_flush();
	size_t bytes = quarantine_evict(true);
	return bytes + rc_drain();
}

/* ---- allocation ---- */

static void *zero_alloc(void)
{
	za_lock(&guard_lock);
	if (!zero_base) {
		void *b, *m;
		if (za_os_reserve(ZERO_SPAN, &b)) {
			pthread_mutex_unlock(&guard_lock);
			return za_shim_nomem(ZA_ENOMEM_OS);
		}
		if (za_os_map(ZERO_SLOTS / 8, &m)) {
			za_os_unmap(b, ZERO_SPAN);
			pthread_mutex_unlock(&guard_lock);
			return za_shim_nomem(ZA_ENOMEM_OS);
		}
		zero_base = b;
		zero_bits = m;
	}
	for (size_t k = 0; k < ZERO_SLOTS; k++) {
		size_t i = (zero_next + k) % ZERO_SLOTS;
		if (!(zero_bits[i / 64] & ((uint64_t)1 << (i % 64)))) {
			zero_bits[i / 64] |= (uint64_t)1 << (i % 64);
			zero_next = i + 1;
			pthread_mutex_unlock(&guard_lock);
			return zero_base + i * 16;
		}
	}
	pthread_mutex_unlock(&guard_lock);
	return za_shim_nomem(ZA_ENOMEM_OS);
}

static bool is_zero(const void *p)
{
	return zero_base && (uintptr_t)p - (uintptr_t)zero_base < ZERO_SPAN;
}

static void *slab_alloc(unsigned cls, size_t size, bool zero)
{
	char *p = za_slab_alloc_exact(cls);
	if (!p)
		return NULL;
	/* Objects come back from the quarantine long after they were freed,
	 * out of the cache: the next pop's link is fetched while this one is
	 * checked. */
	struct za_slab *next = za_tls_heap->cur[cls];
	if (likely(next->free))
		__builtin_prefetch(next->free);
	size_t slot = za_classes[cls].size;
	uintptr_t *w = (uintptr_t *)(void *)p;
	/* Freed objects kept the pattern through the quarantine (the first 16
	 * bytes are the free list's); a slot never handed out carries the
	 * fresh mark instead (slab.c), and whatever its pages held. */
	bool fresh = w[slot / 8 - 1] == za_slab_fresh_mark(p);
	size_t at = fresh ? slot : 16 + pattern_find(p + 16, slot - 16, POISON);
	if (unlikely(at < slot))
		za_misuse("use after free: the %zu-byte slot at %p, being handed out again, was "
			  "written at offset %zu after it was freed (0x%x where the free pattern "
			  "0x%x was)", slot, (void *)p, at, (unsigned char)p[at], POISON);
	memset(p + size, PAD, slot - 8 - size);
	*(uintptr_t *)(void *)(p + slot - 8) = canary_of(p, size);
	if (zero)
		memset(p, 0, size);
	else   /* what is not written reads as the pattern, never old data */
		memset(p, POISON, fresh || size < 16 ? size : 16);
	return p;
}

/* Where a block's no-access tail starts: the page after its last byte.
 * The room past that page (realloc's headroom) is no-access with the
 * guard page, so an overflow there faults at once, and neither a pad
 * memset nor the check at free touches it: only the bytes from the
 * block's end to that page hold the pad. */
static char *block_tail(const char *p, size_t size, const char *end)
{
	uintptr_t t = ((uintptr_t)p + size + ZA_PAGE_SIZE - 1) & ~(uintptr_t)(ZA_PAGE_SIZE - 1);
	return t < (uintptr_t)end ? (char *)t : (char *)end;
}

/* A block of `pages` pages from the run cache, laid out as block_alloc
 * lays one out; NULL when none is kept (or after a report). */
static char *rc_alloc(size_t size, size_t room, size_t align, bool zero, uint32_t pages)
{
	struct rcent c;
	if (!rc_take(pages, &c))
		return NULL;
	char *base = c.base, *end = base + ((size_t)pages << ZA_PAGE_SHIFT);
	struct za_zone *zone = za_zone_of(base);
	uint32_t pfn = za_pfn_of(zone, base);
	struct za_page *head = za_page_at(zone, pfn);
	struct guard_run *was = run_of(head);
	if (!rc_unwritten(&c, true, NULL))
		return NULL;   /* (warn) it leaks */
	char *p = (char *)(((uintptr_t)end - room) & ~(uintptr_t)(align - 1));
	char *tail = block_tail(p, size, end);
	size_t open = (size_t)(tail - base);
	if (open > c.open ? za_os_protect(base + c.open, open - c.open, true) != 0
	    : open < c.open && za_os_protect(base + open, c.open - open, false) != 0) {
		run_give_back(zone, pfn, base);
		return NULL;
	}
	head->flags &= (uint8_t)~ZA_PGF_GUARD_FREED;
	*was = (struct guard_run){ p, size };
	memset(base, PAD, (size_t)(p - base));
	memset(p + size, PAD, (size_t)(tail - p) - size);
	if (zero)
		memset(p, 0, size);
	return p;
}

/* A block above the slab tier: whole pages and one no-access page after
 * them; the block's room (its size, or more where realloc grows it) ends
 * against it (on the 16-byte or larger alignment asked for); the bytes
 * before it in its first page, and those past the size up to the next
 * page, hold the pad; the room's pages past that are no-access too. */
static void *block_alloc(size_t size, size_t room, size_t align, bool zero)
{
	size_t pages = ((room ? room : 1) + ZA_PAGE_SIZE - 1) >> ZA_PAGE_SHIFT;
	if (pages == 0 || pages > (SIZE_MAX >> ZA_PAGE_SHIFT) - 2)
		return za_shim_nomem(ZA_ENOMEM_TOO_LARGE);
	if (align <= ZA_PAGE_SIZE && pages <= RC_MAX_PAGES) {
		char *kept = rc_alloc(size, room, align, zero, (uint32_t)pages);
		if (kept)
			return kept;
	}
	size_t total = (pages + 1) << ZA_PAGE_SHIFT;
	char *base = za_shim_malloc_large(total, align > ZA_PAGE_SIZE ? align : 0, zero);
	if (!base)
		return NULL;
	char *end = base + (pages << ZA_PAGE_SHIFT);
	char *p = align > ZA_PAGE_SIZE ? base : (char *)(((uintptr_t)end - room) & ~(uintptr_t)(align - 1));
	struct za_region *r = za_region_of(base);
	if (!r)
		return base;   /* a backend's: no guard */
	/* A block without its guard would be one whose overflows go unseen:
	 * when the pages cannot be closed (the process is at its
	 * vm.max_map_count), the allocation fails instead. */
	char *tail = block_tail(p, size, end);
	size_t closed = (size_t)(end - tail) + ZA_PAGE_SIZE;
	if (za_os_protect(tail, closed, false) != 0) {
		/* Given back as a block leaving the quarantine is: opened again
		 * in case part was closed (or, if even that fails, kept from
		 * the heap: a leak, not a fault). */
		if (r->kind == ZA_REGION_HUGE)
			release(&(struct qent){ .p = base, .kind = Q_HUGE });
		else
			run_give_back((struct za_zone *)r, za_pfn_of((struct za_zone *)r, base), base);
		return za_shim_nomem(ZA_ENOMEM_OS);
	}
	if (r->kind == ZA_REGION_HUGE) {
		struct za_huge *h = (struct za_huge *)r;
		h->guard = true;
		h->guard_size = size;
		h->guard_user = (uintptr_t)p;
	} else {
		struct za_zone *zone = (struct za_zone *)r;
		struct za_page *head = za_page_at(zone, za_pfn_of(zone, base));
		head->flags |= ZA_PGF_GUARD;
		*run_of(head) = (struct guard_run){ p, size };
	}
	memset(base, PAD, (size_t)(p - base));
	memset(p + size, PAD, (size_t)(tail - p) - size);
	return p;
}

void *za_guard_alloc(size_t size, size_t align, bool zero)
{
	if (za_backend_serving())
		return za_backend_alloc(size ? size : 1, align, zero);
	if (align < 16)
		align = 16;
	if (size == 0 && align == 16)
		return zero_alloc();   /* (its slots are 16 bytes apart: no more aligned) */
	if (size <= ZA_SLAB_MAX - 8 && !all_pages) {
		unsigned cls = align <= 16 ? za_size_class(size + 8) : za_shim_aligned_class(size + 8, align);
		if (cls < ZA_NCLASSES)
			return slab_alloc(cls, size, zero);
	}
	return block_alloc(size, size, align, zero);
}

/* ---- what a pointer is ---- */

struct gblock {
	enum qkind kind;
	size_t size;       /* asked for */
	size_t slot;       /* slab: the slot; block: its pages, guard included */
	char *base;        /* block: its first page */
	bool freed;        /* block: quarantined */
	struct za_slab *slab;
	struct za_page *head;
	struct za_huge *huge;
};

/* What p is: true for a guarded block (not its start: *start false);
 * false for anything else (a slab object is found by its caller). */
static bool block_find(const void *p, struct gblock *b, bool *start)
{
	struct za_region *r = za_region_of(p);
	if (!r)
		return false;
	if (r->kind == ZA_REGION_HUGE) {
		struct za_huge *h = (struct za_huge *)r;
		if (!h->guard)
			return false;
		*b = (struct gblock){ .kind = Q_HUGE, .size = h->guard_size, .slot = h->usable,
				      .base = (char *)h->region.base, .freed = h->guard_freed,
				      .huge = h };
		*start = (uintptr_t)p == h->guard_user;
		return true;
	}
	struct za_zone *zone = (struct za_zone *)r;
	uint32_t pfn = za_pfn_of(zone, p);
	/* The block starts in its run's first page. */
	struct za_page *head = za_page_at(zone, pfn);
	if (head->state != ZA_PG_RUN || !(head->flags & ZA_PGF_GUARD))
		return false;
	*b = (struct gblock){ .kind = Q_RUN, .slot = (size_t)head->count << ZA_PAGE_SHIFT,
			      .size = run_of(head)->size,
			      .base = (char *)((uintptr_t)p & ~(uintptr_t)(ZA_PAGE_SIZE - 1)),
			      .freed = head->flags & ZA_PGF_GUARD_FREED, .head = head };
	*start = p == run_of(head)->user;
	return true;
}

static void *block_user(const struct gblock *b)
{
	return b->kind == Q_HUGE ? (void *)b->huge->guard_user : run_of(b->head)->user;
}

/* The pads around a block, checked; false after a report. */
static bool block_pads(const struct gblock *b, const char *call)
{
	char *p = block_user(b);
	char *end = b->base + b->slot - ZA_PAGE_SIZE;
	size_t at = pattern_find(b->base, (size_t)(p - b->base), PAD);
	if (unlikely(at < (size_t)(p - b->base))) {
		za_misuse("%s(%p): heap underflow: the %zu bytes before the %zu-byte block at %p "
			  "were written (0x%x where 0x%x was, %zu bytes before it)", call,
			  (void *)p, (size_t)(p - b->base), b->size, (void *)p,
			  (unsigned char)b->base[at], PAD, (size_t)(p - b->base) - at);
		return false;
	}
	size_t tail = (size_t)(block_tail(p, b->size, end) - p) - b->size;
	at = pattern_find(p + b->size, tail, PAD);
	if (unlikely(at < tail)) {
		za_misuse("%s(%p): heap overflow: the %zu-byte block at %p was written past its end, "
			  "at offset %zu (0x%x where 0x%x was)", call, (void *)p, b->size, (void *)p,
			  b->size + at, (unsigned char)p[b->size + at], PAD);
		return false;
	}
	return true;
}

#define SLAB_FREED  (SIZE_MAX - 1)   /* slab_checked: the caller names it */
#define SLAB_BAD    SIZE_MAX         /* slab_checked: reported */
#define SLAB_NEVER  (SIZE_MAX - 2)   /* slab_checked: reported; on a free list, untouched */

/* The object at p of slab `slab`, checked: its size; SLAB_FREED when it
 * is not live, SLAB_BAD after a report. */
static size_t slab_checked(struct za_slab *slab, void *p, const char *call)
{
	size_t slot = za_classes[za_slab_class(slab)].size;
	uintptr_t *w = p;
	if ((uintptr_t)w[1] == (za_slab_keys.mark ^ (uintptr_t)p) ||
	    (w[0] == POISON_WORD && w[slot / 8 - 1] == POISON_WORD))
		return SLAB_FREED;
	if (w[slot / 8 - 1] == za_slab_fresh_mark(p)) {
		za_misuse("%s(%p): the %zu-byte slab slot at %p was never allocated", call, p, slot, p);
		return SLAB_NEVER;
	}
	size_t size = canary_size(p, slot);
	if (unlikely(size == SIZE_MAX)) {
		za_misuse("%s(%p): heap overflow: the canary after the object at %p (a %zu-byte slot) "
			  "was overwritten (written past its end)", call, p, p, slot);
		return SLAB_BAD;
	}
	size_t at = pattern_find((char *)p + size, slot - 8 - size, PAD);
	if (unlikely(at < slot - 8 - size)) {
		za_misuse("%s(%p): heap overflow: the %zu-byte object at %p was written past its end, "
			  "at offset %zu (0x%x where 0x%x was)", call, p, size, p, size + at,
			  ((unsigned char *)p)[size + at], PAD);
		return SLAB_BAD;
	}
	return size;
}

static void sized_misuse(void *p, size_t size, size_t have, const char *call)
{
	za_misuse("%s(%p, %zu): size does not match the allocation (%zu bytes)", call, p, size, have);
}

void za_guard_free(void *p, size_t size, size_t align, bool sized, const char *call)
{
	if (!p)
		return;
	if (is_zero(p)) {
		size_t i = ((uintptr_t)p - (uintptr_t)zero_base) / 16;
		za_lock(&guard_lock);
		bool live = !((uintptr_t)p & 15) && (zero_bits[i / 64] & ((uint64_t)1 << (i % 64)));
		if (live && !(sized && size))
			zero_bits[i / 64] &= ~((uint64_t)1 << (i % 64));
		pthread_mutex_unlock(&guard_lock);
		if (!live)
			za_misuse("%s(%p): double free of a 0-byte allocation (or a pointer into one)",
				  call, p);
		else if (sized && size)
			sized_misuse(p, size, 0, call);
		return;
	}
	struct za_slab *slab = za_shim_slab_of(p, call);
	if (slab) {
		if (unlikely(slab == &za_slab_sink))
			return;
		size_t have = slab_checked(slab, p, call);
		if (have == SLAB_FREED) {
			uintptr_t *w = p;
			if ((uintptr_t)w[1] == (za_slab_keys.mark ^ (uintptr_t)p))
				za_slab_free(slab, p);   /* the default mode's check names it */
			else
				za_misuse("%s(%p): double free of the %u-byte slab object (it is in "
					  "the quarantine)", call, p, za_classes[za_slab_class(slab)].size);
			return;
		}
		if (have == SLAB_NEVER)
			return;
		if (have == SLAB_BAD) {
			/* (warn) It leaks, carrying the free pattern, so the
			 * checker reads it as freed, not as live and broken. */
			memset(p, POISON, za_classes[za_slab_class(slab)].size);
			return;
		}
		if (unlikely(sized && size != have)) {
			sized_misuse(p, size, have, call);
			return;
		}
		if (unlikely(align > 1 && ((uintptr_t)p & (align - 1)))) {
			za_misuse("%s(%p): pointer is not aligned to %zu", call, p, align);
			return;
		}
		size_t slot = za_classes[za_slab_class(slab)].size;
		memset(p, POISON, slot);
		quarantine(p, have, slot, Q_SLAB);
		return;
	}
	struct gblock b;
	bool start;
	if (!block_find(p, &b, &start)) {
		za_shim_free_slow(p, call);   /* names it: double free, not ours, ... */
		return;
	}
	if (b.freed) {
		za_misuse("%s(%p): double free of the %zu-byte block at %p (it is in the quarantine)",
			  call, p, b.size, block_user(&b));
		return;
	}
	if (!start) {
		za_misuse("%s(%p): interior pointer into the %zu-byte block at %p", call, p, b.size,
			  block_user(&b));
		return;
	}
	if (!block_pads(&b, call))
		return;
	if (unlikely(sized && size != b.size)) {
		sized_misuse(p, size, b.size, call);
		return;
	}
	if (unlikely(align > 1 && ((uintptr_t)p & (align - 1)))) {
		za_misuse("%s(%p): pointer is not aligned to %zu", call, p, align);
		return;
	}
	if (b.kind == Q_RUN && run_filled((uint32_t)(b.slot >> ZA_PAGE_SHIFT) - 1))
		memset(b.base, POISON, (size_t)(block_tail(p, b.size, b.base + b.slot - ZA_PAGE_SIZE) - b.base));
	else if (za_os_protect(b.base, b.slot - ZA_PAGE_SIZE, false) != 0)
		memset(p, POISON, b.size);   /* (at the map count's limit) reads see the pattern */
	if (b.kind == Q_HUGE)
		b.huge->guard_freed = true;
	else
		b.head->flags |= ZA_PGF_GUARD_FREED;
	quarantine(p, b.size, b.slot, b.kind);
}

/* The size of the live allocation at p (0 for malloc(0)'s); false after a
 * report (freed, overwritten, interior, not ours). */
static bool live_size(const void *p, const char *call, size_t *size)
{
	*size = 0;
	if (!p || is_zero(p))
		return p != NULL;
	struct za_slab *slab = za_shim_slab_of((void *)p, call);
	if (slab) {
		if (slab == &za_slab_sink)
			return false;
		size_t have = slab_checked(slab, (void *)p, call);
		if (have == SLAB_FREED)
			za_misuse("%s(%p): the %u-byte slab object was freed", call, p,
				  za_classes[za_slab_class(slab)].size);
		if (have == SLAB_FREED || have == SLAB_BAD || have == SLAB_NEVER)
			return false;
		*size = have;
		return true;
	}
	struct gblock b;
	bool start;
	if (!block_find(p, &b, &start)) {
		*size = za_shim_usable_size_plain(p, call);
		return *size != 0;
	}
	if (b.freed || !start) {
		za_misuse("%s(%p): %s the %zu-byte block at %p", call, p,
			  b.freed ? "the pointer is to a freed block:" : "interior pointer into", b.size,
			  block_user(&b));
		return false;
	}
	*size = b.size;
	return true;
}

size_t za_guard_usable_size(const void *p, const char *call)
{
	size_t size;
	live_size(p, call, &size);
	return size;
}

/* Copies n bytes from src to dst, which start at the same offset in
 * their pages. Whole pages of src the program never wrote (in neither
 * memory nor swap) are not read, and dst's pages there are given back to
 * read as zero: a block that moves copied megabytes it had reserved and
 * never used, and faulted them in twice over (the default mode grows such
 * a block in place or remaps it). */
static void copy_sparse(char *dst, const char *src, size_t n)
{
	const char *lo = (const char *)(((uintptr_t)src + ZA_PAGE_SIZE - 1) & ~(uintptr_t)(ZA_PAGE_SIZE - 1));
	const char *hi = (const char *)(((uintptr_t)src + n) & ~(uintptr_t)(ZA_PAGE_SIZE - 1));
	if (hi <= lo || (size_t)(hi - lo) < SPARSE_MIN) {
		memcpy(dst, src, n);
		return;
	}
	memcpy(dst, src, (size_t)(lo - src));
	uint64_t held[ZA_OS_PAGEMAP_MAX / 64];
	for (const char *at = lo; at < hi;) {
		size_t pages = (size_t)(hi - at) >> ZA_PAGE_SHIFT;
		if (pages > ZA_OS_PAGEMAP_MAX)
			pages = ZA_OS_PAGEMAP_MAX;
		if (!za_os_pages_held(at, pages, held))
			memset(held, 0xff, sizeof held);
		for (size_t i = 0; i < pages;) {
			bool h = held[i / 64] >> (i % 64) & 1;
			size_t j = i + 1;
			while (j < pages && (bool)(held[j / 64] >> (j % 64) & 1) == h)
				j++;
			const char *from = at + (i << ZA_PAGE_SHIFT);
			char *to = dst + (from - src);
			size_t len = (j - i) << ZA_PAGE_SHIFT;
			if (h)
				memcpy(to, from, len);
			else if (za_os_decommit(to, len) != 0)
				memset(to, 0, len);
			i = j;
		}
		at += pages << ZA_PAGE_SHIFT;
	}
	memcpy(dst + (hi - src), hi, n - (size_t)(hi - src));
}

/* realloc in place when the size fits the slot (slab) or the room
 * (block), with the pad and canary moved to the new end; else moved, a
 * growing block with half as much again of room, so a string grown a few
 * bytes at a time is not copied at every step. The old block of a move is
 * freed into the quarantine: a stale pointer to it is a use after free. */
void *za_guard_realloc(void *p, size_t size)
{
	if (!p)
		return za_guard_alloc(size, 16, false);
	if (size == 0) {
		za_guard_free(p, 0, 0, false, "realloc");
		return NULL;
	}
	size_t have;
	if (!live_size(p, "realloc", &have)) {
		errno = EINVAL;
		return NULL;   /* misuse, reported (warn) */
	}
	struct za_slab *slab = is_zero(p) ? NULL : za_shim_slab_of(p, "realloc");
	struct gblock b;
	bool start;
	if (slab) {
		size_t slot = za_classes[za_slab_class(slab)].size;
		if (size + 8 <= slot) {
			memset((char *)p + size, PAD, slot - 8 - size);
			*(uintptr_t *)(void *)((char *)p + slot - 8) = canary_of(p, size);
			return p;
		}
	} else if (!is_zero(p) && block_find(p, &b, &start)) {
		char *end = b.base + b.slot - ZA_PAGE_SIZE;
		if (size <= (size_t)(end - (char *)p)) {
			char *was = block_tail(p, b.size, end), *tail = block_tail(p, size, end);
			/* (If the pages cannot be opened or closed, it moves.) */
			if (tail > was ? za_os_protect(was, (size_t)(tail - was), true) == 0
			    : tail == was || za_os_protect(tail, (size_t)(was - tail), false) == 0) {
				memset((char *)p + size, PAD, (size_t)(tail - (char *)p) - size);
				if (b.kind == Q_HUGE)
					b.huge->guard_size = size;
				else
					run_of(b.head)->size = size;
				return p;
			}
		}
	}
	size_t room = size, keep = have < size ? have : size;
	if (size > have && size > ZA_SLAB_MAX - 8 && size <= SIZE_MAX / 2)
		room = (size + size / 2 + 15) & ~(size_t)15;
	/* A long copy: the new block starts at the old one's offset in its
	 * page (block_alloc ends the room against the guard page), so that
	 * copy_sparse can skip whole pages. */
	bool sparse = keep >= SPARSE_MIN && room <= SIZE_MAX - ZA_PAGE_SIZE;
	if (sparse) {
		room = (room + 15) & ~(size_t)15;
		room += (-(uintptr_t)p - room) & (ZA_PAGE_SIZE - 1);
	}
	void *q = room > size || sparse ? block_alloc(size, room, 16, false)
					: za_guard_alloc(size, 16, false);
	if (!q)
		return NULL;
	if (sparse && !(((uintptr_t)q ^ (uintptr_t)p) & (ZA_PAGE_SIZE - 1)))
		copy_sparse(q, p, keep);
	else
		memcpy(q, p, keep);
	za_guard_free(p, 0, 0, false, "realloc");
	return q;
}

/* ---- faults in no-access pages ---- */

static void segv_say(uintptr_t a, bool write)
{
	const char *how = write ? "write" : "read";
	char line[256];
	size_t n = 0;
	if (is_zero((void *)a)) {
		n = za_fmt(line, sizeof line,
			   "zonealloc: zero-size access: a %s at %p, into a 0-byte allocation "
			   "(malloc(0) in guard mode)\n", how, (void *)(a & ~(uintptr_t)15));
	} else {
		struct za_region *r = za_region_of((void *)a);
		struct gblock b;
		bool found = false;
		if (r && r->kind == ZA_REGION_HUGE) {
			struct za_huge *h = (struct za_huge *)r;
			if (h->guard) {
				b = (struct gblock){ .kind = Q_HUGE, .size = h->guard_size,
						     .slot = h->usable,
						     .base = (char *)h->region.base,
						     .freed = h->guard_freed, .huge = h };
				found = true;
			}
		} else if (r) {
			struct za_zone *zone = (struct za_zone *)r;
			uint32_t pfn = za_pfn_of(zone, (void *)a);
			/* The run's head is at most a run's length below. */
			for (uint32_t k = 0; k <= ZA_MAX_BLOCK_PAGES + 1 && k <= pfn; k++) {
				struct za_page *h = za_page_at(zone, pfn - k);
				if (h->state == ZA_PG_TAIL)
					continue;
				if (h->state == ZA_PG_RUN && (h->flags & ZA_PGF_GUARD) && h->count > k) {
					b = (struct gblock){
						.kind = Q_RUN, .slot = (size_t)h->count << ZA_PAGE_SHIFT,
						.size = run_of(h)->size,
						.base = za_page_addr(zone, pfn - k),
						.freed = h->flags & ZA_PGF_GUARD_FREED, .head = h };
					found = true;
				}
				break;
			}
		}
		if (found) {
			uintptr_t p = (uintptr_t)block_user(&b);
			if (b.freed)
				n = za_fmt(line, sizeof line,
					   "zonealloc: use after free: a %s at %p, offset %zd of the "
					   "freed %zu-byte block at %p\n", how, (void *)a,
					   (ssize_t)(a - p), b.size, (void *)p);
			else
				n = za_fmt(line, sizeof line,
					   "zonealloc: heap overflow: a %s at %p, offset %zu of the "
					   "%zu-byte block at %p (past its end, in its guard page)\n",
					   how, (void *)a, (size_t)(a - p), b.size, (void *)p);
		}
	}
	if (n)
		za_os_write(2, line, n);
}

static void guard_segv(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	ucontext_t *uc = ucv;
	bool write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
	segv_say((uintptr_t)si->si_addr, write);
	/* The default action (or the program's handler from before ours)
	 * when the access runs again. */
	sigaction(SIGSEGV, &old_segv, NULL);
}

/* ---- the checker, stats, fork ---- */

static int check_fail(struct za_check_result *res, int zone, uint32_t pfn, const char *what,
		      const void *p, size_t size)
{
	if (res) {
		res->zone = zone;
		res->pfn = pfn;
		res->order = -1;
		za_fmt(res->what, sizeof res->what, what, p, size);
	}
	return -1;
}

/* Every live object of the zone's slabs: its canary and pad (a free slot
 * carries the free pattern where the canary would be, or the free mark). */
static int check_zone_slabs(struct za_zone *zone, struct za_check_result *res)
{
	/* A slab's head is in plane 0 (the checker fails a slab of a lower
	 * order): one entry in 16 is read, and they share pages of the map. */
	for (uint32_t pfn = 0; pfn < ZA_ZONE_PAGES; pfn += ZA_MAP_PLANES) {
		struct za_page *page = za_page_at_plane0(zone, pfn);
		if (page->state != ZA_PG_SLAB)
			continue;
		struct za_slab *slab = za_page_slab(page);
		size_t slot = za_classes[za_slab_class(slab)].size;
		char *base = za_page_addr(zone, pfn);
		for (uint32_t i = 0; i < slab->carved; i++) {
			uintptr_t *w = (uintptr_t *)(void *)(base + (size_t)i * slot);
			if (w[slot / 8 - 1] == POISON_WORD ||
			    (uintptr_t)w[1] == (za_slab_keys.mark ^ (uintptr_t)w) ||
			    w[slot / 8 - 1] == za_slab_fresh_mark(w))
				continue;
			size_t size = canary_size(w, slot);
			if (size == SIZE_MAX)
				return check_fail(res, zone->index, pfn,
						  "guard: the canary after the object at %p (a %zu-byte "
						  "slot) was overwritten", w, slot);
			if (pattern_find((char *)w + size, slot - 8 - size, PAD) < slot - 8 - size)
				return check_fail(res, zone->index, pfn,
						  "guard: the object at %p (%zu bytes) was written past "
						  "its end", w, size);
		}
	}
	return 0;
}

/* Whether object e, quarantined (a slab object, or a filled block), no
 * longer holds the free pattern; *at: the first byte written. */
static bool entry_written(const struct qent *e, const unsigned char **at, size_t *read)
{
	const unsigned char *from;
	size_t n;
	if (e->kind == Q_RUN) {
		struct za_zone *zone = za_zone_of(e->p);
		uint32_t pages = za_page_at(zone, za_pfn_of(zone, e->p))->count - 1u;
		const char *base = (const char *)((uintptr_t)e->p & ~(uintptr_t)(ZA_PAGE_SIZE - 1));
		if (!run_filled(pages))
			return false;   /* closed: a write faults at once */
		from = (const unsigned char *)base;
		n = filled_bytes(e, base, pages);
	} else if (e->kind == Q_SLAB) {
		from = e->p;
		n = za_classes[za_slab_class(za_slab_of_object(e->p))].size;
	} else {
		return false;
	}
	*read += n;
	size_t i = pattern_find(from, n, POISON);
	*at = from + i;
	return unlikely(i < n);
}

/*
 * Whether an object in the quarantine (the ring, and this thread's own:
 * other threads' are theirs) no longer holds the free pattern: the first
 * such entry, copied to *out, and the byte written. Newest first, each
 * quarantine until `budget` bytes of it were read (and always its newest
 * entry): the checker runs it at every za_buddy_check(), which the fuzz
 * harnesses call every 64 operations, and reading a full quarantine each
 * time (1 MiB a thread, and the shared one) held fuzz_malloc in guard
 * mode to 350-950 execs/s. Older entries are checked as they leave.
 */
static bool quarantine_written(struct qent *out, const unsigned char **at, size_t budget)
{
	struct tquar *t = tq;
	size_t read = 0;
	for (unsigned i = t ? t->n : 0; i-- > 0 && read < budget;) {
		struct qent e = tq_entry(&t->e[(t->head + i) & (TQ_SLOTS - 1)]);
		if (entry_written(&e, at, &read)) {
			*out = e;
			return true;
		}
	}
	bool found = false;
	read = 0;
	za_lock(&guard_lock);
	for (unsigned i = q_n; i-- > 0 && !found && read < budget;) {
		const struct qent *e = &ring[(q_head + i) % Q_SLOTS];
		if (entry_written(e, at, &read)) {
			*out = *e;
			found = true;
		}
	}
	pthread_mutex_unlock(&guard_lock);
	return found;
}

/* At exit: a write into an object still in the quarantine is reported
 * like one found as it leaves (a short program, a fuzz target's run, may
 * end before anything leaves). */
void za_guard_exit(void)
{
	if (za_guard_state != ZA_GUARD_ON || !ring)
		return;
	/* (Kept runs: the cache is read under its lock, as the checker does.) */
	za_lock(&guard_lock);
	for (unsigned i = 0; i < rc_n; i++)
		if (!rc_unwritten(&rc[i], false, ", found at exit"))
			break;
	pthread_mutex_unlock(&guard_lock);
	struct qent e;
	const unsigned char *at;
	if (quarantine_written(&e, &at, SIZE_MAX))
		za_misuse("use after free: the freed %zu-byte %s at %p was written at offset %zd "
			  "(0x%x where the free pattern 0x%x was), found at exit", e.size,
			  e.kind == Q_SLAB ? "object" : "block", e.p,
			  (ssize_t)((const char *)at - (const char *)e.p), *at, POISON);
}

/* The quarantine's slab objects and filled blocks, and the kept runs:
 * still the free pattern (the newest CHECK_BUDGET bytes of each: see
 * quarantine_written). */
#define CHECK_BUDGET ((size_t)64 << 10)   /* the checker's read of each quarantine, and the cache */
static int check_quarantine(struct za_check_result *res)
{
	struct rcent written = { 0 };
	size_t read = 0;
	za_lock(&guard_lock);
	for (unsigned i = rc_n; i-- > 0 && !written.base && read < CHECK_BUDGET;) {
		read += rc[i].open;
		if (pattern_find(rc[i].base, rc[i].open, POISON) < rc[i].open)
			written = rc[i];
	}
	pthread_mutex_unlock(&guard_lock);
	if (written.base)
		return check_fail(res, -1, 0, "guard: the freed block in the run at %p (%zu pages) was "
				  "written in the run cache", written.base, written.pages);
	struct qent e;
	const unsigned char *at;
	if (!quarantine_written(&e, &at, CHECK_BUDGET))
		return 0;
	return check_fail(res, -1, 0, "guard: the freed object at %p (%zu bytes) was written in the "
			  "quarantine", e.p, e.size);
}

void za_guard_lock(void)
{
	za_lock(&guard_lock);
}

void za_guard_unlock(void)
{
	pthread_mutex_unlock(&guard_lock);
}

void za_guard_reset_child(void)
{
	pthread_mutex_init(&guard_lock, NULL);
}
