#!/bin/bash
# Options and reports as a user meets them under LD_PRELOAD: the exit
# report arrives even from a program that closes its stderr before exit,
# ZONEALLOC_STATS=FILE writes one file per process (%p), and a value the
# heap cannot honour is refused with one line naming the option and what
# it accepts.
set -u
lib=${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0

ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }

# coreutils programs close stderr at exit (gnulib's close_stdout), before
# a preloaded library's destructors run.
out=$(env LD_PRELOAD="$lib" ZONEALLOC_STATS=1 ls / 2>&1 >/dev/null)
if grep -q '^zonealloc report' <<<"$out"; then
	ok "ls (closes stderr at exit) still shows the report"
else
	bad "ls under ZONEALLOC_STATS=1 printed no report: $out"
fi
# ... and the copy of stderr is not left to the programs it execs (env,
# under the preload, execs ls without it).
fds=$(env LD_PRELOAD="$lib" ZONEALLOC_STATS=1 env -u LD_PRELOAD ls /proc/self/fd/ 2>/dev/null | wc -w)
plain=$(env ls /proc/self/fd/ | wc -w)
if [ "$fds" = "$plain" ]; then
	ok "the report's descriptor is closed on exec ($fds descriptors either way)"
else
	bad "a program exec'd under ZONEALLOC_STATS=1 inherits $fds descriptors, $plain without"
fi

# One file per process: a shell and the two programs it runs.
env LD_PRELOAD="$lib" ZONEALLOC_STATS="$work/report.%p.txt" \
	bash -c 'ls / >/dev/null; cat /dev/null; echo $$ >'"$work/shell.pid" 2>"$work/stats.err"
n=$(ls "$work"/report.*.txt 2>/dev/null | wc -l)
shell=$(cat "$work/shell.pid")
if [ "$n" -ge 3 ] && [ -s "$work/report.$shell.txt" ] &&
   [ "$(grep -l '^zonealloc report' "$work"/report.*.txt | wc -l)" = "$n" ] && [ ! -s "$work/stats.err" ]; then
	ok "ZONEALLOC_STATS=FILE with %p: $n reports, one per process, none on stderr"
else
	bad "ZONEALLOC_STATS=FILE with %p: $n files (want 3 or more), stderr: $(cat "$work/stats.err")"
fi
out=$(env LD_PRELOAD="$lib" ZONEALLOC_STATS=/nonexistent/dir/r.txt ls / 2>&1 >/dev/null)
if [ "$out" = "zonealloc: ZONEALLOC_STATS: cannot write /nonexistent/dir/r.txt (ENOENT)" ]; then
	ok "a report file that cannot be written is said so, once"
else
	bad "unwritable report file: '$out'"
fi

# refused NAME=VALUE EXPECT: the program runs, and stderr is exactly one
# line: the refusal.
refused() {
	local setting=$1 expect=$2
	local out
	out=$(env LD_PRELOAD="$lib" "$setting" sh -c 'echo ran' 2>"$work/err")
	if [ "$out" = ran ] && [ "$(cat "$work/err")" = "zonealloc: ignoring $setting: $expect" ]; then
		ok "$setting refused"
	else
		bad "$setting: stdout '$out', stderr '$(cat "$work/err")'"
	fi
}
refused ZONEALLOC_LIMIT=1K "ZONEALLOC_LIMIT takes 0, or a size from 1M (K, M, G suffixes)"
refused ZONEALLOC_LIMIT=lots "ZONEALLOC_LIMIT takes 0, or a size from 1M (K, M, G suffixes)"
refused ZONEALLOC_DECAY_MS=-5 "ZONEALLOC_DECAY_MS takes milliseconds, 0 to 86400000"
refused ZONEALLOC_DECAY_MS=10s "ZONEALLOC_DECAY_MS takes milliseconds, 0 to 86400000"
refused ZONEALLOC_RECLAIM=bogus "ZONEALLOC_RECLAIM takes dontneed or free"
refused ZONEALLOC_CHECK=maybe "ZONEALLOC_CHECK takes 0 or 1"
refused ZONEALLOC_THP=yes "ZONEALLOC_THP takes never, reuse, madvise or always"
refused ZONEALLOC_STATS= "ZONEALLOC_STATS takes 0, 1, text or json, or a FILE name (%p: the process id)"
refused ZONEALLOC_ON_ERROR=ignore "ZONEALLOC_ON_ERROR takes abort or warn"

# ZONEALLOC_ON_ERROR: a program that frees an object twice dies of SIGABRT
# after the report by default; under warn it gets the report and goes on,
# and the exit report counts it.
dfree='import ctypes; c = ctypes.CDLL(None); c.malloc.restype = ctypes.c_void_p
p = c.malloc(100); c.free(ctypes.c_void_p(p)); c.free(ctypes.c_void_p(p)); print("went on")'
out=$(env LD_PRELOAD="$lib" python3 -c "$dfree" 2>"$work/err"); rc=$?
if [ $rc = 134 ] && [ -z "$out" ] && grep -q '^zonealloc: free(0x[0-9a-f]*): double free of a 112-byte slab object' "$work/err"; then
	ok "a double free aborts by default (exit $rc)"
else
	bad "a double free by default: exit $rc, stdout '$out', stderr $(head -2 "$work/err")"
fi
out=$(env LD_PRELOAD="$lib" ZONEALLOC_ON_ERROR=warn ZONEALLOC_CHECK=1 ZONEALLOC_STATS=1 \
	python3 -c "$dfree" 2>"$work/err"); rc=$?
if [ $rc = 0 ] && [ "$out" = "went on" ] &&
   grep -q '^zonealloc: free(0x[0-9a-f]*): double free of a 112-byte slab object' "$work/err" &&
   grep -q '^  misuse: 1 reported and gone on from' "$work/err"; then
	ok "ZONEALLOC_ON_ERROR=warn: reported, went on, the heap checked clean at exit"
else
	bad "ZONEALLOC_ON_ERROR=warn: exit $rc, stdout '$out', stderr $(grep -v '^  #' "$work/err" | head -5)"
fi

# A limit at the minimum is honoured: the report shows it.
out=$(env LD_PRELOAD="$lib" ZONEALLOC_LIMIT=1M ZONEALLOC_STATS=1 true 2>&1)
if grep -q 'committed of a 1024 KiB limit' <<<"$out"; then
	ok "ZONEALLOC_LIMIT=1M is honoured"
else
	bad "ZONEALLOC_LIMIT=1M: the report does not show it: $out"
fi

# The report's huge pages are the process's AnonHugePages: a 64 MiB block
# written whole under THP madvise, read by the program and by the report
# (the block is freed into the huge cache, still mapped, before both).
if [ -x "$ZA_BUILDDIR/tests/thp_report" ]; then
	out=$(env LD_PRELOAD="$lib" ZONEALLOC_THP=madvise ZONEALLOC_STATS=1 "$ZA_BUILDDIR/tests/thp_report" 2>&1)
	own=$(sed -n 's/^program: AnonHugePages \([0-9]*\) KiB$/\1/p' <<<"$out")
	rep=$(sed -n 's/^  huge pages: \([0-9]*\) KiB of AnonHugePages in the process (THP madvise)$/\1/p' <<<"$out")
	if [ -n "$own" ] && [ -n "$rep" ] && [ $((rep - own)) -le 2048 ] && [ $((own - rep)) -le 2048 ]; then
		ok "the report's AnonHugePages ($rep KiB) is the process's ($own KiB)"
	else
		bad "AnonHugePages: program '$own', report '$rep': $out"
	fi
fi

echo "preload options: $pass passed, $fail failed"
[ $fail -eq 0 ]
