#!/usr/bin/python3
"""trace.py - where the time of one cold read goes: the origin's request
timeline beside the client's frame arrivals.

  bench/trace.py --daemon BUILD/daemon/h5chunkd --workload slab [--runs 3]
                 [--rtt-ms 40 --bw-mbs 125] [--raw] [--config FILE]

Starts nginx (the origin, its log with request times and connection ids),
bench/linkemu.py in front of it and a daemon, like bench/run does, then reads
the workload cold (a new hard link of its file per run) through the batch API
and prints, per run: the time of /v1/meta, the time each frame arrived, and
every origin request with the time it reached the origin (relative to the
client's start), its bytes and its range.  Start a daemon built with more
logging to see its side too.  Nothing is checked: it is a tool for reading a
trace, not a benchmark (use bench/run for numbers).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import clients  # noqa: E402
import workloads  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--config", help="a configuration file for the daemon")
    ap.add_argument("--workload", default="slab", choices=sorted(workloads.WORKLOADS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rtt-ms", default="40")
    ap.add_argument("--bw-mbs", default="125")
    ap.add_argument("--raw", action="store_true", help="stored bytes, not decoded values")
    ap.add_argument("--workdir", help="keep the generated files here (reused when present)")
    return ap.parse_args()


def read_cold(d, url, spec, decode):
    """One batch read; returns (ms of /v1/meta, [ms of each frame])."""
    dc = clients.Daemon(d.base)
    try:
        t = time.monotonic()
        meta = dc.meta(url, spec["path"])
        t_meta = (time.monotonic() - t) * 1000
        keys = [clients._key(c, len(meta["chunks"])) for c in spec["chunks"]]
        body = json.dumps({"url": url, "path": spec["path"], "keys": keys, "decode": decode})
        dc.conn.request("POST", "/v1/chunks", body=body,
                        headers={"Content-Type": "application/json"})
        resp = dc.conn.getresponse()
        marks = []
        for _ in keys:
            hdr = json.loads(resp.readline())
            resp.read(hdr["length"])
            marks.append((time.monotonic() - t) * 1000)
        resp.read()
        return t_meta, marks
    finally:
        dc.close()


def origin_lines(path, pos, t0_wall):
    with open(path) as fh:
        fh.seek(pos)
        lines = fh.read().splitlines()
    out = []
    for ln in lines:
        p = ln.split()
        if len(p) < 8 or p[1].startswith("/_"):
            continue
        end_ms = (float(p[5]) - t0_wall) * 1000
        start_ms = end_ms - float(p[6]) * 1000
        out.append((start_ms, end_ms, p[7], int(p[3]), p[4]))
    return out


def main():
    a = parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="h5cd-trace.")
    root = os.path.join(work, "origin")
    mpath = os.path.join(root, "manifest.json")
    if os.path.exists(mpath):
        with open(mpath) as fh:
            manifest = json.load(fh)
    else:
        manifest = workloads.generate(root, "full")
        with open(mpath, "w") as fh:
            json.dump(manifest, fh)
    try:
        bench.NGINX_COMMON = bench.NGINX_COMMON.replace(
            "$msec'", "$msec $request_time $connection'")
        nd = os.path.join(work, "origin-nginx")
        _p, oport = bench.start_nginx(shutil.which("nginx") or "/usr/sbin/nginx", nd,
                                      bench.ORIGIN_BODY, root=root)
        lp, cp = os.path.join(work, "link.port"), os.path.join(work, "link.cport")
        for f in (lp, cp):
            if os.path.exists(f):
                os.unlink(f)
        link = bench.spawn([sys.executable, os.path.join(HERE, "linkemu.py"), "--origin",
                            "127.0.0.1:%d" % oport, "--rtt-ms", a.rtt_ms, "--bw-mbs", a.bw_mbs,
                            "--conn-bw-mbs", "0", "--port-file", lp, "--control-port-file", cp],
                           os.path.join(work, "link.log"))
        lport = bench.wait_file(lp, link)
        shutil.rmtree(os.path.join(work, "daemon"), ignore_errors=True)
        d = bench.DaemonProc(a.daemon, os.path.join(work, "daemon"),
                             os.path.abspath(a.config) if a.config else None)
        d.start()
        clients.init_worker(manifest)
        spec = manifest["workloads"][a.workload]
        alog = os.path.join(nd, "access.log")
        for run in range(a.runs):
            rel = "trace%d_%d/%s" % (os.getpid(), run, spec["file"])
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            os.link(os.path.join(root, spec["file"]), os.path.join(root, rel))
            pos = os.path.getsize(alog)
            t0_wall = time.time()
            url = "http://127.0.0.1:%d/%s" % (lport, rel)
            if a.workload == "listing":
                t = time.monotonic()
                clients.h5chunkd_read(d.base, url, a.workload, spec)
                t_meta, marks = (time.monotonic() - t) * 1000, []
            else:
                t_meta, marks = read_cold(d, url, spec, not a.raw)
            time.sleep(0.3)  # nginx writes its log line after the response
            total = marks[-1] if marks else t_meta
            print("run %d: %s %.1f ms; /v1/meta %.1f ms; frames at %s"
                  % (run, a.workload, total, t_meta, " ".join("%.0f" % m for m in marks)))
            reqs = origin_lines(alog, pos, t0_wall)
            for start, end, conn, nbytes, rng in reqs:
                print("  origin conn %-4s at %7.1f (done %7.1f) ms %10d B %s"
                      % (conn, start, end, nbytes, rng))
            print("  %d requests, %d bytes" % (len(reqs), sum(r[3] for r in reqs)))
    finally:
        bench._cleanup()
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
