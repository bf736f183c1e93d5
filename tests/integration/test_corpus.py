#!/usr/bin/python3
"""test_corpus.py - every dataset of a corpus of real HDF5 files, written by
other software, read through h5chunkd and compared with h5py.

The corpus is built at test time by tests/data/make_corpus.py (files shipped
by Debian packages, libhdf5-doc's examples, PyTables with each compressor,
h5repack with each filter and -L, netCDF-4, h5netcdf, HDMF, anndata, h5py;
nothing is downloaded) and served by nginx on loopback.  For every group:
/v1/meta members.  For every dataset (chunks sampled on big grids, seeded):

  meta      /v1/meta shape, dtype, chunks (docs/api.md spelling)
  raw       POST /v1/chunks: bytes and filter mask == h5py read_direct_chunk
            (contiguous: the file's bytes; 404 chunk_not_allocated if unwritten)
  decoded   POST /v1/chunks decode=true == h5py's values of the chunk, padded
            with the fill value (vlen strings and references: vlen-utf8)
  npy/raw/json  /v1/slice of a bounded selection == h5py's values
  zarr      zarr-python over fsspec on the Zarr view == h5py
  fsspec    h5py over fsspec on /v1/file == h5py

Each check is "equal", a clear refusal (a 4xx whose code is damaged_file,
filter_unavailable or unsupported, or a refusal docs/api.md documents for
that case), or a failure; the table of results is printed and any failure
fails the test, with file, dataset, route, expected and observed.

Exit status: 0 pass, 1 fail, 77 skip (automake).  Environment: H5CHUNKD_BIN,
NGINX_BIN, TESTS_SRCDIR, KEEP_TMP=1, CORPUS_DIR (use an already built corpus),
CORPUS_MAX_KEYS (chunks per dataset, default 12), CORPUS_MAX_DATASETS (per
file, default 16, sampled), CORPUS_BUDGET (seconds, default 240: past it the
remaining files are not checked and the test fails), CORPUS_ONLY (a regular
expression: only the files whose path matches it are checked).
"""
import collections
import io
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h5peers  # noqa: E402
from h5peers import CLEAR_REFUSALS, error_code  # noqa: E402

NAME = "test_corpus"
MAX_KEYS = int(os.environ.get("CORPUS_MAX_KEYS", "12"))
MAX_DATASETS = int(os.environ.get("CORPUS_MAX_DATASETS", "16"))  # per file, sampled by seed
BUDGET = int(os.environ.get("CORPUS_BUDGET", "240"))  # seconds of checks in all
MIN_FILES = 60  # make_corpus.py builds ~85; far fewer means missing sources
SLICE_ELEMENTS = 4000  # values per slice check
JSON_MAX = 100000
MAX_REPORTED = int(os.environ.get("CORPUS_MAX_REPORTED", "80"))


def log(msg):
    print("%s: %s" % (NAME, msg), flush=True)


class Results:
    def __init__(self):
        self.by_route = collections.Counter()
        self.refusals = collections.Counter()
        self.failures = []
        self.files = 0
        self.datasets = 0
        self.equal = 0

    def ok(self, route):
        self.equal += 1
        self.by_route[(route, "equal")] += 1

    def refused(self, route, code):
        self.refusals[code] += 1
        self.by_route[(route, "refused")] += 1

    def fail(self, fname, path, route, expected, observed):
        self.by_route[(route, "FAIL")] += 1
        self.failures.append((fname, path, route, expected, observed))
        if len(self.failures) <= MAX_REPORTED:
            print("%s: FAIL: %s %s [%s]: expected %s; observed %s"
                  % (NAME, fname, path, route, expected, observed), file=sys.stderr, flush=True)


R = Results()


def judge_error(fname, path, route, st, body, allowed=()):
    """A non-200 answer: a clear refusal, or a failure."""
    code = error_code(body)
    if 400 <= st < 500 and (code in CLEAR_REFUSALS or code in allowed):
        R.refused(route, code)
        return
    R.fail(fname, path, route, "200 or a clear 4xx refusal",
           "HTTP %s %s" % (st, body[:200].decode(errors="replace")))


