#!/bin/bash
# test_linkstats.sh - /v1/stats "links": every upstream answer is measured
# under the host that gave it (requests and bytes equal to what the origin
# sent), the round trip of delayed answers includes the delay, the plan
# shown stays inside its bounds, and a large read planned from the measured
# link (split across connections) still fetches each byte once and returns
# exact bytes.  No timing is asserted but a lower bound of an injected
# delay.  About 5 s.
. "$(dirname "$0")/lib.sh"

BLOCK=262144
MIB=1048576
DELAY_MS=150
mkdir -p "$T/www"
make_file "$T/www/a.bin" $((32 * MIB)) linkstats-a
start_fault_origin "$T/www"
CONF="$T/h5chunkd.conf"
write_config "$CONF" "block_size = 256K" "coalesce_gap = 256K" "coalesce_max = 8M" \
    "revalidate_s = 3600" "upstream_max_per_host = 8"
start_daemon --config "$CONF"
URL="$FAULT_URL/a.bin"
HOST="127.0.0.1:${FAULT_URL##*:}"

# Checks the "links" row of HOST in /v1/stats against expectations given as
# key=value (requests, bytes, min_rtt_ms) and the planner's bounds.
check_links() { # key=value...
    curl -sS --max-time 10 -o "$T/stats.json" "$DAEMON_URL/v1/stats" || fail "GET /v1/stats failed"
    "$PYTHON_H5" - "$T/stats.json" "$HOST" "$@" <<'PY' || fail "/v1/stats links: $(head -c 600 "$T/stats.json")"
import json, sys
st = json.load(open(sys.argv[1]))
host = sys.argv[2]
want = dict(a.split("=", 1) for a in sys.argv[3:])
links = st["links"]
assert isinstance(links, list), "links is not a list"
rows = [r for r in links if r["host"] == host]
if want.get("requests") == "0":
    assert rows == [], "a row before any fetch: %r" % links
    sys.exit(0)
assert len(rows) == 1, "expected one row for %s: %r" % (host, links)
r = rows[0]
print("links row:", r)
assert r["requests"] == int(want["requests"]), "requests %r" % r["requests"]
assert r["samples"] == r["requests"], "samples %r" % r["samples"]
assert r["bytes"] == st["upstream_bytes"], "bytes %r != upstream_bytes %r" % (r["bytes"], st["upstream_bytes"])
assert r["rtt_ms"] is not None and r["rtt_ms"] >= float(want.get("min_rtt_ms", 0)), "rtt_ms %r" % r["rtt_ms"]
for k in ("conn_bytes_per_s", "link_bytes_per_s"):
    assert r[k] is None or (isinstance(r[k], int) and r[k] > 0), "%s %r" % (k, r[k])
assert isinstance(r["coalesce_gap"], int) and 0 <= r["coalesce_gap"] <= 8 * 1024 * 1024, "gap %r" % r["coalesce_gap"]
assert isinstance(r["streams"], int) and 1 <= r["streams"] <= 8, "streams %r" % r["streams"]
assert isinstance(r["split_min"], int) and 1 <= r["split_min"] <= 8 * 1024 * 1024, "split_min %r" % r["split_min"]
PY
}

check "no row before the first fetch"
check_links requests=0

check "answers delayed by $DELAY_MS ms: counted once each, round trip at least the delay"
fault_control "{\"mode\":\"delay\",\"ms\":$DELAY_MS,\"count\":3}"
check_mirror_range "$URL" "$T/www/a.bin" "0-99" "probe"
check_mirror_range "$URL" "$T/www/a.bin" "$((1 * MIB))-$((2 * MIB - 1))" "first data"
check_mirror_range "$URL" "$T/www/a.bin" "$((4 * MIB))-$((5 * MIB - 1))" "second data"
assert_eq 3 "$(fault_requests)" "origin requests"
check_links requests=3 min_rtt_ms=$DELAY_MS

check "/metrics: the host's round trip as a labelled gauge"
curl -sS --max-time 10 -o "$T/metrics.txt" "$DAEMON_URL/metrics" || fail "GET /metrics failed"
assert_contains "$T/metrics.txt" "# TYPE h5chunkd_link_rtt_seconds gauge" "rtt gauge type"
rtt=$(grep -F "h5chunkd_link_rtt_seconds{host=\"$HOST\"} " "$T/metrics.txt" | awk '{print $2}') || true
[[ -n "$rtt" ]] || fail "no rtt gauge for $HOST: $(grep link_ "$T/metrics.txt")"
awk -v r="$rtt" -v d="$DELAY_MS" 'BEGIN { exit !(r >= d / 1000.0) }' || fail "rtt gauge $rtt s below the $DELAY_MS ms delay"

check "a large read planned from the measured link: exact bytes, each byte fetched once"
q0=$(fault_requests)
LO=$((8 * MIB))
HI=$((28 * MIB))
check_mirror_range "$URL" "$T/www/a.bin" "$LO-$((HI - 1))" "large read"
fault_stats >"$T/fstats.json"
"$PYTHON_H5" - "$T/fstats.json" "$q0" "$LO" "$HI" "$BLOCK" <<'PY' || fail "origin ranges of the large read"
import json, re, sys
st = json.load(open(sys.argv[1]))
before, lo, hi, block = (int(x) for x in sys.argv[2:6])
n = st["requests"] - before
spans = sorted((int(a), int(b) + 1) for a, b in
               (re.fullmatch(r"bytes=(\d+)-(\d+)", r).groups() for r in st["range_requests"][-n:]))
print("origin requests:", n, spans)
assert spans[0][0] == lo and spans[-1][1] == hi, "not [lo, hi)"
for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
    assert b1 == a2, "gap or overlap between %r and %r" % ((a1, b1), (a2, b2))
for a, b in spans:
    assert a % block == 0 and (b - a) % block == 0 and b - a <= 8 * 1024 * 1024, "piece %r" % ((a, b),)
PY
check_links requests=$(fault_requests)

stop_daemon
finish_test
