#!/bin/bash
# test_mirror.sh - GET/HEAD /v1/file against a real nginx origin: every
# kind of Range, byte-identical to nginx and to the file; errors as JSON;
# cold then warm (no upstream request), and warm again after a restart;
# /metrics, /v1/health, unknown endpoint, missing remote file; a 50 MiB
# cold and warm read (counts and times reported, not asserted on time).
. "$(dirname "$0")/lib.sh"

BLOCK=262144
SIZE=$((20 * 1024 * 1024 + 12345)) # the last block is short
mkdir -p "$T/www/data"
FILE="$T/www/data/big.bin"
make_file "$FILE" "$SIZE" mirror-20m
start_nginx "$T/www"
REMOTE="$ORIGIN_URL/data/big.bin"

CONF="$T/h5chunkd.conf"
# A long revalidate_s: the warm checks must not depend on how fast this test runs.
write_config "$CONF" "revalidate_s = 3600" "block_size = 256K"
start_daemon --config "$CONF"

RANGES=(
    "0-99999"                                  # start
    "10000000-10999999"                        # middle
    "$((SIZE - 1000))-$((SIZE - 1))"           # end
    "$((SIZE - 300000))-"                      # A-
    "-500000"                                  # -N
    "$((BLOCK - 10))-$((BLOCK + 9))"           # crossing a block boundary
    "$((5 * BLOCK - 1))-$((7 * BLOCK))"        # two boundaries, one byte each side
    "7-7"                                      # one byte
    "$((SIZE - 1))-$((SIZE - 1))"              # the last byte
    "$((SIZE - 5))-$((SIZE + 1000))"           # end past the file: clipped
    "$((3 * BLOCK))-$((4 * BLOCK - 1))"        # exactly one block
)

# Compares a daemon range with nginx's answer to the same Range and with the file.
check_against_nginx() { # SPEC
    local spec=$1 st_n cr_n cr_d
    check_mirror_range "$REMOTE" "$FILE" "$spec"
    st_n=$(http_get "$REMOTE" "$T/nginx.out" -D "$T/nginx.out.h" -H "Range: bytes=$spec")
    assert_eq 206 "$st_n" "nginx status for bytes=$spec"
    cr_n=$(header_get "$T/nginx.out.h" Content-Range)
    cr_d=$(header_get "$T/range.out.h" Content-Range)
    assert_eq "$cr_n" "$cr_d" "Content-Range vs nginx for bytes=$spec"
    assert_file_eq "$T/nginx.out" "$T/range.out" "daemon vs nginx body for bytes=$spec"
}

check_whole_file() { # WHAT
    local st
    st=$(mirror_get "$REMOTE" "" "$T/whole.out")
    assert_eq 200 "$st" "whole-file status ($1)"
    assert_eq "$SIZE" "$(header_get "$T/whole.out.h" Content-Length)" "whole-file Content-Length ($1)"
    assert_file_eq "$FILE" "$T/whole.out" "whole file ($1)"
}

check_all_reads() { # WHAT
    local spec
    for spec in "${RANGES[@]}"; do
        check_against_nginx "$spec"
    done
    check_whole_file "$1"
}

check "cold reads: ${#RANGES[@]} ranges and the whole file, each equal to nginx's and the file's bytes"
check_all_reads cold
cold_up=$(stat_get upstream_requests)
assert_gt "$cold_up" 0 "upstream_requests after cold reads"
log "cold reads: upstream_requests=$cold_up upstream_bytes=$(stat_get upstream_bytes)"

check "HEAD: Content-Length and Accept-Ranges: bytes, no body"
st=$(http_get "$(mirror_url "$REMOTE")" "$T/head.out" -I)
assert_eq 200 "$st" "HEAD status"
assert_eq "$SIZE" "$(header_get "$T/head.out" Content-Length)" "HEAD Content-Length"
assert_eq bytes "$(header_get "$T/head.out" Accept-Ranges)" "HEAD Accept-Ranges"

check "past the end: 416 with Content-Range bytes */$SIZE and JSON"
for spec in "$SIZE-" "$SIZE-$((SIZE + 10))" "$((SIZE + 100000))-"; do
    st=$(mirror_get "$REMOTE" "bytes=$spec" "$T/e.out")
    assert_error 416 "$st" "$T/e.out" range_not_satisfiable "bytes=$spec"
    assert_eq "bytes */$SIZE" "$(header_get "$T/e.out.h" Content-Range)" "416 Content-Range for bytes=$spec"
done

check "malformed and multi ranges: 400 bad_request JSON"
for spec in "bytes=5-2" "bytes=0-1,5-6" "items=0-1" "bytes=abc" "bytes=-" "bytes=--5" \
    "bytes=99999999999999999999999-"; do
    st=$(mirror_get "$REMOTE" "$spec" "$T/e.out")
    assert_error 400 "$st" "$T/e.out" bad_request "Range: $spec"
done
st=$(mirror_get "$REMOTE" "bytes=$(printf '%0200d' 1)-" "$T/e.out")
assert_error 400 "$st" "$T/e.out" bad_request "a 200-character Range header"

check "missing url parameter: 400 bad_request"
st=$(http_get "$DAEMON_URL/v1/file" "$T/e.out")
assert_error 400 "$st" "$T/e.out" bad_request "GET /v1/file without url"

