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


class Frame:
    __slots__ = ("key", "status", "error", "filter_mask", "payload")

    def __init__(self, key, status, error, filter_mask, payload):
        self.key, self.status, self.error = key, status, error
        self.filter_mask, self.payload = filter_mask, payload

    def __repr__(self):
        return "Frame(%r, %d, %s, %d bytes)" % (self.key, self.status, self.error,
                                                len(self.payload))


def _read_exact(stream, n):
    """n bytes from stream into one buffer, or a DaemonError."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise DaemonError("the batch answer ended inside a frame (%d of %d bytes)" % (got, n))
        got += k
    return buf


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


def read_frames(stream, keys):
    """Yields one Frame per distinct key of `keys`, in arrival order, from a
    binary stream (an http.client.HTTPResponse); then checks the stream ends."""
    wanted = set(keys)
    seen = set()
    while len(seen) < len(wanted):
        line = stream.readline(MAX_HEADER_LINE + 1)
        if not line:
            raise DaemonError("the batch answer ended after %d of %d frames"
                              % (len(seen), len(wanted)))
        if len(line) > MAX_HEADER_LINE or not line.endswith(b"\n"):
            raise DaemonError("frame header line too long or cut short")
        key, status, length, mask, err = parse_header(line)
        if key not in wanted:
            raise DaemonError("the daemon sent a frame for key %r, which was not asked for" % key)
        if key in seen:
            raise DaemonError("the daemon sent key %r twice" % key)
        seen.add(key)
        payload = _read_exact(stream, length) if length else bytearray()
        yield Frame(key, status, err, mask, payload)
    if stream.read(1):
        raise DaemonError("bytes after the last frame of a batch answer")
