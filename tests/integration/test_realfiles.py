#!/usr/bin/python3
"""test_realfiles.py - files written by software we did not write (h5py,
PyTables, bitshuffle's HDF5 plugin, Debian's lz4 plugin; see
tests/data/make_realfiles.py) served by h5chunkd and compared value by value
with h5py's reading of the same files.

For every dataset: /v1/meta's dtype spells h5py's dtype; /v1/slice as npy and
json equals h5py (structured values field by field, H5T_ARRAY as NumPy
subarrays, bitfields as unsigned integers), or is a documented refusal
(422 unsupported for long double, 422 filter_unavailable naming the filter
for a filter nobody has).  The Zarr view through zarr-python + fsspec's HTTP
store reads every dataset equal to h5py, also under names with '#', '?',
'%' and spaces (percent-encoded keys), and a hard-link cycle lists each
object once.  The raw chunk of a contiguous variable-length string dataset
is the stored bytes.  .zmetadata of a file that is not HDF5 is an error.

The daemon runs with HDF5_PLUGIN_PATH pointing at an empty directory, so
every third-party filter it decodes is its own (lib/h5filters.c).  The
test writes its files at start (a few seconds) and takes about 20 s.

Exit status: 0 pass, 1 fail, 77 skip (automake).
Environment: as tests/integration/test_h5chunks.py.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"
os.environ.setdefault("HDF5_PLUGIN_PATH", PLUGIN_DIR)  # h5py, the oracle, may use plugins

import test_h5chunks as base  # noqa: E402

base.NAME = "test_realfiles"
check, log = base.check, base.log
GENERATE_TIMEOUT = 120

# Datasets the daemon must refuse, and with which code (and a word of the message).
REFUSED = {
    "types.h5:/longdouble": ("unsupported", "long double"),
    "filters.h5:/unknown_filter": ("filter_unavailable", "32099"),
}


def zarr_name(name):
    """make an HDF5 name into its Zarr view key (docs/api.md)."""
    out = []
    for b in name.encode():
        if b <= 0x20 or b == 0x7f or chr(b) in '%#?"<>\\^`{|}':
            out.append("%%%02X" % b)
        else:
            out.append(chr(b) if b < 0x80 else bytes([b]).decode("latin-1"))
    return "".join(out).encode("latin-1").decode("utf-8")


def values_equal(np, got, want, what):
    """Exact equality of two arrays, field by field for structured ones."""
    if want.dtype.fields:
        if got.dtype.fields is None or set(got.dtype.names) != set(want.dtype.names):
            return check(False, "%s: fields %s, want %s" % (what, got.dtype, want.dtype))
        ok = True
        for name in want.dtype.names:
            ok &= values_equal(np, got[name], want[name], "%s field %s" % (what, name))
        return ok
    if got.shape != want.shape:
        return check(False, "%s: shape %s, want %s" % (what, got.shape, want.shape))
    if got.dtype != want.dtype:
        return check(False, "%s: dtype %s, want %s" % (what, got.dtype, want.dtype))
    return check(np.array_equal(got, want, equal_nan=want.dtype.kind == "f"),
                 "%s: values differ: %r vs %r" % (what, got.ravel()[:8], want.ravel()[:8]))


def json_of(np, want):
    """What /v1/slice?format=json must give for h5py's array."""
    if want.dtype.fields:
        def row(r):
            return {n: json_of(np, np.asarray(r[n])) for n in want.dtype.names}
        if want.ndim == 0:
            return row(want[()])
        return [json_of(np, w) for w in want] if want.ndim > 1 else [row(r) for r in want]
    if want.dtype.kind == "O":
        return [v.decode() if isinstance(v, bytes) else v for v in want.tolist()]
    if want.dtype.kind == "b":
        return want.tolist()
    return want.tolist()


def error_code(body):
    try:
        return json.loads(body)["error"]["code"], json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None, body[:200]


def check_dataset(np, d, url, key, name, want, refused):
    """/v1/meta and /v1/slice (npy, json) of one dataset against h5py."""
    st, _, body = d.get("/v1/meta", url=url, path=name)
    if not check(st == 200, "%s: /v1/meta answered %d %s" % (key, st, body[:200])):
        return
    meta = json.loads(body)
    for fmt in ("npy", "json"):
        st, hdr, body = d.get("/v1/slice", url=url, path=name, format=fmt)
        if refused is not None:
            code, msg = error_code(body)
            check(st == 422 and code == refused[0] and refused[1] in msg,
                  "%s %s: expected 422 %s naming %s, got %d %s %s"
                  % (key, fmt, refused[0], refused[1], st, code, msg))
            continue
        vlen = want.dtype.kind == "O"
        if fmt == "npy" and vlen:
            check(st == 422, "%s npy of variable-length strings: expected 422, got %d" % (key, st))
            continue
        if not check(st == 200, "%s %s: answered %d %s" % (key, fmt, st, body[:300])):
            continue
        if fmt == "npy":
            values_equal(np, np.load(io.BytesIO(body)), want, "%s npy" % key)
        else:
            doc = json.loads(body)
            got = doc["data"]
            exp = json_of(np, want)
            check(got == exp, "%s json: got %.300s, want %.300s" % (key, got, exp))
    if refused is None and want.dtype.kind != "O":
        dt = meta["dtype"]
        if isinstance(dt, list) and len(dt) == 2 and isinstance(dt[1], list) and \
                dt[1] and isinstance(dt[1][0], int):
            check(want.shape[-len(dt[1]):] == tuple(dt[1]),
                  "%s: /v1/meta subarray dims %s for h5py shape %s" % (key, dt[1], want.shape))
        elif isinstance(dt, str):
            check(np.dtype(dt) == want.dtype, "%s: /v1/meta dtype %s, h5py %s"
                  % (key, dt, want.dtype))


