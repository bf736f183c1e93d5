#!/bin/bash
# test_admin.sh - the admin API: GET/DELETE /v1/cache, POST /v1/prefetch,
# GET/DELETE /v1/jobs[/{id}], and the bearer token that guards them.
#
# An HDF5 file written here with h5py holds /data (int16, 12000x64 in 4x64
# chunks, deflate: 3000 chunks, rows 8000:8800 never written, so chunks
# 2000..2199 are unallocated) and /slow (int16, 64x32768 in 1x32768 chunks,
# 64 KiB each, no filter).
#  1. prefetch (nginx origin): selections with an unallocated part, a step,
#     nothing allocated, and the whole dataset each end "done" with
#     chunks_done == chunks_total and bytes_done == bytes_total, the totals
#     equal to what h5py says the selection stores; POST /v1/chunks with
#     exactly those keys then makes no upstream request and returns h5py's
#     bytes; GET /v1/jobs lists the jobs newest first.
#  2. cancel (fault origin, 300 ms per request, one connection): DELETE of a
#     running job makes it "cancelled" within a bounded time, before it
#     finished, and upstream requests stop; a 5th running job gets 503; the
#     daemon still serves and exits 0 on SIGTERM.
#  3. cache purge: a range read via /v1/file is listed by GET /v1/cache with
#     its size, bytes_cached and hits; DELETE ?url= drops it (then reads go
#     upstream again), a second DELETE is 404; DELETE /v1/cache empties
#     the cache (cache_bytes 0) and HDF5 reads still work after it.
#  4. errors: unknown dataset or file, bad select, bad JSON, missing or
#     non-string fields, unknown or malformed job ids, wrong methods.
#  5. token: with token_file (mode 0600) the admin endpoints need
#     "Authorization: Bearer TOKEN" (401 otherwise, and no job starts) while
#     /v1/health and (scope admin) the data endpoints do not; with
#     token_scope = all everything but /v1/health needs it.
# Bounded: every curl has --max-time, every poll loop a deadline.
. "$(dirname "$0")/lib.sh"

"$PYTHON_H5" -c 'import h5py, numpy' >/dev/null 2>&1 || skip "$PYTHON_H5 cannot import h5py and numpy"

JOB_WAIT_S=60 # longest a prefetch of the nginx origin may take
CANCEL_WAIT_S=15

# ---- helpers ----

# Evaluates a Python expression over the JSON document in FILE (bound to d).
pyj() { # FILE EXPR
    "$PYTHON_H5" - "$1" "$2" <<'EOF'
import json, sys
try:
    with open(sys.argv[1], "rb") as f:
        d = json.load(f)
except Exception:
    print("<not json>")
    sys.exit(0)
try:
    v = eval(sys.argv[2], {"d": d})
except Exception as e:
    print("<error: %s>" % e)
    sys.exit(0)
print(json.dumps(v) if isinstance(v, (dict, list)) else v)
EOF
}

# POST /v1/prefetch with BODY; prints the status, the answer goes to OUT.
prefetch() { # BODY OUT [curl args...]
    local body=$1 out=$2
    shift 2
    http_get "$DAEMON_URL/v1/prefetch" "$out" -X POST -H 'Content-Type: application/json' \
        --data-binary "$body" "$@"
}

# Starts a prefetch that must be accepted; prints the job id.
start_job() { # BODY WHAT
    local out="$T/prefetch.json" st id
    st=$(prefetch "$1" "$out")
    [[ "$st" == 202 ]] || fail "$2: POST /v1/prefetch $1: expected 202, got $st: $(head -c 400 "$out")"
    assert_eq running "$(json_get "$out" state)" "$2: state in the 202 answer"
    id=$(json_get "$out" job)
    [[ "$id" =~ ^[1-9][0-9]*$ ]] || fail "$2: job id '$id' in $(head -c 400 "$out")"
    printf '%s' "$id"
}

# Polls GET /v1/jobs/ID every 0.1 s until its state is not "running" or
# SECS pass; the last answer is left in $T/job.ID.json; prints the state.
wait_job() { # ID SECS
    local id=$1 secs=$2 out="$T/job.$1.json" st state="" i
    for ((i = 0; i < secs * 10; i++)); do
        st=$(http_get "$DAEMON_URL/v1/jobs/$id" "$out")
        [[ "$st" == 200 ]] || fail "GET /v1/jobs/$id: HTTP $st: $(head -c 400 "$out")"
        state=$(json_get "$out" state)
        [[ "$state" != running ]] && break
        sleep 0.1
    done
    printf '%s' "$state"
}

# Writes a /v1/chunks body for the keys listed (one per line) in KEYS_FILE.
chunks_body() { # URL PATH KEYS_FILE OUT
    "$PYTHON_H5" - "$@" <<'EOF'
import json, sys
url, path, keys_file, out = sys.argv[1:5]
with open(keys_file) as f:
    keys = [line.strip() for line in f if line.strip()]
with open(out, "w") as f:
    json.dump({"url": url, "path": path, "keys": keys}, f)
EOF
}

