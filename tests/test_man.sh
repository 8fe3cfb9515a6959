#!/bin/bash
# The manual pages render without a warning and stay complete: every option
# the library's table prints is in zonealloc(1), every function and outcome
# of zonealloc.h in zonealloc(3).
set -u
srcdir=${srcdir:-.}
launcher=${ZA_LAUNCHER:?ZA_LAUNCHER must name the built zonealloc launcher}
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }

for page in zonealloc.1 zonealloc.3; do
	f=$srcdir/doc/$page
	warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
	text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>/dev/null | col -b)
	if [ -z "$warn" ] && [ "$(wc -l <<<"$text")" -gt 50 ]; then
		ok "man -l $page: $(wc -l <<<"$text") lines, no warnings"
	else
		bad "man -l $page: $warn"
	fi
done

text1=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$srcdir/doc/zonealloc.1" 2>/dev/null | col -b)
missing=
for opt in $("$launcher" --options | grep -o '^ZONEALLOC_[A-Z0-9_]*'); do
	grep -q "$opt" <<<"$text1" || missing+=" $opt"
done
for flag in $("$launcher" --help | grep -o '^  --[a-z-]*'); do
	grep -q -- "$flag" <<<"$text1" || missing+=" $flag"
done
[ -z "$missing" ] && ok "zonealloc(1) names every option and flag" || bad "zonealloc(1) lacks:$missing"

text3=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$srcdir/doc/zonealloc.3" 2>/dev/null | col -b)
missing=
for name in $(grep -oE '\bza_[a-z_]+\(' "$srcdir/include/zonealloc.h" | tr -d '(' | sort -u) \
	    $(grep -oE '\bZA_(OK|E[A-Z_]+|F_[A-Z]+)\b' "$srcdir/include/zonealloc.h" | grep -v ZA_F_ALL | sort -u); do
	grep -q "$name" <<<"$text3" || missing+=" $name"
done
[ -z "$missing" ] && ok "zonealloc(3) names every function, flag and outcome of zonealloc.h" ||
	bad "zonealloc(3) lacks:$missing"

echo "man pages: $pass passed, $fail failed"
[ $fail -eq 0 ]
