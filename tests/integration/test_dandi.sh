#!/bin/bash
# test_dandi.sh - DANDI and S3 as they really are, against a fake DANDI API
# and a presigning S3-like origin (tests/integration/fake_dandi.py) on
# loopback: dandi://, dandiasset: and s3:// read the bytes of the direct URL
# and share its cache; a redirect is followed once per file per TTL;
# forged, expired and missing signatures get 403 upstream_denied cold and
# warm while a re-signed URL is served from the cache; an embargoed asset
# read with one user's token is refused to others, cold and warm; the
# credentials file (mode, SIGHUP) and that no secret reaches a log.
# Bounded: about 60 s.
. "$(dirname "$0")/lib.sh"

FAKE_DANDI_PY="$TESTS_SRCDIR/integration/fake_dandi.py"
mkdir -p "$T/root"
"$PYTHON_H5" -c 'import h5py' 2>/dev/null || skip "h5py missing for $PYTHON_H5"
"$PYTHON_H5" "$TESTS_SRCDIR/data/make_nwb_like.py" "$T/gen" >"$T/gen.log" 2>&1 ||
    fail "make_nwb_like.py failed: $(tail -n 5 "$T/gen.log")"
cp "$T/gen/session.nwb" "$T/root/session.nwb"
cp "$T/gen/session.nwb" "$T/root/other.nwb"
cp "$T/gen/session.nwb" "$T/root/embargo_session.nwb"
cp "$T/gen/session.nwb" "$T/root/embargo_two.nwb"
SIZE=$(stat -c %s "$T/root/session.nwb")
DSET=/acquisition/ElectricalSeries/data

pf="$T/fake.ports"
"$PYTHON_H5" "$FAKE_DANDI_PY" --root "$T/root" --port-file "$pf" --expires 3600 \
    >>"$T/fake_dandi.log" 2>&1 &
track_pid $!
for ((i = 0; i < 100; i++)); do
    [[ -s "$pf" ]] && break
    sleep 0.1
done
[[ -s "$pf" ]] || fail "fake DANDI wrote no port file: $(tail -n 5 "$T/fake_dandi.log")"
read -r API_PORT ORIGIN_PORT <"$pf"
API="http://127.0.0.1:$API_PORT/api"
ORIGIN="http://127.0.0.1:$ORIGIN_PORT"
wait_http "http://127.0.0.1:$API_PORT/_counts" 10 || fail "fake DANDI API does not answer"
log "fake DANDI API at $API, origin at $ORIGIN"

# A count of the fake servers: SERVER KEY (0 when absent).
count() {
    curl -sS --max-time 10 "http://127.0.0.1:$API_PORT/_counts" >"$T/counts.json" ||
        fail "fake DANDI /_counts unreachable"
    "$PYTHON_H5" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]].get(sys.argv[3], 0))' \
        "$T/counts.json" "$1" "$2"
}
# GET from the fake API's helpers: prints one JSON field.
fake_field() { # PATH_AND_QUERY FIELD
    curl -sS --max-time 10 "http://127.0.0.1:$API_PORT$1" >"$T/fake.json" || fail "fake API $1"
    json_get "$T/fake.json" "$2"
}
asset_id() { # DANDISET PATH
    curl -sS --max-time 10 -H "Authorization: token tokenA" \
        "$API/dandisets/$1/versions/draft/assets/?path=$(urlencode "$2")" >"$T/asset.json" ||
        fail "asset lookup"
    "$PYTHON_H5" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["asset_id"])' \
        "$T/asset.json"
}
# Reads a whole file through /v1/file: prints the status; body to OUT.
read_all() { # NAME OUT [curl args...]
    local name=$1 out=$2
    shift 2
    http_get "$(mirror_url "$name")" "$out" "$@"
}
expect_bytes() { # NAME WHAT [curl args...]
    local name=$1 what=$2 st
    shift 2
    st=$(read_all "$name" "$T/got.bin" "$@")
    [[ "$st" == 200 ]] || fail "$what: HTTP $st $(head -c 300 "$T/got.bin")"
    cmp -s "$T/root/session.nwb" "$T/got.bin" || fail "$what: bytes differ from the file"
}
expect_denied() { # NAME WHAT [curl args...]
    local name=$1 what=$2 st
    shift 2
    st=$(http_get "$(mirror_url "$name")" "$T/e.out" -r 0-1023 "$@")
    assert_error 403 "$st" "$T/e.out" upstream_denied "$what"
}

