/*
 * The heap report as data: za_stats_print_json (ZONEALLOC_STATS=json) writes
 * one JSON object, schema "zonealloc.stats" version 1 (README: "Stats as
 * data"), and za_heap_info_xml writes malloc_info(3)'s XML, glibc's shape.
 * Both gather what the text report shows plus a walk of every zone's page
 * map (slab occupancy per class, run and page-block pages). Nothing here
 * allocates: output goes through a fixed buffer to a sink.
 */
#include <string.h>

#include "buddy/buddy.h"
#include "policy/policy.h"
#include "buddy/pcp.h"
#include "shim/backend.h"
#include "shim/shim.h"
#include "shim/stats_json.h"

static void out_flush(struct za_out *o)
{
	if (o->n)
		o->write(o->ctx, o->buf, o->n);
	o->n = 0;
}

void za_out_fmt(struct za_out *o, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	size_t n = za_vfmt(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (o->n + n > sizeof o->buf)
		out_flush(o);
	memcpy(o->buf + o->n, tmp, n);
	o->n += n;
}

static void fd_write(void *ctx, const char *s, size_t n)
{
	za_os_write(*(int *)ctx, s, n);
}

/* What the page maps say: per class, its slabs, objects and objects in
 * use; pages in runs and in page blocks. Read under each zone's lock;
 * a slab's `used` is its owner's, read as it is (a snapshot). */
struct heap_walk {
	uint64_t class_slabs[ZA_NCLASSES], class_objects[ZA_NCLASSES], class_used[ZA_NCLASSES];
	uint64_t slab_pages, run_pages, runs, block_pages, blocks;
};

static void heap_walk(struct heap_walk *w)
{
	memset(w, 0, sizeof *w);
	int nz = atomic_load(&za_nr_zones);
	for (int i = 0; i < nz; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		za_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			for (uint32_t pfn = 0; pfn < zone->wild_pfn;) {
				const struct za_page *p = za_page_at(zone, pfn);
				uint32_t span = 1u << p->order;
				switch (p->state) {
				case ZA_PG_SLAB: {
					const struct za_slab *slab = (const struct za_slab *)(const void *)p->private;
					unsigned cls = slab->cls < ZA_NCLASSES ? slab->cls : 0;
					w->class_slabs[cls]++;
					w->class_objects[cls] += slab->capacity;
					w->class_used[cls] += __atomic_load_n(&slab->used, __ATOMIC_RELAXED);
					w->slab_pages += span;
					break;
				}
				case ZA_PG_RUN:
				case ZA_PG_RUN_CACHED:
					span = p->count ? p->count : 1;
					if (p->state == ZA_PG_RUN) {
						w->runs++;
						w->run_pages += span;
					}
					break;
				case ZA_PG_BLOCK:
					w->blocks++;
					w->block_pages += span;
					break;
				case ZA_PG_TAIL:
					span = 1;
					break;
				default:
					break;
				}
				pfn += span;
			}
		}
		pthread_mutex_unlock(&zone->lock);
	}
}

/* The options in force, from the preload's table when it is linked (a
 * program linked with libza_core alone has none). */
void za_options_json(struct za_out *o) __attribute__((weak));

static const char *const status_keys[ZA_STATUS_COUNT] = {
	[ZA_OK] = "ZA_OK", [ZA_ENOMEM_LIMIT] = "ZA_ENOMEM_LIMIT", [ZA_ENOMEM_OS] = "ZA_ENOMEM_OS",
	[ZA_ENOMEM_TOO_LARGE] = "ZA_ENOMEM_TOO_LARGE", [ZA_ENOMEM_FRAGMENTED] = "ZA_ENOMEM_FRAGMENTED",
	[ZA_EINVAL] = "ZA_EINVAL",
};

#define U(x) ((unsigned long long)(x))

