#!/usr/bin/env bash
# test_isolation.sh - libhdf5 runs in h5chunkd-worker processes, never in the
# daemon: a worker that crashes (a real SIGSEGV delivered while it serves a
# request) or hangs (stopped, so it makes no progress) is replaced, the
# request gets 422 damaged_file naming the object, the file version is
# quarantined (later requests fail fast, without a worker, until purged),
# the counters say so, and every other file is still served.  A worker
# waiting on a slow origin is not hung (its READ time is not its time), and
# an origin that times out is 504 upstream_timeout, not a damaged file.
# Decoded chunks larger than max_decode_bytes are refused with 413; the
# worker runs confined (seccomp, no_new_privs, only its socket open) and
# the daemon binary does not link libhdf5.
#
# Data: h5py files generated here.  Origin: tests/integration/fault_origin.py
# (for delays and stalls).  Duration: about 40 s.
. "$(dirname "$0")/lib.sh"

[[ -x "$PYTHON_H5" ]] || skip "no python3 with h5py ($PYTHON_H5)"
# In sanitizer builds a worker's SIGSEGV must kill it as in production
# (AddressSanitizer would print a report, slowly, and exit 1).
# ldd's output is read whole: `ldd | grep -q` under pipefail fails at random
# when grep exits before ldd has written everything (SIGPIPE).
DAEMON_LIBS=$(ldd "$H5CHUNKD_BIN")
if grep -q libasan <<<"$DAEMON_LIBS"; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0:handle_sigbus=0:symbolize=0"
fi
"$PYTHON_H5" -c 'import h5py, numpy' 2>/dev/null || skip "h5py/numpy missing for $PYTHON_H5"
command -v pgrep >/dev/null || skip "pgrep (procps) missing"

WWW="$T/www"
mkdir -p "$WWW"
"$PYTHON_H5" - "$WWW" <<'EOF'
import shutil, sys
import h5py, numpy as np
d = sys.argv[1]
with h5py.File(d + "/good.h5", "w") as f:
    f.create_dataset("data", data=np.arange(200 * 100, dtype="<i4").reshape(200, 100),
                     chunks=(50, 100), compression="gzip")
    f.create_dataset("other", data=np.arange(1000, dtype="<f8"), chunks=(100,))
for name in ("victim", "hang"):
    shutil.copy(d + "/good.h5", d + "/%s.h5" % name)
# /data's object header comes after 256 KiB of other data: with 4 KiB blocks
# and no open prefix, describing it needs a READ that goes to the origin.
for name in ("slow", "timeout"):
    with h5py.File(d + "/%s.h5" % name, "w") as f:
        for i in range(64):
            f.create_dataset("pad%02d" % i, data=np.full(1024, i, dtype="<i4"))
        f.create_dataset("data", data=np.arange(10, dtype="<i4"))
with h5py.File(d + "/huge.h5", "w") as f:
    ds = f.create_dataset("zeros", shape=(8192, 16384), dtype="u1", chunks=(8192, 16384),
                          compression="gzip", fletcher32=True)  # not the daemon's zlib path
    ds[:] = 0  # 128 MiB decoded, 128 KiB stored
with h5py.File(d + "/big.h5", "w") as f:
    ds = f.create_dataset("zeros", shape=(2048, 2048), dtype="u1", chunks=(2048, 2048),
                          compression="gzip")
    ds[:] = 0  # 4 MiB decoded, a few KiB stored
EOF

# Real crashes: copies of a latest-format file (dense groups) with 20 bits
# flipped in its first 64 KiB, kept when they crash h5py (libhdf5 1.10) in a
# subprocess listing the root group; fixed seed, at most 60 tries, 4 kept.
"$PYTHON_H5" - "$WWW" <<'EOF'
import random, subprocess, sys
import h5py, numpy as np
d = sys.argv[1]
src = d + "/latest.h5"
with h5py.File(src, "w", libver="latest", track_order=True) as f:
    for i in range(40):
        g = f.create_group("group%03d" % i)
        g.attrs["n"] = i
        g.create_dataset("d", data=np.arange(10))
data = open(src, "rb").read()
probe = ("import h5py, sys\nf = h5py.File(sys.argv[1], 'r')\n"
         "print(sorted(f['/'].keys()), dict(f['/'].attrs))\n")
