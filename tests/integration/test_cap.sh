#!/bin/bash
# test_cap.sh - the cache size cap: with cache_size 10M and 256K blocks,
# reading 50 MiB in 1 MiB ranges serves every range correctly while
# cache_bytes never exceeds cache_limit_bytes; blocks are evicted, and the
# evicted early ranges are fetched again and still correct.
. "$(dirname "$0")/lib.sh"

MIB=1048576
LIMIT=10485760
SIZE=$((50 * MIB))
mkdir -p "$T/www"
FILE="$T/www/cap.bin"
make_file "$FILE" "$SIZE" cap-50m
start_nginx "$T/www"
REMOTE="$ORIGIN_URL/cap.bin"
write_config "$T/h5chunkd.conf" "block_size = 256K" "revalidate_s = 3600"
start_daemon --config "$T/h5chunkd.conf" --cache-size 10M

assert_eq "$LIMIT" "$(stat_get cache_limit_bytes)" "cache_limit_bytes"

# Sum of the sizes of the block files on disk.
disk_bytes() {
    if [[ -d "$CACHE_DIR/blocks" ]]; then
        find "$CACHE_DIR/blocks" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'
    else
        echo 0
    fi
}

check_cap() { # WHAT
    local f="$T/cap_stats.json" bytes limit
    curl -sS --max-time 10 -o "$f" "$DAEMON_URL/v1/stats" || fail "GET /v1/stats"
    bytes=$(json_get "$f" cache_bytes)
    limit=$(json_get "$f" cache_limit_bytes)
    assert_eq "$LIMIT" "$limit" "cache_limit_bytes ($1)"
    assert_le "$bytes" "$limit" "cache_bytes <= cache_limit_bytes ($1)"
    MAXSEEN=$((bytes > MAXSEEN ? bytes : MAXSEEN))
}

check "50 x 1 MiB ranges: each correct, cache_bytes <= $LIMIT after each"
MAXSEEN=0
for ((i = 0; i < 50; i++)); do
    check_mirror_range "$REMOTE" "$FILE" "$((i * MIB))-$(((i + 1) * MIB - 1))" "MiB $i"
    check_cap "after MiB $i"
done
ev=$(stat_get evictions)
log "evictions=$ev max cache_bytes seen=$MAXSEEN cache_blocks=$(stat_get cache_blocks)"
((ev > 0)) || soft_fail "/v1/stats evictions is $ev after reading 5x the cap (cache_bytes stayed under the cap, so blocks were evicted but not counted)"
assert_gt "$MAXSEEN" $((LIMIT / 2)) "the cache was actually used (max cache_bytes)"
db=$(disk_bytes)
log "block bytes on disk: $db"
assert_le "$db" "$LIMIT" "bytes of block files on disk"

check "early ranges re-read correctly (refetched from upstream)"
u0=$(stat_get upstream_requests)
for ((i = 0; i < 4; i++)); do
    check_mirror_range "$REMOTE" "$FILE" "$((i * MIB))-$(((i + 1) * MIB - 1))" "MiB $i again"
    check_cap "after re-reading MiB $i"
done
u1=$(stat_get upstream_requests)
assert_gt "$u1" "$u0" "upstream_requests for evicted ranges"

check "the most recent range is still cached (LRU keeps recent blocks)"
check_mirror_range "$REMOTE" "$FILE" "$((3 * MIB))-$((4 * MIB - 1))" "MiB 3, just read"
assert_eq "$u1" "$(stat_get upstream_requests)" "upstream_requests for a just-read range"

check "whole file in one request under the cap"
st=$(mirror_get "$REMOTE" "" "$T/whole.out")
assert_eq 200 "$st" "whole-file status"
assert_file_eq "$FILE" "$T/whole.out" "whole file under a 10M cap"
check_cap "after the whole file"
assert_le "$(disk_bytes)" "$LIMIT" "bytes of block files on disk after the whole file"

finish_test