void za_stats_json(struct za_out *o)
{
	struct za_stats st;
	struct za_slab_stats ss;
	struct za_huge_stats hs;
	struct heap_walk *w, wbuf;
	w = &wbuf;
	za_stats_get(&st);
	za_slab_stats_get(&ss);
	za_huge_stats(&hs);
	heap_walk(w);
	uint64_t hits, misses;
	za_pcp_run_stats(&hits, &misses);
	int64_t peak = atomic_load(&za_committed_peak);

	za_out_fmt(o, "{\"schema\":\"zonealloc.stats\",\"version\":1,");
	za_out_fmt(o, "\"options\":");
	if (za_options_json)
		za_options_json(o);
	else
		za_out_fmt(o, "null");
	za_out_fmt(o, ",\"backend\":{\"name\":\"%s\",\"fallback\":%s,\"allocations\":%llu,"
		      "\"frees\":%llu,\"live_bytes\":%llu},",
		   st.backend, st.backend_fallback ? "true" : "false", U(st.backend_allocs),
		   U(st.backend_frees), U(st.backend_bytes));
	za_out_fmt(o, "\"memory\":{\"committed_bytes\":%llu,\"peak_committed_bytes\":%llu,"
		      "\"limit_bytes\":%llu,\"released_bytes\":%llu},",
		   U(st.committed_bytes), U(peak > 0 ? (uint64_t)peak << ZA_PAGE_SHIFT : 0),
		   U(st.limit_bytes), U((uint64_t)st.pages_released * ZA_PAGE_SIZE));
	za_out_fmt(o, "\"pages\":{\"total\":%llu,\"free\":%llu,\"cached\":%llu},", U(st.pages_total),
		   U(st.pages_free), U(st.pages_cached));

	za_out_fmt(o, "\"zones\":{\"mapped\":%llu,\"mapped_total\":%llu,\"unmapped_total\":%llu,"
		      "\"list\":[", U(st.zones), U(st.zones_mapped_total), U(st.zones_unmapped_total));
	int nz = atomic_load(&za_nr_zones);
	bool first = true;
	for (int i = 0; i < nz; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		za_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			za_out_fmt(o, "%s{\"index\":%d,\"pages_free\":%u,\"pages_released\":%u,\"free_blocks\":[",
				   first ? "" : ",", zone->index, atomic_load(&zone->pages_free),
				   atomic_load(&zone->pages_released));
			for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
				za_out_fmt(o, "%s%u", k ? "," : "", __za_zone_free_blocks(zone, k));
			}
			za_out_fmt(o, "]}");
			first = false;
		}
		pthread_mutex_unlock(&zone->lock);
	}
	za_out_fmt(o, "]},");

	za_out_fmt(o, "\"pageblocks\":{\"grouping\":%s,\"slab\":%llu,\"run\":%llu,"
		      "\"reserve\":%llu,\"free\":%llu,\"fallbacks\":%llu,\"claims\":%llu},",
		   za_buddy_grouping ? "true" : "false", U(st.pageblocks_slab), U(st.pageblocks_run),
		   U(st.pageblocks_reserve), U(st.pageblocks_free), U(st.pageblock_fallbacks),
		   U(st.pageblock_claims));
	za_out_fmt(o, "\"buddy\":{\"splits\":%llu,\"merges\":%llu,\"orders\":[", U(st.splits),
		   U(st.merges));
	for (unsigned k = 0; k < ZA_MAX_ORDER; k++)
		za_out_fmt(o, "%s{\"order\":%u,\"block_bytes\":%llu,\"free_blocks\":%llu,"
			      "\"allocations\":%llu,\"frees\":%llu}",
			   k ? "," : "", k, U((uint64_t)ZA_PAGE_SIZE << k), U(st.free_blocks[k]),
			   U(st.alloc_calls[k]), U(st.free_calls[k]));
	za_out_fmt(o, "]},");

	uint64_t slab_bytes = 0, slab_objects = 0;
	for (unsigned c = 0; c < ZA_NCLASSES; c++) {
		slab_bytes += w->class_used[c] * za_classes[c].size;
		slab_objects += w->class_used[c];
	}
	za_out_fmt(o, "\"tiers\":{\"slab\":{\"objects\":%llu,\"bytes\":%llu,\"pages\":%llu,"
		      "\"slabs_live\":%llu,\"slabs_made\":%llu,\"slabs_given_back\":%llu,"
		      "\"empty_reused\":%llu,\"remote_frees\":%llu,\"delayed_frees\":%llu,"
		      "\"idle_trims\":%llu,\"idle_pages\":%llu,\"lent\":%llu,",
		   U(slab_objects), U(slab_bytes), U(w->slab_pages), U(ss.slabs_live),
		   U(ss.slabs_created), U(ss.slabs_released), U(ss.slabs_reused), U(ss.remote_frees),
		   U(ss.delayed_frees), U(ss.idle_trims), U(ss.idle_pages), U(ss.lent));
	za_out_fmt(o, "\"thread_heaps\":{\"live\":%llu,\"made\":%llu,\"adopted\":%llu,\"waiting\":%llu},"
		      "\"classes\":[", U(ss.heaps_live), U(ss.heaps_created), U(ss.heaps_adopted),
		   U(ss.heaps_orphaned));
	first = true;
	for (unsigned c = 0; c < ZA_NCLASSES; c++) {
		if (!w->class_slabs[c])
			continue;
		za_out_fmt(o, "%s{\"class\":%u,\"size\":%u,\"slabs\":%llu,\"objects\":%llu,\"used\":%llu}",
			   first ? "" : ",", c, za_classes[c].size, U(w->class_slabs[c]),
			   U(w->class_objects[c]), U(w->class_used[c]));
		first = false;
	}
	za_out_fmt(o, "]},");
	za_out_fmt(o, "\"runs\":{\"count\":%llu,\"bytes\":%llu,\"cache_hits\":%llu,"
		      "\"cache_misses\":%llu},",
		   U(w->runs), U(w->run_pages * ZA_PAGE_SIZE), U(hits), U(misses));
	za_out_fmt(o, "\"page_blocks\":{\"count\":%llu,\"bytes\":%llu},", U(w->blocks),
		   U(w->block_pages * ZA_PAGE_SIZE));
	za_out_fmt(o, "\"huge\":{\"count\":%llu,\"bytes\":%llu,\"cached\":%llu,\"cached_bytes\":%llu,"
		      "\"reused\":%llu}},",
		   U(hs.count), U(hs.bytes), U(hs.cached), U(hs.cached_bytes), U(hs.reused));

	za_out_fmt(o, "\"reclaim\":{\"passes\":%llu,\"pages_released\":%llu,\"bytes_released\":%llu,"
		      "\"madvise_calls\":%llu,\"decay_passes\":%llu,\"direct_reclaim_pages\":%llu,"
		      "\"background_wakeups\":%llu},",
		   U(st.reclaim_passes), U(st.reclaimed_pages), U(st.reclaimed_pages * ZA_PAGE_SIZE),
		   U(st.madvise_calls), U(st.decay_passes), U(st.direct_reclaim_pages),
		   U(st.background_wakeups));
	za_out_fmt(o, "\"slow_path\":{\"rounds\":%llu,\"cache_drains\":%llu},", U(st.slowpath_rounds),
		   U(st.cache_drains));
	static const char *const thp_modes[] = { "never", "madvise", "always", "reuse" };
	za_out_fmt(o, "\"huge_pages\":{\"thp\":\"%s\",\"anon_huge_kb\":%ld},",
		   thp_modes[za_thp_mode], za_os_anon_huge_kb());
	struct za_shrink_stats sh;
	za_policy_shrink_stats(&sh);
	za_out_fmt(o, "\"shrinkers\":{\"registered\":%u,\"rounds\":%llu,\"calls\":%llu,"
		      "\"bytes_freed\":%llu,\"oom_calls\":%llu,\"compaction_calls\":%llu},",
		   sh.shrinkers, U(sh.rounds), U(sh.calls), U(sh.bytes_freed), U(sh.oom_calls),
		   U(sh.compaction_calls));
	struct za_prof_stats ps;
	za_prof_stats_get(&ps);
	za_out_fmt(o, "\"heap_profile\":{\"active\":%s,\"rate_bytes\":%llu,\"samples\":%llu,"
		      "\"live_samples\":%llu,\"live_bytes\":%llu},",
		   za_prof_active() ? "true" : "false", U(ps.rate), U(ps.samples), U(ps.live_samples),
		   U(ps.live_bytes));
	za_out_fmt(o, "\"failures\":{");
	for (int s = 1; s < ZA_STATUS_COUNT; s++)
		za_out_fmt(o, "%s\"%s\":%llu", s > 1 ? "," : "", status_keys[s], U(st.enomem[s]));
	za_out_fmt(o, "}}\n");
	out_flush(o);
}

