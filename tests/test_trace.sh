#!/bin/bash
# Allocation traces (ZONEALLOC_TRACE): a program whose calls are known is
# traced under the preload; zonealloc-trace must count its calls by kind
# and its peak of live bytes, and zonealloc-replay must replay the same
# calls (the same number, the same peak of live bytes) under glibc and
# under zonealloc. Then a real program (python3 with PYTHONMALLOC=malloc),
# the launcher's --trace, a traced program's child processes (exec'd and
# forked: files of their own, the parent's intact), and no file without
# the option.
set -u
lib=${ZA_LIB:-$PWD/.libs/libzonealloc.so}
launcher=${ZA_LAUNCHER:-$PWD/zonealloc}
build=${ZA_BUILDDIR:-$PWD}
src=${ZA_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
prog=$build/tests/trace_calls
replay=$build/zonealloc-replay
reader=$src/tools/zonealloc-trace
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
kv() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }     # file key
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# 1. the known program
ZONEALLOC_TRACE="$tmp/t.trace" LD_PRELOAD="$lib" "$prog" >"$tmp/prog.out" 2>"$tmp/prog.err"
rc=$?
[ $rc -eq 0 ] && ok "traced run exits 0" || bad "traced run: status $rc: $(cat "$tmp/prog.err")"
said=$(sed -n 's/^zonealloc: trace: \([0-9]*\) calls of \([0-9]*\) threads recorded into .*/\1 \2/p' "$tmp/prog.err")
read -r recorded rthreads <<<"${said:-x x}"
[ "$recorded" != x ] && ok "the recorder says $recorded calls of $rthreads threads" ||
	bad "no 'zonealloc: trace:' line on stderr: $(cat "$tmp/prog.err")"
size=$(stat -c %s "$tmp/t.trace" 2>/dev/null || echo 0)
[ "$size" = $((64 + 48 * recorded)) ] && ok "the file holds a 64-byte header and $recorded 48-byte records" ||
	bad "trace file is $size bytes, want $((64 + 48 * recorded))"
"$reader" --json "$tmp/t.trace" >"$tmp/t.json" 2>"$tmp/reader.err" || bad "zonealloc-trace failed: $(cat "$tmp/reader.err")"
for k in malloc calloc realloc memalign free free_sized; do
	want=$(kv "$tmp/prog.out" $k)
	got=$(js "$tmp/t.json" "d['calls_by_kind'].get('$k', 0)" 2>/dev/null)
	# libc makes a few calls of its own (stdio's buffer, thread set-up)
	if [ -n "$got" ] && [ "$got" -ge "$want" ] && [ "$got" -le $((want + 20)) ]; then
		ok "$k: $got calls recorded, the program made $want"
	else
		bad "$k: ${got:-?} calls recorded, the program made $want"
	fi
done
[ "$(js "$tmp/t.json" "d['calls']")" = "$recorded" ] && ok "zonealloc-trace reads all $recorded calls" ||
	bad "zonealloc-trace reads $(js "$tmp/t.json" "d['calls']") calls, $recorded recorded"
[ "$(js "$tmp/t.json" "d['threads']")" = 3 ] && ok "three threads" || bad "threads: $(js "$tmp/t.json" "d['threads']"), want 3"
want_peak=$(kv "$tmp/prog.out" peak)
peak=$(js "$tmp/t.json" "d['peak_live_bytes']")
if [ "$peak" -ge "$want_peak" ] && [ "$peak" -le $((want_peak + 16384)) ]; then
	ok "peak live bytes $peak (the program's own count: $want_peak)"
else
	bad "peak live bytes $peak, the program counted $want_peak"
fi
for alloc in glibc zonealloc; do
	pre=; [ $alloc = zonealloc ] && pre=$lib
	if env -u LD_PRELOAD ${pre:+LD_PRELOAD=$pre} timeout 60 "$replay" --kv "$tmp/t.trace" >"$tmp/r.$alloc" 2>&1; then
		c=$(kv "$tmp/r.$alloc" calls) p=$(kv "$tmp/r.$alloc" peak_live) rp=$(kv "$tmp/r.$alloc" recorded_peak_live)
		if [ "$c" = "$recorded" ] && [ "$p" = "$peak" ] && [ "$rp" = "$peak" ] &&
		   [ "$(kv "$tmp/r.$alloc" failed)" = 0 ] && [ "$(kv "$tmp/r.$alloc" overlaps)" = 0 ] &&
		   [ "$(kv "$tmp/r.$alloc" threads)" = 3 ]; then
			ok "replay under $alloc: $c calls on 3 threads, peak live $p bytes"
		else
			bad "replay under $alloc: $(cat "$tmp/r.$alloc") (want calls=$recorded peak_live=$peak)"
		fi
	else
		bad "replay under $alloc failed: $(cat "$tmp/r.$alloc")"
	fi
done

# 2. a real program
py='import json
d = {}
for i in range(20000):
    d[str(i)] = [i, str(i) * 3, {"k": i}]
