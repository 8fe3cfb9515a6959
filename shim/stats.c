/*
 * Statistics: a snapshot gathered from every layer, and the heap report
 * that ZONEALLOC_STATS=1 prints at exit. Nothing here allocates.
 */
#include <string.h>

#include "buddy/buddy.h"
#include "policy/policy.h"

ZA_EXPORT void za_stats_get(struct za_stats *st)
{
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&za_zones_lock);
	st->zones_mapped_total = za_zone_stats.mapped;
	st->zones_unmapped_total = za_zone_stats.unmapped;
	pthread_mutex_unlock(&za_zones_lock);

	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		pthread_mutex_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			st->zones++;
			st->pages_total += ZA_ZONE_PAGES;
			st->pages_free += atomic_load(&zone->pages_free);
			for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
				st->free_blocks[k] += zone->nr_free[k];
				st->alloc_calls[k] += zone->alloc_calls[k];
				st->free_calls[k] += zone->free_calls[k];
			}
			st->splits += zone->splits;
			st->merges += zone->merges;
		}
		pthread_mutex_unlock(&zone->lock);
	}
	st->pages_cached = za_pcp_pages_cached();
	st->cache_drains = za_pcp_drain_count();

	struct za_policy_stats ps;
	za_policy_stats_get(&ps);
	st->slowpath_rounds = ps.slowpath_rounds;
	memcpy(st->enomem, ps.enomem, sizeof st->enomem);
}

ZA_EXPORT void za_stats_print(int fd)
{
	struct za_stats st;
	za_stats_get(&st);

	za_dprintf(fd, "zonealloc report\n");
	za_dprintf(fd, "  zones: %zu mapped now, %zu mapped in all, %zu returned to the OS\n",
		   st.zones, st.zones_mapped_total, st.zones_unmapped_total);
	za_dprintf(fd, "  pages: %zu in zones, %zu free, %zu in per-thread caches\n",
		   st.pages_total, st.pages_free, st.pages_cached);
	za_dprintf(fd, "  buddy: %llu splits, %llu merges\n",
		   (unsigned long long)st.splits, (unsigned long long)st.merges);
	za_dprintf(fd, "  order  block      free  taken  returned\n");
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		za_dprintf(fd, "  %5u  %5zuK  %8zu  %5llu  %8llu\n", k, (ZA_PAGE_SIZE << k) >> 10,
			   st.free_blocks[k], (unsigned long long)st.alloc_calls[k],
			   (unsigned long long)st.free_calls[k]);
	za_dprintf(fd, "  slow path: %llu rounds, %llu cache drains\n",
		   (unsigned long long)st.slowpath_rounds, (unsigned long long)st.cache_drains);
	for (int s = 1; s < ZA_STATUS_COUNT; s++)
		if (st.enomem[s])
			za_dprintf(fd, "  failures: %llu x %s\n", (unsigned long long)st.enomem[s],
				   za_status_str((za_status)s));
}
