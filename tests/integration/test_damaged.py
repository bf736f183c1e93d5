#!/usr/bin/python3
"""test_damaged.py - damaged HDF5 files (tests/data/make_damaged.py: truncations,
random bit flips, random superblocks, flips in the first 64 KiB of an
h5repack -L file, flips in global heaps, and a file that crashes libhdf5
1.10.8) served by nginx and driven through /v1/meta (path=/ and every object
of the undamaged file), .zmetadata, POST /v1/chunks (raw and decoded) and
/v1/slice (npy and json).

Asserted for every request: an answer within the client timeout (no hang),
never 500 (nor any 5xx: upstream is a healthy nginx), and after every file
the daemon is alive and /v1/health answers.  Every 200 answer must equal h5py's
reading of the same damaged file, made in a child process with a time and
memory limit (h5py may crash or hang on these files: then the 200 answers of
that object cannot be checked and are counted as unverified).  A daemon that
died or hung is restarted on a fresh cache so the next files are judged on
their own.

DAMAGED_DAEMON_CONFIG: extra config lines for the daemon, ';'-separated.
"worker_timeout_s = 5" (conf/h5chunkd.conf) is always set, since a worker time
limit bounds what a hang in libhdf5 costs; a daemon that refuses it fails.  Exit status: 0 pass, 1 fail, 77 skip.  KEEP_TMP=1 keeps the files.
Child mode (internal): test_damaged.py --child FILE SPEC.json OUT.pickle
"""
import collections
import concurrent.futures
import io
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h5peers  # noqa: E402
import test_corpus as tc  # noqa: E402

NAME = "test_damaged"
REQUEST_TIMEOUT = 10  # seconds per request to the daemon
CHILD_TIMEOUT = 15  # seconds for h5py's reading of one damaged file
CHILD_MEMORY = 2 << 30  # RLIMIT_AS of that child
MAX_DATASETS = 5  # per file
BUDGET = int(os.environ.get("DAMAGED_BUDGET", "420"))  # seconds: a bound against hangs, not a speed test
MAX_REPORTED = int(os.environ.get("DAMAGED_MAX_REPORTED", "80"))


def log(msg):
    print("%s: %s" % (NAME, msg), flush=True)


# ------------------------------------------------------------ h5py child

def odd_bits(t):
    """True when a number type's bits do not fill its bytes from bit 0 (a
    flipped offset or precision): h5py still names a NumPy dtype for it,
    while the daemon says it has none (dtype null, h5type saying why)."""
    import h5py
    if t.get_class() not in (h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        return False
    return t.get_offset() != 0 or t.get_precision() != 8 * t.get_size()


def child_main(path, spec_path, out_path):
    """Reads, for each object of the spec, what the daemon's answers must equal."""
    import h5py
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    with open(spec_path) as fh:
        spec = json.load(fh)
    result = {}

    def save():
        with open(out_path + ".part", "wb") as fh:
            pickle.dump(result, fh)
        os.replace(out_path + ".part", out_path)

    try:
        f = h5py.File(path, "r")
        with open(path, "rb") as fh:
            fbytes = fh.read()
    except Exception as e:  # noqa: BLE001
        result["/"] = {"error": repr(e)}
        save()
        return 0
    for item in spec:
        p = item["path"]
        entry = {}
        result[p] = entry
        try:
            obj = f[p]
            if isinstance(obj, h5py.Group):
                entry["members"] = sorted(obj.keys())
                continue
            ds = obj
            entry["meta"] = {"shape": list(ds.shape) if ds.shape is not None else None,
                             "dtype": h5peers.zarr_dtype(ds.dtype),
                             "chunks": h5peers.expected_chunks(ds)}
            entry["odd_bits"] = odd_bits(ds.id.get_type())
            chunks = entry["meta"]["chunks"]
            entry["raw"], entry["decoded"] = {}, {}
            for key in item["keys"]:
                try:
                    entry["raw"][key] = tc.expected_raw(f, fbytes, ds, key, chunks)
                except Exception as e:  # noqa: BLE001
                    entry["raw"][key] = ("error", repr(e))
                try:
                    entry["decoded"][key] = tc.expected_decoded(f, ds, key, chunks)
                except Exception as e:  # noqa: BLE001
                    entry["decoded"][key] = ("error", repr(e))
            try:
                _text, sel = tc.selection_for(ds.shape)
                entry["slice"] = np.asarray(ds[sel] if ds.shape else ds[()])
                if tc.vlen_kind(ds) is not None:
                    entry["slice_text"] = tc.as_text_values(f, ds, entry["slice"])
            except Exception as e:  # noqa: BLE001
                entry["slice"] = ("error", repr(e))
        except Exception as e:  # noqa: BLE001
            entry["error"] = repr(e)
        save()  # what was read so far survives a crash on the next object
    save()
    return 0


def h5py_reading(tmp, path, spec):
    """The child's results, and how it ended ("ok", "crashed", "timed out")."""
    stem = os.path.join(tmp, os.path.basename(path))
    spec_path = stem + ".spec.json"
    out_path = stem + ".pickle"
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    if os.path.exists(out_path):
        os.unlink(out_path)
    how = "ok"
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path, spec_path,
                            out_path], capture_output=True, timeout=CHILD_TIMEOUT)
        if r.returncode != 0:
            how = "crashed (%d)" % r.returncode
    except subprocess.TimeoutExpired:
        how = "timed out"
    try:
        with open(out_path, "rb") as fh:
            return pickle.load(fh), how
    except (OSError, EOFError, pickle.UnpicklingError):
        return {}, how


