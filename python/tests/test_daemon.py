"""test_daemon.py - the package against a real daemon: every dataset of the
NWB-like test file (tests/data/make_nwb_like.py) read through each entry
point (h5chunkd.open + h5py, zarr_store + zarr, the fsspec protocol with h5py
and with zarr, Client.slice) equals h5py on the local file; a zarr read of N
chunks is exactly one batch request (counted by the daemon: /v1/stats and
its access log); a chunk that fails upstream raises instead of reading as a
fill value; HDMF's HDF5IO reads a table through h5chunkd.open; prefetch,
the bearer token and the Unix socket.

tests/integration/test_python.sh starts what these tests need and passes it
in the environment (every test is skipped without it):
  H5CHUNKD_TEST_DAEMON       the main daemon (http://127.0.0.1:PORT), with an access log
  H5CHUNKD_TEST_ACCESS_LOG   its access log
  H5CHUNKD_TEST_ORIGIN       nginx serving H5CHUNKD_TEST_ROOT
  H5CHUNKD_TEST_ROOT         the directory holding session.nwb (and where the HDMF file goes)
  H5CHUNKD_TEST_FAULT_DAEMON a second daemon on a Unix socket (unix:/PATH) with
                             token_scope = all, no retries, 4K blocks, no prefix read
  H5CHUNKD_TEST_FAULT_TOKEN_FILE   its token file
  H5CHUNKD_TEST_FAULT_ORIGIN tests/integration/fault_origin.py serving the same root
  TESTS_SRCDIR               the source tree's tests/ (the h5py model of test_clients.py)
"""
import json
import os
import re
import sys
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import h5chunkd  # noqa: E402

ENV = {k: os.environ.get(k) for k in (
    "H5CHUNKD_TEST_DAEMON", "H5CHUNKD_TEST_ACCESS_LOG", "H5CHUNKD_TEST_ORIGIN",
    "H5CHUNKD_TEST_ROOT", "H5CHUNKD_TEST_FAULT_DAEMON", "H5CHUNKD_TEST_FAULT_TOKEN_FILE",
    "H5CHUNKD_TEST_FAULT_ORIGIN", "TESTS_SRCDIR")}
READY = all(ENV.values())
FILE = "session.nwb"
MODEL = None
tc = None  # tests/integration/test_clients.py: Model, same_array, NO_ZARR_FORM


def setUpModule():
    global MODEL, tc
    if not READY:
        raise unittest.SkipTest("needs a daemon: run tests/integration/test_python.sh")
    sys.path.insert(0, os.path.join(ENV["TESTS_SRCDIR"], "integration"))
    import test_clients
    tc = test_clients
    MODEL = tc.Model(os.path.join(ENV["H5CHUNKD_TEST_ROOT"], FILE))


def url(name=FILE):
    return "%s/%s" % (ENV["H5CHUNKD_TEST_ORIGIN"], name)


def stats(c):
    return c.stats()


ACCESS_RE = re.compile(r'method=(\S+) target="([^"]*)" status=(\d+)')


class AccessLog:
    """The main daemon's access log: which requests a read made."""

    def __init__(self, path, client):
        self.path, self.client, self.seq = path, client, 0

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def since(self, mark):
        """(method, target, status) of every request logged after mark, up to
        a marker request of ours (bounded wait: lines are written once an
        answer is out)."""
        self.seq += 1
        tag = "/v1/health?pytest-sync=%d" % self.seq
        self.client.transport.request("GET", tag)
        deadline = time.monotonic() + 5
        while True:
            with open(self.path, errors="replace") as fh:
                fh.seek(mark)
                lines = [m.groups() for m in map(ACCESS_RE.search, fh) if m]
            if any(t == tag for _m, t, _s in lines) or time.monotonic() > deadline:
                time.sleep(0.1)  # a line of another connection finishing at the same moment
                with open(self.path, errors="replace") as fh:
                    fh.seek(mark)
                    lines = [m.groups() for m in map(ACCESS_RE.search, fh) if m]
                return [(m, urllib.parse.unquote(t), int(s)) for m, t, s in lines
                        if not t.startswith("/v1/health?pytest-sync=")]
            time.sleep(0.05)


