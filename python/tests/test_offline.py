"""test_offline.py - the package's unit tests that need no daemon: daemon
addresses, token files, remote-URL forms, selections, the frame parser, the
clear error when no daemon answers, and the fsspec registration.

Run: /usr/bin/python3 -m unittest discover -s python/tests -t python
"""
import io
import json
import os
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import h5chunkd  # noqa: E402
from h5chunkd import client, frames, transport, urls  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Addresses(unittest.TestCase):
    def test_forms(self):
        cases = {
            "http://127.0.0.1:7661": ("http://127.0.0.1:7661", None),
            "http://127.0.0.1:7661/": ("http://127.0.0.1:7661", None),
            "127.0.0.1:9000": ("http://127.0.0.1:9000", None),
            "localhost": ("http://localhost:7661", None),
            "[::1]:7000": ("http://[::1]:7000", None),
            "http://[::1]:7000": ("http://[::1]:7000", None),
            "https://h5.example.org": ("https://h5.example.org:443", None),
            "unix:/run/h5chunkd/h5chunkd.sock": ("http://localhost", "/run/h5chunkd/h5chunkd.sock"),
            "unix:///tmp/x.sock": ("http://localhost", "/tmp/x.sock"),
        }
        for text, (base, upath) in cases.items():
            a = transport.parse_address(text)
            self.assertEqual((a.base, a.unix_path), (base, upath), text)

    def test_bad_forms(self):
        for text in ("", "ftp://x:1", "unix:relative.sock", "http://u@h:1", "http://h:1/path",
                     "h:1?x", "http://h:99999", "a b:1", "unix:/" + "x" * 200, ":7661"):
            with self.assertRaises(ValueError, msg=text):
                transport.parse_address(text)

    def test_discovery_order(self):
        env = dict(os.environ)
        try:
            os.environ["H5CHUNKD_URL"] = "unix:/tmp/nowhere.sock"
            self.assertEqual(transport.discover_address().unix_path, "/tmp/nowhere.sock")
            self.assertEqual(str(transport.discover_address("127.0.0.1:1")),
                             "http://127.0.0.1:1")
            os.environ["H5CHUNKD_URL"] = "gopher://x"
            with self.assertRaisesRegex(ValueError, "H5CHUNKD_URL"):
                transport.discover_address()
            del os.environ["H5CHUNKD_URL"]
            a = transport.discover_address()
            if not os.path.exists(transport.DEFAULT_UNIX):
                self.assertEqual(str(a), "http://127.0.0.1:7661")
        finally:
            os.environ.clear()
            os.environ.update(env)


class Tokens(unittest.TestCase):
    def write(self, data):
        fd, path = tempfile.mkstemp()
        os.write(fd, data)
        os.close(fd)
        self.addCleanup(os.unlink, path)
        return path

    def test_good_and_bad(self):
        self.assertEqual(transport.read_token_file(self.write(b"abc123\n")), "abc123")
        self.assertEqual(transport.read_token_file(self.write(b"abc123")), "abc123")
        for bad in (b"", b"\n", b"a b\n", b"a\nb\n", b"x" * 1025, b"\xff\n"):
            with self.assertRaises(ValueError, msg=bad[:20]):
                transport.read_token_file(self.write(bad))

    def test_env_and_default_file(self):
        env = dict(os.environ)
        d = tempfile.mkdtemp()
        try:
            os.environ.pop("H5CHUNKD_TOKEN_FILE", None)
            os.environ["XDG_CONFIG_HOME"] = d
            self.assertIsNone(transport.discover_token())
            os.makedirs(os.path.join(d, "h5chunkd"))
            with open(os.path.join(d, "h5chunkd", "token"), "w") as fh:
                fh.write("fromfile\n")
            self.assertEqual(transport.discover_token(), "fromfile")
            os.environ["H5CHUNKD_TOKEN_FILE"] = self.write(b"fromenv\n")
            self.assertEqual(transport.discover_token(), "fromenv")
            self.assertEqual(transport.discover_token("explicit"), "explicit")
            t = transport.Transport("127.0.0.1:1")
            self.assertEqual(t.headers()["Authorization"], "Bearer fromenv")
        finally:
            os.environ.clear()
            os.environ.update(env)
            import shutil
            shutil.rmtree(d)


