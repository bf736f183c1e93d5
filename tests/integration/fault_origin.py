#!/usr/bin/env python3
"""fault_origin.py - a fault-injecting HTTP/1.1 origin for h5chunkd tests.

Serves the files under --root on 127.0.0.1 with single byte-range support
(206 + Content-Range, 416 with "bytes */N", ETag from mtime and size,
Last-Modified, Accept-Ranges, keep-alive, HEAD).  Standard library only.

Faults are switched on at run time with POST /_control and a JSON object:

  {"mode": "status", "status": 503, "count": 2}     next 2 requests get 503
  {"mode": "retry_after", "status": 429, "seconds": 1, "count": 1}
  {"mode": "reset", "count": 1}          RST mid-body ("when": "before": no response)
  {"mode": "truncate", "count": 1}       promise N bytes, send N/2, close
  {"mode": "wrong_range", "count": 1}    Content-Range start shifted by one
  {"mode": "short_body", "count": 1}     Content-Range as asked, a well-framed half body
  {"mode": "ignore_range"}               200 with the whole body
  {"mode": "delay", "ms": 300, "count": 4}
  {"mode": "redirect", "location": "http://...", "status": 302, "count": 1}
  {"mode": "etag", "value": "\\"v2\\""}  serve this ETag from now on
  {"mode": "reset_all"}                  clear every fault and the ETag override
  {"mode": "reset_stats"}                zero the counters of /_stats

A fault without "count" lasts until reset_all; "path" (e.g. "/a.bin")
limits a fault to one file.  Faults apply in the order they were posted,
one per request.  GET /_stats returns {"requests": n, "range_requests":
[the Range header of the last 100 data requests, null when absent]};
control and stats requests are not counted.

Usage: fault_origin.py --port 0 --root DIR [--port-file FILE] [--verbose]
"""

import argparse
import email.utils
import http.server
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

MAX_CONTROL_BODY = 64 * 1024
MAX_RANGE_LOG = 100
SEND_CHUNK = 256 * 1024
MODES = {"status", "retry_after", "reset", "truncate", "wrong_range", "short_body", "ignore_range",
         "delay", "redirect", "etag", "reset_all", "reset_stats"}


class State:
    """Faults and counters shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.etag = None
        self.requests = 0
        self.ranges = []

    def control(self, spec):
        mode = spec.get("mode")
        if mode not in MODES:
            raise ValueError("unknown mode %r" % (mode,))
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError("count must be a non-negative integer")
        with self.lock:
            if mode == "reset_all":
                self.faults = []
                self.etag = None
            elif mode == "reset_stats":
                self.requests = 0
                self.ranges = []
            elif mode == "etag":
                value = spec.get("value")
                if not isinstance(value, str):
                    raise ValueError("etag needs a string value")
                self.etag = value
            elif count != 0:
                self.faults.append(dict(spec))

    def take(self, path, range_header):
        """Counts a data request and returns the fault it gets, or None."""
        with self.lock:
            self.requests += 1
            self.ranges.append(range_header)
            del self.ranges[:-MAX_RANGE_LOG]
            for fault in self.faults:
                if fault.get("path") not in (None, path):
                    continue
                if fault.get("count") is not None:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                return dict(fault)
            return None

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "range_requests": list(self.ranges)}


def parse_range(header, size):
    """Returns (start, end) inclusive, "unsatisfiable", or None to ignore the header."""
    if header is None:
        return None
    header = header.strip()
    if not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    first, last = first.strip(), last.strip()
    if not sep or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last or int(last) == 0 or size == 0:
            return "unsatisfiable"
        n = min(int(last), size)
        return (size - n, size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size - 1))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_origin/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fault_origin: " + (fmt % args) + "\n")

    # ---- helpers ----

    def send_simple(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_json(self, status, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_simple(status, body, {"Content-Type": "application/json"})

    def hard_reset(self):
        """Closes the connection with a TCP RST."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def resolve(self, path):
        root = self.server.root
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if full != root and not full.startswith(root + os.sep):
            return None
        return full if os.path.isfile(full) else None

    # ---- control plane ----

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/_control":
            self.send_simple(405, b"method not allowed\n")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0 or length > MAX_CONTROL_BODY:
                raise ValueError("bad Content-Length")
            spec = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            self.server.state.control(spec)
        except ValueError as exc:
            self.send_json(400, {"error": str(exc)})
            return
        self.send_json(200, {"ok": True})

    # ---- data plane ----

    def do_HEAD(self):
        self.serve(head=True)

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path == "/_stats":
            self.send_json(200, self.server.state.stats())
            return
        self.serve(head=False)

    def serve(self, head):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        fault = self.server.state.take(path, range_header)
        mode = fault["mode"] if fault else None
        if mode == "delay":
            time.sleep(fault.get("ms", 0) / 1000.0)
        elif mode == "reset" and fault.get("when") == "before":
            self.hard_reset()
            return
        elif mode in ("status", "retry_after"):
            headers = {"Content-Type": "text/plain"}
            if mode == "retry_after":
                headers["Retry-After"] = str(fault.get("seconds", 1))
            status = int(fault.get("status", 503 if mode == "status" else 429))
            self.send_simple(status, b"injected fault\n", headers, head)
            return
        elif mode == "redirect":
            headers = {"Location": fault.get("location", "/")}
            self.send_simple(int(fault.get("status", 302)), b"", headers, head)
            return

        full = self.resolve(path)
        if full is None:
            self.send_simple(404, b"not found\n", {"Content-Type": "text/plain"}, head)
            return
        st = os.stat(full)
        size = st.st_size
        etag = self.server.state.etag or '"%x-%x"' % (st.st_mtime_ns, size)
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
            "Content-Type": "application/octet-stream",
        }
        rng = None if mode == "ignore_range" else parse_range(range_header, size)
        if rng == "unsatisfiable":
            headers["Content-Range"] = "bytes */%d" % size
            self.send_simple(416, b"", headers, head)
            return
        if rng is None:
            status, start, end = 200, 0, size - 1
        else:
            status, (start, end) = 206, rng
            first, last = start, end
            if mode == "wrong_range":
                first, last = start + 1, end + 1
            headers["Content-Range"] = "bytes %d-%d/%d" % (first, last, max(size, last + 1))
        self.send_body(full, status, start, end - start + 1, headers, head, mode)

    def send_body(self, full, status, start, length, headers, head, mode):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        limit = length
        if mode == "short_body":
            length = limit = length // 2
        elif mode in ("reset", "truncate"):
            limit = length // 2
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        with open(full, "rb") as f:
            f.seek(start)
            left = limit
            while left > 0:
                data = f.read(min(left, SEND_CHUNK))
                if not data:
                    break
                self.wfile.write(data)
                left -= len(data)
        if mode == "reset":
            self.hard_reset()
        elif mode == "truncate":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog of 5 drops the SYNs of a burst of concurrent
    # clients on a loaded machine, and each retransmit costs the client seconds.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Resets and truncations make broken pipes routine; stay quiet unless asked.
        if self.verbose:
            super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fault-injecting HTTP/1.1 origin for tests.")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument("--root", required=True, help="directory whose files are served")
    parser.add_argument("--port-file", help="write the bound port to this file")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.error("--root %s is not a directory" % args.root)

    server = Server(("127.0.0.1", args.port), Handler)
    server.root = os.path.realpath(args.root)
    server.state = State()
    server.verbose = args.verbose
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    else:
        print(port, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