def check_zarr(np, d, url, fname, datasets, refused):
    import fsspec
    import zarr
    st, _, body = d.get("/v1/zarr", url=url)
    if not check(st == 200, "%s: /v1/zarr answered %d" % (fname, st)):
        return
    zbase = json.loads(body)["base"]
    st, _, body = d.request("GET", zbase + ".zmetadata")
    if not check(st == 200, "%s: .zmetadata answered %d %s" % (fname, st, body[:200])):
        return
    keys = json.loads(body)["metadata"].keys()
    if fname == "types.h5":
        # A chunk never written of a dtype with no Zarr fill_value: served filled, not 404.
        for key, size in (("compound_sparse/1", 4 * 21), ("arr_sparse/1.0", 4 * 12)):
            st, _, body = d.request("GET", zbase + key)
            check(st == 200 and body == bytes(size),
                  "%s %s (never written): got %d, %d bytes" % (fname, key, st, len(body)))
    check(not any("/up/" in k or k.startswith("loop/b/up") for k in keys),
          "%s: .zmetadata walked into the hard-link cycle" % fname)
    if fname == "names.h5":
        check("twice/.zarray" in keys, "names.h5: a dataset's second hard link is not listed")
    root = zarr.open_consolidated(
        zarr.storage.KVStore(fsspec.get_mapper("http://127.0.0.1:%d%s" % (d.port, zbase))),
        mode="r")
    if fname == "names.h5" and "#refs#/a" in datasets:
        values_equal(np, root["twice"][...], datasets["#refs#/a"], "names.h5:/twice zarr")
    for name, want in datasets.items():
        key = "%s:/%s" % (fname, name)
        zpath = "/".join(zarr_name(p) for p in name.split("/"))
        if key in refused:
            continue  # no Zarr form
        try:
            arr = root[zpath]
        except KeyError:
            check(False, "%s: not in the Zarr view as %r" % (key, zpath))
            continue
        try:
            got = arr[...]
        except Exception as e:  # zarr raises what fsspec raised
            check(False, "%s: zarr read failed: %s" % (key, e))
            continue
        if want.dtype.kind == "O":
            check([str(v) for v in got.ravel()] == [v.decode() if isinstance(v, bytes) else v
                                                   for v in want.ravel()],
                  "%s: zarr strings differ" % key)
        else:
            values_equal(np, got, want, "%s zarr" % key)