rng = random.Random(20261201)
kept = 0
for attempt in range(60):
    b = bytearray(data)
    for _ in range(20):
        b[rng.randrange(min(len(b), 65536))] ^= 1 << rng.randrange(8)
    path = d + "/damaged%d.h5" % kept
    open(path, "wb").write(b)
    try:
        rc = subprocess.run([sys.executable, "-c", probe, path], capture_output=True,
                            timeout=20).returncode
    except subprocess.TimeoutExpired:
        rc = 0
    if rc < 0:
        kept += 1
        if kept == 4:
            break
print("damaged files that crash h5py:", kept)
EOF

# ---- the daemon does not link libhdf5; workers are confined ----
if grep -q hdf5 <<<"$DAEMON_LIBS"; then
    fail "the daemon binary links libhdf5: $(grep hdf5 <<<"$DAEMON_LIBS")"
fi
check "h5chunkd does not link libhdf5"

start_fault_origin "$WWW"
CONF="$T/h5chunkd.conf"
write_config "$CONF" "workers = 1" "worker_timeout_s = 4" "max_decode_bytes = 1M" \
    "upstream_retries = 0" "upstream_timeout_ms = 8000" "revalidate_s = 3600" \
    "block_size = 4K" "coalesce_gap = 0" "coalesce_max = 4K" "h5_prefix_bytes = 0"
start_daemon -c "$CONF"

meta() { # NAME PATH OUT -> status
    http_get "$DAEMON_URL/v1/meta?url=$(urlencode "$FAULT_URL/$1")&path=$2" "$3"
}
slice_json() { # NAME PATH SELECT OUT -> status
    http_get "$DAEMON_URL/v1/slice?url=$(urlencode "$FAULT_URL/$1")&path=$2&select=$3&format=json" "$4"
}
worker_pids() { pgrep -P "$DAEMON_PID" -f h5chunkd-worker || true; }

st=$(slice_json good.h5 /data "0:2,0:3" "$T/s.json")
assert_eq 200 "$st" "slice of good.h5: $(head -c 300 "$T/s.json")"
assert_eq "[[0,1,2],[100,101,102]]" "$(json_get "$T/s.json" data | tr -d ' ')" "values of good.h5"
wpid=$(worker_pids)
[[ "$wpid" =~ ^[0-9]+$ ]] || fail "expected one worker process, got '$wpid'"
grep -q '^Seccomp:[[:space:]]*2' "/proc/$wpid/status" || fail "worker $wpid has no seccomp filter"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$wpid/status" || fail "worker $wpid lacks no_new_privs"
fds=$(ls "/proc/$wpid/fd" | sort -n | tr '\n' ' ')
assert_eq "0 1 2 3 " "$fds" "descriptors open in the worker"
grep -q libhdf5 "/proc/$wpid/maps" || fail "libhdf5 is not mapped in the worker"
grep -q libhdf5 "/proc/$DAEMON_PID/maps" && fail "libhdf5 is mapped in the daemon process"
check "worker $wpid: seccomp, no_new_privs, descriptors $fds"

# ---- real damaged files: the daemon survives, a crash quarantines ----
ls "$WWW"/damaged*.h5 >/dev/null 2>&1 || fail "no damaged file crashed h5py in 60 tries"
real_crashes=0
for f in "$WWW"/damaged*.h5; do
    name=$(basename "$f")
    c0=$(($(stat_get worker_crashes) + $(stat_get worker_timeouts)))
    st=$(meta "$name" / "$T/d.json")
    kill -0 "$DAEMON_PID" || fail "the daemon died on $name"
    [[ "$st" =~ ^(200|404|413|422)$ ]] || fail "$name: HTTP $st $(head -c 300 "$T/d.json")"
    # A crash, or (AddressSanitizer builds, where libhdf5's bad frees are caught
    # and reported) a worker killed while it reports one.
    if (($(stat_get worker_crashes) + $(stat_get worker_timeouts) > c0)); then
        real_crashes=$((real_crashes + 1))
        assert_error 422 "$st" "$T/d.json" damaged_file "$name, on which the worker crashed"
        st=$(meta "$name" / "$T/d2.json")
        assert_error 422 "$st" "$T/d2.json" damaged_file "$name again"
        assert_contains "$T/d2.json" "quarantined" "$name again"
    fi
    check "$name: HTTP $st $(head -c 160 "$T/d.json")"
done
assert_gt "$real_crashes" 0 "workers lost to files that crash h5py"
st=$(slice_json good.h5 /data "0:1,0:3" "$T/s2.json")
assert_eq 200 "$st" "good.h5 after real crashes"

