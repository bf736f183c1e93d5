#!/usr/bin/python3
"""workers.py - decode and metadata throughput of h5chunkd with 1 and N HDF5
worker processes (docs/architecture.md, "Process model").

Writes two files with h5py into a temp dir, serves them with
tests/integration/fault_origin.py on loopback, and for each worker count
starts a fresh daemon (fresh cache), warms the cache with the whole files
(so upstream is out of the picture), then measures with C concurrent client
threads:

  decode  GET /v1/slice?format=raw of one chunk-aligned 1 MiB block of a
          gzip+fletcher32 float64 dataset (libhdf5 decodes it in a worker;
          the zlib fast path in the daemon does not apply to fletcher32);
          requests/s and decoded MB/s;
  meta    GET /v1/meta of distinct datasets of a file with many small
          datasets, cold (each description is made once by a worker, then
          indexed); descriptions/s.

Every answer is checked (status 200; decode length).  Prints one table and
writes it as JSON with --json.  Runs about a minute.

Usage: bench/workers.py --daemon BUILD/daemon/h5chunkd [--workers 1,4]
                        [--clients 8] [--seconds 8] [--json out.json]
       --workers 0 runs a daemon that predates the worker processes (libhdf5
       in-process; no `workers` option) for comparison.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN = os.path.join(HERE, "..", "tests", "integration", "fault_origin.py")
META_DATASETS = 3000


def make_files(d):
    import h5py
    import numpy as np
    with h5py.File(os.path.join(d, "decode.h5"), "w") as f:
        rng = np.random.default_rng(7)
        data = np.round(rng.normal(size=(4096, 1024)), 2)  # 32 MiB, compressible
        f.create_dataset("x", data=data, chunks=(128, 1024), compression="gzip",
                         fletcher32=True)
    with h5py.File(os.path.join(d, "meta.h5"), "w") as f:
        for i in range(META_DATASETS):
            f.create_dataset("g%02d/d%04d" % (i % 30, i), data=np.arange(8, dtype="<i4"),
                             chunks=(8,))


def start(cmd, log):
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_file(path, proc, secs=15):
    end = time.time() + secs
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        if proc.poll() is not None:
            raise SystemExit("process exited early")
        time.sleep(0.05)
    raise SystemExit("timed out waiting for " + path)


def get(url, timeout=120):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def run_daemon(args, tmp, origin, workers):
    cache = tempfile.mkdtemp(dir=tmp, prefix="cache")
    conf = os.path.join(cache, "h5chunkd.conf")
    with open(conf, "w") as f:
        if workers > 0:
            f.write("workers = %d\n" % workers)
        f.write("allow_private_upstreams = true\nrevalidate_s = 3600\nmax_connections = 64\n")
    log_path = os.path.join(cache, "daemon.log")
    log = open(log_path, "w")
    proc = start([args.daemon, "--foreground", "--listen", "127.0.0.1:0", "--cache-dir", cache,
                  "-c", conf, "--log-level", "info"], log)
    end = time.time() + 15
    addr = None
    while time.time() < end and addr is None:
        time.sleep(0.05)
        with open(log_path) as f:
            for line in f:
                if 'listening" addr=' in line:
                    addr = line.split('addr=')[1].split()[0]
    if addr is None:
        stop(proc)
        raise SystemExit("daemon did not start: " + open(log_path).read()[-500:])
    return proc, "http://" + addr


def measure(fn, items, clients, seconds):
    """Runs fn over items with `clients` threads for at most `seconds`; (count, bytes, secs)."""
    lock = threading.Lock()
    state = {"next": 0, "n": 0, "bytes": 0}
    deadline = time.time() + seconds

    def worker():
        while time.time() < deadline:
            with lock:
                if state["next"] >= len(items):
                    return
                item = items[state["next"]]
                state["next"] += 1
            nbytes = fn(item)
            with lock:
                state["n"] += 1
                state["bytes"] += nbytes

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        for f in [ex.submit(worker) for _ in range(clients)]:
            f.result()
    return state["n"], state["bytes"], time.time() - t0


def one_run(args, tmp, origin, workers):
    proc, base = run_daemon(args, tmp, origin, workers)
    try:
        q = urllib.parse.quote
        dec_url = q(origin + "/decode.h5", safe="")
        meta_url = q(origin + "/meta.h5", safe="")
        for name in ("decode.h5", "meta.h5"):  # the whole file into the cache
            st, _ = get("%s/v1/file?url=%s" % (base, q(origin + "/" + name, safe="")))
            assert st == 200
        get("%s/v1/meta?url=%s&path=/x" % (base, dec_url))

        def decode(i):
            r0 = (i % 32) * 128
            st, body = get("%s/v1/slice?url=%s&path=/x&select=%d:%d&format=raw"
                           % (base, dec_url, r0, r0 + 128))
            if st != 200 or len(body) != 128 * 1024 * 8:
                raise SystemExit("bad decode answer %d %d" % (st, len(body)))
            return len(body)

        def meta(i):
            st, body = get("%s/v1/meta?url=%s&path=/g%02d/d%04d" % (base, meta_url, i % 30, i))
            if st != 200 or b'"dataset"' not in body:
                raise SystemExit("bad meta answer %d" % st)
            return len(body)

        n, nbytes, secs = measure(decode, list(range(100000)), args.clients, args.seconds)
        m, _, msecs = measure(meta, list(range(META_DATASETS)), args.clients, args.seconds)
        return {"workers": workers, "decode_req_s": n / secs, "decode_mb_s": nbytes / secs / 1e6,
                "meta_req_s": m / msecs, "decode_requests": n, "meta_requests": m}
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--json")
    ap.add_argument("--inprocess-daemon", help="daemon used for the row --workers 0")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="h5cd-bench-workers.")
    origin_proc = None
    try:
        www = os.path.join(tmp, "www")
        os.mkdir(www)
        make_files(www)
        pf = os.path.join(tmp, "port")
        origin_proc = start([sys.executable, ORIGIN, "--port", "0", "--root", www,
                             "--port-file", pf], open(os.path.join(tmp, "origin.log"), "w"))
        wait_file(pf, origin_proc)
        origin = "http://127.0.0.1:" + open(pf).read().strip()
        rows = []
        for w in args.workers.split(","):
            daemon = args.daemon
            if int(w) == 0 and args.inprocess_daemon:
                daemon = args.inprocess_daemon
            rows.append(one_run(argparse.Namespace(**dict(vars(args), daemon=daemon)), tmp,
                                origin, int(w)))
        print("%-8s %12s %12s %12s" % ("workers", "decode req/s", "decode MB/s", "meta req/s"))
        for r in rows:
            print("%-8d %12.1f %12.1f %12.1f" % (r["workers"], r["decode_req_s"], r["decode_mb_s"],
                                                 r["meta_req_s"]))
        base = rows[0]
        for r in rows[1:]:
            print("ratio %d/%d workers: decode x%.2f, meta x%.2f" % (
                r["workers"], base["workers"], r["decode_req_s"] / base["decode_req_s"],
                r["meta_req_s"] / base["meta_req_s"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"clients": args.clients, "cpus": os.cpu_count(), "rows": rows}, f,
                          indent=1)
    finally:
        if origin_proc is not None:
            stop(origin_proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