# Checks a /v1/chunks answer against h5py; prints "ok N200 N404" or a reason.
check_frames() { # FRAMES_FILE H5FILE PATH KEYS_FILE
    "$PYTHON_H5" - "$@" <<'EOF'
import json, sys
import h5py
frames_file, h5file, path, keys_file = sys.argv[1:5]
with open(keys_file) as f:
    keys = [line.strip() for line in f if line.strip()]
seen = {}
with open(frames_file, "rb") as f:
    while True:
        line = f.readline()
        if not line:
            break
        head = json.loads(line)
        payload = f.read(head["length"])
        if len(payload) != head["length"]:
            print("short frame for key %s" % head.get("key"))
            sys.exit(0)
        if head["key"] in seen:
            print("key %s answered twice" % head["key"])
            sys.exit(0)
        seen[head["key"]] = (head, payload)
if sorted(seen) != sorted(keys):
    print("answered keys differ from the keys asked: %d asked, %d answered" % (len(keys), len(seen)))
    sys.exit(0)
n200 = n404 = 0
with h5py.File(h5file, "r") as h5:
    ds = h5[path]
    for key in keys:
        head, payload = seen[key]
        coords = tuple(int(k) * c for k, c in zip(key.split("."), ds.chunks))
        info = ds.id.get_chunk_info_by_coord(coords)
        if info.byte_offset is None:
            if head["status"] != 404 or head.get("error") != "chunk_not_allocated":
                print("key %s is unallocated but got %s" % (key, head))
                sys.exit(0)
            n404 += 1
            continue
        mask, data = ds.id.read_direct_chunk(coords)
        if head["status"] != 200 or payload != data or head.get("filter_mask") != mask:
            print("key %s: got %s (%d bytes), h5py has %d bytes mask %d"
                  % (key, head, len(payload), len(data), mask))
            sys.exit(0)
        n200 += 1
print("ok %d %d" % (n200, n404))
EOF
}

