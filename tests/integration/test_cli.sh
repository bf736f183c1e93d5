#!/bin/bash
# test_cli.sh - h5chunkd's command line and process lifecycle: --help,
# --version, bad flags and config files (one line, non-zero exit, FILE:LINE),
# --check-config, an address in use, SIGTERM/SIGINT (exit 0, cache lock
# released), and a second daemon refused on a cache dir in use.
. "$(dirname "$0")/lib.sh"

[[ -x "$H5CHUNKD_BIN" ]] || fail "daemon not built: $H5CHUNKD_BIN"

# Runs the daemon bounded in time; sets RC, OUT and ERR files.  A daemon that
# unexpectedly starts serving is killed by timeout (RC 124).
run_daemon() { # args...
    RC=0
    timeout -k 2 10 "$H5CHUNKD_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || RC=$?
}

check "--help exits 0 and prints usage"
run_daemon --help
assert_eq 0 "$RC" "--help exit status"
assert_contains "$T/out" "usage" "--help output"

check "--version exits 0 and prints the version"
run_daemon --version
assert_eq 0 "$RC" "--version exit status"
grep -qE '^h5chunkd [0-9]+\.[0-9]+\.[0-9]+' "$T/out" || fail "--version output: $(cat "$T/out")"

check "an unknown flag: exit 2, one line on stderr"
run_daemon --no-such-flag
assert_eq 2 "$RC" "unknown flag exit status"
assert_one_line "$T/err" "unknown flag stderr"

check "a stray positional argument: exit 2, one line"
run_daemon --foreground stray
assert_eq 2 "$RC" "positional argument exit status"
assert_one_line "$T/err" "positional argument stderr"

check "a bad --cache-size (10Q): non-zero, one line naming the option"
run_daemon --foreground --listen 127.0.0.1:0 --cache-dir "$T/c0" --cache-size 10Q
assert_ne 0 "$RC" "--cache-size 10Q exit status"
assert_ne 124 "$RC" "--cache-size 10Q must not start"
assert_one_line "$T/err" "--cache-size 10Q stderr"
assert_contains "$T/err" "cache_size" "--cache-size 10Q message"

check "a config file with an unknown key: non-zero, FILE:LINE"
conf="$T/unknown.conf"
write_config "$conf" "# comment" "cache_size = 1G" "no_such_key = 3" "block_size = 256K"
run_daemon --config "$conf" --check-config
assert_eq 1 "$RC" "unknown key exit status"
assert_one_line "$T/err" "unknown key stderr"
assert_contains "$T/err" "$conf:3" "unknown key message names file:line"

check "a config file with a bad value: non-zero, FILE:LINE"
conf="$T/badvalue.conf"
write_config "$conf" "[h5chunkd]" "cache_size = 1G" "" "block_size = 3000"
run_daemon --config "$conf" --check-config
assert_eq 1 "$RC" "bad value exit status"
assert_one_line "$T/err" "bad value stderr"
assert_contains "$T/err" "$conf:4" "bad value message names file:line"

check "a config file with a bad value also stops a real start (not only --check-config)"
run_daemon --config "$conf" --foreground --listen 127.0.0.1:0 --cache-dir "$T/c0"
assert_eq 1 "$RC" "bad value start exit status"
assert_one_line "$T/err" "bad value start stderr"

check "a missing config file: non-zero, one line"
run_daemon --config "$T/does-not-exist.conf" --check-config
assert_ne 0 "$RC" "missing config exit status"
assert_one_line "$T/err" "missing config stderr"

check "--check-config on a good file exits 0"
conf="$T/good.conf"
write_config "$conf" "listen = 127.0.0.1:0" "cache_dir = $T/c1" "cache_size = 64M" \
    "block_size = 64K" "revalidate_s = 0" "upstream_retries = 2" \
    "allow_prefixes = http://127.0.0.1/, https://example.org/" "log_level = debug"
run_daemon --config "$conf" --check-config
assert_eq 0 "$RC" "--check-config exit status ($(cat "$T/err"))"
[[ ! -e "$T/c1" ]] || fail "--check-config created the cache dir $T/c1"

check "SIGTERM: exit 0"
start_daemon
first_port=$DAEMON_PORT
first_pid=$DAEMON_PID

check "a second daemon on the same cache dir is refused"
run_daemon --foreground --listen 127.0.0.1:0 --cache-dir "$CACHE_DIR"
assert_ne 0 "$RC" "second daemon on a busy cache dir: exit status"
assert_ne 124 "$RC" "second daemon on a busy cache dir must not start"
assert_contains "$T/err" "in use" "second daemon message"
assert_one_line "$T/err" "second daemon stderr"
kill -0 "$first_pid" || fail "the first daemon died when a second one tried its cache"

check "listening on an address already in use: non-zero, one line"
run_daemon --foreground --listen "127.0.0.1:$first_port" --cache-dir "$T/c2"
assert_eq 1 "$RC" "address in use exit status"
assert_one_line "$T/err" "address in use stderr"
curl -sf --max-time 5 -o /dev/null "$DAEMON_URL/v1/health" || fail "first daemon stopped answering"

stop_daemon TERM
assert_contains "$DAEMON_LOG" "shutting down" "log after SIGTERM"

check "restart on the same cache dir right after SIGTERM (lock released)"
start_daemon
curl -sf --max-time 5 -o /dev/null "$DAEMON_URL/v1/health" || fail "restarted daemon: no health"

check "SIGINT: exit 0"
stop_daemon INT

check "restart on the same cache dir right after SIGINT (lock released)"
start_daemon
stop_daemon TERM

check "SIGHUP does not stop the daemon"
start_daemon
kill -HUP "$DAEMON_PID"
sleep 0.3
curl -sf --max-time 5 -o /dev/null "$DAEMON_URL/v1/health" || fail "daemon gone after SIGHUP"
stop_daemon TERM

log "PASS"
