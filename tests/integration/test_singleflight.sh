#!/bin/bash
# test_singleflight.sh - 32 concurrent clients asking for the same cold
# range make the origin send each byte once: joined fetches, no duplicate
# block requests; likewise for 32 different, overlapping ranges.
#
# What the origin must see for a cold file: first one probe of the file's
# first block, bytes=0-262143 (it learns size and validator; concurrent
# openers join it), then the missing blocks of the asked range, each in
# exactly one range request.  The asked range lies in [8 MiB, 12 MiB), away
# from block 0, so the range requests must cover exactly that interval with
# no overlap, and the total is 256 KiB + 4 MiB.  A delay of 300 ms on every
# origin request keeps all 32 clients waiting on the same fetches.
. "$(dirname "$0")/lib.sh"

BLOCK=262144
MIB=1048576
NCLIENTS=32
mkdir -p "$T/www"
make_file "$T/www/sf.bin" $((16 * MIB)) singleflight-a
make_file "$T/www/sf2.bin" $((16 * MIB)) singleflight-b
start_fault_origin "$T/www"
CONF="$T/h5chunkd.conf"
write_config "$CONF" "block_size = 256K" "coalesce_gap = 1M" "coalesce_max = 8M" \
    "read_window = 16M" "revalidate_s = 3600" "max_connections = 256"
start_daemon --config "$CONF"

# Starts one curl per "START LEN" argument in the background; waits for all.
# Outputs in $T/c.I, statuses in $T/c.I.st.
run_clients() { # "START LEN"...
    local i=0 pids=() spec a len p
    for spec in "$@"; do
        read -r a len <<<"$spec"
        curl -sS -g --max-time 60 -H "Range: bytes=$a-$((a + len - 1))" -o "$T/c.$i" \
            -w '%{http_code}' "$(mirror_url "$URL")" >"$T/c.$i.st" 2>>"$T/curl.err" &
        pids+=($!)
        track_pid "$!"
        i=$((i + 1))
    done
    for p in "${pids[@]}"; do
        wait "$p" || true
        untrack_pid "$p"
    done
}

check_clients() { # LOCALFILE "START LEN"...
    local file=$1 i=0 spec a len
    shift
    for spec in "$@"; do
        read -r a len <<<"$spec"
        assert_eq 206 "$(cat "$T/c.$i.st")" "client $i status"
        slice_file "$file" "$a" "$len" "$T/c.exp"
        assert_file_eq "$T/c.exp" "$T/c.$i" "client $i body (bytes $a+$len)"
        i=$((i + 1))
    done
}

# Checks the origin's Range log: every request a range, the probe exactly
# once, the other ranges disjoint and covering exactly [LO, HI).
check_origin_ranges() { # LO HI NREQ_BEFORE
    fault_stats >"$T/fstats.json"
    "$PYTHON_H5" - "$T/fstats.json" "$1" "$2" "$3" "$BLOCK" <<'EOF'
import json, re, sys
st = json.load(open(sys.argv[1]))
lo, hi, before, block = (int(x) for x in sys.argv[2:6])
n = st["requests"] - before
ranges = st["range_requests"][-n:] if n > 0 else []
print("origin requests:", n, ranges)
bad = []
spans = []
for r in ranges:
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", r or "")
    if not m:
        bad.append("not a closed byte range: %r" % (r,))
        continue
    spans.append((int(m.group(1)), int(m.group(2)) + 1))
probes = [s for s in spans if s == (0, block)]
if len(probes) != 1:
    bad.append("expected exactly one probe bytes=0-%d, got %d" % (block - 1, len(probes)))
rest = sorted(s for s in spans if s != (0, block))
total = sum(b - a for a, b in rest)
for (a1, b1), (a2, b2) in zip(rest, rest[1:]):
    if a2 < b1:
        bad.append("bytes fetched twice: [%d,%d) and [%d,%d)" % (a1, b1, a2, b2))
if rest and (rest[0][0] != lo or max(b for _, b in rest) != hi) or total != hi - lo:
    bad.append("ranges %r do not cover exactly [%d,%d): %d bytes fetched, %d wanted"
               % (rest, lo, hi, total, hi - lo))
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("origin bytes: probe %d + ranges %d = %d" % (block, total, block + total))
EOF
}

check "$NCLIENTS clients, the same cold 4 MiB range, origin delay 300 ms"
URL="$FAULT_URL/sf.bin"
SPECS=()
for ((i = 0; i < NCLIENTS; i++)); do SPECS+=("$((8 * MIB)) $((4 * MIB))"); done
fault_control '{"mode":"delay","ms":300,"count":1000}'
q0=$(fault_requests)
j0=$(stat_get inflight_joins)
u0=$(stat_get upstream_requests)
run_clients "${SPECS[@]}"
check_clients "$T/www/sf.bin" "${SPECS[@]}"
check_origin_ranges $((8 * MIB)) $((12 * MIB)) "$q0" || fail "the origin saw duplicate or missing fetches"
q1=$(fault_requests)
j1=$(stat_get inflight_joins)
u1=$(stat_get upstream_requests)
log "inflight_joins $j0 -> $j1; upstream_requests $u0 -> $u1; origin requests $((q1 - q0))"
assert_gt "$j1" "$j0" "inflight_joins"
assert_eq "$((q1 - q0))" "$((u1 - u0))" "daemon's upstream_requests vs requests the origin saw"

check "the same $NCLIENTS clients again (warm): no origin request"
run_clients "${SPECS[@]}"
check_clients "$T/www/sf.bin" "${SPECS[@]}"
assert_eq "$q1" "$(fault_requests)" "origin requests of warm concurrent reads"

check "$NCLIENTS clients, $NCLIENTS different overlapping cold ranges: no byte fetched twice"
URL="$FAULT_URL/sf2.bin"
SPECS=()
for ((i = 0; i < NCLIENTS; i++)); do
    # 1 MiB + 1000 bytes each, starting 96 KiB + 7 bytes apart: unaligned and overlapping.
    SPECS+=("$((8 * MIB + i * (96 * 1024 + 7))) $((MIB + 1000))")
done
last_end=$((8 * MIB + (NCLIENTS - 1) * (96 * 1024 + 7) + MIB + 1000))
hi=$(((last_end + BLOCK - 1) / BLOCK * BLOCK))
q0=$(fault_requests)
run_clients "${SPECS[@]}"
check_clients "$T/www/sf2.bin" "${SPECS[@]}"
check_origin_ranges $((8 * MIB)) "$hi" "$q0" || fail "the origin saw duplicate or missing fetches"
fault_control '{"mode":"reset_all"}'

log "PASS"
