"""file.py - h5chunkd.open(): a seekable read-only file over /v1/file.

libhdf5 (through h5py's file-object driver) reads a file in many small
pieces: superblock, object headers, B-tree nodes, heaps, often the same
bytes twice.  DaemonFile reads whole blocks of the daemon's cache
(block_size, 256 KiB by default), so one request answers the small reads
near each other, and keeps the last blocks in memory (an LRU of
cache_blocks blocks).  Reads larger than LARGE_READ go straight into the
caller's buffer with one request.  The remote file's ETag is remembered
from the first answer: a later answer with another one raises FileChanged
instead of mixing two versions of the file.
"""
import collections
import io
import re
import threading

from .errors import DaemonError, FileChanged
from .transport import error_from_body

DEFAULT_CACHE_BYTES = 16 << 20
LARGE_READ = 1 << 20
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
UNSATISFIED = re.compile(r"^bytes \*/(\d+)$")


class DaemonFile(io.RawIOBase):
    """A remote file, read through the daemon's cache.  Thread-safe."""

    def __init__(self, client, url, block_size=None, cache_blocks=None):
        super().__init__()
        self.client, self.url = client, url
        self.block_size = int(block_size or client.block_size)
        if self.block_size <= 0:
            raise ValueError("block_size must be positive")
        self.cache_blocks = int(cache_blocks or max(4, DEFAULT_CACHE_BYTES // self.block_size))
        self.name = url
        self.mode = "rb"
        self._target = "/v1/file?" + client._q(url=url)
        self._pos = 0
        self._etag = None
        self._blocks = collections.OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0  # range requests sent (for tests and curiosity)
        self.owns_client = False
        self.size = None
        first = self._fetch_into(0, None)  # learns the size; block 0 (the superblock) cached
        if first is not None:
            self._remember(0, first)

    # -------------------------------------------------------------- protocol
    def _fetch_into(self, start, buf, length=None):
        """GET bytes [start, start+length) (a whole block when length is None)
        into buf (or a new buffer); returns the buffer, None when the file is empty."""
        n = length if length is not None else self.block_size
        last = start + n - 1
        conn, resp = self.client.transport.open(
            "GET", self._target, headers={"Range": "bytes=%d-%d" % (start, last)})
        done = False
        try:
            self.requests += 1
            if resp.status == 416 and self.size is None:
                m = UNSATISFIED.match(resp.getheader("Content-Range", ""))
                resp.read()
                if m and int(m.group(1)) == 0:
                    self.size = 0
                    done = True
                    return None
            if resp.status != 206:
                raise error_from_body(resp.status, resp.read(64 * 1024), "read %s" % self.url)
            m = CONTENT_RANGE.match(resp.getheader("Content-Range", ""))
            if not m:
                raise DaemonError("read %s: the daemon's answer has no valid Content-Range"
                                  % self.url)
            a, b, total = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if self.size is None:
                self.size = total
            elif total != self.size:
                raise FileChanged("%s changed size (%d, now %d) while open"
                                  % (self.url, self.size, total))
            etag = resp.getheader("ETag")
            if self._etag is None:
                self._etag = etag
            elif etag is not None and etag != self._etag:
                raise FileChanged("%s changed (ETag %s, now %s) while open"
                                  % (self.url, self._etag, etag))
            want = min(last, total - 1) - start + 1
            if a != start or b - a + 1 != want:
                raise DaemonError("read %s: asked for bytes %d-%d, got %d-%d"
                                  % (self.url, start, start + want - 1, a, b))
            if buf is None:
                buf = bytearray(want)
            view = memoryview(buf)[:want]
            got = 0
            while got < want:
                k = resp.readinto(view[got:])
                if not k:
                    raise DaemonError("read %s: the answer ended after %d of %d bytes"
                                      % (self.url, got, want))
                got += k
            if resp.read(1):
                raise DaemonError("read %s: the answer is longer than its Content-Range"
                                  % self.url)
            done = True
            return buf if len(buf) == want else buf[:want]
        finally:
            if done and not resp.will_close:
                self.client.transport.give_back(conn)
            else:
                conn.close()

    def _remember(self, index, data):
        self._blocks[index] = data
        self._blocks.move_to_end(index)
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)

    def _blocks_for(self, first, last):
        """The blocks first..last, fetching the missing ones with one request
        per run of consecutive missing blocks."""
        with self._lock:
            have = {i: self._blocks[i] for i in range(first, last + 1) if i in self._blocks}
            for i in have:
                self._blocks.move_to_end(i)
        i = first
        while i <= last:
            if i in have:
                i += 1
                continue
            j = i
            while j + 1 <= last and (j + 1) not in have:
                j += 1
            start = i * self.block_size
            data = self._fetch_into(start, None, (j - i + 1) * self.block_size)
            with self._lock:
                for k in range(i, j + 1):
                    piece = bytes(data[(k - i) * self.block_size:(k - i + 1) * self.block_size])
                    have[k] = piece
                    self._remember(k, piece)
            i = j + 1
        return [have[k] for k in range(first, last + 1)]

    # ------------------------------------------------------------ io.RawIOBase
    def readable(self):
        return True

    def seekable(self):
        return True

    def writable(self):
        return False

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError("invalid whence %r" % whence)
        if pos < 0:
            raise OSError(22, "negative seek position %d" % pos)
        self._pos = pos
        return pos

    def readinto(self, b):
        if self.closed:
            raise ValueError("I/O operation on closed file")
        out = memoryview(b).cast("B")
        start = self._pos
        end = min(start + len(out), self.size)
        if end <= start:
            return 0
        n = end - start
        if n >= LARGE_READ:
            self._fetch_into(start, out, n)
        else:
            bs = self.block_size
            first, last = start // bs, (end - 1) // bs
            at = 0
            for k, blk in zip(range(first, last + 1), self._blocks_for(first, last)):
                lo = max(start, k * bs) - k * bs
                hi = min(end, (k + 1) * bs) - k * bs
                if hi > len(blk):
                    raise DaemonError("read %s: block %d is short" % (self.url, k))
                out[at:at + hi - lo] = blk[lo:hi]
                at += hi - lo
        self._pos = end
        return n

    def readall(self):
        return self.read(max(0, self.size - self._pos))

    def close(self):
        self._blocks.clear()
        if self.owns_client and not self.closed:
            self.client.close()
        super().close()

    def __repr__(self):
        return "<h5chunkd file %r size=%s>" % (self.url, self.size)
