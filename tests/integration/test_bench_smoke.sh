#!/bin/bash
# test_bench_smoke.sh - the benchmark harness runs: bench/run --quick
# --no-doc on a 2 ms link (connections capped at 400 MB/s), every workload,
# every peer (the seed's algorithm included), cold and warm, wrk if
# installed; then the Python package's section (--sections python) on two
# workloads, in the same work dir (the files are written once).  Checks that
# it finishes, that every answer was right (bench/run exits 1 on a wrong or
# failed cell) and that its results hold the link check and the daemon's
# peak RSS.  Performance is not asserted.
#
# Environment (set by `make check`): H5CHUNKD_BIN (default ./daemon/h5chunkd
# of the build dir), NGINX_BIN, PYTHON_H5, TESTS_SRCDIR.
# Exit status: 0 pass, 1 fail, 77 skip (a package bench/run needs is missing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TESTS_SRCDIR:=$(cd "$HERE/.." && pwd)}"
: "${PYTHON_H5:=/usr/bin/python3}"
SRC=$(cd "$TESTS_SRCDIR/.." && pwd)
if [[ -z "${H5CHUNKD_BIN:-}" ]]; then
    H5CHUNKD_BIN="$PWD/daemon/h5chunkd"
fi
export PYTHON_H5
[[ -x "$H5CHUNKD_BIN" ]] || { echo "test_bench_smoke: FAIL: daemon not built: $H5CHUNKD_BIN"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/h5cd-test_bench_smoke.XXXXXX")
trap 'rm -rf -- "$T"' EXIT

rc=0
# One work dir for both runs: the second reuses the files (bench.py clears
# the rest of an earlier run's state).
timeout -k 10 240 "$SRC/bench/run" --quick --no-doc --rtt-ms 2 --conn-bw-mbs 400 --clients 1,2 \
    --sections cold,warm,wrk --workdir "$T/work" \
    --daemon "$H5CHUNKD_BIN" --results "$T/results.json" >"$T/bench.log" 2>&1 || rc=$?
if [[ $rc == 77 ]]; then
    echo "test_bench_smoke: SKIP: $(tail -n 1 "$T/bench.log")"
    exit 77
fi
if [[ $rc != 0 ]]; then
    echo "test_bench_smoke: FAIL: bench/run exited $rc"
    tail -n 40 "$T/bench.log"
    exit 1
fi
"$PYTHON_H5" - "$T/results.json" <<'PY' || { tail -n 40 "$T/bench.log"; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
bad = []
L = r["link"]
# The link adds its delay: a new connection costs about two RTTs, a reused one one.
if not (2 * 2 * 0.9 <= L["new_conn_median_ms"] < 2 * 2 + 50):
    bad.append("1-byte range on a new connection took %s ms" % L["new_conn_median_ms"])
if not (2 * 0.9 <= L["reused_median_ms"] < 2 + 50):
    bad.append("1-byte range on a reused connection took %s ms" % L["reused_median_ms"])
for wl, peers in r["cold"].items():
    for peer, c in peers.items():
        if not c["ok"] or c["n"] < 1:
            bad.append("cold %s %s: %s" % (wl, peer, c["errors"]))
for wl, peers in r["warm"].items():
    for peer, cells in peers.items():
        if sorted(cells) != ["1", "2"]:
            bad.append("warm %s %s: cells %s" % (wl, peer, sorted(cells)))
        for n, c in cells.items():
            if not c["ok"]:
                bad.append("warm %s %s x%s: %s" % (wl, peer, n, c["errors"]))
            if c["origin_requests"] > 1:  # a revalidation at most
                bad.append("warm %s %s x%s reached the origin" % (wl, peer, n))
if len(r["cold"]) != 7 or len(r["warm"]) != 5:
    bad.append("workloads run: cold %s warm %s" % (sorted(r["cold"]), sorted(r["warm"])))
# The seed's algorithm runs every chunk workload; the million-chunk ones only the daemon.
for wl, peers in r["cold"].items():
    if wl.startswith("m-"):
        if set(peers) != {"h5chunkd"}:
            bad.append("cold %s peers %s" % (wl, sorted(peers)))
    elif wl != "listing" and "seed" not in peers:
        bad.append("cold %s: no seed cell" % wl)
if r["settings"].get("conn_bw_mbs") != 400:
    bad.append("per-connection cap not recorded: %s" % r["settings"].get("conn_bw_mbs"))
if not r.get("daemon_hwm_kb"):
    bad.append("no peak RSS of the daemon")
if r.get("daemon_exit") != 0:
    bad.append("the daemon exited %s after SIGTERM" % r.get("daemon_exit"))
for b in bad:
    print("test_bench_smoke: FAIL: %s" % b)
sys.exit(1 if bad else 0)
PY
# The Python package's paths (bench.py run_python): two workloads, one client.
rc=0
timeout -k 10 180 "$SRC/bench/run" --quick --no-doc --rtt-ms 2 --clients 1 \
    --sections python --workloads scattered,listing --workdir "$T/work" \
    --daemon "$H5CHUNKD_BIN" --results "$T/py.json" >"$T/py.log" 2>&1 || rc=$?
if [[ $rc != 0 ]]; then
    echo "test_bench_smoke: FAIL: bench/run --sections python exited $rc"
    tail -n 40 "$T/py.log"
    exit 1
fi
"$PYTHON_H5" - "$T/py.json" <<'PY' || { tail -n 40 "$T/py.log"; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
bad = []
for wl in ("scattered", "listing"):
    for peer in ("py-zarr", "zarr-http", "py-h5py"):
        cells = r.get("python", {}).get(wl, {}).get(peer, {})
        if sorted(cells) != ["cold", "warm1"]:
            bad.append("python %s %s: cells %s" % (wl, peer, sorted(cells)))
        for k, c in cells.items():
            if not c["ok"] and not (peer == "zarr-http" and c.get("known_failure")):
                bad.append("python %s %s %s: %s" % (wl, peer, k, c["errors"]))
for b in bad:
    print("test_bench_smoke: FAIL: %s" % b)
sys.exit(1 if bad else 0)
PY
echo "test_bench_smoke: PASS ($(grep -o 'total [0-9]* s' "$T/bench.log" "$T/py.log" | tr '\n' ' '))"