def run(tmp):
    try:
        import h5py
        import numpy as np
        import tables  # noqa: F401  (the writer of tables.h5)
        import zarr  # noqa: F401
    except ImportError as e:
        raise base.Skip("missing Python module: %s" % e)
    www = os.path.join(tmp, "www")
    t0 = time.monotonic()
    gen = subprocess.run([sys.executable, os.path.join(base_tests(), "data", "make_realfiles.py"),
                          www], capture_output=True, text=True, timeout=GENERATE_TIMEOUT)
    if gen.returncode != 0:
        raise base.Fatal("make_realfiles.py failed: %s" % gen.stderr[-2000:])
    manifest = json.loads(gen.stdout)
    for note in manifest["notes"]:
        log("generator: %s" % note)
    check(not manifest["notes"], "every writer available (see the generator's notes)")
    log("files written in %.1f s" % (time.monotonic() - t0))

    # A file that is not HDF5, and an empty plugin dir for the daemon.
    with open(os.path.join(www, "garbage.h5"), "wb") as fh:
        fh.write(bytes((i * 7 + 3) % 251 for i in range(8192)))
    empty_plugins = os.path.join(tmp, "no-plugins")
    os.makedirs(empty_plugins)

    import shutil
    nginx_bin = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx_bin):
        raise base.Skip("no nginx")
    nginx = base.Nginx(nginx_bin, www, os.path.join(tmp, "nginx"))
    nginx.start()
    config = os.path.join(tmp, "h5chunkd.conf")
    with open(config, "w") as fh:
        fh.write("revalidate_s = 3600\n")
    daemon_bin = os.environ.get("H5CHUNKD_BIN") or os.path.join(os.getcwd(), "daemon",
                                                               "h5chunkd")
    d = base.Daemon(daemon_bin, os.path.join(tmp, "cache"), os.path.join(tmp, "daemon.log"),
                    config)
    saved = os.environ.get("HDF5_PLUGIN_PATH")
    os.environ["HDF5_PLUGIN_PATH"] = empty_plugins
    try:
        d.start()
    finally:
        os.environ["HDF5_PLUGIN_PATH"] = saved
    try:
        ndsets = 0
        for fname in ("names.h5", "types.h5", "tables.h5", "filters.h5"):
            url = nginx.base() + "/" + urllib.parse.quote(fname)
            datasets = {}
            with h5py.File(os.path.join(www, fname), "r") as f:
                def visit(name, obj):
                    if not isinstance(obj, h5py.Dataset):
                        return
                    key = "%s:/%s" % (fname, name)
                    if key in manifest["expected"]:
                        datasets[name] = np.load(manifest["expected"][key])
                    else:
                        try:
                            datasets[name] = obj[()]
                        except OSError as e:
                            check(False, "h5py cannot read %s: %s" % (key, e))
                            datasets[name] = None
                f.visititems(visit)
            refused = dict(REFUSED)
            for name, want in sorted(datasets.items()):
                key = "%s:/%s" % (fname, name)
                ndsets += 1
                check_dataset(np, d, url, key, "/" + name, want, refused.get(key))
            check_zarr(np, d, url, fname, {n: w for n, w in datasets.items() if w is not None},
                       refused)
            d.healthy(fname)
        log("%d datasets checked" % ndsets)
        check(ndsets >= 40, "expected at least 40 datasets, saw %d" % ndsets)

        # The raw chunk of contiguous vlen strings: the stored heap ids, all 16 bytes each.
        url = nginx.base() + "/types.h5"
        with h5py.File(os.path.join(www, "types.h5"), "r") as f:
            dsid = f["vlen_contig"].id
            offset, size = dsid.get_offset(), dsid.get_storage_size()
        with open(os.path.join(www, "types.h5"), "rb") as fh:
            fh.seek(offset)
            stored = fh.read(size)
        st, _, body = d.get("/v1/chunk", url=url, path="/vlen_contig", key="0")
        check(st == 200 and body == stored,
              "raw chunk of contiguous vlen strings: %d, %d bytes, want %d stored bytes"
              % (st, len(body), len(stored)))

        # Bounded walks: too deep a hierarchy is 413; an empty member name is damage.
        st, _, body = d.get("/v1/zarr", url=nginx.base() + "/deep.h5")
        zbase = json.loads(body)["base"] if st == 200 else ""
        st, _, body = d.request("GET", zbase + ".zmetadata")
        check(st == 413 and error_code(body)[0] == "too_large",
              ".zmetadata of 80 nested groups: expected 413 too_large, got %d %s" % (st, body))
        url = nginx.base() + "/empty_name.h5"
        st, _, body = d.get("/v1/meta", url=url, path="/g")
        check(st == 422 and error_code(body)[0] == "damaged_file",
              "/v1/meta of a group with an empty member name: got %d %s" % (st, body))
        st, _, body = d.get("/v1/zarr", url=url)
        zbase = json.loads(body)["base"] if st == 200 else ""
        st, _, body = d.request("GET", zbase + ".zmetadata")
        check(st == 422 and error_code(body)[0] == "damaged_file",
              ".zmetadata with an empty member name: got %d %s" % (st, body))
        d.healthy("damaged names")

        # .zmetadata of a file that is not HDF5: an error, never an empty group.
        st, _, body = d.get("/v1/zarr", url=nginx.base() + "/garbage.h5")
        if st == 200:
            zbase = json.loads(body)["base"]
            st, _, body = d.request("GET", zbase + ".zmetadata")
        code, msg = error_code(body)
        check(st >= 400 and st != 500 and code is not None,
              ".zmetadata of a non-HDF5 file: got %d %s %s" % (st, code, msg))
        d.healthy("garbage file")
    finally:
        d.stop()


def base_tests():
    return os.environ.get("TESTS_SRCDIR") or os.path.dirname(HERE)


def main():
    tmp = tempfile.mkdtemp(prefix="h5cd-test_realfiles.")
    keep = os.environ.get("KEEP_TMP") == "1"
    rc = 0
    try:
        run(tmp)
    except base.Skip as e:
        log("SKIP: %s" % e)
        rc = 77
    except base.Fatal as e:
        check(False, str(e))
    except Exception as e:  # a harness error is a failure, with its traceback
        import traceback
        traceback.print_exc()
        check(False, "unexpected %s: %s" % (type(e).__name__, e))
    finally:
        base._kill_all()
    if rc == 0 and base._failures:
        rc = 1
        for f in sorted(os.listdir(tmp)):
            if f.endswith(".log"):
                print("%s: ---- last lines of %s ----\n%s"
                      % (base.NAME, f, base.tail(os.path.join(tmp, f))), flush=True)
    if rc == 0:
        log("PASS (%d checks)" % base._checks)
    else:
        log("%d of %d checks failed" % (len(base._failures), base._checks))
    if keep:
        log("kept %s" % tmp)
    else:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