class RemoteUrls(unittest.TestCase):
    U = "https://dandiarchive.s3.amazonaws.com/blobs/a b?x=1&y=%2F"

    def test_forms(self):
        q = urllib_quote(self.U)
        forms = [self.U, "h5chunkd::" + self.U, "h5chunkd://::" + self.U,
                 "http://127.0.0.1:7661/v1/file?url=" + q,
                 "http://localhost:9/zarr/v2/%s/" % urls.zarr_id(self.U),
                 "http://[::1]:7661/zarr/v2/%s/acquisition/x/.zarray" % urls.zarr_id(self.U),
                 "http://h5box:7000/v1/file?url=" + q]
        for f in forms:
            self.assertEqual(urls.remote_url(f, "http://h5box:7000"), self.U, f)

    def test_not_ours(self):
        # A remote server whose paths look like the daemon's is left alone.
        u = "https://example.org/v1/file?url=https%3A%2F%2Fa%2Fb"
        self.assertEqual(urls.remote_url(u), u)
        for bad in ("s3://bucket/key", "/local/file.nwb", "https://x/\n", "https://x/" + "a" * 5000):
            with self.assertRaises(ValueError, msg=bad[:40]):
                urls.remote_url(bad)
        with self.assertRaises(TypeError):
            urls.remote_url(b"https://x/y")

    def test_zarr_id(self):
        # RFC 4648 base64url without padding, as docs/api.md defines {id}.
        self.assertEqual(urls.zarr_id("https://a/b.nwb?"), "aHR0cHM6Ly9hL2IubndiPw")
        self.assertEqual(urls.zarr_id("https://a/~~~"), "aHR0cHM6Ly9hL35-fg")


def urllib_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


class Selections(unittest.TestCase):
    def test_format(self):
        f = client.format_select
        self.assertEqual(f(None), "")
        self.assertEqual(f("0:10,5"), "0:10,5")
        self.assertEqual(f(5), "5")
        self.assertEqual(f((slice(0, 10), 5)), "0:10,5")
        self.assertEqual(f((slice(None, None, 2), slice(-3, None))), "::2,-3:")
        self.assertEqual(f((slice(1, 2), Ellipsis)), "1:2")
        self.assertEqual(f(Ellipsis), "")
        for bad in ((slice(0, 1, -1),), (Ellipsis, 1), (1.5,), (True,)):
            with self.assertRaises((ValueError, TypeError), msg=repr(bad)):
                f(bad)


def frame(key, status=200, payload=b"", **extra):
    h = {"key": key, "status": status, "length": len(payload)}
    h.update(extra)
    return json.dumps(h).encode() + b"\n" + payload


