#!/usr/bin/env bash
# test_client.sh - the h5chunk command-line client against a real daemon:
# every command, its human and --json output, its exit status, and its
# error lines.  An nginx origin serves a small HDF5 file written here with
# h5py (a gzip-compressed chunked int16 dataset with chunks never written,
# a plain one, attributes, a group); the bytes h5chunk saves must equal
# h5py's read_direct_chunk.  The daemon is reached over TCP (through
# --daemon and through H5CHUNKD_URL) and over a Unix socket.  Commands
# whose endpoints this daemon does not serve yet (slice, prefetch, cache)
# are probed with curl first and reported as "SKIP part" when absent.
#
# Environment (besides lib.sh's): H5CHUNK_BIN, the client (default: next to
# the daemon's build dir, client/h5chunk).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [[ -z "${H5CHUNK_BIN:-}" ]]; then
    H5CHUNK_BIN="$(cd "$(dirname "$H5CHUNKD_BIN")/.." 2>/dev/null && pwd)/client/h5chunk"
fi
[[ -x "$H5CHUNK_BIN" ]] || fail "client not built: $H5CHUNK_BIN"
"$PYTHON_H5" -c 'import h5py, numpy' 2>/dev/null || skip "$PYTHON_H5 has no h5py/numpy"
CMD_TIMEOUT=60 # seconds, for every h5chunk run (the client's own bound is --timeout)

# Runs h5chunk with a time bound; stdout to $T/out, stderr to $T/err; sets RC.
hc() {
    RC=0
    timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || RC=$?
}

assert_rc() { # EXPECTED WHAT
    if [[ "$RC" != "$1" ]]; then
        fail "$2: expected exit status $1, got $RC; stderr: $(head -c 600 "$T/err")"
    fi
}

assert_empty() { # FILE WHAT
    [[ ! -s "$1" ]] || fail "$2: expected nothing, got: $(head -c 600 "$1")"
}

# ---- data ----

mkdir -p "$T/www" "$T/expect"
"$PYTHON_H5" - "$T/www/client.h5" "$T/expect" <<'EOF'
import os, sys
import h5py, numpy as np
path, exp = sys.argv[1], sys.argv[2]
with h5py.File(path, "w") as f:
    g = f.create_group("grp")
    g.attrs["note"] = "hello"
    d = g.create_dataset("data", shape=(100, 60), chunks=(10, 20), dtype="<i2",
                         compression="gzip", compression_opts=4, fillvalue=-1)
    # rows 90..99 are never written: chunks 9.0, 9.1, 9.2 stay unallocated
    d[0:90, :] = (np.arange(90 * 60, dtype=np.int64).reshape(90, 60) * 7 % 30011 - 15000).astype("<i2")
    d.attrs["units"] = "mV"
    d.attrs["rate"] = 30000.0
    f.create_dataset("plain", data=np.arange(50, dtype="<i2"), chunks=(10,))
rng = np.random.default_rng(7)
with h5py.File(os.path.join(os.path.dirname(path), "big.h5"), "w") as f:
    # two 8 MB datasets of 40 chunks each, for prefetch jobs slow enough to interrupt
    for name in ("big1", "big2"):
        f.create_dataset(name, data=rng.integers(-30000, 30000, size=(4000, 1000), dtype="<i2"),
                         chunks=(100, 1000))
with h5py.File(path, "r") as f:
    d = f["grp/data"]
    for i in range(10):
        for j in range(3):
            try:
                mask, data = d.id.read_direct_chunk((i * 10, j * 20))
            except Exception:
                continue  # never written
            with open(os.path.join(exp, "%d.%d" % (i, j)), "wb") as out:
                out.write(data)
            block = d[i * 10:(i + 1) * 10, j * 20:(j + 1) * 20]
            with open(os.path.join(exp, "%d.%d.decoded" % (i, j)), "wb") as out:
                out.write(np.ascontiguousarray(block, dtype="<i2").tobytes())