write_config "$T/h5chunkd.conf" \
    "dandi_api = $API" \
    "s3_endpoint = $ORIGIN" \
    "s3_addressing = path" \
    "access_log = $T/access.log"
start_daemon --config "$T/h5chunkd.conf"

# ---- names ----
PUB_ID=$(asset_id 000001 sub-01/session.nwb)
EMB_ID=$(asset_id 000002 sub-01/embargo_session.nwb)
DIRECT="$ORIGIN/blobs/session.nwb"

check "dandi://, dandiasset:, the API's download URL and s3:// read the direct URL's bytes, fetched once"
before=$(count origin bytes)
expect_bytes "$DIRECT" "direct URL"
expect_bytes "dandi://DANDI/000001/sub-01/session.nwb" "dandi:// path"
expect_bytes "dandi://dandi/000001@draft/sub-01/session.nwb" "dandi:// path with @draft"
expect_bytes "dandiasset:$PUB_ID" "dandiasset:"
expect_bytes "$API/assets/$PUB_ID/download/" "the API's download URL"
expect_bytes "s3://blobs/session.nwb" "s3://"
fetched=$(($(count origin bytes) - before))
# The file once, plus the one-byte answers of the resolution probes.
assert_le "$fetched" $((SIZE + 16)) "origin bytes for one file read through six names"
assert_eq 0 "$(count origin HEAD)" "HEAD requests (never used)"
log "six names, one blob: $fetched origin bytes for a $SIZE-byte file"

check "malformed and unknown names: 400/404 JSON"
for u in "dandi://DANDI/00001/x.nwb" "dandi://DANDI/000001" "dandi://DANDI/000001/a/../b" \
    "dandiasset:not-a-uuid" "s3://B/k" "s3://bucket/" "dandi://nosuch/000001/x.nwb"; do
    st=$(http_get "$(mirror_url "$u")" "$T/e.out" -r 0-9)
    assert_error 400 "$st" "$T/e.out" bad_request "$u"
done
st=$(http_get "$(mirror_url "dandi://DANDI/000001/sub-01/missing.nwb")" "$T/e.out" -r 0-9)
assert_error 404 "$st" "$T/e.out" not_found "an asset path not in the Dandiset"

# ---- resolve once ----
check "the API's download URL is resolved once per file: a 5-chunk batch, meta, ranges"
OTHER_ID=$(asset_id 000001 sub-01/other.nwb)
DL="$API/assets/$OTHER_ID/download/"
d0=$(count api download)
o0=$(count origin /blobs/other.nwb)
st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"url\": \"$DL\", \"path\": \"$DSET\", \"keys\": [\"0.0\", \"2.0\", \"4.0\", \"6.0\", \"8.0\"]}")
assert_eq 200 "$st" "a batch of 5 chunks through the download URL"
d1=$(count api download)
o1=$(count origin /blobs/other.nwb)
log "REQUEST COUNTS cold 5-chunk batch through the redirect: api_download=$((d1 - d0)) origin=$((o1 - o0))"
assert_eq 1 $((d1 - d0)) "redirects followed for a cold batch"
st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"url\": \"$DL\", \"path\": \"$DSET\", \"keys\": [\"1.0\", \"3.0\", \"5.0\", \"7.0\", \"9.0\"]}")
assert_eq 200 "$st" "a second batch"
http_get "$DAEMON_URL/v1/meta?url=$(urlencode "$DL")&path=$DSET" "$T/meta.json" >/dev/null
http_get "$(mirror_url "$DL")" "$T/r.bin" -r 100000-200000 >/dev/null
d2=$(count api download)
o2=$(count origin /blobs/other.nwb)
log "REQUEST COUNTS then a second 5-chunk batch, meta, a range: api_download=$((d2 - d1)) origin=$((o2 - o1))"
assert_eq 0 $((d2 - d1)) "redirects followed again within resolve_ttl_s"