# ------------------------------------------------------------ the suite

class Tally:
    def __init__(self):
        self.files = 0
        self.requests = 0
        self.by_status = collections.Counter()
        self.codes = collections.Counter()
        self.equal = 0
        self.unverified = 0
        self.failures = []
        self.h5py = collections.Counter()
        self.kinds = collections.Counter()
        self.samples = {}  # error code -> one answer that had it

    def fail(self, fname, what, route, expected, observed):
        self.failures.append((fname, what, route, expected, observed))
        if len(self.failures) <= MAX_REPORTED:
            print("%s: FAIL: %s %s [%s]: expected %s; observed %s"
                  % (NAME, fname, what, route, expected, observed), file=sys.stderr, flush=True)


T = Tally()


# What a damaged file may be answered with (docs/api.md).  bad_request and
# bad_key only when damage changed the object's shape, so that the selection or
# key made from the undamaged file no longer fits.
DAMAGE_CODES = {"damaged_file", "unsupported", "filter_unavailable", "not_found",
                "chunk_not_allocated", "too_large"}


def answered(fname, what, route, st, body, reshaped=True):
    """Counts an answer; records a hang, a 5xx or a code that misnames the
    damage.  True if it is a 200."""
    T.requests += 1
    T.by_status[st] += 1
    if st != 200:
        code = h5peers.error_code(body) or "?"
        T.codes[code] += 1
        if code not in T.samples:
            T.samples[code] = "%s %s: %s" % (route, what, body[:160].decode(errors="replace"))
    if st == 0:
        T.fail(fname, what, route, "an answer within %d s" % REQUEST_TIMEOUT,
               body[:120].decode(errors="replace"))
    elif st >= 500:
        T.fail(fname, what, route, "no 5xx on a damaged file (422 damaged_file)",
               "HTTP %d %s" % (st, body[:160].decode(errors="replace")))
    elif st != 200:
        code = h5peers.error_code(body)
        if code not in DAMAGE_CODES and not (reshaped and code in ("bad_request", "bad_key")):
            T.fail(fname, what, route, "a code naming the damage (422 damaged_file)",
                   "HTTP %d %s" % (st, body[:160].decode(errors="replace")))
    return st == 200


def reshaped(item, want):
    """True unless h5py reads the damaged dataset with the undamaged shape."""
    meta = (want or {}).get("meta")
    return meta is None or meta.get("shape") != item.get("shape")


def judge(fname, what, route, ok, expected, observed):
    if ok is None:
        T.unverified += 1
    elif ok:
        T.equal += 1
    else:
        T.fail(fname, what, route, expected, observed)