class Frames(unittest.TestCase):
    def parse(self, data, keys):
        return list(frames.read_frames(io.BufferedReader(io.BytesIO(data)), keys))

    def test_good(self):
        data = frame("1.0", payload=b"abc", filter_mask=2) + \
            frame("0.0", 404, error="chunk_not_allocated") + frame("2.0", payload=b"\n" * 5)
        got = self.parse(data, ["0.0", "1.0", "2.0", "1.0"])
        self.assertEqual([(f.key, f.status, bytes(f.payload), f.filter_mask) for f in got],
                         [("1.0", 200, b"abc", 2), ("0.0", 404, b"", 0), ("2.0", 200, b"\n" * 5, 0)])
        self.assertEqual(got[1].error, "chunk_not_allocated")

    def test_hostile(self):
        bad = {
            "cut payload": frame("0", payload=b"abcd")[:-1],
            "missing frame": frame("0", payload=b"x"),
            "unknown key": frame("9", payload=b"x") + frame("0"),
            "duplicate": frame("0") + frame("0"),
            "trailing": frame("0") + frame("1") + b"x",
            "not json": b"{nope\n" + frame("1"),
            "not an object": b"[1]\n" + frame("1"),
            "negative length": b'{"key":"0","status":200,"length":-1}\n' + frame("1"),
            "string status": b'{"key":"0","status":"200","length":0}\n' + frame("1"),
            "huge header": b'{"key":"0","x":"' + b"a" * 70000 + b'"}\n',
            "no newline": b'{"key":"0","status":200,"length":0}',
            "huge length": b'{"key":"0","status":200,"length":%d}\n' % (1 << 40),
        }
        for what, data in bad.items():
            with self.assertRaises(h5chunkd.DaemonError, msg=what):
                self.parse(data, ["0", "1"])
            # The same with every payload read into a place the caller gives.
            with self.assertRaises(h5chunkd.DaemonError, msg=what + " (into)"):
                list(frames.read_frames(io.BufferedReader(io.BytesIO(data)), ["0", "1"],
                                        into=lambda key, n: memoryview(bytearray(n))))

    # The daemon's own header form (daemon/routes_chunks.c) is matched by a
    # compiled pattern; every other JSON form goes through json.loads.  Both
    # must give the same frames and refuse the same nonsense.
    DAEMON_OK = b'{"key":"%s","status":200,"length":%d,"filter_mask":%d}\n'
    DAEMON_ERR = b'{"key":"%s","status":%d,"length":0,"error":"%s"}\n'

    def test_daemon_form_is_the_fast_path(self):
        m = frames._DAEMON_HEADER.match(self.DAEMON_OK % (b"12.0.3", 5, 4))
        self.assertIsNotNone(m)
        self.assertEqual(m.groups(), (b"12.0.3", b"200", b"5", b"4", None))
        m = frames._DAEMON_HEADER.match(self.DAEMON_ERR % (b"9.9", 404, b"chunk_not_allocated"))
        self.assertEqual(m.groups(), (b"9.9", b"404", b"0", None, b"chunk_not_allocated"))
        for other in (b'{"key": "0", "status": 200, "length": 1}\n',     # spaces
                      b'{"status":200,"key":"0","length":1}\n',          # order
                      b'{"key":"a\\"b","status":200,"length":1}\n',     # escaped quote
                      b'{"key":"0","status":200,"length":01}\n',         # not JSON
                      b'{"key":"0","status":200,"length":1234567890123}\n'):  # 13 digits
            self.assertIsNone(frames._DAEMON_HEADER.match(other), other)

    def test_both_forms_agree(self):
        keys = ["0.0", "1.0", "2.0", "a\"b", "\u00e9.0"]
        daemon = (self.DAEMON_OK % (b"1.0", 3, 2) + b"abc" +
                  self.DAEMON_ERR % (b"0.0", 404, b"chunk_not_allocated") +
                  self.DAEMON_OK % (b"2.0", 4, 0) + b"\n\n{}" +
                  frame("a\"b", payload=b"q") + frame("\u00e9.0", payload=b"\xff" * 3))
        other = (frame("1.0", payload=b"abc", filter_mask=2) +
                 frame("0.0", 404, error="chunk_not_allocated") +
                 frame("2.0", payload=b"\n\n{}") +
                 frame("a\"b", payload=b"q") + frame("\u00e9.0", payload=b"\xff" * 3))
        want = [("1.0", 200, b"abc", 2, None), ("0.0", 404, b"", 0, "chunk_not_allocated"),
                ("2.0", 200, b"\n\n{}", 0, None), ("a\"b", 200, b"q", 0, None),
                ("\u00e9.0", 200, b"\xff" * 3, 0, None)]
        for data in (daemon, other):
            got = [(f.key, f.status, bytes(f.payload), f.filter_mask, f.error)
                   for f in self.parse(data, keys)]
            self.assertEqual(got, want)

    def test_daemon_form_hostile(self):
        ok = self.DAEMON_OK % (b"1", 0, 0)
        bad = {
            "unknown key": self.DAEMON_OK % (b"7", 0, 0) + ok,
            "duplicate": self.DAEMON_OK % (b"0", 0, 0) * 2,
            "length over the bound": self.DAEMON_OK % (b"0", 99999999999, 0) + ok,
            "cut payload": self.DAEMON_OK % (b"0", 10, 0) + b"abc",
            "trailing": self.DAEMON_OK % (b"0", 0, 0) + ok + b"x",
            "header cut": self.DAEMON_OK % (b"0", 0, 0) + ok[:-1],
        }
        for what, data in bad.items():
            with self.assertRaises(h5chunkd.DaemonError, msg=what):
                self.parse(data, ["0", "1"])
            # The same with every payload read into a place the caller gives.
            with self.assertRaises(h5chunkd.DaemonError, msg=what + " (into)"):
                list(frames.read_frames(io.BufferedReader(io.BytesIO(data)), ["0", "1"],
                                        into=lambda key, n: memoryview(bytearray(n))))

    def test_pieces_of_any_size(self):
        """Headers and payloads split across reads at every byte."""
        keys = [str(i) for i in range(40)]
        data = b"".join(self.DAEMON_OK % (k.encode(), i % 7, 0) + bytes([i]) * (i % 7)
                        for i, k in enumerate(keys))

        class Trickle(io.RawIOBase):
            def __init__(self, data, step):
                self.data, self.pos, self.step = data, 0, step

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.step, len(self.data) - self.pos)
                b[:n] = self.data[self.pos:self.pos + n]
                self.pos += n
                return n

        for step in (1, 2, 3, 5, 64, 1 << 20):
            stream = io.BufferedReader(Trickle(data, step), buffer_size=8)
            got = {f.key: bytes(f.payload) for f in frames.read_frames(stream, keys)}
            self.assertEqual(got, {k: bytes([i]) * (i % 7) for i, k in enumerate(keys)}, step)
            # Read into places given by the caller: every third key, the rest
            # in buffers of their own; a place is the frame's payload.
            out = bytearray(b"?" * (7 * len(keys)))

            def place(key, n):
                i = int(key)
                return memoryview(out)[7 * i:7 * i + n] if i % 3 == 0 else None
            stream = io.BufferedReader(Trickle(data, step), buffer_size=8)
            for f in frames.read_frames(stream, keys, into=place):
                i = int(f.key)
                self.assertEqual(bytes(f.payload), bytes([i]) * (i % 7), step)
                placed = i % 3 == 0 and i % 7 > 0
                self.assertEqual(isinstance(f.payload, memoryview) and f.payload.obj is out,
                                 placed, f.key)
            for i in range(len(keys)):
                want = bytes([i]) * (i % 7) if i % 3 == 0 else b""
                self.assertEqual(bytes(out[7 * i:7 * i + len(want)]), want, (step, i))
        with self.assertRaises(ValueError):  # a place of the wrong size
            list(frames.read_frames(io.BufferedReader(io.BytesIO(data)), keys,
                                    into=lambda key, n: memoryview(bytearray(n + 1))))


