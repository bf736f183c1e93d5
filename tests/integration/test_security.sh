#!/bin/bash
# test_security.sh - what h5chunkd refuses and how it degrades: non-http
# schemes, credentials, loopback upstreams without --allow-private-upstreams,
# allow/deny prefixes (also against encoded, dotted and redirected forms),
# foreign Host headers, oversized URLs, a non-loopback listen address, the
# cache directory's mode, an unusable cache directory, and (as root, when
# tmpfs can be mounted) a full disk.
. "$(dirname "$0")/lib.sh"

MIB=1048576
mkdir -p "$T/www/pub/secret" "$T/www/other"
make_file "$T/www/pub/a.bin" $((2 * MIB + 99)) sec-a
make_file "$T/www/pub/secret/s.bin" $((300 * 1024)) sec-s
make_file "$T/www/other/b.bin" $((300 * 1024)) sec-b
make_file "$T/www/pub/big.bin" $((8 * MIB)) sec-big
start_nginx "$T/www"
start_fault_origin "$T/www"

# Asserts that reading REMOTE is refused with one of CODES (a|b) and STATUSES.
expect_refused() { # REMOTE STATUSES CODES WHAT
    local st
    st=$(mirror_get "$1" "bytes=0-99" "$T/e.out")
    assert_error "$2" "$st" "$T/e.out" "$3" "$4 ($1)"
}

# ---- daemon without --allow-private-upstreams ----
ALLOW_PRIVATE=0
CACHE_DIR="$T/cache-a"
start_daemon

check "non-http schemes are refused with 400 or 403 JSON"
for u in "file:///etc/passwd" "ftp://127.0.0.1/x" "gopher://127.0.0.1:70/_x" \
    "dict://127.0.0.1:11211/stat" "ldap://127.0.0.1/" "javascript:alert(1)" \
    "/etc/passwd" "//127.0.0.1/x" "http://" "not a url"; do
    expect_refused "$u" "400|403" "bad_request|url_not_allowed" "scheme/form"
done

