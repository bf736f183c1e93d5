# lib.sh - shared helpers of the integration tests; sourced by every
# tests/integration/test_*.sh.  Bash only.
#
# Each test gets its own temp dir and its own processes (nginx, the fault
# origin, h5chunkd) on free loopback ports; an EXIT/INT/TERM trap stops every
# process the test started (SIGTERM, then SIGKILL after a bounded wait),
# unmounts what it mounted and removes the temp dir.  Every curl has a
# --max-time and every wait loop is bounded.  Exit status follows automake:
# 0 pass, 1 fail, 77 skip.
#
# Environment (set by `make check`; defaults for a run by hand):
#   H5CHUNKD_BIN  the daemon     (default: $BUILD_DIR/daemon/h5chunkd, BUILD_DIR
#                                 defaulting to the current directory, else
#                                 h5chunkd on PATH)
#   NGINX_BIN         nginx binary   (default: nginx on PATH, else /usr/sbin/nginx)
#   PYTHON_H5     python3 (stdlib is enough here; default /usr/bin/python3)
#   TESTS_SRCDIR  the source tree's tests/ (default: derived from this file)
#   KEEP_TMP=1    keep the temp dir (logs, cache) for a post-mortem
# By hand, from a VPATH build dir:
#   cd /tmp/build-x && bash /work/main/tests/integration/test_mirror.sh
# or with explicit paths:
#   H5CHUNKD_BIN=/tmp/build-x/daemon/h5chunkd bash tests/integration/test_cli.sh

set -euo pipefail

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TESTS_SRCDIR:=$(cd "$LIB_DIR/.." && pwd)}"
: "${PYTHON_H5:=/usr/bin/python3}"
if [[ -z "${NGINX_BIN:-}" ]]; then
    NGINX_BIN=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
fi
if [[ -z "${H5CHUNKD_BIN:-}" ]]; then
    if [[ -x "${BUILD_DIR:-$PWD}/daemon/h5chunkd" ]]; then
        H5CHUNKD_BIN="${BUILD_DIR:-$PWD}/daemon/h5chunkd"
    else
        H5CHUNKD_BIN=$(command -v h5chunkd 2>/dev/null || echo h5chunkd)
    fi
fi
FAULT_ORIGIN_PY="$TESTS_SRCDIR/integration/fault_origin.py"
export LC_ALL=C

TEST_NAME=$(basename "${0%.sh}")
T=$(mktemp -d "${TMPDIR:-/tmp}/h5cd-${TEST_NAME}.XXXXXX")
PIDS=()   # every background process this test started
MOUNTS=() # every mount point this test mounted
DAEMON_PID=""
DAEMON_URL=""
DAEMON_LOG=""
DAEMON_PORT=""
DAEMON_SEQ=0
CACHE_DIR="$T/cache"   # start_daemon's cache; set before start_daemon to change
ALLOW_PRIVATE=1        # 0: start_daemon omits --allow-private-upstreams
CURL_MAX_TIME=120      # seconds, for every curl this library runs

# ---- output and assertions ----

log() { printf '%s: %s\n' "$TEST_NAME" "$*"; }
check() { printf '%s: CHECK %s\n' "$TEST_NAME" "$*"; }

# Shows the tail of every log of the test (daemon, nginx, fault origin, curl errors).
dump_logs() {
    local f
    for f in "$T"/*.log "$T"/*.err "$T"/nginx*/error.log "$T"/sc_*/error.log; do
        [[ -f "$f" ]] || continue
        printf '%s: ---- last lines of %s ----\n' "$TEST_NAME" "$f" >&2
        tail -n 30 "$f" >&2 || true
    done
}

fail() {
    printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
    dump_logs
    exit 1
}

# Records a failure but lets the test go on, so that one run reports every
# independent defect; finish_test then exits 1.
SOFT_FAILS=()
soft_fail() {
    printf '%s: FAIL (continuing): %s\n' "$TEST_NAME" "$*" >&2
    SOFT_FAILS+=("$*")
}