class NoDaemon(unittest.TestCase):
    def test_clear_exception(self):
        port = free_port()
        c = h5chunkd.Client("127.0.0.1:%d" % port)
        with self.assertRaises(h5chunkd.DaemonNotRunning) as cm:
            c.health()
        msg = str(cm.exception)
        self.assertIn("127.0.0.1:%d" % port, msg)
        self.assertIn("start one with `h5chunkd`", msg)
        self.assertIn("H5CHUNKD_URL", msg)
        self.assertIsInstance(cm.exception, ConnectionError)
        self.assertIsInstance(cm.exception, OSError)
        with self.assertRaises(h5chunkd.DaemonNotRunning):
            h5chunkd.open("https://example.org/f.nwb", daemon="127.0.0.1:%d" % port)
        with self.assertRaises(h5chunkd.DaemonNotRunning):
            h5chunkd.zarr_store("https://example.org/f.nwb", daemon="127.0.0.1:%d" % port)
        with self.assertRaises(h5chunkd.DaemonNotRunning) as cm:
            h5chunkd.Client("unix:/nonexistent/h5chunkd.sock").stats()
        self.assertIn("unix:/nonexistent/h5chunkd.sock", str(cm.exception))

    def test_env_default(self):
        env = dict(os.environ)
        try:
            os.environ["H5CHUNKD_URL"] = "127.0.0.1:%d" % free_port()
            with self.assertRaises(h5chunkd.DaemonNotRunning):
                h5chunkd.Client().health()
        finally:
            os.environ.clear()
            os.environ.update(env)


class _FakeTransport:
    def __init__(self, doc):
        self.doc = doc

    def get_json(self, target, what=None):
        return self.doc


class _FakeClient:
    def __init__(self, doc):
        self.transport = _FakeTransport(doc)


def _zarray(filters):
    return {"zarr_format": 2, "shape": [10], "chunks": [5], "dtype": "<i2", "order": "C",
            "fill_value": 0, "compressor": None, "filters": filters}


ZLIB = [{"id": "shuffle", "elementsize": 2}, {"id": "zlib", "level": 4}]
METADATA = {"metadata": {
    ".zgroup": {"zarr_format": 2}, ".zattrs": {"a": 1},
    "g/.zgroup": {"zarr_format": 2}, "g/.zattrs": {},
    "g/raw/.zarray": _zarray(ZLIB), "g/raw/.zattrs": {},
    "g/plain/.zarray": _zarray(None), "g/plain/.zattrs": {},
    "g/text/.zarray": _zarray([{"id": "vlen-utf8"}]), "g/text/.zattrs": {},
    "g/odd/.zarray": _zarray([{"id": "no-such-codec"}]), "g/odd/.zattrs": {},
}}


