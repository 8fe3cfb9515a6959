#!/bin/bash
# Sampled heap profiling (ZONEALLOC_PROF): a program that leaks from two
# known sites is profiled under the preload; google-pprof --text must name
# both sites with their live bytes within 10% of the truth, and not name
# the site whose blocks were all freed, with whole stacks (main's
# cumulative bytes are its callee's). Also: SIGUSR2 writes a numbered
# profile, the text summary arrives on stderr, profiling is off by default,
# and the launcher's --prof gives the same. Skipped (77) with a message
# only where google-pprof (package google-perftools) is missing.
set -u
lib=${ZA_LIB:-$PWD/.libs/libzonealloc.so}
launcher=${ZA_LAUNCHER:-$PWD/zonealloc}
prog=${ZA_BUILDDIR:-$PWD}/tests/prof_leaks
if ! command -v google-pprof >/dev/null; then
	echo "SKIP: google-pprof is not installed (apt-get install google-perftools; scripts/setup does)"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Site's in-use bytes in a --text --show_bytes report (its "flat" column).
site_bytes() { awk -v s="$2" '$6 == s { print $1; exit }' "$1"; }
within() { awk -v got="$1" -v want="$2" 'BEGIN { d = got - want; if (d < 0) d = -d; exit !(got != "" && d <= want / 10) }'; }

check_profile() {   # file, label
	google-pprof --text --show_bytes "$prog" "$1" >"$tmp/text" 2>"$tmp/pprof.err"
	small=$(site_bytes "$tmp/text" leak_small_site)
	large=$(site_bytes "$tmp/text" leak_large_site)
	churn=$(site_bytes "$tmp/text" churn_site)
	if within "${small:-}" 30000000; then ok "$2: leak_small_site ${small} bytes (truth 30000000)"
	else bad "$2: leak_small_site ${small:-missing} bytes, truth 30000000"; cat "$tmp/text" "$tmp/pprof.err"; fi
	if within "${large:-}" 20000000; then ok "$2: leak_large_site ${large} bytes (truth 20000000)"
	else bad "$2: leak_large_site ${large:-missing} bytes, truth 20000000"; cat "$tmp/text"; fi
	if [ -z "$churn" ]; then ok "$2: churn_site (all freed) is not in the live profile"
	else bad "$2: churn_site, all freed, shows ${churn} live bytes"; fi
	# Whole stacks, not only the call site (libunwind, loaded when
	# profiling starts): main's cumulative bytes take in leak_small_site's.
	main_cum=$(awk '$6 == "main" { print $4; exit }' "$tmp/text")
	if within "${main_cum:-}" 30000000; then ok "$2: main's cumulative ${main_cum} bytes (its callee's 30000000)"
	else bad "$2: main's cumulative bytes ${main_cum:-missing}, not its callee's 30000000: no stacks"; fi
}

cd "$tmp"
ZONEALLOC_PROF=1 ZONEALLOC_PROF_RATE=16K ZONEALLOC_PROF_FILE="$tmp/p.%p.heap" ZONEALLOC_PROF_SIGUSR2=1 \
	LD_PRELOAD="$lib" "$prog" signal >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && ok "profiled run exits 0" || bad "profiled run exit status $rc: $(cat "$tmp/err")"
exitf=$(ls "$tmp"/p.*.heap 2>/dev/null | head -1)
sigf=$(ls "$tmp"/p.*.heap.1 2>/dev/null | head -1)
if [ -n "$exitf" ] && head -1 "$exitf" | grep -q '^heap profile: .* @ heap_v2/16384$'; then
	ok "exit profile $(basename "$exitf") in the gperftools format"
	check_profile "$exitf" "exit profile"
else
	bad "no exit profile in gperftools format: $(ls "$tmp")"
fi
if [ -n "$sigf" ]; then check_profile "$sigf" "SIGUSR2 profile"; else bad "SIGUSR2 wrote no profile"; fi
if grep -q "^zonealloc heap profile: [0-9]* live samples" "$tmp/err"; then ok "text summary on stderr"
else bad "no text summary on stderr: $(cat "$tmp/err")"; fi
ZONEALLOC_PROF=1 ZONEALLOC_STATS=1 ZONEALLOC_PROF_FILE="$tmp/s.heap" LD_PRELOAD="$lib" "$prog" >/dev/null 2>"$tmp/err"
if grep -q "^  heap profile: [1-9][0-9]* samples (one per 524288 bytes on average), [1-9][0-9]* live" "$tmp/err"; then
	ok "the heap report counts the samples"
else bad "no heap profile line in the report: $(cat "$tmp/err")"; fi
ZONEALLOC_PROF=1 ZONEALLOC_STATS=json ZONEALLOC_PROF_FILE="$tmp/s.heap" LD_PRELOAD="$lib" "$prog" >/dev/null 2>"$tmp/err"
if grep -q '"heap_profile":{"active":true,"rate_bytes":524288,"samples":[1-9]' "$tmp/err"; then
	ok "the JSON report counts the samples"
else bad "no heap_profile in the JSON report: $(cat "$tmp/err")"; fi

rm -f "$tmp"/*.heap*
LD_PRELOAD="$lib" "$prog" >/dev/null 2>"$tmp/err"
if ls "$tmp"/*.heap* >/dev/null 2>&1 || grep -q "heap profile" "$tmp/err"; then bad "a profile without ZONEALLOC_PROF"
else ok "no profile by default"; fi

"$launcher" --prof="$tmp/l.heap" --prof-rate 16K "$prog" >/dev/null 2>"$tmp/err"
if [ -f "$tmp/l.heap" ]; then check_profile "$tmp/l.heap" "zonealloc --prof"; else bad "zonealloc --prof wrote no profile: $(cat "$tmp/err")"; fi

ZONEALLOC_PROF_RATE=0 LD_PRELOAD="$lib" "$prog" >/dev/null 2>"$tmp/err"
grep -q "ignoring ZONEALLOC_PROF_RATE=0" "$tmp/err" && ok "PROF_RATE=0 refused" || bad "PROF_RATE=0 not refused: $(cat "$tmp/err")"

echo "$fails failed"
[ $fails -eq 0 ]
