#!/usr/bin/env bash
# test_man.sh - the manual pages: each formats without a single groff
# warning (groff -man -ww -z, and man --warnings when man-db is present);
# h5chunkd.conf.5 documents every option of lib/config.c's table and of
# conf/h5chunkd.conf; h5chunkd.8 and h5chunk.1 name every flag that the
# programs' --help prints.  Starts no process but the programs' --help.
#
# Environment (besides lib.sh's): H5CHUNK_BIN, the client (default: next to
# the daemon's build dir, client/h5chunk).  Needs groff (Debian: groff-base).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MAN_DIR="$TESTS_SRCDIR/../man"
PAGES=(h5chunkd.8 h5chunkd.conf.5 h5chunk.1 h5chunkd-site-cache.1)
command -v groff >/dev/null 2>&1 || skip "groff not installed (apt-get install groff-base)"
if [[ -z "${H5CHUNK_BIN:-}" ]]; then
    H5CHUNK_BIN="$(cd "$(dirname "$H5CHUNKD_BIN")/.." 2>/dev/null && pwd)/client/h5chunk"
fi

# ---- formatting ----

for p in "${PAGES[@]}"; do
    f="$MAN_DIR/$p"
    [[ -s "$f" ]] || fail "missing man page $f"
    check "groff -man -ww -z $p"
    timeout 30 groff -man -ww -z "$f" >"$T/groff.out" 2>&1 || fail "groff failed on $p: $(head -c 600 "$T/groff.out")"
    [[ ! -s "$T/groff.out" ]] || fail "groff warnings for $p: $(head -c 600 "$T/groff.out")"
    if command -v man >/dev/null 2>&1; then
        check "man --warnings -l $p"
        MANWIDTH=80 timeout 30 man --warnings -l "$f" >"$T/man.txt" 2>"$T/man.err" ||
            fail "man failed on $p: $(head -c 600 "$T/man.err")"
        [[ ! -s "$T/man.err" ]] || fail "man warnings for $p: $(head -c 600 "$T/man.err")"
        [[ -s "$T/man.txt" ]] || fail "man rendered nothing for $p"
    fi
done

# ---- every configuration option in h5chunkd.conf(5) ----

check "h5chunkd.conf.5 documents every option"
config_c="$TESTS_SRCDIR/../lib/config.c"
conf_file="$TESTS_SRCDIR/../conf/h5chunkd.conf"
[[ -s "$config_c" && -s "$conf_file" ]] || fail "missing $config_c or $conf_file"
# Rows of config.c's table open with {"name", OPT_...; the conf file lists "# name = value".
grep -oE '\{"[a-z0-9_]+", *OPT_' "$config_c" | sed -E 's/^\{"([a-z0-9_]+)".*/\1/' >"$T/opts.c"
grep -oE '^# ?[a-z][a-z0-9_]* =' "$conf_file" | sed -E 's/^# ?([a-z0-9_]+) =/\1/' >"$T/opts.conf"
n=$(wc -l <"$T/opts.c")
assert_ge "$n" 20 "options found in lib/config.c's table"
sort -u "$T/opts.c" "$T/opts.conf" >"$T/opts"
missing=()
while read -r name; do
    grep -qE "^\.B ${name}\$" "$MAN_DIR/h5chunkd.conf.5" || missing+=("$name")
done <"$T/opts"
((${#missing[@]} == 0)) || fail "h5chunkd.conf.5 lacks an entry (.B NAME) for: ${missing[*]}"
log "h5chunkd.conf.5 documents all $(wc -l <"$T/opts") options"

check "h5chunkd.conf.5 marks exactly the options SIGHUP applies as reloadable"
# Rows flagged F_RELOAD in config.c, against entries (.TP / .B NAME ... up to the
# next .TP, .SS or .SH) that say "reloadable".
grep -oE '\{"[a-z0-9_]+", [^}]*F_RELOAD' "$config_c" | sed -E 's/^\{"([a-z0-9_]+)".*/\1/' |
    sort -u >"$T/reload.c"
awk 'prev == ".TP" && /^\.B [a-z0-9_]+$/ { name = $2 }
     /^\.(TP|SS|SH)/ { name = "" }
     name != "" && /reloadable/ { print name }
     { prev = $0 }' "$MAN_DIR/h5chunkd.conf.5" | sort -u >"$T/reload.man"
assert_ge "$(wc -l <"$T/reload.c")" 1 "F_RELOAD options in lib/config.c"
if ! diff "$T/reload.c" "$T/reload.man" >"$T/reload.diff"; then
    fail "reloadable options differ (< config.c, > h5chunkd.conf.5): $(tr '\n' ' ' <"$T/reload.diff")"
fi

# ---- every flag in the pages of the programs ----

# Checks that each --flag that PROGRAM --help prints appears in PAGE (as \-\-flag).
flags_in_page() { # PROGRAM PAGE
    local prog=$1 page=$2 flag missing=()
    timeout 10 "$prog" --help >"$T/help.txt" 2>&1 || fail "$prog --help failed"
    while read -r flag; do
        grep -qF -- "${flag//-/\\-}" "$MAN_DIR/$page" || missing+=("$flag")
    done < <(grep -oE -- '--[a-z][a-z-]*' "$T/help.txt" | sort -u)
    ((${#missing[@]} == 0)) || fail "$page does not mention: ${missing[*]}"
}

if [[ -x "$H5CHUNKD_BIN" ]]; then
    check "h5chunkd.8 names every flag of h5chunkd --help"
    flags_in_page "$H5CHUNKD_BIN" h5chunkd.8
else
    log "SKIP part: h5chunkd not built ($H5CHUNKD_BIN)"
fi
check "h5chunkd-site-cache.1 names every flag of h5chunkd-site-cache --help"
flags_in_page "$TESTS_SRCDIR/../scripts/h5chunkd-site-cache" h5chunkd-site-cache.1
if [[ -x "$H5CHUNK_BIN" ]]; then
    check "h5chunk.1 names every flag and command of h5chunk --help"
    flags_in_page "$H5CHUNK_BIN" h5chunk.1
    for c in meta get slice prefetch stats "cache ls" "cache purge" zarr-url; do
        grep -qF -- ".B ${c//-/\\-}" "$MAN_DIR/h5chunk.1" || fail "h5chunk.1 has no entry for '$c'"
    done
else
    log "SKIP part: h5chunk not built ($H5CHUNK_BIN)"
fi

finish_test