check "URLs with credentials are refused"
port=${ORIGIN_URL##*:}
for u in "http://user:pass@127.0.0.1:$port/pub/a.bin" "http://user@127.0.0.1:$port/pub/a.bin" \
    "http://:pw@127.0.0.1:$port/pub/a.bin"; do
    expect_refused "$u" "400|403" "bad_request|url_not_allowed" "credentials"
done

check "a loopback origin without --allow-private-upstreams: 403 url_not_allowed"
expect_refused "$ORIGIN_URL/pub/a.bin" 403 url_not_allowed "loopback upstream"
for u in "http://localhost:$port/pub/a.bin" "http://127.1:$port/pub/a.bin" \
    "http://2130706433:$port/pub/a.bin" "http://0x7f000001:$port/pub/a.bin" \
    "http://0177.0.0.1:$port/pub/a.bin" "http://127.0.0.1.:$port/pub/a.bin" \
    "http://[::ffff:127.0.0.1]:$port/pub/a.bin" "http://0.0.0.0:$port/pub/a.bin"; do
    # Refused by the policy (403), unparsable (400) or unresolvable (502): never served.
    st=$(mirror_get "$u" "bytes=0-99" "$T/e.out")
    assert_error "400|403|502" "$st" "$T/e.out" "bad_request|url_not_allowed|upstream_error" \
        "loopback in disguise ($u)"
    log "$u -> $st $(json_get "$T/e.out" error.code)"
done
assert_eq 0 "$(stat_get upstream_bytes)" "upstream bytes fetched from refused upstreams"
grep -q "GET /pub/a.bin" "$T/nginx/access.log" 2>/dev/null &&
    fail "nginx was contacted although every loopback URL must be refused"

check "a foreign Host header: 403 host_not_allowed; loopback names are fine"
for h in "evil.example" "evil.example:$DAEMON_PORT" "localhost.evil.example" \
    "127.0.0.1.nip.io:$DAEMON_PORT" "evil.localhost.example"; do
    st=$(http_get "$DAEMON_URL/v1/health" "$T/e.out" -H "Host: $h")
    assert_error 403 "$st" "$T/e.out" host_not_allowed "Host: $h"
    st=$(http_get "$(mirror_url "$ORIGIN_URL/pub/a.bin")" "$T/e.out" -H "Host: $h")
    assert_error 403 "$st" "$T/e.out" host_not_allowed "Host: $h on /v1/file"
done
for h in "localhost:$DAEMON_PORT" "127.0.0.1:$DAEMON_PORT" "localhost" "[::1]:$DAEMON_PORT"; do
    st=$(http_get "$DAEMON_URL/v1/health" "$T/h.out" -H "Host: $h")
    assert_eq 200 "$st" "status with Host: $h"
done

check "a 10 KB url: 400 bad_request"
long="$ORIGIN_URL/pub/$(head -c 10000 /dev/zero | tr '\0' 'a')"
expect_refused "$long" 400 bad_request "10 KB URL"
long="$ORIGIN_URL/pub/a.bin?x=$(head -c 4100 /dev/zero | tr '\0' 'b')"
expect_refused "$long" 400 bad_request "URL just over 4096 bytes"

check "the cache directory is created with mode 0700"
mode=$(stat -c %a "$CACHE_DIR")
assert_eq 700 "$mode" "mode of a new cache dir $CACHE_DIR"
for sub in blocks tmp; do
    [[ -d "$CACHE_DIR/$sub" ]] && assert_eq 700 "$(stat -c %a "$CACHE_DIR/$sub")" "mode of $sub/"
done
stop_daemon

check "a non-loopback listen address without allow_remote_clients: refuses to start"
for addr in 0.0.0.0:0 "[::]:0"; do
    rc=0
    timeout -k 2 10 "$H5CHUNKD_BIN" --foreground --listen "$addr" --cache-dir "$T/cache-x" \
        >/dev/null 2>"$T/err" </dev/null || rc=$?
    assert_ne 0 "$rc" "exit status with --listen $addr"
    assert_ne 124 "$rc" "h5chunkd started on $addr"
    assert_one_line "$T/err" "--listen $addr stderr"
done
write_config "$T/remote.conf" "listen = 0.0.0.0:0" "cache_dir = $T/cache-x"
rc=0
timeout -k 2 10 "$H5CHUNKD_BIN" --foreground --config "$T/remote.conf" >/dev/null 2>"$T/err" \
    </dev/null || rc=$?
assert_ne 0 "$rc" "exit status with listen = 0.0.0.0:0 in the config file"
assert_ne 124 "$rc" "h5chunkd started on 0.0.0.0 from the config file"

# ---- daemon with --allow-private-upstreams and prefix lists ----
ALLOW_PRIVATE=1
CACHE_DIR="$T/cache-b"
write_config "$T/prefix.conf" \
    "allow_prefixes = $ORIGIN_URL/pub/, $FAULT_URL/pub/" \
    "deny_prefixes = $ORIGIN_URL/pub/secret/, $FAULT_URL/pub/secret/" \
    "upstream_retries = 0"
start_daemon --config "$T/prefix.conf"

check "with --allow-private-upstreams a loopback origin works"
check_mirror_range "$ORIGIN_URL/pub/a.bin" "$T/www/pub/a.bin" "1000-1500000" "allowed prefix"
st=$(mirror_get "$ORIGIN_URL/pub/a.bin" "" "$T/whole.out")
assert_eq 200 "$st" "whole allowed file"
assert_file_eq "$T/www/pub/a.bin" "$T/whole.out" "whole allowed file"

check "deny_prefixes and allow_prefixes are honoured"
expect_refused "$ORIGIN_URL/pub/secret/s.bin" 403 url_not_allowed "denied prefix"
expect_refused "$ORIGIN_URL/other/b.bin" 403 url_not_allowed "outside the allowed prefixes"
expect_refused "http://user:pw@${ORIGIN_URL#http://}/pub/a.bin" "400|403" \
    "bad_request|url_not_allowed" "credentials on an allowed prefix"

check "equivalent spellings do not slip past the prefix lists"
o=${ORIGIN_URL#http://}
for u in "$ORIGIN_URL/pub/../other/b.bin" "$ORIGIN_URL/pub/./secret/s.bin" \
    "$ORIGIN_URL/pub/x/../secret/s.bin" "$ORIGIN_URL/pub/%73ecret/s.bin" \
    "$ORIGIN_URL/pub/secre%74/s.bin" "$ORIGIN_URL/pub/%2e%2e/other/b.bin" \
    "HTTP://$o/pub/secret/s.bin" "http://127.0.0.1.:${o#*:}/pub/secret/s.bin"; do
    st=$(mirror_get "$u" "bytes=0-99" "$T/e.out")
    if [[ "$st" == 2* ]]; then
        soft_fail "a refused URL was served through an equivalent spelling: GET /v1/file?url=$(urlencode "$u") -> HTTP $st (expected 403 url_not_allowed)"
        continue
    fi
    assert_error "400|403|404" "$st" "$T/e.out" "bad_request|url_not_allowed|not_found" "spelling $u"
done

check "redirects are re-checked: no file://, no denied prefix, no outside prefix"
for target in "file:///etc/passwd" "$ORIGIN_URL/pub/secret/s.bin" "$ORIGIN_URL/other/b.bin" \
    "$FAULT_URL/pub/secret/s.bin"; do
    fault_control '{"mode":"reset_all"}'
    fault_control "{\"mode\":\"redirect\",\"status\":302,\"location\":\"$target\",\"count\":5}"
    st=$(mirror_get "$FAULT_URL/pub/a.bin" "bytes=0-99" "$T/e.out")
    grep -q "root:" "$T/e.out" && fail "a redirect to $target leaked /etc/passwd"
    if [[ "$st" == 2* ]]; then
        soft_fail "a redirect of $FAULT_URL/pub/a.bin to $target was followed: HTTP $st (expected 403 or 502)"
        continue
    fi
    assert_error "403|502" "$st" "$T/e.out" "url_not_allowed|upstream_error" "redirect to $target"
done
fault_control '{"mode":"reset_all"}'
check_mirror_range "$FAULT_URL/pub/a.bin" "$T/www/pub/a.bin" "0-99" "after the redirect faults"
stop_daemon

check "an unusable cache dir (below a regular file): starts, serves correct bytes pass-through"
echo "not a directory" >"$T/plainfile"
CACHE_DIR="$T/plainfile/cache"
start_daemon
for pass in 1 2; do
    check_mirror_range "$ORIGIN_URL/pub/a.bin" "$T/www/pub/a.bin" "100-2000000" "no cache, pass $pass"
done
st=$(mirror_get "$ORIGIN_URL/pub/a.bin" "" "$T/whole.out")
assert_eq 200 "$st" "whole file without a cache"
assert_file_eq "$T/www/pub/a.bin" "$T/whole.out" "whole file without a cache"
pt=$(stat_get passthrough_bytes)
we=$(stat_get cache_write_errors)
log "without a cache: passthrough_bytes=$pt cache_write_errors=$we"
((pt > 0 || we > 0)) || fail "neither passthrough_bytes nor cache_write_errors grew without a cache"
stop_daemon

check "full disk (1 MiB tmpfs as cache dir): 8 MiB still read correctly"
if [[ $(id -u) != 0 ]]; then
    log "SKIP full-disk part: not root"
elif ! mkdir -p "$T/tiny" || ! mount -t tmpfs -o size=1m,mode=0700 tmpfs "$T/tiny" 2>"$T/mount.err"; then
    log "SKIP full-disk part: cannot mount tmpfs ($(cat "$T/mount.err" 2>/dev/null))"
else
    MOUNTS+=("$T/tiny")
    CACHE_DIR="$T/tiny/cache"
    start_daemon
    for ((i = 0; i < 8; i++)); do
        check_mirror_range "$ORIGIN_URL/pub/big.bin" "$T/www/pub/big.bin" \
            "$((i * MIB))-$(((i + 1) * MIB - 1))" "full disk, MiB $i"
    done
    st=$(mirror_get "$ORIGIN_URL/pub/big.bin" "" "$T/whole.out")
    assert_eq 200 "$st" "whole 8 MiB file on a full disk"
    assert_file_eq "$T/www/pub/big.bin" "$T/whole.out" "whole 8 MiB file on a full disk"
    we=$(stat_get cache_write_errors)
    log "full disk: cache_write_errors=$we passthrough_bytes=$(stat_get passthrough_bytes) df: $(df -k "$T/tiny" | tail -n 1)"
    assert_gt "$we" 0 "cache_write_errors on a full disk"
    curl -sf --max-time 5 -o /dev/null "$DAEMON_URL/v1/health" || fail "no health on a full disk"
    stop_daemon
    umount "$T/tiny" && MOUNTS=()
fi

finish_test
