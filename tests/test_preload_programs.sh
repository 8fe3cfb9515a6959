#!/bin/bash
# Real, unmodified programs under LD_PRELOAD=libzonealloc.so: python3, perl,
# bash, sqlite3, git and gcc each run a workload three times: on glibc's
# heap, on zonealloc's and on zonealloc's in guard mode (both with
# ZONEALLOC_CHECK=1, which verifies the heap at exit; in guard mode that
# includes every live object's canary), and the outputs must be identical
# byte for byte: guard mode must find nothing in programs that are right.
set -u
lib=${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}
data=${srcdir:-.}/tests/data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0

# run NAME CMD...: runs CMD in $work/run (fresh each time) without the
# preload, with it, and with it in guard mode; compares stdout, stderr and
# exit status.
run() {
	local name=$1
	shift
	for mode in glibc zonealloc guard; do
		rm -rf "$work/run" && mkdir "$work/run"
		local env=()
		[ $mode = zonealloc ] && env=(LD_PRELOAD="$lib" ZONEALLOC_CHECK=1)
		[ $mode = guard ] && env=(LD_PRELOAD="$lib" ZONEALLOC_CHECK=1 ZONEALLOC_GUARD=1)
		(cd "$work/run" && env "${env[@]}" "$@") >"$work/$name.$mode.out" 2>"$work/$name.$mode.err"
		echo "exit $?" >>"$work/$name.$mode.out"
	done
	for mode in zonealloc guard; do
		if cmp -s "$work/$name.glibc.out" "$work/$name.$mode.out" &&
		   cmp -s "$work/$name.glibc.err" "$work/$name.$mode.err"; then
			echo "ok: $name, $mode ($(wc -c <"$work/$name.glibc.out") bytes of output)"
			pass=$((pass + 1))
		else
			echo "FAIL: $name: output differs under $mode"
			diff "$work/$name.glibc.out" "$work/$name.$mode.out" | head -20
			diff "$work/$name.glibc.err" "$work/$name.$mode.err" | head -20
			fail=$((fail + 1))
		fi
	done
}

for prog in python3 perl bash sqlite3 git gcc; do
	command -v $prog >/dev/null || { echo "FAIL: $prog is not installed"; fail=$((fail + 1)); }
	# The comparison proves nothing unless zonealloc really is the heap:
	# its exit report must appear.
	case $prog in
	python3) probe=(python3 -c 'x = [str(i) for i in range(1000)]') ;;
	perl) probe=(perl -e 'my @x = (1) x 1000') ;;
	bash) probe=(bash -c 'x=$(seq 100)') ;;
	sqlite3) probe=(sqlite3 :memory: 'select 1') ;;
	git) probe=(git --version) ;;
	gcc) probe=(gcc --version) ;;
	esac
	if ! env LD_PRELOAD="$lib" ZONEALLOC_STATS=1 "${probe[@]}" 2>&1 >/dev/null |
	     grep -q '^zonealloc report'; then
		echo "FAIL: $prog does not run on zonealloc's heap under LD_PRELOAD"
		fail=$((fail + 1))
	fi
done

run python3 python3 "$(realpath "$data/churn.py")"
run perl perl "$(realpath "$data/churn.pl")"
run bash bash "$(realpath "$data/churn.sh")"
run sqlite3 sh -c "sqlite3 :memory: < '$(realpath "$data/../../examples/workload.sql")'"
run git sh -c '
	export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t \
	       GIT_COMMITTER_EMAIL=t@example.com GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" \
	       GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" HOME=$PWD GIT_CONFIG_NOSYSTEM=1
	git init -q -b main repo && cd repo &&
	for i in $(seq 1 300); do seq $i $((i * 40)) > file$i.txt; done &&
	git add . && git commit -q -m "generated files" &&
	for i in $(seq 1 300 | sed -n "1~3p"); do echo change >> file$i.txt; done &&
	git commit -qam "change a third" && git log --stat --format="%H %s" | tail -5 &&
	git gc -q && git fsck && git diff HEAD~1 --stat | tail -1'
run gcc sh -c "gcc -O2 -Wall -o prog '$(realpath "$data/prog.c")' && ./prog && gcc -O2 -c -o prog.o '$(realpath "$data/prog.c")' && sha256sum prog.o"

echo "preload programs: $pass passed, $fail failed"
[ $fail -eq 0 ]