class _BatchClient(_FakeClient):
    """A client whose batch() answers from a dict: key -> (status, payload)."""

    def __init__(self, doc, answers):
        super().__init__(doc)
        self.answers, self.asked = answers, []

    def batch(self, url, path, keys, decode=False, into=None):
        self.asked.append((path, sorted(keys), decode))
        for k in keys:
            st, payload = self.answers[k]
            dst = into(k, len(payload)) if into is not None and st == 200 else None
            if dst is not None:  # as read_frames does
                dst[:] = payload
                payload = dst
            yield frames.Frame(k, st, None if st == 200 else "upstream_error", 0, payload)


class _StreamClient(_FakeClient):
    """A client whose batch() yields frames in the order given (key, status,
    error, payload), counting how many were taken and whether the answer was
    read to its end (the connection goes back) or dropped (closed)."""

    def __init__(self, doc, frames_in_order):
        super().__init__(doc)
        self.order, self.taken, self.ended, self.dropped = frames_in_order, 0, False, False

    def batch(self, url, path, keys, decode=False, into=None):
        try:
            for k, st, err, payload in self.order:
                self.taken += 1
                yield frames.Frame(k, st, err, 0, payload)
            self.ended = True
        except GeneratorExit:
            self.dropped = True
            raise


class ChunkStreams(unittest.TestCase):
    """The zarr store's chunks as a Mapping read while the answer arrives:
    a lookup reads only up to its key's frame; never-written chunks are
    missing; a failed chunk raises at its lookup; the answer is read to its
    end once every frame is in."""

    def setUp(self):
        try:
            import numcodecs  # noqa: F401
        except ImportError:
            self.skipTest("numcodecs not installed")
        from h5chunkd.zarrview import ZarrView
        self.View = ZarrView

    def stream(self, order, keys):
        c = _StreamClient(METADATA, order)
        return c, self.View(c, "https://x/f.h5").stream(keys)

    def test_lazy_in_order(self):
        order = [("1", 200, None, b"one"), ("0", 404, "chunk_not_allocated", b""),
                 ("2", 200, None, b"two")]
        c, m = self.stream(order, ["g/raw/0", "g/raw/1", "g/raw/2"])
        self.assertEqual(c.taken, 0, "nothing is read before a lookup")
        self.assertIn("g/raw/1", m)
        self.assertEqual(c.taken, 1, "a lookup reads up to its own frame only")
        self.assertEqual(m["g/raw/1"], b"one")
        self.assertNotIn("g/raw/0", m)            # never written: missing
        self.assertEqual(c.taken, 2)
        self.assertFalse(c.ended)
        self.assertEqual(m["g/raw/2"], b"two")
        self.assertTrue(c.ended, "the answer is read to its end after the last frame")
        self.assertNotIn("g/raw/9", m)            # not asked for
        self.assertNotIn("g/plain/1", m)
        with self.assertRaises(KeyError):
            m["g/raw/0"]
        # Each chunk is handed over once: taken, it is released.
        self.assertNotIn("g/raw/1", m)
        with self.assertRaises(KeyError):
            m["g/raw/2"]
        self.assertEqual(len(m), 0)
        c, m = self.stream(order, ["g/raw/0", "g/raw/1", "g/raw/2"])
        self.assertEqual(len(m), 2)
        self.assertEqual(dict(m), {"g/raw/1": b"one", "g/raw/2": b"two"})

    def test_failure_raises_at_its_key(self):
        order = [("0", 200, None, b"zero"), ("1", 502, "upstream_error", b""),
                 ("2", 200, None, b"two")]
        c, m = self.stream(order, ["g/raw/0", "g/raw/1", "g/raw/2"])
        self.assertEqual(m["g/raw/0"], b"zero")
        with self.assertRaises(h5chunkd.ChunkError):
            "g/raw/1" in m
        self.assertTrue(c.dropped, "a failed answer is dropped, not read on")
        with self.assertRaises(h5chunkd.ChunkError):
            m["g/raw/2"]                           # the stream stays failed
        # A lookup past a failure (dict(), len()) raises too.
        c, m = self.stream(order, ["g/raw/0", "g/raw/1", "g/raw/2"])
        with self.assertRaises(h5chunkd.ChunkError):
            len(m)

    def test_dropped_half_read(self):
        order = [("0", 200, None, b"zero"), ("1", 200, None, b"one")]
        c, m = self.stream(order, ["g/raw/0", "g/raw/1"])
        self.assertIn("g/raw/0", m)
        m.close()
        self.assertTrue(c.dropped and not c.ended, "a half-read answer is closed")

    def test_several_arrays_fetched_whole(self):
        order = [("0", 200, None, b"zero")]
        c = _StreamClient(METADATA, order)
        got = self.View(c, "https://x/f.h5").stream(["g/raw/0"])
        self.assertNotIsInstance(got, dict)
        c = _BatchClient(METADATA, {"0": (200, b"r"), "1": (200, b"p")})
        got = self.View(c, "https://x/f.h5").stream(["g/raw/0", "g/plain/1"])
        self.assertIsInstance(got, dict)
        self.assertEqual(got, {"g/raw/0": b"r", "g/plain/1": b"p"})
        with self.assertRaises(KeyError):
            self.View(c, "https://x/f.h5").stream(["nope/0"])


