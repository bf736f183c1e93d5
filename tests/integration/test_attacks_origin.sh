#!/bin/bash
# test_attacks_origin.sh - a hostile origin against the daemon's upstream
# side (issue 10): redirects to refused hosts, A -> B -> A chains, loops and
# too many hops, redirects to file:// and gopher:// and to a loopback
# address the address policy forbids, gzip-encoded and gzip-transfer-encoded
# bodies, an endless 500 body, bodies longer than their Content-Range,
# absurd Content-Range totals, a validator dropped mid-file, client Range
# overflows, SSRF through every spelling of a loopback address and deny
# prefixes through every spelling of a host.
#
# The origin (hostile_origin.py) listens on 127.0.0.2 (A: trusted through
# allow_upstream_networks and allow_prefixes), 127.0.0.3 (B: address
# allowed, URL not) and 127.0.0.1 (F: URL allowed, address forbidden), and
# counts connections per listener, so "no request reached B" and "no
# connection was opened to F" are measured, not assumed.  The daemon's
# peak RSS is recorded per attack (VmHWM, reset through clear_refs before
# each) and a table is printed.  Bounded: every curl has --max-time, the
# origin's endless body stops at 512 MiB or 30 s; about 30 s in all.
. "$(dirname "$0")/lib.sh"

HOSTILE_PY="$TESTS_SRCDIR/integration/hostile_origin.py"
SIZE=1048576
MAX_REDIRECTS=5
CURL_MAX_TIME=30

# ---- the hostile origin ----
[[ -s "$HOSTILE_PY" ]] || fail "hostile origin missing: $HOSTILE_PY"
"$PYTHON_H5" "$HOSTILE_PY" --port-file "$T/hostile.ports" >>"$T/hostile.log" 2>&1 &
HOSTILE_PID=$!
track_pid "$HOSTILE_PID"
for ((i = 0; i < 100; i++)); do
    [[ -s "$T/hostile.ports" ]] && break
    kill -0 "$HOSTILE_PID" 2>/dev/null || skip "hostile origin cannot listen on 127.0.0.2/127.0.0.3: $(tail -n 3 "$T/hostile.log")"
    sleep 0.1
