"""client.py - h5chunkd.Client: every endpoint of the daemon from Python.

Owns the request side of the API: health, stats, meta, slices to NumPy,
chunk batches, prefetch jobs (with a tqdm progress bar when tqdm is
installed), and the factories for the file object (h5chunkd.open) and the
zarr store (h5chunkd.zarr_store).  Standard library only, except slice()
(NumPy) and zarr_store() (zarr).
"""
import io
import json
import time
import urllib.parse

from . import urls
from .errors import ChunkError, DaemonError
from .frames import read_frames
from .transport import DEFAULT_TIMEOUT, Transport, error_from_body

DEFAULT_BLOCK_SIZE = 256 * 1024  # the daemon's default block_size
MAX_BATCH_KEYS = 100000          # the daemon's default max_keys
PREFETCH_POLL_S = 0.2


def format_select(select):
    """A selection (str in /v1/slice syntax, int, slice, or a tuple of them)
    -> the select parameter."""
    if select is None or select is Ellipsis:
        return ""
    if isinstance(select, str):
        return select
    if not isinstance(select, tuple):
        select = (select,)
    if Ellipsis in select:
        if select.count(Ellipsis) > 1 or select[-1] is not Ellipsis:
            raise ValueError("only a trailing ... is supported in a selection")
        select = select[:-1]
    parts = []
    for s in select:
        if isinstance(s, slice):
            if s.step is not None and s.step <= 0:
                raise ValueError("selection steps must be positive")
            parts.append("%s:%s%s" % ("" if s.start is None else int(s.start),
                                      "" if s.stop is None else int(s.stop),
                                      "" if s.step is None else ":%d" % int(s.step)))
        elif isinstance(s, bool):
            raise TypeError("booleans are not indices")
        else:
            try:
                parts.append(str(int(s.__index__())))
            except AttributeError:
                raise TypeError("selection items are ints or slices, not %s"
                                % type(s).__name__) from None
    return ",".join(parts)


