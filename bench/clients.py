"""clients.py - the benchmark's clients: one function per peer, run in a
worker process (a fresh interpreter, like an analysis process).

Each run starts from nothing but imported modules: a new connection, a new
file handle, no metadata.  The timed region covers opening the file and
reading the workload into NumPy values; the answer is then checked against
the reference digest (h5py on the local file) outside the timed region.

Peers:
  h5chunkd  the daemon's batch API: GET /v1/meta for the dataset (dtype,
            chunk shape, fill value), then one POST /v1/chunks with every
            key and "decode": true; a workload whose answer is its chunks
            joined reads each frame into its place in the result with the
            package's frame reader (h5chunkd.frames; as libhdf5 decodes into
            the caller's array), the others make each frame a NumPy array.
            Listing:
            the Zarr view's consolidated metadata (/zarr/v2/{id}/.zmetadata,
            one request) when the daemon serves it, else a walk of /v1/meta.
  seed      the algorithm of the project's seed (LINDI PR #123), straight to
            the URL: h5py over a file object with a 128 KiB block cache
            finds each chunk (serial get_chunk_info_by_coord lookups), the
            chunk ranges are coalesced (gap 256 KiB, at most 20 MiB per
            request) and fetched by 8 threads, each chunk decoded here
            (deflate, shuffle; never-written chunks are the fill value).
  ros3      h5py with libhdf5's ROS3 driver straight to the URL.
  fsspec    h5py over fsspec's HTTP file (defaults: 5 MiB "bytes" cache),
            used for the origin, the daemon's /v1/file mirror and the nginx
            slice cache alike.
The Python package's paths (python/h5chunkd, the "python" section):
  py-zarr   zarr.open(h5chunkd.zarr_store(url)): one batch request per zarr
            read.  The store holds the consolidated metadata already (one
            request when it is made), so zarr.open asks nothing more and
            lists groups from the store's index; open_consolidated would
            wrap it in zarr's own metadata store, which scans every key for
            each group it lists (docs/python.md, "Performance").
  zarr-http zarr.open_consolidated(Zarr view URL): zarr's FSStore over
            fsspec's HTTP file system, one (concurrent) request per chunk.
  py-h5py   h5py.File(h5chunkd.open(url)): libhdf5 over the /v1/file mirror
            with block-sized read-ahead.
"""
import base64
import gc
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import workloads

HTTP_TIMEOUT = 300
PY_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
PY_PEERS = ("py-zarr", "zarr-http", "py-h5py")
META_WALK_THREADS = 8

_manifest = None


def init_worker(manifest):
    """Pool initializer: imports now, so no run pays for them."""
    global _manifest
    _manifest = manifest
    import fsspec  # noqa: F401
    import fsspec.implementations.http  # noqa: F401
    import h5py  # noqa: F401
    try:
        import zarr  # noqa: F401
        if PY_PACKAGE not in sys.path:
            sys.path.insert(0, PY_PACKAGE)
        import h5chunkd  # noqa: F401
    except ImportError:
        pass  # the python section reports the failure


def ping(secs):
    time.sleep(secs)
    return True


# ------------------------------------------------------------------ h5chunkd

