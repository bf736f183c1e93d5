#!/usr/bin/python3
"""test_exactrange.py - cold batches fetch the bytes they want, not whole
cache blocks, and the cache keeps what was fetched (partial blocks).

An h5py file of 64 uncompressed chunks of 540,000 bytes (not a multiple of
the 256 KiB cache block) is served by nginx on loopback, whose access log
records each request's status, $body_bytes_sent and Range header.  After
/v1/meta (the open and the description), one cold POST /v1/chunks of
scattered chunks, each with three unwanted chunks on either side: the
origin's requests that touch a wanted chunk are the batch's data requests,
and their bytes must be at most 1.1x the wanted chunks' (whole cache blocks
made them 1.45-1.94x).  coalesce_max is 512K, so that the planner (whose
gap is clamped to it) never bridges the 1.6 MB holes, whatever it measures
on a loaded machine.  Every chunk equals h5py's read_direct_chunk.  The
same batch again: no origin request.  Then a batch of adjacent chunks (one
request's worth, merged in the cache to whole blocks) warm with no request;
a /v1/file read across partially cached blocks (a whole-block reader: it
fetches what the blocks lack) equal to the file's bytes; one cold chunk by
GET /v1/chunk, its bytes only; eight concurrent batches of overlapping keys
on a cold copy: no byte crosses the link twice (single-flight of spans).
About 5 s; exit status 0 pass, 1 fail, 77 skip (automake).
Environment: H5CHUNKD_BIN, NGINX_BIN, KEEP_TMP=1.
"""
import json
import os
import re
import shutil
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import h5peers  # noqa: E402

NAME = "test_exactrange"
BUDGET_S = 60
CHUNK_ELEMS = 135000  # float32: 540,000 bytes a chunk
NCHUNKS = 64
SCATTERED = list(range(16, NCHUNKS, 4))  # past the open's prefix, three chunks apart
ADJACENT = list(range(5, 13))
SINGLE = 58
LINE_RE = re.compile(r'^(\d+) (\d+) "([^"]*)" (\S+)$')


SUITE = h5peers.Suite(NAME)
log, fail, check = SUITE.log, SUITE.fail, SUITE.check


def write_file(path):
    rng = np.random.default_rng(5)
    data = rng.random(NCHUNKS * CHUNK_ELEMS, dtype=np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(CHUNK_ELEMS,))


def chunk_truth(path, keys):
    """{key: (offset, bytes)} from h5py."""
    out = {}
    with h5py.File(path, "r") as f:
        ds = f["data"]
        for k in keys:
            info = ds.id.get_chunk_info_by_coord((k * CHUNK_ELEMS,))
            _mask, raw = ds.id.read_direct_chunk((k * CHUNK_ELEMS,))
            out[k] = (info.byte_offset, raw)
    return out


class AccessLog:
    """The lines nginx appended since the last call."""

    def __init__(self, path):
        self.path, self.pos = path, 0

    def new_lines(self):
        deadline = time.monotonic() + 2
        lines = []
        while True:
            try:
                with open(self.path) as fh:
                    fh.seek(self.pos)
                    text = fh.read()
            except FileNotFoundError:
                text = ""
            # nginx writes a line as a request ends; give a last answer time to land.
            if text.endswith("\n") or not text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.pos += len(text.encode())
        for ln in text.splitlines():
            m = LINE_RE.match(ln)
            if not m or m.group(4).startswith("/_"):
                continue
            rng = re.fullmatch(r"bytes=(\d+)-(\d+)", m.group(3))
            lines.append({"status": int(m.group(1)), "sent": int(m.group(2)),
                          "range": (int(rng.group(1)), int(rng.group(2)) + 1) if rng else None,
                          "raw": ln})
        return lines


def post_batch(d, url, keys, truth, where):
    doc = {"url": url, "path": "/data", "keys": [str(k) for k in keys]}
    st, _h, body = d.post_chunks(doc)
    if not check(st == 200, "%s: status %d %r" % (where, st, body[:200])):
        return
    frames = h5peers.parse_frames(body)
    wrong = [k for k in keys
             if frames.get(str(k), ({}, b""))[0].get("status") != 200
             or frames[str(k)][1] != truth[k][1]]
    check(not wrong, "%s: chunks %s differ from h5py's read_direct_chunk" % (where, wrong))