# What a selection of /data stores, per h5py: "chunks allocated bytes" and
# its chunk keys (one per line) into KEYS_OUT.  SELECT uses the daemon's
# syntax restricted to start:stop[:step] on dimension 0.
expect_selection() { # H5FILE PATH SELECT KEYS_OUT
    "$PYTHON_H5" - "$@" <<'EOF'
import sys
import h5py
h5file, path, select, keys_out = sys.argv[1:5]
with h5py.File(h5file, "r") as h5:
    ds = h5[path]
    n0 = ds.shape[0]
    if select:
        parts = (select.split(",")[0].split(":") + ["", ""])[:3]
        start, stop, step = (int(p) if p else None for p in parts)
        rows = range(n0)[slice(start, stop, step)]
    else:
        rows = range(n0)
    c0 = ds.chunks[0]
    grid = [range((s + c - 1) // c) for s, c in zip(ds.shape[1:], ds.chunks[1:])]
    chunk_rows = sorted({r // c0 for r in rows})
    keys, allocated, nbytes = [], 0, 0
    import itertools
    for r in chunk_rows:
        for rest in itertools.product(*grid):
            idx = (r,) + rest
            keys.append(".".join(str(i) for i in idx))
            info = ds.id.get_chunk_info_by_coord(tuple(i * c for i, c in zip(idx, ds.chunks)))
            if info.byte_offset is not None:
                allocated += 1
                nbytes += info.size
with open(keys_out, "w") as f:
    f.write("".join(k + "\n" for k in keys))
print(len(keys), allocated, nbytes)
EOF
}

# ---- the test file ----

mkdir -p "$T/www"
H5="$T/www/t.h5"
"$PYTHON_H5" - "$H5" <<'EOF' || fail "cannot write the HDF5 test file"
import sys
import h5py
import numpy as np
rng = np.random.default_rng(20240601)
with h5py.File(sys.argv[1], "w", libver="earliest") as f:
    d = f.create_dataset("data", shape=(12000, 64), dtype="<i2", chunks=(4, 64),
                         compression="gzip", compression_opts=1, fillvalue=-1)
    # Noisy ramps: deflate shrinks each chunk by a different amount.
    rows = np.arange(12000, dtype=np.int64)[:, None] * 7 + np.arange(64)[None, :]
    values = (rows + rng.integers(0, 200, size=(12000, 64))).astype("<i2")
    d[0:8000] = values[0:8000]
    d[8800:12000] = values[8800:12000]  # rows 8000:8800 (chunks 2000..2199) never written
    s = f.create_dataset("slow", shape=(64, 32768), dtype="<i2", chunks=(1, 32768))
    s[...] = rng.integers(-30000, 30000, size=(64, 32768)).astype("<i2")
EOF
"$PYTHON_H5" - "$H5" <<'EOF' || fail "the HDF5 test file is not as intended"
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    d = f["data"]
    assert d.id.get_num_chunks() == 2800, d.id.get_num_chunks()
    assert d.id.get_chunk_info_by_coord((8000, 0)).byte_offset is None
    assert d.id.get_chunk_info_by_coord((8796, 0)).byte_offset is None
    assert d.id.get_chunk_info_by_coord((8800, 0)).byte_offset is not None
    assert f["slow"].id.get_num_chunks() == 64
EOF
log "HDF5 test file: $(stat -c %s "$H5") bytes"

start_nginx "$T/www"
REMOTE="$ORIGIN_URL/t.h5"

# ======== 1. prefetch to 100%, then the chunks cost no upstream request ========

# A small prefix and block: the prefetch, not the open, must bring the chunks.
write_config "$T/a.conf" "block_size = 64K" "h5_prefix_bytes = 64K" "revalidate_s = 3600"
CACHE_DIR="$T/cache-a"
start_daemon --config "$T/a.conf"

# Runs one prefetch of /data to its end and checks it against h5py, then
# asks POST /v1/chunks for exactly its keys and expects no upstream request.
prefetch_and_check() { # SELECT WHAT
    local sel=$1 what=$2 exp total alloc nbytes id state j body u0 u1 l0 l1 st res
    exp=$(expect_selection "$H5" /data "$sel" "$T/keys.txt")
    read -r total alloc nbytes <<<"$exp"
    check "prefetch of /data select '$sel' ($what): $total chunks, $alloc allocated, $nbytes bytes"
    if [[ -n "$sel" ]]; then
        body=$(printf '{"url":"%s","path":"/data","select":"%s"}' "$REMOTE" "$sel")
    else
        body=$(printf '{"url":"%s","path":"/data"}' "$REMOTE")
    fi
    id=$(start_job "$body" "$what")
    state=$(wait_job "$id" "$JOB_WAIT_S")
    j="$T/job.$id.json"
    [[ "$state" == "done" ]] || fail "$what: job $id ended '$state' (not done) within ${JOB_WAIT_S}s: $(head -c 600 "$j")"
    assert_eq "$id" "$(json_get "$j" id)" "$what: id"
    assert_eq "$total" "$(json_get "$j" chunks_total)" "$what: chunks_total"
    assert_eq "$total" "$(json_get "$j" chunks_done)" "$what: chunks_done"
    assert_eq "$nbytes" "$(json_get "$j" bytes_total)" "$what: bytes_total (stored bytes of the allocated chunks)"
    assert_eq "$nbytes" "$(json_get "$j" bytes_done)" "$what: bytes_done"
    assert_eq 0 "$(json_get "$j" errors)" "$what: errors"
    assert_eq "$REMOTE" "$(json_get "$j" url)" "$what: url"
    assert_eq "/data" "$(json_get "$j" path)" "$what: path"
    assert_eq "$sel" "$(json_get "$j" select)" "$what: select"
    assert_eq "" "$(json_get "$j" error)" "$what: no error field"
    res=$(pyj "$j" 'd["started"] > 1600000000 and d["finished"] >= d["started"]')
    assert_eq True "$res" "$what: started/finished are unix times in order ($(head -c 300 "$j"))"

    chunks_body "$REMOTE" /data "$T/keys.txt" "$T/chunks_body.json"
    u0=$(stat_get upstream_requests)
    # Lookups by libhdf5 or by the daemon's own index reader: none once prefetched.
    l0=$(($(stat_get h5_lookups) + $(stat_get walk_lookups)))
    st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST -H 'Content-Type: application/json' \
        --data-binary "@$T/chunks_body.json")
    assert_eq 200 "$st" "$what: POST /v1/chunks after the prefetch"
    u1=$(stat_get upstream_requests)
    l1=$(($(stat_get h5_lookups) + $(stat_get walk_lookups)))
    assert_eq "$u0" "$u1" "$what: upstream_requests across POST /v1/chunks of the prefetched keys"
    if [[ "$l0" != "$l1" ]]; then
        soft_fail "$what: POST /v1/chunks of prefetched keys made $((l1 - l0)) chunk lookups (expected 0: the prefetch located them)"
    fi
    res=$(check_frames "$T/frames.bin" "$H5" /data "$T/keys.txt")
    assert_eq "ok $alloc $((total - alloc))" "$res" "$what: frames of POST /v1/chunks against h5py"
}

u_before=$(stat_get upstream_requests)
prefetch_and_check "7800:9000" "straddling the unallocated rows"
u_after=$(stat_get upstream_requests)
assert_gt "$u_after" "$u_before" "the first prefetch went upstream (else it proves nothing)"
prefetch_and_check "0:12000:400" "a step of 100 chunks"
prefetch_and_check "8000:8800" "nothing allocated"
prefetch_and_check "" "the whole dataset"
prefetch_and_check "-3:" "the last rows, negative start"

check "GET /v1/jobs lists the 5 jobs newest first"
st=$(http_get "$DAEMON_URL/v1/jobs" "$T/jobs.json")
assert_eq 200 "$st" "GET /v1/jobs"
assert_eq "[5, 4, 3, 2, 1]" "$(pyj "$T/jobs.json" '[j["id"] for j in d["jobs"]]')" "job ids of GET /v1/jobs"
assert_eq "['done', 'done', 'done', 'done', 'done']" \
    "$(pyj "$T/jobs.json" 'str([j["state"] for j in d["jobs"]])')" "job states of GET /v1/jobs"
assert_eq "-3:" "$(pyj "$T/jobs.json" 'd["jobs"][0]["select"]')" "the newest job comes first"

check "DELETE of a finished job leaves it done"
st=$(http_get "$DAEMON_URL/v1/jobs/1" "$T/del1.json" -X DELETE)
assert_eq 200 "$st" "DELETE /v1/jobs/1 (finished)"
assert_eq "done" "$(json_get "$T/del1.json" state)" "state of a finished job after DELETE"

# ======== 4. errors (same daemon) ========

# Expects an error answer within 5 s; no job may be created by it.
prefetch_error() { # BODY STATUS CODE WHAT
    local st t0 t1 n0 n1
    http_get "$DAEMON_URL/v1/jobs" "$T/jobs0.json" >/dev/null
    n0=$(pyj "$T/jobs0.json" 'len(d["jobs"])')
    t0=$(date +%s%N)
    st=$(prefetch "$1" "$T/err.json")
    t1=$(date +%s%N)
    assert_error "$2" "$st" "$T/err.json" "$3" "$4"
    assert_le $(((t1 - t0) / 1000000)) 5000 "$4: milliseconds to answer"
    http_get "$DAEMON_URL/v1/jobs" "$T/jobs1.json" >/dev/null
    n1=$(pyj "$T/jobs1.json" 'len(d["jobs"])')
    assert_eq "$n0" "$n1" "$4: jobs listed before and after"
}

check "prefetch errors are JSON errors at once, and start no job"
prefetch_error '{"url":"'"$REMOTE"'","path":"/nope"}' 404 not_found "unknown dataset"
prefetch_error '{"url":"'"$ORIGIN_URL"'/missing.h5","path":"/data"}' 404 not_found "unknown file"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data","select":"0:10,0:10,0:10"}' 400 bad_request "select of the wrong rank"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data","select":"abc"}' 400 bad_request "select 'abc'"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data","select":"12000"}' 400 bad_request "an index past the end"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data","select":"0:10:-1"}' 400 bad_request "a negative step"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data","select":"0:10:0"}' 400 bad_request "a zero step"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data",' 400 bad_request "truncated JSON"
prefetch_error 'not json' 400 bad_request "not JSON"
prefetch_error '[1,2]' 400 bad_request "a JSON array"
prefetch_error '' 400 bad_request "an empty body"
prefetch_error '{"path":"/data"}' 400 bad_request "no url"
prefetch_error '{"url":"'"$REMOTE"'"}' 400 bad_request "no path"
prefetch_error '{"url":"'"$REMOTE"'","path":7}' 400 bad_request "path not a string"
prefetch_error '{"url":"'"$REMOTE"'","path":"/data","select":5}' 400 bad_request "select not a string"
prefetch_error '{"url":"ftp://x/t.h5","path":"/data"}' 403 url_not_allowed "an ftp URL"
prefetch_error '{"url":"'"$REMOTE"'","path":"/"}' 400 bad_request "a group"

check "unknown and malformed job ids: 404"
for id in abc 999999 0 -1 +1 1x 18446744073709551616; do
    st=$(http_get "$DAEMON_URL/v1/jobs/$id" "$T/err.json")
    assert_error 404 "$st" "$T/err.json" not_found "GET /v1/jobs/$id"
done
st=$(http_get "$DAEMON_URL/v1/jobs/999999" "$T/err.json" -X DELETE)
assert_error 404 "$st" "$T/err.json" not_found "DELETE /v1/jobs/999999"
st=$(http_get "$DAEMON_URL/v1/jobs/abc" "$T/err.json" -X DELETE)
assert_error 404 "$st" "$T/err.json" not_found "DELETE /v1/jobs/abc"

check "wrong methods: 405"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/err.json" -X PUT --data-binary '{}')
assert_error 405 "$st" "$T/err.json" method_not_allowed "PUT /v1/cache"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/err.json" -X POST --data-binary '{}')
assert_error 405 "$st" "$T/err.json" method_not_allowed "POST /v1/cache"
st=$(http_get "$DAEMON_URL/v1/prefetch" "$T/err.json")
assert_error 405 "$st" "$T/err.json" method_not_allowed "GET /v1/prefetch"
st=$(http_get "$DAEMON_URL/v1/jobs" "$T/err.json" -X POST --data-binary '{}')
assert_error 405 "$st" "$T/err.json" method_not_allowed "POST /v1/jobs"
st=$(http_get "$DAEMON_URL/v1/jobs" "$T/err.json" -X DELETE)
assert_error 405 "$st" "$T/err.json" method_not_allowed "DELETE /v1/jobs"
st=$(http_get "$DAEMON_URL/v1/jobs/1" "$T/err.json" -X PUT --data-binary '{}')
assert_error 405 "$st" "$T/err.json" method_not_allowed "PUT /v1/jobs/1"
st=$(http_get "$DAEMON_URL/v1/health" "$T/h.json")
assert_eq 200 "$st" "the daemon serves after the errors"

# ======== 3. cache purge (same daemon) ========

MIB=1048576
make_file "$T/www/plain.bin" $((3 * MIB)) admin-plain
PLAIN="$ORIGIN_URL/plain.bin"

# The /v1/cache entry of URL (JSON), or "" when it is not listed.
cache_entry() { # URL
    local st
    st=$(http_get "$DAEMON_URL/v1/cache" "$T/cache.json")
    [[ "$st" == 200 ]] || fail "GET /v1/cache: HTTP $st: $(head -c 400 "$T/cache.json")"
    CACHE_ENTRY_URL=$1 "$PYTHON_H5" - "$T/cache.json" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
hit = [f for f in d["files"] if f["url"] == os.environ["CACHE_ENTRY_URL"]]
print(json.dumps(hit[0]) if hit else "")
EOF
}

check "GET /v1/cache lists a file read via /v1/file, with bytes_cached and hits"
check_mirror_range "$PLAIN" "$T/www/plain.bin" "100000-299999" "first read"
check_mirror_range "$PLAIN" "$T/www/plain.bin" "100000-299999" "second read (cached)"
e=$(cache_entry "$PLAIN")
[[ -n "$e" ]] || fail "GET /v1/cache does not list $PLAIN: $(head -c 800 "$T/cache.json")"
printf '%s' "$e" >"$T/entry.json"
log "cache entry: $e"
assert_eq $((3 * MIB)) "$(json_get "$T/entry.json" size)" "size of the cached file"
assert_ge "$(json_get "$T/entry.json" bytes_cached)" 200000 "bytes_cached covers the range read"
assert_le "$(json_get "$T/entry.json" bytes_cached)" $((3 * MIB)) "bytes_cached within the file"
assert_ge "$(json_get "$T/entry.json" blocks)" 1 "blocks"
assert_gt "$(json_get "$T/entry.json" hits)" 0 "hits after reading the range twice"
assert_ne "" "$(json_get "$T/entry.json" validator)" "validator (nginx sends an ETag)"
res=$(pyj "$T/entry.json" 'd["last_access"] > 1600000000 and d["checked_at"] > 1600000000')
assert_eq True "$res" "last_access and checked_at are unix times"
res=$(pyj "$T/cache.json" 'all(k in d for k in ("cache_bytes", "cache_limit_bytes", "cache_blocks")) and d["cache_bytes"] >= sum(f["bytes_cached"] for f in d["files"]) and d["cache_bytes"] > 0')
assert_eq True "$res" "cache totals of GET /v1/cache ($(head -c 300 "$T/cache.json"))"
assert_ne "" "$(cache_entry "$REMOTE")" "the HDF5 file is listed too"

check "DELETE /v1/cache?url=U drops that file only"
st=$(http_get "$DAEMON_URL/v1/cache?url=$(urlencode "$PLAIN")" "$T/drop.json" -X DELETE)
assert_eq 200 "$st" "DELETE /v1/cache?url=U: $(head -c 300 "$T/drop.json")"
assert_eq True "$(json_get "$T/drop.json" dropped)" "dropped"
assert_eq "$PLAIN" "$(json_get "$T/drop.json" url)" "url of the dropped file"
assert_eq "" "$(cache_entry "$PLAIN")" "the dropped file is no longer listed"
assert_ne "" "$(cache_entry "$REMOTE")" "the other file is still listed"
u0=$(stat_get upstream_requests)
check_mirror_range "$PLAIN" "$T/www/plain.bin" "100000-299999" "read after the drop"
u1=$(stat_get upstream_requests)
assert_gt "$u1" "$u0" "upstream_requests after re-reading a dropped range"

check "DELETE of an uncached URL: 404"
st=$(http_get "$DAEMON_URL/v1/cache?url=$(urlencode "$ORIGIN_URL/never.bin")" "$T/err.json" -X DELETE)
assert_error 404 "$st" "$T/err.json" not_found "DELETE /v1/cache?url=(never read)"
st=$(http_get "$DAEMON_URL/v1/cache?url=$(urlencode "$PLAIN")" "$T/err.json" -X DELETE)
assert_eq 200 "$st" "DELETE of the re-read file"
st=$(http_get "$DAEMON_URL/v1/cache?url=$(urlencode "$PLAIN")" "$T/err.json" -X DELETE)
assert_error 404 "$st" "$T/err.json" not_found "second DELETE of the same URL"
st=$(http_get "$DAEMON_URL/v1/cache?url=ftp%3A%2F%2Fx%2Fy" "$T/err.json" -X DELETE)
assert_error 403 "$st" "$T/err.json" url_not_allowed "DELETE /v1/cache?url=ftp://x/y"

check "DELETE /v1/cache empties the cache; HDF5 reads work after it"
check_mirror_range "$PLAIN" "$T/www/plain.bin" "0-99999" "read before emptying"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/dropall.json" -X DELETE)
assert_eq 200 "$st" "DELETE /v1/cache: $(head -c 300 "$T/dropall.json")"
assert_eq True "$(json_get "$T/dropall.json" dropped)" "dropped (all)"
assert_eq 0 "$(stat_get cache_bytes)" "cache_bytes in /v1/stats after DELETE /v1/cache"
assert_eq 0 "$(stat_get cache_blocks)" "cache_blocks in /v1/stats after DELETE /v1/cache"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/cache.json")
assert_eq 200 "$st" "GET /v1/cache after emptying"
assert_eq "0 0" "$(pyj "$T/cache.json" '"%d %d" % (len(d["files"]), d["cache_bytes"])')" "files and cache_bytes of GET /v1/cache after emptying"
printf '%s\n' 0.0 1999.0 2000.0 2999.0 >"$T/keys.txt"
chunks_body "$REMOTE" /data "$T/keys.txt" "$T/chunks_body.json"
u0=$(stat_get upstream_requests)
st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST -H 'Content-Type: application/json' \
    --data-binary "@$T/chunks_body.json")
