"""frames.py - reading the frames of a POST /v1/chunks answer as they arrive.

A frame is a JSON header line ({"key", "status", "length", ...}) and then
exactly `length` payload bytes (docs/api.md).  The answer comes from a
trusted-but-checked peer: header lines and payloads are bounded, every key
must be one that was asked for and come once, and the stream must end right
after the last frame.
"""
import json

from .errors import DaemonError

MAX_HEADER_LINE = 64 * 1024
MAX_PAYLOAD = 1 << 34  # 16 GiB: far above any chunk; a guard against nonsense
READ_SIZE = 256 * 1024


class Frame:
    __slots__ = ("key", "status", "error", "filter_mask", "payload")

    def __init__(self, key, status, error, filter_mask, payload):
        self.key, self.status, self.error = key, status, error
        self.filter_mask, self.payload = filter_mask, payload

    def __repr__(self):
        return "Frame(%r, %d, %s, %d bytes)" % (self.key, self.status, self.error,
                                                len(self.payload))


def parse_header(line):
    try:
        h = json.loads(line)
    except ValueError:
        raise DaemonError("malformed frame header: %r" % line[:200]) from None
    if not isinstance(h, dict):
        raise DaemonError("malformed frame header: %r" % line[:200])
    key, status, length = h.get("key"), h.get("status"), h.get("length")
    if not isinstance(key, str) or type(status) is not int or type(length) is not int:
        raise DaemonError("frame header lacks key, status or length: %r" % line[:200])
    if length < 0 or length > MAX_PAYLOAD:
        raise DaemonError("frame length out of range: %d" % length)
    mask = h.get("filter_mask", 0)
    if type(mask) is not int or mask < 0:
        raise DaemonError("bad filter_mask in frame header: %r" % line[:200])
    err = h.get("error")
    return key, status, length, mask, (str(err) if err is not None else None)


class _Reader:
    """The answer's bytes through one buffer: header lines and small payloads
    are cut from it (no call into http.client per frame), large payloads are
    read straight into their own buffer."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.pos = 0

    def _more(self):
        data = self.stream.read1(READ_SIZE)
        if not data:
            return False
        self.buf = self.buf[self.pos:] + data if self.pos < len(self.buf) else data
        self.pos = 0
        return True

    def line(self):
        """The next header line with its newline, b"" at the end of the answer."""
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl >= 0:
                if nl - self.pos >= MAX_HEADER_LINE:
                    break
                line = self.buf[self.pos:nl + 1]
                self.pos = nl + 1
                return line
            if len(self.buf) - self.pos > MAX_HEADER_LINE:
                break
            if not self._more():
                if self.pos < len(self.buf):
                    raise DaemonError("the batch answer ends inside a frame header")
                return b""
        raise DaemonError("frame header line longer than %d bytes" % MAX_HEADER_LINE)

    def payload(self, n):
        have = len(self.buf) - self.pos
        if have >= n:
            out = self.buf[self.pos:self.pos + n]
            self.pos += n
            return out
        out = bytearray(n)
        out[:have] = self.buf[self.pos:]
        self.buf, self.pos = b"", 0
        view = memoryview(out)
        got = have
        while got < n:
            k = self.stream.readinto(view[got:])
            if not k:
                raise DaemonError("the batch answer ended inside a frame (%d of %d bytes)"
                                  % (got, n))
            got += k
        return out

    def at_end(self):
        return self.pos >= len(self.buf) and not self.stream.read(1)


def read_frames(stream, keys):
    """Yields one Frame per distinct key of `keys`, in arrival order, from a
    binary stream with read1() (an http.client.HTTPResponse); then checks
    that the stream ends."""
    wanted = set(keys)
    seen = set()
    r = _Reader(stream)
    while len(seen) < len(wanted):
        line = r.line()
        if not line:
            raise DaemonError("the batch answer ended after %d of %d frames"
                              % (len(seen), len(wanted)))
        key, status, length, mask, err = parse_header(line)
        if key not in wanted:
            raise DaemonError("the daemon sent a frame for key %r, which was not asked for" % key)
        if key in seen:
            raise DaemonError("the daemon sent key %r twice" % key)
        seen.add(key)
        payload = r.payload(length) if length else b""
        yield Frame(key, status, err, mask, payload)
    if not r.at_end():
        raise DaemonError("bytes after the last frame of a batch answer")