def concurrent_batches(d, nginx, root, path, alog):
    """Eight batches of overlapping keys at once on a cold copy: no byte crosses twice."""
    shutil.copyfile(path, os.path.join(root, "copy.h5"))
    url = nginx.url("copy.h5")
    st, _h, _b = d.get("/v1/meta", url=url, path="/data")
    check(st == 200, "/v1/meta of the copy: %d" % st)
    alog.new_lines()
    keysets = [list(range(16 + i, 64, 3)) for i in range(3)] + \
        [list(range(20 + 2 * i, 50, 2)) for i in range(5)]
    truth = chunk_truth(path, sorted(set(k for ks in keysets for k in ks)))
    threads = [threading.Thread(target=post_batch, args=(d, url, ks, truth, "batch %d" % i))
               for i, ks in enumerate(keysets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BUDGET_S)
    lines = alog.new_lines()
    spans = sorted(x["range"] for x in lines if x["range"])
    twice = [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
    wanted = sum(len(v[1]) for v in truth.values())
    sent = sum(x["sent"] for x in lines)
    log("%d concurrent overlapping batches: %d origin requests, %d bytes for %d distinct chunk "
        "bytes" % (len(keysets), len(lines), sent, wanted))
    check(not twice, "bytes fetched twice: %s" % twice[:5])
    check(sent <= 1.1 * wanted, "%d bytes sent for %d wanted" % (sent, wanted))


def stats(d):
    st, _h, body = d.get("/v1/stats")
    return json.loads(body) if st == 200 else {}


def run(tmp):
    binary = os.environ.get("H5CHUNKD_BIN") or "h5chunkd"
    nginx_bin = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    path = os.path.join(root, "scattered.h5")
    write_file(path)
    truth = chunk_truth(path, SCATTERED + ADJACENT + [SINGLE])
    access = os.path.join(tmp, "access.log")
    nginx = h5peers.Nginx(nginx_bin, root, os.path.join(tmp, "nginx"), access_log=access)
    nginx.start()
    conf = os.path.join(tmp, "h5chunkd.conf")
    with open(conf, "w") as fh:
        fh.write("block_size = 256K\ncoalesce_max = 512K\nrevalidate_s = 3600\n"
                 "exact_ranges = true\n")
    d = h5peers.Daemon(binary, os.path.join(tmp, "cache"), os.path.join(tmp, "daemon.log"),
                       ["--config", conf])
    d.start()
    url = nginx.url("scattered.h5")
    alog = AccessLog(access)
    started = time.monotonic()

    st, _h, body = d.get("/v1/meta", url=url, path="/data")
    check(st == 200, "/v1/meta: %d %r" % (st, body[:200]))
    opened = alog.new_lines()
    log("open + describe: %d origin requests, %d bytes"
        % (len(opened), sum(x["sent"] for x in opened)))

    # ---- a cold scattered batch: exact ranges on the link
    post_batch(d, url, SCATTERED, truth, "cold scattered batch")
    lines = alog.new_lines()
    wanted = [(truth[k][0], truth[k][0] + len(truth[k][1])) for k in SCATTERED]
    want_bytes = sum(b - a for a, b in wanted)
    data = [x for x in lines
            if x["range"] and any(a < x["range"][1] and x["range"][0] < b for a, b in wanted)]
    other = [x for x in lines if x not in data]
    check(all(x["range"] and x["status"] == 206 for x in lines),
          "requests that are not 206 range requests: %s" % [x["raw"] for x in lines
                                                            if x["status"] != 206])
    sent = sum(x["sent"] for x in data)
    log("cold scattered batch: %d chunks, %d bytes wanted; %d data requests, %d bytes sent "
        "(%.3fx); %d other requests (index), %d bytes"
        % (len(SCATTERED), want_bytes, len(data), sent, sent / want_bytes, len(other),
           sum(x["sent"] for x in other)))
    check(sent >= want_bytes, "the data requests sent %d bytes, fewer than the %d wanted"
          % (sent, want_bytes))
    check(sent <= 1.1 * want_bytes,
          "the data requests sent %d bytes for %d wanted (%.2fx, at most 1.1x): %s"
          % (sent, want_bytes, sent / want_bytes, [x["raw"] for x in data][:8]))

    # ---- the same batch warm: nothing upstream
    post_batch(d, url, SCATTERED, truth, "warm scattered batch")
    again = alog.new_lines()
    check(not again, "the warm batch made %d origin requests: %s"
          % (len(again), [x["raw"] for x in again][:5]))

    # ---- adjacent chunks: merged in the cache to whole blocks, warm with no request
    post_batch(d, url, ADJACENT, truth, "cold adjacent batch")
    cold_adj = alog.new_lines()
    adj_want = sum(len(truth[k][1]) for k in ADJACENT)
    adj_sent = sum(x["sent"] for x in cold_adj)
    log("cold adjacent batch: %d requests, %d bytes for %d wanted"
        % (len(cold_adj), adj_sent, adj_want))
    check(adj_sent <= 1.1 * adj_want, "adjacent batch: %d bytes for %d wanted"
          % (adj_sent, adj_want))
    post_batch(d, url, ADJACENT, truth, "warm adjacent batch")
    check(not alog.new_lines(), "the warm adjacent batch made origin requests")

    # ---- a whole-block reader over partially cached blocks gets the file's bytes
    lo = truth[SCATTERED[1]][0] - 1000
    hi = truth[SCATTERED[2]][0] + 1000
    st, _h, body = d.request("GET", "/v1/file?url=" + h5peers.urllib.parse.quote(url, safe=""),
                             headers={"Range": "bytes=%d-%d" % (lo, hi - 1)})
    with open(path, "rb") as fh:
        fh.seek(lo)
        expect = fh.read(hi - lo)
    check(st == 206 and body == expect,
          "/v1/file over partial blocks: status %d, %d bytes, equal %s"
          % (st, len(body), body == expect))
    mirror = alog.new_lines()
    log("/v1/file read of %d bytes across partial blocks: %d origin requests, %d bytes"
        % (hi - lo, len(mirror), sum(x["sent"] for x in mirror)))
    st, _h, body = d.request("GET", "/v1/file?url=" + h5peers.urllib.parse.quote(url, safe=""),
                             headers={"Range": "bytes=%d-%d" % (lo, hi - 1)})
    check(st == 206 and body == expect, "/v1/file again: status %d" % st)
    check(not alog.new_lines(), "the repeated /v1/file read made origin requests")

    # ---- one chunk alone (GET /v1/chunk): its bytes only
    k = SINGLE
    st, _h, body = d.get("/v1/chunk", url=url, path="/data", key=str(k))
    check(st == 200 and body == truth[k][1], "/v1/chunk %d: status %d, equal %s"
          % (k, st, body == truth[k][1]))
    one = alog.new_lines()
    one_sent = sum(x["sent"] for x in one)
    log("GET /v1/chunk cold: %d requests, %d bytes for %d" % (len(one), one_sent, len(body)))
    check(one_sent <= 1.1 * len(truth[k][1]), "/v1/chunk sent %d bytes for a chunk of %d"
          % (one_sent, len(truth[k][1])))

    concurrent_batches(d, nginx, root, path, alog)

    s = stats(d)
    check(s.get("corrupt_blocks", 0) == 0, "corrupt_blocks %s" % s.get("corrupt_blocks"))
    check(s.get("cache_write_errors", 0) == 0,
          "cache_write_errors %s" % s.get("cache_write_errors"))
    check(time.monotonic() - started < BUDGET_S, "took more than %d s" % BUDGET_S)
    SUITE.daemon_clean(d)


def main():
    return SUITE.main(run)


if __name__ == "__main__":
    sys.exit(main())