check "a plain public URL that redirects: hops followed once per file, then ranges go straight"
MOVED="$ORIGIN/moved/session.nwb"
m0=$(count origin moved)
s0=$(stat_get redirects_skipped)
assert_eq 206 "$(http_get "$(mirror_url "$MOVED")" "$T/moved0.bin" -r 0-99)" "a first range"
assert_eq 206 "$(http_get "$(mirror_url "$MOVED")" "$T/moved.bin" -r 300000-399999)" "a second range"
dd if="$T/root/session.nwb" of="$T/moved.want" bs=1 skip=300000 count=100000 status=none
cmp -s "$T/moved.bin" "$T/moved.want" || fail "a range through a redirecting URL differs from the file"
st=$(http_get "$DAEMON_URL/v1/chunks" "$T/frames.bin" -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"url\": \"$MOVED\", \"path\": \"$DSET\", \"keys\": [\"1.0\", \"3.0\", \"5.0\"]}")
assert_eq 200 "$st" "a batch through a redirecting URL"
log "REQUEST COUNTS two ranges and a batch through /moved/: redirects=$(($(count origin moved) - m0))"
assert_eq 1 $(($(count origin moved) - m0)) "redirects followed for two ranges and a batch"
assert_gt "$(stat_get redirects_skipped)" "$s0" "redirects_skipped"

check "a redirect to a presigned URL is remembered until upstream refuses it, then followed again"
SIGNED="$ORIGIN/moved-signed/3600/other.nwb"
m0=$(count origin moved-signed)
assert_eq 206 "$(http_get "$(mirror_url "$SIGNED")" "$T/s1.bin" -r 0-99)" "a first range"
assert_eq 206 "$(http_get "$(mirror_url "$SIGNED")" "$T/s2.bin" -r 500000-599999)" "a second range"
assert_eq 1 $(($(count origin moved-signed) - m0)) "redirects followed for two ranges"
fake_field /_rotate rotated >/dev/null # every URL signed so far is refused from now on
assert_eq 206 "$(http_get "$(mirror_url "$SIGNED")" "$T/s3.bin" -r 700000-799999)" \
    "a range after the remembered URL's signature stopped working"
dd if="$T/root/other.nwb" of="$T/s3.want" bs=1 skip=700000 count=100000 status=none
cmp -s "$T/s3.bin" "$T/s3.want" || fail "bytes after a refused redirect target differ from the file"
assert_gt "$(count origin "403 /private/other.nwb")" 0 "the remembered URL was refused upstream"
assert_eq 2 $(($(count origin moved-signed) - m0)) "redirects followed after the refusal"

# ---- signatures ----
P=/private/embargo_session.nwb
GOOD=$(fake_field "/_sign?path=$P" url)
FORGED=$(fake_field "/_sign?path=$P&forge=1" url)
OLD=$(date -u -d '-2 hours' +%Y%m%dT%H%M%SZ)
EXPIRED=$(fake_field "/_sign?path=$P&date=$OLD&expires=60" url)
MISSING="$ORIGIN$P"

check "forged, expired and missing signatures: 403 upstream_denied before any good read"
expect_denied "$FORGED" "forged signature, cold"
expect_denied "$EXPIRED" "expired signature, cold"
expect_denied "$MISSING" "no signature, cold"
check "a good signature reads the file"
expect_bytes "$GOOD" "good signature"
check "forged, expired and missing signatures: still 403 with the bytes cached"
denied0=$(count origin "403 $P")
expect_denied "$FORGED" "forged signature, warm"
expect_denied "$EXPIRED" "expired signature, warm"
expect_denied "$MISSING" "no signature, warm"
assert_eq 3 $(($(count origin "403 $P") - denied0)) "upstream asked about each refused URL"

check "a re-signed URL is served from the cache after one one-byte check"
RESIGNED=$(fake_field "/_sign?path=$P&date=$(date -u -d '-1 minute' +%Y%m%dT%H%M%SZ)" url)
g0=$(count origin "$P")
b0=$(count origin bytes)
expect_bytes "$RESIGNED" "re-signed URL"
assert_eq 1 $(($(count origin "$P") - g0)) "origin requests for a re-signed URL of a cached file"
assert_eq 1 $(($(count origin bytes) - b0)) "origin bytes for a re-signed URL of a cached file"
expect_bytes "$RESIGNED" "re-signed URL, again"
assert_eq 1 $(($(count origin "$P") - g0)) "a checked URL is remembered"

