#!/usr/bin/python3
"""bench.py - h5chunkd side by side with the tools scientists use today.

Started by bench/run (see `bench/run --help`).  One run:

1. writes the NWB-like files (workloads.py) into a temp dir;
2. starts, on free loopback ports: nginx as the origin; linkemu.py in front
   of it (the wide-area link: RTT on connect and per exchange, one shared
   bandwidth cap); h5chunkd, whose upstream is the link; nginx as a caching
   reverse proxy with the slice module, whose upstream is the link too;
3. checks the link (a 1-byte range on a new and on a reused connection, a
   large transfer on one and on four connections);
4. runs every workload cold (a URL nobody has read: a new hard link of the
   file) for every peer, the peers in turns (each round runs every peer
   once, the order rotated by one peer per round: load that changes on a
   shared machine lands on every peer alike), then warm with 1, 8 and 32
   concurrent clients for the peers that cache, one peer's runs after
   another (run in turns, the batch API and the mirror would evict each
   other's blocks from the daemon's hot-block map, which changes what a
   warm cell of the published table measures); every answer is
   checked against h5py on the local file; each run is a new client in a
   worker process;
5. measures, with wrk, warm batch throughput and the latency of one cached
   chunk under 32 concurrent clients;
5b. the Python package's paths (python/h5chunkd), cold and warm (1 client
   and the highest level), in turns as in 4 (cold and warm alike, every
   round against the same daemon): zarr through h5chunkd.zarr_store (one
   batch per read), zarr through the Zarr view over fsspec HTTP, h5py
   through h5chunkd.open; each path's time is also compared with the
   store's within each round (paired_ratios, their median paired_ratio);
6. records the daemon's peak RSS (VmHWM) over the whole run, writes
   results.json and, unless --no-doc, docs/benchmarks.md and its chart.

Every process it starts is stopped on exit, also on SIGINT/SIGTERM.
"""
import argparse
import atexit
import json
import multiprocessing
import os
import platform
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
sys.path.insert(0, HERE)

import clients  # noqa: E402
import workloads  # noqa: E402

START_TIMEOUT = 15
PEERS_COLD = ["h5chunkd", "mirror", "nginx", "seed", "fsspec", "ros3"]
PEERS_WARM = ["h5chunkd", "mirror", "nginx"]
PEERS_PY = ["py-zarr", "zarr-http", "py-h5py"]
SECTIONS = ["cold", "warm", "wrk", "python"]
PEER_LABELS = {
    "py-zarr": "zarr on h5chunkd.zarr_store (batched)",
    "zarr-http": "zarr on the Zarr view over fsspec HTTP",
    "py-h5py": "h5py on h5chunkd.open",
    "h5chunkd": "h5chunkd batch API",
    "mirror": "h5py+fsspec on h5chunkd /v1/file",
    "nginx": "h5py+fsspec on nginx slice cache",
    "seed": "seed's algorithm to origin",
    "fsspec": "h5py+fsspec to origin",
    "ros3": "h5py ROS3 to origin",
}

_procs = []
_tmp_dirs = []


def log(msg):
    print("bench: %s" % msg, flush=True)


# --------------------------------------------------------------- processes

def _stop(p, secs=5):
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(secs)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(secs)


def _cleanup():
    for p in reversed(_procs):
        try:
            _stop(p)
        except Exception:
            pass
    for d in _tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum, _frame):
    sys.exit(128 + signum)  # atexit runs _cleanup


def spawn(argv, logpath, **kw):
    fh = open(logpath, "ab")
    p = subprocess.Popen(argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, **kw)
    fh.close()
    _procs.append(p)
    return p


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_http(url, proc, secs=START_TIMEOUT):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_file(path, proc, secs=START_TIMEOUT):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as fh:
                v = fh.read().strip()
            if v.isdigit():
                return int(v)
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def tail(path, n=8):
    try:
        with open(path, "rb") as fh:
            return b"\n".join(fh.read().splitlines()[-n:]).decode(errors="replace")
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------- nginx

NGINX_COMMON = """daemon off;
master_process off;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format bench '$request_method $uri $status $body_bytes_sent "$http_range" $msec';
  access_log {d}/access.log bench;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type application/octet-stream;
  keepalive_requests 100000;
  sendfile on;
{body}
}}
"""

ORIGIN_BODY = """  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ }}
    location = /_ready {{ access_log off; return 200 ok; }}
  }}"""

# The configuration nginx's documentation gives for caching ranges with the
# slice module, plus upstream keep-alive and a cache lock (both help nginx).
SLICE_BODY = """  proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:32m max_size=20g
                   inactive=1d use_temp_path=off;
  upstream link {{
    server 127.0.0.1:{link};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location = /_ready {{ access_log off; return 200 ok; }}
    location / {{
      slice 1m;
      proxy_cache bench;
      proxy_cache_key $uri$is_args$args$slice_range;
      proxy_set_header Range $slice_range;
      proxy_cache_valid 200 206 1d;
      proxy_cache_lock on;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://link;
    }}
  }}"""


def start_nginx(nginx, d, body_tmpl, **kw):
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    for _ in range(5):
        port = free_port()
        conf = NGINX_COMMON.format(user=user, d=d, body=body_tmpl.format(port=port, d=d, **kw))
        cpath = os.path.join(d, "nginx.conf")
        with open(cpath, "w") as fh:
            fh.write(conf)
        # nginx takes $NGINX for inherited listening sockets: never pass it on.
        env = {k: v for k, v in os.environ.items() if k != "NGINX"}
        p = spawn([nginx, "-e", os.path.join(d, "error.log"), "-p", d, "-c", cpath],
                  os.path.join(d, "stdout.log"), env=env)
        if wait_http("http://127.0.0.1:%d/_ready" % port, p):
            return p, port
        _stop(p)
    raise SystemExit("bench: nginx did not start: %s" % tail(os.path.join(d, "error.log")))


