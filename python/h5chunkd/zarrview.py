"""zarrview.py - the daemon's Zarr v2 view of a remote file, read with the
batch API.  Shared by the zarr store (zarrstore.py) and the fsspec file
system (fs.py); needs neither zarr nor fsspec.

Metadata comes from the consolidated .zmetadata (one request, when the view
is made); every .zarray/.zgroup/.zattrs is then answered locally.  Chunks
are read with one POST /v1/chunks per dataset per call of fetch():

- a dataset whose .zarray names only zlib and shuffle (HDF5's deflate and
  shuffle, by far the most common) is read decoded under decode="auto" (the
  default): the daemon undoes them itself (libdeflate, about twice zlib's
  speed, on its own core while this process copies the frames in), and one
  copy of the decoded bytes is all zarr makes; numcodecs' zlib would first
  grow a fresh buffer per chunk and then copy it (docs/python.md,
  "Performance");
- any other compression codecs (blosc, zstd) are read raw, as stored: under
  "auto" zarr decodes them one chunk at a time, or, with auto_local (the zarr
  store, on a machine with more than one CPU), they are decoded here as with
  "local".  A codec this numcodecs lacks: the daemon decodes that dataset and
  the metadata zarr sees names no codec;
- decode="local" decodes here with numcodecs as frames arrive, by a pool of
  threads when cores are idle (zlib, blosc and zstd release the GIL), else
  in the reading thread; the metadata zarr sees then names no compression
  codec.  A chunk whose optional filter was skipped when it was written
  (filter_mask) just skips that codec;
- decode=False leaves decoding to zarr; a chunk with a skipped filter is
  then re-encoded here so it still matches the codecs (and so under "auto");
- decode=True has the daemon decode every chunk (lib/fastdecode.c, else
  libhdf5);
- any other dataset (no codecs, or only vlen-utf8) is read decoded, as the
  view serves it;
- with merge_small (the zarr store), an array of chunks under 64 KiB is
  shown with consecutive chunks merged along its first dimension (class
  Merge), read decoded by the daemon.

With drop_empty_attrs (the zarr store), a .zattrs holding {} is left out:
zarr reads a missing .zattrs as no attributes, and every key fewer is one
fewer string zarr compares in each of its listings (zarr's consolidated
store lists a group by scanning every key, so a walk of the hierarchy costs
groups x keys).

A chunk the daemon says was never written (404 chunk_not_allocated) is
missing (zarr fills it); every other failure raises ChunkError.
"""
import json
import os
import posixpath
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from . import urls
from .errors import ChunkError, DaemonError

META_NAMES = (".zarray", ".zgroup", ".zattrs")
TEXT_CODECS = ("vlen-utf8",)  # what the view applies to values it serves decoded
# What the daemon undoes in its own fast path (lib/fastdecode.c: deflate and
# shuffle, as the view names them); edge chunks and anything else there go to
# libhdf5, still decoded by the daemon.
DAEMON_CODECS = ("zlib", "shuffle")
# Chunk buffers kept by the process for reuse (_reusable_buffer): payloads of
# at least REUSE_MIN_BYTES, at most REUSE_POOL_BYTES in all.  Reuse needs
# reference counts that say nobody else holds a buffer (CPython).
REUSE_MIN_BYTES = 64 * 1024
REUSE_POOL_BYTES = 32 * 1024 * 1024
_REUSE_BUFFERS = sys.implementation.name == "cpython"


def _decode_threads():
    """Threads that decode chunks while frames arrive: $H5CHUNKD_DECODE_THREADS,
    else one per CPU up to 8; 0 (or one CPU) decodes in the reading thread."""
    v = os.environ.get("H5CHUNKD_DECODE_THREADS", "")
    if v.isdigit():
        return min(int(v), 64)
    n = os.cpu_count() or 1
    return min(8, n) if n > 1 else 0


DECODE_THREADS = _decode_threads()
CPUS = os.cpu_count() or 1


def _cores_idle():
    """Whether other threads would find a free core: a pool only pays when
    they do.  On busy cores every handoff to a worker waits for the
    scheduler, and decoding in the reading thread is faster (bench/).
    Linux says how many threads are runnable right now (this one among
    them); elsewhere the 1-minute load average, which lags by a minute."""
    try:
        with open("/proc/loadavg") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        return running < CPUS
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0] < CPUS - 1
    except OSError:
        return False