# ------------------------------------------------------------ expectations

def vlen_kind(ds):
    import h5py
    if h5py.check_string_dtype(ds.dtype) is not None and ds.dtype.kind == "O":
        return "str"
    if h5py.check_ref_dtype(ds.dtype) is not None:
        return "ref"
    if h5py.check_vlen_dtype(ds.dtype) is not None:
        return "vlen"
    return None


def as_text_values(f, ds, values):
    """vlen strings and references as the daemon's strings."""
    kind = vlen_kind(ds)
    out = []
    for v in np.asarray(values, dtype=object).reshape(-1):
        if kind == "ref":
            out.append(f[v].name if v else "")
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8", errors="surrogateescape"))
        else:
            out.append("" if v is None else str(v))
    return out


def vlen_utf8(strings):
    out = [struct.pack("<I", len(strings))]
    for s in strings:
        b = s.encode("utf-8", errors="surrogateescape")
        out.append(struct.pack("<I", len(b)) + b)
    return b"".join(out)


def same_array(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.fields is not None or b.dtype.fields is not None:
        if a.dtype.fields is None or b.dtype.fields is None:
            return False
        if sorted(a.dtype.fields) != sorted(b.dtype.fields):
            return False
        return all(same_array(a[n], b[n]) for n in a.dtype.fields)
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        def norm(x):
            if isinstance(x, bytes):
                return x.decode("utf-8", "surrogateescape")
            if isinstance(x, np.ndarray):
                return (str(x.dtype), x.shape, x.tobytes())
            return x
        return [norm(x) for x in a.reshape(-1)] == [norm(x) for x in b.reshape(-1)]
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    if a.dtype.kind == "V" or b.dtype.kind == "V":
        return a.tobytes() == b.tobytes()
    return np.array_equal(a, b)


def to_json_value(v):
    """h5py's value in /v1/slice JSON terms; raises ValueError if it has none."""
    if isinstance(v, np.ndarray):
        return [to_json_value(x) for x in v]
    if isinstance(v, np.void) and v.dtype.fields is not None:
        return [to_json_value(v[n]) for n, _ in
                sorted(v.dtype.fields.items(), key=lambda kv: kv[1][1])]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        v = int(v)
        return str(v) if v > 2**63 - 1 else v
    if isinstance(v, (np.floating, float)):
        d = float(v)
        if math.isnan(d):
            return "NaN"
        if math.isinf(d):
            return "Infinity" if d > 0 else "-Infinity"
        return d
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).rstrip(b"\0").decode("utf-8")  # ValueError if not UTF-8
    if isinstance(v, str):
        return v
    raise ValueError("no JSON form for %r" % type(v))


def json_equal(want, got, fields=None):
    if isinstance(want, list):
        if isinstance(got, dict):  # a compound as an object
            got = list(got.values())
        if not isinstance(got, list) or len(got) != len(want):
            return False
        return all(json_equal(w, g) for w, g in zip(want, got))
    if isinstance(want, float) and isinstance(got, (int, float)):
        return float(got) == want
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    return want == got