class Client:
    """A connection to the h5chunkd daemon.

    daemon: an address in any form the daemon listens on (http://HOST:PORT,
    HOST:PORT, [V6]:PORT, unix:/PATH); default $H5CHUNKD_URL, else the Unix
    socket /run/h5chunkd/h5chunkd.sock when it exists, else 127.0.0.1:7661.
    token: the bearer token; default the file named by $H5CHUNKD_TOKEN_FILE,
    else ~/.config/h5chunkd/token when it exists.
    """

    def __init__(self, daemon=None, token=None, timeout=DEFAULT_TIMEOUT):
        self.transport = Transport(daemon, token, timeout)
        self._block_size = None

    def __repr__(self):
        return "h5chunkd.Client(%r)" % str(self.transport.address)

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ addresses
    @property
    def address(self):
        return self.transport.address

    def remote_url(self, url):
        """The remote file's URL for any URL form the package accepts."""
        return urls.remote_url(url, self.transport.address.base)

    def _q(self, **params):
        return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})

    def file_url(self, url):
        """The daemon's byte-range mirror URL of a remote file (TCP daemons)."""
        return "%s/v1/file?%s" % (self.address.base, self._q(url=self.remote_url(url)))

    def zarr_url(self, url):
        """The Zarr view's base URL (for zarr over fsspec HTTP)."""
        return "%s/zarr/v2/%s/" % (self.address.base, urls.zarr_id(self.remote_url(url)))

    # ------------------------------------------------------------- endpoints
    def health(self):
        """{"status": "ok", "version": ...}; DaemonNotRunning when none answers."""
        return self.transport.get_json("/v1/health", "health")

    def stats(self):
        """The daemon's counters (docs/api.md, /v1/stats)."""
        return self.transport.get_json("/v1/stats", "stats")

    def meta(self, url, path="/"):
        """What an object of the file is: shape, chunks, dtype, filters, attrs..."""
        url = self.remote_url(url)
        return self.transport.get_json("/v1/meta?" + self._q(url=url, path=path),
                                       "meta %s" % path)

    def slice(self, url, path, select=None):
        """The decoded values of a selection as a NumPy array (one request).
        select: "0:100,5" (the /v1/slice syntax), or an index such as
        (slice(0, 100), 5)."""
        import numpy as np
        url = self.remote_url(url)
        q = self._q(url=url, path=path, select=format_select(select) or None, format="npy")
        _resp, data = self.transport.request("GET", "/v1/slice?" + q, what="slice %s" % path)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as e:
            raise DaemonError("slice %s: the daemon's .npy is malformed: %s" % (path, e)) from None

    def chunks(self, url, path, keys, decode=False):
        """Chunks of one dataset in one batch request: {key: bytes}, with
        None for a chunk the file never wrote (raw mode only).  A chunk that
        fails raises ChunkError.  More keys than the daemon's max_keys are
        sent as several requests."""
        out = {}
        for key, frame in self.iter_chunks(url, path, keys, decode):
            out[key] = frame
        return out

    def iter_chunks(self, url, path, keys, decode=False):
        """As chunks(), yielding (key, bytes or None) as frames arrive."""
        url = self.remote_url(url)
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), MAX_BATCH_KEYS):
            part = keys[i:i + MAX_BATCH_KEYS]
            for f in self.batch(url, path, part, decode):
                if f.status == 200:
                    yield f.key, f.payload
                elif f.status == 404 and f.error == "chunk_not_allocated":
                    yield f.key, None
                else:
                    raise ChunkError("chunk %s of %s: HTTP %d %s" % (f.key, path, f.status,
                                                                     f.error or "error"),
                                     path, f.key, f.status, f.error)

    def batch(self, url, path, keys, decode=False, into=None):
        """One POST /v1/chunks; yields the raw Frames as they arrive (into:
        where payloads go, as frames.read_frames takes it)."""
        body = json.dumps({"url": url, "path": path, "keys": list(keys),
                           "decode": bool(decode)}).encode()
        t = self.transport
        conn, resp = t.open("POST", "/v1/chunks", body, {"Content-Type": "application/json"})
        done = False
        try:
            if resp.status != 200:
                data = resp.read(64 * 1024)
                raise error_from_body(resp.status, data, "chunks of %s" % path)
            yield from read_frames(resp, keys, into)
            done = True
        finally:
            if done and not resp.will_close:
                t.give_back(conn)
            else:
                conn.close()

    # --------------------------------------------------------------- prefetch
    def prefetch(self, url, path, select=None, wait=True, progress=True, timeout=None):
        """Warms the cache with a dataset (or a selection of it) in a
        background job of the daemon.  wait=False returns the job at once;
        otherwise waits for it (a tqdm progress bar on stderr when tqdm is
        installed and progress is true) and returns its final status.
        Raises DaemonError when the job fails; Ctrl-C or the timeout cancels it."""
        url = self.remote_url(url)
        body = {"url": url, "path": path}
        sel = format_select(select)
        if sel:
            body["select"] = sel
        job = self.transport.post_json("/v1/prefetch", body, ok=(200, 202), what="prefetch")
        jid = job.get("job")
        if type(jid) is not int:
            raise DaemonError("prefetch: the daemon's answer has no job id: %r" % job)
        if not wait:
            return self.job(jid)
        bar = _progress_bar(path) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                st = self.job(jid)
                if bar is not None:
                    bar.total = st.get("bytes_total") or bar.total
                    bar.update(max(0, (st.get("bytes_done") or 0) - bar.n))
                if st.get("state") != "running":
                    break
                if deadline is not None and time.monotonic() > deadline:
                    self.cancel_job(jid)
                    raise DaemonError("prefetch job %d not done within %g s; cancelled"
                                      % (jid, timeout))
                time.sleep(PREFETCH_POLL_S)
        except KeyboardInterrupt:
            self.cancel_job(jid)
            raise
        finally:
            if bar is not None:
                bar.close()
        if st.get("state") != "done":
            raise DaemonError("prefetch job %d %s: %s" % (jid, st.get("state"),
                                                          st.get("error", "")),
                              None, st.get("state"))
        return st

    def job(self, jid):
        return self.transport.get_json("/v1/jobs/%d" % int(jid), "job %d" % int(jid))

    def cancel_job(self, jid):
        _r, data = self.transport.request("DELETE", "/v1/jobs/%d" % int(jid),
                                          what="cancel job %d" % int(jid))
        return json.loads(data)

    # ------------------------------------------------------- files and stores
    @property
    def block_size(self):
        """The daemon's cache block (read-ahead unit of open()): block_size
        from /v1/stats when the daemon reports it, else 256 KiB."""
        if self._block_size is None:
            bs = DEFAULT_BLOCK_SIZE
            try:
                v = self.stats().get("block_size")
                if type(v) is int and 4096 <= v <= (16 << 20) and v & (v - 1) == 0:
                    bs = v
            except DaemonError:
                pass
            self._block_size = bs
        return self._block_size

    def open(self, url, block_size=None, cache_blocks=None):
        """A seekable read-only binary file of the remote file (h5py.File takes it)."""
        from .file import DaemonFile
        return DaemonFile(self, self.remote_url(url), block_size=block_size,
                          cache_blocks=cache_blocks)

    def zarr_store(self, url, path=None, decode="auto"):
        """A zarr (v2) store of the file's Zarr view; see h5chunkd.zarr_store."""
        from .zarrstore import ZarrStore
        return ZarrStore(self, self.remote_url(url), path=path, decode=decode)


def _progress_bar(path):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                desc="prefetch %s" % path, leave=False)