class MergedChunks(unittest.TestCase):
    """An array of small chunks shown with merged chunks: one batch of the
    real chunks, each copied into its place; a wrong or failed one raises."""

    def setUp(self):
        try:
            import numpy  # noqa: F401
        except ImportError:
            self.skipTest("numpy not installed")
        from h5chunkd.zarrview import ZarrView
        self.View = ZarrView
        z = _zarray(None)
        z.update(shape=[10, 2], chunks=[2, 2], dtype="<u2")   # 5 real chunks of 8 bytes
        self.doc = {"metadata": {".zgroup": {"zarr_format": 2}, "s/.zarray": z}}
        self.real = {"%d.0" % i: (200, bytes([i]) * 8) for i in range(5)}

    def view(self, answers):
        c = _BatchClient(self.doc, answers)
        v = self.View(c, "https://x/f.h5", merge_small=True)
        return c, v

    def test_assembled(self):
        c, v = self.view(self.real)
        m = v._merged["s"]
        self.assertEqual(m.factor, 5)
        self.assertEqual(json.loads(v.meta_bytes("s/.zarray"))["chunks"], [10, 2])
        got = v.fetch(["s/0.0", "s/0.0"])
        self.assertEqual(bytes(got["s/0.0"]), b"".join(bytes([i]) * 8 for i in range(5)))
        self.assertEqual(c.asked, [("/s", sorted(self.real), True)])

    def test_edge_merged_chunk(self):
        from h5chunkd.zarrview import Merge
        old = Merge.TARGET
        Merge.TARGET = 24   # 3 real chunks a merged one: the second holds 2 and padding
        try:
            c, v = self.view(self.real)
            got = v.fetch(["s/1.0", "s/0.0"])
        finally:
            Merge.TARGET = old
        self.assertEqual(bytes(got["s/0.0"]), b"".join(bytes([i]) * 8 for i in range(3)))
        self.assertEqual(bytes(got["s/1.0"]), bytes([3]) * 8 + bytes([4]) * 8 + bytes(8))

    def test_buffers_reused_only_once_dropped(self):
        # Merged-chunk buffers go back to a pool once nobody holds them: a
        # buffer still held is never handed out again, and a reused one holds
        # the new read's bytes only (its padding too: zeros again).
        from h5chunkd import zarrview
        from h5chunkd.zarrview import Merge
        if not zarrview._REUSE_BUFFERS:
            self.skipTest("buffers are reused on CPython only")
        with zarrview._reuse_pool_lock:
            zarrview._reuse_pool.clear()    # what earlier tests left there
        old = Merge.TARGET
        Merge.TARGET = 24   # the second merged chunk holds 2 real chunks and padding
        try:
            _c, v = self.view(self.real)
            first = v.fetch(["s/1.0"])["s/1.0"]
            want_first = bytes([3]) * 8 + bytes([4]) * 8 + bytes(8)
            nines = {k: (200, bytes([9]) * 8) for k in self.real}
            _c, v2 = self.view(nines)
            second = v2.fetch(["s/1.0"])["s/1.0"]
            self.assertIsNot(second, first)
            self.assertEqual(bytes(first), want_first)      # held: untouched
            self.assertEqual(bytes(second), bytes([9]) * 16 + bytes(8))
            pooled = [b for b in zarrview._reuse_pool if b is first or b is second]
            self.assertEqual(len(pooled), 2)
            first_id = id(first)
            first[16:] = b"\xff" * 8                        # dirty its padding
            del first, pooled
            again = v.fetch(["s/1.0"])["s/1.0"]
            self.assertEqual(id(again), first_id)            # dropped: reused
            self.assertEqual(bytes(again), want_first)       # new bytes, zero padding
            self.assertEqual(bytes(second), bytes([9]) * 16 + bytes(8))
        finally:
            Merge.TARGET = old

    def test_failures_raise(self):
        short = dict(self.real, **{"3.0": (200, b"x" * 7)})
        failed = dict(self.real, **{"2.0": (502, b"")})
        for answers in (short, failed):
            _c, v = self.view(answers)
            with self.assertRaises(h5chunkd.ChunkError):
                v.fetch(["s/0.0"])


