#!/usr/bin/python3
"""test_clients.py - real Python clients (zarr, fsspec, h5py, numpy) read an
NWB-like file through h5chunkd, and every value must equal what h5py reads
from the local file.

tests/data/make_nwb_like.py writes the file (every layout, filter and type
the daemon claims to handle); nginx serves it; the daemon runs on a fresh
cache dir with an access log.  Checks:
  zarr   zarr.open_consolidated over the daemon's Zarr view (by URL string,
         by fsspec mapper, and unconsolidated through the per-object
         .zgroup/.zarray/.zattrs) reads every dataset and attribute that has
         a Zarr form, equal to h5py (fill values of chunks never written,
         vlen strings as str, object references as paths, compounds as
         structured arrays).  The access log shows .zmetadata fetched once
         per consolidated open, no other metadata key, and every chunk
         answered 200 or 404 - and each 404 is a chunk h5py says was never
         written.  (zarr 2.13's FSStore turns ANY failed chunk into fill
         values, so the log is what proves that no read failed.)  The objects
         without a Zarr form must be exactly NO_ZARR_FORM.
  slice  /v1/slice, formats npy, raw and json, for a set of selections on
         many datasets equals NumPy indexing of h5py's array; vlen strings
         only as JSON, compounds not as JSON; the JSON cap at N and N+1;
         max_slice_bytes at N and N+1 (a second daemon with a 4K limit).
  decode GET /v1/chunk?decode=1 and POST /v1/chunks {"decode": true} of every
         chunk of every dataset equal h5py's region padded with the fill
         value (chunks never written: 200 and all fill).
  file   h5py over fsspec on /v1/file reads what h5py reads locally.
  errors bad selections -> 400, too large -> 413, types that cannot be
         decoded -> 422 and never data, the external link -> 422 naming its
         target.

Exit status: 0 pass, 1 fail, 77 skip (no h5py/numpy/zarr/fsspec/aiohttp or
nginx).  Environment: as test_h5chunks.py (H5CHUNKD_BIN, NGINX_BIN,
TESTS_SRCDIR, KEEP_TMP=1), whose harness (Nginx, Daemon, check) this reuses.
By hand, from a VPATH build dir:
  H5CHUNKD_BIN=$PWD/daemon/h5chunkd /usr/bin/python3 .../tests/integration/test_clients.py
"""
import argparse
import ast
import base64
import collections.abc
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_h5chunks as h5  # noqa: E402  (the shared harness)

NAME = "test_clients"
h5.NAME = NAME
check, log, Fatal, Skip = h5.check, h5.log, h5.Fatal, h5.Skip

HTTP_TIMEOUT = 60      # seconds, every request a client library makes
JSON_CAP = 100000      # values in a format=json slice (H5CD_MAX_JSON_ELEMENTS)
SMALL_SLICE = 4096     # max_slice_bytes of the second daemon
FILE = "session.nwb"

# Objects that have no Zarr form, and why (the daemon must leave them out of
# .zmetadata rather than show something it cannot serve).
NO_ZARR_FORM = {
    "/acquisition/external_raw": "external link (never followed)",
    "/analysis/ragged": "variable-length integer sequences",
    "/analysis/region_refs": "region references (only object references decode)",
}

# Selections (select parameter) per dataset: NumPy semantics.
SELECTIONS = {
    "/acquisition/ElectricalSeries/data": ["0:1000,5", "::2", "-10:", "3", "", "5,3",
                                           "100:50", "1999:2001,30:", "-1,-1", ":,::7",
                                           "19990:30000", "0:3125"],
    "/acquisition/ElectricalSeries/timestamps": ["::1000", "-3:", "4999:5001", "0"],
    "/acquisition/data_link": ["7:9,1:3"],
    "/processing/ecephys/LFP/data": ["490:510,0:4", "-1"],
    "/processing/ecephys/bz2_data": ["695:705", "::300"],
    "/processing/ecephys/checksummed": ["299:301", ":,7"],
    "/processing/ecephys/scaled_int": ["1020:1030"],
    "/processing/ecephys/scaled_float": ["::100"],
    "/processing/ecephys/szip_data": ["998:1003"],
    "/processing/ecephys/nbit_data": ["0:10", "-5:"],
    "/processing/ecephys/events": ["3:20:4", "7", ""],
    "/units/waveform_mean": ["2:4,::10", ""],
    "/units/uint64_ids": ["", "2:"],
    "/intervals/trials/correct": ["0:10", "4990:"],
    "/intervals/trials/tags": ["", "::5", "1"],
    "/general/experimenter": [""],
    "/general/institution": [""],
    "/general/session_id": [""],
    "/general/compact_ids": ["2:5"],
    "/general/extracellular_ephys/electrodes/location": ["8:12", "-1"],
    "/general/extracellular_ephys/electrodes/filtering": ["0:3"],
    "/general/extracellular_ephys/electrodes/group": ["14:18"],
    "/stimulus/templates/movie": ["4:6,7:9,::5", "20", "-1,-1,-1", "::4,::4,::4"],
    "/stimulus/presentation/contrast": ["3", "7,5:9", ""],
    "/analysis/sparse": ["0:30,0:30", "55,::9", ""],
    "/analysis/sparse_float": ["", "5:25"],
    "/analysis/scalar": [""],
    "/analysis/scalar_int": [""],
    "/analysis/empty": ["", "3:"],
    "/analysis/empty_chunked": ["", ":,1"],
    "/analysis/refs": [""],
}


# ---------------------------------------------------------------- what h5py says

def kind_of(ds):
    """'fixed', 'compound', 'vstr', 'ref', 'regionref' or 'vlen'."""
    import h5py
    dt = ds.dtype
    if dt.names is not None:
        return "compound"
    info = h5py.check_string_dtype(dt)
    if info is not None and info.length is None:
        return "vstr"
    ref = h5py.check_ref_dtype(dt)
    if ref is h5py.Reference:
        return "ref"
    if ref is h5py.RegionReference:
        return "regionref"
    if h5py.check_vlen_dtype(dt) is not None or dt.kind == "O":
        return "vlen"
    return "fixed"


