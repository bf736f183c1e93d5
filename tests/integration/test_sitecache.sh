#!/bin/bash
# test_sitecache.sh - the site cache tier (issue 13): an origin (the fault
# origin: it counts requests, delays and changes ETags on demand), two nginx
# site caches from scripts/h5chunkd-site-cache, and two daemons ("A" and "B",
# two workstations) with separate caches and parents = both site caches.
#
#  1. A reads a file and an HDF5 dataset cold, then B does: B makes no
#     origin request, and every byte is equal (to the file, and A's to B's).
#  2. 8 concurrent cold readers across A and B: one origin request per slice.
#  3. A site cache killed (SIGKILL) mid-batch: every request answered, right bytes.
#  4. Every site cache down: reads go to the origin; a site cache back up is
#     used again after parent_retry_ms.
#  5. A file changed at the origin (new content and ETag) is seen through the tier;
#     the ETag a site cache shows is the origin's.
#  6. A hung site cache is given up after parent_timeout_ms.  The site cache
#     refuses hosts outside its allow list (421), methods other
#     than GET, and never serves bytes fetched with a signed URL to a request
#     the origin refuses; a daemon whose URL a site cache refuses reads from the origin.
# About 35 s (70 s under ASan): nginx, two daemons, small files on loopback.
. "$(dirname "$0")/lib.sh"

SITE_CACHE_SCRIPT="$TESTS_SRCDIR/../scripts/h5chunkd-site-cache"
MIB=1048576
[[ -x "$NGINX_BIN" ]] || skip "nginx not found (NGINX_BIN=$NGINX_BIN)"
"$NGINX_BIN" -V 2>&1 | grep -q -- --with-http_slice_module || skip "nginx without the slice module"
[[ -s "$SITE_CACHE_SCRIPT" ]] || fail "missing $SITE_CACHE_SCRIPT"