class ZarrViewModes(unittest.TestCase):
    """Which chunks are read raw or decoded, and what zarr is told."""

    def setUp(self):
        try:
            import numcodecs  # noqa: F401
        except ImportError:
            self.skipTest("numcodecs not installed")
        from h5chunkd.zarrview import ZarrView
        self.View = ZarrView

    def test_modes(self):
        zstd = [{"id": "zstd", "level": 1}]
        doc = {"metadata": dict(METADATA["metadata"], **{"g/zstd/.zarray": _zarray(zstd)})}
        auto = self.View(_FakeClient(doc), "https://x/f.h5")
        self.assertEqual(auto._mode("g/raw")[:2], (True, False))     # zlib: the daemon decodes
        self.assertEqual(auto._mode("g/zstd")[:2], (False, False))   # raw, zarr decodes
        self.assertEqual(auto._mode("g/plain")[:2], (True, False))   # the view decodes
        self.assertEqual(auto._mode("g/text")[:2], (True, False))
        self.assertEqual(auto._mode("g/odd")[:2], (True, False))     # numcodecs lacks it
        self.assertIsNone(json.loads(auto.meta_bytes("g/raw/.zarray"))["filters"])
        self.assertEqual(json.loads(auto.meta_bytes("g/zstd/.zarray"))["filters"], zstd)
        self.assertEqual(json.loads(auto.meta_bytes("g/text/.zarray"))["filters"],
                         [{"id": "vlen-utf8"}])
        self.assertIsNone(json.loads(auto.meta_bytes("g/odd/.zarray"))["filters"])
        store = self.View(_FakeClient(doc), "https://x/f.h5", auto_local=True)
        self.assertEqual(store._mode("g/raw")[:2], (True, False))
        self.assertEqual(store._mode("g/zstd")[:2], (False, True))   # raw, decoded here
        self.assertIsNone(json.loads(store.meta_bytes("g/zstd/.zarray"))["filters"])
        local = self.View(_FakeClient(METADATA), "https://x/f.h5", decode="local")
        self.assertEqual(local._mode("g/raw")[:2], (False, True))    # raw, decoded here
        self.assertEqual(local._mode("g/plain")[:2], (True, False))
        self.assertEqual(local._mode("g/text")[:2], (True, False))
        self.assertEqual(local._mode("g/odd")[:2], (True, False))
        self.assertIsNone(json.loads(local.meta_bytes("g/raw/.zarray"))["filters"])
        self.assertEqual(json.loads(local.meta_bytes("g/text/.zarray"))["filters"],
                         [{"id": "vlen-utf8"}])
        self.assertIsNone(json.loads(local.meta_bytes("g/odd/.zarray"))["filters"])
        zarr_decodes = self.View(_FakeClient(METADATA), "https://x/f.h5", decode=False)
        self.assertEqual(zarr_decodes._mode("g/raw")[:2], (False, False))
        self.assertEqual(json.loads(zarr_decodes.meta_bytes("g/raw/.zarray"))["filters"], ZLIB)
        daemon = self.View(_FakeClient(METADATA), "https://x/f.h5", decode=True)
        self.assertEqual(daemon._mode("g/raw")[:2], (True, False))
        with self.assertRaises(ValueError):
            self.View(_FakeClient(METADATA), "https://x/f.h5", decode="yes")

    def test_empty_attrs_dropped(self):
        # The store leaves out .zattrs holding {} (zarr reads a missing one as
        # no attributes); attributes that exist stay, and the view as served
        # (fsspec) keeps every key.
        v = self.View(_FakeClient(METADATA), "https://x/f.h5", drop_empty_attrs=True)
        self.assertEqual(v.listdir("g"), [".zgroup", "odd", "plain", "raw", "text"])
        self.assertEqual(json.loads(v.meta_bytes(".zattrs")), {"a": 1})
        with self.assertRaises(KeyError):
            v.meta_bytes("g/raw/.zattrs")
        self.assertNotIn("g/.zattrs", json.loads(v.meta_bytes(".zmetadata"))["metadata"])
        full = self.View(_FakeClient(METADATA), "https://x/f.h5")
        self.assertIn(".zattrs", full.listdir("g"))

    def test_listdir_index(self):
        # The index answers what a scan of every key would.
        v = self.View(_FakeClient(METADATA), "https://x/f.h5")

        def scan(path):
            pre = path.strip("/") + "/" if path.strip("/") else ""
            return sorted({k[len(pre):].split("/", 1)[0] for k in v.meta if k.startswith(pre)})
        for path in ("", "g", "/g/", "g/raw", "g/raw/.zarray", "nope", "g/nope/x"):
            self.assertEqual(v.listdir(path), scan(path), path)
        self.assertEqual(v.listdir("g/raw"), [".zarray", ".zattrs"])
        v.listdir("g").append("junk")  # callers get their own list
        self.assertNotIn("junk", v.listdir("g"))

    def test_rooted(self):
        v = self.View(_FakeClient(METADATA), "https://x/f.h5", path="/g/")
        self.assertEqual(v.listdir(""), [".zattrs", ".zgroup", "odd", "plain", "raw", "text"])
        self.assertEqual(v.array_of("raw/1"), ("raw", "1"))
        self.assertIsNone(v.array_of("nope/1"))
        self.assertEqual(v._h5path("raw"), "/g/raw")
        md = json.loads(v.meta_bytes(".zmetadata"))["metadata"]
        self.assertIn("raw/.zarray", md)
        a = self.View(_FakeClient(METADATA), "https://x/f.h5", path="g/raw")
        self.assertEqual(a.array_of("0"), ("", "0"))
        self.assertEqual(a._h5path(""), "/g/raw")
        with self.assertRaises(h5chunkd.DaemonError):
            self.View(_FakeClient(METADATA), "https://x/f.h5", path="/nope")
        with self.assertRaises(h5chunkd.DaemonError):
            self.View(_FakeClient({"metadata": []}), "https://x/f.h5")

    def test_skipped_filters(self):
        from h5chunkd.zarrview import _codec_objects, local_decode, reencode
        values = bytes(range(200)) * 10
        codecs = _codec_objects(ZLIB)
        shuffled = bytes(codecs[0].encode(values))
        stored_full = bytes(codecs[1].encode(shuffled))
        # mask bit 1: zlib (filter 1) was skipped when the chunk was written.
        self.assertEqual(bytes(local_decode(shuffled, 2, codecs, "/g/raw", "0")), values)
        self.assertEqual(bytes(local_decode(stored_full, 0, codecs, "/g/raw", "0")), values)
        fixed = reencode(shuffled, 2, ZLIB, "/g/raw", "0")
        self.assertEqual(bytes(codecs[0].decode(codecs[1].decode(fixed))), values)
        with self.assertRaises(h5chunkd.ChunkError):
            local_decode(shuffled, 4, codecs, "/g/raw", "0")        # a filter not listed
        with self.assertRaises(h5chunkd.ChunkError):
            local_decode(b"not zlib", 0, codecs, "/g/raw", "0")     # damaged bytes
        self.assertIsNone(_codec_objects([{"id": "no-such-codec"}]))


class FsspecRegistration(unittest.TestCase):
    def test_registered(self):
        try:
            import fsspec
        except ImportError:
            self.skipTest("fsspec not installed")
        from h5chunkd.fs import H5chunkdFileSystem
        self.assertIs(fsspec.get_filesystem_class("h5chunkd"), H5chunkdFileSystem)
        import fsspec.core
        for url in ("h5chunkd::https://x/y.nwb", "h5chunkd://::https://x/y.nwb"):
            chain = fsspec.core._un_chain(url, {})
            self.assertEqual([c[1] for c in chain], ["h5chunkd", "https"], url)
            self.assertEqual(chain[1][0], "https://x/y.nwb")
        # Other URLs are untouched by the chain fix.
        self.assertEqual([c[1] for c in fsspec.core._un_chain("simplecache::https://x/y", {})],
                         ["simplecache", "https"])


if __name__ == "__main__":
    unittest.main()
