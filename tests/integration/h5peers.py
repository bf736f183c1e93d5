"""h5peers.py - the processes and HTTP helpers shared by the Python suites that
check h5chunkd against h5py on many files (test_corpus.py, test_damaged.py):
an nginx origin on a free loopback port, one daemon, bounded requests (every
request has a timeout), batch frame parsing, and h5py's view of a dataset in
the daemon's terms (dtype spelling, chunk grid, expected raw chunks).
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import numpy as np

VIRTUAL_CHUNK_BYTES = 16 * 1024 * 1024
START_TIMEOUT = 10
# Codes that refuse a file or an object clearly (docs/api.md): not a failure.
CLEAR_REFUSALS = {"damaged_file", "filter_unavailable", "unsupported"}

_procs = []


def _kill_all():
    for p in _procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


atexit.register(_kill_all)


def _on_signal(signum, _frame):
    sys.exit(128 + signum)  # runs atexit


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


class Fatal(Exception):
    pass


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(port, proc, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tail(path, n=15):
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])
    except OSError:
        return "(no %s)" % path


class Nginx:
    """nginx serving `root` with byte ranges."""

    def __init__(self, binary, root, workdir, access_log=None):
        self.binary, self.root, self.dir = binary, root, workdir
        self.access_log = access_log  # a path: one line per request, see LOG_FORMAT
        self.proc = None
        self.port = None

    # status, body bytes sent (what crossed the link), the Range header, the URI
    LOG_FORMAT = "'$status $body_bytes_sent \"$http_range\" $request_uri'"

    def start(self):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        for _attempt in range(5):
            port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            d = self.dir
            lines = ["daemon off;", "master_process off;", "worker_processes 1;"]
            if os.geteuid() == 0:
                lines.append("user root;")
            lines += ["pid %s/nginx.pid;" % d, "error_log %s/error.log warn;" % d,
                      "events { worker_connections 1024; }", "http {"]
            if self.access_log:
                lines += ["  log_format exact %s;" % self.LOG_FORMAT,
                          "  access_log %s exact;" % self.access_log]
            else:
                lines += ["  access_log off;"]
            lines += ["  client_body_temp_path %s/tmp/body;" % d,
                      "  proxy_temp_path %s/tmp/proxy;" % d,
                      "  fastcgi_temp_path %s/tmp/fastcgi;" % d,
                      "  uwsgi_temp_path %s/tmp/uwsgi;" % d, "  scgi_temp_path %s/tmp/scgi;" % d,
                      "  default_type application/octet-stream;", "  keepalive_requests 100000;",
                      "  server {", "    listen 127.0.0.1:%d;" % port,
                      "    server_name localhost;", "    root %s;" % self.root,
                      "    location / { }", "  }", "}"]
            with open(conf, "w") as fh:
                fh.write("\n".join(lines) + "\n")
            err = open(os.path.join(self.dir, "stdout.log"), "ab")
            self.proc = subprocess.Popen([self.binary, "-e", os.path.join(d, "error.log"), "-p",
                                          d, "-c", conf], stdout=err, stderr=err,
                                         stdin=subprocess.DEVNULL)
            err.close()
            _procs.append(self.proc)
            if wait_port(port, self.proc, START_TIMEOUT):
                self.port = port
                return
            stop_process(self.proc, 3)
        raise Fatal("nginx did not start: %s" % tail(os.path.join(self.dir, "error.log")))

    def url(self, relpath):
        return "http://127.0.0.1:%d/%s" % (self.port, urllib.parse.quote(relpath))


def stop_process(proc, secs):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(secs)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def drop_work_dir(tmp, log):
    """Removes a test's temp dir at its end; KEEP_TMP=1 keeps it and says where."""
    if os.environ.get("KEEP_TMP") == "1":
        log("temp dir kept: %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


class Suite:
    """One test's failures: check() records and prints them, main() runs the
    test in a temp dir, stops every process it started and says PASS or FAIL."""

    def __init__(self, name):
        self.name = name
        self.failures = []

    def log(self, msg):
        print("%s: %s" % (self.name, msg), flush=True)

    def fail(self, msg):
        self.failures.append(msg)
        print("%s: FAIL: %s" % (self.name, msg), flush=True)

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond

    def daemon_clean(self, d):
        """The daemon still answers, and its log holds no sanitizer report."""
        self.check(d.alive() and d.healthy(), "the daemon died")
        with open(d.logpath, errors="replace") as fh:
            text = fh.read()
        self.check("Sanitizer" not in text and "runtime error:" not in text,
                   "sanitizer report in the daemon's log: %s" % tail(d.logpath, 20))

    def main(self, run):
        """Runs run(tmp); the exit status: 0 pass, 1 fail."""
        tmp = tempfile.mkdtemp(prefix="h5cd-%s." % self.name)
        try:
            run(tmp)
        except Fatal as e:
            self.fail(str(e))
        finally:
            _kill_all()
            drop_work_dir(tmp, self.log)
        if self.failures:
            self.log("%d failures" % len(self.failures))
            return 1
        self.log("PASS")
        return 0


DAEMON_LISTEN_RE = re.compile(r'msg="h5chunkd \S+ listening".*?addr=127\.0\.0\.1:(\d+)')


def spawn_daemon(binary, cache_dir, logpath, extra_args):
    """Starts h5chunkd on a free loopback port, its stderr appended to logpath.
    Returns (process, port) once it logged where it listens; raises Fatal if it
    exits first or says nothing within START_TIMEOUT.  Stopped at exit."""
    args = [binary, "--foreground", "--listen", "127.0.0.1:0", "--cache-dir", cache_dir,
            "--allow-private-upstreams"] + list(extra_args)
    with open(logpath, "ab") as errf:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errf,
                                stdin=subprocess.DEVNULL)
    _procs.append(proc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(logpath, errors="replace") as fh:
            m = DAEMON_LISTEN_RE.search(fh.read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise Fatal("h5chunkd exited with status %d before listening: %s"
                        % (proc.returncode, tail(logpath, 5)))
        time.sleep(0.05)
    raise Fatal("h5chunkd did not log its listen address within %d s" % START_TIMEOUT)


class Daemon:
    """One h5chunkd on a free loopback port; every request is bounded by `timeout`."""

    def __init__(self, binary, cache_dir, logpath, extra_args=(), timeout=20):
        self.binary, self.cache_dir, self.logpath = binary, cache_dir, logpath
        self.extra_args = list(extra_args)
        self.timeout = timeout
        self.proc = None
        self.port = None
        self.timeouts = 0  # requests that got no answer in time

    def start(self):
        self.proc, self.port = spawn_daemon(self.binary, self.cache_dir, self.logpath,
                                            ["--log-level", "info"] + self.extra_args)

    def fsspec_kwargs(self):
        """fsspec HTTP options that bound every request like request() does."""
        import aiohttp
        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=self.timeout)}}

    def kill(self):
        stop_process(self.proc, 5)

    def cpu_seconds(self):
        """CPU time the daemon has used (user + system), from /proc."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def runaway(self, window=1.0, busy=0.5):
        """True when, with no request outstanding, the daemon keeps burning CPU
        (a walk or a decode that goes on after its client gave up)."""
        try:
            tasks = os.listdir("/proc/%d/task" % self.proc.pid)
        except OSError:
            return False
        running = 0
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/stat" % (self.proc.pid, t)) as fh:
                    running += fh.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:
                pass
        if not running:
            return False
        before = self.cpu_seconds()
        time.sleep(window)
        return self.cpu_seconds() - before > busy * window

    def cache_bytes(self):
        total = 0
        for dp, _dirs, names in os.walk(self.cache_dir):
            for n in names:
                try:
                    total += os.path.getsize(os.path.join(dp, n))
                except OSError:
                    pass
        return total

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def request(self, method, path, body=None, headers=None, timeout=None):
        """(status, headers, body); status 0 = no answer (closed, refused, timed out)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        except socket.timeout:
            self.timeouts += 1
            return 0, {}, b"no answer within %d s" % (timeout or self.timeout)
        except (OSError, http.client.HTTPException) as e:
            return 0, {}, repr(e).encode()
        finally:
            conn.close()

    def get(self, endpoint, **params):
        if params:
            endpoint += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        return self.request("GET", endpoint)

    def post_chunks(self, doc):
        return self.request("POST", "/v1/chunks", json.dumps(doc).encode(),
                            {"Content-Type": "application/json"})

    def healthy(self):
        st, _, _ = self.request("GET", "/v1/health", timeout=5)
        return st == 200


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


