#!/bin/bash
# Guard mode as the heap of someone else's fuzzing campaign (AFL_PRELOAD):
# fuzz/planted/planted.c hides a one-byte heap overflow behind inputs that
# start with 'O' and a write after free behind 'U'. A short afl-fuzz
# campaign with zonealloc's guard mode preloaded must find both (each
# crash replayed to see which report it gives); the same campaign on
# glibc's heap must find neither.
set -u
lib=${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}
src=${srcdir:-.}/fuzz/planted/planted.c
secs=${ZA_AFL_SECONDS:-25}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

if ! command -v afl-fuzz >/dev/null || ! command -v afl-cc >/dev/null; then
	bad "afl++ is not installed (apt-get install afl++)"
	echo "afl guard: $pass passed, $fail failed"
	exit 1
fi
AFL_QUIET=1 afl-cc -O1 -w -o "$work/planted" "$src" || { bad "afl-cc planted.c"; exit 1; }
mkdir "$work/in"
printf 'hello' >"$work/in/seed"

export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
	AFL_QUIET=1 AFL_SUPPRESS_ERROR_MESSAGES=1
# campaign NAME [VAR=VALUE...]: afl-fuzz for $secs seconds with the
# variables in the target's environment; prints the crashing inputs.
campaign() {
	local name=$1
	shift
	local envs=()
	for kv in "$@"; do envs+=(-e "$kv"); done
	env "$@" afl-fuzz -V "$secs" -i "$work/in" -o "$work/out-$name" -- "$work/planted" \
		>"$work/afl-$name.log" 2>&1
	ls "$work/out-$name"/default/crashes/id:* 2>/dev/null
}

guard_env=(AFL_PRELOAD="$lib" ZONEALLOC_GUARD=1)
crashes=$(campaign guard "${guard_env[@]}")
overflow=0 uaf=0
for c in $crashes; do
	msg=$(env LD_PRELOAD="$lib" ZONEALLOC_GUARD=1 "$work/planted" "$c" 2>&1 >/dev/null | head -1)
	case $msg in
	*"heap overflow"*) overflow=$((overflow + 1)) ;;
	*"use after free"*) uaf=$((uaf + 1)) ;;
	esac
done
execs=$(sed -n 's/^execs_done *: *//p' "$work/out-guard/default/fuzzer_stats" 2>/dev/null)
[ "$overflow" -gt 0 ] && ok "guard mode: the overflow found ($overflow crashes, $execs execs)" ||
	{ bad "guard mode: no crash reports the overflow"; tail -5 "$work/afl-guard.log"; }
[ "$uaf" -gt 0 ] && ok "guard mode: the write after free found ($uaf crashes)" ||
	bad "guard mode: no crash reports the write after free"

crashes=$(campaign glibc)
execs=$(sed -n 's/^execs_done *: *//p' "$work/out-glibc/default/fuzzer_stats" 2>/dev/null)
[ -z "$crashes" ] && [ -n "$execs" ] && ok "glibc's heap: nothing found ($execs execs)" ||
	bad "glibc's heap: $(echo $crashes | wc -w) crashes, ${execs:-no} execs"

echo "afl guard: $pass passed, $fail failed"
[ $fail -eq 0 ]
