#!/bin/bash
# test_systemd.sh - h5chunkd under a service manager and on a shared
# workstation: the units (systemd-analyze verify and security, when it can
# run here), the notify protocol on a NOTIFY_SOCKET of our own (READY,
# STATUS, RELOADING, STOPPING; no detaching), socket activation (a TCP and a
# Unix socket passed as LISTEN_FDS; refusals), the mode and group of a Unix
# listen socket, the bearer token (scopes, rotation, refusals at start),
# SIGHUP reloads (a bad file keeps the running configuration; log_level,
# cache_size and deny_prefixes apply; restart-only options are named) and
# the access log (format, bytes, a logrotate-style move and reopen).
. "$(dirname "$0")/lib.sh"

[[ -x "$H5CHUNKD_BIN" ]] || fail "daemon not built: $H5CHUNKD_BIN"
UNITS_SRC="$TESTS_SRCDIR/../systemd"
TOKEN=ThisIsTheRightToken-0123456789

# ---- helpers ----

# Waits up to SECS for a line matching the extended regex PATTERN in FILE.
wait_for_line() { # FILE PATTERN [SECS]
    local i
    for ((i = 0; i < ${3:-10} * 20; i++)); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# Waits until FILE has at least N lines matching PATTERN.
wait_for_count() { # FILE PATTERN N [SECS]
    local i
    for ((i = 0; i < ${4:-10} * 20; i++)); do
        (($(grep -cE -- "$2" "$1" 2>/dev/null || true) >= $3)) && return 0
        sleep 0.05
    done
    return 1
}

# Starts the daemon with exactly these arguments (environment from
# LAUNCH_ENV); stderr goes to $T/NAME.log.  Waits for its "listening" line
# and sets DAEMON_PID, DAEMON_LOG and, for a TCP address, DAEMON_URL.
LAUNCH_ENV=()
launch() { # NAME args...
    local name=$1 i addr=""
    shift
    DAEMON_LOG="$T/$name.log"
    env "${LAUNCH_ENV[@]}" "$H5CHUNKD_BIN" "$@" 2>"$DAEMON_LOG" >>"$T/daemon.stdout.log" </dev/null &
    DAEMON_PID=$!
    track_pid "$DAEMON_PID"
    LAUNCH_ENV=()
    for ((i = 0; i < 100; i++)); do
        addr=$(grep -m1 -oE 'listening" addr=[^ ]+' "$DAEMON_LOG" 2>/dev/null |
            sed 's/.*addr=//') || true
        [[ -n "$addr" ]] && break
        kill -0 "$DAEMON_PID" 2>/dev/null || fail "$name exited before listening: $(tail -n 3 "$DAEMON_LOG")"
        sleep 0.1
    done
    [[ -n "$addr" ]] || fail "$name did not log its listen address within 10 s"
    DAEMON_URL=""
    [[ "$addr" == unix:* ]] || DAEMON_URL="http://127.0.0.1:${addr##*:}"
    log "$name: pid $DAEMON_PID at $addr"
}

# Runs the daemon bounded in time and expects exit 1 with one stderr line containing TEXT.
expect_start_failure() { # WHAT TEXT args...
    local what=$1 text=$2 rc=0
    shift 2
    timeout -k 2 20 "$@" >"$T/fail.out" 2>"$T/fail.err" </dev/null || rc=$?
    assert_eq 1 "$rc" "$what: exit status"
    assert_one_line "$T/fail.err" "$what: stderr"
    assert_contains "$T/fail.err" "$text" "$what: message"
}

# Sends SIGHUP and waits for the Nth end of a reload in the daemon's log.
hup_and_wait() { # N
    kill -HUP "$DAEMON_PID"
    wait_for_count "$DAEMON_LOG" 'configuration reloaded|reload failed' "$1" 10 ||
        fail "reload #$1 did not finish: $(tail -n 5 "$DAEMON_LOG")"
}

# Prints the HTTP status of a request through the daemon; body to OUT.
status_of() { # URL OUT [curl args...]
    http_get "$@"
}

# ---- the units ----

check "systemd-analyze verify accepts h5chunkd.service and h5chunkd.socket"
mkdir -p "$T/units" "$T/etc/h5chunkd"
printf '[Service]\nExecStart=/bin/true\n' >"$T/units/probe.service"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    log "systemd-analyze not installed: unit checks skipped"
elif ! timeout 60 systemd-analyze verify --man=no "$T/units/probe.service" >"$T/sa_probe.log" 2>&1; then
    log "systemd-analyze cannot run in this environment (a trivial unit fails: $(head -c 200 "$T/sa_probe.log")): unit checks skipped"
else
    # The unit names @bindir@/h5chunkd: point it at the binary under test.
    sed -e "s|@bindir@|$(dirname "$H5CHUNKD_BIN")|g" -e "s|@sysconfdir@|$T/etc|g" \
        "$UNITS_SRC/h5chunkd.service.in" >"$T/units/h5chunkd.service"
    cp "$UNITS_SRC/h5chunkd.socket" "$T/units/h5chunkd.socket"
    timeout 60 systemd-analyze verify --man=no "$T/units/h5chunkd.service" \
        "$T/units/h5chunkd.socket" >"$T/sa_verify.log" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$T/sa_verify.log")"
    [[ -s "$T/sa_verify.log" ]] && fail "systemd-analyze verify warned: $(cat "$T/sa_verify.log")"
    grep -qx 'Type=notify' "$T/units/h5chunkd.service" || fail "the service is not Type=notify"
    if timeout 60 systemd-analyze security --offline=true "$T/units/h5chunkd.service" \
        >"$T/sa_security.log" 2>&1; then
        exposure=$(grep -oE 'Overall exposure level for h5chunkd.service: [0-9.]+' "$T/sa_security.log" |
            sed 's/.*: //')
        [[ -n "$exposure" ]] || fail "no exposure level in: $(tail -n 3 "$T/sa_security.log")"
        log "systemd-analyze security: exposure $exposure"
        awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
            fail "exposure $exposure is above 2.0: $(grep '✗' "$T/sa_security.log")"
    else
        log "systemd-analyze security --offline=true unsupported here: skipped"
    fi
fi

# ---- the notify protocol ----

check "NOTIFY_SOCKET: no detaching, READY=1 with STATUS=, RELOADING/READY on SIGHUP, STOPPING on SIGTERM"
"$PYTHON_H5" - "$T/notify.sock" "$T/notify.msgs" >>"$T/notify_listener.log" 2>&1 <<'EOF' &
import socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(120)  # bounded: gone after two idle minutes
with open(out, "a", buffering=1) as f:
    while True:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        f.write(data.decode(errors="replace").replace("\n", "|") + "\n")
EOF
NOTIFY_PID=$!
track_pid "$NOTIFY_PID"
for ((i = 0; i < 100; i++)); do [[ -S "$T/notify.sock" ]] && break; sleep 0.05; done
[[ -S "$T/notify.sock" ]] || fail "the notify listener did not bind"
# No --foreground: NOTIFY_SOCKET alone must keep the daemon in the foreground.
LAUNCH_ENV=("NOTIFY_SOCKET=$T/notify.sock")
launch daemon-notify --listen 127.0.0.1:0 --cache-dir "$T/cache-notify"
wait_for_line "$T/notify.msgs" 'READY=1' 10 || fail "no READY=1: $(cat "$T/notify.msgs")"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon detached or died although NOTIFY_SOCKET was set"
assert_contains "$DAEMON_LOG" "staying in the foreground" "notify: no-detach log line"
ready=$(grep -m1 'READY=1' "$T/notify.msgs")
[[ "$ready" == *"STATUS=Serving on 127.0.0.1:${DAEMON_URL##*:}; cache "*" requests, block hit ratio "* ]] ||
    fail "READY message lacks the STATUS line: $ready"
assert_eq 200 "$(status_of "$DAEMON_URL/v1/health" "$T/h.out")" "health under NOTIFY_SOCKET"
kill -HUP "$DAEMON_PID"
wait_for_count "$T/notify.msgs" 'READY=1' 2 10 || fail "no READY=1 after SIGHUP: $(cat "$T/notify.msgs")"
grep -n . "$T/notify.msgs" >"$T/notify.numbered"
reloading=$(grep -m1 'RELOADING=1' "$T/notify.numbered" | cut -d: -f1)
second_ready=$(grep 'READY=1' "$T/notify.numbered" | sed -n 2p | cut -d: -f1)
[[ -n "$reloading" ]] || fail "no RELOADING=1: $(cat "$T/notify.msgs")"
assert_gt "$second_ready" "$reloading" "READY=1 comes after RELOADING=1"
[[ "$(grep -m1 'RELOADING=1' "$T/notify.msgs")" =~ MONOTONIC_USEC=[0-9]+ ]] ||
    fail "RELOADING=1 without MONOTONIC_USEC: $(cat "$T/notify.msgs")"
stop_daemon TERM
wait_for_line "$T/notify.msgs" 'STOPPING=1' 5 || fail "no STOPPING=1: $(cat "$T/notify.msgs")"
kill_bounded "$NOTIFY_PID" 2
untrack_pid "$NOTIFY_PID"

# ---- socket activation ----

# Binds a TCP socket on HOST and a Unix socket, then becomes the daemon with
# them as descriptors 3 and 4 (LISTEN_FDS=2, LISTEN_PID = its own pid), as
# systemd would.  MODE "nolisten" leaves the TCP socket unlistened.
cat >"$T/activate.py" <<'EOF'
import os, socket, sys
host, mode, upath, portfile, exe = sys.argv[1:6]
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((host, 0))
if mode != "nolisten":
    t.listen(16)
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.bind(upath)
u.listen(16)
with open(portfile + ".part", "w") as f:
    f.write(str(t.getsockname()[1]))
os.rename(portfile + ".part", portfile)
# Park both above 3 and 4 first: the sockets may already sit on 3 or 4.
os.dup2(t.fileno(), 20)
os.dup2(u.fileno(), 21)
t.close()
u.close()
os.dup2(20, 3)
os.dup2(21, 4)
os.close(20)
os.close(21)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(exe, [exe] + sys.argv[6:])
EOF

check "socket activation: /v1/health answers on the passed TCP and Unix sockets; listen is ignored"
write_config "$T/act.conf" "access_log = $T/act-access.log"
"$PYTHON_H5" "$T/activate.py" 127.0.0.1 listen "$T/act.sock" "$T/act.port" "$H5CHUNKD_BIN" \
    --foreground --config "$T/act.conf" --listen "unix:$T/no/such/dir/x.sock" \
    --cache-dir "$T/cache-act" 2>"$T/act.log" >>"$T/daemon.stdout.log" </dev/null &
DAEMON_PID=$!
DAEMON_LOG="$T/act.log"
track_pid "$DAEMON_PID"
wait_for_line "$T/act.log" 'listening" addr=' 10 || fail "socket-activated daemon did not start: $(tail -n 3 "$T/act.log")"
port=$(cat "$T/act.port")
assert_contains "$T/act.log" "addr=127.0.0.1:$port " "first passed socket"
assert_contains "$T/act.log" "sockets=2 socket_activation=yes" "both sockets served"
assert_contains "$T/act.log" "also listening\" addr=unix:$T/act.sock" "the Unix socket is served"
DAEMON_URL="http://127.0.0.1:$port"
assert_eq 200 "$(status_of "$DAEMON_URL/v1/health" "$T/h1.out")" "health on the passed TCP socket"
st=$(curl -sS --max-time 10 --unix-socket "$T/act.sock" -o "$T/h2.out" -w '%{http_code}' \
    http://localhost/v1/health 2>>"$T/curl.err") || true
assert_eq 200 "$st" "health on the passed Unix socket"
assert_eq ok "$(json_get "$T/h2.out" status)" "health body on the Unix socket"
wait_for_line "$T/act-access.log" 'client=unix method=GET target="/v1/health" status=200' 5 ||
    fail "no access-log line for the Unix client: $(cat "$T/act-access.log")"
stop_daemon TERM

check "socket activation refuses a non-loopback TCP socket and a socket that does not listen"
expect_start_failure "wildcard socket without allow_remote_clients" "allow_remote_clients" \
    "$PYTHON_H5" "$T/activate.py" 0.0.0.0 listen "$T/act2.sock" "$T/act2.port" "$H5CHUNKD_BIN" \
    --foreground --cache-dir "$T/cache-act2"
assert_contains "$T/fail.err" "0.0.0.0:" "the refusal names the address"
expect_start_failure "a socket that does not listen" "not a listening stream socket" \
    "$PYTHON_H5" "$T/activate.py" 127.0.0.1 nolisten "$T/act3.sock" "$T/act3.port" \
    "$H5CHUNKD_BIN" --foreground --cache-dir "$T/cache-act3"

# ---- a Unix listen socket of the daemon's own ----

check "unix:/PATH gets mode 0660 by default and unix_socket_mode/unix_socket_group when set"
launch unix-default --foreground --listen "unix:$T/u1.sock" --cache-dir "$T/cache-u1"
assert_eq 660 "$(stat -c %a "$T/u1.sock")" "default socket mode"
st=$(curl -sS --max-time 10 --unix-socket "$T/u1.sock" -o "$T/u.out" -w '%{http_code}' \
    http://localhost/v1/health 2>>"$T/curl.err") || true
assert_eq 200 "$st" "curl --unix-socket"
check "a second daemon on a live socket path is refused; the first keeps serving"
expect_start_failure "socket in use" "is in use by another process" \
    "$H5CHUNKD_BIN" --foreground --listen "unix:$T/u1.sock" --cache-dir "$T/cache-u1b"
st=$(curl -sS --max-time 10 --unix-socket "$T/u1.sock" -o "$T/u.out" -w '%{http_code}' \
    http://localhost/v1/health 2>>"$T/curl.err") || true
assert_eq 200 "$st" "the first daemon still answers"
stop_daemon TERM
group=$(id -gn)
write_config "$T/u2.conf" "listen = unix:$T/u2.sock" "unix_socket_mode = 0600" \
    "unix_socket_group = $group"
launch unix-mode --foreground --config "$T/u2.conf" --cache-dir "$T/cache-u2"
assert_eq 600 "$(stat -c %a "$T/u2.sock")" "unix_socket_mode 0600"
assert_eq "$group" "$(stat -c %G "$T/u2.sock")" "unix_socket_group"
st=$(curl -sS --max-time 10 --unix-socket "$T/u2.sock" -o "$T/u.out" -w '%{http_code}' \
    http://localhost/v1/health 2>>"$T/curl.err") || true
assert_eq 200 "$st" "curl --unix-socket on a 0600 socket"
stop_daemon TERM
expect_start_failure "unknown unix_socket_group" "no group named 'no-such-group-h5cd'" \
    "$H5CHUNKD_BIN" --foreground --listen "unix:$T/u3.sock" --cache-dir "$T/cache-u3" \
    --config <(printf 'unix_socket_group = no-such-group-h5cd\n')

# ---- the bearer token ----

check "token_file is refused at start when group-readable, empty or missing"
printf '%s\n' "$TOKEN" >"$T/token"
chmod 0644 "$T/token"
write_config "$T/tok.conf" "token_file = $T/token"
expect_start_failure "group-readable token file" "chmod 600" \
    "$H5CHUNKD_BIN" --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache-tok" --config "$T/tok.conf"
: >"$T/token"
chmod 0600 "$T/token"
expect_start_failure "empty token file" "the file is empty" \
    "$H5CHUNKD_BIN" --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache-tok" --config "$T/tok.conf"
write_config "$T/tok-missing.conf" "token_file = $T/no-such-token"
expect_start_failure "missing token file" "No such file" \
    "$H5CHUNKD_BIN" --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache-tok" \
    --config "$T/tok-missing.conf"

check "token_scope = admin: admin paths need the token, the rest do not"
printf '%s\n' "$TOKEN" >"$T/token"
write_config "$T/tok.conf" "token_file = $T/token" "access_log = $T/tok-access.log"
launch token --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache-tok" --config "$T/tok.conf"
auth=(-H "Authorization: Bearer $TOKEN")
wrong=(-H "Authorization: Bearer ${TOKEN}x")
assert_eq 200 "$(status_of "$DAEMON_URL/v1/health" "$T/t.out")" "health without a token"
assert_eq 200 "$(status_of "$DAEMON_URL/v1/stats" "$T/t.out")" "stats without a token (admin scope)"
for path in /v1/cache /v1/cache/files /v1/jobs /v1/jobs/42; do
    st=$(status_of "$DAEMON_URL$path" "$T/t.out" -D "$T/t.h")
    assert_error 401 "$st" "$T/t.out" unauthorized "GET $path without a token"
    [[ "$(header_get "$T/t.h" WWW-Authenticate)" == Bearer* ]] ||
        fail "401 on $path without WWW-Authenticate: Bearer"
    st=$(status_of "$DAEMON_URL$path" "$T/t.out" "${wrong[@]}")
    assert_error 401 "$st" "$T/t.out" unauthorized "GET $path with a wrong token"
    st=$(status_of "$DAEMON_URL$path" "$T/t.out" "${auth[@]}")
    assert_ne 401 "$st" "GET $path with the right token"
done
st=$(status_of "$DAEMON_URL/v1/prefetch" "$T/t.out" -X POST --data-binary '{}')
assert_error 401 "$st" "$T/t.out" unauthorized "POST /v1/prefetch without a token"
st=$(status_of "$DAEMON_URL/v1/prefetch" "$T/t.out" -X POST --data-binary '{}' "${auth[@]}")
assert_ne 401 "$st" "POST /v1/prefetch with the token"
st=$(status_of "$DAEMON_URL/v1/cachex" "$T/t.out")
assert_ne 401 "$st" "/v1/cachex is not under /v1/cache"
wait_for_line "$T/tok-access.log" 'target="/v1/jobs/42" status=401' 5 ||
    fail "401 not in the access log: $(tail -n 3 "$T/tok-access.log")"

check "token_scope = all after SIGHUP: everything but /v1/health needs the token"
write_config "$T/tok.conf" "token_file = $T/token" "token_scope = all" \
    "access_log = $T/tok-access.log"
hup_and_wait 1
assert_contains "$DAEMON_LOG" 'configuration reloaded" applied=token_scope' "token_scope applied"
assert_eq 200 "$(status_of "$DAEMON_URL/v1/health" "$T/t.out")" "health stays open"
st=$(status_of "$DAEMON_URL/v1/stats" "$T/t.out")
assert_error 401 "$st" "$T/t.out" unauthorized "stats without a token (all)"
st=$(status_of "$DAEMON_URL/metrics" "$T/t.out" "${wrong[@]}")
assert_error 401 "$st" "$T/t.out" unauthorized "metrics with a wrong token (all)"
st=$(status_of "$DAEMON_URL/v1/stats" "$T/t.out" -H "Authorization: bearer $TOKEN")
assert_eq 200 "$st" "stats with the token (scheme in lower case)"

check "a new token in the same file takes over on SIGHUP"
printf 'ANewTokenAfterRotation-987654321\n' >"$T/token"
hup_and_wait 2
st=$(status_of "$DAEMON_URL/v1/stats" "$T/t.out" "${auth[@]}")
assert_error 401 "$st" "$T/t.out" unauthorized "the old token after rotation"
st=$(status_of "$DAEMON_URL/v1/stats" "$T/t.out" -H "Authorization: Bearer ANewTokenAfterRotation-987654321")
assert_eq 200 "$st" "the new token after rotation"
check "a token file made group-readable is refused on SIGHUP; the running token stays"
chmod 0640 "$T/token"
hup_and_wait 3
assert_contains "$DAEMON_LOG" 'reload failed: keeping the running configuration" reason="token_file' \
    "reload refused for a readable token file"
st=$(status_of "$DAEMON_URL/v1/stats" "$T/t.out" -H "Authorization: Bearer ANewTokenAfterRotation-987654321")
assert_eq 200 "$st" "the running token still works"
stop_daemon TERM

# ---- SIGHUP and the access log ----

check "SIGHUP: a bad config file is refused and the daemon keeps serving with the old one"
mkdir -p "$T/www"
make_file "$T/www/a.bin" 300000 sys-a
start_fault_origin "$T/www"
conf="$T/hup.conf"
write_config "$conf" "log_level = debug" "cache_size = 1G" "access_log = $T/access.log"
# No --log-level flag: it would override the file's log_level on every reload.
launch hup --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache-hup" \
    --allow-private-upstreams --config "$conf"
assert_eq 1073741824 "$(stat_get cache_limit_bytes)" "cache_limit_bytes at start"
st=$(mirror_get "$FAULT_URL/a.bin" "bytes=0-99" "$T/m.out")
assert_eq 206 "$st" "a mirror read before any reload"
write_config "$conf" "log_level = info" "cache_size = lots"
hup_and_wait 1
assert_contains "$DAEMON_LOG" "reload failed: keeping the running configuration\" reason=\"$conf:2: cache_size" \
    "the refusal names file:line"
assert_eq 200 "$(status_of "$DAEMON_URL/v1/health" "$T/h.out")" "health after a bad reload"
assert_eq 1073741824 "$(stat_get cache_limit_bytes)" "cache_limit_bytes after a bad reload"
status_of "$DAEMON_URL/v1/nothing-here" "$T/n.out" >/dev/null
wait_for_count "$DAEMON_LOG" 'code=not_found' 1 5 || fail "debug logging is not on before the reload"

check "SIGHUP: log_level, cache_size and deny_prefixes apply; restart-only options are named"
write_config "$conf" "log_level = info" "cache_size = 64M" "access_log = $T/access.log" \
    "deny_prefixes = $FAULT_URL/" "max_connections = 7" "block_size = 64K"
hup_and_wait 2
assert_contains "$DAEMON_LOG" 'configuration reloaded" applied=cache_size,deny_prefixes,log_level' \
    "what was applied"
assert_contains "$DAEMON_LOG" 'need a restart to take effect" options=max_connections,block_size' \
    "restart-only options named"
assert_eq 67108864 "$(stat_get cache_limit_bytes)" "cache_limit_bytes after the reload"
before=$(grep -c 'code=not_found' "$DAEMON_LOG")
status_of "$DAEMON_URL/v1/nothing-here" "$T/n.out" >/dev/null
sleep 0.3
assert_eq "$before" "$(grep -c 'code=not_found' "$DAEMON_LOG")" "debug lines after log_level = info"
st=$(mirror_get "$FAULT_URL/a.bin" "bytes=0-99" "$T/m.out")
assert_error 403 "$st" "$T/m.out" url_not_allowed "a denied prefix after the reload"

check "the access log: one line per request with status, bytes and duration"
n0=$(grep -c . "$T/access.log")
size=$(curl -sS --max-time 10 -o /dev/null -w '%{size_download}' "$DAEMON_URL/v1/health")
wait_for_count "$T/access.log" 'target="/v1/health"' 2 5 || fail "no access-log line for /v1/health"
line=$(grep 'target="/v1/health"' "$T/access.log" | tail -n 1)
[[ "$line" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\ client=127\.0\.0\.1\ method=GET\ target=\"/v1/health\"\ status=200\ bytes=([0-9]+)\ ms=[0-9]+$ ]] ||
    fail "access-log line format: $line"
assert_eq "$size" "${BASH_REMATCH[1]}" "bytes= of /v1/health"
assert_contains "$T/access.log" 'method=GET target="/v1/file?url=' "the /v1/file target with its query"
assert_contains "$T/access.log" 'status=206 bytes=100 ' "the streamed 206 with its byte count"
assert_contains "$T/access.log" 'status=403 ' "the refused request"
assert_eq 600 "$(stat -c %a "$T/access.log")" "access log mode"
assert_ge "$(grep -c . "$T/access.log")" "$((n0 + 1))" "lines grow"

check "the access log is reopened by SIGHUP after logrotate moved it"
mv "$T/access.log" "$T/access.log.1"
curl -sS --max-time 10 -o /dev/null "$DAEMON_URL/v1/health?marker=before-reopen"
wait_for_line "$T/access.log.1" 'marker=before-reopen' 5 || fail "lines do not follow the moved file"
hup_and_wait 3
curl -sS --max-time 10 -o /dev/null "$DAEMON_URL/v1/health?marker=after-reopen"
wait_for_line "$T/access.log" 'marker=after-reopen' 5 || fail "no line in the reopened access log"
grep -q 'marker=after-reopen' "$T/access.log.1" && fail "a line after the reopen went to the old file"
grep -q 'marker=before-reopen' "$T/access.log" && fail "a line before the reopen is in the new file"
stop_daemon TERM

finish_test