class FrameError(Exception):
    pass


def parse_frames(body):
    """{key: (header dict, payload bytes)} of a POST /v1/chunks answer."""
    frames = {}
    pos = 0
    while pos < len(body):
        nl = body.find(b"\n", pos)
        if nl < 0:
            raise FrameError("frame header without newline at byte %d" % pos)
        try:
            head = json.loads(body[pos:nl])
        except ValueError:
            raise FrameError("frame header is not JSON: %r" % body[pos:nl][:200])
        n = head.get("length", 0)
        payload = body[nl + 1:nl + 1 + n]
        if len(payload) != n:
            raise FrameError("frame %s: %d payload bytes, header says %d"
                             % (head.get("key"), len(payload), n))
        if head.get("key") in frames:
            raise FrameError("key %s answered twice" % head.get("key"))
        frames[head.get("key")] = (head, payload)
        pos = nl + 1 + n
    return frames


# ---------------------------------------------------------------- h5py's view

def zarr_dtype(dt):
    """The daemon's dtype spelling (docs/api.md): NumPy's type string, or a
    structured dtype as [[name, type(, shape)]] in offset order; None when
    the type has no fixed-size NumPy spelling."""
    import h5py
    if h5py.check_string_dtype(dt) is not None and dt.kind == "O":
        return None
    if dt.kind == "O":
        return None
    if dt.fields is not None:
        out = []
        for name, (fdt, _off) in sorted(dt.fields.items(), key=lambda kv: kv[1][1]):
            if fdt.subdtype is not None:
                base, shape = fdt.subdtype
                out.append([name, zarr_dtype(base), list(shape)])
            else:
                out.append([name, zarr_dtype(fdt)])
        return out
    if dt.subdtype is not None:  # H5T_ARRAY: [base, dims] (docs/api.md)
        return [zarr_dtype(dt.subdtype[0]), list(dt.subdtype[1])]
    if dt.kind == "b":
        return "|b1"
    return dt.str


