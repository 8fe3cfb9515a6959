#!/bin/bash
# The launcher, as a user runs it: `zonealloc [OPTIONS] PROGRAM ARGS...`
# from the build tree. It must put the library first in LD_PRELOAD (keeping
# what was there), pass its options on, refuse bad ones before running
# anything, and say what it knows from the library's own option table.
set -u
launcher=${ZA_LAUNCHER:?ZA_LAUNCHER must name the built zonealloc launcher}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }

v=$("$launcher" --version)
[[ $v =~ ^zonealloc\ [0-9]+\.[0-9]+\.[0-9]+$ ]] && ok "--version: $v" || bad "--version: '$v'"
"$launcher" --help | grep -q '^usage: zonealloc \[OPTIONS\] \[--\] PROGRAM' && ok "--help" || bad "--help"
# --options prints the library's table: every option the library reads.
opts=$("$launcher" --options | grep -o '^ZONEALLOC_[A-Z0-9_]*' | tr '\n' ' ')
[ "$opts" = "ZONEALLOC_STATS ZONEALLOC_CHECK ZONEALLOC_LIMIT ZONEALLOC_DECAY_MS ZONEALLOC_RECLAIM ZONEALLOC_BACKGROUND ZONEALLOC_BACKEND ZONEALLOC_FALLBACK ZONEALLOC_VERBOSE ZONEALLOC_PROF ZONEALLOC_PROF_RATE ZONEALLOC_PROF_FILE ZONEALLOC_PROF_SIGUSR2 ZONEALLOC_TRACE ZONEALLOC_THP ZONEALLOC_GROUPING ZONEALLOC_ON_ERROR ZONEALLOC_GUARD ZONEALLOC_QUARANTINE ZONEALLOC_GUARD_PAGES " ] &&
	ok "--options: $opts" || bad "--options: '$opts'"

# zonealloc --stats sort FILE: sorted output, the report on stderr.
printf '%s\n' pear apple fig > "$work/in"
"$launcher" --stats sort "$work/in" >"$work/out" 2>"$work/err"
if [ "$(tr '\n' ' ' <"$work/out")" = "apple fig pear " ] && grep -q '^zonealloc report' "$work/err"; then
	ok "zonealloc --stats sort FILE"
else
	bad "zonealloc --stats sort FILE: out '$(cat "$work/out")', err '$(head -3 "$work/err")'"
fi
"$launcher" --stats="$work/r.%p" --check sort "$work/in" >/dev/null 2>"$work/err"
[ "$(ls "$work"/r.* | wc -l)" = 1 ] && grep -q '^zonealloc report' "$work"/r.* && [ ! -s "$work/err" ] &&
	ok "--stats=FILE --check" || bad "--stats=FILE: $(ls "$work") $(cat "$work/err")"

# --stats=json: one JSON object, the documented schema.
"$launcher" --stats=json sort "$work/in" >/dev/null 2>"$work/json"
if env -u LD_PRELOAD python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "zonealloc.stats" and d["version"] == 1, d.get("schema")
assert d["options"]["stats"] == "json" and d["tiers"]["slab"]["objects"] > 0
' "$work/json"; then
	ok "--stats=json: one JSON object"
else
	bad "--stats=json: $(head -c 300 "$work/json")"
fi
"$launcher" --stats="$work/r2.%p.json" sort "$work/in" >/dev/null
env -u LD_PRELOAD python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work"/r2.*.json 2>/dev/null &&
	ok "--stats=FILE.json writes JSON" || bad "--stats=FILE.json: $(head -c 200 "$work"/r2.*.json)"

# --limit: a Python allocation beyond it is a MemoryError, one within it is not.
out=$("$launcher" --limit 64M python3 -c '
try:
    b = bytearray(200 << 20)
    print("allocated")
except MemoryError:
    print("MemoryError")
c = bytearray(16 << 20)
print("small ok")' 2>&1)
[ "$out" = "$(printf 'MemoryError\nsmall ok')" ] && ok "--limit 64M python3: MemoryError past it" ||
	bad "--limit 64M python3: '$out'"

# The library goes first in LD_PRELOAD; what was there stays.
pre=$(LD_PRELOAD=libm.so.6 "$launcher" sh -c 'echo "$LD_PRELOAD"')
[[ $pre == /*libzonealloc.so*:libm.so.6 ]] && ok "LD_PRELOAD: $pre" || bad "LD_PRELOAD: '$pre'"
out=$("$launcher" --stats bash -c 'echo ran' 2>&1 >/dev/null | grep -c '^zonealloc report')
[ "$out" = 1 ] && ok "the program runs on zonealloc's heap" || bad "no report from the program"

# Refusals: exit status 2, one line, nothing run.
refuse() {
	local want=$1
	shift
	"$launcher" "$@" sh -c "touch $work/ran" 2>"$work/err"
	local rc=$?
	if [ $rc = 2 ] && [ ! -e "$work/ran" ] && grep -q "$want" "$work/err"; then
		ok "refused: $*"
	else
		bad "$*: exit $rc, ran: $([ -e "$work/ran" ] && echo yes || echo no), stderr '$(cat "$work/err")'"
	fi
	rm -f "$work/ran"
}
refuse "ZONEALLOC_LIMIT takes 0, or a size from 1M" --limit 1K
refuse "ZONEALLOC_DECAY_MS takes milliseconds" --decay soon
refuse "ZONEALLOC_RECLAIM takes dontneed or free" --reclaim=never
refuse "unknown option: --frobnicate" --frobnicate
refuse "ZONEALLOC_BACKEND takes zonealloc, mimalloc or libc" --backend jemalloc
refuse "ZONEALLOC_THP takes never, reuse, madvise or always" --thp sometimes
out=$("$launcher" --thp never --stats true 2>&1)
grep -q '^  huge pages: [0-9]* KiB of AnonHugePages in the process (THP never)$' <<<"$out" &&
	ok "--thp never: the report says so" || bad "--thp never: '$(grep 'huge pages' <<<"$out")'"

# zonealloc --backend mimalloc sqlite3: mimalloc serves, zonealloc reports.
out=$("$launcher" --backend mimalloc --stats --verbose sqlite3 :memory: \
	"create table t(a); insert into t select value from generate_series(1, 20000); select count(*) from t;" 2>"$work/err")
if [ "$out" = 20000 ] && grep -q '^zonealloc: backend mimalloc serves new allocations' "$work/err" &&
   grep -Eq '^  backend: mimalloc: [1-9][0-9]* allocations' "$work/err"; then
	ok "zonealloc --backend mimalloc sqlite3"
elif grep -q "cannot be loaded" "$work/err"; then
	echo "SKIP: --backend mimalloc: libmimalloc.so.2 is not installed"
else
	bad "--backend mimalloc sqlite3: out '$out', err '$(head -5 "$work/err")'"
fi
"$launcher" 2>"$work/err"; rc=$?
[ $rc = 2 ] && grep -q "no program to run" "$work/err" && ok "no program: exit 2" || bad "no program: exit $rc"
"$launcher" /nonexistent/program 2>"$work/err"; rc=$?
[ $rc = 127 ] && grep -q "cannot run /nonexistent/program" "$work/err" && ok "missing program: exit 127" ||
	bad "missing program: exit $rc, '$(cat "$work/err")'"

echo "launcher: $pass passed, $fail failed"
[ $fail -eq 0 ]