s = json.dumps(d)
e = json.loads(s)
del d
print(len(s), len(e))'
if [ -x /usr/bin/python3 ]; then
	ZONEALLOC_TRACE="$tmp/py.trace" PYTHONMALLOC=malloc LD_PRELOAD="$lib" /usr/bin/python3 -c "$py" >"$tmp/py.out" 2>"$tmp/py.err"
	n=$(sed -n 's/^zonealloc: trace: \([0-9]*\) calls of .*/\1/p' "$tmp/py.err")
	"$reader" --json "$tmp/py.trace" >"$tmp/py.json" 2>/dev/null
	peak=$(js "$tmp/py.json" "d['peak_live_bytes']" 2>/dev/null)
	if [ -n "$n" ] && [ "$n" -gt 100000 ] && [ -n "$peak" ]; then
		ok "python3: $n calls recorded, peak live $peak bytes"
	else
		bad "python3: ${n:-no} calls recorded, peak ${peak:-?}: $(cat "$tmp/py.err")"
	fi
	for alloc in glibc zonealloc; do
		pre=; [ $alloc = zonealloc ] && pre=$lib
		env -u LD_PRELOAD ${pre:+LD_PRELOAD=$pre} timeout 120 "$replay" --kv "$tmp/py.trace" >"$tmp/pr.$alloc" 2>&1
		if [ "$(kv "$tmp/pr.$alloc" calls)" = "$n" ] && [ "$(kv "$tmp/pr.$alloc" peak_live)" = "$peak" ] &&
		   [ "$(kv "$tmp/pr.$alloc" failed)" = 0 ] && [ "$(kv "$tmp/pr.$alloc" overlaps)" = 0 ]; then
			ok "python3 replayed under $alloc: $n calls, peak live $peak bytes"
		else
			bad "python3 replayed under $alloc: $(cat "$tmp/pr.$alloc") (want calls=$n peak_live=$peak)"
		fi
	done
	"$reader" --png "$tmp/png" "$tmp/py.trace" >"$tmp/py.txt" 2>&1
	if grep -q '^Request sizes' "$tmp/py.txt" && grep -q '^Lifetimes of freed blocks, in time' "$tmp/py.txt" &&
	   grep -q '^Live bytes over time' "$tmp/py.txt"; then
		ok "zonealloc-trace prints sizes, lifetimes and live bytes"
	else
		bad "zonealloc-trace text: $(head -20 "$tmp/py.txt")"
	fi
	if command -v gnuplot >/dev/null; then
		[ -s "$tmp/png/sizes.png" ] && [ -s "$tmp/png/lifetimes.png" ] && [ -s "$tmp/png/live.png" ] &&
			ok "zonealloc-trace --png draws three plots" || bad "no PNGs: $(ls "$tmp/png" 2>&1)"
	fi

	# 3. child processes: an exec'd one and a forked one get files of their own
	ZONEALLOC_TRACE="$tmp/f.trace" LD_PRELOAD="$lib" /usr/bin/python3 -c '
import os, subprocess, sys
subprocess.run([sys.executable, "-c", "x = [bytes(100) for i in range(1000)]"], check=True)
pid = os.fork()
if pid == 0:
    y = [bytes(50) for i in range(500)]
    os._exit(0)
os.waitpid(pid, 0)
print(pid)' >"$tmp/f.out" 2>"$tmp/f.err"
	kids=$(ls "$tmp"/f.trace.* 2>/dev/null | wc -l)
	forked=$(cat "$tmp/f.out")
	if [ "$kids" = 2 ] && [ -s "$tmp/f.trace.$forked" ]; then
		ok "the exec'd child and the forked child ($forked) wrote f.trace.PID files"
	else
		bad "child traces: $(ls "$tmp") (forked pid $forked); $(cat "$tmp/f.err")"
	fi
	good=0
	for f in "$tmp"/f.trace*; do
		"$replay" --kv "$f" >"$tmp/fr" 2>&1 && [ "$(kv "$tmp/fr" overlaps)" = 0 ] && good=$((good + 1))
	done
	[ "$good" = 3 ] && ok "all three traces replay cleanly" || bad "$good of 3 traces replay cleanly"
fi

# 4. the launcher, and nothing without the option
(cd "$tmp" && "$launcher" --trace "$tmp/l.trace" "$prog" >/dev/null 2>"$tmp/l.err")
[ -s "$tmp/l.trace" ] && grep -q "recorded into $tmp/l.trace" "$tmp/l.err" && ok "zonealloc --trace FILE records" ||
	bad "zonealloc --trace: $(cat "$tmp/l.err")"
mkdir "$tmp/none" && (cd "$tmp/none" && LD_PRELOAD="$lib" "$prog" >/dev/null 2>"$tmp/none.err")
[ -z "$(ls "$tmp/none")" ] && ! grep -q trace "$tmp/none.err" && ok "no trace without ZONEALLOC_TRACE" ||
	bad "untraced run left $(ls "$tmp/none") / $(cat "$tmp/none.err")"

echo "$fails failed"
[ $fails -eq 0 ]