# ---- a worker killed by SIGSEGV while it serves a request ----
# The worker is stopped, the request's operation waits in its socket, then it
# gets SIGSEGV and resumes: it dies with the operation in hand.
crashes0=$(stat_get worker_crashes)
victim=$(worker_pids)
kill -STOP "$victim"
origin_requests() { curl -sS --max-time 10 "$FAULT_URL/_stats" | grep -oE '"requests": *[0-9]+' | grep -oE '[0-9]+$'; }
before=$(origin_requests)
victim_url="$DAEMON_URL/v1/meta?url=$(urlencode "$FAULT_URL/victim.h5")&path=/data"
http_get "$victim_url" "$T/crash.json" >"$T/crash.status" &
req=$!
for ((i = 0; i < 200; i++)); do # the daemon opened the file: the operation follows at once
    [[ $(origin_requests) -gt $before ]] && break
    sleep 0.02
done
sleep 0.5
kill -SEGV "$victim"
kill -CONT "$victim"
wait "$req" || true
assert_error 422 "$(cat "$T/crash.status")" "$T/crash.json" damaged_file "a worker crashed"
assert_contains "$T/crash.json" "signal 11" "the error names the crash"
assert_contains "$T/crash.json" "/data" "the error names the object"
kill -0 "$DAEMON_PID" || fail "the daemon died with its worker"
assert_gt "$(stat_get worker_crashes)" "$crashes0" "worker_crashes after a crash"
assert_eq $((real_crashes + 1)) "$(stat_get quarantined_files)" "quarantined_files after a crash"

# A second request fails fast without a worker: no READ reaches the origin.
before=$(fault_requests)
start=$(date +%s%N)
st=$(meta victim.h5 /other "$T/q.json")
ms=$((($(date +%s%N) - start) / 1000000))
assert_error 422 "$st" "$T/q.json" damaged_file "a quarantined file"
assert_contains "$T/q.json" "quarantined" "the error says quarantined"
assert_eq "$before" "$(fault_requests)" "origin requests for a quarantined file"
check "quarantined file refused in $ms ms"

# Every other file is still served, by a new worker.
st=$(slice_json good.h5 /other "0:4" "$T/o.json")
assert_eq 200 "$st" "good.h5 after the crash: $(head -c 300 "$T/o.json")"
assert_eq "[0.0,1.0,2.0,3.0]" "$(json_get "$T/o.json" data | tr -d ' ')" "good.h5 values"
newpid=$(worker_pids)
assert_ne "$victim" "$newpid" "the crashed worker was replaced"

# The quarantine is persistent: it survives a restart of the daemon.
stop_daemon
start_daemon -c "$CONF"
st=$(meta victim.h5 /other "$T/q2.json")
assert_error 422 "$st" "$T/q2.json" damaged_file "a quarantined file after a restart"
assert_contains "$T/q2.json" "quarantined" "the quarantine after a restart"

# An admin purge clears it.
st=$(http_get "$DAEMON_URL/v1/cache?url=$(urlencode "$FAULT_URL/victim.h5")" "$T/purge.json" -X DELETE)
assert_eq 200 "$st" "DELETE /v1/cache?url=victim: $(head -c 300 "$T/purge.json")"
st=$(slice_json victim.h5 /data "1,0:2" "$T/v.json")
assert_eq 200 "$st" "victim.h5 after a purge: $(head -c 300 "$T/v.json")"
assert_eq "[100,101]" "$(json_get "$T/v.json" data | tr -d ' ')" "victim.h5 values after a purge"

# ---- a hung worker (stopped: no progress) is killed after worker_timeout_s ----
st=$(meta good.h5 /data "$T/warm.json")
assert_eq 200 "$st" "warm-up"
hung=$(worker_pids)
timeouts0=$(stat_get worker_timeouts)
kill -STOP "$hung"
start=$(date +%s%N)
st=$(meta hang.h5 /data "$T/hang.json")
ms=$((($(date +%s%N) - start) / 1000000))
assert_error 422 "$st" "$T/hang.json" damaged_file "a hung worker"
assert_contains "$T/hang.json" "killed" "the error says the worker was killed"
assert_ge "$ms" 3900 "a hung worker is given worker_timeout_s"
assert_le "$ms" 15000 "a hung worker is not waited for much longer"
assert_gt "$(stat_get worker_timeouts)" "$timeouts0" "worker_timeouts after a hang"
kill -0 "$hung" 2>/dev/null && fail "the hung worker $hung is still there"
st=$(meta hang.h5 /other "$T/hang2.json")
assert_contains "$T/hang2.json" "quarantined" "a file that hung a worker is quarantined"

