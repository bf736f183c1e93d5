#!/bin/bash
# test_metaopen.sh - how many upstream requests, and round trips, opening a
# never-seen NWB-like file costs (docs/architecture.md, "Metadata from the
# link").  The origin is nginx (its access log records each request's Range
# and times) behind bench/linkemu.py (20 ms round trip, 50 MB/s), so that
# the daemon measures a real link and plans from it.  h5py writes the files.
#
#  - A file small for the link (1.6 MB; fetched whole when it crosses the
#    link in h5_whole_file_rtts = 10 round trips): the open fetches it whole
#    (the probe, then the rest in at most 8 parallel pieces), every byte
#    exactly once; listing every dataset (the Zarr view's consolidated
#    metadata) then asks the origin nothing more, and costs a worker
#    operation per level of the hierarchy, not one per object.
#  - A larger file (8.4 MB, above h5_whole_file_max = 4M): never fetched
#    whole; its open is one request, sized from the link (not the 1280 KiB
#    configured for an unmeasured host), and listing it fetches no byte twice
#    in a bounded number of requests.
#  - A group reached by several names (hard links, a cycle) is listed once,
#    under the first name in name order, although the listing's descriptions
#    are asked for breadth-first.
# No timing is asserted.  About 15-40 s (h5py writes the files).
. "$(dirname "$0")/lib.sh"

LINKEMU_PY="$TESTS_SRCDIR/../bench/linkemu.py"
[[ -s "$LINKEMU_PY" ]] || fail "link emulator missing: $LINKEMU_PY"
"$PYTHON_H5" -c 'import h5py, numpy' 2>/dev/null || skip "h5py/numpy not available for $PYTHON_H5"

mkdir -p "$T/www"
# NWB-like: a root with attributes, general/, intervals/trials, then modules of
# interfaces (groups with attributes, a chunked gzip dataset, timestamps),
# object headers spread through the file between the datasets' bytes.
"$PYTHON_H5" - "$T/www" <<'PY' || fail "cannot write the test files"
import sys
import h5py
import numpy as np

def write(path, modules, ifaces, rows):
    rng = np.random.default_rng(len(path))
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        f.create_group("general/subject").attrs["species"] = "Mus musculus"
        tr = f.create_group("intervals/trials")
        for col in ("start_time", "stop_time"):
            tr.create_dataset(col, data=rng.random(200))
        for m in range(modules):
            mod = f.create_group("processing/module_%02d" % m)
            mod.attrs["description"] = "module %d" % m
            for i in range(ifaces):
                g = mod.create_group("iface_%02d" % i)
                g.attrs["neurodata_type"] = "SpatialSeries"
                d = g.create_dataset("data", data=rng.random((rows, 4)).astype("<f4"),
                                     chunks=(500, 4), compression="gzip")
                d.attrs["unit"] = "meters"
                g.create_dataset("timestamps", data=np.arange(rows) / 100.0)

write(sys.argv[1] + "/small.nwb", 4, 8, 2000)
write(sys.argv[1] + "/large.nwb", 6, 10, 6000)

# One group under three names: /a/x/g first in name order, /b/g shallower (the
# listing's breadth-first descriptions reach it first), /c a second name of /a;
# and a cycle back to /a.
with h5py.File(sys.argv[1] + "/shared.h5", "w") as f:
    g = f.create_group("a/x/g")
    g.create_dataset("d", data=np.arange(10))
    g.create_group("sub").create_dataset("e", data=np.arange(3))
    f["b/g"] = g
    f["b/g2"] = h5py.SoftLink("/a/x/g/d")
    f["c"] = f["a"]
    f["a/x/g/up"] = f["a"]
PY
SMALL_SIZE=$(stat -c %s "$T/www/small.nwb")
LARGE_SIZE=$(stat -c %s "$T/www/large.nwb")
log "small.nwb $SMALL_SIZE bytes, large.nwb $LARGE_SIZE bytes"
assert_gt "$SMALL_SIZE" $((1280 * 1024)) "small.nwb larger than the first prefix"
assert_le "$SMALL_SIZE" $((4 * 1024 * 1024)) "small.nwb at most h5_whole_file_max"
assert_gt "$LARGE_SIZE" $((4 * 1024 * 1024)) "large.nwb above h5_whole_file_max"