def ref_path(f, r):
    return f[r].name if r else ""


def h5_values(f, ds):
    """The values a client must see: vlen strings as str, references as paths."""
    import numpy as np
    kind = kind_of(ds)
    if kind == "vstr":
        v = ds.asstr()[()]
        return np.array(v, dtype=object)
    if kind == "ref":
        raw = np.asarray(ds[()])
        out = np.empty(raw.shape, dtype=object)
        for idx in np.ndindex(raw.shape):
            out[idx] = ref_path(f, raw[idx])
        return out
    return np.asarray(ds[()])


def packed_dtype(dt):
    """A compound dtype without padding, fields in offset order (the daemon's
    dtype); other dtypes unchanged."""
    import numpy as np
    if dt.names is None:
        return dt
    fields = sorted(dt.fields.items(), key=lambda kv: kv[1][1])
    return np.dtype([(name, packed_dtype(t)) for name, (t, *_rest) in fields])


def attr_json(f, v):
    """An h5py attribute value as the JSON value the daemon gives."""
    import h5py
    import numpy as np
    if isinstance(v, h5py.Empty):
        return None
    if isinstance(v, h5py.Reference):
        return f[v].name if v else None
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return attr_json(f, v[()])
        return [attr_json(f, x) for x in v]
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).rstrip(b"\0").decode("utf-8", "replace")
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        # JSON integers stop at int64: a larger uint64 is a decimal string.
        return int(v) if int(v) <= 2**63 - 1 else str(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return x
    return v


def same_json(want, got):
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return want == got
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(same_json(a, b) for a, b in zip(want, got))
    if isinstance(want, dict) and isinstance(got, dict):
        return sorted(want) == sorted(got) and all(same_json(want[k], got[k]) for k in want)
    return want == got


def same_array(want, got):
    """Same shape and values (NaN equals NaN; structured arrays field by field)."""
    import numpy as np
    want, got = np.asarray(want), np.asarray(got)
    if want.shape != got.shape:
        return False
    if want.dtype.names is not None:
        if got.dtype.names is None or list(got.dtype.names) != list(want.dtype.names):
            return False
        return all(same_array(want[n], got[n]) for n in want.dtype.names)
    if want.dtype.kind == "O" or got.dtype.kind == "O":
        return [x for x in want.flat] == [x for x in got.flat]
    if want.dtype.kind == "f" and got.dtype.kind == "f":
        return bool(np.array_equal(want, got, equal_nan=True))
    return bool(np.array_equal(want, got))


def brief(a, n=6):
    import numpy as np
    a = np.asarray(a)
    return "%s %s %s" % (a.dtype, a.shape, np.array2string(a.reshape(-1)[:n], threshold=n))


class Obj:
    """One object of the file as h5py sees it."""

    def __init__(self, path, kind, **kw):
        self.path, self.kind = path, kind  # kind: group, dataset, external
        self.__dict__.update(kw)


class Model:
    """Everything h5py says about the local file."""

    def __init__(self, local):
        import h5py
        self.local = local
        self.objects = {}
        self.f = h5py.File(local, "r")
        self._walk(self.f, "/")
        self.datasets = {p: o for p, o in self.objects.items() if o.kind == "dataset"}
        self.groups = {p: o for p, o in self.objects.items() if o.kind == "group"}

    def _walk(self, g, path):
        import h5py
        self.objects[path] = Obj(path, "group", attrs=self._attrs(g))
        for name in g:
            child = (path.rstrip("/") + "/" + name)
            link = g.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                self.objects[child] = Obj(child, "external", target=(link.filename, link.path))
                continue
            obj = g[name]  # soft links followed
            if isinstance(obj, h5py.Group):
                if isinstance(link, h5py.SoftLink):
                    raise Fatal("test data: soft link to a group not modelled: %s" % child)
                self._walk(obj, child)
            else:
                self.objects[child] = self._dataset(child, obj)

    def _attrs(self, obj):
        return {k: attr_json(self.f, obj.attrs[k]) for k in obj.attrs}

    def _dataset(self, path, ds):
        import h5py
        import numpy as np
        dcpl = ds.id.get_create_plist()
        layout = {h5py.h5d.CHUNKED: "chunked", h5py.h5d.CONTIGUOUS: "contiguous",
                  h5py.h5d.COMPACT: "compact"}[dcpl.get_layout()]
        kind = kind_of(ds)
        shape = tuple(ds.shape)
        if layout == "chunked":
            chunks = tuple(ds.chunks)
        elif layout == "compact" or len(shape) == 0:
            chunks = shape
        else:
            row = ds.dtype.itemsize * math.prod(shape[1:])
            chunks = (min(max(1, (16 << 20) // max(row, 1)), shape[0]),) + shape[1:]
        o = Obj(path, "dataset", ds=ds, dtype=ds.dtype, vkind=kind, shape=shape, chunks=chunks,
                layout=layout, attrs=self._attrs(ds))
        if kind in ("vlen", "regionref"):
            o.values = None
            return o
        o.values = h5_values(self.f, ds)
        if kind in ("vstr", "ref"):
            o.fill = ""
        else:
            o.fill = ds.fillvalue
        o.pdtype = packed_dtype(ds.dtype) if kind in ("fixed", "compound") else None
        o.unallocated = set()
        if layout == "chunked" and all(chunks):
            grid = [-(-s // c) for s, c in zip(shape, chunks)]
            for idx in np.ndindex(*grid):
                info = ds.id.get_chunk_info_by_coord(tuple(i * c for i, c in zip(idx, chunks)))
                if info.byte_offset is None:
                    o.unallocated.add(".".join(map(str, idx)))
        return o

    def chunk_keys(self, o):
        """(key, region slices) of every chunk of dataset o."""
        import numpy as np
        if len(o.shape) == 0:
            return [("0", ())]
        if 0 in o.shape or 0 in o.chunks:
            return []
        grid = [-(-s // c) for s, c in zip(o.shape, o.chunks)]
        out = []
        for idx in np.ndindex(*grid):
            region = tuple(slice(i * c, min((i + 1) * c, s))
                           for i, c, s in zip(idx, o.chunks, o.shape))
            out.append((".".join(map(str, idx)), region))
        return out

    def padded_chunk(self, o, region):
        """The chunk's values over its full shape, cells outside filled."""
        import numpy as np
        if len(o.shape) == 0:
            return np.asarray(o.values)
        if o.vkind in ("vstr", "ref"):
            full = np.full(o.chunks, "", dtype=object)
        else:
            full = np.empty(o.chunks, dtype=o.pdtype)
            full[...] = np.asarray(o.fill, dtype=o.pdtype) if o.vkind == "fixed" else \
                np.zeros((), dtype=o.pdtype)
        inner = tuple(slice(0, r.stop - r.start) for r in region)
        full[inner] = o.values[region]
        return full


# ---------------------------------------------------------------- decoding answers

def vlen_utf8(body):
    """numcodecs VLenUTF8 bytes -> list of str; None when malformed."""
    if len(body) < 4:
        return None
    n = int.from_bytes(body[:4], "little")
    pos, out = 4, []
    for _ in range(n):
        if pos + 4 > len(body):
            return None
        ln = int.from_bytes(body[pos:pos + 4], "little")
        pos += 4
        if pos + ln > len(body):
            return None
        out.append(body[pos:pos + ln].decode("utf-8", "replace"))
        pos += ln
    return out if pos == len(body) else None


def decoded_array(o, body, shape):
    """A decoded chunk's bytes as an array of the given shape, or None."""
    import numpy as np
    n = math.prod(shape)
    if o.vkind in ("vstr", "ref"):
        strings = vlen_utf8(body)
        if strings is None or len(strings) != n:
            return None
        return np.array(strings, dtype=object).reshape(shape)
    if len(body) != n * o.pdtype.itemsize:
        return None
    return np.frombuffer(body, dtype=o.pdtype).reshape(shape)


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def error_message(body):
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""


# ---------------------------------------------------------------- access log

ACCESS_RE = re.compile(r'method=(\S+) target="([^"]*)" status=(\d+)')


class AccessLog:
    def __init__(self, path):
        self.path = path

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def sync(self, d):
        """Waits (bounded) until the lines of every request answered so far
        are in the log: a line is written once its answer is out, so a
        marker request's line comes after theirs."""
        self.seq = getattr(self, "seq", 0) + 1
        tag = "/v1/health?sync=%d" % self.seq
        d.get("/v1/health", sync=str(self.seq))
        check(self.since(0, tag, 1), "access log: no line for %s within 5 s" % tag)
        time.sleep(0.2)  # lines of other connections finishing at the same moment

    def since(self, mark, prefix, expect_at_least=0):
        """(target, status) of every logged request whose target starts with
        prefix, after byte mark; waits (bounded) for at least that many."""
        deadline = time.monotonic() + 5
        while True:
            out = []
            try:
                with open(self.path, errors="replace") as fh:
                    fh.seek(mark)
                    for line in fh:
                        m = ACCESS_RE.search(line)
                        if m and m.group(2).startswith(prefix):
                            out.append((urllib.parse.unquote(m.group(2)), int(m.group(3))))
            except OSError:
                pass
            if len(out) >= expect_at_least or time.monotonic() > deadline:
                return out
            time.sleep(0.1)


# ---------------------------------------------------------------- zarr

def zarr_id(url):
    return base64.urlsafe_b64encode(url.encode()).rstrip(b"=").decode()


def zarr_hierarchy(root):
    """{'/path': 'group'|'array'} of everything zarr sees under root."""
    import zarr
    out = {"/": "group"}

    def visit(name, obj):
        out["/" + name] = "group" if isinstance(obj, zarr.hierarchy.Group) else "array"
    root.visititems(visit)
    return out


def probe_hierarchy(where, model, root):
    """What zarr finds at each path of the file when it cannot list (HTTP
    without consolidated metadata): it opens each path by name."""
    import zarr
    seen = {"/": "group"}
    for p in sorted(model.objects):
        if p == "/":
            continue
        try:
            node = root[p[1:]]
        except KeyError:
            continue
        except Exception as e:  # noqa: BLE001
            # An error is a fine answer for an object without a Zarr form.
            check(p in NO_ZARR_FORM, "%s: opening %s failed: %s: %s"
                  % (where, p, type(e).__name__, e))
            continue
        seen[p] = "group" if isinstance(node, zarr.hierarchy.Group) else "array"
    return seen


def zarr_pass(where, d, model, root, alog, mark, prefix, consolidated):
    """Every object h5py knows against what zarr reads from root."""
    import numpy as np
    if consolidated:
        seen = zarr_hierarchy(root)
    else:
        seen = probe_hierarchy(where, model, root)
    want = {p: ("group" if o.kind == "group" else "array")
            for p, o in model.objects.items() if p not in NO_ZARR_FORM}
    log("%s: objects without a Zarr form: %s (expected %s)"
        % (where, sorted(set(model.objects) - set(seen)), sorted(NO_ZARR_FORM)))
    missing = sorted(set(want) - set(seen))
    extra = sorted(set(seen) - set(want))
    check(not missing, "%s: objects with a Zarr form that zarr does not see: %s"
          % (where, missing))
    check(not extra, "%s: zarr sees objects that must have no Zarr form (or do not exist): %s"
          % (where, [(p, NO_ZARR_FORM.get(p, "not in the file")) for p in extra]))
    for p in extra:
        if seen[p] == "array":
            try:
                got = root[p[1:]][...]
                check(False, "%s: %s (%s) read as %s" % (where, p, NO_ZARR_FORM.get(p),
                                                         brief(got)))
            except Exception as e:  # noqa: BLE001
                log("%s: reading %s fails as it should have no Zarr form: %s: %s"
                    % (where, p, type(e).__name__, str(e)[:120]))
    for p in sorted(set(want) & set(seen)):
        check(want[p] == seen[p], "%s: %s is a %s in zarr, expected a %s"
              % (where, p, seen[p], want[p]))
    narrays = 0
    for p, o in sorted(model.objects.items()):
        if p not in seen or want.get(p) != seen[p]:
            continue
        node = root if p == "/" else root[p[1:]]
        try:
            got_attrs = node.attrs.asdict()
        except Exception as e:  # noqa: BLE001
            got_attrs = "%s: %s" % (type(e).__name__, e)
        check(same_json(o.attrs, got_attrs), "%s: attrs of %s: expected %s, got %s"
              % (where, p, o.attrs, got_attrs))
        if o.kind != "dataset":
            continue
        narrays += 1
        check(tuple(node.shape) == o.shape, "%s: %s shape: expected %s, got %s"
              % (where, p, o.shape, node.shape))
        if o.vkind in ("vstr", "ref"):
            check(node.dtype == np.dtype(object), "%s: %s dtype: expected object, got %s"
                  % (where, p, node.dtype))
        else:
            check(node.dtype == o.pdtype, "%s: %s dtype: expected %s, got %s"
                  % (where, p, o.pdtype, node.dtype))
        try:
            got = node[...]
        except Exception as e:  # noqa: BLE001 - a failed read is a failure, not a crash
            check(False, "%s: reading %s failed: %s: %s" % (where, p, type(e).__name__, e))
            continue
        check(same_array(o.values, got), "%s: values of %s differ: expected %s, got %s"
              % (where, p, brief(o.values), brief(got)))
    log("%s: %d objects, %d arrays compared" % (where, len(seen), narrays))

    alog.sync(d)
    reqs = alog.since(mark, prefix)
    keys = [(t[len(prefix):], st) for t, st in reqs]
    meta = [(k, st) for k, st in keys if k.split("/")[-1].startswith(".")]
    zmeta = [st for k, st in meta if k == ".zmetadata"]
    if consolidated:
        check(zmeta == [200], "%s: .zmetadata must be fetched once (200), got statuses %s"
              % (where, zmeta))
        others = [k for k, _ in meta if k != ".zmetadata"]
        check(not others, "%s: consolidated open fetched other metadata keys: %s"
              % (where, others[:10]))
    else:
        bad = [(k, st) for k, st in meta if st not in (200, 404) and not
               (st == 422 and "/" + k.rpartition("/")[0] in NO_ZARR_FORM)]
        check(not bad, "%s: metadata keys that failed: %s" % (where, bad[:10]))
    chunks = [(k, st) for k, st in keys if not k.split("/")[-1].startswith(".")]
    failed = [(k, st) for k, st in chunks if st not in (200, 404)]
    check(not failed, "%s: chunk requests that failed (zarr then fills them silently): %s"
          % (where, failed[:10]))
    wrong404 = []
    for k, st in chunks:
        if st != 404:
            continue
        path, _, key = k.rpartition("/")
        o = model.objects.get("/" + path)
        if o is None or o.kind != "dataset" or key not in getattr(o, "unallocated", ()):
            wrong404.append(k)
    check(not wrong404, "%s: 404 for chunks that were written (zarr shows fill values "
          "instead of data): %s" % (where, wrong404[:10]))
    n404 = sum(1 for _, st in chunks if st == 404)
    log("%s: %d chunk requests (%d answered 404, all never written), %d metadata requests"
        % (where, len(chunks), n404, len(meta)))
    check(len(chunks) > 0, "%s: no chunk request reached the daemon" % where)


class AsciiMetadata(collections.abc.MutableMapping):
    """A read-only mapping over an fsspec mapper whose metadata documents are
    re-encoded with only ASCII characters (\\u escapes)."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __getitem__(self, key):
        value = self.mapper[key]
        if key.rsplit("/", 1)[-1] in (".zmetadata", ".zattrs", ".zarray", ".zgroup"):
            value = json.dumps(json.loads(value.decode("utf-8"))).encode("ascii")
        return value

    def __contains__(self, key):
        try:
            self[key]
            return True
        except KeyError:
            return False

    def __iter__(self):
        return iter(self.mapper)

    def __len__(self):
        return len(self.mapper)

    def __setitem__(self, key, value):
        raise PermissionError("read-only")

    def __delitem__(self, key):
        raise PermissionError("read-only")


def storage_options():
    import aiohttp
    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=HTTP_TIMEOUT)}}


def zarr_checks(d, model, url, alog):
    import fsspec
    import zarr
    st, _, body = d.get("/v1/zarr", url=url)
    doc = json.loads(body) if st == 200 else {}
    base = doc.get("base")
    want_base = "/zarr/v2/%s/" % zarr_id(url)
    check(st == 200 and base == want_base, "/v1/zarr: expected 200 {\"base\": %r}, got %d %s"
          % (want_base, st, body[:200]))
    base = want_base
    httpbase = "http://127.0.0.1:%d%s" % (d.port, base)
    prefix = base

    opens = (
        ("zarr (URL string)", True,
         lambda: zarr.open_consolidated(httpbase, mode="r", storage_options=storage_options())),
        ("zarr (fsspec mapper)", True,
         lambda: zarr.open_consolidated(fsspec.get_mapper(httpbase, **storage_options()),
                                        mode="r")),
        # zarr 2.13's FSStore (what the two opens above use) turns a chunk
        # that fails with any HTTP error into fill values; through KVStore
        # every error but 404 reaches the caller.  The recipe to recommend.
        ("zarr (KVStore over fsspec mapper)", True,
         lambda: zarr.open_consolidated(
             zarr.storage.KVStore(fsspec.get_mapper(httpbase, **storage_options())), mode="r")),
        ("zarr (unconsolidated)", False,
         lambda: zarr.open_group(fsspec.get_mapper(httpbase, **storage_options()), mode="r")),
    )
    for where, consolidated, opener in opens:
        alog.sync(d)
        mark = alog.mark()
        try:
            root = opener()
            root.attrs.asdict()
        except Exception as e:  # noqa: BLE001
            check(False, "%s: zarr cannot open the daemon's Zarr view: %s: %s"
                  % (where, type(e).__name__, e))
            alog.sync(d)
            mark = alog.mark()
            # Go on through a store that makes metadata ASCII (zarr 2 decodes
            # it as ASCII), so that the other checks still report.
            store = zarr.storage.KVStore(
                AsciiMetadata(fsspec.get_mapper(httpbase, **storage_options())))
            root = (zarr.open_consolidated(store, mode="r") if consolidated
                    else zarr.open_group(store, mode="r"))
            where += " [ASCII workaround]"
        zarr_pass(where, d, model, root, alog, mark, prefix, consolidated)

    # The objects without a Zarr form, asked for directly: no metadata, no data.
    for p, why in sorted(NO_ZARR_FORM.items()):
        for name in (".zarray", ".zgroup", "0"):
            st, _, body = d.request("GET", base + p[1:] + "/" + name)
            check(st in (404, 422) and error_code(body) is not None,
                  "zarr view of %s (%s), key %s: expected a 404/422 JSON error, got %d %r"
                  % (p, why, name, st, body[:120]))
    st, _, body = d.request("GET", base + ".zmetadata")
    if check(st == 200, ".zmetadata: status %d" % st):
        md = json.loads(body).get("metadata", {})
        check(json.loads(body).get("zarr_consolidated_format") == 1,
              ".zmetadata: zarr_consolidated_format must be 1")
        leaked = [k for k in md if any(k.startswith(p[1:] + "/") for p in NO_ZARR_FORM)]
        check(not leaked, ".zmetadata lists keys of objects without a Zarr form: %s" % leaked)
        check(b"12345" not in body and b"must never be read" not in body,
              ".zmetadata shows something of other.h5 (the external link was followed)")
    st, _, body = d.request("GET", "/zarr/v2/!!notbase64/.zmetadata")
    check(st == 400 and error_code(body) == "bad_request",
          "zarr view with a malformed id: expected 400 bad_request, got %d %r" % (st, body[:120]))


# ---------------------------------------------------------------- /v1/slice

def numpy_index(select, rank):
    """The NumPy index for a select string (the contract's syntax)."""
    items = [] if select == "" else select.split(",")
    idx = []
    for it in items:
        if ":" in it:
            parts = [int(x) if x != "" else None for x in it.split(":")]
            idx.append(slice(*parts))
        else:
            idx.append(int(it))
    return tuple(idx) + (slice(None),) * (rank - len(idx))


def slice_checks(d, model, url):
    import numpy as np
    nsel = 0
    for p, sels in sorted(SELECTIONS.items()):
        o = model.datasets.get(p)
        if o is None:
            if p not in model.objects:
                log("slice: %s not in the file (left out by make_nwb_like.py)" % p)
            continue
        log("slice %s: %s" % (p, " | ".join(repr(x) for x in sels)))
        for sel in sels:
            nsel += 1
            want = np.asarray(o.values[numpy_index(sel, len(o.shape))])
            where = "slice %s[%s]" % (p, sel)
            # npy
            st, hdr, body = d.get("/v1/slice", url=url, path=p, select=sel, format="npy")
            if o.vkind in ("vstr", "ref"):
                check(st == 422 and error_code(body) == "unsupported",
                      "%s npy of variable-length values: expected 422 unsupported, got %d %r"
                      % (where, st, body[:150]))
            elif check(st == 200, "%s npy: status %d %r" % (where, st, body[:200])):
                try:
                    got = np.load(io.BytesIO(body), allow_pickle=False)
                except Exception as e:  # noqa: BLE001
                    check(False, "%s npy: numpy.load failed: %s" % (where, e))
                    got = None
                if got is not None:
                    check(got.dtype == o.pdtype, "%s npy dtype: expected %s, got %s"
                          % (where, o.pdtype, got.dtype))
                    check(same_array(want, got), "%s npy values: expected %s, got %s"
                          % (where, brief(want), brief(got)))
            # raw
            st, hdr, body = d.get("/v1/slice", url=url, path=p, select=sel, format="raw")
            if o.vkind in ("vstr", "ref"):
                check(st == 422 and error_code(body) == "unsupported",
                      "%s raw of variable-length values: expected 422 unsupported, got %d %r"
                      % (where, st, body[:150]))
            elif check(st == 200, "%s raw: status %d %r" % (where, st, body[:200])):
                dstr = hdr.get("x-h5chunkd-dtype", "")
                sstr = hdr.get("x-h5chunkd-shape")
                # libmicrohttpd cannot send an empty header value: a rank-0
                # result may come without X-H5chunkd-Shape.
                if sstr is None and want.ndim == 0:
                    sstr = ""
                try:
                    dt = np.dtype(ast.literal_eval(dstr) if dstr.startswith("[") else dstr)
                    shape = tuple(int(x) for x in sstr.split(",")) if sstr else ()
                    got = np.frombuffer(body, dtype=dt).reshape(shape)
                except Exception as e:  # noqa: BLE001
                    check(False, "%s raw: headers dtype %r shape %r do not describe %d bytes: %s"
                          % (where, dstr, sstr, len(body), e))
                    got = None
                if got is not None:
                    check(dt == o.pdtype, "%s raw dtype header: expected %s, got %r"
                          % (where, o.pdtype.str if o.pdtype.names is None else o.pdtype, dstr))
                    check(sstr == ",".join(map(str, want.shape)),
                          "%s raw X-H5chunkd-Shape: expected %r, got %r"
                          % (where, ",".join(map(str, want.shape)), sstr))
                    check(same_array(want, got), "%s raw values: expected %s, got %s"
                          % (where, brief(want), brief(got)))
            # json
            st, hdr, body = d.get("/v1/slice", url=url, path=p, select=sel, format="json")
            if want.size > JSON_CAP:
                check(st == 413 and error_code(body) == "too_large",
                      "%s json of %d values: expected 413 too_large, got %d"
                      % (where, want.size, st))
                continue
            if not check(st == 200, "%s json: status %d %r" % (where, st, body[:200])):
                continue
            try:
                doc = json.loads(body)
            except ValueError as e:
                check(False, "%s json: not JSON (%s): %r" % (where, e, body[:200]))
                continue
            if o.vkind in ("vstr", "ref"):
                want_json = want.tolist()
                want_dtype = "|O"
            elif o.vkind == "compound":
                # One object per element, fields by name (docs/api.md).
                def row(r):
                    return {n: r[n].decode() if isinstance(r[n], bytes) else r[n].tolist()
                            for n in want.dtype.names}
                want_json = row(want[()]) if want.ndim == 0 else [row(r) for r in want]
                want_dtype = doc.get("dtype") if isinstance(doc.get("dtype"), list) else "a list"
            else:
                want_json = attr_json(None, want)
                want_dtype = o.pdtype.str
            check(doc.get("shape") == list(want.shape), "%s json shape: expected %s, got %s"
                  % (where, list(want.shape), doc.get("shape")))
            check(doc.get("dtype") == want_dtype, "%s json dtype: expected %r, got %r"
                  % (where, want_dtype, doc.get("dtype")))
            check(same_json(want_json, doc.get("data")), "%s json data: expected %s, got %s"
                  % (where, str(want_json)[:200], str(doc.get("data"))[:200]))
    log("slice: %d selections, each as npy, raw and json" % nsel)

    # The JSON cap at N and N+1 values.
    p = "/units/spike_times"
    st, _, body = d.get("/v1/slice", url=url, path=p, select="0:%d" % JSON_CAP, format="json")
    ok = st == 200
    if ok:
        doc = json.loads(body)
        ok = doc.get("shape") == [JSON_CAP] and len(doc.get("data", [])) == JSON_CAP and \
            doc["data"][-1] == float(model.datasets[p].values[JSON_CAP - 1])
    check(ok, "slice json of exactly %d values: expected 200 with them all, got %d %r"
          % (JSON_CAP, st, body[:150]))
    st, _, body = d.get("/v1/slice", url=url, path=p, select="0:%d" % (JSON_CAP + 1),
                        format="json")
    check(st == 413 and error_code(body) == "too_large",
          "slice json of %d values: expected 413 too_large, got %d %r"
          % (JSON_CAP + 1, st, body[:150]))


def slice_error_checks(d, model, url):
    p = "/acquisition/ElectricalSeries/data"
    cases = [("1:2:0", 400, "bad_request"), ("a", 400, "bad_request"),
             ("1,2,3", 400, "bad_request"), ("20000", 400, "bad_request"),
             ("-20001", 400, "bad_request"), ("::-1", 400, "bad_request"),
             ("1:2:", None, None), ("0:1,,", 400, "bad_request"), ("1 ", 400, "bad_request"),
             ("9" * 30, 400, "bad_request"), ("0:" + "9" * 30, 400, "bad_request")]
    for sel, want_st, want_code in cases:
        st, _, body = d.get("/v1/slice", url=url, path=p, select=sel, format="json")
        if want_st is None:
            check(st == 200, "slice select %r (empty step = 1): expected 200, got %d %r"
                  % (sel, st, body[:150]))
            continue
        check(st == want_st and error_code(body) == want_code,
              "slice select %r: expected %d %s, got %d %r" % (sel, want_st, want_code, st,
                                                             body[:150]))
    for params, what in (({"url": url, "path": p, "select": "0", "format": "xml"}, "format=xml"),
                         ({"url": url, "select": "0"}, "no path"),
                         ({"path": p, "select": "0"}, "no url")):
        st, _, body = d.get("/v1/slice", **params)
        check(st == 400 and error_code(body) == "bad_request",
              "slice %s: expected 400 bad_request, got %d %r" % (what, st, body[:150]))
    st, _, body = d.get("/v1/slice", url=url, path="/acquisition", format="json")
    check(st in (400, 404, 422) and error_code(body) is not None,
          "slice of a group: expected a 4xx JSON error, got %d %r" % (st, body[:150]))
    st, _, body = d.get("/v1/slice", url=url, path="/no/such/thing")
    check(st == 404 and error_code(body) == "not_found",
          "slice of a missing object: expected 404 not_found, got %d %r" % (st, body[:150]))
    # Default max_slice_bytes (256M) is far above this file; the small limit is
    # checked on the second daemon.  Types that cannot be decoded:
    for p in ("/analysis/ragged", "/analysis/region_refs"):
        for fmt in ("npy", "raw", "json"):
            st, _, body = d.get("/v1/slice", url=url, path=p, format=fmt)
            check(st == 422 and error_code(body) == "unsupported",
                  "slice %s format=%s: expected 422 unsupported, got %d %r"
                  % (p, fmt, st, body[:150]))


def small_limit_checks(d, model, url):
    """Second daemon: max_slice_bytes = SMALL_SLICE; bool dataset, 1 byte a value."""
    import numpy as np
    p = "/intervals/trials/correct"
    want = model.datasets[p].values
    st, hdr, body = d.get("/v1/slice", url=url, path=p, select="0:%d" % SMALL_SLICE,
                          format="raw")
    check(st == 200 and len(body) == SMALL_SLICE and
          same_array(want[:SMALL_SLICE], np.frombuffer(body, dtype="|b1")),
          "slice of exactly max_slice_bytes (%d): expected 200 with the values, got %d (%d bytes)"
          % (SMALL_SLICE, st, len(body)))
    for fmt in ("raw", "npy", "json"):
        st, _, body = d.get("/v1/slice", url=url, path=p, select="0:%d" % (SMALL_SLICE + 1),
                            format=fmt)
        check(st == 413 and error_code(body) == "too_large",
              "slice of max_slice_bytes + 1 (format=%s): expected 413 too_large, got %d %r"
              % (fmt, st, body[:150]))
    st, _, body = d.get("/v1/slice", url=url, path="/acquisition/ElectricalSeries/data",
                        format="npy")
    check(st == 413 and error_code(body) == "too_large",
          "slice of the whole ElectricalSeries (1.3 MB) over a %d-byte limit: expected 413, "
          "got %d" % (SMALL_SLICE, st))


# ---------------------------------------------------------------- decode=1

def decode_checks(d, model, url):
    ndone = nfill = 0
    for p, o in sorted(model.datasets.items()):
        if o.vkind in ("vlen", "regionref"):
            st, _, body = d.get("/v1/chunk", url=url, path=p, key="0", decode="1")
            check(st == 422 and error_code(body) == "unsupported",
                  "decode of %s (%s): expected 422 unsupported, got %d %r"
                  % (p, o.vkind, st, body[:150]))
            st, _, body = d.post_chunks({"url": url, "path": p, "keys": ["0"], "decode": True})
            if st == 200:
                try:
                    frames = h5.parse_frames(body)
                except h5.FrameError as e:
                    frames = None
                    check(False, "batch decode of %s: %s" % (p, e))
                check(frames is not None and len(frames) == 1 and frames[0][0].get("status") == 422
                      and frames[0][0].get("length") == 0 and frames[0][0].get("error") ==
                      "unsupported",
                      "batch decode of %s (%s): expected one 422 unsupported frame without "
                      "data, got %r" % (p, o.vkind, frames))
            else:
                check(st == 422 and error_code(body) == "unsupported",
                      "batch decode of %s: expected 422 or a 422 frame, got %d %r"
                      % (p, st, body[:150]))
            continue
        keys = model.chunk_keys(o)
        log("decode %s (%s, %s, %s): %d chunks, %d never written"
            % (p, o.layout, o.pdtype if o.pdtype is not None else "|O",
               ",".join(f for f in o.ds._filters) or "no filter", len(keys),
               len(o.unallocated)))
        expect = {}
        for key, region in keys:
            expect[key] = model.padded_chunk(o, region)
            st, _, body = d.get("/v1/chunk", url=url, path=p, key=key, decode="1")
            where = "decode %s key %s" % (p, key)
            if not check(st == 200, "%s: status %d %r" % (where, st, body[:200])):
                continue
            got = decoded_array(o, body, expect[key].shape)
            check(got is not None and same_array(expect[key], got),
                  "%s: expected %s, got %s" % (where, brief(expect[key]),
                                               brief(got) if got is not None else
                                               "%d undecodable bytes" % len(body)))
            ndone += 1
            if key in o.unallocated:
                nfill += 1
                st, _, body = d.get("/v1/chunk", url=url, path=p, key=key)
                check(st == 404 and error_code(body) == "chunk_not_allocated",
                      "%s without decode: expected 404 chunk_not_allocated, got %d" % (where, st))
        if not keys:
            continue
        st, _, body = d.post_chunks({"url": url, "path": p, "keys": [k for k, _ in keys],
                                     "decode": True})
        where = "batch decode %s" % p
        if not check(st == 200, "%s: status %d %r" % (where, st, body[:200])):
            continue
        try:
            frames = h5.parse_frames(body)
        except h5.FrameError as e:
            check(False, "%s: %s" % (where, e))
            continue
        got_keys = sorted(hdr.get("key") for hdr, _ in frames)
        check(got_keys == sorted(expect), "%s: frame keys: expected %s, got %s"
              % (where, sorted(expect)[:8], got_keys[:8]))
        for hdr, payload in frames:
            k = hdr.get("key")
            if k not in expect:
                continue
            if not check(hdr.get("status") == 200, "%s key %s: frame status %r (%r)"
                         % (where, k, hdr.get("status"), hdr)):
                continue
            got = decoded_array(o, payload, expect[k].shape)
            check(got is not None and same_array(expect[k], got), "%s key %s: expected %s, got %s"
                  % (where, k, brief(expect[k]), brief(got) if got is not None else
                     "%d undecodable bytes" % len(payload)))
    log("decode: %d chunks checked by GET and batch (%d never written, served as fill)"
        % (ndone, nfill))
    check(nfill >= 90, "decode: expected the test data's ~90 chunks never written, saw %d" % nfill)

    # decode must be 0 or 1 / a boolean
    st, _, body = d.get("/v1/chunk", url=url, path="/analysis/sparse", key="0.0", decode="yes")
    check(st == 400 and error_code(body) == "bad_request",
          "decode=yes: expected 400 bad_request, got %d %r" % (st, body[:150]))
    st, _, body = d.post_chunks({"url": url, "path": "/analysis/sparse", "keys": ["0.0"],
                                 "decode": "true"})
    check(st == 400 and error_code(body) == "bad_request",
          "\"decode\": \"true\" (a string): expected 400 bad_request, got %d %r" % (st, body[:150]))


# ---------------------------------------------------------------- external link, meta

def external_link_checks(d, model, url):
    for p, o in sorted(model.objects.items()):
        if o.kind != "external":
            continue
        fname, target = o.target
        st, _, body = d.get("/v1/meta", url=url, path=p)
        msg = error_message(body)
        check(st == 422 and error_code(body) == "unsupported" and fname in msg and target in msg,
              "meta of external link %s: expected 422 unsupported naming %s:%s, got %d %r"
              % (p, fname, target, st, body[:200]))
        for ep, params in (("/v1/chunk", {"key": "0"}), ("/v1/chunk", {"key": "0", "decode": "1"}),
                           ("/v1/slice", {"format": "json"})):
            st, _, body = d.get(ep, url=url, path=p, **params)
            check(st == 422 and error_code(body) == "unsupported" and b"12345" not in body,
                  "%s %s on external link %s: expected 422 unsupported, got %d %r"
                  % (ep, params, p, st, body[:150]))
        st, _, body = d.get("/v1/meta", url=url, path=p + "/x")
        check(st == 422 and error_code(body) == "unsupported",
              "meta under external link %s/x: expected 422 unsupported, got %d %r"
              % (p, st, body[:150]))
    st, _, body = d.get("/v1/meta", url=url, path="/acquisition")
    members = json.loads(body).get("members") if st == 200 else None
    check(members is not None and "external_raw" in members and "data_link" in members,
          "meta /acquisition: the links must be listed as members, got %r" % members)
    st, _, body = d.get("/v1/meta", url=url, path="/acquisition/data_link")
    doc = json.loads(body) if st == 200 else {}
    check(st == 200 and doc.get("shape") == [20000, 32] and doc.get("dtype") == "<i2",
          "meta of the soft link: expected the target's dataset, got %d %r" % (st, body[:200]))


# ---------------------------------------------------------------- /v1/file + h5py

def file_checks(d, model, url):
    import fsspec
    import h5py
    furl = "http://127.0.0.1:%d/v1/file?url=%s" % (d.port, urllib.parse.quote(url, safe=""))
    n = 0
    with fsspec.open(furl, "rb", block_size=1 << 16, **storage_options()) as fh:
        with h5py.File(fh, "r") as rf:
            for p, o in sorted(model.datasets.items()):
                rd = rf[p]
                if o.values is None:  # vlen sequences, region references
                    if o.vkind == "vlen":
                        want = [list(x) for x in o.ds[()]]
                        got = [list(x) for x in rd[()]]
                        check(want == got, "h5py over /v1/file: %s: %s != %s" % (p, got, want))
                    else:
                        check(rd.shape == o.shape, "h5py over /v1/file: %s shape" % p)
                    continue
                got = h5_values(rf, rd)
                check(same_array(o.values, got), "h5py over /v1/file: %s: expected %s, got %s"
                      % (p, brief(o.values), brief(got)))
                got_attrs = {k: attr_json(rf, rd.attrs[k]) for k in rd.attrs}
                check(same_json(o.attrs, got_attrs), "h5py over /v1/file: attrs of %s" % p)
                n += 1
            link = rf.get("/acquisition/external_raw", getlink=True)
            check(isinstance(link, h5py.ExternalLink),
                  "h5py over /v1/file: /acquisition/external_raw is not an external link: %r"
                  % link)
    log("h5py over fsspec on /v1/file: %d datasets equal to the local file" % n)


# ---------------------------------------------------------------- main

def run(args, tmp):
    try:
        import aiohttp  # noqa: F401  (fsspec's HTTP file system)
        import fsspec  # noqa: F401
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as e:
        raise Skip("%s lacks a client library: %s" % (sys.executable, e))
    daemon_bin = h5.find_daemon(args.daemon)
    if not os.access(daemon_bin, os.X_OK):
        raise Fatal("daemon not built: %s" % daemon_bin)
    nginx_bin = args.nginx or os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx_bin, os.X_OK):
        raise Skip("nginx not found (%s)" % nginx_bin)
    srcdir = os.environ.get("TESTS_SRCDIR") or os.path.dirname(HERE)
    www = os.path.join(tmp, "www")
    subprocess.run([sys.executable, os.path.join(srcdir, "data", "make_nwb_like.py"), www],
                   check=True, timeout=120)
    with open(os.path.join(www, "manifest.json")) as fh:
        for n in json.load(fh).get("notes", []):
            log("test data: %s" % n)
    t0 = time.monotonic()
    model = Model(os.path.join(www, FILE))
    log("h5py: %d objects, %d datasets in %.1f s"
        % (len(model.objects), len(model.datasets), time.monotonic() - t0))
    check(set(p for p, o in model.objects.items() if o.kind == "external") ==
          {"/acquisition/external_raw"}, "test data: the external link")

    nginx = h5.Nginx(nginx_bin, www, os.path.join(tmp, "nginx"))
    nginx.start()
    url = nginx.base() + "/" + FILE
    alog_path = os.path.join(tmp, "access.log")
    config = os.path.join(tmp, "h5chunkd.conf")
    with open(config, "w") as fh:
        fh.write("revalidate_s = 3600\naccess_log = %s\n" % alog_path)
    d = h5.Daemon(daemon_bin, os.path.join(tmp, "cache"), os.path.join(tmp, "daemon.log"),
                  config)
    d.start()
    try:
        alog = AccessLog(alog_path)
        for step in (zarr_checks, slice_checks, slice_error_checks, decode_checks,
                     external_link_checks, file_checks):
            t = time.monotonic()
            try:
                if step is zarr_checks:
                    step(d, model, url, alog)
                else:
                    step(d, model, url)
            except Fatal:
                raise
            except Exception as e:  # noqa: BLE001 - one broken step must not hide the others
                import traceback
                traceback.print_exc()
                check(False, "%s: unexpected %s: %s" % (step.__name__, type(e).__name__, e))
            log("%s done in %.1f s" % (step.__name__, time.monotonic() - t))
            d.healthy(step.__name__)
    finally:
        d.stop()

    config2 = os.path.join(tmp, "h5chunkd-small.conf")
    with open(config2, "w") as fh:
        fh.write("revalidate_s = 3600\nmax_slice_bytes = %d\n" % SMALL_SLICE)
    d = h5.Daemon(daemon_bin, os.path.join(tmp, "cache2"), os.path.join(tmp, "daemon2.log"),
                  config2)
    d.start()
    try:
        small_limit_checks(d, model, url)
    finally:
        d.stop()
    model.f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", help="h5chunkd binary (default $H5CHUNKD_BIN)")
    ap.add_argument("--nginx", help="nginx binary (default $NGINX_BIN)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="h5cd-%s." % NAME)
    keep = args.keep or os.environ.get("KEEP_TMP") == "1"
    t0 = time.monotonic()
    rc = 0
    try:
        run(args, tmp)
    except Skip as e:
        log("SKIP: %s" % e)
        rc = 77
    except Fatal as e:
        check(False, str(e))
    except Exception as e:  # noqa: BLE001 - a harness error is a failure, with its traceback
        import traceback
        traceback.print_exc()
        check(False, "unexpected %s: %s" % (type(e).__name__, e))
    finally:
        h5._kill_all()
    if rc == 0 and h5._failures:
        rc = 1
        for f in sorted(os.listdir(tmp)):
            if f.endswith(".log") and f != "access.log":
                print("%s: ---- last lines of %s ----\n%s"
                      % (NAME, f, h5.tail(os.path.join(tmp, f))), file=sys.stderr)
    log("%d checks, %d failed, %.1f s" % (h5._checks, len(h5._failures), time.monotonic() - t0))
    if keep:
        log("temp dir kept: %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    log("PASS" if rc == 0 else "SKIP" if rc == 77 else "FAIL")
    return rc


if __name__ == "__main__":
    sys.exit(main())