def zarr_comparable(o):
    """The objects the Zarr view must show, and whether values are comparable."""
    return o.kind == "dataset" and o.path not in tc.NO_ZARR_FORM and o.values is not None


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = h5chunkd.Client(ENV["H5CHUNKD_TEST_DAEMON"])
        cls.alog = AccessLog(ENV["H5CHUNKD_TEST_ACCESS_LOG"], cls.client)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        h5chunkd.default_client().close()

    def assertSameValues(self, want, got, what):
        self.assertTrue(tc.same_array(want, got), "%s: expected %s, got %s"
                        % (what, tc.brief(want), tc.brief(got)))


class EveryEntryPoint(Base):
    """Every dataset through every entry point equals h5py on the local file."""

    def h5py_pass(self, f, what):
        import h5py
        import numpy as np
        with h5py.File(f, "r") as h5:
            n = 0
            for p, o in sorted(MODEL.datasets.items()):
                ds = h5[p]
                self.assertEqual(ds.shape, o.shape, "%s %s shape" % (what, p))
                if o.vkind == "vlen":
                    want = [np.asarray(x).tolist() for x in o.ds[()]]
                    got = [np.asarray(x).tolist() for x in ds[()]]
                    self.assertEqual(want, got, "%s %s" % (what, p))
                elif o.vkind == "regionref":
                    self.assertEqual(len(ds[()]), len(o.ds[()]), "%s %s" % (what, p))
                else:
                    self.assertSameValues(o.values, tc.h5_values(h5, ds), "%s %s" % (what, p))
                self.assertTrue(tc.same_json(o.attrs, {k: tc.attr_json(h5, ds.attrs[k])
                                                       for k in ds.attrs}),
                                "%s %s attrs" % (what, p))
                n += 1
        self.assertGreater(n, 20)

    def zarr_pass(self, root, what):
        import numpy as np
        n = 0
        for p, o in sorted(MODEL.datasets.items()):
            if not zarr_comparable(o):
                continue
            node = root[p[1:]]
            self.assertEqual(tuple(node.shape), o.shape, "%s %s shape" % (what, p))
            got = node[...]
            if o.vkind in ("vstr", "ref"):
                self.assertEqual(node.dtype, np.dtype(object), "%s %s dtype" % (what, p))
            self.assertSameValues(o.values, got, "%s %s" % (what, p))
            self.assertTrue(tc.same_json(o.attrs, node.attrs.asdict()), "%s %s attrs" % (what, p))
            n += 1
        self.assertGreater(n, 20)
        # Objects without a Zarr form are left out, never shown wrong.
        seen = set()
        root.visititems(lambda name, _obj: seen.add("/" + name))
        self.assertFalse(seen & set(tc.NO_ZARR_FORM), what)

    def test_h5py_over_open(self):
        f = h5chunkd.open(url(), daemon=ENV["H5CHUNKD_TEST_DAEMON"])
        self.h5py_pass(f, "h5py(h5chunkd.open)")
        self.assertGreater(f.requests, 0)

    def test_h5py_over_open_small_blocks(self):
        # Reads that straddle blocks and the LRU's edge, with 4 KiB blocks.
        f = h5chunkd.open(url(), daemon=ENV["H5CHUNKD_TEST_DAEMON"], block_size=4096,
                          cache_blocks=4)
        self.h5py_pass(f, "h5py(h5chunkd.open, 4K blocks)")

    def test_file_object(self):
        path = os.path.join(ENV["H5CHUNKD_TEST_ROOT"], FILE)
        with open(path, "rb") as fh:
            local = fh.read()
        f = self.client.open(url())
        self.assertEqual(f.size, len(local))
        self.assertTrue(f.seekable() and f.readable() and not f.writable())
        for pos, n in ((0, 8), (1000, 300000), (len(local) - 5, 100), (262143, 2),
                       (3, 2 << 20), (len(local), 10)):
            f.seek(pos)
            self.assertEqual(f.read(n), local[pos:pos + n], "read(%d) at %d" % (n, pos))
            self.assertEqual(f.tell(), min(pos + n, len(local)))
        f.seek(-16, 2)
        self.assertEqual(f.read(), local[-16:])
        f.seek(0)
        self.assertEqual(f.read(), local)
        with self.assertRaises(OSError):
            f.seek(-1)
        f.close()
        with self.assertRaises(ValueError):
            f.read(1)
        with self.assertRaises(h5chunkd.DaemonError) as cm:
            self.client.open(url("no-such-file.nwb"))
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "not_found"))

    def test_zarr_store(self):
        import zarr
        store = h5chunkd.zarr_store(url(), daemon=ENV["H5CHUNKD_TEST_DAEMON"])
        # Arrays of small chunks are shown to zarr with chunks merged.
        merged = store.view._merged
        for p in ("acquisition/ElectricalSeries/timestamps", "analysis/sparse"):
            self.assertIn(p, merged)
            self.assertGreater(merged[p].factor, 1)
        self.assertNotIn("acquisition/ElectricalSeries/data", merged)
        self.zarr_pass(zarr.open_consolidated(store, mode="r"), "zarr(zarr_store)")
        # zarr.open without consolidation finds the same metadata in the store.
        self.zarr_pass(zarr.open(store, mode="r"), "zarr.open(zarr_store)")

    def test_zarr_store_decode_threads(self):
        # Both ways of decoding here, whatever the machine's load.
        import zarr
        from h5chunkd import zarrview
        saved = zarrview._cores_idle, zarrview.DECODE_THREADS
        try:
            for idle, threads in ((True, 2), (False, 2), (True, 0)):
                zarrview._cores_idle = lambda idle=idle: idle
                zarrview.DECODE_THREADS = threads
                store = self.client.zarr_store(url(), decode="local")
                root = zarr.open_consolidated(store, mode="r")
                for p in ("/acquisition/ElectricalSeries/data", "/acquisition/data_link",
                          "/units/spike_times"):
                    self.assertEqual(store.view._mode(p[1:])[:2], (False, True))
                    self.assertSameValues(MODEL.datasets[p].values, root[p[1:]][...],
                                          "decode threads %d idle %s: %s" % (threads, idle, p))
        finally:
            zarrview._cores_idle, zarrview.DECODE_THREADS = saved

    def test_zarr_store_zarr_decodes(self):
        import zarr
        store = self.client.zarr_store(url(), decode=False)
        root = zarr.open_consolidated(store, mode="r")
        self.assertEqual([c.codec_id for c in root["acquisition/ElectricalSeries/data"].filters],
                         ["shuffle", "zlib"])
        self.zarr_pass(root, "zarr(zarr_store, zarr decodes)")

    def test_zarr_store_decoded(self):
        import zarr
        store = h5chunkd.zarr_store(url(), daemon=ENV["H5CHUNKD_TEST_DAEMON"], decode=True)
        self.zarr_pass(zarr.open_consolidated(store, mode="r"), "zarr(zarr_store decoded)")

    def test_zarr_store_path(self):
        import zarr
        p = "/acquisition/ElectricalSeries/data"
        arr = zarr.open_consolidated(self.client.zarr_store(url(), path=p), mode="r")
        self.assertIsInstance(arr, zarr.Array)
        self.assertSameValues(MODEL.datasets[p].values, arr[...], "zarr_store(path=dataset)")
        g = zarr.open_consolidated(self.client.zarr_store(url(), path="/processing/ecephys"),
                                   mode="r")
        self.assertSameValues(MODEL.datasets["/processing/ecephys/LFP/data"].values,
                              g["LFP/data"][...], "zarr_store(path=group)")
        with self.assertRaises(h5chunkd.DaemonError):
            self.client.zarr_store(url(), path="/no/such/group")

    def test_fsspec(self):
        import fsspec
        import zarr
        os.environ["H5CHUNKD_URL"] = ENV["H5CHUNKD_TEST_DAEMON"]
        try:
            for pre in ("h5chunkd::", "h5chunkd://::"):
                with fsspec.open(pre + url(), "rb") as fh:
                    self.h5py_pass(fh, "h5py(fsspec %s)" % pre)
                self.zarr_pass(zarr.open_consolidated(pre + url(), mode="r"),
                               "zarr(fsspec URL %s)" % pre)
            m = fsspec.get_mapper("h5chunkd://::" + url())
            self.zarr_pass(zarr.open_consolidated(m, mode="r"), "zarr(fsspec mapper)")
        finally:
            del os.environ["H5CHUNKD_URL"]
        fs = fsspec.filesystem("h5chunkd", fo=url(), daemon=ENV["H5CHUNKD_TEST_DAEMON"])
        self.assertEqual(fs.info("")["size"],
                         os.path.getsize(os.path.join(ENV["H5CHUNKD_TEST_ROOT"], FILE)))
        self.assertIn("acquisition", fs.ls("", detail=False))
        self.assertEqual(fs.info("acquisition")["type"], "directory")
        z = json.loads(fs.cat("acquisition/ElectricalSeries/data/.zarray"))
        self.assertEqual(z["shape"], [20000, 32])
        # Decoded datasets hold the fill value in chunks never written.
        self.assertEqual(len(fs.cat("analysis/sparse/9.9")), 10 * 10 * 4)
        with self.assertRaises(FileNotFoundError):
            fs.info("no/such/thing")

    def test_slice(self):
        import numpy as np
        for p, sels in sorted(tc.SELECTIONS.items()):
            o = MODEL.datasets[p]
            if o.vkind != "fixed":
                continue
            for s in sels:
                want = np.asarray(o.values[eval("np.s_[%s]" % s)] if s else o.values)
                got = self.client.slice(url(), p, s)
                self.assertSameValues(want, got, "slice %s %s" % (p, s))
        got = self.client.slice(url(), "/acquisition/ElectricalSeries/data",
                                (slice(10, 20), 5))
        self.assertSameValues(MODEL.datasets["/acquisition/ElectricalSeries/data"].values[10:20, 5],
                              got, "slice with a Python index")
        with self.assertRaises(h5chunkd.DaemonError) as cm:
            self.client.slice(url(), "/analysis/sparse", "1:2:0")
        self.assertEqual(cm.exception.code, "bad_request")

    def test_meta_and_chunks(self):
        m = self.client.meta(url(), "/acquisition/ElectricalSeries/data")
        self.assertEqual((m["shape"], m["chunks"], m["dtype"]), ([20000, 32], [2000, 32], "<i2"))
        self.assertEqual(self.client.meta(url())["kind"], "group")
        got = self.client.chunks(url(), "/analysis/sparse", ["0.0", "9.9"])
        o = MODEL.datasets["/analysis/sparse"]
        self.assertIn("9.9", o.unallocated)
        self.assertIsNone(got["9.9"])
        self.assertIsNotNone(got["0.0"])
        with self.assertRaises(h5chunkd.DaemonError) as cm:
            self.client.chunks(url(), "/analysis/sparse", ["01.0"])
        self.assertEqual(cm.exception.code, "bad_key")
        h = self.client.health()
        self.assertEqual(h["status"], "ok")
        self.assertIn("requests", self.client.stats())


