#!/bin/bash
# What configure found is what the library uses. With libunwind found
# (HAVE_LIBUNWIND in config.h) the library loads it by its soname on the
# first backtrace, so it must name that soname and must not link it (linked,
# it costs every process ~108 KiB of RSS); and under the preload a program
# has no libunwind mapped until a misuse report, whose backtrace then names
# the caller (once no source included config.h and no report had a trace,
# and nothing noticed). Built without it, neither, and the report says so.
set -u
lib=${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}
config=${ZA_CONFIG_H:?ZA_CONFIG_H must name config.h of the build}
helper=${ZA_BUILDDIR:?}/tests/unwind_lazy
fail=0
deps=$(ldd "$lib") || { echo "FAIL: ldd $lib"; exit 1; }
if grep -q libunwind <<<"$deps"; then
	echo "FAIL: libzonealloc.so links libunwind (it is loaded on first use):"
	echo "$deps"
	fail=1
else
	echo "ok: libzonealloc.so does not link libunwind"
fi
soname=$(sed -n 's/^#define ZA_LIBUNWIND_SONAME "\(.*\)"/\1/p' "$config")
if grep -q '^#define HAVE_LIBUNWIND 1' "$config"; then
	if [ -n "$soname" ] && grep -aq "$soname" "$lib"; then
		echo "ok: configure found libunwind and the library loads it as $soname"
	else
		echo "FAIL: configure found libunwind but the library does not name '$soname'"
		fail=1
	fi
	expect_trace='unwind_lazy_double_free+0x'
else
	expect_trace='(no backtrace: built without libunwind)'
fi
if [ -x "$helper" ]; then   # (not in the sanitizer build: it cannot preload)
	out=$(LD_PRELOAD=$lib "$helper" 2>&1)
	rc=$?
	if [ $rc -ne 134 ] || ! grep -q 'double free' <<<"$out"; then
		echo "FAIL: the preloaded double free did not abort with a report (exit $rc):"
		echo "$out"
		fail=1
	fi
	if grep -q 'libunwind mapped at start: no' <<<"$out"; then
		echo "ok: no libunwind mapped before the misuse"
	else
		echo "FAIL: libunwind is mapped before anything asked for a backtrace:"
		echo "$out"
		fail=1
	fi
	if grep -qF "$expect_trace" <<<"$out"; then
		echo "ok: the report's backtrace: $(grep -cF '  #' <<<"$out") frames, the caller named"
	else
		echo "FAIL: the report has no '$expect_trace':"
		echo "$out"
		fail=1
	fi
fi
exit $fail
