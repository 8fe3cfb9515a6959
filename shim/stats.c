/*
 * Statistics: a snapshot gathered from every layer, and the heap report
 * that ZONEALLOC_STATS=1 prints at exit. Nothing here allocates.
 */
#include <string.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "shim/backend.h"
#include "shim/shim.h"

ZA_EXPORT void za_stats_get(struct za_stats *st)
{
	memset(st, 0, sizeof *st);
	za_lock(&za_zones_lock);
	st->zones_mapped_total = za_zone_stats.mapped;
	st->zones_unmapped_total = za_zone_stats.unmapped;
	pthread_mutex_unlock(&za_zones_lock);

	int n = atomic_load(&za_nr_zones);
	for (int i = 0; i < n; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		za_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			st->zones++;
			st->pages_total += ZA_ZONE_PAGES;
			st->pages_free += atomic_load(&zone->pages_free);
			st->pages_released += atomic_load(&zone->pages_released);
			for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
				st->free_blocks[k] += __za_zone_free_blocks(zone, k);
				st->alloc_calls[k] += zone->alloc_calls[k];
				st->free_calls[k] += zone->free_calls[k];
			}
			st->splits += zone->splits;
			st->merges += zone->merges;
			size_t *by_kind[ZA_FREE_LISTS] = {
				[ZA_KIND_SLAB] = &st->pageblocks_slab, [ZA_KIND_RUN] = &st->pageblocks_run,
				[ZA_KIND_RESERVE] = &st->pageblocks_reserve,
				[ZA_KIND_NONE] = &st->pageblocks_free,
			};
			for (uint32_t pb = 0; pb < (ZA_ZONE_PAGES >> ZA_PAGEBLOCK_ORDER); pb++)
				(*by_kind[zone->pageblock_kind[pb] % ZA_FREE_LISTS])++;
			st->pageblock_fallbacks += zone->fallbacks;
			st->pageblock_claims += zone->claims;
		}
		pthread_mutex_unlock(&zone->lock);
	}
	st->pages_cached = za_pcp_pages_cached();
	st->cache_drains = za_pcp_drain_count();

	struct za_policy_stats ps;
	za_policy_stats_get(&ps);
	st->slowpath_rounds = ps.slowpath_rounds;
	st->decay_passes = ps.decay_passes;
	st->direct_reclaim_pages = ps.direct_reclaim_pages;
	st->background_wakeups = ps.background_wakeups;
	memcpy(st->enomem, ps.enomem, sizeof st->enomem);

	struct za_reclaim_stats rs;
	za_reclaim_stats_get(&rs);
	st->reclaim_passes = rs.passes;
	st->reclaimed_pages = rs.pages_released;
	st->madvise_calls = rs.madvise_calls;
	int64_t committed = atomic_load(&za_committed_pages);
	st->committed_bytes = committed > 0 ? (size_t)committed << ZA_PAGE_SHIFT : 0;
	struct za_watermarks wm;
	za_watermarks_get(&wm);
	st->limit_bytes = wm.limit << ZA_PAGE_SHIFT;
	struct za_backend_stats bs;
	za_backend_stats_get(&bs);
	st->backend = bs.name;
	st->backend_fallback = bs.fallback;
	st->backend_allocs = bs.allocs;
	st->backend_frees = bs.frees;
	st->backend_bytes = bs.live_bytes;
}