# ---- waiting for a slow origin is not the worker's time ----
st=$(meta slow.h5 / "$T/slow0.json")
assert_eq 200 "$st" "root group of slow.h5: $(head -c 300 "$T/slow0.json")"
fault_control '{"mode": "delay", "ms": 5000, "path": "/slow.h5", "count": 1}'
before=$(fault_requests)
st=$(meta slow.h5 /data "$T/slow.json")
assert_gt "$(fault_requests)" "$before" "describing /data of slow.h5 reads from the origin"
assert_eq 200 "$st" "a slow origin (5 s > worker_timeout_s): $(head -c 300 "$T/slow.json")"
fault_control '{"mode": "reset_all"}'

# ---- an origin that times out is upstream_timeout, not a damaged file ----
st=$(meta timeout.h5 / "$T/to0.json")
assert_eq 200 "$st" "root group of timeout.h5: $(head -c 300 "$T/to0.json")"
timeouts0=$(stat_get worker_timeouts)
q0=$(stat_get quarantined_files)
fault_control '{"mode": "delay", "ms": 10000, "path": "/timeout.h5"}'
st=$(meta timeout.h5 /data "$T/to.json")
fault_control '{"mode": "reset_all"}'
assert_error 504 "$st" "$T/to.json" upstream_timeout "an origin slower than upstream_timeout_ms"
assert_eq "$timeouts0" "$(stat_get worker_timeouts)" "worker_timeouts after an upstream timeout"
assert_eq "$q0" "$(stat_get quarantined_files)" "quarantined_files after an upstream timeout"
st=$(meta timeout.h5 /data "$T/to2.json")
assert_eq 200 "$st" "the file once the origin answers again: $(head -c 300 "$T/to2.json")"

# ---- decoded size cap ----
st=$(http_get "$DAEMON_URL/v1/chunk?url=$(urlencode "$FAULT_URL/big.h5")&path=/zeros&key=0.0&decode=1" "$T/big.out")
assert_error 413 "$st" "$T/big.out" too_large "a chunk decoding to 4 MiB with max_decode_bytes 1M"
st=$(http_get "$DAEMON_URL/v1/slice?url=$(urlencode "$FAULT_URL/big.h5")&path=/zeros&select=0:1024&format=raw" "$T/bigs.out")
assert_error 413 "$st" "$T/bigs.out" too_large "a 2 MiB slice with max_decode_bytes 1M"
st=$(http_get "$DAEMON_URL/v1/slice?url=$(urlencode "$FAULT_URL/big.h5")&path=/zeros&select=0:256&format=raw" "$T/bigok.out")
assert_eq 200 "$st" "a 512 KiB slice"
assert_eq 524288 "$(stat -c %s "$T/bigok.out")" "bytes of a 512 KiB slice"

kill -0 "$DAEMON_PID" || fail "the daemon died"
stop_daemon

# ---- worker_memory: a decode beyond the worker's address space ----
if grep -q libasan <<<"$DAEMON_LIBS"; then
    log "AddressSanitizer build: RLIMIT_AS is not applied to workers; memory limit not tested"
else
    write_config "$CONF" "workers = 1" "worker_memory = 64M" "max_decode_bytes = 256M"
    start_daemon -c "$CONF"
    huge="$DAEMON_URL/v1/chunk?url=$(urlencode "$FAULT_URL/huge.h5")&path=/zeros&key=0.0&decode=1"
    st=$(http_get "$huge" "$T/huge.out")
    assert_error 422 "$st" "$T/huge.out" damaged_file "a 128 MiB decode in a 64 MiB worker"
    assert_contains "$T/huge.out" "worker_memory" "the error names the memory limit"
    rss=$(awk '/^VmHWM/ {print $2}' "/proc/$DAEMON_PID/status")
    assert_le "$rss" 120000 "the daemon's peak RSS (KiB) after a 128 MiB decode failed in a worker"
    st=$(slice_json good.h5 /other "0:2" "$T/o2.json")
    assert_eq 200 "$st" "good.h5 next to a worker out of memory"
    stop_daemon
fi
finish_test