mkdir -p "$T/www"
make_file "$T/www/a.bin" $((6 * MIB + 12345)) site-a
make_file "$T/www/conc.bin" $((8 * MIB)) site-conc
make_file "$T/www/kill.bin" $((12 * MIB)) site-kill
make_file "$T/www/down.bin" $((3 * MIB + 7)) site-down
make_file "$T/www/back.bin" $((4 * MIB)) site-back
make_file "$T/www/chg.bin" $((3 * MIB)) site-chg-1
make_file "$T/www/sig.bin" $((2 * MIB)) site-sig
"$PYTHON_H5" - "$T/www/data.h5" "$T/data.raw" <<'EOF'
import sys, h5py, numpy
a = (numpy.arange(600 * 1000, dtype="<i4").reshape(600, 1000) * 7919) % 100003
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("data", data=a, chunks=(50, 250), compression="gzip")
open(sys.argv[2], "wb").write(a.tobytes())
EOF
start_fault_origin "$T/www"
ORIGIN_AUTHORITY=${FAULT_URL#http://}

# ---- site caches ----

declare -A SC_PID SC_PORT
# Generates the configuration of site cache NAME (on PORT, or a free one) and starts it.
start_site_cache() { # NAME [PORT]
    local name=$1 port=${2:-} dir="$T/sc_$1" attempt user=()
    [[ $(id -u) == 0 ]] && user=(--user root)
    mkdir -p "$dir"
    for ((attempt = 0; attempt < 5; attempt++)); do
        [[ -n "${2:-}" ]] || port=$(free_port)
        bash "$SITE_CACHE_SCRIPT" --listen "127.0.0.1:$port" --cache-dir "$dir" \
            --allow-host "$ORIGIN_AUTHORITY" --slice 1m --cache-size 1g --workers 1 \
            --foreground "${user[@]}" >"$dir/nginx.conf" || fail "h5chunkd-site-cache failed"
        "$NGINX_BIN" -e "$dir/error.log" -c "$dir/nginx.conf" >>"$dir/stdout.log" 2>&1 &
        SC_PID[$name]=$!
        track_pid "${SC_PID[$name]}"
        if wait_http "http://127.0.0.1:$port/_h5cd_health" 10 "${SC_PID[$name]}"; then
            SC_PORT[$name]=$port
            log "site cache $name at 127.0.0.1:$port (pid ${SC_PID[$name]})"
            return 0
        fi
        kill_bounded "${SC_PID[$name]}" 2
        untrack_pid "${SC_PID[$name]}"
        grep -q "in use" "$dir/error.log" "$dir/stdout.log" 2>/dev/null ||
            fail "site cache $name did not start: $(tail -n 5 "$dir/error.log" "$dir/stdout.log")"
        [[ -z "${2:-}" ]] || sleep 0.5
    done
    fail "site cache $name: no free port after 5 attempts"
}

# SIGKILL to the master and its worker: a crash, connections cut mid-transfer.
crash_site_cache() { # NAME
    local master=${SC_PID[$1]} workers
    workers=$(ps -o pid= --ppid "$master" || true)
    kill -KILL "$master" $workers 2>/dev/null || true
    wait "$master" 2>/dev/null || true
    untrack_pid "$master"
}

start_site_cache s1
start_site_cache s2

# ---- two workstations ----

declare -A D_URL D_PID
start_workstation() { # NAME
    CACHE_DIR="$T/cache_$1"
    write_config "$T/$1.conf" "block_size = 256K" "coalesce_max = 8M" "revalidate_s = 5" \
        "parents = http://127.0.0.1:${SC_PORT[s1]}, http://127.0.0.1:${SC_PORT[s2]}" \
        "parent_slice = 1M" "parent_retry_ms = 1000" "parent_retry_max_ms = 4000" \
        "h5_prefix_bytes = 1M" "max_connections = 128"
    start_daemon --config "$T/$1.conf"
    D_URL[$1]=$DAEMON_URL
    D_PID[$1]=$DAEMON_PID
}
start_workstation A
start_workstation B

file_url() { printf '%s/v1/file?url=%s' "${D_URL[$1]}" "$(urlencode "$FAULT_URL/$2")"; }

# Reads bytes [OFF, OFF+LEN) of www/FILE through workstation WS into OUT; prints the status.
read_range() { # WS FILE OFF LEN OUT
    curl -sS -g --max-time 60 -H "Range: bytes=$3-$(($3 + $4 - 1))" -o "$5" -w '%{http_code}' \
        "$(file_url "$1" "$2")" 2>>"$T/curl.err" || true
}

read_whole() { # WS FILE OUT
    local st
    st=$(curl -sS -g --max-time 60 -o "$3" -w '%{http_code}' "$(file_url "$1" "$2")" 2>>"$T/curl.err") || true
    assert_eq 200 "$st" "$1 GET $2"
    assert_file_eq "$T/www/$2" "$3" "$1's bytes of $2"
}

read_dataset() { # WS OUT
    local st url
    url="${D_URL[$1]}/v1/slice?url=$(urlencode "$FAULT_URL/data.h5")&path=/data&format=raw"
    st=$(curl -sS -g --max-time 60 -o "$2" -w '%{http_code}' "$url" 2>>"$T/curl.err") || true
    assert_eq 200 "$st" "$1 /v1/slice of data.h5"
    assert_file_eq "$T/data.raw" "$2" "$1's values of data.h5:/data"
}

# One field of the JSON of parent I (0 or 1) in workstation WS's /v1/stats.
parent_stat() { # WS I FIELD
    curl -sS --max-time 10 "${D_URL[$1]}/v1/stats" >"$T/stats.json" || fail "$1 /v1/stats"
    "$PYTHON_H5" -c 'import json, sys
st = json.load(open(sys.argv[1]))
print(st["parents"][int(sys.argv[2])][sys.argv[3]])' "$T/stats.json" "$2" "$3"
}

# ---- 1. A cold, then B cold: B adds no origin request ----

check "workstation A reads a file and an HDF5 dataset cold through the site caches"
read_whole A a.bin "$T/A.a.bin"
read_dataset A "$T/A.data"
n_after_a=$(fault_requests)
assert_gt "$n_after_a" 0 "origin requests for A's cold reads"
check "workstation B reads them cold: zero origin requests, equal bytes"
read_whole B a.bin "$T/B.a.bin"
read_dataset B "$T/B.data"
assert_file_eq "$T/A.a.bin" "$T/B.a.bin" "A's and B's a.bin"
assert_file_eq "$T/A.data" "$T/B.data" "A's and B's dataset"
assert_eq "$n_after_a" "$(fault_requests)" "origin requests after B's cold reads"
b_bytes=$(($(parent_stat B 0 bytes) + $(parent_stat B 1 bytes)))
assert_ge "$b_bytes" $((6 * MIB)) "bytes B received from the site caches"
for i in 0 1; do
    assert_eq up "$(parent_stat B "$i" state)" "B's parent $i state"
    assert_eq 0 "$(parent_stat B "$i" failures)" "B's parent $i failures"
done

# ---- 2. 8 concurrent cold readers: one origin request per slice ----

check "8 concurrent cold readers across A and B: one origin request per slice"
fault_control '{"mode": "reset_stats"}'
fault_control '{"mode": "delay", "ms": 150, "path": "/conc.bin"}'
pids=()
for i in 0 1 2 3 4 5 6 7; do
    ws=A
    ((i % 2)) && ws=B
    off=$((i * MIB - (i > 0 ? 300000 : 0)))
    read_range "$ws" conc.bin "$off" $((2 * MIB)) "$T/conc.$i" >"$T/conc.$i.st" &
    pids+=($!)
    track_pid "$!"
done
for p in "${pids[@]}"; do
    wait "$p" || true
    untrack_pid "$p"
done
fault_control '{"mode": "reset_all"}'
for i in 0 1 2 3 4 5 6 7; do
    off=$((i * MIB - (i > 0 ? 300000 : 0)))
    len=$((2 * MIB))
    ((off + len > 8 * MIB)) && len=$((8 * MIB - off))
    assert_eq 206 "$(cat "$T/conc.$i.st")" "concurrent reader $i status"
    slice_file "$T/www/conc.bin" "$off" "$len" "$T/conc.exp"
    assert_file_eq "$T/conc.exp" "$T/conc.$i" "concurrent reader $i bytes"
done
fault_stats >"$T/fstats.json"
"$PYTHON_H5" - "$T/fstats.json" "$MIB" <<'EOF' || fail "origin requests are not one per slice"
import collections, json, sys
st = json.load(open(sys.argv[1]))
mib = int(sys.argv[2])
ranges = st["range_requests"]
print("origin ranges:", ranges)
expect = ["bytes=%d-%d" % (k * mib, (k + 1) * mib - 1) for k in range(8)]
dup = [r for r, n in collections.Counter(ranges).items() if n > 1]
assert not dup, "slices fetched twice: %r" % dup
assert sorted(ranges) == sorted(expect), "expected each slice once, got %r" % ranges
assert st["requests"] == 8, st["requests"]
EOF

# ---- 3. a site cache killed mid-batch ----

check "a site cache killed mid-batch: every request answered with the right bytes"
fault_control '{"mode": "delay", "ms": 250, "path": "/kill.bin"}'
pids=()
for i in $(seq 0 11); do
    ws=A
    ((i % 2)) && ws=B
    read_range "$ws" kill.bin $((i * MIB + 4096)) $((MIB - 8192)) "$T/kill.$i" >"$T/kill.$i.st" &
    pids+=($!)
    track_pid "$!"
done
sleep 0.4
crash_site_cache s1
for p in "${pids[@]}"; do
    wait "$p" || true
    untrack_pid "$p"
done
fault_control '{"mode": "reset_all"}'
for i in $(seq 0 11); do
    assert_eq 206 "$(cat "$T/kill.$i.st")" "reader $i status after the crash"
    slice_file "$T/www/kill.bin" $((i * MIB + 4096)) $((MIB - 8192)) "$T/kill.exp"
    assert_file_eq "$T/kill.exp" "$T/kill.$i" "reader $i bytes after the crash"
done
fails=$(($(parent_stat A 0 failures) + $(parent_stat B 0 failures)))
assert_ge "$fails" 1 "failures of the crashed site cache seen by A and B"
read_whole A kill.bin "$T/A.kill.bin"
assert_ne up "$(parent_stat A 0 state)" "A's view of the crashed site cache"

# ---- 4. every site cache down, then one back ----

check "every site cache down: reads go to the origin"
crash_site_cache s2
before=$(fault_requests)
read_whole A down.bin "$T/A.down.bin"
assert_gt "$(fault_requests)" "$before" "origin requests with every site cache down"
assert_ne up "$(parent_stat A 1 state)" "A's view of the second crashed site cache"

check "a site cache back up is used again after parent_retry_ms"
start_site_cache s1 "${SC_PORT[s1]}"
for ((i = 0; i < 100; i++)); do # its next trial is due within parent_retry_max_ms
    [[ "$(parent_stat A 0 state)" != down ]] && break
    sleep 0.1
done
assert_eq trial "$(parent_stat A 0 state)" "A's view of the restarted site cache before a request"
served_before=$(parent_stat A 0 bytes)
read_whole A back.bin "$T/A.back.bin"
read_whole A back.bin "$T/A.back2.bin"
assert_eq up "$(parent_stat A 0 state)" "A's view of the restarted site cache"
assert_gt "$(parent_stat A 0 bytes)" "$served_before" "bytes from the restarted site cache"
assert_contains "$T/sc_s1/access.log" "/back.bin" "the restarted site cache's access log"

# ---- 5. an origin change seen through the tier ----

check "the ETag a site cache passes on is the origin's"
curl -sS --max-time 10 -o /dev/null -D "$T/o.h" -r 0-9 "$FAULT_URL/chg.bin" || fail "origin HEAD"
curl -sS --max-time 10 -o /dev/null -D "$T/s.h" -r 0-9 \
    "http://127.0.0.1:${SC_PORT[s1]}/http/$ORIGIN_AUTHORITY/chg.bin" || fail "site cache GET"
assert_eq "$(header_get "$T/o.h" etag)" "$(header_get "$T/s.h" etag)" "ETag through the site cache"
assert_eq "$(header_get "$T/o.h" last-modified)" "$(header_get "$T/s.h" last-modified)" \
    "Last-Modified through the site cache"

check "a file changed at the origin is seen through the tier"
read_whole A chg.bin "$T/A.chg.1"
read_whole B chg.bin "$T/B.chg.1"
make_file "$T/www/chg.bin" $((3 * MIB)) site-chg-2
touch -d '2001-02-03 04:05:06' "$T/www/chg.bin"
sleep 5.2 # past revalidate_s (5 s: longer than the concurrent reads above take, even under ASan)
read_whole A chg.bin "$T/A.chg.2"
read_whole B chg.bin "$T/B.chg.2"
assert_ne "$(cksum <"$T/A.chg.1")" "$(cksum <"$T/A.chg.2")" "chg.bin before and after the change"

# ---- 6. what the site cache refuses ----

check "the site cache refuses other hosts (421) and methods, and is no open proxy"
sc="http://127.0.0.1:${SC_PORT[s1]}"
before=$(fault_requests)
for target in "/http/127.0.0.2:${ORIGIN_AUTHORITY#*:}/a.bin" "/http/example.org/a.bin" \
    "/https/127.0.0.1/a.bin" "/http/localhost:${ORIGIN_AUTHORITY#*:}/a.bin" \
    "/http/$ORIGIN_AUTHORITY@127.0.0.2/a.bin" "/ftp/$ORIGIN_AUTHORITY/a.bin" "/a.bin" \
    "http://$ORIGIN_AUTHORITY/a.bin"; do
    st=$(curl -sS -g --max-time 10 -o /dev/null -w '%{http_code}' --request-target "$target" "$sc" \
        2>>"$T/curl.err") || true
    assert_eq 421 "$st" "site cache answer for $target"
done
for target in /_h5cd_signed /_h5cd_access; do
    st=$(curl -sS -g --max-time 10 -o /dev/null -w '%{http_code}' "$sc$target") || true
    assert_eq 404 "$st" "site cache answer for its internal $target"
done
st=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST --data x \
    "$sc/http/$ORIGIN_AUTHORITY/a.bin") || true
