#!/bin/bash
# test_kill9.sh - crash safety of the cache: kill -9 the daemon in the middle
# of a large cold read, plant the kinds of damage a crash or a disk can
# leave (a temp file, an orphan block file, a row whose file is missing, a
# block of the wrong size, a block with flipped bytes), restart on the same
# cache dir and check that every range reads correctly, <dir>/tmp is empty
# and the block files and index rows match one to one.
#
# Layout and schema checked here are those of lib/blockcache.c:
#   <dir>/blocks/<file_id>/<idx % 256 as %02x>/<idx>, <dir>/tmp/blk.XXXXXX,
#   <dir>/index.sqlite: files(id, ...), blocks(file_id, idx, size, checksum, ...).
. "$(dirname "$0")/lib.sh"

MIB=1048576
SIZE=$((64 * MIB))
mkdir -p "$T/www"
FILE="$T/www/k9.bin"
make_file "$FILE" "$SIZE" kill9-64m
start_fault_origin "$T/www"
REMOTE="$FAULT_URL/k9.bin"
CONF="$T/h5chunkd.conf"
write_config "$CONF" "block_size = 256K" "coalesce_max = 1M" "upstream_max_per_host = 4" \
    "read_window = 16M" "revalidate_s = 3600"
start_daemon --config "$CONF"

# Compares the block files on disk with the index rows; prints a summary,
# exits non-zero with the differences.
check_consistency() { # WHAT
    "$PYTHON_H5" - "$CACHE_DIR" <<'EOF' || fail "cache inconsistent ($1)"
import os, re, sqlite3, sys
d = sys.argv[1]
bad = []
tmp = os.listdir(os.path.join(d, "tmp"))
if tmp:
    bad.append("files left in tmp/: %r" % tmp[:10])
disk = {}
root = os.path.join(d, "blocks")
for dirpath, dirnames, filenames in os.walk(root):
    for name in filenames:
        rel = os.path.relpath(os.path.join(dirpath, name), root)
        m = re.fullmatch(r"(\d+)/([0-9a-f]{2})/(\d+)", rel)
        if not m or int(m.group(2), 16) != int(m.group(3)) % 256:
            bad.append("unexpected file under blocks/: %s" % rel)
            continue
        disk[(int(m.group(1)), int(m.group(3)))] = os.path.getsize(os.path.join(dirpath, name))
db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "index.sqlite"), uri=True, timeout=10)
rows = {(f, i): s for f, i, s in db.execute("SELECT file_id, idx, size FROM blocks")}
files = {f for (f,) in db.execute("SELECT id FROM files")}
db.close()
for k in sorted(set(disk) - set(rows))[:10]:
    bad.append("block file without an index row: %s" % (k,))
for k in sorted(set(rows) - set(disk))[:10]:
    bad.append("index row without a block file: %s" % (k,))
for k in sorted(set(rows) & set(disk)):
    if rows[k] != disk[k]:
        bad.append("block %s: row says %d bytes, file has %d" % (k, rows[k], disk[k]))
for f, _ in rows:
    if f not in files:
        bad.append("block row of unknown file id %d" % f)
        break
print("consistency: %d block files, %d rows, %d files in tmp/" % (len(disk), len(rows), len(tmp)))
if bad:
    print("\n".join(bad[:20]))
    sys.exit(1)
EOF
}

check "a cold 64 MiB read, slowed down by the origin, is killed with SIGKILL mid-flight"
fault_control '{"mode":"delay","ms":150,"count":100000}'
curl -sS -g --max-time 120 -o "$T/partial.out" "$(mirror_url "$REMOTE")" 2>>"$T/curl.err" &
CURL_PID=$!
track_pid "$CURL_PID"
blocks=0
for ((i = 0; i < 400; i++)); do
    blocks=$(stat_get cache_blocks)
    ((blocks >= 12)) && break
    kill -0 "$CURL_PID" 2>/dev/null || break
    sleep 0.05