done
[[ -s "$T/hostile.ports" ]] || fail "hostile origin wrote no port file in 10 s"
port_of() { "$PYTHON_H5" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/hostile.ports" "$1"; }
PA=$(port_of A)
PB=$(port_of B)
PF=$(port_of F)
A="http://127.0.0.2:$PA"
B="http://127.0.0.3:$PB"
F="http://127.0.0.1:$PF"
wait_http "$A/_stats" 10 "$HOSTILE_PID" || fail "hostile origin does not answer at $A"

origin_reset() { curl -sS --max-time 10 -o /dev/null -X POST "$A/_reset" || fail "origin /_reset failed"; }
origin_stat() { # PATH (connections.F, requests.A /loop, bytes_500)
    curl -sS --max-time 10 -o "$T/ostats.json" "$A/_stats" || fail "origin /_stats failed"
    "$PYTHON_H5" - "$T/ostats.json" "$1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
kind, _, key = sys.argv[2].partition(".")
v = s[kind] if not key else s[kind].get(key, 0)
print(v)
EOF
}

# ---- the daemon: only A and B by address, only A and F by URL ----
ALLOW_PRIVATE=0
write_config "$T/attacks.conf" \
    "allow_upstream_networks = 127.0.0.2/32, 127.0.0.3/32" \
    "allow_prefixes = $A/, $F/" \
    "deny_prefixes = $A/secret/" \
    "max_redirects = $MAX_REDIRECTS" \
    "block_size = 64K" \
    "h5_prefix_bytes = 0" \
    "upstream_retries = 1" \
    "upstream_retry_base_ms = 50" \
    "upstream_timeout_ms = 20000"
start_daemon --config "$T/attacks.conf"

# ---- the table ----
RSS_NOTE="VmHWM since the attack began"
rss_reset() {
    # Writing 5 to clear_refs resets the peak RSS (Linux >= 4.0); without it the
    # column is the peak since start.
    echo 5 >"/proc/$DAEMON_PID/clear_refs" 2>/dev/null || RSS_NOTE="VmHWM since start (clear_refs refused)"
}
rss_peak_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status"; }
MAX_RSS_KIB=$((256 * 1024)) # a hostile origin must not make the daemon grow
ROWS=()
row() { # ATTACK EXPECTED OBSERVED
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "h5chunkd died during: $1"
    local kib
    kib=$(rss_peak_kib)
    assert_le "$kib" "$MAX_RSS_KIB" "peak RSS (KiB) during: $1"
    ROWS+=("$1|$2|$3|$(awk -v k="$kib" 'BEGIN { printf "%.1f MiB", k / 1024 }')")
    log "attack: $1 -> $3"
}
begin() { # WHAT
    check "$1"
    origin_reset
    rss_reset
}

# GET through the daemon; sets ST (status) and CODE (error code or "-").  The
# error body is read with sed, not a Python per request: the suite stays fast on
# a loaded machine.
get() { # REMOTE_URL [RANGE]
    ST=$(mirror_get "$1" "${2:-bytes=0-99}" "$T/a.out")
    CODE=-
    if [[ "$ST" != 2* ]]; then
        CODE=$(sed -nE 's/^\{"error":\{"code":"([a-z_]+)","message":".+"\}\}$/\1/p' "$T/a.out" 2>/dev/null)
        [[ -n "$CODE" ]] || CODE="<no JSON error>"
    fi
}
# Asserts the last get() was an error: STATUSES and CODES are a|b alternatives.
expect_err() { # STATUSES CODES WHAT
    if [[ "|$1|" != *"|$ST|"* || "|$2|" != *"|$CODE|"* ]]; then
        fail "$3: expected HTTP $1 with error code '$2', got HTTP $ST body: $(head -c 400 "$T/a.out")"
    fi
}
tally() { tr ' ' '\n' | grep . | sort | uniq -c | awk '{ printf "%s x%s, ", $2, $1 }'; } # "400 x3, 403 x15, "
redirect_to() { printf '%s/redir/to?u=%s' "$A" "$(urlencode "$1")"; }
expect_pattern() { # FILE OFFSET LEN VERSION WHAT: body is the origin's pattern
    "$PYTHON_H5" - "$@" <<'EOF' || fail "$5: body is not version $4 of the file"
import sys
path, off, n, v = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = open(path, "rb").read()
want = bytes(((off + i) * 7 + 13 * v) % 251 for i in range(n))
sys.exit(0 if data == want else 1)
EOF
}

REFUSED0=$(stat_get upstream_refused)
REDIRECTS0=$(stat_get upstream_redirects)

# ---- redirects ----
begin "a redirect to a host outside allow_prefixes is refused before B is contacted"
get "$(redirect_to "$B/ok/x")"
expect_err 403 url_not_allowed "redirect A -> B"
b=$(origin_stat connections.B)
assert_eq 0 "$b" "connections to B"
row "redirect A -> B (B not in allow_prefixes)" "403 url_not_allowed, B never contacted" "$ST $CODE, B connections $b"

begin "A -> B -> A is refused at B"
get "$(redirect_to "$B/redir/to?u=$(urlencode "$A/ok/aba")")"
expect_err 403 url_not_allowed "redirect A -> B -> A"
b=$(origin_stat connections.B)
assert_eq 0 "$b" "connections to B"
assert_eq 0 "$(origin_stat 'requests.A /ok/aba')" "requests for the final A hop"
row "redirect A -> B -> A" "403 url_not_allowed at B, B never contacted" "$ST $CODE, B connections $b"

begin "a redirect into deny_prefixes is refused"
get "$(redirect_to "/secret/x")"
expect_err 403 url_not_allowed "redirect into deny_prefixes"
n=$(origin_stat 'requests.A /secret/x')
assert_eq 0 "$n" "requests for the denied path"
row "redirect A -> A/secret/ (denied prefix)" "403 url_not_allowed, no request" "$ST $CODE, denied requests $n"

begin "a redirect loop ends after max_redirects hops"
get "$A/loop"
expect_err 502 upstream_error "redirect loop"
n=$(origin_stat 'requests.A /loop')
assert_eq $((MAX_REDIRECTS + 1)) "$n" "requests of /loop (first + $MAX_REDIRECTS hops, no retry)"
row "redirect loop (A -> A -> ...)" "502 upstream_error after $((MAX_REDIRECTS + 1)) requests" "$ST $CODE, $n requests"

begin "exactly max_redirects hops are followed; one more is refused"
get "$A/chain/$((MAX_REDIRECTS - 1))" "bytes=1000-1999"
assert_eq 206 "$ST" "status after $MAX_REDIRECTS hops"
expect_pattern "$T/a.out" 1000 1000 0 "$MAX_REDIRECTS hops"
st1=$ST
get "$A/chain/$MAX_REDIRECTS"
expect_err 502 upstream_error "$((MAX_REDIRECTS + 1)) hops"
row "redirect chain of $MAX_REDIRECTS / $((MAX_REDIRECTS + 1)) hops" "206 right bytes / 502 upstream_error" "$st1 / $ST $CODE"

begin "redirects to file:// and gopher:// are refused"
obs=""
for target in "file:///etc/passwd" "gopher://127.0.0.2:$PA/_GET%20/ok/x" "ftp://127.0.0.2:$PA/x" \
    "dict://127.0.0.2:$PA/x"; do
    get "$(redirect_to "$target")"
    grep -q "root:" "$T/a.out" && fail "a redirect to $target leaked a local file"
    expect_err 403 url_not_allowed "redirect to $target"
    obs+="${target%%:*}:$ST "
done
row "redirect to file://, gopher://, ftp://, dict://" "403 url_not_allowed each" "$obs"

begin "a redirect to a forbidden address is refused before connecting, in every spelling"
obs=""
for target in "$F/ok/x" "http://2130706433:$PF/ok/x" "http://127.1:$PF/ok/x" \
    "http://[::ffff:127.0.0.1]:$PF/ok/x" "http://[::127.0.0.1]:$PF/ok/x" "http://localhost:$PF/ok/x" \
    "http://0x7f.0.0.1:$PF/ok/x"; do
    get "$(redirect_to "$target")"
    expect_err 403 url_not_allowed "redirect to $target"
    obs+="$ST "
done
f=$(origin_stat connections.F)
assert_eq 0 "$f" "connections to the forbidden loopback listener"
row "redirect to 127.0.0.1 (address policy), 7 spellings" "403 each, F never connected" "${obs}F connections $f"

# ---- encodings ----
begin "a gzip-encoded answer is refused and never cached"
get "$A/gzip-once/g" "bytes=0-9999"
expect_err 502 upstream_error "Content-Encoding: gzip"
st1="$ST $CODE"
get "$A/gzip-once/g" "bytes=0-9999"
assert_eq 206 "$ST" "the same file once the origin stops encoding"
expect_pattern "$T/a.out" 0 10000 0 "bytes after a refused gzip answer"
cr=$(header_get "$T/a.out.h" Content-Range)
assert_eq "bytes 0-9999/$SIZE" "$cr" "file size after a refused gzip answer"
row "Content-Encoding: gzip (probe)" "502 upstream_error, nothing cached" "$st1; then 206 right bytes, size $SIZE"

begin "a gzip answer to a later range is refused"
get "$A/gzip-late" "bytes=0-99"
assert_eq 206 "$ST" "offset 0 of /gzip-late"
get "$A/gzip-late" "bytes=600000-600099"
expect_err 502 upstream_error "gzip-encoded range"
row "Content-Encoding: gzip (later range)" "502 upstream_error" "$ST $CODE"

begin "Transfer-Encoding: gzip, chunked is refused"
get "$A/te-gzip" "bytes=0-99"
expect_err 502 upstream_error "Transfer-Encoding: gzip"
row "Transfer-Encoding: gzip, chunked" "502 upstream_error" "$ST $CODE"

# ---- bodies ----
begin "an endless 500 body is cut after a few KiB"
before=$(stat_get upstream_bytes)
t0=$(date +%s%N)
get "$A/endless500"
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
read_bytes=$(($(stat_get upstream_bytes) - before))
expect_err 502 upstream_error "endless 500"
# Each of the 2 attempts may read 4 KiB plus one libcurl buffer (16 KiB) before the cut.
assert_le "$read_bytes" $((2 * (4096 + 16384))) "body bytes the daemon read from endless 500s"
assert_le "$ms" 10000 "milliseconds to answer an endless 500"
sleep 0.5 # the origin notices the closed socket on its next write
sent=$(origin_stat bytes_500)
row "endless 500 body (2 attempts)" "502 fast, <= 40 KiB read" "$ST $CODE in ${ms} ms, daemon read $read_bytes B (origin pushed $sent B into socket buffers)"

begin "a chunked body longer than its Content-Range is refused"
get "$A/longer-chunked" "bytes=0-99"
expect_err 502 upstream_error "chunked body past Content-Range"
row "206 chunked body 64 KiB past Content-Range" "502 upstream_error" "$ST $CODE"

begin "a Content-Length larger than the Content-Range is refused"
get "$A/longer-cl" "bytes=0-99"
expect_err 502 upstream_error "Content-Length past Content-Range"
row "206 Content-Length > Content-Range" "502 upstream_error" "$ST $CODE"

begin "absurd Content-Range totals"
get "$A/bad-total" "bytes=0-99"
expect_err 502 upstream_error "Content-Range total past 2^64"
st1="$ST $CODE"
get "$A/max-total" "bytes=0-99"
expect_err 502 upstream_error "Content-Range total 2^64-1"
row "Content-Range total 10^23 / 2^64-1" "502 upstream_error each" "$st1 / $ST $CODE"

# ---- versions ----
begin "an origin that drops its ETag mid-file: 409, never mixed bytes"
get "$A/dropetag" "bytes=0-99"
assert_eq 206 "$ST" "first read of /dropetag"
expect_pattern "$T/a.out" 0 100 0 "first read of /dropetag"
get "$A/dropetag" "bytes=600000-600099"
expect_err 409 upstream_changed "range answered without the ETag"
st1="$ST $CODE"
get "$A/dropetag" "bytes=60000-70099" # spans the probe's cached block and a fetched one
if [[ "$ST" == 206 ]]; then
    expect_pattern "$T/a.out" 60000 10100 0 "a range across cached and fetched blocks"
else
    expect_err 409 upstream_changed "range across versions"
fi
row "ETag \"v0\", then version 1 without ETag" "409 upstream_changed, no mixed answer" "$st1; spanning read: $ST $CODE"

begin "an origin that swaps its ETag for Last-Modified: 409"
get "$A/etag-to-lm" "bytes=0-99"
assert_eq 206 "$ST" "first read of /etag-to-lm"
get "$A/etag-to-lm" "bytes=600000-600099"
expect_err 409 upstream_changed "range answered with Last-Modified only"
row "ETag, then only Last-Modified" "409 upstream_changed" "$ST $CODE"

# ---- client ranges ----
begin "Range overflow from a client"
obs=""
for r in "bytes=0-18446744073709551615" "bytes=18446744073709551615-" \
    "bytes=99999999999999999999999-" "bytes=-18446744073709551616" "bytes=1048575-1048575" \
    "bytes=1048576-"; do
    get "$A/ok/r" "$r"
    [[ "$ST" =~ ^(200|206|400|416)$ ]] || fail "Range $r: HTTP $ST $(head -c 300 "$T/a.out")"
    if [[ "$ST" == 206 && "$r" == "bytes=0-18446744073709551615" ]]; then
        expect_pattern "$T/a.out" 0 "$SIZE" 0 "Range $r"
    fi
    obs+="$ST "
done
row "client Range overflows (6 forms)" "200/206 right bytes, 400 or 416" "$obs"

# ---- SSRF and deny spellings ----
begin "SSRF: every spelling of a loopback or private address is refused"
obs=""
for u in "$F/ok/x" "http://127.1:$PF/ok/x" "http://0x7f.0.0.1:$PF/ok/x" \
    "http://017700000001:$PF/ok/x" "http://2130706433:$PF/ok/x" "http://127.0.0.1.:$PF/ok/x" \
    "http://[::ffff:127.0.0.1]:$PF/ok/x" "http://[::127.0.0.1]:$PF/ok/x" \
    "http://%31%32%37.0.0.1:$PF/ok/x" "http://LOCALHOST.:$PF/ok/x" "http://[::1]:$PF/ok/x" \
    "http://0.0.0.0:$PF/ok/x" "http://[::]:$PF/ok/x" "http://169.254.169.254/latest/meta-data/" \
    "http://[::ffff:a9fe:a9fe]/latest/" "http://[2002:7f00:1::]:$PF/ok/x" \
    "$A/ok/a%00b" "$A/ok/a%0d%0aHost:%20evil"; do
    get "$u"
    expect_err "400|403" "bad_request|url_not_allowed" "SSRF $u"
    obs+="$ST "
done
f=$(origin_stat connections.F)
assert_eq 0 "$f" "connections to the forbidden loopback listener"
row "SSRF, 18 address spellings and encoded control characters" "400/403 each, F never connected" "$(tally <<<"$obs")F connections $f"

begin "deny_prefixes holds for every spelling of the host"
obs=""
for u in "$A/secret/x" "http://127.2:$PA/secret/x" "http://2130706434:$PA/secret/x" \
    "http://0x7f.0.0.2:$PA/secret/x" "http://0177.0.0.2:$PA/secret/x" \
    "http://127.0.0.2.:$PA/secret/x" "http://[::ffff:127.0.0.2]:$PA/secret/x" \
    "http://[::ffff:7f00:2]:$PA/secret/x" "HTTP://127.0.0.2:$PA/SECRET/../secret/x" \
    "$A/ok/../secret/x" "$A/%73ecret/x" "$A//secret/x"; do
    get "$u"
    expect_err "400|403" "bad_request|url_not_allowed" "denied $u"
    obs+="$ST "
done
n=$(origin_stat 'requests.A /secret/x')
assert_eq 0 "$n" "requests that reached the denied path"
row "deny_prefixes, 12 spellings of the host/path" "400/403 each, none reach the origin" "$(tally <<<"$obs")origin hits $n"

check "refusals and redirects are counted in /v1/stats"
refused=$(($(stat_get upstream_refused) - REFUSED0))
redirects=$(($(stat_get upstream_redirects) - REDIRECTS0))
# At least: 2 B hops, 1 denied hop, 4 schemes, 7 forbidden addresses, 3 codings, 2 lengths.
assert_ge "$refused" 19 "upstream_refused after the attacks"
# At least: 5 for the loop, 5 + 5 for the chains.
assert_ge "$redirects" 15 "upstream_redirects after the attacks"
log "upstream_refused +$refused, upstream_redirects +$redirects"

check "the daemon is still healthy"
st=$(http_get "$DAEMON_URL/v1/health" "$T/h.out")
assert_eq 200 "$st" "health after the attacks"
get "$A/ok/final" "bytes=5000-5999"
assert_eq 206 "$ST" "a normal read after the attacks"
expect_pattern "$T/a.out" 5000 1000 0 "a normal read after the attacks"

# ---- report ----
{
    printf '\n%-58s | %-44s | %s | %s\n' "attack" "expected" "observed" "peak RSS ($RSS_NOTE)"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r a e o p <<<"$r"
        printf '%-58s | %-44s | %s | %s\n' "$a" "$e" "$o" "$p"
    done
} | tee "$T/attack_table.txt"
[[ -n "${ATTACK_TABLE_OUT:-}" ]] && cp "$T/attack_table.txt" "$ATTACK_TABLE_OUT"
stop_daemon
finish_test