class AccessLog:
    """Counts the requests and bytes the origin served since the last call."""

    def __init__(self, path):
        self.path, self.pos = path, 0

    def delta(self):
        reqs = nbytes = 0
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except FileNotFoundError:
            return 0, 0
        end = data.rfind(b"\n") + 1
        self.pos += end
        for line in data[:end].splitlines():
            parts = line.split()
            if len(parts) >= 4 and not parts[1].startswith(b"/_"):
                reqs += 1
                nbytes += int(parts[3]) if parts[3].isdigit() else 0
        return reqs, nbytes


# ------------------------------------------------------------------ daemon

class DaemonProc:
    def __init__(self, binary, d, config=None):
        self.binary, self.dir, self.config = binary, d, config
        self.proc = None
        self.base = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        logp = os.path.join(self.dir, "daemon.log")
        self.log = logp
        argv = [self.binary, "--foreground", "--listen", "127.0.0.1:0",
                "--cache-dir", os.path.join(self.dir, "cache"), "--allow-private-upstreams"]
        if self.config:
            argv += ["--config", self.config]
        self.proc = spawn(argv, logp)
        deadline = time.monotonic() + START_TIMEOUT
        addr = None
        while time.monotonic() < deadline and addr is None:
            if self.proc.poll() is not None:
                raise SystemExit("bench: h5chunkd exited (%s): %s" % (self.proc.returncode, tail(logp)))
            with open(logp, "rb") as fh:
                m = re.search(rb'listening"? addr=(127\.0\.0\.1:\d+)', fh.read())
            if m:
                addr = m.group(1).decode()
            else:
                time.sleep(0.05)
        if addr is None:
            raise SystemExit("bench: h5chunkd did not log its address: %s" % tail(logp))
        self.base = "http://" + addr
        if not wait_http(self.base + "/v1/health", self.proc):
            raise SystemExit("bench: h5chunkd does not answer: %s" % tail(logp))

    def stats(self):
        with urllib.request.urlopen(self.base + "/v1/stats", timeout=10) as r:
            return json.loads(r.read())

    def health(self):
        with urllib.request.urlopen(self.base + "/v1/health", timeout=10) as r:
            return json.loads(r.read())

    def status(self, field):
        """A /proc/PID/status field in kB (VmHWM: peak RSS)."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None


# -------------------------------------------------------------------- link

def link_stats(cport):
    with socket.create_connection(("127.0.0.1", cport), timeout=5) as s:
        data = b""
        while not data.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            data += b
    return json.loads(data)


def _range_get(sock, fh, path, rng):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: bench\r\nRange: bytes=%s\r\n\r\n"
                  % (path, rng)).encode())
    n = None
    status = fh.readline()
    while True:
        line = fh.readline()
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
        if line in (b"\r\n", b""):
            break
    if not status.startswith(b"HTTP/1.1 206") or n is None:
        raise RuntimeError("link check: unexpected answer %r" % status)
    data = fh.read(n)
    if len(data) != n:
        raise RuntimeError("link check: short body")
    return n


def validate_link(port, path, size, rtt_ms, reps):
    """Times what the link must cost: a 1-byte range on a new connection
    (~2 RTT) and on a reused one (~1 RTT); one large transfer on one and on
    four connections at once (~ the bandwidth cap in both cases)."""
    import threading
    new, reused = [], []
    for _ in range(reps):
        t = time.monotonic()
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        fh = s.makefile("rb")
        _range_get(s, fh, path, "0-0")
        new.append(time.monotonic() - t)
        for i in range(2):
            t = time.monotonic()
            _range_get(s, fh, path, "%d-%d" % (i + 1, i + 1))
            reused.append(time.monotonic() - t)
        s.close()

    def big(parts):
        per = size // parts
        errs = []

        def one(i):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=60)
                fh = s.makefile("rb")
                _range_get(s, fh, path, "0-0")  # connection set up first
                _range_get(s, fh, path, "%d-%d" % (i * per, (i + 1) * per - 1))
                s.close()
            except Exception as e:
                errs.append(e)
        # Time the transfers only, not the connection set-up: each thread
        # connects, then all start together.
        threads = [threading.Thread(target=one, args=(i,)) for i in range(parts)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        el = time.monotonic() - t
        if errs:
            raise errs[0]
        # Subtract the set-up exchange (2 RTT) and the request's RTT.
        return per * parts, el, per * parts / max(1e-6, el - 3 * rtt_ms / 1000.0)

    b1 = big(1)
    b4 = big(4)
    return {
        "new_conn_ms": [round(x * 1000, 2) for x in new],
        "reused_ms": [round(x * 1000, 2) for x in reused],
        "new_conn_median_ms": round(statistics.median(new) * 1000, 2),
        "reused_median_ms": round(statistics.median(reused) * 1000, 2),
        "big_bytes": b1[0], "big_s": round(b1[1], 3), "big_mbs": round(b1[2] / 1e6, 1),
        "big4_bytes": b4[0], "big4_s": round(b4[1], 3), "big4_mbs": round(b4[2] / 1e6, 1),
    }


# -------------------------------------------------------------------- runs

def pair_with(cell, base):
    """Adds to `cell` its time over `base`'s within each round both ran
    (paired_ratios, in round order) and their median (paired_ratio): the
    comparison the load of a shared machine does not skew, as long as the
    load holds for one round."""
    mine = dict(zip(cell.get("rounds", []), cell.get("times", [])))
    theirs = dict(zip(base.get("rounds", []), base.get("times", [])))
    ratios = [mine[r] / theirs[r] for r in sorted(mine) if r in theirs and theirs[r] > 0]
    cell["paired_ratios"] = [round(x, 4) for x in ratios]
    if ratios and cell.get("ok") and base.get("ok"):
        cell["paired_ratio"] = statistics.median(ratios)


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = {"cold": {}, "warm": {}, "errors": []}
        self.seq = 0

    # URLs ------------------------------------------------------------
    def link_url(self, rel):
        return "http://127.0.0.1:%d/%s" % (self.link_port, rel)

    def fresh(self, tag, fname):
        """A new name for the file: a URL no cache has seen."""
        self.seq += 1
        rel = "%s/%s" % (tag, fname)
        dst = os.path.join(self.origin_root, rel)
        if not os.path.exists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.link(os.path.join(self.origin_root, fname), dst)
        return rel

    def task(self, peer, wl, rel):
        remote = self.link_url(rel)
        t = {"peer": peer, "wl": wl, "daemon": self.daemon.base}
        if peer == "h5chunkd":
            t["url"] = remote
        elif peer == "mirror":
            t["url"] = "%s/v1/file?url=%s" % (self.daemon.base,
                                             urllib.parse.quote(remote, safe=""))
        elif peer == "nginx":
            t["url"] = "http://127.0.0.1:%d/%s" % (self.slice_port, rel)
        elif peer in PEERS_PY:
            t["url"] = remote
        else:
            t["url"] = remote
        return t

    # one measurement: N concurrent clients -----------------------------
    def measure(self, tasks):
        # Idle workers pick a task up within milliseconds; all start at t0.
        t0 = time.monotonic() + 0.05 + 0.01 * len(tasks)
        for t in tasks:
            t["t0"] = t0
        rs = [self.pool.apply_async(clients.run_task, (t,)) for t in tasks]
        out = [r.get(self.args.run_timeout) for r in rs]
        errors = [r["error"] for r in out if not r["ok"]]
        late = max(r["start"] for r in out) - t0
        return max(r["end"] for r in out) - t0, errors, late, out

    def counters(self):
        st = self.daemon.stats()
        ls = link_stats(self.link_cport)
        reqs, nbytes = self.origin_log.delta()
        return {"daemon_upstream": st.get("upstream_requests", 0),
                "link_bytes": ls["bytes_down"], "origin_requests": reqs,
                "origin_bytes": nbytes}

    def cell(self, kind, wl, peer, nclients, make_tasks, reps, budget):
        """Runs one table cell: up to `reps` timed runs within `budget` s."""
        return self.row(kind, wl, nclients, [(peer, make_tasks)], reps, budget)[peer]

    def row(self, kind, wl, nclients, runs, reps, budget, known_failure=None, paired=False):
        """Runs the cells of several peers in turns: round r runs each peer
        once, the order rotated by one peer per round, so that load which
        changes on this shared machine lands on every peer alike and the
        runs of one round can be compared pairwise.  runs: [(peer,
        make_tasks(i))].  Each peer keeps a cell's rules: at most `reps`
        timed runs, none once its runs have spent `budget` s, none after a
        failure.  paired: the rounds stay whole instead (every peer runs in
        every round until a failure), and the row stops once its runs have
        spent `budget` s per peer, so that each peer has the same rounds as
        the others to be compared with.  Returns {peer: cell}; a cell's
        `rounds` gives the round of each of its `times`.
        known_failure(peer, cell): a reason when a failed cell is the peer's
        known failure (reported, not an error)."""
        acc = {peer: {"times": [], "rounds": [], "errors": [], "modes": set(), "spent": 0.0,
                      "origin_requests": 0, "origin_bytes": 0, "link_bytes": 0,
                      "daemon_upstream": 0, "done": False} for peer, _m in runs}
        row_spent = 0.0
        for rnd in range(reps):
            turn = rnd % len(runs)
            round_spent = 0.0
            for peer, make_tasks in runs[turn:] + runs[:turn]:
                p = acc[peer]
                if p["done"]:
                    continue
                before = self.counters()
                el, errs, _late, out = self.measure(make_tasks(len(p["times"])))
                after = self.counters()
                for r in out:
                    if r.get("mode"):
                        p["modes"].add(r["mode"])
                for k in ("origin_requests", "origin_bytes"):
                    p[k] += after[k]
                for k in ("link_bytes", "daemon_upstream"):
                    p[k] += after[k] - before[k]
                p["spent"] += el
                round_spent += el
                if errs:
                    p["errors"].extend(errs[:3])
                    p["done"] = True
                    continue
                p["times"].append(el)
                p["rounds"].append(rnd)
                if not paired and (p["spent"] + el > budget or len(p["times"]) >= reps):
                    p["done"] = True
            row_spent += round_spent
            if paired and row_spent + round_spent > budget * len(runs):
                break
            if all(p["done"] for p in acc.values()):
                break
        return {peer: self.finish_cell(kind, wl, peer, nclients, acc[peer], known_failure)
                for peer, _m in runs}

    def finish_cell(self, kind, wl, peer, nclients, p, known_failure):
        times, errors = p["times"], p["errors"]
        n = max(1, len(times))
        c = {"peer": peer, "wl": wl, "clients": nclients, "times": [round(x, 5) for x in times],
             "rounds": p["rounds"], "n": len(times), "ok": not errors and bool(times),
             "errors": errors,
             "origin_requests": round(p["origin_requests"] / n / nclients, 1),
             "origin_bytes": round(p["origin_bytes"] / n / nclients),
             "link_bytes": round(p["link_bytes"] / n / nclients),
             "daemon_upstream": round(p["daemon_upstream"] / n / nclients, 1),
             "modes": sorted(p["modes"])}
        if times:
            c["median"] = statistics.median(times)
            c["min"], c["max"] = min(times), max(times)
        label = "%s %s %-9s %-8s x%-2d" % (kind, wl, peer, "", nclients)
        if c["ok"]:
            log("%s median %8.1f ms (n=%d, %.1f-%.1f) origin reqs/run %s"
                % (label, c["median"] * 1e3, c["n"], c["min"] * 1e3, c["max"] * 1e3,
                   c["origin_requests"]))
            return c
        log("%s FAILED: %s" % (label, "; ".join(errors)[:500]))
        reason = known_failure(peer, c) if known_failure else None
        if reason:
            c["known_failure"] = reason
            self.results.setdefault("python_known_failures", []).append(
                "%s: %s" % (label.strip(), "; ".join(errors)[:500]))
        else:
            self.results["errors"].append("%s: %s" % (label.strip(), "; ".join(errors)[:500]))
        return c

    def run_cold(self):
        """Every workload on a fresh URL per run, the peers in turns (row)."""
        a = self.args
        for wl in a.workloads:
            fname = self.manifest["workloads"][wl]["file"]
            runs = []
            for peer in PEERS_COLD:
                if peer not in a.peers:
                    continue
                if wl in workloads.MILLION and peer not in workloads.MILLION_PEERS:
                    continue

                def make(i, peer=peer, wl=wl, fname=fname):
                    rel = self.fresh("cold/%s-%s-%d" % (peer, wl, i), fname)
                    return [self.task(peer, wl, rel)]
                runs.append((peer, make))
            self.results["cold"][wl] = self.row("cold", wl, 1, runs, a.reps, a.cell_budget)
            self.rss("cold %s" % wl)

    def run_warm(self):
        a = self.args
        for wl in a.workloads:
            if wl in workloads.MILLION:
                continue  # cold workloads of the issue-12 targets
            fname = self.manifest["workloads"][wl]["file"]
            self.results["warm"][wl] = {}
            for peer in PEERS_WARM:
                if peer not in a.peers:
                    continue
                rel = self.fresh("warm/%s" % peer, fname)
                # The untimed first read fills the cache and checks the values.
                _el, errs, _late, out = self.measure([self.task(peer, wl, rel)])
                cells = {}
                self.results["warm"][wl][peer] = cells
                if errs:
                    log("warm %s %s: verification FAILED: %s" % (wl, peer, errs[0]))
                    self.results["errors"].append("warm %s %s verification: %s"
                                                  % (wl, peer, errs[0]))
                    continue
                for n in a.clients:

                    def make(_i, n=n, peer=peer, wl=wl, rel=rel):
                        return [self.task(peer, wl, rel) for _ in range(n)]

                    cells[str(n)] = self.cell("warm", wl, peer, n, make, a.warm_reps,
                                              a.cell_budget)
                self.rss("warm %s %s" % (wl, peer))

    def rss(self, phase):
        hwm = self.daemon.status("VmHWM")
        if hwm is not None:
            self.results.setdefault("rss_kb", []).append([phase, hwm])

    # wrk -----------------------------------------------------------------
    def run_wrk(self):
        a = self.args
        wrk = shutil.which("wrk")
        if wrk is None:
            log("wrk not found: skipping the load measurements")
            self.results["wrk"] = {"skipped": "wrk not installed"}
            return
        out = {}
        m = self.manifest["workloads"]
        rel = self.fresh("warm/wrk", "ephys.nwb")
        remote = self.link_url(rel)
        # Fill the cache with the chunks wrk will ask for, and check them.
        d = clients.Daemon(self.daemon.base)
        try:
            small_key = str(m["small"]["chunks"][0])
            big_keys = [clients._key(c, 2) for c in m["slab"]["chunks"]]
            small_keys = [str(c) for c in m["small"]["chunks"]]
            raw_big = d.chunks(remote, workloads.ES, big_keys, False)
            raw_small = d.chunks(remote, workloads.TS, small_keys, False)
            dec_big = d.chunks(remote, workloads.ES, big_keys, True)
        finally:
            d.close()
        expect = expected_raw(os.path.join(self.origin_root, "ephys.nwb"),
                              {workloads.ES: m["slab"]["chunks"],
                               workloads.TS: m["small"]["chunks"]})
        bad = [k for k in big_keys if raw_big[k][1] != expect[workloads.ES][k]]
        bad += [k for k in small_keys if raw_small[k][1] != expect[workloads.TS][k]]
        if bad:
            raise SystemExit("bench: raw chunks differ from the file for keys %s" % bad[:5])
        sizes = {
            "raw_big": sum(len(raw_big[k][1]) for k in big_keys),
            "raw_small": sum(len(raw_small[k][1]) for k in small_keys),
            "dec_big": sum(len(dec_big[k][1]) for k in big_keys),
        }
        q = urllib.parse.urlencode
        base = self.daemon.base
        chunk_small = "%s/v1/chunk?%s" % (base, q({"url": remote, "path": workloads.TS,
                                                   "key": small_key}))
        chunk_big = "%s/v1/chunk?%s" % (base, q({"url": remote, "path": workloads.ES,
                                                 "key": big_keys[0]}))
        for name, url in (("chunk_small", chunk_small), ("chunk_big", chunk_big)):
            with urllib.request.urlopen(url, timeout=30) as r:
                body = r.read()
            key = small_key if name == "chunk_small" else big_keys[0]
            path = workloads.TS if name == "chunk_small" else workloads.ES
            if body != expect[path][key]:
                raise SystemExit("bench: GET /v1/chunk %s differs from the file" % name)
            sizes[name] = len(body)
        # References on the same machine: the same bytes as HTTP ranges, from
        # nginx's slice cache and from the daemon's mirror (fsspec asks for
        # 5 MiB blocks).
        fpath = os.path.join(self.origin_root, "ephys.nwb")
        off = chunk_offset(fpath, workloads.TS, m["small"]["chunks"][0])
        small_range = (off, off + sizes["chunk_small"] - 1)
        block = 5 * 1024 * 1024
        big_range = (16 * 1024 * 1024, 16 * 1024 * 1024 + block - 1)
        nginx_url = "http://127.0.0.1:%d/%s" % (self.slice_port, rel)
        mirror_url = "%s/v1/file?url=%s" % (base, urllib.parse.quote(remote, safe=""))
        for url in (nginx_url, mirror_url):
            for lo, hi in (small_range, big_range):
                check_range(url, fpath, lo, hi)
        runs = [
            ("chunk_small", "GET", chunk_small, None, None, sizes["chunk_small"]),
            ("nginx_range_small", "GET", nginx_url, None, small_range, sizes["chunk_small"]),
            ("mirror_range_small", "GET", mirror_url, None, small_range, sizes["chunk_small"]),
            ("chunk_big", "GET", chunk_big, None, None, sizes["chunk_big"]),
            ("nginx_range_5m", "GET", nginx_url, None, big_range, block),
            ("mirror_range_5m", "GET", mirror_url, None, big_range, block),
            ("batch_raw_big", "POST", base + "/v1/chunks",
             {"url": remote, "path": workloads.ES, "keys": big_keys, "decode": False},
             None, sizes["raw_big"]),
            ("batch_decoded_big", "POST", base + "/v1/chunks",
             {"url": remote, "path": workloads.ES, "keys": big_keys, "decode": True},
             None, sizes["dec_big"]),
            ("batch_raw_small", "POST", base + "/v1/chunks",
             {"url": remote, "path": workloads.TS, "keys": small_keys, "decode": False},
             None, sizes["raw_small"]),
        ]
        for name, method, url, body, rng, payload in runs:
            script = os.path.join(self.work, "wrk_%s.lua" % name)
            with open(script, "w") as fh:
                fh.write('wrk.method = "%s"\n' % method)
                if body is not None:
                    fh.write('wrk.headers["Content-Type"] = "application/json"\n')
                    fh.write("wrk.body = %s\n" % lua_string(json.dumps(body)))
                if rng is not None:
                    fh.write('wrk.headers["Range"] = "bytes=%d-%d"\n' % rng)
            argv = [wrk, "-t%d" % a.wrk_threads, "-c%d" % a.wrk_conns, "-d%ds" % a.wrk_secs,
                    "--latency", "--timeout", "10s", "-s", script, url]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=a.wrk_secs + 60)
            res = parse_wrk(r.stdout)
            res["payload_bytes"] = payload
            res["payload_gbs"] = round(res.get("requests_per_s", 0) * payload / 1e9, 3)
            res["command"] = " ".join(argv[:-2] + ["<%s.lua>" % name, "<url>"])
            if r.returncode != 0 or res.get("non2xx") or res.get("socket_errors"):
                res["error"] = (r.stderr.strip() or "non-2xx or socket errors: %s"
                                % res.get("socket_errors", res.get("non2xx")))[:300]
            elif not res.get("requests"):
                res["error"] = "no request completed in %d s" % a.wrk_secs
            out[name] = res
            log("wrk %-18s %8.0f req/s %7.3f GB/s p50 %s p99 %s%s"
                % (name, res.get("requests_per_s", 0), res["payload_gbs"],
                   fmt_ms(res.get("p50_ms")), fmt_ms(res.get("p99_ms")),
                   (" ERROR " + res["error"]) if res.get("error") else ""))
            self.rss("wrk %s" % name)
        self.results["wrk"] = out

    # the Python package ---------------------------------------------------
    def run_python(self):
        """Cold (a fresh URL per run) and warm (one URL per path, first read
        untimed) for each Python path of the package, per workload, the
        paths in turns (row, whole rounds): each round runs every path once,
        so a path is compared with the batched store within each round
        (paired_ratios)."""
        a = self.args
        out = self.results.setdefault("python", {})
        levels = sorted({1, max(a.clients)})
        for wl in a.workloads:
            if wl in workloads.MILLION:
                continue
            fname = self.manifest["workloads"][wl]["file"]
            out[wl] = {peer: {} for peer in PEERS_PY}
            runs = []
            for peer in PEERS_PY:

                def make_cold(i, peer=peer, wl=wl, fname=fname):
                    rel = self.fresh("cold/%s-%s-%d" % (peer, wl, i), fname)
                    return [self.task(peer, wl, rel)]
                runs.append((peer, make_cold))
            cells = self.row("cold", wl, 1, runs, a.reps, a.cell_budget, self.known_failure,
                             paired=True)
            for peer, c in cells.items():
                out[wl][peer]["cold"] = c
            warm = {}
            for peer in PEERS_PY:
                rel = self.fresh("warm/%s" % peer, fname)
                _el, errs, _late, _o = self.measure([self.task(peer, wl, rel)])
                if errs:
                    log("warm %s %s: verification FAILED: %s" % (wl, peer, errs[0]))
                    self.results["errors"].append("python warm %s %s verification: %s"
                                                  % (wl, peer, errs[0]))
                    continue
                warm[peer] = rel
            for n in levels:
                runs = []
                for peer, rel in warm.items():

                    def make_warm(_i, n=n, peer=peer, wl=wl, rel=rel):
                        return [self.task(peer, wl, rel) for _ in range(n)]
                    runs.append((peer, make_warm))
                cells = self.row("warm", wl, n, runs, a.warm_reps, a.cell_budget,
                                 self.known_failure, paired=True)
                for peer, c in cells.items():
                    out[wl][peer]["warm%d" % n] = c
            for cell in out[wl]["py-zarr"]:
                for peer in PEERS_PY[1:]:
                    if cell in out[wl][peer]:
                        pair_with(out[wl][peer][cell], out[wl]["py-zarr"][cell])
            self.rss("python %s" % wl)

    @staticmethod
    def known_failure(peer, c):
        """zarr's FSStore turns every chunk request that fails into fill values
        (zarr 2.13 + fsspec 2022.11); with many clients at once the daemon's
        max_connections drops some of fsspec's many connections, so zarr-http
        answers wrongly.  That is the peer's known failure, the reason for the
        batched store: it stays FAILED in the table, with its reason, but
        does not fail the run."""
        if peer == "zarr-http" and c["errors"] and all(
                e.startswith("wrong values") for e in c["errors"]):
            return "FSStore filled chunks whose requests failed"
        return None

    # the whole run -------------------------------------------------------
    def run(self):
        t_start = time.monotonic()
        self.setup()
        sec = self.args.sections
        try:
            if "cold" in sec:
                self.run_cold()
            if "warm" in sec:
                self.run_warm()
            if "wrk" in sec:
                self.run_wrk()
            if "python" in sec:
                self.run_python()
        finally:
            self.pool.terminate()
            self.pool.join()
        return self.finish(t_start)

    def setup(self):
        a = self.args
        self.load_start = os.getloadavg()[0]
        self.work = a.workdir or tempfile.mkdtemp(prefix="h5cd-bench.")
        if not a.workdir and not a.keep:
            _tmp_dirs.append(self.work)
        os.makedirs(self.work, exist_ok=True)
        log("work dir %s" % self.work)
        # A work dir of an earlier run keeps its files (origin/: the million-chunk
        # file takes minutes), never its state: stale port files and daemon logs
        # would name the old processes' ports, and the daemon's and nginx's caches
        # would make this run's cold URLs (the same names) warm.
        for name in ("daemon", "origin-nginx", "slice-nginx"):
            shutil.rmtree(os.path.join(self.work, name), ignore_errors=True)
        for name in ("link.port", "link.cport", "link.log"):
            try:
                os.unlink(os.path.join(self.work, name))
            except FileNotFoundError:
                pass
        self.origin_root = os.path.join(self.work, "origin")
        t = time.monotonic()
        self.manifest = workloads.generate(self.origin_root, a.scale)
        log("files written in %.1f s: %s" % (time.monotonic() - t, ", ".join(
            "%s %.1f MB" % (f, os.path.getsize(os.path.join(self.origin_root, f)) / 1e6)
            for f in ("ephys.nwb", "ophys.nwb", "many.nwb", "million.h5"))))

        _p, self.origin_port = start_nginx(a.nginx, os.path.join(self.work, "origin-nginx"),
                                           ORIGIN_BODY, root=self.origin_root)
        self.origin_log = AccessLog(os.path.join(self.work, "origin-nginx", "access.log"))
        lp = os.path.join(self.work, "link.port")
        cp = os.path.join(self.work, "link.cport")
        link = spawn([sys.executable, os.path.join(HERE, "linkemu.py"), "--origin",
                      "127.0.0.1:%d" % self.origin_port, "--rtt-ms", str(a.rtt_ms),
                      "--bw-mbs", str(a.bw_mbs), "--conn-bw-mbs", str(a.conn_bw_mbs or 0),
                      "--port-file", lp, "--control-port-file", cp],
                     os.path.join(self.work, "link.log"))
        self.link_port = wait_file(lp, link)
        self.link_cport = wait_file(cp, link)
        if not self.link_port or not self.link_cport:
            raise SystemExit("bench: linkemu did not start: %s"
                             % tail(os.path.join(self.work, "link.log")))
        self.daemon = DaemonProc(a.daemon, os.path.join(self.work, "daemon"),
                                 os.path.abspath(a.daemon_config) if a.daemon_config else None)
        self.daemon.start()
        _p, self.slice_port = start_nginx(a.nginx, os.path.join(self.work, "slice-nginx"),
                                          SLICE_BODY, link=self.link_port)
        log("origin :%d, link :%d (RTT %g ms, %g MB/s), h5chunkd %s (pid %d), nginx slice :%d"
            % (self.origin_port, self.link_port, a.rtt_ms, a.bw_mbs, self.daemon.base,
               self.daemon.proc.pid, self.slice_port))

        self.results["link"] = validate_link(self.link_port, "/ephys.nwb",
                                             os.path.getsize(os.path.join(self.origin_root,
                                                                          "ephys.nwb")),
                                             a.rtt_ms, 5 if a.scale == "full" else 3)
        L = self.results["link"]
        log("link: 1-byte range new connection %.1f ms (2 RTT = %g), reused %.1f ms (1 RTT = %g); "
            "%.0f MB on 1 connection %.1f MB/s, on 4 connections %.1f MB/s (cap %g)"
            % (L["new_conn_median_ms"], 2 * a.rtt_ms, L["reused_median_ms"], a.rtt_ms,
               L["big_bytes"] / 1e6, L["big_mbs"], L["big4_mbs"], a.bw_mbs))
        self.origin_log.delta()

        nproc = max([1] + list(a.clients))
        ctx = multiprocessing.get_context("spawn")
        t = time.monotonic()
        self.pool = ctx.Pool(nproc, initializer=clients.init_worker, initargs=(self.manifest,))
        # Every worker up and its imports done before any timing.
        self.pool.map(clients.ping, [0.3] * nproc, chunksize=1)
        _el, errs, _late, _out = self.measure(
            [{"peer": "prime", "wl": None, "daemon": self.daemon.base,
              "url": "http://127.0.0.1:%d/many.nwb" % self.origin_port} for _ in range(nproc)])
        if errs:
            raise SystemExit("bench: a client cannot run: %s" % errs[0])
        log("%d client processes ready in %.1f s" % (nproc, time.monotonic() - t))

    def finish(self, t_start):
        a = self.args
        st = self.daemon.stats()
        self.results["daemon_stats"] = st
        self.results["daemon_version"] = self.daemon.health().get("version")
        self.results["daemon_hwm_kb"] = self.daemon.status("VmHWM")
        self.results["daemon_rss_end_kb"] = self.daemon.status("VmRSS")
        self.results["manifest"] = self.manifest
        self.results["settings"] = {
            "rtt_ms": a.rtt_ms, "bw_mbs": a.bw_mbs, "conn_bw_mbs": a.conn_bw_mbs,
            "reps": a.reps, "warm_reps": a.warm_reps,
            "clients": a.clients, "scale": a.scale, "cell_budget_s": a.cell_budget,
            "wrk": {"threads": a.wrk_threads, "conns": a.wrk_conns, "secs": a.wrk_secs},
            "command": a.command}
        self.results["machine"] = machine_info(a)
        self.results["machine"]["loadavg_start"] = self.load_start
        self.results["machine"]["loadavg_end"] = os.getloadavg()[0]
        self.results["elapsed_s"] = round(time.monotonic() - t_start, 1)
        _stop(self.daemon.proc, 15)
        self.results["daemon_exit"] = self.daemon.proc.returncode
        log("daemon peak RSS (VmHWM) %.1f MB; exit status %s; total %.0f s"
            % (self.results["daemon_hwm_kb"] / 1024.0, self.results["daemon_exit"],
               self.results["elapsed_s"]))
        return self.results


def expected_raw(path, chunks_by_ds):
    """Stored bytes of chunks, read with h5py from the local file."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for ds, cs in chunks_by_ds.items():
            d = f[ds]
            m = {}
            for c in cs:
                off = (c * d.chunks[0],) + (0,) * (d.ndim - 1)
                _mask, data = d.id.read_direct_chunk(off)
                m[clients._key(c, d.ndim)] = bytes(data)
            out[ds] = m
    return out


