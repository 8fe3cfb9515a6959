/*
 * Caller intent -> allocation policy (kernel: gfp_to_alloc_flags), and the
 * names of the outcomes.
 */
#include "policy/policy.h"

#include "os/os.h"

const struct za_policy za_policy_default = {
	.may_reclaim = true,
	.may_drain = true,
	.may_use_reserve = false,
	.may_block = false,
	.nofail = false,
	.zero = false,
	.warn = true,
	.max_retries = 3,
};

za_status za_policy_from_flags(za_flags flags, struct za_policy *out)
{
	if (flags & ~ZA_F_ALL)
		return ZA_EINVAL;
	/* ATOMIC promises not to block; NOFAIL promises to wait as long as it
	 * takes. NORETRY promises to give up; NOFAIL never does. */
	if ((flags & ZA_F_NOFAIL) && (flags & (ZA_F_ATOMIC | ZA_F_NORETRY)))
		return ZA_EINVAL;

	struct za_policy p = za_policy_default;
	p.zero = flags & ZA_F_ZERO;
	p.warn = !(flags & ZA_F_NOWARN);
	if (flags & ZA_F_HIGH)
		p.may_use_reserve = true;
	if (flags & ZA_F_NORETRY)
		p.max_retries = 0;
	if (flags & ZA_F_ATOMIC) {
		p.may_reclaim = false;
		p.may_drain = false;
		p.may_block = false;
		p.max_retries = 0;
	}
	if (flags & ZA_F_NOFAIL) {
		p.nofail = true;
		p.may_block = true;
		/* The kernel lets __GFP_NOFAIL dip into reserves so it can make
		 * progress while others are freeing. */
		p.may_use_reserve = true;
	}
	*out = p;
	return ZA_OK;
}

static const char *const status_names[ZA_STATUS_COUNT] = {
	[ZA_OK] = "ok",
	[ZA_ENOMEM_LIMIT] = "out of memory: heap limit reached",
	[ZA_ENOMEM_OS] = "out of memory: the OS refused to map more",
	[ZA_ENOMEM_TOO_LARGE] = "out of memory: request can never be served",
	[ZA_ENOMEM_FRAGMENTED] = "out of memory: free pages too fragmented",
	[ZA_EINVAL] = "invalid argument",
};

ZA_EXPORT const char *za_status_str(za_status status)
{
	if ((unsigned)status >= ZA_STATUS_COUNT)
		return "unknown status";
	return status_names[status];
}