EOF
[[ -s "$T/expect/0.0" && ! -e "$T/expect/9.0" ]] || fail "test file: unexpected chunk layout"

start_nginx "$T/www"
start_daemon
U="$ORIGIN_URL/client.h5"
unset H5CHUNKD_URL H5CHUNKD_TOKEN_FILE
D=(--daemon "$DAEMON_URL")

# ---- usage errors: exit 2, one line, nothing on stdout ----

check "usage errors"
for args in "bogus" "" "meta $U" "get $U /grp/data ../etc" "cache purge" "stats --nope" \
    "meta $U /grp/data --decode"; do
    # shellcheck disable=SC2086 # word splitting wanted: the arguments
    hc $args
    assert_rc 2 "h5chunk $args"
    assert_one_line "$T/err" "stderr of h5chunk $args"
    assert_empty "$T/out" "stdout of h5chunk $args"
done
assert_contains "$T/err" "h5chunk: option --decode does not apply to 'meta'" "option scope message"
hc --help
assert_rc 0 "--help"
assert_contains "$T/out" "usage: h5chunk" "--help text"
hc get --help
assert_rc 0 "get --help"
assert_contains "$T/out" "usage: h5chunk get URL PATH KEY" "get --help text"
hc --version
assert_rc 0 "--version"
assert_contains "$T/out" "h5chunk " "--version text"

# ---- meta ----

check "meta (human)"
hc "${D[@]}" meta "$U" /grp/data
assert_rc 0 "meta"
for want in "kind     dataset" "shape    (100, 60)" "chunks   (10, 20)" "grid     30 chunks (10 x 3)" \
    "dtype    <i2" "layout   chunked" "fill     -1" 'units = "mV"' "rate = 30000.0"; do
    assert_contains "$T/out" "$want" "meta output"
done
grep -qE '^filters +(deflate|gzip)' "$T/out" || fail "meta: no deflate filter line: $(cat "$T/out")"
hc "${D[@]}" meta "$U" /grp
assert_rc 0 "meta of a group"
assert_contains "$T/out" "kind     group" "group kind"
assert_contains "$T/out" "members  data" "group members"
assert_contains "$T/out" 'note = "hello"' "group attrs"

check "meta --json"
hc "${D[@]}" meta --json "$U" /grp/data
assert_rc 0 "meta --json"
"$PYTHON_H5" - "$T/out" <<'EOF' || fail "meta --json does not match h5py: $(head -c 600 "$T/out")"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["kind"] == "dataset", m
assert m["shape"] == [100, 60] and m["chunks"] == [10, 20], m
assert m["dtype"] == "<i2" and m["layout"] == "chunked", m
assert m["attrs"]["units"] == "mV", m
EOF

check "meta errors: one line with the daemon's code"
hc "${D[@]}" meta "$U" /no/such/object
assert_rc 1 "meta of a missing object"
assert_one_line "$T/err" "meta error"
assert_contains "$T/err" "h5chunk: meta: not_found: " "meta error line"
assert_empty "$T/out" "stdout of a failed meta"

# ---- get ----

check "get: bytes equal h5py's read_direct_chunk"
hc "${D[@]}" get "$U" /grp/data 0.0 1.2 8.1 -o "$T/got"
assert_rc 0 "get"
assert_empty "$T/err" "stderr of get"
for k in 0.0 1.2 8.1; do
    assert_file_eq "$T/expect/$k" "$T/got/$k" "chunk $k"
done
[[ -z "$(find "$T/got" -name '*.part' -o -name '*.XXXXXX')" ]] || fail "get left temp files"

check "get --decode: the plain array bytes of the chunk"
hc "${D[@]}" get --decode "$U" /grp/data 8.1 0.2 -o "$T/dec"
assert_rc 0 "get --decode"
for k in 8.1 0.2; do
    assert_file_eq "$T/expect/$k.decoded" "$T/dec/$k" "decoded chunk $k"
done