_pool = None
_pool_lock = threading.Lock()


def _decode_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="h5chunkd-decode")
        return _pool


_reuse_pool = []  # chunk buffers handed out before, for reuse (_reusable_buffer)
_reuse_pool_lock = threading.Lock()


def _reusable_buffer(nbytes):
    """A bytearray of nbytes for a chunk handed to zarr: one that an earlier
    read handed out and nobody holds any more (CPython: only the pool refers
    to it), else a new one, kept for later reads while the pool holds less
    than REUSE_POOL_BYTES.  A zarr read copies (or decodes) each chunk into
    its result and drops it; fresh buffers each read were page-faulted in
    again each time, as glibc returned them between reads (docs/python.md,
    "Performance").  Shared by every view of the process: a new store per
    read (as the bench's runs make) reuses them too."""
    with _reuse_pool_lock:
        for i in range(len(_reuse_pool)):
            # Two references: the pool's and getrefcount's argument.
            if len(_reuse_pool[i]) == nbytes and sys.getrefcount(_reuse_pool[i]) == 2:
                buf = _reuse_pool[i]  # a third reference before the lock is let go
                return buf
        buf = bytearray(nbytes)
        if _REUSE_BUFFERS and sum(len(b) for b in _reuse_pool) + nbytes <= REUSE_POOL_BYTES:
            _reuse_pool.append(buf)
        return buf


def _codecs(zarray):
    chain = list(zarray.get("filters") or [])
    if zarray.get("compressor"):
        chain.append(zarray["compressor"])
    return chain