def object_spec(base_path):
    """Objects of the undamaged file: groups, and up to MAX_DATASETS datasets
    with two keys each (first and last chunk)."""
    import h5py
    spec = [{"path": "/", "kind": "group"}]
    with h5py.File(base_path, "r") as f:
        items = []
        f.visititems(lambda n, o: items.append(("/" + n, o)) and None)
        datasets = 0
        for p, o in items:
            if isinstance(o, h5py.Group):
                spec.append({"path": p, "kind": "group"})
            elif datasets < MAX_DATASETS and o.shape is not None:
                chunks = h5peers.expected_chunks(o)
                keys = h5peers.all_keys(o.shape, chunks) if o.size else []
                keys = sorted(set(keys[:1] + keys[-1:]))
                spec.append({"path": p, "kind": "dataset", "keys": keys, "shape": list(o.shape),
                             "select": tc.selection_for(o.shape)[0]})
                datasets += 1
    return spec


def check_meta(d, fname, url, item, want):
    st, _, body = d.get("/v1/meta", url=url, path=item["path"])
    if not answered(fname, item["path"], "meta", st, body, False):
        return
    doc = json.loads(body)
    if want is None or ("members" not in want and "meta" not in want):
        judge(fname, item["path"], "meta", None, "", "")
    elif "members" in want:
        got = sorted(doc.get("members") or [])
        judge(fname, item["path"], "meta", got == want["members"] and doc.get("kind") == "group",
              "members %s" % want["members"][:8], "%s %s" % (doc.get("kind"), got[:8]))
    else:
        got = {k: doc.get(k) for k in ("shape", "dtype", "chunks")}
        same = json.dumps(got) == json.dumps(want["meta"])
        if (not same and want.get("odd_bits") and got["dtype"] is None and doc.get("h5type")
                and got["shape"] == want["meta"]["shape"]
                and got["chunks"] == want["meta"]["chunks"]):
            same = None  # no NumPy dtype for misplaced bits: a clear answer, not h5py's
        judge(fname, item["path"], "meta", same, json.dumps(want["meta"])[:160],
              json.dumps(got)[:160])


def check_batch(d, fname, url, item, want, decode):
    route = "decoded" if decode else "raw"
    if not item["keys"]:
        return
    doc = {"url": url, "path": item["path"], "keys": item["keys"]}
    if decode:
        doc["decode"] = True
    st, _, body = d.post_chunks(doc)
    if not answered(fname, item["path"], route, st, body, reshaped(item, want)):
        return
    try:
        frames = h5peers.parse_frames(body)
    except h5peers.FrameError as e:
        T.fail(fname, item["path"], route, "well-formed frames", str(e))
        return
    expect = (want or {}).get(route, {})
    for key in item["keys"]:
        head, payload = frames.get(key, ({}, b""))
        fst = head.get("status")
        if fst is None:
            T.fail(fname, item["path"], route, "a frame for key %s" % key, "none")
            continue
        if fst >= 500:
            T.fail(fname, item["path"], route, "no 5xx frame", "key %s: %s %s"
                   % (key, fst, head.get("error")))
            continue
        if fst != 200:
            continue
        w = expect.get(key)
        if w is None or (isinstance(w, tuple) and w and w[0] == "error"):
            judge(fname, item["path"], route, None, "", "")
        elif decode:
            judge(fname, item["path"], route, payload == w, "h5py's %d bytes" % len(w),
                  "%d different bytes (key %s)" % (len(payload), key))
        else:
            wst, wmask, wdata = w
            same = wst == 200 and payload == wdata and (wmask is None
                                                        or head.get("filter_mask") == wmask)
            judge(fname, item["path"], route, same, "status %s, %d bytes" % (wst, len(wdata)),
                  "200, %d bytes (key %s)" % (len(payload), key))