class FrameForm(Base):
    """Every frame header the daemon writes is in the form the package reads
    without the JSON parser (h5chunkd/frames.py): a change on either side
    would silently make every batch of small chunks slower."""

    def test_daemon_headers_match_the_fast_form(self):
        from h5chunkd import frames
        o = MODEL.datasets["/analysis/sparse"]
        keys = ["%d.%d" % (i, j) for i in range(10) for j in range(10)]
        self.assertTrue(o.unallocated & set(keys), "the case needs chunks never written")
        for decode in (False, True):
            body = json.dumps({"url": url(), "path": "/analysis/sparse", "keys": keys,
                               "decode": decode}).encode()
            _resp, data = self.client.transport.request("POST", "/v1/chunks", body)
            pos, seen, errors = 0, set(), 0
            while pos < len(data):
                m = frames._DAEMON_HEADER.match(data, pos)
                self.assertIsNotNone(m, "decode=%s: header not in the daemon's form: %r"
                                     % (decode, data[pos:pos + 200]))
                seen.add(m.group(1).decode())
                errors += m.group(5) is not None
                pos = m.end() + int(m.group(3))
            self.assertEqual(seen, set(keys))
            self.assertEqual(errors, 0 if decode else len(o.unallocated & set(keys)))


class OneBatchPerRead(Base):
    """A zarr read of N chunks makes exactly one request to the daemon, a
    POST /v1/chunks, counted by the daemon itself."""

    CASES = [
        ("/acquisition/ElectricalSeries/data", (slice(None), slice(None))),
        ("/acquisition/ElectricalSeries/data", (slice(1500, 9000), 3)),
        ("/acquisition/ElectricalSeries/timestamps", (slice(None, None, 7),)),
        ("/analysis/sparse", (slice(None), slice(None))),   # chunks never written among them
        ("/stimulus/templates/movie", (slice(4, 30), slice(None), slice(None))),
        ("/processing/ecephys/LFP/data", (slice(None), slice(0, 4))),
    ]

    def chunks_touched(self, o, sel):
        n = 1
        for s, size, c in zip(sel, o.shape, o.chunks):
            if isinstance(s, int):
                n *= 1
                continue
            idx = range(*s.indices(size))
            n *= len({i // c for i in idx})
        return n

    def check(self, read, store_or_none, what):
        for p, sel in self.CASES:
            o = MODEL.datasets[p]
            n = self.chunks_touched(o, sel)
            self.assertGreater(n, 1, "%s: the case must touch several chunks" % p)
            before = stats(self.client)["requests"]
            mark = self.alog.mark()
            batches0 = store_or_none.batches if store_or_none is not None else None
            got = read(p, sel)
            after = stats(self.client)["requests"]
            logged = self.alog.since(mark)
            self.assertSameValues(o.values[sel], got, "%s %s" % (what, p))
            # The second /v1/stats is counted too: one request in between.
            self.assertEqual(after - before, 2, "%s %s: requests counted by the daemon: %s"
                             % (what, p, logged))
            data = [x for x in logged if not x[1].startswith("/v1/stats")]
            self.assertEqual([(m, t, s) for m, t, s in data], [("POST", "/v1/chunks", 200)],
                             "%s %s (%d chunks): requests in the access log" % (what, p, n))
            if store_or_none is not None:
                self.assertEqual(store_or_none.batches - batches0, 1)

    def test_zarr_store(self):
        import zarr
        store = self.client.zarr_store(url())
        root = zarr.open_consolidated(store, mode="r")
        self.check(lambda p, sel: root[p[1:]][sel], store, "zarr_store")

    def test_zarr_over_fsspec_url(self):
        import zarr
        os.environ["H5CHUNKD_URL"] = ENV["H5CHUNKD_TEST_DAEMON"]
        try:
            root = zarr.open_consolidated("h5chunkd::" + url(), mode="r")
        finally:
            del os.environ["H5CHUNKD_URL"]
        self.check(lambda p, sel: root[p[1:]][sel], None, "zarr(h5chunkd:: URL)")


class Failures(unittest.TestCase):
    """The second daemon: its origin fails on demand; Unix socket; token."""

    @classmethod
    def setUpClass(cls):
        cls.addr = ENV["H5CHUNKD_TEST_FAULT_DAEMON"]
        with open(ENV["H5CHUNKD_TEST_FAULT_TOKEN_FILE"]) as fh:
            cls.token = fh.read().strip()
        cls.client = h5chunkd.Client(cls.addr, token=cls.token)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def fault(self, spec):
        req = urllib.request.Request(ENV["H5CHUNKD_TEST_FAULT_ORIGIN"] + "/_control",
                                     data=json.dumps(spec).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)

    def tearDown(self):
        self.fault({"mode": "reset_all"})

    def furl(self, name=FILE):
        return "%s/%s" % (ENV["H5CHUNKD_TEST_FAULT_ORIGIN"], name)

    def test_token_and_unix_socket(self):
        self.assertEqual(self.client.health()["status"], "ok")
        env = dict(os.environ)
        try:
            os.environ["H5CHUNKD_TOKEN_FILE"] = "/nonexistent-h5chunkd-token"
            os.environ["XDG_CONFIG_HOME"] = "/nonexistent-h5chunkd-config"
            with self.assertRaises(OSError):
                h5chunkd.Client(self.addr)  # a named token file that is missing
            del os.environ["H5CHUNKD_TOKEN_FILE"]
            with self.assertRaises(h5chunkd.DaemonError) as cm:
                h5chunkd.Client(self.addr).stats()
            self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))
            os.environ["H5CHUNKD_URL"] = self.addr
            os.environ["H5CHUNKD_TOKEN_FILE"] = ENV["H5CHUNKD_TEST_FAULT_TOKEN_FILE"]
            self.assertIn("requests", h5chunkd.Client().stats())
        finally:
            os.environ.clear()
            os.environ.update(env)

    def test_chunk_error_raises(self):
        import h5py
        import zarr
        import fsspec
        u = self.furl()
        store = self.client.zarr_store(u)               # metadata while upstream is fine
        root = zarr.open_consolidated(store, mode="r")
        fs_root = zarr.open_consolidated(
            fsspec.get_mapper("h5chunkd://::" + u, h5chunkd={"daemon": self.addr,
                                                              "token": self.token}), mode="r")
        h5 = h5py.File(self.client.open(u, block_size=4096, cache_blocks=4), "r")
        ds = h5["/acquisition/ElectricalSeries/data"]
        self.fault({"mode": "status", "status": 503})   # every upstream request fails now
        with self.assertRaises(h5chunkd.ChunkError) as cm:
            root["acquisition/ElectricalSeries/data"][...]
        self.assertEqual((cm.exception.status, cm.exception.code), (502, "upstream_error"))
        self.assertNotIsInstance(cm.exception, (KeyError, OSError))
        with self.assertRaises(h5chunkd.ChunkError):
            fs_root["acquisition/ElectricalSeries/timestamps"][...]
        with self.assertRaises(h5chunkd.ChunkError):
            store["processing/ecephys/LFP/data/0.0"]
        with self.assertRaises(OSError):
            ds[...]
        h5.close()
        # Once the origin is back, the same reads give the right values.
        self.fault({"mode": "reset_all"})
        want = MODEL.datasets["/acquisition/ElectricalSeries/data"].values
        self.assertTrue(tc.same_array(want, root["acquisition/ElectricalSeries/data"][...]))

    def test_prefetch(self):
        u = self.furl()
        p = "/processing/ecephys/LFP/data"
        st = self.client.prefetch(u, p, progress=True)
        self.assertEqual(st["state"], "done")
        self.assertEqual(st["bytes_done"], st["bytes_total"])
        self.assertGreater(st["chunks_total"], 1)
        before = self.client.stats()["upstream_requests"]
        self.client.chunks(u, p, ["%d.0" % i for i in range(st["chunks_total"])])
        self.assertEqual(self.client.stats()["upstream_requests"], before,
                         "chunks prefetched were fetched upstream again")
        with self.assertRaises(h5chunkd.DaemonError) as cm:
            self.client.prefetch(u, "/nope")
        self.assertEqual(cm.exception.code, "not_found")
        job = self.client.prefetch(u, p, select="0:10", wait=False)
        self.assertIn(job["state"], ("running", "done"))