assert_eq 200 "$st" "POST /v1/chunks after emptying the cache"
assert_eq "ok 3 1" "$(check_frames "$T/frames.bin" "$H5" /data "$T/keys.txt")" "frames after emptying the cache"
assert_gt "$(stat_get upstream_requests)" "$u0" "upstream_requests of chunks read after emptying"
check_mirror_range "$PLAIN" "$T/www/plain.bin" "0-99999" "read after emptying"
stop_daemon

# ======== 2. cancel (fault origin, slow) ========

start_fault_origin "$T/www"
SLOW="$FAULT_URL/t.h5"
# One 64 KiB request at a time, each one chunk of /slow: 300 ms per chunk.
write_config "$T/b.conf" "block_size = 64K" "coalesce_max = 64K" "coalesce_gap = 0" \
    "upstream_max_per_host = 1" "h5_prefix_bytes = 64K" "revalidate_s = 3600"
CACHE_DIR="$T/cache-b"
start_daemon --config "$T/b.conf"

# Open the file and locate /slow's chunks while the origin is fast.
printf '%s\n' 0.0 >"$T/keys.txt"
chunks_body "$SLOW" /slow "$T/keys.txt" "$T/chunks_body.json"
st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST --data-binary "@$T/chunks_body.json")
assert_eq 200 "$st" "POST /v1/chunks of /slow key 0.0 (warm-up)"
assert_eq "ok 1 0" "$(check_frames "$T/frames.bin" "$H5" /slow "$T/keys.txt")" "warm-up frame"
fault_control '{"mode":"delay","ms":300}'