assert_eq 403 "$st" "POST through the site cache"
assert_eq "$before" "$(fault_requests)" "origin requests caused by refused requests"

check "a daemon whose origin the site cache does not serve reads from the origin"
port=${ORIGIN_AUTHORITY#*:}
st=$(curl -sS -g --max-time 60 -o "$T/A.local" -w '%{http_code}' \
    "${D_URL[A]}/v1/file?url=$(urlencode "http://localhost:$port/down.bin")") || true
assert_eq 200 "$st" "A reading through localhost"
assert_file_eq "$T/www/down.bin" "$T/A.local" "A's bytes through localhost"
assert_ge "$(parent_stat A 0 not_served)" 1 "requests the site cache did not serve"

check "signed URLs: checked at the origin, never served to a request the origin refuses"
sig="$sc/http/$ORIGIN_AUTHORITY/sig.bin"
curl -sS --max-time 10 -o "$T/sig.1" -D "$T/sig.1.h" -r 0-99 "$sig?X-Amz-Signature=one" || true
assert_eq MISS "$(header_get "$T/sig.1.h" x-h5chunkd-site-cache)" "first signed read"
curl -sS --max-time 10 -o "$T/sig.2" -D "$T/sig.2.h" -r 0-99 "$sig?X-Amz-Signature=two" || true
assert_eq HIT "$(header_get "$T/sig.2.h" x-h5chunkd-site-cache)" "re-signed read"
slice_file "$T/www/sig.bin" 0 100 "$T/sig.exp"
assert_file_eq "$T/sig.exp" "$T/sig.2" "re-signed read bytes"
fault_control '{"mode": "status", "status": 403, "count": 1, "path": "/sig.bin"}'
st=$(curl -sS --max-time 10 -o "$T/sig.3" -w '%{http_code}' -r 0-99 "$sig?X-Amz-Signature=forged") || true
assert_eq 403 "$st" "a signature the origin refuses"
curl -sS --max-time 10 -o /dev/null -D "$T/sig.4.h" -r 0-99 "$sig" || true
assert_ne HIT "$(header_get "$T/sig.4.h" x-h5chunkd-site-cache)" \
    "an unsigned request served from slices fetched with a signature"

check "a hung site cache (accepts, never answers) costs parent_timeout_ms once, then is skipped"
"$PYTHON_H5" -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
time.sleep(300)' "$T/hung.port" &
track_pid "$!"
for ((i = 0; i < 50; i++)); do
    [[ -s "$T/hung.port" ]] && break
    sleep 0.1
done
CACHE_DIR="$T/cache_C"
write_config "$T/C.conf" "block_size = 256K" "parents = http://127.0.0.1:$(cat "$T/hung.port")" \
    "parent_slice = 1M" "parent_timeout_ms = 1000" "parent_retry_ms = 60000"
start_daemon --config "$T/C.conf"
D_URL[C]=$DAEMON_URL
D_PID[C]=$DAEMON_PID
start_s=$(date +%s)
read_whole C down.bin "$T/C.down.bin"
assert_le $(($(date +%s) - start_s)) 20 "seconds to read down.bin past a hung site cache"
assert_ge "$(parent_stat C 0 timeouts)" 1 "timeouts of the hung site cache"
assert_eq down "$(parent_stat C 0 state)" "C's view of the hung site cache"

check "h5chunkd-site-cache refuses what would make an open or broken proxy"
for args in "--listen 127.0.0.1:1 --cache-dir $T/x" \
    "--listen 127.0.0.1:1 --cache-dir $T/x --allow-host http://h" \
    "--listen 127.0.0.1:1 --cache-dir relative --allow-host h" \
    "--listen 127.0.0.1:1 --cache-dir $T/x --allow-host h --slice 3m" \
    "--listen 127.0.0.1:1 --cache-dir $T/x;evil --allow-host h" \
    "--listen 127.0.0.1:1 --cache-dir $T/x --allow-host h:99999"; do
    rc=0
    # shellcheck disable=SC2086
    bash "$SITE_CACHE_SCRIPT" $args >/dev/null 2>"$T/gen.err" || rc=$?
    assert_eq 2 "$rc" "h5chunkd-site-cache $args"
done

check "the daemons stop cleanly (status 0: no sanitizer report)"
for ws in A B C; do
    DAEMON_PID=${D_PID[$ws]}
    stop_daemon
done

finish_test