check "warm reads: no new upstream request, cache hits counted"
hits0=$(stat_get cache_hits)
check_all_reads warm
warm_up=$(stat_get upstream_requests)
hits1=$(stat_get cache_hits)
assert_eq "$cold_up" "$warm_up" "upstream_requests after warm reads (was $cold_up)"
assert_gt "$hits1" "$hits0" "cache_hits after warm reads"
log "warm reads: cache_hits $hits0 -> $hits1"

check "HEAD after warm reads makes no upstream request either"
st=$(http_get "$(mirror_url "$REMOTE")" "$T/head.out" -I)
assert_eq 200 "$st" "warm HEAD status"
assert_eq "$cold_up" "$(stat_get upstream_requests)" "upstream_requests after a warm HEAD"

check "/metrics has h5chunkd_requests and h5chunkd_cache_bytes"
st=$(http_get "$DAEMON_URL/metrics" "$T/metrics.out")
assert_eq 200 "$st" "/metrics status"
grep -qE '^h5chunkd_requests(_total)?(\{[^}]*\})? [0-9]+' "$T/metrics.out" ||
    fail "/metrics lacks a h5chunkd_requests sample: $(head -c 600 "$T/metrics.out")"
grep -qE '^h5chunkd_cache_bytes(\{[^}]*\})? [0-9]+' "$T/metrics.out" ||
    fail "/metrics lacks a h5chunkd_cache_bytes sample: $(head -c 600 "$T/metrics.out")"
mcache=$(grep -E '^h5chunkd_cache_bytes ' "$T/metrics.out" | awk '{print $2}')
assert_gt "$mcache" 0 "h5chunkd_cache_bytes after reads"

check "/v1/health is {\"status\":\"ok\",...}"
st=$(http_get "$DAEMON_URL/v1/health" "$T/health.out")
assert_eq 200 "$st" "/v1/health status"
assert_eq ok "$(json_get "$T/health.out" status)" "/v1/health status field"
[[ -n "$(json_get "$T/health.out" version)" ]] || fail "/v1/health has no version"

check "/v1/stats has every counter of the contract"
curl -sS --max-time 10 -o "$T/stats_all.json" "$DAEMON_URL/v1/stats"
for name in requests cache_hits cache_misses upstream_requests upstream_bytes upstream_retries \
    upstream_errors bytes_served inflight_joins evictions corrupt_blocks cache_write_errors \
    passthrough_bytes validator_changes errors cache_bytes cache_limit_bytes cache_blocks; do
    v=$(json_get "$T/stats_all.json" "$name")
    [[ "$v" =~ ^[0-9]+$ ]] || fail "/v1/stats: '$name' missing or not an integer: $(head -c 800 "$T/stats_all.json")"
done

check "unknown endpoint: 404 not_found JSON"
st=$(http_get "$DAEMON_URL/v1/no-such-endpoint" "$T/e.out")
assert_error 404 "$st" "$T/e.out" not_found "GET /v1/no-such-endpoint"

check "a missing remote file: 404 not_found JSON"
st=$(mirror_get "$ORIGIN_URL/data/missing.bin" "bytes=0-9" "$T/e.out")
assert_error 404 "$st" "$T/e.out" not_found "missing remote file"
st=$(mirror_get "$ORIGIN_URL/data/missing.bin" "" "$T/e.out")
assert_error 404 "$st" "$T/e.out" not_found "missing remote file, no Range"

check "restart on the same cache dir: same bytes, zero upstream requests"
stop_daemon TERM
start_daemon --config "$CONF"
check_all_reads "after restart"
assert_eq 0 "$(stat_get upstream_requests)" "upstream_requests after restart and warm reads"
assert_gt "$(stat_get cache_hits)" 0 "cache_hits after restart"

check "50 MiB: cold and warm whole-file reads (times are reported, not asserted)"
BIG="$T/www/data/fifty.bin"
BIGSIZE=$((50 * 1024 * 1024))
make_file "$BIG" "$BIGSIZE" mirror-50m
u0=$(stat_get upstream_requests)
t_cold=$(curl -sS -g --max-time "$CURL_MAX_TIME" -o "$T/fifty.out" -w '%{http_code} %{time_total}' \
    "$(mirror_url "$ORIGIN_URL/data/fifty.bin")")
assert_eq 200 "${t_cold% *}" "50 MiB cold status"
assert_file_eq "$BIG" "$T/fifty.out" "50 MiB cold body"
u1=$(stat_get upstream_requests)
t_warm=$(curl -sS -g --max-time "$CURL_MAX_TIME" -o "$T/fifty.out" -w '%{http_code} %{time_total}' \
    "$(mirror_url "$ORIGIN_URL/data/fifty.bin")")
assert_eq 200 "${t_warm% *}" "50 MiB warm status"
assert_file_eq "$BIG" "$T/fifty.out" "50 MiB warm body"
u2=$(stat_get upstream_requests)
t_direct=$(curl -sS -g --max-time "$CURL_MAX_TIME" -o /dev/null -w '%{time_total}' "$ORIGIN_URL/data/fifty.bin")
log "REPORT 50 MiB cold: ${t_cold#* } s, $((u1 - u0)) upstream requests"
log "REPORT 50 MiB warm: ${t_warm#* } s, $((u2 - u1)) upstream requests"
log "REPORT 50 MiB straight from nginx: $t_direct s"
assert_eq 0 "$((u2 - u1))" "upstream requests of the warm 50 MiB read"

log "PASS"