check "DELETE /v1/jobs/{id} cancels a running prefetch"
id=$(start_job '{"url":"'"$SLOW"'","path":"/slow"}' "slow prefetch")
# Cancel once it is under way (some chunk done), bounded.
for ((i = 0; i < 100; i++)); do
    http_get "$DAEMON_URL/v1/jobs/$id" "$T/job.json" >/dev/null
    [[ "$(json_get "$T/job.json" chunks_done)" =~ ^[1-9] ]] && break
    sleep 0.1
done
assert_eq running "$(json_get "$T/job.json" state)" "the slow job is still running before the DELETE"
assert_eq 64 "$(json_get "$T/job.json" chunks_total)" "chunks_total of the slow job"
t0=$(date +%s%N)
st=$(http_get "$DAEMON_URL/v1/jobs/$id" "$T/del.json" -X DELETE)
assert_eq 200 "$st" "DELETE /v1/jobs/$id: $(head -c 300 "$T/del.json")"
assert_eq "$id" "$(json_get "$T/del.json" id)" "id in the DELETE answer"
state=$(wait_job "$id" "$CANCEL_WAIT_S")
t1=$(date +%s%N)
j="$T/job.$id.json"
assert_eq cancelled "$state" "state after DELETE (within ${CANCEL_WAIT_S}s): $(head -c 400 "$j")"
log "cancelled after $(((t1 - t0) / 1000000)) ms: $(cat "$j")"
assert_le "$(json_get "$j" chunks_done)" 63 "chunks_done of the cancelled job (it must not have finished)"
assert_eq "" "$(json_get "$j" error)" "a cancelled job has no error"
res=$(pyj "$j" 'd["finished"] >= d["started"] > 0')
assert_eq True "$res" "finished time of the cancelled job"
# Upstream requests stop with the job: only the one in flight (one
# connection) may still end.  Waits until the origin sees no request for
# 1 s (at most 30 s) so the next checks start quiet.
r0=$(fault_requests)
rprev=$r0
t0=$(date +%s%N)
quiet_since=$t0
while :; do
    sleep 0.1
    r1=$(fault_requests)
    t1=$(date +%s%N)
    [[ "$r1" != "$rprev" ]] && quiet_since=$t1
    rprev=$r1
    ((t1 - quiet_since >= 1000000000 || t1 - t0 >= 30000000000)) && break