ZA_EXPORT void za_stats_print_json(int fd)
{
	struct za_out o = { .write = fd_write, .ctx = &fd };
	za_stats_json(&o);
}

/* malloc_info(3): glibc's XML, one <heap> per zone with its free blocks
 * by size, then the totals. */
void za_heap_info_xml(struct za_out *o)
{
	struct za_stats st;
	struct za_huge_stats hs;
	za_stats_get(&st);
	za_huge_stats(&hs);
	int64_t peak = atomic_load(&za_committed_peak);
	uint64_t peak_bytes = peak > 0 ? (uint64_t)peak << ZA_PAGE_SHIFT : 0;
	uint64_t free_count = 0, free_bytes = 0;
	za_out_fmt(o, "<malloc version=\"1\">\n");
	int nz = atomic_load(&za_nr_zones), nr = 0;
	for (int i = 0; i < nz; i++) {
		struct za_zone *zone = &za_zones[i];
		if (!zone->pages)
			continue;
		za_lock(&zone->lock);
		if (atomic_load(&zone->active)) {
			uint64_t count = 0, bytes = 0;
			za_out_fmt(o, "<heap nr=\"%d\">\n<sizes>\n", nr++);
			for (unsigned k = 0; k < ZA_MAX_ORDER; k++) {
				uint64_t n = __za_zone_free_blocks(zone, k);
				uint64_t size = (uint64_t)ZA_PAGE_SIZE << k;
				if (n)
					za_out_fmt(o, "<size from=\"%llu\" to=\"%llu\" total=\"%llu\" count=\"%llu\"/>\n",
						   U(size), U(size), U(n * size), U(n));
				count += n;
				bytes += n * size;
			}
			uint64_t resident = (uint64_t)(ZA_ZONE_PAGES - atomic_load(&zone->pages_released)) *
					    ZA_PAGE_SIZE;
			za_out_fmt(o, "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
				      "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n"
				      "<system type=\"current\" size=\"%llu\"/>\n"
				      "<system type=\"max\" size=\"%llu\"/>\n"
				      "<aspace type=\"total\" size=\"%llu\"/>\n"
				      "<aspace type=\"mprotect\" size=\"%llu\"/>\n</heap>\n",
				   U(count), U(bytes), U(resident), U(resident), U(ZA_ZONE_SIZE), U(ZA_ZONE_SIZE));
			free_count += count;
			free_bytes += bytes;
		}
		pthread_mutex_unlock(&zone->lock);
	}
	za_out_fmt(o, "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
		      "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n"
		      "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n"
		      "<system type=\"current\" size=\"%llu\"/>\n"
		      "<system type=\"max\" size=\"%llu\"/>\n"
		      "<aspace type=\"total\" size=\"%llu\"/>\n"
		      "<aspace type=\"mprotect\" size=\"%llu\"/>\n</malloc>\n",
		   U(free_count), U(free_bytes), U(hs.count), U(hs.bytes), U(st.committed_bytes),
		   U(peak_bytes), U(st.pages_total * ZA_PAGE_SIZE + hs.bytes),
		   U(st.pages_total * ZA_PAGE_SIZE + hs.bytes));
	out_flush(o);
}