check "get: an unallocated chunk is reported, the others saved, exit 1"
rm -rf "$T/got"
hc "${D[@]}" get "$U" /grp/data 9.1 2.2 -o "$T/got"
assert_rc 1 "get with an unallocated key"
assert_one_line "$T/err" "get per-key error"
assert_contains "$T/err" "h5chunk: get: chunk 9.1: chunk_not_allocated" "unallocated key message"
assert_file_eq "$T/expect/2.2" "$T/got/2.2" "chunk 2.2 next to a failed key"
[[ ! -e "$T/got/9.1" ]] || fail "get wrote a file for an unallocated chunk"

check "get --json and the default directory"
mkdir -p "$T/cwd"
RC=0
(cd "$T/cwd" && timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" "${D[@]}" get --json "$U" /grp/data 3.0 3.0 \
    >"$T/out" 2>"$T/err") || RC=$?
assert_rc 0 "get --json"
assert_file_eq "$T/expect/3.0" "$T/cwd/3.0" "chunk 3.0 in the current directory"
"$PYTHON_H5" - "$T/out" <<'EOF' || fail "get --json lines: $(head -c 600 "$T/out")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 1, lines  # a repeated key is asked for once
assert lines[0]["key"] == "3.0" and lines[0]["status"] == 200, lines
EOF

check "get: a key outside the dataset fails the batch with the daemon's code"
hc "${D[@]}" get "$U" /grp/data 0.0 99.0 -o "$T/got2"
assert_rc 1 "get with an out-of-range key"
assert_one_line "$T/err" "bad key error"
assert_contains "$T/err" "bad_key" "bad key code"

check "get: an invalid key is refused before any request"
before=$(stat_get requests)
hc "${D[@]}" get "$U" /grp/data 0.0 "1/../../x" -o "$T/got3"
assert_rc 2 "get with a path-like key"
assert_contains "$T/err" "invalid chunk key" "invalid key message"
[[ ! -e "$T/got3" ]] || fail "get created its directory for a refused command"
after=$(stat_get requests)
assert_eq $((before + 1)) "$after" "daemon requests (only stat_get's own) after a refused key"

# ---- stats ----

check "stats"
hc "${D[@]}" stats
assert_rc 0 "stats"
grep -qE '^requests +[0-9]+$' "$T/out" || fail "stats: no aligned requests line: $(head -c 600 "$T/out")"
grep -qE '^chunks_served +[1-9][0-9]*$' "$T/out" || fail "stats: chunks_served not counted"
w=$(awk '{ print index($0, $2) }' "$T/out" | sort -u | wc -l)
assert_eq 1 "$w" "stats values start in one column"
hc "${D[@]}" stats --json
assert_rc 0 "stats --json"
[[ "$(json_get "$T/out" version)" =~ ^[0-9]+\.[0-9]+ ]] || fail "stats --json: no version"

# ---- zarr-url ----

check "zarr-url"
id=$("$PYTHON_H5" -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$U")
hc "${D[@]}" zarr-url "$U"
assert_rc 0 "zarr-url"
assert_eq "$DAEMON_URL/zarr/v2/$id/" "$(cat "$T/out")" "zarr-url"
hc "${D[@]}" zarr-url --json "$U"
assert_rc 0 "zarr-url --json"
assert_eq "/zarr/v2/$id/" "$(json_get "$T/out" base)" "zarr-url --json base"

# ---- the daemon address: H5CHUNKD_URL, --daemon, unix: ----

check "H5CHUNKD_URL, and --daemon over it"
dead="http://127.0.0.1:$(free_port)"
RC=0
H5CHUNKD_URL="$DAEMON_URL" timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" stats >"$T/out" 2>"$T/err" || RC=$?
assert_rc 0 "stats through H5CHUNKD_URL"
RC=0
H5CHUNKD_URL="$dead" timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" --daemon "$DAEMON_URL" stats \
    >"$T/out" 2>"$T/err" || RC=$?
assert_rc 0 "--daemon wins over H5CHUNKD_URL"

check "daemon not running: one line, exit 1"
hc --daemon "$dead" meta "$U" /grp/data
assert_rc 1 "meta with no daemon"
assert_one_line "$T/err" "no-daemon error"
assert_contains "$T/err" "cannot reach h5chunkd at $dead" "no-daemon message"
RC=0
H5CHUNKD_URL="$dead" timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" stats >"$T/out" 2>"$T/err" || RC=$?
assert_rc 1 "stats with H5CHUNKD_URL naming no daemon"
assert_one_line "$T/err" "no-daemon error (H5CHUNKD_URL)"

check "token file"
hc "${D[@]}" --token "$T/no-such-token" stats
assert_rc 1 "a missing token file"
assert_one_line "$T/err" "token error"
printf 'secret-token\n' >"$T/token"
chmod 600 "$T/token"
RC=0
H5CHUNKD_TOKEN_FILE="$T/token" timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" "${D[@]}" stats \
    >"$T/out" 2>"$T/err" || RC=$?
assert_rc 0 "stats with a bearer token"

check "unix: daemon address"
sock="$T/h5chunkd.sock"
"$H5CHUNKD_BIN" --foreground --listen "unix:$sock" --cache-dir "$T/cache-unix" \
    --allow-private-upstreams --log-level debug 2>"$T/daemon-unix.log" >/dev/null &
upid=$!
track_pid "$upid"
for ((i = 0; i < 100; i++)); do
    [[ -S "$sock" ]] && curl -s --max-time 1 --unix-socket "$sock" -o /dev/null http://localhost/v1/health && break
    kill -0 "$upid" 2>/dev/null || fail "unix-socket daemon exited: $(tail -n 5 "$T/daemon-unix.log")"
    sleep 0.1
done
[[ -S "$sock" ]] || fail "unix-socket daemon did not create $sock within 10 s"
hc --daemon "unix:$sock" get "$U" /grp/data 4.2 -o "$T/got-unix"
assert_rc 0 "get over a unix socket"
assert_file_eq "$T/expect/4.2" "$T/got-unix/4.2" "chunk 4.2 over a unix socket"
RC=0
H5CHUNKD_URL="unix:$sock" timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" meta "$U" /grp/data \
    >"$T/out" 2>"$T/err" || RC=$?
assert_rc 0 "meta with H5CHUNKD_URL=unix:"
assert_contains "$T/out" "kind     dataset" "meta over a unix socket"
kill_bounded "$upid" 5
untrack_pid "$upid"
hc --daemon "unix:$sock" stats
assert_rc 1 "stats with a stopped unix-socket daemon"
assert_one_line "$T/err" "unix no-daemon error"

# ---- endpoints that may not exist yet ----

# True when the daemon serves PATH (anything but 404 "no such endpoint").
serves() { # PATH [curl args...]
    local path=$1 st
    shift
    st=$(http_get "$DAEMON_URL$path" "$T/probe" "$@")
    ! [[ "$st" == 404 && "$(json_get "$T/probe" error.message)" == "no such endpoint"* ]]
}

if serves "/v1/slice"; then
    check "slice"
    hc "${D[@]}" slice "$U" /grp/data "5:27,3" -o "$T/s.npy"
    assert_rc 0 "slice -o"
    "$PYTHON_H5" - "$T/s.npy" "$T/www/client.h5" <<'EOF' || fail "slice does not match h5py"
import sys, h5py, numpy as np
got = np.load(sys.argv[1])
with h5py.File(sys.argv[2], "r") as f:
    want = f["grp/data"][5:27, 3]
assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape)
assert np.array_equal(got, want)
EOF
    RC=0
    timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" "${D[@]}" slice "$U" /grp/data "0:2" >"$T/s2.npy" \
        2>"$T/err" </dev/null || RC=$?
    assert_rc 0 "slice to a pipe"
    assert_eq "$(printf '\223NUMPY' | od -An -tx1)" "$(head -c 6 "$T/s2.npy" | od -An -tx1)" \
        "slice to stdout: .npy magic"
    hc "${D[@]}" slice "$U" /grp/data "0:1,999" -o "$T/s3.npy"
    assert_rc 1 "slice out of bounds"
    assert_one_line "$T/err" "slice error"
    [[ ! -e "$T/s3.npy" ]] || fail "a failed slice left $T/s3.npy"
else
    log "SKIP part: slice (the daemon does not serve /v1/slice yet)"
    hc "${D[@]}" slice "$U" /grp/data "0:2" -o "$T/s.npy"
    assert_rc 1 "slice against a daemon without /v1/slice"
    assert_one_line "$T/err" "slice error without the endpoint"
    [[ ! -e "$T/s.npy" ]] || fail "a failed slice left $T/s.npy"
fi

if serves "/v1/prefetch" -X POST -H 'Content-Type: application/json' --data-binary '{}'; then
    check "prefetch (not a terminal: plain lines)"
    hc "${D[@]}" --timeout 60 prefetch "$U" /grp/data
    assert_rc 0 "prefetch"
    assert_contains "$T/out" "prefetch: " "prefetch progress lines"
    grep -qE 'done' "$T/out" || fail "prefetch: no final line: $(head -c 600 "$T/out")"
    [[ "$(grep -c $'\r' "$T/out" || true)" == 0 ]] || fail "prefetch drew a bar into a pipe"
    hc "${D[@]}" prefetch --json "$U" /grp/data "0:20"
    assert_rc 0 "prefetch --json"
    assert_eq "done" "$(json_get "$T/out" state)" "prefetch --json state"
    hc "${D[@]}" prefetch "$U" /no/such/dataset
    assert_rc 1 "prefetch of a missing dataset"
else
    log "SKIP part: prefetch (the daemon does not serve /v1/prefetch yet)"
    hc "${D[@]}" prefetch "$U" /grp/data
    assert_rc 1 "prefetch against a daemon without /v1/prefetch"
    assert_one_line "$T/err" "prefetch error without the endpoint"
fi

serves_admin() { [[ "$ADMIN" == 1 ]]; }
ADMIN=0
if serves "/v1/cache"; then
    ADMIN=1
    check "cache ls / purge"
    hc "${D[@]}" cache ls
    assert_rc 0 "cache ls"
    assert_contains "$T/out" "URL" "cache ls header"
    assert_contains "$T/out" "$U" "cache ls lists the file"
    hc "${D[@]}" cache ls --json
    assert_rc 0 "cache ls --json"
    "$PYTHON_H5" -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/out" || fail "cache ls --json is not JSON"
    hc "${D[@]}" cache purge "$U"
    assert_rc 0 "cache purge URL"
    hc "${D[@]}" cache ls
    assert_rc 0 "cache ls after purge"
    if grep -qF -- "$U" "$T/out"; then fail "cache ls still lists $U after purge"; fi
    hc "${D[@]}" cache purge --all
    assert_rc 0 "cache purge --all"
else
    log "SKIP part: cache ls/purge (the daemon does not serve /v1/cache yet)"
    hc "${D[@]}" cache ls
    assert_rc 1 "cache ls against a daemon without /v1/cache"
    assert_one_line "$T/err" "cache ls error without the endpoint"
fi

# The daemon survived all of it.
stop_daemon

# ---- a daemon that wants a bearer token for its admin endpoints ----

if serves_admin; then
    check "--token / H5CHUNKD_TOKEN_FILE against token_file"
    printf '%s\n' "h5chunk-test-token-0123456789abcdef" >"$T/daemon.token"
    chmod 600 "$T/daemon.token"
    cp "$T/daemon.token" "$T/client.token"
    write_config "$T/token.conf" "token_file = $T/daemon.token"
    CACHE_DIR="$T/cache-token"
    start_daemon --config "$T/token.conf"
    D=(--daemon "$DAEMON_URL")
    hc "${D[@]}" cache ls
    assert_rc 1 "cache ls without the token"
    assert_one_line "$T/err" "unauthorized error"
    assert_contains "$T/err" "h5chunk: cache ls: unauthorized: " "unauthorized message"
    hc "${D[@]}" --token "$T/client.token" cache ls
    assert_rc 0 "cache ls with --token"
    RC=0
    H5CHUNKD_TOKEN_FILE="$T/client.token" timeout -k 5 "$CMD_TIMEOUT" "$H5CHUNK_BIN" "${D[@]}" \
        prefetch "$U" /grp/data >"$T/out" 2>"$T/err" || RC=$?
    assert_rc 0 "prefetch with H5CHUNKD_TOKEN_FILE"
    printf 'wrong-token-wrong-token\n' >"$T/bad.token"
    hc "${D[@]}" --token "$T/bad.token" cache purge --all
    assert_rc 1 "cache purge with a wrong token"
    assert_contains "$T/err" "unauthorized" "wrong token message"
    hc "${D[@]}" meta "$U" /grp/data # token_scope = admin: data endpoints stay open
    assert_rc 0 "meta without a token (token_scope admin)"
    stop_daemon
else
    log "SKIP part: token (the daemon has no admin endpoints yet)"
fi

# ---- prefetch jobs given up on: --timeout and Ctrl-C cancel them ----

# Waits (at most 30 s) until job ID of the current daemon is in STATE.
wait_job_state() { # ID STATE
    local i st=""
    for ((i = 0; i < 300; i++)); do
        http_get "$DAEMON_URL/v1/jobs/$1" "$T/job.json" >/dev/null
        st=$(json_get "$T/job.json" state)
        [[ "$st" == "$2" ]] && return 0
        sleep 0.1
    done
    fail "job $1: state '$st' after 30 s, expected '$2': $(head -c 400 "$T/job.json")"
}

if serves_admin; then
    check "prefetch --timeout and Ctrl-C cancel the job"
    start_fault_origin "$T/www"
    # every chunk block its own slow upstream request: a job of several seconds
    write_config "$T/slow.conf" "h5_prefix_bytes = 64K" "coalesce_gap = 0" "coalesce_max = 256K"
    CACHE_DIR="$T/cache-slow"
    start_daemon --config "$T/slow.conf"
    FU="$FAULT_URL/big.h5"
    hc --daemon "$DAEMON_URL" meta "$FU" /big1 # metadata cached while upstream is fast
    assert_rc 0 "meta of big.h5"
    fault_control '{"mode": "delay", "ms": 1500}'

    hc --daemon "$DAEMON_URL" --timeout 2 prefetch "$FU" /big1
    assert_rc 1 "prefetch past --timeout"
    assert_contains "$T/err" "not done within --timeout" "timeout message"
    job=$(grep -m1 -oE 'job [0-9]+' "$T/err" | cut -d' ' -f2)
    [[ -n "$job" ]] || fail "no job id in: $(cat "$T/err")"
    wait_job_state "$job" cancelled

    : >"$T/out" # no stale progress line from the run above
    "$H5CHUNK_BIN" --daemon "$DAEMON_URL" prefetch "$FU" /big2 >"$T/out" 2>"$T/err" </dev/null &
    cpid=$!
    track_pid "$cpid"
    for ((i = 0; i < 200; i++)); do
        grep -q '^prefetch: ' "$T/out" && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^prefetch: ' "$T/out" || fail "prefetch printed no progress within 20 s: $(cat "$T/err")"
    kill -INT "$cpid"
    for ((i = 0; i < 200; i++)); do
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$cpid" 2>/dev/null && fail "prefetch still running 20 s after SIGINT"
    RC=0
    wait "$cpid" || RC=$?
    untrack_pid "$cpid"
    assert_rc 130 "prefetch after SIGINT"
    assert_contains "$T/err" "interrupted; job" "SIGINT message"
    job=$(grep -m1 -oE 'job [0-9]+' "$T/err" | cut -d' ' -f2)
    wait_job_state "$job" cancelled
    fault_control '{"mode": "reset_all"}'
    stop_daemon
fi
finish_test