class Daemon:
    """A keep-alive HTTP/1.1 connection to the daemon."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)

    def close(self):
        self.conn.close()

    def get(self, target):
        self.conn.request("GET", target)
        r = self.conn.getresponse()
        body = r.read()
        return r.status, body

    def get_json(self, target):
        st, body = self.get(target)
        if st != 200:
            raise RuntimeError("GET %s: HTTP %d %s" % (target, st, body[:300]))
        return json.loads(body)

    def meta(self, url, path):
        q = urllib.parse.urlencode({"url": url, "path": path})
        return self.get_json("/v1/meta?" + q)

    def _post_chunks(self, url, path, keys, decode):
        """Sends one POST /v1/chunks; its response, once it said 200."""
        body = json.dumps({"url": url, "path": path, "keys": keys, "decode": decode})
        self.conn.request("POST", "/v1/chunks", body=body,
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        if r.status != 200:
            raise RuntimeError("POST /v1/chunks: HTTP %d %s" % (r.status, r.read()[:300]))
        return r

    def chunks_into(self, url, path, keys, out, per, fill):
        """A decoded batch read straight into its place in `out` (a C-ordered
        array, key i's values in bytes [i*per, (i+1)*per) of it), as libhdf5
        decodes into the caller's array: no buffer per frame, no copy after
        the last one.  Frames are read by the package's reader
        (h5chunkd.frames), which checks that every key comes once and
        nothing follows.  A never-written chunk becomes `fill`."""
        from h5chunkd.frames import read_frames
        r = self._post_chunks(url, path, keys, True)
        raw = out.reshape(-1).view(np.uint8)
        slot = {k: i for i, k in enumerate(keys)}

        def place(key, n):
            i = slot[key]
            return memoryview(raw[i * per:(i + 1) * per]) if n == per else None
        for f in read_frames(r, keys, into=place):
            if f.status == 200 and len(f.payload) == per:
                continue  # read into its place
            if f.status == 404 and f.error == "chunk_not_allocated":
                i = slot[f.key]
                raw[i * per:(i + 1) * per].view(out.dtype)[:] = fill
                continue
            raise RuntimeError("key %s: status %s error %s, %d bytes"
                               % (f.key, f.status, f.error, len(f.payload)))

    def chunks(self, url, path, keys, decode):
        """Returns {key: (status, payload)} for a batch."""
        r = self._post_chunks(url, path, keys, decode)
        out = {}
        for _ in range(len(keys)):
            line = r.readline()
            if not line:
                break
            hdr = json.loads(line)
            n = hdr["length"]
            payload = r.read(n) if n else b""
            if len(payload) != n:
                raise RuntimeError("short frame for key %s" % hdr["key"])
            out[hdr["key"]] = (hdr["status"], payload, hdr.get("error"))
        rest = r.read()
        if rest:
            raise RuntimeError("%d bytes after the last frame" % len(rest))
        return out


def _fill(meta, dtype):
    fv = meta.get("fill_value")
    if fv is None:
        return 0
    return np.array(fv).astype(dtype)


def _batch(d, url, spec, keyfn):
    meta = d.meta(url, spec["path"])
    dtype = np.dtype(meta["dtype"])
    cshape = tuple(meta["chunks"])
    keys = [keyfn(c, len(cshape)) for c in spec["chunks"]]
    frames = d.chunks(url, spec["path"], keys, True)
    out = []
    for k in keys:
        st, payload, err = frames.get(k, (None, None, "missing frame"))
        if st == 200:
            out.append(np.frombuffer(payload, dtype=dtype).reshape(cshape))
        elif st == 404 and err == "chunk_not_allocated":
            out.append(np.full(cshape, _fill(meta, dtype), dtype=dtype))
        else:
            raise RuntimeError("key %s: status %s error %s" % (k, st, err))
    return meta, out


def _key(c, ndim):
    return ".".join([str(c)] + ["0"] * (ndim - 1))


def _batch_joined(d, url, spec, keyfn):
    """A workload whose answer is its chunks joined along the first axis,
    each frame read into its place (Daemon.chunks_into)."""
    meta = d.meta(url, spec["path"])
    dtype = np.dtype(meta["dtype"])
    cshape = tuple(meta["chunks"])
    keys = [keyfn(c, len(cshape)) for c in spec["chunks"]]
    out = np.empty((len(keys) * cshape[0],) + cshape[1:], dtype=dtype)
    d.chunks_into(url, spec["path"], keys, out, int(np.prod(cshape)) * dtype.itemsize,
                  _fill(meta, dtype))
    return out


def h5chunkd_read(base, url, wl, spec):
    d = Daemon(base)
    try:
        if wl == "listing":
            return h5chunkd_list(d, url)
        if wl in JOINED:
            return _batch_joined(d, url, spec, _key)
        meta, parts = _batch(d, url, spec, _key)
        return _assemble(wl, parts)
    finally:
        d.close()


def zarr_base(d, url):
    """The Zarr view's base path, or None when the daemon does not serve it."""
    st, body = d.get("/v1/zarr?" + urllib.parse.urlencode({"url": url}))
    if st != 200:
        return None
    try:
        return json.loads(body)["base"]
    except (ValueError, KeyError):
        return None


LISTING_MODE = {"mode": None}  # "zmetadata" or "meta-walk", decided per worker


def h5chunkd_list(d, url):
    mode = LISTING_MODE["mode"]
    if mode in (None, "zmetadata"):
        enc = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        st, body = d.get("/zarr/v2/%s/.zmetadata" % enc)
        if st == 200:
            LISTING_MODE["mode"] = "zmetadata"
            md = json.loads(body)["metadata"]
            out = {}
            for k, v in md.items():
                if k.endswith(".zarray"):
                    p = "/" + k[:-len(".zarray")].rstrip("/")
                    out[p] = list(v["shape"])
            return out
        LISTING_MODE["mode"] = "meta-walk"
    return meta_walk(d, url)


def meta_walk(d, url):
    """Lists every dataset by walking /v1/meta breadth-first, a level's
    members asked for concurrently over a few connections."""
    out = {}
    local = threading.local()
    conns = []
    lock = threading.Lock()

    def meta(path):
        c = getattr(local, "d", None)
        if c is None:
            c = Daemon("http://%s:%d" % (d.host, d.port))
            local.d = c
            with lock:
                conns.append(c)
        return path, c.meta(url, path)

    level = ["/"]
    try:
        with ThreadPoolExecutor(META_WALK_THREADS) as ex:
            for _depth in range(64):
                if not level:
                    break
                nxt = []
                for path, m in ex.map(meta, level):
                    if m["kind"] == "dataset":
                        out[path] = list(m["shape"])
                    elif m["kind"] == "group":
                        base = path.rstrip("/")
                        nxt.extend(base + "/" + name for name in m["members"])
                level = nxt
    finally:
        for c in conns:
            c.close()
    return out


# ------------------------------------------------------------ h5py peers

def ros3_read(url, wl, spec):
    import h5py
    with h5py.File(url, "r", driver="ros3") as f:
        return workloads.read_h5py(f, wl, spec)


def fsspec_read(url, wl, spec):
    import fsspec
    import h5py
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    try:
        with fs.open(url, "rb") as fh, h5py.File(fh, "r") as f:
            return workloads.read_h5py(f, wl, spec)
    finally:
        s = getattr(fs, "_session", None)
        if s is not None:
            fs.close_session(fs.loop, s)


# ------------------------------------------------------------ the seed's algorithm

SEED_BLOCK = 128 * 1024
SEED_GAP = 256 * 1024
SEED_MAX = 20 * 1024 * 1024
SEED_THREADS = 8


class _Origin:
    """Keep-alive range GETs to one URL."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path + ("?" + u.query if u.query else "")
        self.conn = None
        self.size = None

    def get(self, lo, hi):
        """Bytes [lo, hi) (fewer at the end of the file)."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)
            try:
                self.conn.request("GET", self.path, headers={"Range": "bytes=%d-%d" % (lo, hi - 1)})
                r = self.conn.getresponse()
                body = r.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
                continue
            if r.status != 206:
                raise RuntimeError("origin answered %d to a range" % r.status)
            cr = r.getheader("Content-Range", "")
            self.size = int(cr.rsplit("/", 1)[1])
            return body
        raise RuntimeError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _BlockFile:
    """A read-only file object over HTTP with a cache of 128 KiB blocks."""

    def __init__(self, url):
        self.origin = _Origin(url)
        self.blocks = {}
        self.pos = 0
        self.block(0)

    def block(self, i):
        b = self.blocks.get(i)
        if b is None:
            b = self.blocks[i] = self.origin.get(i * SEED_BLOCK, (i + 1) * SEED_BLOCK)
        return b

    def readinto(self, buf):
        mv = memoryview(buf).cast("B")
        n = min(len(mv), max(0, self.origin.size - self.pos))
        done = 0
        while done < n:
            i, off = divmod(self.pos + done, SEED_BLOCK)
            b = self.block(i)
            k = min(n - done, len(b) - off)
            mv[done:done + k] = b[off:off + k]
            done += k
        self.pos += n
        return n

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.origin.size - self.pos
        buf = bytearray(max(0, n))
        return bytes(buf[:self.readinto(buf)])

    def seek(self, off, whence=0):
        self.pos = off if whence == 0 else self.pos + off if whence == 1 else self.origin.size + off
        return self.pos

    def tell(self):
        return self.pos

    def seekable(self):
        return True

    def readable(self):
        return True

    def close(self):
        self.origin.close()


def _seed_coalesce(ranges):
    """[(offset, size)] -> [(lo, hi)] requests: gap 256 KiB, at most 20 MiB."""
    out = []
    for off, size in sorted(ranges):
        if out and off - out[-1][1] <= SEED_GAP and off + size - out[-1][0] <= SEED_MAX:
            out[-1][1] = max(out[-1][1], off + size)
        else:
            out.append([off, off + size])
    return out


def _seed_decode(raw, filters, mask, dtype, cshape):
    import zlib
    data = raw
    for i in reversed(range(len(filters))):
        if mask & (1 << i):
            continue
        fid = filters[i]
        if fid == 1:  # deflate
            data = zlib.decompress(data)
        elif fid == 2:  # shuffle
            a = np.frombuffer(data, dtype=np.uint8)
            data = a.reshape(dtype.itemsize, -1).T.tobytes()
        else:
            raise RuntimeError("seed: filter %d not supported" % fid)
    return np.frombuffer(data, dtype=dtype).reshape(cshape)


def seed_read(url, wl, spec):
    import h5py
    bf = _BlockFile(url)
    try:
        with h5py.File(bf, "r") as f:
            if wl in ("listing", "attrs"):
                return workloads.read_h5py(f, wl, spec)
            d = f[spec["path"]]
            dcpl = d.id.get_create_plist()
            filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
            cshape, dtype = d.chunks, d.dtype
            fill = np.full(cshape, d.fillvalue, dtype=dtype)
            infos = []
            for c in spec["chunks"]:  # serial lookups: libhdf5 walks the index
                coord = (c * cshape[0],) + (0,) * (d.ndim - 1)
                infos.append(d.id.get_chunk_info_by_coord(coord))
        wanted = [(i.byte_offset, i.size) for i in infos if i.byte_offset is not None]
        fetched = {}
        local = threading.local()
        origins = []
        lock = threading.Lock()

        def fetch(r):
            o = getattr(local, "o", None)
            if o is None:
                o = local.o = _Origin(url)
                with lock:
                    origins.append(o)
            return r[0], o.get(r[0], r[1])

        try:
            with ThreadPoolExecutor(SEED_THREADS) as ex:
                for lo, body in ex.map(fetch, _seed_coalesce(wanted)):
                    fetched[lo] = body
        finally:
            for o in origins:
                o.close()
        starts = sorted(fetched)
        parts = []
        import bisect
        for i in infos:
            if i.byte_offset is None:
                parts.append(fill)
                continue
            lo = starts[bisect.bisect_right(starts, i.byte_offset) - 1]
            raw = fetched[lo][i.byte_offset - lo:i.byte_offset - lo + i.size]
            parts.append(_seed_decode(raw, filters, i.filter_mask, dtype, cshape))
        return _assemble(wl, parts)
    finally:
        bf.close()


JOINED = ("slab", "small", "frames", "m-adjacent")  # answers joined along the first axis


def _assemble(wl, parts):
    """A workload's answer from its chunks in key order (as read_h5py gives it)."""
    if wl in ("scattered", "m-scattered"):
        return parts
    if wl in JOINED:
        return np.concatenate(parts, axis=0)
    raise ValueError(wl)


# ------------------------------------------------- the Python package's paths

def read_zarr(root, wl, spec):
    """One workload's answer read through zarr from the open root group."""
    if wl == "listing":
        import zarr
        out = {}

        def visit(name, obj):
            if isinstance(obj, zarr.Array):
                out["/" + name] = list(obj.shape)
        root.visititems(visit)
        return out
    return workloads.read_h5py(_ZarrFile(root), wl, spec)


class _ZarrFile:
    """h5py-style paths ("/a/b") on a zarr group, for workloads.read_h5py."""

    def __init__(self, root):
        self.root = root

    def __getitem__(self, path):
        return self.root[path.lstrip("/")]


def pyzarr_read(base, url, wl, spec):
    import h5chunkd
    import zarr
    c = h5chunkd.Client(base)
    try:
        return read_zarr(zarr.open(c.zarr_store(url), mode="r"), wl, spec)
    finally:
        c.close()


def zarrhttp_read(base, url, wl, spec):
    import zarr
    enc = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    store = zarr.storage.FSStore("%s/zarr/v2/%s/" % (base, enc), mode="r",
                                 skip_instance_cache=True)
    try:
        return read_zarr(zarr.open_consolidated(store, mode="r"), wl, spec)
    finally:
        s = getattr(store.fs, "_session", None)
        if s is not None:
            store.fs.close_session(store.fs.loop, s)


def pyh5py_read(base, url, wl, spec):
    import h5chunkd
    import h5py
    c = h5chunkd.Client(base)
    try:
        with h5py.File(c.open(url), "r") as f:
            return workloads.read_h5py(f, wl, spec)
    finally:
        c.close()


PY_READERS = {"py-zarr": pyzarr_read, "zarr-http": zarrhttp_read, "py-h5py": pyh5py_read}


# ------------------------------------------------------------------- runs

def prime(task):
    """A first use of every client in this process, straight to the origin
    (no link, nothing cached that a run could use): the first aiohttp
    session, curl handle and libhdf5 driver set-up cost tens of ms that no
    analysis process pays twice."""
    res = {"peer": "prime", "wl": None, "ok": True, "error": None, "mode": None}
    start = time.monotonic()
    try:
        ros3_read(task["url"], "attrs", None)
        fsspec_read(task["url"], "attrs", None)
        d = Daemon(task["daemon"])
        d.get("/v1/health")
        d.close()
    except Exception as e:
        res["ok"], res["error"] = False, "prime: %s: %s" % (type(e).__name__, e)
    res["start"], res["end"] = start, time.monotonic()
    gc.collect()
    return res


def run_task(task):
    """One client's run.  task: peer, wl, url, daemon (base URL), t0 (a
    time.monotonic() to start at, shared by concurrent clients).  Returns
    start/end times, the digest check and the listing mode used."""
    t0 = task.get("t0")
    if t0 is not None:
        wait = t0 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    if task["peer"] == "prime":
        return prime(task)
    spec = _manifest["workloads"][task["wl"]]
    wl, peer, url = task["wl"], task["peer"], task["url"]
    res = {"peer": peer, "wl": wl, "ok": False, "error": None, "mode": None}
    start = time.monotonic()
    try:
        if peer == "h5chunkd":
            value = h5chunkd_read(task["daemon"], url, wl, spec)
            if wl == "listing":
                res["mode"] = LISTING_MODE["mode"]
        elif peer in PY_READERS:
            value = PY_READERS[peer](task["daemon"], url, wl, spec)
        elif peer == "ros3":
            value = ros3_read(url, wl, spec)
        elif peer == "seed":
            value = seed_read(url, wl, spec)
        else:
            value = fsspec_read(url, wl, spec)
        end = time.monotonic()
        got = workloads.digest(value)
        res["ok"] = got == spec["digest"]
        if not res["ok"]:
            res["error"] = "wrong values: digest %s, expected %s" % (got, spec["digest"])
    except Exception as e:  # reported in the results, never hidden
        end = time.monotonic()
        res["error"] = "%s: %s" % (type(e).__name__, str(e)[:400])
    res["start"], res["end"] = start, end
    # fsspec (2022.11) closes a dropped filesystem's session from a weakref
    # finalizer; if the cyclic collector runs it on fsspec's I/O thread, it
    # waits on that very thread and stalls the next run by 1-3 s.  Collect
    # here, outside the timed region, on this thread.
    value = None
    gc.collect()
    return res