done
log "upstream requests after the cancellation: $((r1 - r0)), the last $(((quiet_since - t0) / 1000000)) ms after it"
if ((r1 - r0 > 1)); then
    soft_fail "a cancelled prefetch kept fetching: $((r1 - r0)) upstream requests after DELETE /v1/jobs/$id returned and the job showed 'cancelled' (chunks_done $(json_get "$j" chunks_done) of 64; expected at most the 1 in flight)"
fi
assert_eq cancelled "$(wait_job "$id" 1)" "the cancelled job stays cancelled"

check "more than 4 running prefetch jobs: 503 unavailable"
# The cancelled job may have cached any number of chunks before it stopped (a
# coalesced request brings neighbours too): with the file dropped from the cache
# each job must open the file again and fetch its chunks, two or more upstream
# requests in a row of 5 s each, so none can end before the 5th is asked for and
# the DELETEs arrive, however loaded the machine.  A job cancelled mid-request
# ends when that request does: within CANCEL_WAIT_S.
st=$(http_get "$DAEMON_URL/v1/cache?url=$(urlencode "$SLOW")" "$T/drop.json" -X DELETE)
assert_eq 200 "$st" "DELETE /v1/cache?url=$SLOW: $(head -c 300 "$T/drop.json")"
fault_control '{"mode":"delay","ms":5000}'
ids=()
for sel in 0:16 16:32 32:48 48:64; do
    ids+=("$(start_job '{"url":"'"$SLOW"'","path":"/slow","select":"'"$sel"'"}' "slow job $sel")")