class ZarrView:
    """One remote file's Zarr view, rooted at `path` inside the file."""

    def __init__(self, client, url, path=None, decode="auto", merge_small=False,
                 drop_empty_attrs=False, auto_local=False):
        if decode not in ("auto", "local", True, False):
            raise ValueError("decode must be 'auto', 'local', True or False")
        self.client, self.url = client, url
        self._merged = {}  # array dir -> Merge, for arrays shown with merged chunks
        self.root = (path or "").strip("/")
        self.force_decode = decode is True
        self.local_decode = decode == "local" and _have_numcodecs()
        auto = decode == "auto" and _have_numcodecs()
        target = "/zarr/v2/%s/.zmetadata" % urls.zarr_id(url)
        doc = client.transport.get_json(target, "the Zarr view of %s" % url)
        md = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(md, dict):
            raise DaemonError("the Zarr view's .zmetadata has no metadata object")
        self.full_metadata = md
        self.meta = {}  # key relative to root -> JSON object
        prefix = self.root + "/" if self.root else ""
        for k, v in md.items():
            if prefix and not k.startswith(prefix):
                continue
            rel = k[len(prefix):]
            if drop_empty_attrs and v == {} and posixpath.basename(rel) == ".zattrs":
                continue
            self.meta[rel] = v
        if self.root and ".zarray" not in self.meta and ".zgroup" not in self.meta:
            raise DaemonError("no object %s with a Zarr form in %s" % (path, url), 404,
                              "not_found")
        self._codecs = {}  # array dir -> its codec chain (as served)
        self._local = {}   # array dir -> codec objects, when decoded here
        self._daemon_decodes = set()  # "auto": array dirs the daemon decodes
        known = {}
        for rel in [k for k in self.meta if k.endswith(".zarray")]:
            d = rel[:-len(".zarray")].rstrip("/")
            chain = _codecs(self.meta[rel])
            self._codecs[d] = chain
            if (self.local_decode or auto) and chain and not _text_only(chain):
                if auto and all(c.get("id") in DAEMON_CODECS for c in chain):
                    self._daemon_decodes.add(d)
                else:
                    key = json.dumps(chain, sort_keys=True)
                    if key not in known:
                        known[key] = _codec_objects(chain)
                    if known[key] is None:
                        self._daemon_decodes.add(d)
                    elif self.local_decode or auto_local:
                        self._local[d] = known[key]
            if self.force_decode or d in self._local or d in self._daemon_decodes:
                self.meta[rel] = self._decoded_form(self.meta[rel])
        self._zmetadata = None
        self._children = None  # directory -> sorted names under it (listdir)
        self._meta_bytes = {}  # key -> its JSON bytes, made once (zarr reads each often)
        if merge_small and decode is not False:
            for rel in [k for k in self.meta if k.endswith(".zarray")]:
                d = rel[:-len(".zarray")].rstrip("/")
                m = Merge.plan(self.meta[rel])
                if m is not None:
                    self._merged[d] = m
                    self.meta[rel] = m.zarray

    @staticmethod
    def _decoded_form(zarray):
        z = dict(zarray)
        chain = _codecs(z)
        if chain and _text_only(chain):
            return z
        z["filters"] = [c for c in chain if c.get("id") in TEXT_CODECS] or None
        z["compressor"] = None
        return z

    # ---------------------------------------------------------------- metadata
    def is_meta_key(self, key):
        return key.rpartition("/")[2] in META_NAMES or key == ".zmetadata"

    def meta_bytes(self, key):
        """The bytes of a metadata key; KeyError when there is none."""
        if key == ".zmetadata":
            if self._zmetadata is None:
                self._zmetadata = json.dumps({"zarr_consolidated_format": 1,
                                              "metadata": self.meta}).encode()
            return self._zmetadata
        b = self._meta_bytes.get(key)
        if b is None:
            b = self._meta_bytes[key] = json.dumps(self.meta[key]).encode()
        return b

    def array_of(self, key):
        """(array dir relative to root, chunk key) of a chunk key, or None."""
        d, _, ck = key.rpartition("/")
        if not ck or (d + "/.zarray" if d else ".zarray") not in self.meta:
            return None
        return d, ck

    def listdir(self, path=""):
        """The names under a directory of the view, sorted: from an index
        made on the first call, so a walk of the hierarchy costs the keys
        once, not once per group."""
        if self._children is None:
            children = {}
            for k in self.meta:
                parts = k.split("/")
                for i in range(len(parts)):
                    children.setdefault("/".join(parts[:i]), set()).add(parts[i])
            self._children = {d: sorted(names) for d, names in children.items()}
        return list(self._children.get(path.strip("/"), ()))

    # ------------------------------------------------------------------ chunks
    def _h5path(self, d):
        parts = [x for x in (self.root, d) if x]
        return "/" + "/".join(parts)

    def _mode(self, d):
        """(ask the daemon to decode?, decode here?, codec chain as served)
        of the array in directory d."""
        chain = self._codecs[d]
        if self.force_decode or not chain or _text_only(chain) or d in self._daemon_decodes:
            return True, False, chain
        if d in self._local:
            return False, True, chain
        return False, False, chain

    def stream(self, keys):
        """fetch(), as a read-only Mapping filled while the answer arrives:
        looking a key up reads frames only until that key's has come, so a
        caller that takes the chunks in order (zarr's getitems loop) decodes
        each while the daemon is still sending the next.  A chunk never
        written is missing; any other failure raises ChunkError from the
        lookup of its key.  Decoded here ("local"), each chunk is handed to
        the decoding threads as its frame comes, a few frames ahead of the
        lookups.  Keys of several arrays and merged arrays are fetched whole
        first (fetch())."""
        by_array = set()
        for k in keys:
            a = self.array_of(k)
            if a is None:
                raise KeyError(k)
            by_array.add(a[0])
        if len(by_array) != 1:
            return self.fetch(keys)
        d = by_array.pop()
        decode, here, chain = self._mode(d)
        if d in self._merged:
            return self.fetch(keys)
        pre = d + "/" if d else ""
        cks = [k[len(pre):] for k in keys]
        return ChunkStream(self, d, cks, decode, chain, self._local.get(d) if here else None)

    def _frame_value(self, f, decode, chain, path):
        """A frame's chunk bytes; None for a chunk never written; raises
        ChunkError for any other failure."""
        if f.status == 200:
            if f.filter_mask and not decode:
                return reencode(f.payload, f.filter_mask, chain, path, f.key)
            return f.payload
        if f.status == 404 and f.error == "chunk_not_allocated":
            return None
        raise ChunkError("chunk %s of %s: HTTP %d %s"
                         % (f.key, path, f.status, f.error or "error"),
                         path, f.key, f.status, f.error)

    def fetch(self, keys):
        """Chunk keys (relative to root) -> {key: bytes}; keys of chunks never
        written are left out; anything else that fails raises ChunkError.
        One batch request per array among the keys."""
        by_array = {}
        for k in keys:
            a = self.array_of(k)
            if a is None:
                raise KeyError(k)
            by_array.setdefault(a[0], []).append(a[1])
        out = {}
        for d, cks in by_array.items():
            if d in self._merged:
                out.update(self._fetch_merged(d, cks))
                continue
            decode, here, chain = self._mode(d)
            path = self._h5path(d)
            pre = d + "/" if d else ""
            pending = []
            codecs = self._local.get(d) if here else None
            inline = len(cks) == 1 or DECODE_THREADS == 0 or not _cores_idle()
            try:
                for f in self.client.batch(self.url, path, cks, decode):
                    if f.status == 200:
                        data = f.payload
                        if here and inline:
                            # One chunk, or no idle core: a thread handoff
                            # would only add context switches.
                            out[pre + f.key] = local_decode(data, f.filter_mask, codecs, path,
                                                            f.key)
                            continue
                        if here:
                            pending.append((pre + f.key, (data, f.filter_mask, f.key),
                                            _decode_pool().submit(local_decode, data,
                                                                  f.filter_mask, codecs, path,
                                                                  f.key)))
                            continue
                    data = self._frame_value(f, decode, chain, path)
                    if data is not None:
                        out[pre + f.key] = data
                # Every frame is in: this thread decodes what the pool has not
                # started yet instead of waiting for a worker to be scheduled.
                for k, (data, mask, key), fut in pending:
                    if fut.cancel():
                        out[k] = local_decode(data, mask, codecs, path, key)
                for k, _args, fut in pending:
                    if k not in out:
                        out[k] = fut.result()
            except DaemonError as e:
                raise ChunkError("reading chunks of %s failed: %s" % (path, e), path, None,
                                 e.status, e.code) from e
            finally:
                for _k, _args, fut in pending:
                    fut.cancel()
        return out


    def _fetch_merged(self, d, vkeys):
        """Merged chunks: every real chunk they hold, decoded by the daemon
        (chunks never written come as fill values), in one batch, each frame
        read into its place as it arrives."""
        m = self._merged[d]
        path = self._h5path(d)
        pre = d + "/" if d else ""
        size = m.real_bytes
        merged = {}
        where = {}  # real key -> [(merged buffer, offset)]
        for vk in vkeys:
            if vk in merged:
                continue
            buf = merged[vk] = _reusable_buffer(size * m.factor)
            n = -1
            for n, rk in enumerate(m.real_keys(vk)):
                where.setdefault(rk, []).append((buf, n * size))
            buf[(n + 1) * size:] = bytes(len(buf) - (n + 1) * size)  # past the array's end
        def place(key, n):
            # A real chunk in one merged chunk is read straight into its place.
            spots = where.get(key)
            if n != size or spots is None or len(spots) != 1:
                return None
            buf, off = spots[0]
            return memoryview(buf)[off:off + size]

        got = 0
        try:
            for f in self.client.batch(self.url, path, list(where), True, into=place):
                if f.status != 200:
                    raise ChunkError("chunk %s of %s: HTTP %d %s"
                                     % (f.key, path, f.status, f.error or "error"),
                                     path, f.key, f.status, f.error)
                if len(f.payload) != size:
                    raise ChunkError("chunk %s of %s: %d bytes, expected %d"
                                     % (f.key, path, len(f.payload), size), path, f.key)
                for buf, off in where[f.key]:
                    if not (isinstance(f.payload, memoryview) and f.payload.obj is buf):
                        buf[off:off + size] = f.payload
                got += 1
        except DaemonError as e:
            raise ChunkError("reading chunks of %s failed: %s" % (path, e), path, None,
                             e.status, e.code) from e
        if got != len(where):  # read_frames raises first; never hand out zeros
            raise ChunkError("chunks of %s: %d of %d in the answer" % (path, got, len(where)),
                             path, None)
        return {pre + vk: merged[vk] for vk in vkeys}