def check_slice(d, fname, url, item, want):
    params = {"url": url, "path": item["path"]}
    if item["select"]:
        params["select"] = item["select"]
    w = (want or {}).get("slice")
    for fmt in ("npy", "json"):
        st, _, body = d.get("/v1/slice", format=fmt, **params)
        route = "slice-" + fmt
        if not answered(fname, item["path"], route, st, body, reshaped(item, want)):
            continue
        if w is None or isinstance(w, tuple):
            judge(fname, item["path"], route, None, "", "")
            continue
        if fmt == "npy":
            try:
                got = np.load(io.BytesIO(body), allow_pickle=False)
                same = tc.same_array(w, got)
            except Exception as e:  # noqa: BLE001
                same, got = False, repr(e)
            judge(fname, item["path"], route, same, "h5py's %s %s" % (w.dtype, w.shape),
                  "%s" % (getattr(got, "shape", got),))
        else:
            try:
                doc = json.loads(body)
                if "slice_text" in want:
                    wj = np.array(want["slice_text"], dtype=object).reshape(w.shape).tolist() \
                        if w.shape else want["slice_text"][0]
                else:
                    wj = tc.to_json_value(w) if w.shape else tc.to_json_value(w[()])
                same = tc.json_equal(wj, doc.get("data"))
            except ValueError:
                same = False
            judge(fname, item["path"], route, same, "h5py's values", body[:120])


def check_zmetadata(d, fname, url, reading):
    st, _, body = d.get("/v1/zarr", url=url)
    if not answered(fname, "/", "zarr", st, body):
        return
    base = json.loads(body)["base"]
    st, _, body = d.request("GET", base + ".zmetadata")
    if not answered(fname, "/", ".zmetadata", st, body):
        return
    try:
        meta = json.loads(body)["metadata"]
    except (ValueError, KeyError, TypeError):
        T.fail(fname, "/", ".zmetadata", "consolidated metadata", body[:120])
        return
    if not meta:
        T.fail(fname, "/", ".zmetadata", "an error, or the file's objects",
               "200 with empty metadata")
        return
    for key, doc in meta.items():
        if not key.endswith("/.zarray"):
            continue
        p = "/" + key[:-len("/.zarray")]
        w = reading.get(p)
        if not w or "meta" not in w:
            judge(fname, p, ".zmetadata", None, "", "")
            continue
        same = doc.get("shape") == w["meta"]["shape"]
        judge(fname, p, ".zmetadata", same, "shape %s" % w["meta"]["shape"],
              "shape %s" % doc.get("shape"))


WORKER_TIMEOUT = "worker_timeout_s = 5"  # seconds of libhdf5 per operation