done
st=$(prefetch '{"url":"'"$SLOW"'","path":"/slow","select":"1:2"}' "$T/err.json")
assert_error 503 "$st" "$T/err.json" unavailable "a 5th running prefetch"
st=$(http_get "$DAEMON_URL/v1/jobs" "$T/jobs.json")
assert_eq 4 "$(pyj "$T/jobs.json" 'sum(j["state"] == "running" for j in d["jobs"])')" "running jobs listed"
for id in "${ids[@]}"; do
    st=$(http_get "$DAEMON_URL/v1/jobs/$id" "$T/del.json" -X DELETE)
    assert_eq 200 "$st" "DELETE /v1/jobs/$id"
done
for id in "${ids[@]}"; do
    assert_eq cancelled "$(wait_job "$id" "$CANCEL_WAIT_S")" "job $id after DELETE"
done
# A job shows "cancelled" just before its thread ends: allow that instant.
for ((i = 0; i < 20; i++)); do
    st=$(prefetch '{"url":"'"$SLOW"'","path":"/slow","select":"1:2"}' "$T/ok.json")
    [[ "$st" == 503 ]] || break
    sleep 0.1
done
assert_eq 202 "$st" "a prefetch once the 4 jobs are cancelled: $(head -c 300 "$T/ok.json")"
http_get "$DAEMON_URL/v1/jobs/$(json_get "$T/ok.json" job)" "$T/del.json" -X DELETE >/dev/null

check "the daemon still serves after the cancellations"
fault_control '{"mode":"reset_all"}'
st=$(http_get "$DAEMON_URL/v1/health" "$T/h.json")
assert_eq 200 "$st" "GET /v1/health after the cancellations"
printf '%s\n' 0.0 5.0 63.0 >"$T/keys.txt"
chunks_body "$SLOW" /slow "$T/keys.txt" "$T/chunks_body.json"
st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST --data-binary "@$T/chunks_body.json")
assert_eq 200 "$st" "POST /v1/chunks of /slow after the cancellations"
assert_eq "ok 3 0" "$(check_frames "$T/frames.bin" "$H5" /slow "$T/keys.txt")" "frames of /slow after the cancellations"
log "stopping the daemon with a job possibly running (it must exit 0, within 10 s)"
fault_control '{"mode":"delay","ms":300}'
id=$(start_job '{"url":"'"$SLOW"'","path":"/slow"}' "a job left running at shutdown")
stop_daemon
fault_control '{"mode":"reset_all"}'

# ======== 5. the bearer token ========