class RawChunksNeverWritten(Base):
    """A compressed dataset (read raw) with chunks never written: zarr gets
    them as missing keys and fills them; fsspec says FileNotFoundError."""

    def test_fill(self):
        import fsspec
        import h5py
        import numpy as np
        import zarr
        path = os.path.join(ENV["H5CHUNKD_TEST_ROOT"], "sparse_gzip.h5")
        with h5py.File(path + ".part", "w") as f:
            # Chunks of 80 KB: above Merge.SMALL, so the store reads them as they are.
            d = f.create_dataset("x", shape=(1000, 600), chunks=(100, 200), dtype="<i4",
                                 compression="gzip", shuffle=True, fillvalue=7)
            for i in range(0, 10, 3):
                d[i * 100:(i + 1) * 100, 200:400] = np.arange(20000).reshape(100, 200) + i
        os.replace(path + ".part", path)
        with h5py.File(path, "r") as f:
            want = f["x"][...]
        # gzip and shuffle: "auto" has the daemon decode them, "local" reads
        # them raw and decodes here, False hands them to zarr raw.
        modes = {"auto": (True, False), "local": (False, True), False: (False, False)}
        for decode in ("auto", "local", False):
            store = self.client.zarr_store(url("sparse_gzip.h5"), decode=decode)
            self.assertEqual(store.view._mode("x")[:2], modes[decode], "decode=%s" % decode)
            z = zarr.open_consolidated(store, mode="r")["x"]
            self.assertSameValues(want, z[...], "zarr_store(decode=%s) over chunks never written"
                                  % decode)
            self.assertEqual(store.batches, 1)
        self.assertNotIn("x/0.0", store)
        self.assertIn("x/0.1", store)
        # The file system's default serves gzip chunks decoded: a chunk never
        # written is then its fill value; read raw it is missing.
        decoded = fsspec.filesystem("h5chunkd", fo=url("sparse_gzip.h5"),
                                    daemon=ENV["H5CHUNKD_TEST_DAEMON"])
        self.assertEqual(decoded.cat("x/0.0"), np.full((100, 200), 7, "<i4").tobytes())
        self.assertSameValues(want, zarr.open_consolidated(decoded.get_mapper(""),
                                                           mode="r")["x"][...],
                              "zarr over the fsspec mapper, decoded by the daemon")
        fs = fsspec.filesystem("h5chunkd", fo=url("sparse_gzip.h5"),
                               daemon=ENV["H5CHUNKD_TEST_DAEMON"], decode=False,
                               skip_instance_cache=True)
        with self.assertRaises(FileNotFoundError):
            fs.cat("x/0.0")
        got = fs.cat(["x/0.0", "x/0.1"], on_error="omit")
        self.assertEqual(list(got), ["x/0.1"])
        got = fs.cat(["x/0.0", "x/0.1"], on_error="return")
        self.assertIsInstance(got["x/0.0"], FileNotFoundError)
        self.assertSameValues(want, zarr.open_consolidated(fs.get_mapper(""), mode="r")["x"][...],
                              "zarr over the fsspec mapper")