def stored_type_size(ds):
    """Bytes per element in the file.  H5Tget_size says 8 for a variable-length
    string, which is stored in 16 (length and global heap id): a contiguous
    dataset's storage tells the truth."""
    if layout_of(ds) == "contiguous" and ds.size:
        stored = ds.id.get_storage_size()
        if stored and stored % ds.size == 0:
            return stored // ds.size
    return ds.id.get_type().get_size()


def layout_of(ds):
    import h5py
    lay = ds.id.get_create_plist().get_layout()
    return {h5py.h5d.CHUNKED: "chunked", h5py.h5d.CONTIGUOUS: "contiguous",
            h5py.h5d.COMPACT: "compact"}.get(lay, "virtual")


def expected_chunks(ds):
    """The chunk shape the daemon presents (docs/api.md /v1/meta)."""
    shape = ds.shape
    lay = layout_of(ds)
    if shape is None or len(shape) == 0:
        return []
    if lay == "chunked":
        return list(ds.chunks)
    if lay == "compact":
        return list(shape)
    row = stored_type_size(ds)
    for n in shape[1:]:
        row *= n
    # Whole rows per 16 MiB, at most the rows there are, at least one.
    rows = VIRTUAL_CHUNK_BYTES // row if row > 0 else 1
    rows = max(1, min(rows, shape[0]))
    return [rows] + list(shape[1:])