def daemon_config(binary, tmp):
    lines = [x for x in os.environ.get("DAMAGED_DAEMON_CONFIG", "").split(";") if x.strip()]
    lines.append(WORKER_TIMEOUT)
    path = os.path.join(tmp, "probe.conf")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    r = subprocess.run([binary, "--config", path, "--check-config"], capture_output=True,
                       timeout=10)
    if r.returncode != 0:
        raise RuntimeError("the daemon refuses %r: %s"
                           % ("; ".join(lines), r.stderr.decode(errors="replace")[-300:]))
    path = os.path.join(tmp, "h5chunkd.conf")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    log("daemon config: %s" % ("; ".join(lines) or "defaults"))
    return path


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        return child_main(sys.argv[2], sys.argv[3], sys.argv[4])
    started = time.monotonic()
    here = os.path.dirname(os.path.abspath(__file__))
    tests = os.environ.get("TESTS_SRCDIR") or os.path.dirname(here)
    binary = os.environ.get("H5CHUNKD_BIN") or os.path.join(os.getcwd(), "daemon/h5chunkd")
    nginx_bin = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx_bin, os.X_OK):
        log("SKIP: nginx not found")
        return 77
    tmp = tempfile.mkdtemp(prefix="h5cd-damaged.")
    try:
        data = os.path.join(tmp, "files")
        r = subprocess.run([sys.executable, os.path.join(tests, "data/make_damaged.py"), data],
                           timeout=300)
        if r.returncode != 0:
            log("FAIL: make_damaged.py exited %d" % r.returncode)
            return 1
        with open(os.path.join(data, "manifest.json")) as fh:
            manifest = json.load(fh)
        config = daemon_config(binary, tmp)
        nginx = h5peers.Nginx(nginx_bin, data, os.path.join(tmp, "nginx"))
        nginx.start()
        restarts = 0

        def new_daemon():
            dd = h5peers.Daemon(binary, os.path.join(tmp, "cache%d" % restarts),
                                os.path.join(tmp, "daemon%d.log" % restarts), ["--config", config],
                                timeout=REQUEST_TIMEOUT)
            dd.start()
            return dd
        d = new_daemon()
        specs = {}
        for entry in manifest:
            if entry["base"] not in specs:
                specs[entry["base"]] = object_spec(os.path.join(data, "base", entry["base"]))
        # h5py reads the damaged files in child processes while the daemon is driven.
        children = os.path.join(tmp, "children")
        os.makedirs(children)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        readings = [pool.submit(h5py_reading, children, os.path.join(data, e["file"]),
                                specs[e["base"]]) for e in manifest]
        for entry, future in zip(manifest, readings):
            fname = entry["file"]
            if time.monotonic() - started > BUDGET:
                # Hangs cost a timeout each: stop rather than run for ever.
                T.fail(fname, "-", "budget", "the suite done within %d s" % BUDGET,
                       "stopped before %s and the files after it" % fname)
                break
            spec = specs[entry["base"]]
            T.files += 1
            T.kinds[entry["kind"]] += 1
            reading, how = future.result()
            T.h5py[how.split(" ")[0]] += 1
            url = nginx.url(fname)
            for item in spec:
                want = reading.get(item["path"])
                check_meta(d, fname, url, item, want)
                if item["kind"] == "dataset":
                    check_batch(d, fname, url, item, want, False)
                    check_batch(d, fname, url, item, want, True)
                    check_slice(d, fname, url, item, want)
                if not d.alive():
                    break
            if d.alive():
                check_zmetadata(d, fname, url, reading)
            healthy = d.alive() and d.healthy()
            runaway = healthy and d.runaway()
            if runaway:
                T.fail(fname, "-", "daemon", "idle once every answer is in", "still burning CPU")
            if not healthy or d.timeouts or runaway:
                if not d.alive():
                    T.fail(fname, "-", "daemon", "alive",
                           "exited with status %s" % d.proc.returncode)
                elif not healthy:
                    T.fail(fname, "-", "daemon", "/v1/health answers", "no answer")
                elif d.timeouts:
                    T.fail(fname, "-", "daemon", "no hang", "%d requests hung" % d.timeouts)
                log("%s: daemon log tail:\n%s" % (fname, h5peers.tail(d.logpath, 6)))
                d.kill()
                restarts += 1
                d = new_daemon()
        d.kill()
        pool.shutdown()
        elapsed = time.monotonic() - started
        # Nothing built or nothing asked must not pass.
        if not manifest or T.files == 0 or T.requests == 0:
            T.fail("manifest.json", "-", "suite", "damaged files built and driven",
                   "%d files in the manifest, %d driven, %d requests"
                   % (len(manifest), T.files, T.requests))
        log("damaged: %d files (%s), %d requests, statuses %s"
            % (T.files, ", ".join("%s %d" % kv for kv in sorted(T.kinds.items())), T.requests,
               dict(sorted(T.by_status.items()))))
        log("error codes: %s" % dict(sorted(T.codes.items())))
        for code, sample in sorted(T.samples.items()):
            log("  e.g. %s: %s" % (code, sample))
        log("h5py's reading of the damaged files: %s" % dict(T.h5py))
        log("200 answers equal to h5py: %d, unverifiable (h5py could not read): %d, "
            "failures: %d, daemon restarts: %d (%.0f s)"
            % (T.equal, T.unverified, len(T.failures), restarts, elapsed))
        if T.failures:
            byroute = collections.Counter(f[2] for f in T.failures)
            log("failures by route: %s" % dict(byroute))
            kinds = collections.Counter()
            for _f, _w, route, expected, observed in T.failures:
                if route == "daemon":
                    kinds["daemon " + observed.split(" with")[0]] += 1
                elif route in ("suite", "budget"):
                    kinds[route] += 1
                elif observed.startswith("HTTP"):
                    kinds["%s %s" % (observed.split(" ")[1],
                                     h5peers.error_code(observed.split(" ", 2)[2].encode()))] += 1
                elif "answer within" in expected:
                    kinds["no answer"] += 1
                else:
                    kinds["200 differs from h5py"] += 1
            log("failures by kind: %s" % dict(kinds))
            log("FAIL: %d failures" % len(T.failures))
            return 1
        log("PASS")
        return 0
    finally:
        h5peers.drop_work_dir(tmp, log)


if __name__ == "__main__":
    sys.exit(main())