TOKEN="adm1n-t0ken-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$TOKEN" >"$T/token"
chmod 600 "$T/token"
AUTH=(-H "Authorization: Bearer $TOKEN")
write_config "$T/c.conf" "token_file = $T/token" "revalidate_s = 3600"
CACHE_DIR="$T/cache-c"
start_daemon --config "$T/c.conf"

check "token_scope admin (default): admin endpoints need the token"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/err.json" -D "$T/err.h")
assert_error 401 "$st" "$T/err.json" unauthorized "GET /v1/cache without the token"
assert_eq 'Bearer realm="h5chunkd"' "$(header_get "$T/err.h" WWW-Authenticate)" "WWW-Authenticate of the 401"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/err.json" -H "Authorization: Bearer ${TOKEN}x")
assert_error 401 "$st" "$T/err.json" unauthorized "GET /v1/cache with a wrong token"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/err.json" -H "Authorization: Basic $TOKEN")
assert_error 401 "$st" "$T/err.json" unauthorized "GET /v1/cache with another scheme"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/ok.json" "${AUTH[@]}")
assert_eq 200 "$st" "GET /v1/cache with the token"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/ok.json" -H "Authorization: bearer $TOKEN")
assert_eq 200 "$st" "GET /v1/cache with the token, scheme in lower case"
for path in /v1/jobs /v1/jobs/1 "/v1/cache?url=$(urlencode "$REMOTE")"; do
    st=$(http_get "$DAEMON_URL$path" "$T/err.json" -X DELETE)
    assert_error 401 "$st" "$T/err.json" unauthorized "DELETE $path without the token"
done
st=$(http_get "$DAEMON_URL/v1/jobs" "$T/err.json")
assert_error 401 "$st" "$T/err.json" unauthorized "GET /v1/jobs without the token"
st=$(prefetch '{"url":"'"$REMOTE"'","path":"/data","select":"0:4"}' "$T/err.json")
assert_error 401 "$st" "$T/err.json" unauthorized "POST /v1/prefetch without the token"
st=$(http_get "$DAEMON_URL/v1/jobs" "$T/jobs.json" "${AUTH[@]}")
assert_eq 200 "$st" "GET /v1/jobs with the token"
assert_eq 0 "$(pyj "$T/jobs.json" 'len(d["jobs"])')" "jobs after an unauthorised prefetch"
st=$(prefetch '{"url":"'"$REMOTE"'","path":"/data","select":"0:4"}' "$T/ok.json" "${AUTH[@]}")
assert_eq 202 "$st" "POST /v1/prefetch with the token: $(head -c 300 "$T/ok.json")"
st=$(http_get "$DAEMON_URL/v1/health" "$T/h.json")
assert_eq 200 "$st" "GET /v1/health without the token"
st=$(http_get "$DAEMON_URL/v1/stats" "$T/h.json")
assert_eq 200 "$st" "GET /v1/stats without the token (scope admin)"
st=$(mirror_get "$PLAIN" "bytes=0-99" "$T/r.bin")
assert_eq 206 "$st" "GET /v1/file without the token (scope admin)"
stop_daemon

check "token_scope all: everything but /v1/health needs the token"
write_config "$T/d.conf" "token_file = $T/token" "token_scope = all" "revalidate_s = 3600"
start_daemon --config "$T/d.conf"
st=$(http_get "$DAEMON_URL/v1/health" "$T/h.json")
assert_eq 200 "$st" "GET /v1/health without the token (scope all)"
st=$(http_get "$DAEMON_URL/v1/stats" "$T/err.json")
assert_error 401 "$st" "$T/err.json" unauthorized "GET /v1/stats without the token (scope all)"
st=$(mirror_get "$PLAIN" "bytes=0-99" "$T/r.bin")
assert_error 401 "$st" "$T/r.bin" unauthorized "GET /v1/file without the token (scope all)"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/err.json")
assert_error 401 "$st" "$T/err.json" unauthorized "GET /v1/cache without the token (scope all)"
st=$(http_get "$DAEMON_URL/v1/stats" "$T/ok.json" "${AUTH[@]}")
assert_eq 200 "$st" "GET /v1/stats with the token (scope all)"
st=$(http_get "$DAEMON_URL/v1/cache" "$T/ok.json" "${AUTH[@]}")
assert_eq 200 "$st" "GET /v1/cache with the token (scope all)"
stop_daemon

check "a token file others may read: the daemon refuses to start"
chmod 644 "$T/token"
rc=0
timeout 10 "$H5CHUNKD_BIN" --foreground --listen 127.0.0.1:0 --cache-dir "$T/cache-e" \
    --config "$T/c.conf" >"$T/e.out" 2>"$T/e.err" || rc=$?
assert_ne 0 "$rc" "exit status with a token file of mode 0644"
assert_ne 124 "$rc" "the daemon exits (not killed by timeout) with a token file of mode 0644"

finish_test