NGINX_RANGE_LOG=1 start_nginx "$T/www"
ACCESS="$T/nginx/access.log"
rm -f "$T/link.port"
"$PYTHON_H5" "$LINKEMU_PY" --listen-port 0 --origin "127.0.0.1:${ORIGIN_URL##*:}" --rtt-ms 20 \
    --bw-mbs 50 --port-file "$T/link.port" >>"$T/linkemu.log" 2>&1 &
track_pid $!
for ((i = 0; i < 100; i++)); do
    [[ -s "$T/link.port" ]] && break
    sleep 0.1
done
[[ -s "$T/link.port" ]] || fail "link emulator wrote no port file in 10 s"
LINK_URL="http://127.0.0.1:$(tr -d ' \n' <"$T/link.port")"

CONF="$T/h5chunkd.conf"
write_config "$CONF" "block_size = 256K" "coalesce_max = 8M" "h5_prefix_bytes = 1280K" \
    "h5_whole_file_rtts = 10" "h5_whole_file_max = 4M" "revalidate_s = 3600"
start_daemon --config "$CONF"

# The origin's requests for one file: "start end offset length" per line, by start.
requests_of() { # NAME
    awk -v p="/$1" '$1 == p && $2 == 206 {
        r = $4; gsub(/"|bytes=/, "", r); split(r, ab, "-");
        printf "%.3f %.3f %d %d\n", $5 - $6, $5, ab[1], ab[2] - ab[1] + 1 }' "$ACCESS" | sort -n
}