class ChunkStream(Mapping):
    """The chunks of one batch request of one array, as a read-only Mapping
    of full keys (ZarrView.stream).  Frames are read in the caller's thread,
    only as far as the key looked up; the connection goes back to the client
    once the last frame is in, and is closed if the stream is dropped before
    (a half-read answer is never reused).  Each chunk is handed over once, as
    zarr takes it: after m[key] returned it, key is no longer in m."""

    def __init__(self, view, d, cks, decode, chain, codecs=None):
        self._view, self._decode, self._chain = view, decode, chain
        self._path = view._h5path(d)
        self._pre = d + "/" if d else ""
        self._wanted = set(cks)
        self._got = {}       # chunk key -> bytes, or a Future of them (decoded here)
        self._seen = set()   # chunk keys whose frame came (written or not)
        self._placed = {}    # chunk key -> the reusable buffer its payload is read into
        self._frames = view.client.batch(view.url, self._path, cks, decode, into=self._place)
        self._failed = None  # the ChunkError that ended the stream
        self._codecs = codecs
        # Decoding threads are handed this many frames beyond the one looked up.
        self._ahead = DECODE_THREADS if codecs is not None and len(cks) > 1 and \
            DECODE_THREADS > 0 and _cores_idle() else 0

    def _chunk_key(self, key):
        if not isinstance(key, str) or not key.startswith(self._pre):
            return None
        ck = key[len(self._pre):]
        return ck if ck in self._wanted else None

    def _read_until(self, ck):
        """Reads frames until ck's has come and `_ahead` more (None: until the end)."""
        extra = self._ahead
        while self._frames is not None:
            if ck is not None and ck in self._seen:
                if extra <= 0:
                    break
                extra -= 1
            try:
                f = next(self._frames)
            except StopIteration:
                self._frames = None
                break
            except DaemonError as e:
                self._fail(ChunkError("reading chunks of %s failed: %s" % (self._path, e),
                                      self._path, None, e.status, e.code))
            self._take(f)
            if len(self._seen) == len(self._wanted):
                # The last frame: read the answer's end so the connection is reused.
                ck = None
        if self._failed is not None:
            raise self._failed

    def _place(self, ck, n):
        """Where a large payload is read: a reusable buffer (_reusable_buffer)."""
        if n < REUSE_MIN_BYTES:
            return None
        buf = self._placed[ck] = _reusable_buffer(n)
        return memoryview(buf)

    def _take(self, f):
        placed = self._placed.pop(f.key, None)
        if placed is not None:
            f.payload = placed  # the bytearray itself, not the view it was read through
        try:
            data = self._view._frame_value(f, self._decode or self._codecs is not None,
                                           self._chain, self._path)
        except ChunkError as e:
            self._fail(e)
        self._seen.add(f.key)
        if data is None:
            return
        if self._codecs is None:
            self._got[f.key] = data
        elif self._ahead:
            self._got[f.key] = _decode_pool().submit(local_decode, data, f.filter_mask,
                                                     self._codecs, self._path, f.key)
        else:
            self._got[f.key] = local_decode(data, f.filter_mask, self._codecs, self._path,
                                            f.key)

    def _value(self, ck):
        v = self._got[ck]
        if isinstance(v, Future):
            try:
                v = self._got[ck] = v.result()
            except ChunkError as e:
                self._fail(e)
        return v

    def _fail(self, err):
        self._failed = err
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        raise err

    def __contains__(self, key):
        ck = self._chunk_key(key)
        if ck is None:
            return False
        self._read_until(ck)
        return ck in self._got

    def __getitem__(self, key):
        ck = self._chunk_key(key)
        if ck is None:
            raise KeyError(key)
        self._read_until(ck)
        if ck not in self._got:
            raise KeyError(key)
        # Handed over once (zarr takes each chunk once, after asking `in`):
        # its memory goes back as soon as zarr has copied it, so a read holds
        # the frames not yet taken, not every chunk of the read at once.
        value = self._value(ck)
        del self._got[ck]
        return value

    def __iter__(self):
        self._read_until(None)
        for ck in list(self._got):
            self._value(ck)
        return iter([self._pre + ck for ck in self._got])

    def __len__(self):
        self._read_until(None)
        return len(self._got)

    def close(self):
        """Drops the answer if it is still being read (its connection is closed)
        and the decoding not yet started."""
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        for v in self._got.values():
            if isinstance(v, Future):
                v.cancel()