def selection_for(shape):
    """A bounded NumPy selection (text and tuple) with a step where possible."""
    if not shape:
        return "", ()
    budget = SLICE_ELEMENTS
    texts, tup = [], []
    for d, n in enumerate(shape):
        if d == 0 and n > 6:
            start, step = 1, 2
            stop = min(n, start + step * max(1, budget // max(1, int(np.prod(shape[1:])) or 1)))
            stop = max(stop, start + 1)
            texts.append("%d:%d:%d" % (start, stop, step))
            tup.append(slice(start, stop, step))
            cnt = len(range(start, stop, step))
        else:
            take = min(n, max(1, budget))
            texts.append("0:%d" % take)
            tup.append(slice(0, take))
            cnt = take
        budget = max(1, budget // max(1, cnt))
    return ",".join(texts), tuple(tup)


# ------------------------------------------------------------ checks

def check_group_meta(d, fname, url, path, grp):
    st, _, body = d.get("/v1/meta", url=url, path=path)
    if st != 200:
        judge_error(fname, path, "meta", st, body)
        return
    try:
        doc = json.loads(body)
    except ValueError:
        R.fail(fname, path, "meta", "JSON", body[:100])
        return
    want = sorted(grp.keys())
    got = sorted(doc.get("members") or [])
    if doc.get("kind") != "group" or got != want:
        R.fail(fname, path, "meta", "group with members %s" % want[:10],
               "kind %s members %s" % (doc.get("kind"), got[:10]))
    else:
        R.ok("meta")


def check_meta(d, fname, url, path, ds):
    st, _, body = d.get("/v1/meta", url=url, path=path)
    if st != 200:
        judge_error(fname, path, "meta", st, body)
        return None
    doc = json.loads(body)
    want = {"shape": list(ds.shape) if ds.shape is not None else None,
            "dtype": h5peers.zarr_dtype(ds.dtype), "chunks": h5peers.expected_chunks(ds)}
    got = {"shape": doc.get("shape"), "dtype": doc.get("dtype"), "chunks": doc.get("chunks")}
    if (got["dtype"] is None and want["dtype"] is not None and doc.get("h5type")
            and not h5peers.needs_support(ds.id.get_type())
            and got["shape"] == want["shape"] and got["chunks"] == want["chunks"]):
        # A type with no portable NumPy spelling (long double, H5T_TIME, ...)
        # may be described as such; its values must then be refused.
        R.refused("meta", "unsupported_type")
    elif json.dumps(want) != json.dumps(got):
        R.fail(fname, path, "meta", json.dumps(want)[:200], json.dumps(got)[:200])
    else:
        R.ok("meta")
    return doc


def expected_raw(f, fbytes, ds, key, chunks):
    """(status, filter_mask, bytes) the raw chunk must be; None: no h5py view."""
    lay = h5peers.layout_of(ds)
    shape = ds.shape
    if lay == "chunked":
        region = h5peers.key_region(key, shape, chunks)
        offset = tuple(s.start for s in region)
        info = ds.id.get_chunk_info_by_coord(offset)
        if info.byte_offset is None or info.size == 0:
            return 404, None, b""
        mask, data = ds.id.read_direct_chunk(offset)
        return 200, mask, bytes(data)
    if lay == "contiguous":
        off = ds.id.get_offset()
        if off is None:
            return 404, None, b""
        row = h5peers.stored_type_size(ds)
        for n in shape[1:]:
            row *= n
        if not shape:
            return 200, 0, fbytes[off:off + row]
        region = h5peers.key_region(key, shape, chunks)
        r0, r1 = region[0].start, region[0].stop
        return 200, 0, fbytes[off + r0 * row:off + r1 * row]
    if lay == "compact":
        if vlen_kind(ds) is not None or ds.dtype.fields is not None:
            return None
        return 200, 0, h5peers.to_packed(ds[()]).tobytes()
    return None


def check_raw(d, f, fbytes, fname, url, path, ds, keys, chunks):
    st, _, body = d.post_chunks({"url": url, "path": path, "keys": keys})
    if st != 200:
        judge_error(fname, path, "raw", st, body)
        return
    try:
        frames = h5peers.parse_frames(body)
    except h5peers.FrameError as e:
        R.fail(fname, path, "raw", "well-formed frames", str(e))
        return
    bad = []
    for k in keys:
        want = expected_raw(f, fbytes, ds, k, chunks)
        if want is None:
            continue
        head, payload = frames.get(k, ({}, b""))
        wst, wmask, wdata = want
        if head.get("status") != wst:
            if head.get("status", 0) >= 400 and head.get("error") in CLEAR_REFUSALS:
                continue
            bad.append("%s: status %s (%s), want %s" % (k, head.get("status"), head.get("error"),
                                                        wst))
        elif wst == 200 and (payload != wdata or (wmask is not None
                                                  and head.get("filter_mask") != wmask)):
            bad.append("%s: %d bytes mask %s, want %d bytes mask %s"
                       % (k, len(payload), head.get("filter_mask"), len(wdata), wmask))
    if bad:
        R.fail(fname, path, "raw", "read_direct_chunk bytes", "; ".join(bad[:3]))
    else:
        R.ok("raw")


def expected_decoded(f, ds, key, chunks):
    shape = ds.shape
    region = h5peers.key_region(key, shape, chunks)
    vals = ds[region] if shape else ds[()]
    kind = vlen_kind(ds)
    if kind == "vlen":
        return None
    full_shape = tuple(chunks) if shape else ()
    if kind is not None:
        grid = np.empty(full_shape, dtype=object)
        grid[...] = "" if kind == "str" else None
        if kind == "ref":
            grid[...] = None
        grid[tuple(slice(0, s.stop - s.start) for s in region)] = vals
        texts = as_text_values(f, ds, grid) if kind == "ref" else \
            ["" if v is None else (v.decode("utf-8", "surrogateescape") if isinstance(v, bytes)
                                   else str(v)) for v in grid.reshape(-1)]
        return vlen_utf8(texts)
    dt = ds.dtype
    if dt.subdtype is not None and dt.fields is None:  # H5T_ARRAY elements
        full_shape = full_shape + dt.subdtype[1]
        dt = dt.subdtype[0]
    full = np.zeros(full_shape, dtype=dt)
    try:
        fill = ds.fillvalue
    except RuntimeError:  # "fill value is undefined": libhdf5 fills with zeros
        fill = None
    if fill is not None:
        full[...] = fill
    if shape:
        full[tuple(slice(0, s.stop - s.start) for s in region)] = vals
    else:
        full[...] = vals
    return h5peers.to_packed(full).tobytes()


def check_decoded(d, f, fname, url, path, ds, keys, chunks):
    st, _, body = d.post_chunks({"url": url, "path": path, "keys": keys, "decode": True})
    if st != 200:
        judge_error(fname, path, "decoded", st, body)
        return
    try:
        frames = h5peers.parse_frames(body)
    except h5peers.FrameError as e:
        R.fail(fname, path, "decoded", "well-formed frames", str(e))
        return
    bad = []
    for k in keys:
        want = expected_decoded(f, ds, k, chunks)
        if want is None:
            continue
        head, payload = frames.get(k, ({}, b""))
        if head.get("status") != 200:
            if head.get("error") in CLEAR_REFUSALS:
                continue
            bad.append("%s: status %s (%s)" % (k, head.get("status"), head.get("error")))
        elif payload != want:
            bad.append("%s: %d bytes differ from h5py's %d" % (k, len(payload), len(want)))
    if bad:
        R.fail(fname, path, "decoded", "h5py's chunk values", "; ".join(bad[:3]))
    else:
        R.ok("decoded")


def check_slices(d, f, fname, url, path, ds, meta):
    sel_text, sel = selection_for(ds.shape)
    want = ds[sel] if ds.shape else ds[()]
    want = np.asarray(want)
    kind = vlen_kind(ds)
    params = {"url": url, "path": path}
    if sel_text:
        params["select"] = sel_text
    # npy and raw: vlen values have no fixed-size layout (docs/api.md): a 4xx is right.
    for fmt in ("npy", "raw"):
        st, hdrs, body = d.get("/v1/slice", format=fmt, **params)
        route = "slice-" + fmt
        if st != 200:
            allowed = ("bad_request", "unsupported") if kind is not None else ()
            judge_error(fname, path, route, st, body, allowed)
            continue
        if kind is not None:
            R.fail(fname, path, route, "a 4xx for vlen values", "200")
            continue
        if fmt == "npy":
            try:
                got = np.load(io.BytesIO(body), allow_pickle=False)
            except Exception as e:  # noqa: BLE001
                R.fail(fname, path, route, "a .npy", repr(e)[:200])
                continue
            ok = same_array(want, got)
            obs = "%s %s" % (got.dtype, got.shape)
        else:
            shape_h = hdrs.get("x-h5chunkd-shape")
            want_shape = ",".join(map(str, want.shape)) if want.shape else None
            packed = h5peers.to_packed(want)
            ok = body == packed.tobytes() and shape_h == want_shape
            obs = "%d bytes shape %s dtype %s" % (len(body), shape_h, hdrs.get("x-h5chunkd-dtype"))
        if ok:
            R.ok(route)
        else:
            R.fail(fname, path, route, "%s %s (%d bytes)" % (want.dtype, want.shape,
                                                             want.nbytes), obs)
    st, _, body = d.get("/v1/slice", format="json", **params)
    if st != 200:
        allowed = ("too_large",) if want.size > JSON_MAX else ()
        judge_error(fname, path, "slice-json", st, body, allowed)
        return
    doc = json.loads(body)
    try:
        if kind is not None:
            texts = as_text_values(f, ds, want)
            wjson = np.array(texts, dtype=object).reshape(want.shape).tolist() \
                if want.shape else texts[0]
        else:
            wjson = to_json_value(want) if want.shape else to_json_value(want[()])
    except ValueError as e:
        R.fail(fname, path, "slice-json", "a 4xx (%s)" % e, "200")
        return
    if json_equal(wjson, doc.get("data")) and doc.get("shape") == list(want.shape):
        R.ok("slice-json")
    else:
        R.fail(fname, path, "slice-json", json.dumps(wjson)[:150],
               json.dumps(doc.get("data"))[:150])


def zarr_for(d, url):
    import fsspec
    import zarr
    st, _, body = d.get("/v1/zarr", url=url)
    if st != 200:
        return None, (st, body)
    base = json.loads(body)["base"]
    try:
        mapper = fsspec.get_mapper(d.base() + base, **d.fsspec_kwargs())
        root = zarr.open_consolidated(zarr.storage.KVStore(mapper), mode="r")
    except Exception as e:  # noqa: BLE001
        if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
            d.timeouts += 1
        return None, (0, repr(e).encode())
    return root, None


def check_walk_once(d, fname, url, ndatasets):
    """The Zarr view lists each dataset once (a walk visits every object once,
    hard-link cycles included), so at most as many arrays as h5py visits."""
    st, _, body = d.get("/v1/zarr", url=url)
    if st != 200:
        return
    st, _, body = d.request("GET", json.loads(body)["base"] + ".zmetadata")
    if st != 200:
        judge_error(fname, "/", ".zmetadata", st, body)
        return
    arrays = [k for k in json.loads(body).get("metadata", {}) if k.endswith(".zarray")]
    # Some slack: hard links to one dataset under two names are listed twice;
    # a walk that follows a cycle lists it without bound.
    if len(arrays) > 2 * ndatasets + 2:
        longest = max(arrays, key=len)
        R.fail(fname, "/", ".zmetadata", "about %d arrays, each object once" % ndatasets,
               "%d arrays, e.g. %s...%s (%d bytes)" % (len(arrays), longest[:24], longest[-24:],
                                                       len(body)))
    else:
        R.ok(".zmetadata")


def check_zarr(root, zerr, fname, path, ds, meta_dtype_null):
    kind = vlen_kind(ds)
    if root is None:
        st, body = zerr
        if st:
            judge_error(fname, path, "zarr", st, body)
        else:
            R.fail(fname, path, "zarr", "zarr opens the view", body[:200])
        return
    try:
        arr = root[h5peers.zarr_key(path)]
    except KeyError:
        # docs/api.md: objects with no Zarr form are left out of .zmetadata.
        if (kind == "vlen" or h5peers.layout_of(ds) == "virtual"
                or (meta_dtype_null and not h5peers.needs_support(ds.id.get_type()))):
            R.refused("zarr", "left_out")
        else:
            R.fail(fname, path, "zarr", "the array in .zmetadata", "absent")
        return
    sel_text, sel = selection_for(ds.shape)
    try:
        got = arr[sel] if ds.shape else arr[...]
    except Exception as e:  # noqa: BLE001
        # aiohttp's repr is mostly headers; the status and URL say what failed.
        if hasattr(e, "status") and hasattr(e, "request_info"):
            what = "HTTP %s %s for %s" % (e.status, e.message, e.request_info.url.path[-60:])
        else:
            what = repr(e)[:200]
        R.fail(fname, path, "zarr", "values", what)
        return
    want = ds.asstr()[sel] if kind == "str" else (ds[sel] if ds.shape else ds[()])
    if kind == "ref":
        f = ds.file
        want = np.array(as_text_values(f, ds, want), dtype=object).reshape(np.shape(want))
    if same_array(np.asarray(want), np.asarray(got)):
        R.ok("zarr")
    else:
        R.fail(fname, path, "zarr", "h5py values %s" % (np.asarray(want).reshape(-1)[:3],),
               "%s" % (np.asarray(got).reshape(-1)[:3],))


def check_fsspec(h5remote, fname, path, ds):
    sel_text, sel = selection_for(ds.shape)
    try:
        got = h5remote[path][sel] if ds.shape else h5remote[path][()]
    except Exception as e:  # noqa: BLE001
        R.fail(fname, path, "fsspec", "h5py reads /v1/file", repr(e)[:200])
        return
    want = ds[sel] if ds.shape else ds[()]
    if vlen_kind(ds) == "ref":  # references of two File objects never compare equal
        want = as_text_values(ds.file, ds, want)
        got = as_text_values(h5remote, ds, got)
    if same_array(np.asarray(want), np.asarray(got)):
        R.ok("fsspec")
    else:
        R.fail(fname, path, "fsspec", "the same values", "different values")


class TablesValues:
    """An h5py dataset whose values come from PyTables, which registers its
    own blosc and LZO filters: h5py (Debian has no plugin for them) cannot
    decode those chunks, PyTables can."""

    def __init__(self, ds, values):
        self._ds = ds
        if ds.dtype.fields is not None:
            out = np.empty(values.shape, dtype=ds.dtype)
            for name in ds.dtype.names:
                out[name] = values[name]
            values = out
        self._values = np.asarray(values, dtype=ds.dtype)

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def __getitem__(self, sel):
        return self._values[sel]


def readable_values(path_local, path, ds):
    """ds, or ds with PyTables' values when h5py lacks a filter; None when
    neither can read it."""
    try:
        ds[...]
        return ds
    except OSError as e:
        if "filter" not in str(e):
            raise
    import tables
    with tables.open_file(path_local, "r") as t:
        return TablesValues(ds, t.get_node(path).read())


def check_file(d, nginx, corpus, rel, rng):
    import fsspec
    import h5py
    fname = rel
    url = nginx.url(rel)
    path_local = os.path.join(corpus, rel)
    try:
        f = h5py.File(path_local, "r")
    except Exception as e:  # noqa: BLE001
        log("h5py cannot open %s (%r): only /v1/meta / is checked" % (rel, e))
        st, _, body = d.get("/v1/meta", url=url, path="/")
        if st != 200:
            judge_error(fname, "/", "meta", st, body, ("not_found",))
        return
    R.files += 1
    with open(path_local, "rb") as fh:
        fbytes = fh.read()
    groups, datasets = [], []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            datasets.append(("/" + name, obj))
        elif isinstance(obj, h5py.Group):
            groups.append(("/" + name, obj))
    groups.append(("/", f))
    f.visititems(visit)
    # Soft links are followed (docs/api.md), so a dataset may be listed once
    # more per soft link; hard links to a visited object (cycles) are not.
    names_allowed = len(datasets)
    for gpath, g in groups:
        check_group_meta(d, fname, url, gpath, g)
        for name in g:
            if isinstance(g.get(name, getlink=True), h5py.SoftLink):
                names_allowed += 1
    if len(datasets) > MAX_DATASETS:  # PyTables' index files hold dozens of small arrays
        keep = sorted(rng.sample(range(len(datasets)), MAX_DATASETS))
        datasets = [datasets[i] for i in keep]
    t0 = time.monotonic()
    root, zerr = zarr_for(d, url)
    if root is not None:
        check_walk_once(d, fname, url, names_allowed)
    t1 = time.monotonic()
    mirror = d.base() + "/v1/file?url=" + urllib.parse.quote(url, safe="")
    fs_file = fsspec.open(mirror, "rb", **d.fsspec_kwargs()).open()
    h5remote = h5py.File(fs_file, "r")
    if time.monotonic() - t1 > d.timeout * 0.75:
        # fsspec retries a request that timed out: a stall, not a slow file.
        R.fail(rel, "/", "fsspec", "h5py opens /v1/file through fsspec at once",
               "%.1f s: a request got no answer within the %d s client timeout and was retried"
               % (time.monotonic() - t1, d.timeout))
    if time.monotonic() - t0 > 3:
        log("slow: %s: zarr open %.1f s, h5py over fsspec open %.1f s"
            % (rel, t1 - t0, time.monotonic() - t1))
    for path, ds in datasets:
        R.datasets += 1
        try:
            ds = readable_values(path_local, path, ds)
        except Exception as e:  # noqa: BLE001 - h5py cannot read it: only no 5xx is asserted
            st, _, body = d.get("/v1/meta", url=url, path=path)
            log("h5py cannot read %s %s (%r); meta %s" % (rel, path, e, st))
            if st >= 500 or st == 0:
                judge_error(fname, path, "meta", st, body)
            # Nothing to compare with, but values must not be made up (issue 9:
            # H5T_TIME answered 200 with every value null).
            st, _, body = d.get("/v1/slice", url=url, path=path, format="json", select="0:5")
            if st == 200 and b"null" in body:
                R.fail(fname, path, "slice-json", "a 4xx for values h5py cannot read",
                       "200 %s" % body[:120].decode(errors="replace"))
            elif st != 200:
                judge_error(fname, path, "slice-json", st, body, ("bad_request",))
            continue
        t0 = time.monotonic()
        meta = check_meta(d, fname, url, path, ds)
        if ds.shape is None:
            continue
        chunks = h5peers.expected_chunks(ds)
        keys = h5peers.sample_keys(ds.shape, chunks, rng, MAX_KEYS) if ds.size else []
        if keys and h5peers.layout_of(ds) != "virtual":
            check_raw(d, f, fbytes, fname, url, path, ds, keys, chunks)
            check_decoded(d, f, fname, url, path, ds, keys, chunks)
        check_slices(d, f, fname, url, path, ds, meta)
        check_zarr(root, zerr, fname, path, ds, meta is not None and meta.get("dtype") is None
                   and vlen_kind(ds) is None)
        t1 = time.monotonic()
        check_fsspec(h5remote, fname, path, ds)
        if time.monotonic() - t0 > 3:
            log("slow: %s %s: %.1f s, of which h5py over fsspec %.1f s"
                % (rel, path, time.monotonic() - t0, time.monotonic() - t1))
    h5remote.close()
    fs_file.close()
    f.close()


def print_table(elapsed):
    routes = sorted({r for r, _ in R.by_route})
    log("corpus: %d files, %d datasets, %d checks equal, %d clear refusals, %d failures (%.0f s)"
        % (R.files, R.datasets, R.equal, sum(R.refusals.values()), len(R.failures), elapsed))
    log("%-12s %7s %8s %6s" % ("route", "equal", "refused", "FAIL"))
    for r in routes:
        log("%-12s %7d %8d %6d" % (r, R.by_route[(r, "equal")], R.by_route[(r, "refused")],
                                   R.by_route[(r, "FAIL")]))
    log("refusals by code: %s" % (", ".join("%s %d" % kv for kv in sorted(R.refusals.items()))
                                  or "none"))
    byfile = collections.Counter(x[0] for x in R.failures)
    if byfile:
        log("failures by file: %s" % ", ".join("%s %d" % kv for kv in byfile.most_common()))


def main():
    started = time.monotonic()
    here = os.path.dirname(os.path.abspath(__file__))
    tests = os.environ.get("TESTS_SRCDIR") or os.path.dirname(here)
    binary = os.environ.get("H5CHUNKD_BIN") or os.path.join(os.getcwd(), "daemon/h5chunkd")
    nginx_bin = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx_bin, os.X_OK):
        log("SKIP: nginx not found")
        return 77
    for mod in ("h5py", "zarr", "fsspec"):
        try:
            __import__(mod)
        except ImportError:
            log("FAIL: cannot import %s (scripts/install-deps)" % mod)
            return 1
    tmp = tempfile.mkdtemp(prefix="h5cd-corpus.")
    try:
        corpus = os.environ.get("CORPUS_DIR")
        if not corpus:
            corpus = os.path.join(tmp, "corpus")
            r = subprocess.run([sys.executable, os.path.join(tests, "data/make_corpus.py"),
                                corpus], timeout=300)
            if r.returncode != 0:
                R.fail("make_corpus.py", "-", "corpus", "every source built",
                       "exit %d" % r.returncode)
        nginx = h5peers.Nginx(nginx_bin, corpus, os.path.join(tmp, "nginx"))
        nginx.start()
        d = h5peers.Daemon(binary, os.path.join(tmp, "cache"), os.path.join(tmp, "daemon.log"))
        d.start()
        restarts = 0
        log("corpus %s, nginx %d, h5chunkd %d" % (corpus, nginx.port, d.port))
        only = os.environ.get("CORPUS_ONLY", "")
        files = sorted(os.path.relpath(os.path.join(dp, n), corpus)
                       for dp, _, names in os.walk(corpus) for n in names)
        for rel in files:
            if only and not re.search(only, rel):
                continue
            if time.monotonic() - started > BUDGET:
                R.fail(rel, "-", "budget", "the checks done within %d s" % BUDGET,
                       "stopped before %s and the files after it" % rel)
                break
            rng = random.Random(rel)
            t0 = time.monotonic()
            try:
                check_file(d, nginx, corpus, rel, rng)
            except Exception as e:  # noqa: BLE001 - one file's surprise must not hide the others
                import traceback
                traceback.print_exc()
                R.fail(rel, "-", "driver", "no exception", repr(e)[:300])
            if time.monotonic() - t0 > 5:
                log("%s took %.1f s" % (rel, time.monotonic() - t0))
            runaway = d.alive() and d.runaway()
            if runaway:
                R.fail(rel, "-", "daemon", "idle once every answer is in",
                       "still burning CPU (cache dir %d MB)" % (d.cache_bytes() >> 20))
            if not d.alive() or d.timeouts or runaway:
                # A hang may hold libhdf5's lock, a crash loses everything: start
                # afresh so that the next files are judged on their own.
                if not d.alive():
                    R.fail(rel, "-", "daemon", "alive", "exited with %s" % d.proc.returncode)
                elif d.timeouts:
                    R.fail(rel, "-", "daemon", "every answer within %d s" % d.timeout,
                           "%d requests hung" % d.timeouts)
                log(h5peers.tail(d.logpath, 10))
                d.kill()
                restarts += 1
                d = h5peers.Daemon(binary, os.path.join(tmp, "cache%d" % restarts),
                                   os.path.join(tmp, "daemon%d.log" % restarts))
                d.start()
        h5peers.stop_process(d.proc, 10)
        # A corpus that failed to build, or a filter that matches nothing,
        # must not pass for want of anything to check.
        if R.files == 0 or R.datasets == 0 or R.equal == 0:
            R.fail(corpus, "-", "corpus", "files, datasets and equal answers to judge",
                   "%d files, %d datasets, %d equal" % (R.files, R.datasets, R.equal))
        if not only and not os.environ.get("CORPUS_DIR") and R.files < MIN_FILES:
            R.fail(corpus, "-", "corpus", "at least %d files built" % MIN_FILES,
                   "%d (make_corpus.py skipped sources?)" % R.files)
        print_table(time.monotonic() - started)
        if R.failures:
            log("FAIL: %d failures" % len(R.failures))
            return 1
        log("PASS")
        return 0
    finally:
        h5peers.drop_work_dir(tmp, log)


if __name__ == "__main__":
    sys.exit(main())