def packed_dtype(dt):
    """dt with its fields in offset order and no padding: how the daemon
    serves compound values (docs/api.md: "values packed")."""
    if dt.fields is None:
        if dt.subdtype is not None:
            return np.dtype((packed_dtype(dt.subdtype[0]), dt.subdtype[1]))
        return dt
    fields = sorted(dt.fields.items(), key=lambda kv: kv[1][1])
    return np.dtype([(name, packed_dtype(fdt)) for name, (fdt, _off) in fields])


def to_packed(arr):
    """arr's values in packed_dtype (field by field: NumPy assigns structured
    arrays by position, not by name)."""
    arr = np.asarray(arr)
    if arr.dtype.fields is None:
        return arr
    out = np.empty(arr.shape, dtype=packed_dtype(arr.dtype))
    for name in arr.dtype.names:
        out[name] = to_packed(arr[name])
    return out


def _type_classes(tid, seen):
    import h5py
    seen.add(type(tid).__name__)
    if isinstance(tid, h5py.h5t.TypeStringID) and tid.is_variable_str():
        seen.add("VlenString")
    if isinstance(tid, h5py.h5t.TypeCompoundID):
        for i in range(tid.get_nmembers()):
            _type_classes(tid.get_member_type(i), seen)
    elif isinstance(tid, h5py.h5t.TypeArrayID):
        _type_classes(tid.get_super(), seen)
    return seen


def needs_support(tid):
    """True for the types issue 9 requires served (bitfields, H5T_ARRAY, and
    compounds of them and fixed-size types); False for types the daemon may
    refuse (long double, H5T_TIME, compounds with variable-length members)."""
    classes = _type_classes(tid, set())
    if classes & {"TypeVlenID", "TypeReferenceID", "TypeOpaqueID", "TypeTimeID", "VlenString"}:
        return False
    return bool(classes & {"TypeBitfieldID", "TypeArrayID"})


def chunk_grid(shape, chunks):
    return [-(-s // c) if c else 0 for s, c in zip(shape, chunks)]


def all_keys(shape, chunks):
    import itertools
    if len(shape) == 0:
        return ["0"]
    grid = chunk_grid(shape, chunks)
    return [".".join(map(str, idx)) for idx in itertools.product(*[range(g) for g in grid])]


def key_count(shape, chunks):
    n = 1
    for g in chunk_grid(shape, chunks):
        n *= g
    return n


def sample_keys(shape, chunks, rng, limit):
    """Every key, or `limit` of them (first, last and random) for big grids."""
    n = key_count(shape, chunks)
    if n <= limit:
        return all_keys(shape, chunks)
    grid = chunk_grid(shape, chunks)
    picks = {tuple(0 for _ in grid), tuple(g - 1 for g in grid)}
    while len(picks) < limit:
        picks.add(tuple(rng.randrange(g) for g in grid))
    return [".".join(map(str, p)) for p in sorted(picks)]


def key_region(key, shape, chunks):
    idx = [int(k) for k in key.split(".")] if shape else []
    return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))


# Bytes an HDF5 name carries percent-encoded in Zarr keys (docs/api.md "Names").
_ZARR_ESCAPED = set(b'%#? "<>\\^`{|}') | set(range(0x20)) | {0x7f}


def zarr_key(path):
    """The Zarr key of an HDF5 path."""
    out = []
    for b in path.lstrip("/").encode():
        out.append("%%%02X" % b if b in _ZARR_ESCAPED else chr(b))
    return "".join(out).encode("latin-1").decode("utf-8")
