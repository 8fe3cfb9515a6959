#!/bin/bash
# What configure found is what the library uses: with libunwind found
# (HAVE_LIBUNWIND in config.h), libzonealloc.so must depend on it, or the
# backtraces of misuse reports are not there (once, no source included
# config.h and nothing noticed); without it, it must not.
set -u
lib=${ZA_LIB:?ZA_LIB must name the built libzonealloc.so}
config=${ZA_CONFIG_H:?ZA_CONFIG_H must name config.h of the build}
deps=$(ldd "$lib") || { echo "FAIL: ldd $lib"; exit 1; }
if grep -q '^#define HAVE_LIBUNWIND 1' "$config"; then
	if grep -q libunwind <<<"$deps"; then
		echo "ok: configure found libunwind and libzonealloc.so links it"
		exit 0
	fi
	echo "FAIL: configure found libunwind but libzonealloc.so does not link it:"
else
	if ! grep -q libunwind <<<"$deps"; then
		echo "ok: built without libunwind, and libzonealloc.so does not link it"
		exit 0
	fi
	echo "FAIL: built without libunwind, yet libzonealloc.so links it:"
fi
echo "$deps"
exit 1
