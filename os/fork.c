/*
 * Late registration of the fork handlers (see za_lock in os/os.h).
 *
 * The one thread that registers marks the state busy first; any other
 * thread that comes to a lock meanwhile waits until the handlers are in,
 * so that no lock is taken by a second thread before fork() can see them.
 * pthread_atfork may allocate (its list grows); the registering thread's
 * own locks pass while it does.
 */
#include "os/os.h"

#include <sched.h>
#include <sys/single_threaded.h>

void (*za_fork_register)(void);

enum { FORK_NONE, FORK_REGISTERING, FORK_ARMED };
static int fork_state;
static __thread bool fork_registering __attribute__((tls_model("initial-exec")));

void za_fork_arm(bool force)
{
	void (*reg)(void) = __atomic_load_n(&za_fork_register, __ATOMIC_ACQUIRE);
	if (!reg || fork_registering)
		return;   /* no handlers (the core library alone), or ours: pass */
	if (!force && __libc_single_threaded)
		return;
	int state = FORK_NONE;
	if (__atomic_compare_exchange_n(&fork_state, &state, FORK_REGISTERING, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		fork_registering = true;
		reg();
		fork_registering = false;
		__atomic_store_n(&fork_state, FORK_ARMED, __ATOMIC_RELEASE);
		return;
	}
	while (__atomic_load_n(&fork_state, __ATOMIC_ACQUIRE) != FORK_ARMED)
		sched_yield();
}

/* A single-threaded process (until its first pthread_create) pays a
 * load and a compare per lock, no call. */
static inline void fork_arm_before_lock(void)
{
	if (unlikely(__atomic_load_n(&fork_state, __ATOMIC_ACQUIRE) != FORK_ARMED) &&
	    !__libc_single_threaded)
		za_fork_arm(false);
}

void za_lock(pthread_mutex_t *m)
{
	fork_arm_before_lock();
	pthread_mutex_lock(m);
}

int za_trylock(pthread_mutex_t *m)
{
	fork_arm_before_lock();
	return pthread_mutex_trylock(m);
}