# ---- tokens ----
EMB="dandi://DANDI/000002/sub-01/embargo_session.nwb"
check "an embargoed asset without a token, or with another one: 403 cold"
expect_denied "$EMB" "no token, cold"
expect_denied "$EMB" "another token, cold" -H "X-DANDI-Token: tokenB"
expect_denied "dandiasset:$EMB_ID" "asset id without a token, cold"
check "user A's token reads it (dandi://, dandiasset:, the download URL)"
expect_bytes "$EMB" "token A" -H "X-DANDI-Token: tokenA"
expect_bytes "dandiasset:$EMB_ID" "token A, asset id" -H "X-DANDI-Token: tokenA"
expect_bytes "$API/assets/$EMB_ID/download/" "token A, download URL" -H "X-DANDI-Token: tokenA"
check "user B without it, or with another: still 403 with the bytes cached"
expect_denied "$EMB" "no token, warm"
expect_denied "$EMB" "another token, warm" -H "X-DANDI-Token: tokenB"
expect_denied "dandiasset:$EMB_ID" "asset id without a token, warm"
expect_denied "$API/assets/$EMB_ID/download/" "download URL without a token, warm"
st=$(http_get "$DAEMON_URL/v1/meta?url=$(urlencode "$EMB")&path=/" "$T/e.out")
assert_error 403 "$st" "$T/e.out" upstream_denied "/v1/meta without a token, warm"
st=$(http_get "$DAEMON_URL/v1/zarr?url=$(urlencode "$EMB")" "$T/e.out")
assert_error 403 "$st" "$T/e.out" upstream_denied "/v1/zarr without a token, warm"
st=$(http_get "$DAEMON_URL/v1/meta?url=$(urlencode "$EMB")&path=/" "$T/meta.json" -H "X-DANDI-Token: tokenA")
assert_eq 200 "$st" "/v1/meta with token A"
st=$(http_get "$(mirror_url "$EMB")" "$T/e.out" -r 0-9 -H "X-DANDI-Token: bad token")
assert_error 400 "$st" "$T/e.out" bad_request "a token with a blank"

check "a remembered signed URL refused upstream (key rotated) is resolved again mid-read"
EMB2="dandi://DANDI/000002/sub-01/embargo_two.nwb"
st=$(http_get "$(mirror_url "$EMB2")" "$T/part.bin" -r 0-99 -H "X-DANDI-Token: tokenA")
assert_eq 206 "$st" "a first range of another embargoed file"
d0=$(count api download)
curl -sS --max-time 10 "http://127.0.0.1:$API_PORT/_rotate" >/dev/null || fail "rotate"
# The tail is not cached (the open cached the first block only): its fetch is refused, the
# name is resolved again and the read goes on.
st=$(http_get "$(mirror_url "$EMB2")" "$T/tail.bin" \
    -H "X-DANDI-Token: tokenA" -H 'Range: bytes=-4096')
assert_eq 206 "$st" "the tail after the key rotation"
tail -c 4096 "$T/root/embargo_two.nwb" | cmp -s - "$T/tail.bin" || fail "tail bytes differ"
assert_eq 1 $(($(count api download) - d0)) "resolutions after the refusal"

check "zarr and h5py read dandi:// names (the embargoed one with the key in a header)"
"$PYTHON_H5" - "$DAEMON_URL" "$T/root/session.nwb" "$EMB" "dandi://DANDI/000001/sub-01/session.nwb" \
    "$DSET" >"$T/py.out" 2>&1 <<'EOF' || fail "python clients: $(tail -n 5 "$T/py.out")"
import json, sys, urllib.parse, urllib.request
import fsspec, h5py, numpy, zarr
D, local, emb, pub, dset = sys.argv[1:6]
want = h5py.File(local, "r")[dset][:]
q = urllib.parse.quote(pub, safe="")
base = json.load(urllib.request.urlopen(D + "/v1/zarr?url=" + q))["base"]
root = zarr.open_consolidated(zarr.storage.KVStore(fsspec.get_mapper(D + base)), mode="r")
assert numpy.array_equal(root[dset.lstrip("/")][:], want), "zarr through dandi://"
headers = {"X-DANDI-Token": "tokenA"}
e = urllib.parse.quote(emb, safe="")
with fsspec.open(D + "/v1/file?url=" + e, "rb", client_kwargs={"headers": headers}) as f, \
        h5py.File(f, "r") as h5:
    assert numpy.array_equal(h5[dset][:], want), "h5py through an embargoed dandi://"
try:
    with fsspec.open(D + "/v1/file?url=" + e, "rb") as f:
        h5py.File(f, "r")
except (OSError, IndexError):  # fsspec 2022.11 turns the 403 of its HEAD into IndexError
    pass
else:
    raise SystemExit("an embargoed file opened without the key")