# Ends a test: PASS, or FAIL listing every soft failure.
finish_test() {
    if ((${#SOFT_FAILS[@]} > 0)); then
        local f
        for f in "${SOFT_FAILS[@]}"; do
            printf '%s: FAIL: %s\n' "$TEST_NAME" "$f" >&2
        done
        dump_logs
        exit 1
    fi
    log "PASS"
    exit 0
}

skip() {
    printf '%s: SKIP: %s\n' "$TEST_NAME" "$*"
    exit 77
}

assert_eq() { # EXPECTED ACTUAL WHAT
    if [[ "$1" != "$2" ]]; then
        fail "$3: expected '$1', got '$2'"
    fi
}

assert_ne() { # UNEXPECTED ACTUAL WHAT
    if [[ "$1" == "$2" ]]; then
        fail "$3: got '$2', which it must not be"
    fi
}

assert_ge() { # A B WHAT: integers, A >= B
    if ! (($1 >= $2)); then
        fail "$3: expected $1 >= $2"
    fi
}

assert_gt() { # A B WHAT
    if ! (($1 > $2)); then
        fail "$3: expected $1 > $2"
    fi
}

assert_le() { # A B WHAT
    if ! (($1 <= $2)); then
        fail "$3: expected $1 <= $2"
    fi
}

assert_file_eq() { # EXPECTED_FILE ACTUAL_FILE WHAT
    local out
    if ! out=$(cmp -- "$1" "$2" 2>&1); then
        fail "$3: bytes differ ($out; expected $(stat -c %s "$1") bytes, got $(stat -c %s "$2" 2>/dev/null || echo none))"
    fi
}

assert_contains() { # FILE STRING WHAT
    if ! grep -qF -- "$2" "$1"; then
        fail "$3: '$2' not found in: $(head -c 600 "$1")"
    fi
}

assert_one_line() { # FILE WHAT: exactly one non-empty line
    local n
    n=$(grep -c . "$1" || true)
    if [[ "$n" != 1 ]]; then
        fail "$2: expected exactly one line, got $n: $(head -c 600 "$1")"
    fi
}

# ---- cleanup ----

# Sends SIGTERM to pid and waits up to SECS (default 5) for it to go, then SIGKILL.
kill_bounded() { # PID [SECS]
    local pid=$1 secs=${2:-5} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid m
    trap - EXIT INT TERM
    set +e
    for pid in "${PIDS[@]}"; do
        kill_bounded "$pid" 5
    done
    for m in "${MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        log "temp dir kept: $T"
    else
        rm -rf -- "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

track_pid() { PIDS+=("$1"); }

# Forgets a pid that has been reaped already.
untrack_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [[ "$p" == "$1" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# ---- small tools ----

# A free loopback TCP port (the kernel's choice; callers retry on a lost race).
free_port() {
    "$PYTHON_H5" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Waits until URL answers any HTTP status; fails after SECS (default 10).
wait_http() { # URL [SECS] [PID]
    local url=$1 secs=${2:-10} pid=${3:-} i
    for ((i = 0; i < secs * 10; i++)); do
        if curl -s -g -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# Deterministic pseudo-random content: the same SEED and SIZE always give the same bytes.
make_file() { # PATH SIZE_BYTES SEED
    mkdir -p "$(dirname "$1")"
    "$PYTHON_H5" - "$1" "$2" "$3" <<'EOF'
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
piece = 1 << 20
with open(path + ".part", "wb") as f:
    left = size
    while left > 0:
        n = min(piece, left)
        f.write(rng.randbytes(n))
        left -= n
import os
os.replace(path + ".part", path)
EOF
}

# Writes LEN bytes of FILE from OFFSET into OUT.
slice_file() { # FILE OFFSET LEN OUT
    dd if="$1" of="$4" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}

# Percent-encodes every byte outside [A-Za-z0-9._~-].
urlencode() {
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# The daemon's /v1/file URL for a remote URL.
mirror_url() { # REMOTE_URL
    printf '%s/v1/file?url=%s' "$DAEMON_URL" "$(urlencode "$1")"
}

# One field of a JSON document (dotted path, e.g. error.code); empty if absent.
json_get() { # FILE PATH
    "$PYTHON_H5" - "$1" "$2" <<'EOF'
import json, sys
try:
    with open(sys.argv[1], "rb") as f:
        v = json.load(f)
except Exception:
    print("<not json>")
    sys.exit(0)
for part in sys.argv[2].split("."):
    if isinstance(v, dict) and part in v:
        v = v[part]
    else:
        print("")
        sys.exit(0)
print(json.dumps(v) if isinstance(v, (dict, list)) else v)
EOF
}

# Asserts an error response: STATUS and the JSON error code (CODE may be a|b).
assert_error() { # STATUS_EXPECTED STATUS_GOT BODY_FILE CODE WHAT
    local code
    code=$(json_get "$3" error.code)
    if [[ "$1" != *"$2"* ]] || ! [[ "|$4|" == *"|$code|"* ]]; then
        fail "$5: expected HTTP $1 with error code '$4', got HTTP $2 body: $(head -c 400 "$3")"
    fi
    local msg
    msg=$(json_get "$3" error.message)
    [[ -n "$msg" ]] || fail "$5: error JSON has no message: $(head -c 400 "$3")"
}

# GET (or other method via curl args) printing the HTTP status; body to OUT.
# Extra arguments go to curl.  Status 000 means no HTTP answer.
http_get() { # URL OUT [curl args...]
    local url=$1 out=$2
    shift 2
    curl -sS -g --max-time "$CURL_MAX_TIME" -o "$out" -w '%{http_code}' "$@" "$url" 2>>"$T/curl.err" ||
        true
}

# Reads one header value (case-insensitive) from a curl -D dump.
header_get() { # HEADERS_FILE NAME
    tr -d '\r' <"$1" | awk -v n="$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')" '
        { line = $0; i = index(line, ":"); if (i == 0) next
          k = tolower(substr(line, 1, i - 1)); v = substr(line, i + 1); sub(/^[ \t]+/, "", v)
          if (k == n) last = v }
        END { print last }'
}

# ---- nginx origin ----

ORIGIN_URL=""
NGINX_PID=""

# Serves ROOT over HTTP with byte ranges on a free loopback port; sets ORIGIN_URL.
# NGINX_RANGE_LOG=1: the access log records each request's Range and times.
start_nginx() { # ROOT
    local root=$1 dir="$T/nginx" attempt port
    [[ -x "$NGINX_BIN" ]] || skip "nginx not found (NGINX_BIN=$NGINX_BIN)"
    mkdir -p "$dir/logs" "$dir/tmp"
    for ((attempt = 0; attempt < 5; attempt++)); do
        port=$(free_port)
        {
            # Single process: no worker drops privileges, so the temp dir stays readable.
            echo "daemon off;"
            echo "master_process off;"
            echo "worker_processes 1;"
            if [[ $(id -u) == 0 ]]; then echo "user root;"; fi
            echo "pid $dir/nginx.pid;"
            echo "error_log $dir/error.log warn;"
            echo "events { worker_connections 1024; }"
            echo "http {"
            if [[ -n "${NGINX_RANGE_LOG:-}" ]]; then
                # One line per request: path, status, bytes sent, Range, end and duration (s).
                echo "  log_format ranges '\$uri \$status \$body_bytes_sent \"\$http_range\" \$msec \$request_time';"
                echo "  access_log $dir/access.log ranges;"
            else
                echo "  access_log $dir/access.log;"
            fi
            echo "  client_body_temp_path $dir/tmp/body;"
            echo "  proxy_temp_path $dir/tmp/proxy;"
            echo "  fastcgi_temp_path $dir/tmp/fastcgi;"
            echo "  uwsgi_temp_path $dir/tmp/uwsgi;"
            echo "  scgi_temp_path $dir/tmp/scgi;"
            echo "  default_type application/octet-stream;"
            echo "  sendfile on;"
            echo "  keepalive_requests 100000;"
            echo "  server {"
            echo "    listen 127.0.0.1:$port;"
            echo "    server_name localhost;"
            echo "    root $root;"
            echo "    location / { }"
            echo "    location = /_ready { access_log off; return 200 ok; }"
            echo "  }"
            echo "}"
        } >"$dir/nginx.conf"
        "$NGINX_BIN" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >>"$dir/stdout.log" 2>&1 &
        NGINX_PID=$!
        track_pid "$NGINX_PID"
        if wait_http "http://127.0.0.1:$port/_ready" 10 "$NGINX_PID"; then
            ORIGIN_URL="http://127.0.0.1:$port"
            log "nginx serving $root at $ORIGIN_URL (pid $NGINX_PID)"
            return 0
        fi
        kill_bounded "$NGINX_PID" 2
        untrack_pid "$NGINX_PID"
        grep -q "in use" "$dir/error.log" "$dir/stdout.log" 2>/dev/null ||
            fail "nginx did not start: $(tail -n 5 "$dir/error.log" "$dir/stdout.log" 2>/dev/null)"
    done
    fail "nginx: no free port after 5 attempts"
}

# ---- fault-injecting origin ----

FAULT_URL=""
FAULT_PID=""

start_fault_origin() { # ROOT
    local root=$1 pf="$T/fault.port" i
    [[ -s "$FAULT_ORIGIN_PY" ]] || fail "fault origin missing or empty: $FAULT_ORIGIN_PY"
    rm -f "$pf"
    "$PYTHON_H5" "$FAULT_ORIGIN_PY" --port 0 --root "$root" --port-file "$pf" \
        >>"$T/fault_origin.log" 2>&1 &
    FAULT_PID=$!
    track_pid "$FAULT_PID"
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pf" ]] && grep -qE '^[0-9]+$' "$pf" && break
        kill -0 "$FAULT_PID" 2>/dev/null || fail "fault origin exited: $(tail -n 5 "$T/fault_origin.log")"
        sleep 0.1
    done
    [[ -s "$pf" ]] || fail "fault origin wrote no port file in 10 s"
    FAULT_URL="http://127.0.0.1:$(tr -d ' \n' <"$pf")"
    wait_http "$FAULT_URL/_stats" 10 "$FAULT_PID" || fail "fault origin does not answer at $FAULT_URL"
    log "fault origin serving $root at $FAULT_URL (pid $FAULT_PID)"
}

fault_control() { # JSON
    local st
    st=$(curl -sS --max-time 10 -o "$T/fault_control.out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data-binary "$1" "$FAULT_URL/_control") || true
    [[ "$st" == 200 ]] || fail "fault_control $1: HTTP $st $(head -c 300 "$T/fault_control.out" 2>/dev/null)"
}

fault_stats() { # prints the JSON of /_stats
    curl -sS --max-time 10 "$FAULT_URL/_stats" || fail "fault origin /_stats unreachable"
}

# Number of requests the fault origin has answered (or refused) so far.
fault_requests() {
    fault_stats >"$T/fault_stats.json"
    json_get "$T/fault_stats.json" requests
}

# ---- the daemon ----

# Starts h5chunkd in the foreground on 127.0.0.1:0 with cache dir $CACHE_DIR,
# then extra arguments (later flags win).  Sets DAEMON_PID, DAEMON_URL, DAEMON_LOG.
start_daemon() { # [extra args...]
    local args=(--foreground --listen 127.0.0.1:0 --cache-dir "$CACHE_DIR" --log-level debug)
    [[ "$ALLOW_PRIVATE" == 1 ]] && args+=(--allow-private-upstreams)
    [[ -x "$H5CHUNKD_BIN" ]] || fail "daemon not built: $H5CHUNKD_BIN"
    DAEMON_SEQ=$((DAEMON_SEQ + 1))
    DAEMON_LOG="$T/daemon.$DAEMON_SEQ.log"
    "$H5CHUNKD_BIN" "${args[@]}" "$@" 2>"$DAEMON_LOG" >>"$T/daemon.stdout.log" &
    DAEMON_PID=$!
    track_pid "$DAEMON_PID"
    local i addr=""
    for ((i = 0; i < 100; i++)); do
        addr=$(grep -m1 -oE 'listening" addr=[^ ]+' "$DAEMON_LOG" 2>/dev/null |
            sed 's/.*addr=//') || true
        [[ -n "$addr" ]] && break
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            local rc=0
            wait "$DAEMON_PID" || rc=$?
            untrack_pid "$DAEMON_PID"
            fail "h5chunkd exited with status $rc before listening: $(tail -n 5 "$DAEMON_LOG")"
        fi
        sleep 0.1
    done
    [[ -n "$addr" ]] || fail "h5chunkd did not log its listen address within 10 s"
    DAEMON_PORT=${addr##*:}
    DAEMON_URL="http://127.0.0.1:$DAEMON_PORT"
    wait_http "$DAEMON_URL/v1/health" 10 "$DAEMON_PID" || fail "h5chunkd does not answer at $DAEMON_URL"
    log "h5chunkd pid $DAEMON_PID at $DAEMON_URL cache $CACHE_DIR log $DAEMON_LOG"
}

# SIGTERM (or SIG) and expect exit status 0 within 10 s.
stop_daemon() { # [SIG]
    local sig=${1:-TERM} pid=$DAEMON_PID i rc=0
    [[ -n "$pid" ]] || fail "stop_daemon: no daemon running"
    kill -"$sig" "$pid" 2>/dev/null || fail "stop_daemon: pid $pid is gone"
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        untrack_pid "$pid"
        DAEMON_PID=""
        fail "h5chunkd did not exit within 10 s of SIG$sig"
    fi
    wait "$pid" || rc=$?
    untrack_pid "$pid"
    DAEMON_PID=""
    assert_eq 0 "$rc" "h5chunkd exit status after SIG$sig"
}

# kill -9, reap.
kill9_daemon() {
    local pid=$DAEMON_PID
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    untrack_pid "$pid"
    DAEMON_PID=""
}

# One counter of /v1/stats (integer).
stat_get() { # NAME
    local f="$T/stats.json" v
    curl -sS --max-time 10 -o "$f" "$DAEMON_URL/v1/stats" || fail "GET /v1/stats failed"
    v=$(json_get "$f" "$1")
    [[ "$v" =~ ^[0-9]+$ ]] || fail "/v1/stats has no integer '$1': $(head -c 400 "$f")"
    printf '%s' "$v"
}

# Writes an INI config: write_config FILE 'key = value' ...
write_config() { # FILE LINES...
    local f=$1
    shift
    printf '%s\n' "$@" >"$f"
}

# Fetches RANGE (e.g. "bytes=0-99", "" for none) of REMOTE_URL through the
# daemon into OUT; prints the HTTP status; headers go to OUT.h.
mirror_get() { # REMOTE_URL RANGE OUT
    local r=()
    [[ -n "$2" ]] && r=(-H "Range: $2")
    http_get "$(mirror_url "$1")" "$3" -D "$3.h" "${r[@]}"
}

# Expected bytes of a range of a local FILE of size SIZE: prints "start len".
range_bounds() { # SPEC SIZE   (SPEC: A-B | A- | -N)
    local spec=$1 size=$2 a b
    case "$spec" in
    -*) b=${spec#-}; a=$((size - b)); ((a < 0)) && a=0; echo "$a $((size - a))" ;;
    *-) a=${spec%-}; echo "$a $((size - a))" ;;
    *) a=${spec%-*}; b=${spec#*-}; ((b >= size)) && b=$((size - 1)); echo "$a $((b - a + 1))" ;;
    esac
}

# Reads SPEC of REMOTE_URL through the daemon and asserts 206, Content-Range
# and the exact bytes of the local FILE.
check_mirror_range() { # REMOTE_URL FILE SPEC [WHAT]
    local url=$1 file=$2 spec=$3 what=${4:-$3} size a len out st cr
    size=$(stat -c %s "$file")
    read -r a len < <(range_bounds "$spec" "$size")
    out="$T/range.out"
    st=$(mirror_get "$url" "bytes=$spec" "$out")
    assert_eq 206 "$st" "status of bytes=$spec ($what)"
    cr=$(header_get "$out.h" Content-Range)
    assert_eq "bytes $a-$((a + len - 1))/$size" "$cr" "Content-Range of bytes=$spec ($what)"
    slice_file "$file" "$a" "$len" "$T/range.exp"
    assert_file_eq "$T/range.exp" "$out" "body of bytes=$spec ($what)"
}
