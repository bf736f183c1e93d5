#!/usr/bin/python3
"""sitetier.py - the two-workstation workload of the site cache tier (issue 13).

An origin (nginx, static files) behind bench/linkemu.py (the wide-area link:
RTT and a shared bandwidth cap), one nginx site cache configured by
scripts/h5chunkd-site-cache on loopback (the lab's network), and daemons
("workstations") with separate caches.  The workload is a cold batch: one
/v1/slice of a whole compressed HDF5 dataset (chunk index, then every chunk).

Measured, each --repeat times with fresh caches (median reported):
  direct   workstation 2's cold batch straight from the origin, after
           workstation 1 read it (each daemon fetches everything itself);
  tier     workstation 1's cold batch through an empty site cache (it fills
           it), then workstation 2's through the filled site cache;
  warm     workstation 2's batch once more, from its own cache: the floor
           (decoding, the chunk index) that no tier can go below;
  failover a cold batch with the only parent refused (port closed), with the
           site cache killed mid-batch, and with a hung site cache (accepts,
           never answers; parent_timeout_ms as given).
Each run checks every byte against the values h5py wrote.  Prints a markdown
table and writes JSON lines to --out/sitetier.jsonl.

Usage: sitetier.py --daemon PATH [--rtt-ms 40] [--bw-mbs 25] [--size-mib 48]
                   [--repeat 3] [--hung-timeout-ms 2000] [--out DIR]
Needs nginx with the slice module and python3-h5py (Debian 12).  Loopback only.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SITE_CACHE = os.path.join(HERE, "..", "scripts", "h5chunkd-site-cache")
LINKEMU = os.path.join(HERE, "linkemu.py")
MIB = 1 << 20
START_TIMEOUT = 20.0

sys.path.insert(0, HERE)
from bench import wait_http  # noqa: E402  (the bench's own helpers)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=800):
    try:
        with open(path, "rb") as fh:
            return fh.read()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


class Procs:
    """Every process the bench started, stopped at exit."""

    def __init__(self):
        self.all = []

    def spawn(self, argv, log, **kw):
        fh = open(log, "ab")
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, **kw)
        fh.close()
        self.all.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.all):
            self.stop(p)


def make_dataset(path, raw_path, size_mib):
    """A compressed, chunked int16 dataset of about size_mib MiB decoded."""
    code = r"""