class Merge:
    """An array with small chunks, shown to zarr with `factor` consecutive
    chunks along the first dimension merged into one: zarr's own work per
    chunk (indexing, decoding, copying) is what costs when chunks hold a few
    KB, and the daemon still reads the real chunks in one batch."""

    SMALL = 64 * 1024          # chunks below this many bytes are merged
    TARGET = 256 * 1024        # into chunks of about this many

    def __init__(self, zarray, factor, itemsize):
        self.real = list(zarray["chunks"])
        self.shape = list(zarray["shape"])
        self.factor = factor
        self.itemsize = itemsize
        self.grid0 = -(-self.shape[0] // self.real[0])
        self.real_bytes = itemsize
        for c in self.real:
            self.real_bytes *= c
        z = dict(zarray)
        z["chunks"] = [self.real[0] * factor] + self.real[1:]
        z["filters"] = None
        z["compressor"] = None
        self.zarray = z

    @classmethod
    def plan(cls, zarray):
        try:
            import numpy as np
            dt = np.dtype(_dtype_spec(zarray["dtype"]))
        except (ImportError, TypeError, ValueError, KeyError):
            return None
        shape, chunks = zarray.get("shape"), zarray.get("chunks")
        if dt.hasobject or not shape or not chunks or len(shape) != len(chunks):
            return None
        if zarray.get("order", "C") != "C" or any(c <= 0 for c in chunks):
            return None
        nbytes = dt.itemsize
        for c in chunks:
            nbytes *= c
        grid0 = -(-shape[0] // chunks[0])
        if nbytes >= cls.SMALL or grid0 < 2 or nbytes == 0:
            return None
        factor = min(grid0, max(1, cls.TARGET // nbytes))
        return cls(zarray, factor, dt.itemsize) if factor > 1 else None

    def real_keys(self, vkey):
        idx = vkey.split(".")
        first = int(idx[0]) * self.factor
        rest = ".".join(idx[1:])
        return [("%d.%s" % (i, rest)) if rest else str(i)
                for i in range(first, min(first + self.factor, self.grid0))]


def _text_only(chain):
    """Whether a codec chain holds only codecs the view applies to values it
    serves decoded (such a dataset is always read decoded)."""
    return all(c.get("id") in TEXT_CODECS for c in chain)


def _dtype_spec(d):
    """A Zarr dtype (a string, or [[name, type, shape?], ...]) for numpy.dtype."""
    if isinstance(d, list):
        return [tuple(_dtype_spec(x) if isinstance(x, list) else x for x in f) for f in d]
    return d


def _have_numcodecs():
    try:
        import numcodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _codec_objects(chain):
    """numcodecs codecs for a chain; None when one of them is unknown here."""
    import numcodecs
    try:
        return [numcodecs.get_codec(dict(c)) for c in chain]
    except (ValueError, TypeError, KeyError):
        return None


def local_decode(data, mask, codecs, path, key):
    """A stored chunk's values: its codecs undone, last first, skipping the
    filters its filter mask says were not applied."""
    if mask >> len(codecs):
        raise ChunkError("chunk %s of %s: filter mask %d names filters the Zarr view does "
                         "not list" % (key, path, mask), path, key)
    buf = data
    try:
        for i in reversed(range(len(codecs))):
            if not mask & (1 << i):
                buf = codecs[i].decode(buf)
    except Exception as e:  # a codec's own error: the stored bytes do not decode
        raise ChunkError("chunk %s of %s does not decode (%s): %s"
                         % (key, path, codecs[i].codec_id, e), path, key) from e
    return buf


def reencode(data, mask, chain, path, key):
    """A stored chunk whose filters in `mask` were skipped, made to match the
    whole codec chain: undo the filters that were applied (last first), then
    apply every codec."""
    try:
        import numcodecs
    except ImportError:
        raise ChunkError("chunk %s of %s was stored with filters skipped (mask %d); "
                         "numcodecs is needed to re-encode it" % (key, path, mask),
                         path, key) from None
    if mask >> len(chain):
        raise ChunkError("chunk %s of %s: filter mask %d names filters the Zarr view does "
                         "not list" % (key, path, mask), path, key)
    codecs = [numcodecs.get_codec(dict(c)) for c in chain]
    buf = bytes(data)
    for i in reversed(range(len(codecs))):
        if not mask & (1 << i):
            buf = bytes(codecs[i].decode(buf))
    for c in codecs:
        buf = bytes(c.encode(buf))
    return buf