# GETs the Zarr view's consolidated metadata of URL (every dataset's shape):
# prints the number of arrays.
listing() { # URL
    local id
    id=$("$PYTHON_H5" -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$1")
    curl -sS --max-time 60 -o "$T/zmeta.json" -w '%{http_code}' "$DAEMON_URL/zarr/v2/$id/.zmetadata" >"$T/zmeta.status" ||
        fail "GET .zmetadata of $1 failed"
    [[ $(cat "$T/zmeta.status") == 200 ]] || fail ".zmetadata of $1: HTTP $(cat "$T/zmeta.status") $(head -c 300 "$T/zmeta.json")"
    "$PYTHON_H5" -c 'import json,sys; m=json.load(open(sys.argv[1]))["metadata"]; print(sum(k.endswith(".zarray") for k in m))' "$T/zmeta.json"
}

check "a small never-seen file is fetched whole at open"
whole0=$(stat_get whole_file_opens)
http_get "$DAEMON_URL/v1/meta?url=$(urlencode "$LINK_URL/small.nwb")&path=/" "$T/meta.json" >"$T/meta.status"
[[ $(cat "$T/meta.status") == 200 ]] || fail "/v1/meta of small.nwb: HTTP $(cat "$T/meta.status") $(head -c 300 "$T/meta.json")"
assert_eq $((whole0 + 1)) "$(stat_get whole_file_opens)" "whole_file_opens after the open"
requests_of small.nwb >"$T/small.open"
log "small.nwb, the open's requests (start end offset length):"
cat "$T/small.open"
open_reqs=$(wc -l <"$T/small.open")
assert_ge "$open_reqs" 2 "the open's requests (the probe, then the rest)"
assert_le "$open_reqs" 9 "the open's requests (the probe, then at most 8 pieces)"
first_len=$(head -n1 "$T/small.open" | awk '{print $4}')
assert_eq $((1280 * 1024)) "$first_len" "the probe of an unmeasured host (h5_prefix_bytes)"
# Each byte exactly once: the ranges tile the file.
sort -k3,3n "$T/small.open" | awk -v size="$SMALL_SIZE" 'BEGIN { at = 0 }
        { if ($3 != at) exit 1; at += $4 } END { exit at == size ? 0 : 1 }' ||
    fail "the open's ranges do not tile small.nwb exactly once: $(tr '\n' ';' <"$T/small.open")"

check "listing every dataset of the small file asks the origin nothing more"
ops0=$(stat_get worker_requests)
arrays=$(listing "$LINK_URL/small.nwb")
assert_eq 66 "$arrays" "arrays in small.nwb's consolidated metadata"
# A level of the hierarchy per worker operation (5 levels), not one per object (108).
assert_le $(($(stat_get worker_requests) - ops0)) 6 "worker operations of the listing"
assert_eq "$open_reqs" "$(requests_of small.nwb | wc -l)" "origin requests for small.nwb after the listing"

check "a large file is not fetched whole; its first request is sized from the measured link"
http_get "$DAEMON_URL/v1/meta?url=$(urlencode "$LINK_URL/large.nwb")&path=/" "$T/meta.json" >"$T/meta.status"
[[ $(cat "$T/meta.status") == 200 ]] || fail "/v1/meta of large.nwb: HTTP $(cat "$T/meta.status") $(head -c 300 "$T/meta.json")"
assert_eq $((whole0 + 1)) "$(stat_get whole_file_opens)" "whole_file_opens after the large open"
requests_of large.nwb >"$T/large.open"
log "large.nwb, the open's requests:"
cat "$T/large.open"
read -r _ _ off len < <(head -n1 "$T/large.open")
assert_eq 0 "$off" "the large open's first request starts at 0"
# Half of what one connection carries in one round trip, as measured, at
# least 1 MiB (the daemon logs it at debug level), in whole blocks; not the
# 1280 KiB of an unmeasured host.
planned=$(grep 'msg="HDF5 open"' "$DAEMON_LOG" | tail -n1) || true
[[ "$planned" == *measured=1* ]] || fail "the large open was not planned from the measured link: $planned"
planned=${planned##*prefix=}
planned=${planned%% *}
assert_eq $(((planned + 262143) / 262144 * 262144)) "$len" "the large open's prefix (from the link)"
first_plan=$(grep -m1 'msg="HDF5 open"' "$DAEMON_LOG") || true
[[ "$first_plan" == *"prefix=1310720 measured=0"* ]] ||
    fail "the first open (unmeasured host) did not use h5_prefix_bytes: $first_plan"
assert_le "$(wc -l <"$T/large.open")" 2 "requests of the large file's open"

check "listing the large file: windows from the link, no byte fetched twice"
arrays=$(listing "$LINK_URL/large.nwb")
assert_eq 122 "$arrays" "arrays in large.nwb's consolidated metadata"
requests_of large.nwb >"$T/large.all"
log "large.nwb, every request:"
cat "$T/large.all"
bytes=$(awk '{ s += $4 } END { print s }' "$T/large.all")
assert_le "$bytes" "$LARGE_SIZE" "bytes fetched for large.nwb (each at most once)"
# 1 MiB windows of an 8.4 MB file would be 9 requests; windows grow on every miss.
assert_le "$(wc -l <"$T/large.all")" 16 "requests for large.nwb's listing"

check "a group under several names is listed under the first in name order, once"
listing "$ORIGIN_URL/shared.h5" >/dev/null
keys=$("$PYTHON_H5" -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["metadata"])))' "$T/zmeta.json")
assert_eq ".zattrs .zgroup a/.zattrs a/.zgroup a/x/.zattrs a/x/.zgroup a/x/g/.zattrs a/x/g/.zgroup a/x/g/d/.zarray a/x/g/d/.zattrs a/x/g/sub/.zattrs a/x/g/sub/.zgroup a/x/g/sub/e/.zarray a/x/g/sub/e/.zattrs b/.zattrs b/.zgroup b/g2/.zarray b/g2/.zattrs" \
    "$keys" "keys of shared.h5's consolidated metadata"

! grep -lE "runtime error|ERROR: AddressSanitizer|LeakSanitizer" "$T"/daemon.*.log >/dev/null ||
    fail "sanitizer report in the daemon's log"
finish_test