class Hdmf(Base):
    def test_hdf5io_over_open(self):
        try:
            import hdmf.common as common
            from hdmf.backends.hdf5 import HDF5IO
        except ImportError:
            self.skipTest("hdmf not installed (python3-hdmf)")
        import h5py
        import numpy as np
        import warnings
        path = os.path.join(ENV["H5CHUNKD_TEST_ROOT"], "hdmf_table.h5")
        start = np.arange(5000) / 30.0
        correct = np.arange(5000) % 3 == 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = common.DynamicTable(name="trials", description="trials", columns=[
                common.VectorData(name="start_time", description="s", data=start),
                common.VectorData(name="correct", description="c", data=correct)])
            with HDF5IO(path + ".part", manager=common.get_manager(), mode="w") as io:
                io.write(table)
            os.replace(path + ".part", path)
            with h5py.File(self.client.open(url("hdmf_table.h5")), "r") as f:
                with HDF5IO(file=f, manager=common.get_manager(), mode="r") as io:
                    got = io.read()
                    self.assertEqual(list(got.colnames), ["start_time", "correct"])
                    self.assertTrue(np.array_equal(got["start_time"].data[:], start))
                    self.assertTrue(np.array_equal(got["correct"].data[:], correct))


if __name__ == "__main__":
    unittest.main()
