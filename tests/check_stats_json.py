#!/usr/bin/env python3
"""Checks a zonealloc.stats JSON object and a malloc_info XML document
against what tests/test_stats_json.c allocated; exits non-zero on the first
mismatch, printing it."""
import json
import sys
import xml.etree.ElementTree as ET

with open(sys.argv[1]) as f:
    s = json.load(f)
failed = []


def check(cond, what):
    if not cond:
        failed.append(what)


check(s["schema"] == "zonealloc.stats" and s["version"] == 1, "schema and version")
for key in ("options", "backend", "memory", "pages", "zones", "buddy", "tiers", "reclaim",
            "slow_path", "shrinkers", "heap_profile", "failures"):
    check(key in s, "section " + key)
check(s["heap_profile"]["active"] is False and s["heap_profile"]["samples"] == 0,
      "heap_profile off: %r" % s["heap_profile"])
opts = s["options"]
check(opts["backend"] == "zonealloc" and opts["fallback"] is True and opts["limit"] == 0
      and opts["decay_ms"] == 1000 and opts["reclaim"] == "dontneed", "options %r" % opts)
classes = {c["size"]: c for c in s["tiers"]["slab"]["classes"]}
check(112 in classes and classes[112]["used"] >= 1000, "class 112: %r" % classes.get(112))
check(3072 in classes and classes[3072]["used"] >= 500, "class 3072: %r" % classes.get(3072))
for c in classes.values():
    check(c["used"] <= c["objects"] and c["slabs"] >= 1, "class occupancy %r" % c)
slab = s["tiers"]["slab"]
check(slab["objects"] >= 1500 and slab["bytes"] >= 1000 * 112 + 500 * 3072,
      "slab objects %d, bytes %d" % (slab["objects"], slab["bytes"]))
runs = s["tiers"]["runs"]
check(runs["count"] >= 20 and runs["bytes"] >= 20 * 100 * 1024, "runs %r" % runs)
huge = s["tiers"]["huge"]
check(huge["count"] == 3 and huge["bytes"] == 3 * 6 * 1024 * 1024, "huge %r" % huge)
blocks = s["tiers"]["page_blocks"]
check(blocks["count"] >= 2 and blocks["bytes"] >= 2 * 8 * 4096, "page blocks %r" % blocks)
fails = s["failures"]
check(fails["ZA_EINVAL"] >= 1 and fails["ZA_ENOMEM_TOO_LARGE"] >= 1, "failures %r" % fails)
mem = s["memory"]
check(mem["peak_committed_bytes"] >= mem["committed_bytes"] > 6 * 1024 * 1024 * 3,
      "memory %r" % mem)
check(len(s["buddy"]["orders"]) == 11 and s["buddy"]["splits"] > 0, "buddy orders")
zone_free = [0] * 11
for z in s["zones"]["list"]:
    check(len(z["free_blocks"]) == 11, "zone free blocks")
    for k, n in enumerate(z["free_blocks"]):
        zone_free[k] += n
check(zone_free == [o["free_blocks"] for o in s["buddy"]["orders"]],
      "zones' free blocks %r add up to the orders'" % zone_free)
check(s["zones"]["mapped"] == len(s["zones"]["list"]) >= 1, "zones")
check(s["backend"]["name"] == "zonealloc" and s["backend"]["allocations"] == 0, "backend")

# malloc_info: glibc's shape, the same free blocks.
root = ET.parse(sys.argv[2]).getroot()
check(root.tag == "malloc" and root.get("version") == "1", "malloc_info root")
heaps = root.findall("heap")
check(len(heaps) == s["zones"]["mapped"], "one heap per zone")
xml_free = sum(int(e.get("count")) for h in heaps for e in h.find("sizes"))
check(xml_free == sum(zone_free), "malloc_info free blocks %d, JSON %d" % (xml_free, sum(zone_free)))
mmap = [t for t in root.findall("total") if t.get("type") == "mmap"]
check(len(mmap) == 1 and int(mmap[0].get("count")) == 3, "malloc_info mmap total")

if failed:
    print("check_stats_json: " + "; ".join(failed))
    sys.exit(1)
print("check_stats_json: %d classes, %d runs, %d huge: all as allocated" %
      (len(classes), runs["count"], huge["count"]))
