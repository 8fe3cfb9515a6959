#!/bin/bash
# The four fuzz harnesses' corpora and saved regressions, replayed in guard
# mode (ZONEALLOC_GUARD=1): every input that passes in the default mode
# must pass with every allocation checked, quarantined and guarded too
# (the harnesses call the za_* API of libza_core; the mode is read at
# their first allocation). The misuse harness's children must still die of
# SIGABRT after zonealloc's own line, now guard mode's.
set -u
pass=0 fail=0
for h in buddy malloc policy misuse; do
	if out=$(ZONEALLOC_GUARD=1 ./fuzz/replay_$h 2>&1); then
		echo "ok: guard mode: $(tail -1 <<<"$out")"
		pass=$((pass + 1))
	else
		echo "FAIL: guard mode: replay_$h"
		tail -20 <<<"$out"
		fail=$((fail + 1))
	fi
done
echo "fuzz replays in guard mode: $pass passed, $fail failed"
[ $fail -eq 0 ]