ZA_EXPORT void za_stats_print(int fd)
{
	struct za_stats st;
	za_stats_get(&st);

	za_dprintf(fd, "zonealloc report\n");
	if (st.backend_allocs || strcmp(st.backend, "zonealloc"))
		za_dprintf(fd, "  backend: %s%s: %llu allocations, %llu frees, %zu KiB live\n",
			   st.backend, st.backend_fallback ? " (fallback: zones could not be mapped)" : "",
			   (unsigned long long)st.backend_allocs, (unsigned long long)st.backend_frees,
			   st.backend_bytes >> 10);
	za_dprintf(fd, "  zones: %zu mapped now, %zu mapped in all, %zu returned to the OS\n",
		   st.zones, st.zones_mapped_total, st.zones_unmapped_total);
	za_dprintf(fd, "  pages: %zu in zones, %zu free, %zu in per-thread caches\n",
		   st.pages_total, st.pages_free, st.pages_cached);
	za_dprintf(fd, "  buddy: %llu splits, %llu merges\n",
		   (unsigned long long)st.splits, (unsigned long long)st.merges);
	za_dprintf(fd, "  pageblocks: %zu slab, %zu run, %zu reserve, %zu free; %llu fallbacks to "
		       "another kind's, %llu pageblocks claimed%s\n",
		   st.pageblocks_slab, st.pageblocks_run, st.pageblocks_reserve, st.pageblocks_free,
		   (unsigned long long)st.pageblock_fallbacks, (unsigned long long)st.pageblock_claims,
		   za_buddy_grouping ? "" : " (grouping off)");
	za_dprintf(fd, "  order  block      free  taken  returned\n");
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		za_dprintf(fd, "  %5u  %5zuK  %8zu  %5llu  %8llu\n", k, (ZA_PAGE_SIZE << k) >> 10,
			   st.free_blocks[k], (unsigned long long)st.alloc_calls[k],
			   (unsigned long long)st.free_calls[k]);
	za_dprintf(fd, "  slow path: %llu rounds, %llu cache drains\n",
		   (unsigned long long)st.slowpath_rounds, (unsigned long long)st.cache_drains);
	struct za_shrink_stats sh;
	za_policy_shrink_stats(&sh);
	if (sh.shrinkers || sh.rounds || sh.oom_calls || sh.compaction_calls)
		za_dprintf(fd, "  shrinkers: %u registered, %llu rounds, %llu calls, %llu KiB freed; "
			       "OOM handler called %llu times, compaction hook %llu\n",
			   sh.shrinkers, (unsigned long long)sh.rounds, (unsigned long long)sh.calls,
			   (unsigned long long)(sh.bytes_freed >> 10),
			   (unsigned long long)sh.oom_calls, (unsigned long long)sh.compaction_calls);
	if (st.limit_bytes)
		za_dprintf(fd, "  memory: %zu KiB committed of a %zu KiB limit, %zu KiB free and released\n",
			   st.committed_bytes >> 10, st.limit_bytes >> 10,
			   (st.pages_released * ZA_PAGE_SIZE) >> 10);
	else
		za_dprintf(fd, "  memory: %zu KiB committed (no limit), %zu KiB free and released\n",
			   st.committed_bytes >> 10, (st.pages_released * ZA_PAGE_SIZE) >> 10);
	struct za_slab_stats ss;
	struct za_huge_stats hs;
	za_slab_stats_get(&ss);
	za_huge_stats(&hs);
	za_dprintf(fd, "  slabs: %llu live, %llu made, %llu given back, %llu empty ones reused, "
		   "%llu remote frees (%llu to full slabs), %llu idle ones trimmed (%llu pages), "
		   "%llu objects lent to a smaller class\n",
		   (unsigned long long)ss.slabs_live, (unsigned long long)ss.slabs_created,
		   (unsigned long long)ss.slabs_released, (unsigned long long)ss.slabs_reused,
		   (unsigned long long)ss.remote_frees, (unsigned long long)ss.delayed_frees,
		   (unsigned long long)ss.idle_trims, (unsigned long long)ss.idle_pages,
		   (unsigned long long)ss.lent);
	za_dprintf(fd, "  thread heaps: %llu live, %llu made, %llu adopted from exited threads, "
		   "%llu waiting\n",
		   (unsigned long long)ss.heaps_live, (unsigned long long)ss.heaps_created,
		   (unsigned long long)ss.heaps_adopted, (unsigned long long)ss.heaps_orphaned);
	za_dprintf(fd, "  huge: %zu mappings, %zu KiB; %zu freed ones kept (%zu KiB), %llu reused\n",
		   hs.count, hs.bytes >> 10, hs.cached, hs.cached_bytes >> 10,
		   (unsigned long long)hs.reused);
	static const char *const thp_modes[] = { "never", "madvise", "always", "reuse" };
	long huge_kb = za_os_anon_huge_kb();
	if (huge_kb >= 0)
		za_dprintf(fd, "  huge pages: %ld KiB of AnonHugePages in the process (THP %s)\n",
			   huge_kb, thp_modes[za_thp_mode]);
	else
		za_dprintf(fd, "  huge pages: AnonHugePages unknown (no /proc/self/smaps_rollup; THP %s)\n",
			   thp_modes[za_thp_mode]);
	za_dprintf(fd, "  reclaim: %llu passes, %llu pages released in %llu madvise calls, "
		   "%llu decay passes, %llu pages by direct reclaim, %llu background wakeups\n",
		   (unsigned long long)st.reclaim_passes, (unsigned long long)st.reclaimed_pages,
		   (unsigned long long)st.madvise_calls, (unsigned long long)st.decay_passes,
		   (unsigned long long)st.direct_reclaim_pages,
		   (unsigned long long)st.background_wakeups);
	unsigned long misuses = atomic_load_explicit(&za_misuse_count, memory_order_relaxed);
	if (misuses)
		za_dprintf(fd, "  misuse: %lu reported and gone on from (ZONEALLOC_ON_ERROR=warn; "
			       "what they were handed leaked)\n", misuses);
	if (za_prof_active()) {
		struct za_prof_stats ps;
		za_prof_stats_get(&ps);
		za_dprintf(fd, "  heap profile: %llu samples (one per %llu bytes on average), %llu "
			       "live holding %llu KiB as asked\n",
			   (unsigned long long)ps.samples, (unsigned long long)ps.rate,
			   (unsigned long long)ps.live_samples, (unsigned long long)(ps.live_bytes >> 10));
	}
	for (int s = 1; s < ZA_STATUS_COUNT; s++)
		if (st.enomem[s])
			za_dprintf(fd, "  failures: %llu x %s\n", (unsigned long long)st.enomem[s],
				   za_status_str((za_status)s));
}