done
assert_ge "$blocks" 12 "cached blocks before the kill"
kill -0 "$CURL_PID" 2>/dev/null || fail "the read finished before the kill: make it slower"
log "killing h5chunkd (pid $DAEMON_PID) with $blocks blocks cached, read still in flight"
kill9_daemon
wait "$CURL_PID" 2>/dev/null || true
untrack_pid "$CURL_PID"
partial=$(stat -c %s "$T/partial.out" 2>/dev/null || echo 0)
((partial < SIZE)) || fail "the client got the whole file although the daemon was killed"
fault_control '{"mode":"reset_all"}'

check "plant damage: temp file, orphan block, missing file, short block, flipped bytes"
[[ -d "$CACHE_DIR/tmp" && -d "$CACHE_DIR/blocks" ]] || fail "cache layout: no tmp/ or blocks/ in $CACHE_DIR"
head -c 1000 /dev/zero >"$CACHE_DIR/tmp/blk.PLANTD"
mkdir -p "$CACHE_DIR/blocks/999999/05"
head -c 262144 /dev/zero >"$CACHE_DIR/blocks/999999/05/5"
# Three block files that have rows, other than block 0 (the probe's).
mapfile -t victims < <("$PYTHON_H5" - "$CACHE_DIR" <<'EOF'
import os, sqlite3, sys
d = sys.argv[1]
db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "index.sqlite"), uri=True, timeout=10)
n = 0
for f, i in db.execute("SELECT file_id, idx FROM blocks WHERE idx > 0 ORDER BY idx"):
    p = os.path.join(d, "blocks", str(f), "%02x" % (i % 256), str(i))
    if os.path.isfile(p):
        print(p)
        n += 1
        if n == 3:
            break
EOF
)
assert_eq 3 "${#victims[@]}" "block files with rows available to damage"
rm -f "${victims[0]}"                                   # row without a file
truncate -s 1000 "${victims[1]}"                        # wrong size
printf '\xde\xad\xbe\xef' | dd of="${victims[2]}" bs=1 seek=1000 conv=notrunc status=none # bad checksum
log "damaged: ${victims[*]}"

check "restart on the same cache dir: reconciled"
start_daemon --config "$CONF"
[[ ! -e "$CACHE_DIR/tmp/blk.PLANTD" ]] || fail "the planted temp file survived the restart"
[[ ! -e "$CACHE_DIR/blocks/999999/05/5" ]] || fail "the planted orphan block survived the restart"
[[ ! -e "${victims[1]}" ]] || [[ $(stat -c %s "${victims[1]}") != 1000 ]] ||
    fail "the short block file survived the restart: ${victims[1]}"
check_consistency "right after restart"
grep -q "reconciled" "$DAEMON_LOG" || log "note: no reconciliation line in the restart log"

check "every range reads correctly after the crash (8 MiB ranges, then the whole file)"
for ((i = 0; i < 8; i++)); do
    check_mirror_range "$REMOTE" "$FILE" "$((i * 8 * MIB))-$(((i + 1) * 8 * MIB - 1))" "8 MiB piece $i"
done
assert_gt "$(stat_get corrupt_blocks)" 0 "corrupt_blocks after reading a block with flipped bytes"
st=$(mirror_get "$REMOTE" "" "$T/whole.out")
assert_eq 200 "$st" "whole file after the crash"
assert_file_eq "$FILE" "$T/whole.out" "whole file after the crash"
check_consistency "after the reads"

check "a clean stop and restart keeps everything: warm, no upstream request"
stop_daemon
start_daemon --config "$CONF"
check_consistency "after a clean restart"
check_mirror_range "$REMOTE" "$FILE" "0-$((SIZE - 1))" "whole file as one range, warm"
assert_eq 0 "$(stat_get upstream_requests)" "upstream requests of a warm read after a clean restart"

log "PASS"