import sys, h5py, numpy
rows = int(sys.argv[3]) * 1024 * 1024 // (2 * 4096)
rng = numpy.random.default_rng(13)
a = (numpy.sin(numpy.arange(rows * 4096) / 50.0) * 3000).astype("<i2").reshape(rows, 4096)
a += rng.integers(-200, 200, size=a.shape, dtype="<i2")
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("data", data=a, chunks=(64, 4096), compression="gzip", compression_opts=1)
open(sys.argv[2], "wb").write(a.tobytes())
"""
    subprocess.run(["/usr/bin/python3", "-c", code, path, raw_path, str(size_mib)], check=True)


def start_origin(procs, nginx, d, root):
    os.makedirs(d, exist_ok=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""daemon off; master_process off; worker_processes 1; {user}
pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{ access_log {d}/access.log; client_body_temp_path {d}/t1; proxy_temp_path {d}/t2;
  fastcgi_temp_path {d}/t3; uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
  keepalive_requests 100000; sendfile on;
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }} }}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as fh:
        fh.write(conf)
    p = procs.spawn([nginx, "-e", d + "/error.log", "-c", d + "/nginx.conf"], d + "/stdout.log")
    if not wait_http("http://127.0.0.1:%d/" % port, p, START_TIMEOUT):
        raise SystemExit("sitetier: origin nginx did not start: " + tail(d + "/error.log"))
    return port


def start_link(procs, d, origin_port, rtt_ms, bw_mbs):
    os.makedirs(d, exist_ok=True)
    pf, cf = os.path.join(d, "port"), os.path.join(d, "control")
    p = procs.spawn(["/usr/bin/python3", LINKEMU, "--listen-port", "0", "--origin",
                     "127.0.0.1:%d" % origin_port, "--rtt-ms", str(rtt_ms), "--bw-mbs",
                     str(bw_mbs), "--port-file", pf, "--control-port-file", cf], d + "/log")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(pf) and os.path.exists(cf) and os.path.getsize(pf) and os.path.getsize(cf):
            return int(open(pf).read()), int(open(cf).read())
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("sitetier: linkemu did not start: " + tail(d + "/log"))


def link_bytes(control_port):
    with socket.create_connection(("127.0.0.1", control_port), timeout=10) as s:
        return json.loads(s.makefile().readline())["bytes_down"]


def start_site_cache(procs, nginx, d, wan_port):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    port = free_port()
    argv = ["sh", SITE_CACHE, "--listen", "127.0.0.1:%d" % port, "--cache-dir", d,
            "--allow-host", "127.0.0.1:%d" % wan_port, "--foreground", "--workers", "1"]
    if os.geteuid() == 0:
        argv += ["--user", "root"]
    with open(os.path.join(d, "nginx.conf"), "w") as fh:
        subprocess.run(argv, stdout=fh, check=True)
    p = procs.spawn([nginx, "-e", d + "/error.log", "-c", d + "/nginx.conf"], d + "/stdout.log")
    if not wait_http("http://127.0.0.1:%d/_h5cd_health" % port, p, START_TIMEOUT):
        raise SystemExit("sitetier: site cache did not start: " + tail(d + "/error.log"))
    return p, port


def hung_listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


class Workstation:
    def __init__(self, procs, binary, d, parents=(), extra=()):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        conf = os.path.join(d, "h5chunkd.conf")
        with open(conf, "w") as fh:
            if parents:
                fh.write("parents = %s\n" % ", ".join(parents))
            for line in extra:
                fh.write(line + "\n")
        log = os.path.join(d, "daemon.log")
        self.proc = procs.spawn([binary, "--foreground", "--listen", "127.0.0.1:0", "--config",
                                 conf, "--cache-dir", os.path.join(d, "cache"),
                                 "--allow-private-upstreams"], log)
        self.procs = procs
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = re.search(rb'listening"? addr=(127\.0\.0\.1:\d+)', open(log, "rb").read())
            if m:
                self.base = "http://" + m.group(1).decode()
                break
            if self.proc.poll() is not None:
                raise SystemExit("sitetier: h5chunkd exited: " + tail(log))
            time.sleep(0.05)
        else:
            raise SystemExit("sitetier: h5chunkd did not start: " + tail(log))

    def cold_batch(self, url, expect):
        q = urllib.parse.urlencode({"url": url, "path": "/data", "format": "raw"})
        t0 = time.monotonic()
        with urllib.request.urlopen(self.base + "/v1/slice?" + q, timeout=600) as r:
            body = r.read()
        seconds = time.monotonic() - t0
        if body != expect:
            raise SystemExit("sitetier: WRONG BYTES from %s (%d bytes)" % (self.base, len(body)))
        return seconds

    def parents(self):
        with urllib.request.urlopen(self.base + "/v1/stats", timeout=10) as r:
            return json.loads(r.read()).get("parents", [])

    def stop(self):
        self.procs.stop(self.proc)


def measure(label, ws, url, expect, ctl, results, extra=None):
    before = link_bytes(ctl)
    seconds = ws.cold_batch(url, expect)
    row = {"run": label, "seconds": round(seconds, 3), "wan_bytes": link_bytes(ctl) - before}
    row.update(extra or {})
    results.append(row)
    print("sitetier: %-28s %7.2f s  WAN %6.1f MiB" % (label, seconds, row["wan_bytes"] / MIB),
          file=sys.stderr)
    return row


def one_round(a, procs, tmp, url, expect, wan_port, ctl, results, rnd):
    d = lambda name: os.path.join(tmp, "r%d" % rnd, name)  # noqa: E731
    # Straight from the origin: both workstations fetch everything.
    w1, w2 = Workstation(procs, a.daemon, d("direct1")), Workstation(procs, a.daemon, d("direct2"))
    measure("direct: workstation 1", w1, url, expect, ctl, results)
    measure("direct: workstation 2", w2, url, expect, ctl, results)
    w1.stop(), w2.stop()
    # Through an empty site cache.
    sc, port = start_site_cache(procs, a.nginx, d("site"), wan_port)
    parent = ["http://127.0.0.1:%d" % port]
    t1, t2 = Workstation(procs, a.daemon, d("tier1"), parent), Workstation(procs, a.daemon, d("tier2"), parent)
    measure("tier: workstation 1", t1, url, expect, ctl, results)
    measure("tier: workstation 2", t2, url, expect, ctl, results)
    # The floor: the same batch again from workstation 2's own cache (decoding, the HDF5 index).
    measure("warm: workstation 2 again", t2, url, expect, ctl, results)
    t1.stop(), t2.stop()
    procs.stop(sc)
    # The only parent refused: every request fails over at once.
    dead = ["http://127.0.0.1:%d" % free_port()]
    w = Workstation(procs, a.daemon, d("refused"), dead)
    measure("failover: parent refused", w, url, expect, ctl, results,
            {"parent": w.parents()[0]})
    w.stop()
    # The site cache killed mid-batch (SIGKILL to master and worker).
    sc, port = start_site_cache(procs, a.nginx, d("site2"), wan_port)
    w = Workstation(procs, a.daemon, d("killed"), ["http://127.0.0.1:%d" % port])
    delay = results[-5]["seconds"] * 0.4  # 40 % into a cold batch as long as direct 2's
    killer = subprocess.Popen(["sh", "-c", "sleep %.3f; kill -KILL %d $(ps -o pid= --ppid %d)"
                               % (delay, sc.pid, sc.pid)])
    measure("failover: parent killed", w, url, expect, ctl, results, {"kill_after_s": round(delay, 3)})
    killer.wait()
    sc.wait()
    w.stop()
    # A hung site cache: connections accepted, never answered.
    hung = hung_listener()
    w = Workstation(procs, a.daemon, d("hung"), ["http://127.0.0.1:%d" % hung.getsockname()[1]],
                    ["parent_timeout_ms = %d" % a.hung_timeout_ms])
    measure("failover: parent hung", w, url, expect, ctl, results,
            {"parent_timeout_ms": a.hung_timeout_ms, "parent": w.parents()[0]})
    w.stop()
    hung.close()


def report(results, a, stored_mib):
    runs = []
    for r in results:
        if r["run"] not in runs:
            runs.append(r["run"])
    print("\nrtt %d ms, bandwidth %g MB/s, dataset %.1f MiB stored (%d MiB decoded), %d rounds\n"
          % (a.rtt_ms, a.bw_mbs, stored_mib, a.size_mib, a.repeat))
    print("| run | cold batch (median s) | WAN bytes (median MiB) |")
    print("|---|---|---|")
    med = {}
    for run in runs:
        rows = [r for r in results if r["run"] == run]
        med[run] = statistics.median(r["seconds"] for r in rows)
        wan = statistics.median(r["wan_bytes"] for r in rows) / MIB
        print("| %s | %.2f | %.1f |" % (run, med[run], wan))
    print("\nworkstation 2 through the tier vs straight from the origin: %.1fx faster"
          % (med["direct: workstation 2"] / med["tier: workstation 2"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--rtt-ms", type=float, default=40)
    ap.add_argument("--bw-mbs", type=float, default=25)
    ap.add_argument("--size-mib", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hung-timeout-ms", type=int, default=2000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="h5cd-sitetier.")
    results = []
    try:
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        make_dataset(os.path.join(www, "data.h5"), os.path.join(tmp, "data.raw"), a.size_mib)
        stored_mib = os.path.getsize(os.path.join(www, "data.h5")) / MIB
        expect = open(os.path.join(tmp, "data.raw"), "rb").read()
        origin = start_origin(procs, a.nginx, os.path.join(tmp, "origin"), www)
        wan_port, ctl = start_link(procs, os.path.join(tmp, "link"), origin, a.rtt_ms, a.bw_mbs)
        url = "http://127.0.0.1:%d/data.h5" % wan_port
        for rnd in range(a.repeat):
            one_round(a, procs, tmp, url, expect, wan_port, ctl, results, rnd)
        report(results, a, stored_mib)
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, "sitetier.jsonl"), "w") as fh:
                for r in results:
                    fh.write(json.dumps(dict(r, rtt_ms=a.rtt_ms, bw_mbs=a.bw_mbs)) + "\n")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
