#!/bin/bash
# test_slice_strings.sh - /v1/slice of string datasets written by h5py,
# compared with what h5py reads: fixed-length |S values with embedded and
# trailing NULs in JSON (NumPy strips only trailing NULs), and values that
# are not UTF-8 (b'\xff\xfe'): 422 unsupported in JSON (a JSON string cannot
# hold them; null would not be h5py's value), byte-exact in npy and raw.
# Variable-length byte strings that are not UTF-8 are refused the same way.
# A few seconds.
. "$(dirname "$0")/lib.sh"

"$PYTHON_H5" -c 'import h5py, numpy' 2>/dev/null || skip "h5py or numpy missing for $PYTHON_H5"
mkdir -p "$T/www"
"$PYTHON_H5" - "$T/www/strings.h5" <<'PY' || fail "h5py could not write the file"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["fixed_utf8"] = np.array([b"a\x00b", b"xy", b"", "\u00e9t\u00e9".encode()], dtype="S6")
    f["fixed_bad"] = np.array([b"ok", b"\xff\xfe", b"z"], dtype="S4")
    f.create_dataset("fixed_bad_chunked", data=np.array([[b"\xff", b"a"], [b"b", b"\xc3"]], dtype="S2"),
                     chunks=(1, 2))
    f.create_dataset("vlen_bad", data=[b"fine", b"\xfe\xff"], dtype=h5py.string_dtype("ascii"))
PY
start_nginx "$T/www"
start_daemon
E=$(urlencode "$ORIGIN_URL/strings.h5")

slice_url() { echo "$DAEMON_URL/v1/slice?url=$E&path=/$1&format=$2"; }

# JSON equal to h5py's values decoded as UTF-8.
st=$(http_get "$(slice_url fixed_utf8 json)" "$T/utf8.json")
assert_eq 200 "$st" "fixed_utf8 json status"
"$PYTHON_H5" - "$T/www/strings.h5" "$T/utf8.json" <<'PY' || fail "fixed_utf8: JSON differs from h5py"
import json, sys, h5py
doc = json.load(open(sys.argv[2]))
with h5py.File(sys.argv[1], "r") as f:
    want = [v.decode("utf-8") for v in f["fixed_utf8"][()]]
    dtype = f["fixed_utf8"].dtype.str
assert doc["data"] == want, (doc["data"], want)
assert doc["dtype"] == dtype and doc["shape"] == [4], doc
print("fixed_utf8 json:", doc["data"])
PY

# Not UTF-8: refused in JSON, exact in npy and raw.
for ds in fixed_bad fixed_bad_chunked vlen_bad; do
    st=$(http_get "$(slice_url "$ds" json)" "$T/$ds.json")
    assert_error 422 "$st" "$T/$ds.json" unsupported "$ds json"
    grep -q 'UTF-8' "$T/$ds.json" || fail "$ds json: the error does not name the reason: $(cat "$T/$ds.json")"
done
for ds in fixed_bad fixed_bad_chunked; do
    st=$(http_get "$(slice_url "$ds" npy)" "$T/$ds.npy")
    assert_eq 200 "$st" "$ds npy status"
    st=$(http_get "$(slice_url "$ds" raw)" "$T/$ds.raw")
    assert_eq 200 "$st" "$ds raw status"
    "$PYTHON_H5" - "$T/www/strings.h5" "$ds" "$T/$ds.npy" "$T/$ds.raw" <<'PY' || fail "$ds: npy or raw differs from h5py"
import sys, h5py, numpy as np
path, ds, npy, raw = sys.argv[1:]
with h5py.File(path, "r") as f:
    want = f[ds][()]
got = np.load(npy)
assert got.dtype == want.dtype and got.shape == want.shape and (got == want).all(), (got, want)
assert open(raw, "rb").read() == want.tobytes()
print(ds, "npy and raw equal h5py:", got.tolist())
PY
done
finish_test
