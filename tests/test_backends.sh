#!/bin/bash
# The conformance, thread and real-program tests again under each other
# backend (ZONEALLOC_BACKEND=mimalloc, =libc): whatever serves, the malloc
# contract holds, programs run as on glibc, and zonealloc's report and
# heap check stay on top. mimalloc is skipped, saying so, only where
# libmimalloc.so.2 is not installed.
set -u
lib=${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}
builddir=${ZA_BUILDDIR:?ZA_BUILDDIR must name the build directory}
srcdir=${srcdir:-.}
pass=0
fail=0

for backend in mimalloc libc; do
	probe=$(env LD_PRELOAD="$lib" ZONEALLOC_BACKEND=$backend ZONEALLOC_VERBOSE=1 true 2>&1)
	if [ "$probe" != "zonealloc: backend $backend serves new allocations (ZONEALLOC_BACKEND)" ]; then
		if [ $backend = mimalloc ] && grep -q "cannot be loaded" <<<"$probe"; then
			echo "SKIP: the mimalloc backend: libmimalloc.so.2 is not installed (Debian package libmimalloc2.0)"
			continue
		fi
		echo "FAIL: ZONEALLOC_BACKEND=$backend does not start: $probe"
		fail=$((fail + 1))
		continue
	fi
	# The backend really serves: a real program's report says whose
	# blocks it allocated.
	report=$(env LD_PRELOAD="$lib" ZONEALLOC_BACKEND=$backend ZONEALLOC_STATS=1 \
		python3 -c 'x = [str(i) for i in range(10000)]' 2>&1 >/dev/null)
	if grep -Eq "^  backend: $backend: [1-9][0-9]+ allocations" <<<"$report"; then
		echo "ok: python3's report under ZONEALLOC_BACKEND=$backend: $(grep '^  backend:' <<<"$report")"
		pass=$((pass + 1))
	else
		echo "FAIL: python3 under ZONEALLOC_BACKEND=$backend: $(head -3 <<<"$report")"
		fail=$((fail + 1))
	fi
	for t in test_malloc_names test_malloc_threads_names; do
		if out=$(ZONEALLOC_BACKEND=$backend "$builddir/tests/$t" 2>&1) &&
		   { [ $t != test_malloc_names ] || grep -q "backend $backend serves" <<<"$out"; }; then
			echo "ok: $t under ZONEALLOC_BACKEND=$backend: $(tail -1 <<<"$out")"
			pass=$((pass + 1))
		else
			echo "FAIL: $t under ZONEALLOC_BACKEND=$backend"
			grep -v '^  ' <<<"$out" | tail -20
			fail=$((fail + 1))
		fi
	done
	if out=$(ZONEALLOC_BACKEND=$backend "$srcdir/tests/test_preload_programs.sh" 2>&1); then
		echo "ok: real programs under ZONEALLOC_BACKEND=$backend: $(tail -1 <<<"$out")"
		pass=$((pass + 1))
	else
		echo "FAIL: real programs under ZONEALLOC_BACKEND=$backend"
		tail -20 <<<"$out"
		fail=$((fail + 1))
	fi
done

echo "backends: $pass passed, $fail failed"
[ $fail -eq 0 ]
