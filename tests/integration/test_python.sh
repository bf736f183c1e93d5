#!/bin/bash
# test_python.sh - the Python package's own unit tests (python/tests, run
# with unittest by $PYTHON_H5) against real daemons: the NWB-like file
# (tests/data/make_nwb_like.py) served by nginx through a daemon with an
# access log, and the same files served by the fault-injecting origin
# through a second daemon on a Unix socket with a bearer token
# (token_scope = all), no upstream retries, 4K blocks and no prefix read,
# so that chunk reads reach the origin while it fails.  See
# python/tests/test_daemon.py for what is checked.  About 30 s.
#
# Environment: as lib.sh (H5CHUNKD_BIN, NGINX_BIN, PYTHON_H5, TESTS_SRCDIR,
# KEEP_TMP=1).  Exit status: 0 pass, 1 fail, 77 skip (no h5py, numpy, zarr
# or fsspec for $PYTHON_H5, or no nginx).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! "$PYTHON_H5" -c 'import h5py, numpy, zarr, fsspec' >/dev/null 2>&1; then
    skip "$PYTHON_H5 cannot import h5py, numpy, zarr and fsspec"
fi
"$PYTHON_H5" -c 'import hdmf' >/dev/null 2>&1 ||
    log "python3-hdmf missing: the HDMF test will be skipped"
PKG_DIR="$TESTS_SRCDIR/../python"
[[ -f "$PKG_DIR/h5chunkd/__init__.py" ]] || fail "the Python package is not at $PKG_DIR"

ROOT="$T/origin"
"$PYTHON_H5" "$TESTS_SRCDIR/data/make_nwb_like.py" "$ROOT" >"$T/make_nwb_like.log" 2>&1 ||
    fail "make_nwb_like.py failed: $(tail -n 5 "$T/make_nwb_like.log")"

start_nginx "$ROOT"
write_config "$T/main.conf" "access_log = $T/access.log"
start_daemon --config "$T/main.conf"
MAIN_URL=$DAEMON_URL

start_fault_origin "$ROOT"
head -c 32 /dev/urandom | base64 | tr -d '=+/\n' >"$T/token"
chmod 600 "$T/token"
write_config "$T/fault.conf" \
    "token_file = $T/token" "token_scope = all" \
    "upstream_retries = 0" "block_size = 4K" "coalesce_gap = 0" "h5_prefix_bytes = 0" \
    "revalidate_s = 86400" "listen = unix:$T/d.sock"
CACHE_DIR="$T/cache2"
DAEMON_LOG="$T/daemon.fault.log"
"$H5CHUNKD_BIN" --foreground --config "$T/fault.conf" --cache-dir "$CACHE_DIR" \
    --allow-private-upstreams --log-level debug 2>"$DAEMON_LOG" &
FAULT_PID=$!
track_pid "$FAULT_PID"
for ((i = 0; i < 100; i++)); do
    [[ -S "$T/d.sock" ]] && curl -s --max-time 2 --unix-socket "$T/d.sock" \
        -o /dev/null http://localhost/v1/health && break
    kill -0 "$FAULT_PID" 2>/dev/null || fail "second daemon exited: $(tail -n 5 "$DAEMON_LOG")"
    sleep 0.1
done
[[ -S "$T/d.sock" ]] || fail "second daemon does not listen on $T/d.sock"
log "second daemon pid $FAULT_PID on unix:$T/d.sock"

export H5CHUNKD_TEST_DAEMON="$MAIN_URL" H5CHUNKD_TEST_ACCESS_LOG="$T/access.log"
export H5CHUNKD_TEST_ORIGIN="$ORIGIN_URL" H5CHUNKD_TEST_ROOT="$ROOT"
export H5CHUNKD_TEST_FAULT_DAEMON="unix:$T/d.sock" H5CHUNKD_TEST_FAULT_TOKEN_FILE="$T/token"
export H5CHUNKD_TEST_FAULT_ORIGIN="$FAULT_URL" TESTS_SRCDIR
# No daemon the user runs may leak in through the environment or files.
unset H5CHUNKD_URL H5CHUNKD_TOKEN_FILE
export XDG_CONFIG_HOME="$T/config" PYTHONDONTWRITEBYTECODE=1

rc=0
timeout --kill-after=10 600 "$PYTHON_H5" -m unittest discover -v -s "$PKG_DIR/tests" \
    >"$T/unittest.log" 2>&1 || rc=$?
cat "$T/unittest.log"
grep -q '^Ran [0-9]* tests' "$T/unittest.log" || fail "unittest did not run (status $rc)"
if grep -qE 'skipped=|skipped ' "$T/unittest.log" && grep -q 'needs a daemon' "$T/unittest.log"; then
    fail "the daemon tests were skipped although the daemons run"
fi
[[ $rc == 0 ]] || fail "python/tests failed (status $rc)"
finish_test
