"""frames.py - reading the frames of a POST /v1/chunks answer as they arrive.

A frame is a JSON header line ({"key", "status", "length", ...}) and then
exactly `length` payload bytes (docs/api.md).  The answer comes from a
trusted-but-checked peer: header lines and payloads are bounded, every key
must be one that was asked for and come once, and the stream must end right
after the last frame.

A batch of small chunks is thousands of frames, so the per-frame work is
what a read costs here (bench/, docs/python.md "Performance"): the answer is
read in large pieces into one buffer, a header in the form the daemon writes
is matched by one compiled pattern (any other form goes through the JSON
parser, with the same checks), and payloads that lie in the buffer are cut
from it without another call into http.client.
"""
import json
import re

from .errors import DaemonError

MAX_HEADER_LINE = 64 * 1024
MAX_PAYLOAD = 1 << 34  # 16 GiB: far above any chunk; a guard against nonsense
READ_SIZE = 1024 * 1024

# The daemon's own header form (daemon/routes_chunks.c frame_ok/frame_error).
# The key may hold no quote, backslash or control character, so the JSON
# string is the key itself; the numbers have bounded digits.
_DAEMON_HEADER = re.compile(
    rb'\{"key":"([^"\\\x00-\x1f\x7f-\xff]{1,1024})","status":([1-5][0-9][0-9]),'
    rb'"length":(0|[1-9][0-9]{0,11})'
    rb'(?:,"filter_mask":(0|[1-9][0-9]{0,9}))?'
    rb'(?:,"error":"([a-z_]{1,64})")?\}\n')


class Frame:
    __slots__ = ("key", "status", "error", "filter_mask", "payload")

    def __init__(self, key, status, error, filter_mask, payload):
        self.key, self.status, self.error = key, status, error
        self.filter_mask, self.payload = filter_mask, payload

    def __repr__(self):
        return "Frame(%r, %d, %s, %d bytes)" % (self.key, self.status, self.error,
                                                len(self.payload))


def parse_header(line):
    """A header line in any JSON form -> (key, status, length, filter_mask, error)."""
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
    are cut from it, large payloads are read straight into their own buffer."""

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

    def header(self):
        """The next frame's (key, status, length, filter_mask, error), or None
        at the end of the answer."""
        while True:
            m = _DAEMON_HEADER.match(self.buf, self.pos)
            if m is not None:
                self.pos = m.end()
                key, status, length, mask, err = m.groups()
                length = int(length)
                if length > MAX_PAYLOAD:
                    raise DaemonError("frame length out of range: %d" % length)
                return (key.decode("ascii"), int(status), length, int(mask) if mask else 0,
                        err.decode("ascii") if err else None)
            nl = self.buf.find(b"\n", self.pos, self.pos + MAX_HEADER_LINE)
            if nl >= 0:
                line = self.buf[self.pos:nl + 1]
                self.pos = nl + 1
                return parse_header(line)
            if len(self.buf) - self.pos >= MAX_HEADER_LINE:
                raise DaemonError("frame header line longer than %d bytes" % MAX_HEADER_LINE)
            if not self._more():
                if self.pos < len(self.buf):
                    raise DaemonError("the batch answer ends inside a frame header")
                return None

    def payload(self, n):
        pos = self.pos
        if len(self.buf) - pos >= n:
            self.pos = pos + n
            return self.buf[pos:pos + n]
        out = bytearray(n)
        self.payload_into(memoryview(out))
        return out

    def payload_into(self, view):
        """The next len(view) payload bytes, copied into view (a writable
        memoryview of bytes): from the buffer, the rest read straight in."""
        n = len(view)
        pos = self.pos
        have = len(self.buf) - pos
        if have >= n:
            view[:] = memoryview(self.buf)[pos:pos + n]
            self.pos = pos + n
            return view
        view[:have] = memoryview(self.buf)[pos:]
        self.buf, self.pos = b"", 0
        got = have
        while got < n:
            k = self.stream.readinto(view[got:])
            if not k:
                raise DaemonError("the batch answer ended inside a frame (%d of %d bytes)"
                                  % (got, n))
            got += k
        return view

    def at_end(self):
        return self.pos >= len(self.buf) and not self.stream.read(1)


def read_frames(stream, keys, into=None):
    """Yields one Frame per distinct key of `keys`, in arrival order, from a
    binary stream with read1() (an http.client.HTTPResponse); then checks
    that the stream ends.  into(key, length), if given, is asked for the
    place of each successful frame's payload: a writable memoryview of
    exactly `length` bytes, which then receives it and is the Frame's
    payload (no buffer of its own, no copy after), or None for a buffer of
    its own."""
    wanted = set(keys)
    left = len(wanted)
    seen = set()
    r = _Reader(stream)
    header, payload = r.header, r.payload
    while left:
        h = header()
        if h is None:
            raise DaemonError("the batch answer ended after %d of %d frames"
                              % (len(wanted) - left, len(wanted)))
        key, status, length, mask, err = h
        if key not in wanted:
            raise DaemonError("the daemon sent a frame for key %r, which was not asked for" % key)
        if key in seen:
            raise DaemonError("the daemon sent key %r twice" % key)
        seen.add(key)
        left -= 1
        dst = into(key, length) if into is not None and status == 200 and length else None
        if dst is not None:
            if len(dst) != length:
                raise ValueError("into() gave %d bytes for a frame of %d" % (len(dst), length))
            yield Frame(key, status, err, mask, r.payload_into(dst))
        else:
            yield Frame(key, status, err, mask, payload(length) if length else b"")
    if not r.at_end():
        raise DaemonError("bytes after the last frame of a batch answer")