def chunk_offset(path, ds, c):
    import h5py
    with h5py.File(path, "r") as f:
        d = f[ds]
        info = d.id.get_chunk_info_by_coord((c * d.chunks[0],) + (0,) * (d.ndim - 1))
        return info.byte_offset


def check_range(url, path, lo, hi):
    """GETs bytes lo-hi of url (which fills a cache) and compares them with the file."""
    req = urllib.request.Request(url, headers={"Range": "bytes=%d-%d" % (lo, hi)})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
    with open(path, "rb") as fh:
        fh.seek(lo)
        want = fh.read(hi - lo + 1)
    if body != want:
        raise SystemExit("bench: bytes %d-%d of %s differ from the file" % (lo, hi, url))


def lua_string(s):
    return "[==[" + s + "]==]"


def _ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        return None
    x = float(m.group(1))
    return {"us": x / 1000.0, "ms": x, "s": x * 1000.0, "m": x * 60000.0}[m.group(2)]


def parse_wrk(text):
    res = {}
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"(50|75|90|99)%\s+(\S+)$", s)
        if m:
            res["p%s_ms" % m.group(1)] = _ms(m.group(2))
        m = re.match(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", s)
        if m:
            res["mean_ms"], res["max_ms"] = _ms(m.group(1)), _ms(m.group(3))
        m = re.match(r"Requests/sec:\s+([\d.]+)", s)
        if m:
            res["requests_per_s"] = float(m.group(1))
        m = re.match(r"(\d+) requests in", s)
        if m:
            res["requests"] = int(m.group(1))
        m = re.match(r"Non-2xx or 3xx responses:\s+(\d+)", s)
        if m:
            res["non2xx"] = int(m.group(1))
        if s.startswith("Socket errors:"):
            res["socket_errors"] = s
    return res


def fmt_ms(v):
    return "-" if v is None else "%.2f ms" % v


def machine_info(a):
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    info["mem_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/etc/debian_version") as fh:
            info["debian"] = fh.read().strip()
    except OSError:
        pass
    import fsspec
    import h5py
    import numpy
    info["python"] = platform.python_version()
    info["h5py"] = h5py.__version__
    info["hdf5"] = h5py.version.hdf5_version
    info["fsspec"] = fsspec.__version__
    info["numpy"] = numpy.__version__
    try:
        r = subprocess.run([a.nginx, "-v"], capture_output=True, text=True, timeout=10)
        info["nginx"] = (r.stderr or r.stdout).strip().split("/")[-1]
    except OSError:
        pass
    try:
        r = subprocess.run(["git", "-C", os.path.dirname(HERE), "describe", "--always",
                            "--dirty"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            info["source"] = r.stdout.strip()
    except OSError:
        pass
    return info


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="bench/run", description="h5chunkd side by side with ROS3, fsspec and nginx's "
        "slice cache over an emulated wide-area link; writes docs/benchmarks.md.")
    ap.add_argument("--daemon", help="h5chunkd binary (default: $H5CHUNKD_BIN, else "
                    "./daemon/h5chunkd of the current build dir)")
    ap.add_argument("--daemon-config", help="a configuration file for h5chunkd (e.g. one with "
                    "exact_ranges = true); default: its embedded defaults")
    ap.add_argument("--nginx", default=os.environ.get("NGINX_BIN") or shutil.which("nginx")
                    or "/usr/sbin/nginx", help="nginx binary (default: $NGINX_BIN, else "
                    "nginx on PATH)")
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--bw-mbs", type=float, default=100.0, help="link bandwidth, MB/s")
    ap.add_argument("--conn-bw-mbs", type=float, default=0.0,
                    help="each connection's bandwidth cap, MB/s (as S3 has); 0: none")
    ap.add_argument("--reps", type=int, help="timed runs per cold cell (full 5, quick 1)")
    ap.add_argument("--warm-reps", type=int, help="timed runs per warm cell (full 3, quick 1)")
    ap.add_argument("--clients", help="warm concurrency levels (default 1,8,32; quick 1,4)")
    ap.add_argument("--cell-budget", type=float, help="seconds after which a cell stops "
                    "repeating (at least one run; full 5, quick 3)")
    ap.add_argument("--workloads", default=",".join(workloads.WORKLOADS))
    ap.add_argument("--peers", default=",".join(PEERS_COLD))
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="what to run (default all): " + ", ".join(SECTIONS))
    ap.add_argument("--wrk-secs", type=int)
    ap.add_argument("--wrk-conns", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a smoke run: small files, one "
                    "run per cell, 1 and 4 clients")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--doc", help="the Markdown file to write (default "
                    "docs/benchmarks.md of the source tree)")
    ap.add_argument("--results", help="write the raw results (JSON) here (default: beside "
                    "the doc, docs/benchmarks.json; none with --no-doc)")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="write the doc from a saved results file, run nothing")
    ap.add_argument("--workdir", help="keep everything here (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--run-timeout", type=float, default=600.0,
                    help="seconds one measurement may take")
    a = ap.parse_args(argv)
    a.command = "bench/run " + " ".join(sys.argv[1:] if argv is None else argv)
    a.doc = a.doc or os.path.join(os.path.dirname(HERE), "docs", "benchmarks.md")
    if a.report_only:
        return a
    quick = a.quick
    a.scale = "quick" if quick else "full"
    a.reps = a.reps or (1 if quick else 5)
    a.warm_reps = a.warm_reps or (1 if quick else 3)
    a.cell_budget = a.cell_budget or (3.0 if quick else 5.0)
    a.wrk_secs = a.wrk_secs or (1 if quick else 5)
    a.clients = [int(x) for x in (a.clients or ("1,4" if quick else "1,8,32")).split(",")]
    a.workloads = [w for w in a.workloads.split(",") if w]
    a.peers = [p for p in a.peers.split(",") if p]
    a.sections = [x for x in a.sections.split(",") if x]
    for x in a.sections:
        if x not in SECTIONS:
            ap.error("unknown section %s (known: %s)" % (x, ", ".join(SECTIONS)))
    for w in a.workloads:
        if w not in workloads.WORKLOADS:
            ap.error("unknown workload %s (known: %s)" % (w, ", ".join(workloads.WORKLOADS)))
    for p in a.peers:
        if p not in PEERS_COLD:
            ap.error("unknown peer %s (known: %s)" % (p, ", ".join(PEERS_COLD)))
    if "h5chunkd" not in a.peers:
        a.peers.insert(0, "h5chunkd")
    if not a.daemon:
        a.daemon = os.environ.get("H5CHUNKD_BIN") or os.path.join(os.getcwd(), "daemon",
                                                                   "h5chunkd")
    if not os.access(a.daemon, os.X_OK):
        ap.error("h5chunkd binary not found: %s (build it, or pass --daemon)" % a.daemon)
    if not os.access(a.nginx, os.X_OK):
        ap.error("nginx not found: %s" % a.nginx)
    return a


def main(argv=None):
    a = parse_args(argv)
    import report
    if a.report_only:
        with open(a.report_only) as fh:
            results = json.load(fh)
        report.write(results, a.doc)
        log("wrote %s" % a.doc)
        return 0

    atexit.register(_cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    results = Bench(a).run()
    if not a.results and not a.no_doc:
        # Beside the doc, so `--report-only` can write it again.
        a.results = os.path.splitext(a.doc)[0] + ".json"
    if a.results:
        with open(a.results, "w") as fh:
            json.dump(results, fh, indent=1)
        log("wrote %s" % a.results)
    if not a.no_doc:
        report.write(results, a.doc)
        log("wrote %s" % a.doc)
    failed = results["errors"]
    if failed:
        log("%d cell(s) failed:" % len(failed))
        for e in failed:
            log("  " + e)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
