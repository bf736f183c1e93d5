#!/usr/bin/env python3
"""hostile_origin.py - an HTTP/1.1 origin that lies, for test_attacks_origin.sh.

Listens on three loopback addresses, each on its own free port:

  A  127.0.0.2  the origin the daemon is configured to trust
  B  127.0.0.3  a host the daemon's address policy allows but its URL
                policy (allow_prefixes) does not: redirects to it must be
                refused before any request reaches it
  F  127.0.0.1  a host the URL policy allows but the address policy
                forbids (loopback): no connection may ever be opened to it

Every listener serves the same routes; each counts its connections and
requests per path.  Files are 1 MiB of a seeded pattern (byte i of version
v is (i * 7 + 13 * v) % 251), ETag "v<version>".

  /ok/NAME            a well-behaved file (206 + Content-Range, ETag "v0")
  /secret/NAME        the same, under the daemon's deny_prefixes
  /redir/to?u=URL     302 to URL (percent-encoded), Location verbatim
  /chain/N            302 to /chain/N-1 ... /chain/0 = /ok/chain
  /loop               302 to itself
  /gzip-once/NAME     the first answer has Content-Encoding: gzip (a gzip body), then /ok
  /gzip-late          correct at offset 0; any other range answered gzip-encoded
  /te-gzip            Transfer-Encoding: gzip, chunked (a gzip body, chunked)
  /endless500         500 with an endless body (bounded here: 512 MiB or 30 s)
  /longer-chunked     206 whose chunked body runs 64 KiB past its Content-Range
  /longer-cl          206 with Content-Length larger than its Content-Range
  /bad-total          206 whose Content-Range total does not fit in 64 bits
  /max-total          206 whose Content-Range total is 2^64-1
  /dropetag           offset 0 as version 0 with ETag "v0"; other ranges version 1, no ETag
  /etag-to-lm         offset 0 with ETag "v0"; other ranges only Last-Modified

GET /_stats (on A) returns {"connections": {"A": n, ...}, "requests":
{"A /path": n, ...}, "bytes_500": n}; POST /_reset zeroes them.  Neither
is counted.

Usage: hostile_origin.py --port-file FILE   (writes {"A": port, "B": ..., "F": ...})
"""

import argparse
import gzip
import http.server
import json
import os
import socketserver
import sys
import threading
import time
import urllib.parse

FILE_SIZE = 1024 * 1024
ENDLESS_MAX_BYTES = 512 * 1024 * 1024
ENDLESS_MAX_SECONDS = 30
LISTENERS = {"A": "127.0.0.2", "B": "127.0.0.3", "F": "127.0.0.1"}
LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"


