#!/bin/bash
# bench/redirects.sh - upstream requests of chunk batches read through a
# redirecting URL (DANDI's /api/assets/{id}/download/ -> the blob), counted
# at a fake DANDI API and its origin (tests/integration/fake_dandi.py), for
# one or more daemon binaries side by side (e.g. before and after resolve-once).
#
#   bench/redirects.sh DAEMON [DAEMON...]
#
# Per binary: a fresh cache, a 50-chunk file of 1 MiB chunks, then batches of
# 5 chunks (keys 10 apart, so each is its own request) and prints the API's
# redirects and the origin's requests per batch.  Loopback only; ~20 s a binary.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON_H5:-/usr/bin/python3}
(($# >= 1)) || { echo "usage: $0 DAEMON [DAEMON...]" >&2; exit 2; }
T=$(mktemp -d /tmp/h5cd-bench-redirects.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
mkdir -p "$T/root"
"$PY" - "$T/root/big.nwb" <<'PYEOF'
import sys, h5py, numpy
rng = numpy.random.default_rng(7)
with h5py.File(sys.argv[1], "w", libver="latest") as f:
    f.create_dataset("data", data=rng.integers(0, 1 << 15, size=(50 * 512, 1024), dtype="<i2"),
                     chunks=(512, 1024))
PYEOF
"$PY" "$HERE/../tests/integration/fake_dandi.py" --root "$T/root" --port-file "$T/ports" >"$T/fake.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [[ -s "$T/ports" ]] && break; sleep 0.1; done
read -r API_PORT _ <"$T/ports"
API="http://127.0.0.1:$API_PORT"
ID=$(curl -s "$API/api/dandisets/000001/versions/draft/assets/?path=sub-01/big.nwb" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["asset_id"])')
URL="$API/api/assets/$ID/download/"
counts() { curl -s "$API/_counts" | "$PY" -c 'import json,sys; c=json.load(sys.stdin); print(c["api"].get("download",0), c["origin"].get("/blobs/big.nwb",0))'; }
printf '%-40s %-22s %14s %14s\n' daemon batch api_redirects origin_requests
for bin in "$@"; do
    printf 'h5_prefix_bytes = 64K\ncoalesce_gap = 0\n' >"$T/conf"
    # Daemons that know DANDI API bases are told the fake one; older ones have no such option.
    printf 'dandi_api = %s/api\n' "$API" >>"$T/conf"
    "$bin" --config "$T/conf" --check-config >/dev/null 2>&1 ||
        printf 'h5_prefix_bytes = 64K\ncoalesce_gap = 0\n' >"$T/conf"
    rm -rf "$T/cache"
    "$bin" --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache" --allow-private-upstreams \
        --config "$T/conf" 2>"$T/daemon.log" &
    pid=$!
    PIDS+=($pid)
    addr=""
    for ((i = 0; i < 100; i++)); do
        addr=$(grep -m1 -oE 'listening" addr=[^ ]+' "$T/daemon.log" | sed 's/.*addr=//') || true
        [[ -n "$addr" ]] && break
        sleep 0.1
    done
    D="http://$addr"
    for batch in "cold open + 5 chunks:0 10 20 30 40" "5 more chunks:5 15 25 35 45" "same 5 again (warm):5 15 25 35 45"; do
        name=${batch%%:*}
        keys=$(for k in ${batch#*:}; do printf '"%s.0",' "$k"; done)
        read -r a0 o0 < <(counts)
        curl -s -o /dev/null --max-time 60 -X POST -H 'Content-Type: application/json' "$D/v1/chunks" \
            --data-binary "{\"url\": \"$URL\", \"path\": \"/data\", \"keys\": [${keys%,}]}"
        read -r a1 o1 < <(counts)
        printf '%-40s %-22s %14d %14d\n' "$(basename "$(dirname "$(dirname "$bin")")")" "$name" $((a1 - a0)) $((o1 - o0))
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