print("ok")
EOF
H5CHUNK_BIN="$(cd "$(dirname "$H5CHUNKD_BIN")/.." 2>/dev/null && pwd)/client/h5chunk"
if [[ -x "$H5CHUNK_BIN" ]]; then
    check "h5chunk takes dandi:// names and the key from DANDI_API_KEY or --dandi-token"
    DANDI_API_KEY=tokenA timeout 60 "$H5CHUNK_BIN" --daemon "$DAEMON_URL" meta "$EMB" "$DSET" \
        >"$T/hc.out" 2>&1 || fail "h5chunk meta with DANDI_API_KEY: $(tail -n 3 "$T/hc.out")"
    printf 'tokenA\n' >"$T/key"
    timeout 60 "$H5CHUNK_BIN" --daemon "$DAEMON_URL" --dandi-token "$T/key" meta "$EMB" "$DSET" \
        >"$T/hc.out" 2>&1 || fail "h5chunk meta with --dandi-token: $(tail -n 3 "$T/hc.out")"
    if env -u DANDI_API_KEY timeout 60 "$H5CHUNK_BIN" --daemon "$DAEMON_URL" meta "$EMB" "$DSET" \
        >"$T/hc.out" 2>&1; then
        fail "h5chunk read an embargoed file without a key"
    fi
    assert_contains "$T/hc.out" "upstream_denied" "h5chunk names the refusal"
fi

check "no token, signature or credential reaches the logs or /v1/stats"
curl -sS --max-time 10 "$DAEMON_URL/v1/stats" >"$T/stats.json"
for secret in tokenA tokenB X-Amz-Signature; do
    if grep -q "$secret" "$DAEMON_LOG" "$T/stats.json"; then
        fail "'$secret' appears in the daemon log or /v1/stats"
    fi
done
grep -q tokenA "$T/access.log" && fail "a token appears in the access log"
log "resolutions=$(json_get "$T/stats.json" resolutions) access_checks=$(json_get "$T/stats.json" access_checks)"

# ---- TTL ----
stop_daemon
check "a resolution expires after resolve_ttl_s"
CACHE_DIR="$T/cache-ttl"
write_config "$T/ttl.conf" "dandi_api = $API" "resolve_ttl_s = 8"
start_daemon --config "$T/ttl.conf"
d0=$(count api download)
http_get "$(mirror_url "$DL")" "$T/r.bin" -r 0-99 >/dev/null
http_get "$(mirror_url "$DL")" "$T/r.bin" -r 100-199 >/dev/null
assert_eq 1 $(($(count api download) - d0)) "redirects within the TTL"
sleep 9
http_get "$(mirror_url "$DL")" "$T/r.bin" -r 200-299 >/dev/null
assert_eq 2 $(($(count api download) - d0)) "redirects after the TTL"
stop_daemon

# ---- credentials file ----
check "a credentials file wider than 0600 is refused at start"
printf '%s/ Authorization: token tokenA\n' "$API" >"$T/creds"
chmod 644 "$T/creds"
write_config "$T/creds.conf" "dandi_api = $API" "credentials_file = $T/creds"
CACHE_DIR="$T/cache-creds"
set +e
timeout 20 "$H5CHUNKD_BIN" --foreground --listen 127.0.0.1:0 --cache-dir "$CACHE_DIR" \
    --allow-private-upstreams --config "$T/creds.conf" >"$T/refused.log" 2>&1
rc=$?
set -e
assert_eq 1 "$rc" "exit status with a 0644 credentials file"
assert_contains "$T/refused.log" "chmod 600" "the reason names the fix"
grep -q tokenA "$T/refused.log" && fail "the refusal echoes the secret"

check "the credentials file's header reaches the DANDI API; SIGHUP re-reads it"
chmod 600 "$T/creds"
start_daemon --config "$T/creds.conf"
expect_bytes "$EMB" "embargoed asset with the credentials file's token"
printf '%s/ Authorization: token wrong\n' "$API" >"$T/creds"
kill -HUP "$DAEMON_PID"
for ((i = 0; i < 50; i++)); do
    grep -q 'configuration reloaded\|reload failed' "$DAEMON_LOG" && break
    sleep 0.1
done
sleep 0.5
expect_denied "$EMB" "after SIGHUP with a wrong token in the file"
grep -q "tokenA\|token wrong" "$DAEMON_LOG" && fail "a credentials file value reached the log"
stop_daemon

finish_test