def content(version):
    """Byte i is (i * 7 + 13 * version) % 251: a pattern with period 251."""
    period = bytes((i * 7 + 13 * version) % 251 for i in range(251))
    return (period * (FILE_SIZE // 251 + 1))[:FILE_SIZE]


VERSIONS = [content(0), content(1)]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.connections = {k: 0 for k in LISTENERS}
            self.requests = {}
            self.bytes_500 = 0
            self.once = set()

    def snapshot(self):
        with self.lock:
            return {"connections": dict(self.connections), "requests": dict(self.requests),
                    "bytes_500": self.bytes_500}


STATS = Stats()


def parse_range(header):
    """(start, end) inclusive for 'bytes=A-B' or 'bytes=A-', clipped; None otherwise."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[6:]
    if "," in spec or "-" not in spec:
        return None
    a, b = spec.split("-", 1)
    if not a.isdigit():
        return None
    start = int(a)
    end = int(b) if b.isdigit() else FILE_SIZE - 1
    if start >= FILE_SIZE:
        return (start, None)
    return (start, min(end, FILE_SIZE - 1))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hostile"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def count(self, path):
        with STATS.lock:
            key = "%s %s" % (self.server.name, path)
            STATS.requests[key] = STATS.requests.get(key, 0) + 1

    def send(self, status, headers, body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > 65536:
            self.send(413, [])
            return
        self.rfile.read(length)
        if self.path == "/_reset":
            STATS.reset()
            self.send(200, [("Content-Type", "application/json")], b"{}")
        else:
            self.send(404, [])

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path == "/_stats":
            self.send(200, [("Content-Type", "application/json")],
                      json.dumps(STATS.snapshot()).encode())
            return
        self.count(path)
        rng = parse_range(self.headers.get("Range"))
        if path.startswith("/redir/to"):
            target = urllib.parse.parse_qs(url.query).get("u", [""])[0]
            self.send(302, [("Location", target)], b"moved")
        elif path.startswith("/chain/"):
            n = int(path[7:]) if path[7:].isdigit() else 0
            self.send(302, [("Location", "/chain/%d" % (n - 1) if n > 0 else "/ok/chain")])
        elif path == "/loop":
            self.send(302, [("Location", "/loop")])
        elif path == "/endless500":
            self.endless_500()
        elif path.startswith("/gzip-once/"):
            with STATS.lock:
                first = path not in STATS.once
                STATS.once.add(path)
            self.serve_file(rng, 0, "gzip" if first else None)
        elif path == "/gzip-late":
            self.serve_file(rng, 0, "gzip" if rng and rng[0] != 0 else None)
        elif path == "/te-gzip":
            self.serve_te_gzip(rng)
        elif path in ("/longer-chunked", "/longer-cl", "/bad-total", "/max-total"):
            self.serve_lying(path, rng)
        elif path == "/dropetag":
            late = rng is not None and rng[0] != 0
            self.serve_file(rng, 1 if late else 0, None, etag=not late)
        elif path == "/etag-to-lm":
            self.serve_file(rng, 0, None, etag=rng is None or rng[0] == 0)
        elif path.startswith("/ok/") or path.startswith("/secret/"):
            self.serve_file(rng, 0, None)
        else:
            self.send(404, [], b"no such route")

    def file_headers(self, version, etag):
        h = [("Accept-Ranges", "bytes"), ("Last-Modified", LAST_MODIFIED)]
        if etag:
            h.append(("ETag", '"v%d"' % version))
        return h

    def serve_file(self, rng, version, coding, etag=True):
        data = VERSIONS[version]
        headers = self.file_headers(version, etag)
        if rng is None:
            status, body = 200, data
        elif rng[1] is None:
            self.send(416, [("Content-Range", "bytes */%d" % FILE_SIZE)])
            return
        else:
            status, body = 206, data[rng[0]:rng[1] + 1]
            headers.append(("Content-Range", "bytes %d-%d/%d" % (rng[0], rng[1], FILE_SIZE)))
        if coding == "gzip":
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        self.send(status, headers, body)

    def serve_te_gzip(self, rng):
        start, end = rng if rng and rng[1] is not None else (0, FILE_SIZE - 1)
        body = gzip.compress(VERSIONS[0][start:end + 1])
        self.send_response(206)
        for k, v in self.file_headers(0, True):
            self.send_header(k, v)
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, FILE_SIZE))
        self.send_header("Transfer-Encoding", "gzip, chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))

    def serve_lying(self, path, rng):
        start, end = rng if rng and rng[1] is not None else (0, FILE_SIZE - 1)
        body = VERSIONS[0][start:end + 1]
        self.send_response(206)
        for k, v in self.file_headers(0, True):
            self.send_header(k, v)
        total = {"/bad-total": "99999999999999999999999",
                 "/max-total": "18446744073709551615"}.get(path, str(FILE_SIZE))
        self.send_header("Content-Range", "bytes %d-%d/%s" % (start, end, total))
        extra = b"X" * 65536
        if path == "/longer-chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            payload = body + extra
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
            return
        if path == "/longer-cl":
            self.send_header("Content-Length", str(len(body) + len(extra)))
            self.end_headers()
            self.wfile.write(body + extra)
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def endless_500(self):
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"E" * 65536
        sent, deadline = 0, time.monotonic() + ENDLESS_MAX_SECONDS
        try:
            while sent < ENDLESS_MAX_BYTES and time.monotonic() < deadline:
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        with STATS.lock:
            STATS.bytes_500 += sent


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # resets by the daemon (it cuts bodies short on purpose) are expected

    def verify_request(self, request, client_address):
        with STATS.lock:
            STATS.connections[self.name] += 1
        return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args(argv)
    ports = {}
    servers = []
    for name, addr in LISTENERS.items():
        srv = Server((addr, 0), Handler)
        srv.name = name
        ports[name] = srv.server_address[1]
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.replace(tmp, args.port_file)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
