/*
 * The background reclaimer: the kswapd of this heap. Opt-in
 * (ZONEALLOC_BACKGROUND=1), started on the first sign of pressure, it
 * sleeps until woken at the low watermark (or a decay time passes), then
 * releases retained memory until headroom is back at the high watermark and
 * every block older than the decay time is released. The thread is made
 * with no allocator lock held; after fork the child starts its own when it
 * needs one.
 */
#include "policy/policy.h"

#include <pthread.h>
#include <time.h>

#include "buddy/buddy.h"

void za_policy_decay_now(void);

static pthread_mutex_t bg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bg_cond = PTHREAD_COND_INITIALIZER;
static _Atomic bool bg_enabled, bg_started;
static bool bg_stop, bg_pending;
static pthread_t bg_thread;
static _Atomic uint64_t bg_wakeups;

uint64_t za_background_wakeups(void)
{
	return atomic_load(&bg_wakeups);
}

bool za_background_enabled(void)
{
	return atomic_load_explicit(&bg_enabled, memory_order_relaxed);
}

bool za_background_running(void)
{
	return atomic_load_explicit(&bg_started, memory_order_relaxed);
}

static void bg_work(void)
{
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	if (wm.limit) {
		struct za_policy p = za_policy_default;
		p.may_use_reserve = true;   /* headroom against the hard limit */
		size_t target = wm.high;
		size_t room = za_policy_budget(&p);
		if (room < target)
			za_policy_direct_reclaim(target - room);
		/* Still below the low watermark: the program's caches too
		 * (their frees are given back at once). */
		room = za_policy_budget(&p);
		if (room < wm.low && za_policy_shrink((target - room) << ZA_PAGE_SHIFT)) {
			room = za_policy_budget(&p);
			if (room < target)
				za_policy_direct_reclaim(target - room);
		}
	}
	za_policy_decay_now();
}

static void *bg_main(void *arg)
{
	(void)arg;
	za_lock(&bg_lock);
	while (!bg_stop) {
		if (!bg_pending) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t ms = za_policy_decay_ms() / 2 + 1;
			ts.tv_sec += (time_t)(ms / 1000);
			ts.tv_nsec += (long)(ms % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&bg_cond, &bg_lock, &ts);
		}
		if (bg_stop)
			break;
		bg_pending = false;
		pthread_mutex_unlock(&bg_lock);
		atomic_fetch_add_explicit(&bg_wakeups, 1, memory_order_relaxed);
		bg_work();
		za_lock(&bg_lock);
	}
	pthread_mutex_unlock(&bg_lock);
	return NULL;
}

void za_background_enable(bool on)
{
	atomic_store(&bg_enabled, on);
}

void za_background_wake(void)
{
	if (likely(!atomic_load_explicit(&bg_enabled, memory_order_relaxed)))
		return;
	if (!atomic_load_explicit(&bg_started, memory_order_acquire)) {
		bool expected = false;
		/* pthread_create allocates; the flag set first keeps that
		 * allocation from starting a second thread. */
		if (!atomic_compare_exchange_strong(&bg_started, &expected, true))
			return;
		za_lock(&bg_lock);
		bg_stop = false;
		bg_pending = true;
		pthread_mutex_unlock(&bg_lock);
		/* Its own thread: the child of a fork must learn it has none. */
		za_fork_arm(true);
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 64 << 10);
		if (pthread_create(&bg_thread, &attr, bg_main, NULL))
			atomic_store(&bg_started, false);
		pthread_attr_destroy(&attr);
		return;
	}
	za_lock(&bg_lock);
	if (!bg_pending) {
		bg_pending = true;
		pthread_cond_signal(&bg_cond);
	}
	pthread_mutex_unlock(&bg_lock);
}

void za_background_stop(void)
{
	if (!atomic_load(&bg_started))
		return;
	za_lock(&bg_lock);
	bg_stop = true;
	pthread_cond_signal(&bg_cond);
	pthread_mutex_unlock(&bg_lock);
	pthread_join(bg_thread, NULL);
	atomic_store(&bg_started, false);
}

void za_background_lock(void)
{
	za_lock(&bg_lock);
}

void za_background_unlock(void)
{
	pthread_mutex_unlock(&bg_lock);
}

/* The child of a fork has no reclaimer thread; it starts one on demand. */
void za_background_reset_child(void)
{
	pthread_mutex_init(&bg_lock, NULL);
	pthread_cond_init(&bg_cond, NULL);
	bg_stop = false;
	bg_pending = false;
	atomic_store(&bg_started, false);
}
