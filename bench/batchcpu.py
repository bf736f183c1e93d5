#!/usr/bin/python3
"""batchcpu.py - the daemon's CPU time per warm batch (no link, no timing of
the client): how much work one cached batch costs the daemon itself.

  bench/batchcpu.py --daemon PATH [--rounds 400] [--workloads small,m-adjacent]

Writes the benchmark's files (bench/workloads.py, quick scale: the small
workload is the same 1000 chunks as in the full scale), serves them with
nginx on loopback, starts the daemon on an empty cache, reads every
workload once (untimed: fills the cache and the persistent chunk index),
then for each workload and way of reading runs `--rounds` warm reads and
reports the daemon's CPU (utime + stime from /proc/PID/stat, all threads)
per read, as the median of 5 groups of rounds (the machine is shared):

  raw       one POST /v1/chunks with the workload's keys, stored bytes, on
            a new connection (as each bench run's new client makes)
  raw-ka    the same on one keep-alive connection for all reads (what a
            long-lived client pays: no connection thread set up per read)
  py-zarr   zarr through h5chunkd.zarr_store (small: the store's merged
            chunks, one batch of the real keys per read)

Needs what bench/run needs (h5py, numpy, nginx) and zarr for py-zarr.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench  # noqa: E402
import clients  # noqa: E402
import workloads  # noqa: E402

GROUPS = 5


def cpu_s(pid):
    """utime + stime of the whole process (every thread, dead ones too), seconds
    (clock ticks: 10 ms steps)."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_read(base, url, spec, conn=None):
    d = conn or clients.Daemon(base)
    try:
        keys = [clients._key(c, 1 if spec["path"] != workloads.ES else 2)
                for c in spec["chunks"]]
        got = d.chunks(url, spec["path"], keys, False)
        bad = [k for k in keys if got[k][0] not in (200, 404)]
        if bad:
            raise SystemExit("batchcpu: keys failed: %s" % bad[:5])
    finally:
        if conn is None:
            d.close()


def measure(pid, fn, rounds):
    """The daemon's CPU seconds per read, for each of GROUPS groups of rounds."""
    per = []
    n = max(1, rounds // GROUPS)
    for _ in range(GROUPS):
        before = cpu_s(pid)
        for _ in range(n):
            fn()
        per.append((cpu_s(pid) - before) / n)
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--nginx", default=os.environ.get("NGINX_BIN") or shutil.which("nginx")
                    or "/usr/sbin/nginx")
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--workloads", default="small,m-adjacent,m-scattered")
    ap.add_argument("--skip", default="m-scattered:py-zarr",
                    help="workload:way pairs not run (default: m-scattered:py-zarr, whose "
                    "merged chunks make each of its 200 reads a batch of 3276 keys)")
    ap.add_argument("--ways", default="raw,raw-ka,py-zarr")
    a = ap.parse_args()
    import atexit
    atexit.register(bench._cleanup)
    work = tempfile.mkdtemp(prefix="h5cd-batchcpu.")
    bench._tmp_dirs.append(work)
    root = os.path.join(work, "origin")
    manifest = workloads.generate(root, "quick")
    _p, port = bench.start_nginx(a.nginx, os.path.join(work, "nginx"), bench.ORIGIN_BODY,
                                 root=root)
    daemon = bench.DaemonProc(os.path.abspath(a.daemon), os.path.join(work, "daemon"))
    daemon.start()
    pid = daemon.proc.pid
    clients.init_worker(manifest)
    print("| workload | way | keys | daemon CPU ms per read (median of %d groups) | groups |"
          % GROUPS)
    print("|---|---|---|---|---|")
    for wl in a.workloads.split(","):
        spec = manifest["workloads"][wl]
        url = "http://127.0.0.1:%d/%s" % (port, spec["file"])
        for way in a.ways.split(","):
            if "%s:%s" % (wl, way) in a.skip.split(","):
                continue
            if way == "raw":
                def fn(url=url, spec=spec):
                    raw_read(daemon.base, url, spec)
            elif way == "raw-ka":
                conn = clients.Daemon(daemon.base)

                def fn(url=url, spec=spec, conn=conn):
                    raw_read(daemon.base, url, spec, conn)
            else:
                def fn(url=url, wl=wl, spec=spec):
                    return clients.pyzarr_read(daemon.base, url, wl, spec)
            first = fn()  # untimed: fills the cache and the index
            if way == "py-zarr" and workloads.digest(first) != spec["digest"]:
                raise SystemExit("batchcpu: %s %s answered wrong values" % (wl, way))
            time.sleep(0.2)
            per = measure(pid, fn, a.rounds)
            print("| %s | %s | %d | %.2f | %s |"
                  % (wl, way, len(spec["chunks"]), statistics.median(per) * 1e3,
                     " ".join("%.2f" % (x * 1e3) for x in per)), flush=True)
    st = daemon.stats()
    print("\ndaemon: %s index hits, %s walk lookups, %s libhdf5 lookups"
          % (st.get("index_hits"), st.get("walk_lookups"), st.get("h5_lookups")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
