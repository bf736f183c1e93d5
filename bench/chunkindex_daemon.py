#!/usr/bin/python3
"""chunkindex_daemon.py - a cold scattered batch on a 1,000,000-chunk file
through h5chunkd and nginx, daemon builds side by side (issue 12: where the
daemon's own chunk-index reader replaced libhdf5's serial B-tree walk).

The file (written by h5py when missing): one 1-D float32 dataset of
20,000,000 values in chunks of 20, gzip (h5py defaults otherwise: a
version-1 B-tree).  For each daemon given: a fresh cache, GET /v1/meta of
the dataset (the open and the description), then one POST /v1/chunks of
every STRIDE-th chunk (10,000 keys with the default stride 100), timed; the
origin's requests and bytes are counted from nginx's access log per phase.
A sample of the answers is compared with h5py's read_direct_chunk.
With --rtt-ms/--bw-mbs the origin sits behind bench/linkemu.py.

Usage:
  bench/chunkindex_daemon.py --daemon main=/path/h5chunkd --daemon new=/path/h5chunkd \
      [--file F] [--stride 100] [--rtt-ms 0] [--bw-mbs 0] [--runs 1] [--keep]
Not part of `make bench` (bench/run is the planner's); standalone, stdlib +
h5py + numpy ($PYTHON_H5, Debian's /usr/bin/python3).
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import h5peers  # noqa: E402

CHUNKS = 1000000
CHUNK_ELEMS = 20


def write_file(path):
    import h5py
    import numpy as np
    tmp = path + ".part"
    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset("x", shape=(CHUNKS * CHUNK_ELEMS,), dtype="f4",
                              chunks=(CHUNK_ELEMS,), compression="gzip")
        step = 1000000 * CHUNK_ELEMS // 20
        for start in range(0, CHUNKS * CHUNK_ELEMS, step):
            ds[start:start + step] = np.arange(start, start + step, dtype="f4")
    os.rename(tmp, path)


def start_nginx(root, workdir, nginx_bin):
    os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
    port = h5peers.free_port()
    conf = os.path.join(workdir, "nginx.conf")
    lines = ["daemon off;", "master_process off;", "worker_processes 1;"]
    if os.geteuid() == 0:
        lines.append("user root;")
    lines += ["pid %s/nginx.pid;" % workdir, "error_log %s/error.log warn;" % workdir,
              "events { worker_connections 1024; }", "http {",
              "  log_format ranges '$status $body_bytes_sent $http_range';",
              "  access_log %s/access.log ranges;" % workdir,
              "  client_body_temp_path %s/tmp/body;" % workdir,
              "  proxy_temp_path %s/tmp/proxy;" % workdir,
              "  fastcgi_temp_path %s/tmp/fastcgi;" % workdir,
              "  uwsgi_temp_path %s/tmp/uwsgi;" % workdir, "  scgi_temp_path %s/tmp/scgi;" % workdir,
              "  keepalive_requests 100000;", "  server {", "    listen 127.0.0.1:%d;" % port,
              "    root %s;" % root, "    location / { }", "  }", "}"]
    with open(conf, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    proc = subprocess.Popen([nginx_bin, "-e", os.path.join(workdir, "error.log"), "-p", workdir,
                             "-c", conf], stdin=subprocess.DEVNULL)
    h5peers._procs.append(proc)
    if not h5peers.wait_port(port, proc, 10):
        raise SystemExit("nginx did not start")
    return port


def start_link(port, workdir, rtt_ms, bw_mbs):
    port_file = os.path.join(workdir, "link.port")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "linkemu.py"), "--listen-port",
                             "0", "--origin", "127.0.0.1:%d" % port, "--rtt-ms", str(rtt_ms),
                             "--bw-mbs", str(bw_mbs), "--port-file", port_file],
                            stdin=subprocess.DEVNULL)
    h5peers._procs.append(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(port_file) and open(port_file).read().strip():
            return int(open(port_file).read().strip())
        time.sleep(0.05)
    raise SystemExit("linkemu did not start")


def access_lines(workdir):
    try:
        with open(os.path.join(workdir, "access.log")) as fh:
            return [ln.split() for ln in fh if ln.strip()]
    except OSError:
        return []


def origin_delta(workdir, before):
    lines = access_lines(workdir)[before:]
    return len(lines), sum(int(ln[1]) for ln in lines if len(ln) > 1 and ln[1].isdigit())


def verify(path, keys, frames, sample=100):
    import h5py
    rng = random.Random(1)
    with h5py.File(path, "r") as f:
        ds = f["x"]
        for k in rng.sample(keys, min(sample, len(keys))):
            head, payload = frames[k]
            _mask, want = ds.id.read_direct_chunk((int(k) * CHUNK_ELEMS,))
            if head.get("status") != 200 or payload != bytes(want):
                raise SystemExit("key %s: wrong answer %s" % (k, head))


def tree_cpu(pid):
    """CPU seconds (user + system) of pid and its live children (the workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_one(label, binary, path, url, workdir, stride, debug, run):
    cache = tempfile.mkdtemp(prefix="cache.", dir=workdir)
    d = h5peers.Daemon(binary, cache, os.path.join(workdir, "daemon-%s-%d.log" % (label, run)),
                       extra_args=["--log-level", "debug"] if debug else [], timeout=600)
    d.start()
    try:
        n0 = len(access_lines(workdir))
        t0 = time.monotonic()
        st, _, body = d.get("/v1/meta", url=url, path="/x")
        t_meta = time.monotonic() - t0
        if st != 200:
            raise SystemExit("%s: /v1/meta %d %s" % (label, st, body[:200]))
        meta_req, meta_bytes = origin_delta(workdir, n0)
        n1 = len(access_lines(workdir))
        keys = [str(i) for i in range(0, CHUNKS, stride)]
        t0 = time.monotonic()
        st, _, body = d.post_chunks({"url": url, "path": "/x", "keys": keys})
        t_batch = time.monotonic() - t0
        if st != 200:
            raise SystemExit("%s: POST /v1/chunks %d %s" % (label, st, body[:200]))
        cpu = tree_cpu(d.proc.pid)
        frames = h5peers.parse_frames(body)
        verify(path, keys, frames)
        batch_req, batch_bytes = origin_delta(workdir, n1)
        _, _, sb = d.get("/v1/stats")
        stats = json.loads(sb)
    finally:
        d.kill()
        shutil.rmtree(cache, ignore_errors=True)
    return {"label": label, "keys": len(keys), "meta_s": t_meta, "meta_requests": meta_req,
            "meta_bytes": meta_bytes, "batch_s": t_batch, "batch_requests": batch_req,
            "batch_bytes": batch_bytes, "cpu_s": cpu,
            "walk_lookups": stats.get("walk_lookups", "-"),
            "h5_lookups": stats.get("h5_lookups", "-"),
            "worker_requests": stats.get("worker_requests", "-"),
            "index_fallbacks": stats.get("index_fallbacks", "-")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", action="append", required=True, help="LABEL=PATH")
    ap.add_argument("--file", default=os.path.join(tempfile.gettempdir(),
                                                   "h5cd-chunkindex-1m.h5"))
    ap.add_argument("--stride", type=int, default=100)
    ap.add_argument("--rtt-ms", type=float, default=0)
    ap.add_argument("--bw-mbs", type=float, default=0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the logs (daemon at debug level)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = ap.parse_args()
    if not os.path.exists(args.file):
        t0 = time.monotonic()
        write_file(args.file)
        print("wrote %s in %.0f s" % (args.file, time.monotonic() - t0), flush=True)
    workdir = tempfile.mkdtemp(prefix="h5cd-ci-bench.")
    try:
        root = os.path.join(workdir, "www")
        os.makedirs(root)
        os.symlink(os.path.abspath(args.file), os.path.join(root, "big.h5"))
        port = start_nginx(root, os.path.join(workdir, "nginx"), args.nginx)
        if args.rtt_ms > 0 or args.bw_mbs > 0:
            port = start_link(port, workdir, args.rtt_ms, args.bw_mbs or 10000)
        url = "http://127.0.0.1:%d/big.h5" % port
        print("file %s (%d bytes), link rtt %g ms bw %s MB/s"
              % (args.file, os.path.getsize(args.file), args.rtt_ms, args.bw_mbs or "-"))
        fmt = ("%-8s %6s %8s %6s %10s %8s %6s %10s %7s %8s %6s %6s %6s")
        print(fmt % ("daemon", "keys", "meta_s", "m_req", "m_bytes", "batch_s", "b_req", "b_bytes",
                     "cpu_s", "walk", "h5", "wreq", "fallb"))
        for run in range(args.runs):
            for spec in args.daemon:
                label, _, binary = spec.partition("=")
                r = run_one(label, binary, args.file, url, os.path.join(workdir, "nginx"),
                            args.stride, args.keep, run)
                print(fmt % (r["label"], r["keys"], "%.2f" % r["meta_s"], r["meta_requests"],
                             r["meta_bytes"], "%.2f" % r["batch_s"], r["batch_requests"],
                             r["batch_bytes"], "%.2f" % r["cpu_s"], r["walk_lookups"],
                             r["h5_lookups"],
                             r["worker_requests"], r["index_fallbacks"]), flush=True)
    finally:
        h5peers._kill_all()
        if args.keep:
            print("logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
