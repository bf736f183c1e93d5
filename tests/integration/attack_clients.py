#!/usr/bin/env python3
"""attack_clients.py - hostile HTTP clients for test_attacks_clients.sh.

Each subcommand runs one attack against a daemon on loopback and prints
one JSON object with what it observed; the shell test judges it.  Every
loop is bounded in count and time, every socket has a timeout, and every
socket is closed before the command returns.

  bodies  HOSTPORT KIND N URL PATH   N concurrent POST /v1/chunks bodies of
                                     ~15.8 MB (KIND: too_many_keys, padded_valid,
                                     giant_string)
  crowd   HOSTPORT MODE N SECS PROBE N sockets that are idle (MODE idle) or
                                     send a header line every 2 s (slowloris)
                                     while PROBE (a path) is read every 0.5 s;
                                     also reports how many were closed by then
  raw     HOSTPORT NAME              one malformed request (see RAW below);
                                     prints the status line(s) answered
"""
import concurrent.futures
import json
import re
import socket
import sys
import time

BODY_BYTES = 15_800_000
RECV_TIMEOUT = 20


def connect(hostport, timeout=RECV_TIMEOUT):
    host, port = hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_response_head(s, limit=1 << 20):
    """Reads until the end of the first response head; returns (status, head, rest)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first.split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, head.decode("latin-1"), rest


def read_all(s, limit=64 << 20):
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(1 << 20)
        except (socket.timeout, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


# ---- bodies ----

def make_body(kind, url, path):
    head = json.dumps({"url": url, "path": path})[:-1].encode() + b', "keys": ['
    tail = b"]}"
    room = BODY_BYTES - len(head) - len(tail)
    if kind == "too_many_keys":
        # two million short keys: the parser must stop at max_keys
        item = b'"0.0",'
        body = head + item * (room // len(item))
        return body.rstrip(b",") + tail
    if kind == "padded_valid":
        # 100,000 valid keys (max_keys), padded with spaces to the size limit
        n = 100_000
        pad = room // n - 6
        item = b'"0.0",' + b" " * pad
        body = head + item * n
        return body.rstrip(b", ") + tail
    if kind == "giant_string":
        return head + b'"' + b"7" * (room - 2) + b'"' + tail
    raise SystemExit("unknown body kind " + kind)


def post_body(hostport, body):
    s = connect(hostport, timeout=60)
    try:
        s.sendall(b"POST /v1/chunks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may answer and close before the body is all sent
        status, head, rest = read_response_head(s)
        rest += read_all(s, limit=1 << 20)
        return status, rest[:200].decode("latin-1", "replace")
    finally:
        s.close()


def cmd_bodies(hostport, kind, n, url, path):
    body = make_body(kind, url, path)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda _: post_body(hostport, body), range(n)))
    statuses = sorted(r[0] for r in results)
    return {"kind": kind, "n": n, "body_bytes": len(body), "statuses": statuses,
            "first_body": results[0][1], "seconds": round(time.monotonic() - t0, 2)}


# ---- crowds of idle or slow connections ----

def probe(hostport, path):
    t0 = time.monotonic()
    try:
        s = connect(hostport, timeout=5)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                       % path).encode())
            status, _, _ = read_response_head(s)
            read_all(s)
        finally:
            s.close()
    except OSError:
        status = 0
    return status, time.monotonic() - t0


def still_open(s):
    """True while the daemon has not closed s (no EOF or reset pending)."""
    s.setblocking(False)
    try:
        data = s.recv(4096)
        return data != b"" and not data.startswith(b"HTTP/")
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def cmd_crowd(hostport, mode, n, secs, path):
    socks = []
    refused = 0
    for _ in range(n):
        try:
            s = connect(hostport, timeout=5)
            if mode == "slowloris":
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        except OSError:
            refused += 1
    probes = []
    start = time.monotonic()
    next_line = start + 2
    line = 0
    while time.monotonic() - start < secs:
        probes.append(probe(hostport, path))
        if mode == "slowloris" and time.monotonic() >= next_line:
            line += 1
            for s in socks:
                try:
                    s.sendall(b"X-Slow-%d: a\r\n" % line)
                except OSError:
                    pass
            next_line += 2
        time.sleep(0.5)
    open_now = sum(1 for s in socks if still_open(s))
    for s in socks:
        s.close()
    lat = [p[1] for p in probes]
    return {"mode": mode, "opened": len(socks), "refused": refused,
            "probes": len(probes), "probes_ok": sum(1 for p in probes if p[0] == 200),
            "max_latency_s": round(max(lat), 3) if lat else None,
            "median_latency_s": round(sorted(lat)[len(lat) // 2], 3) if lat else None,
            "still_open": open_now, "seconds": round(time.monotonic() - start, 1)}


# ---- single malformed requests ----

LONG = "a" * 200_000
RAW = {
    "no_host_11": b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    "no_host_10": b"GET /v1/health HTTP/1.0\r\n\r\n",
    "two_hosts": b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
                 b"Connection: close\r\n\r\n",
    "nul_host": b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\x00.evil.example\r\n"
                b"Connection: close\r\n\r\n",
    "nul_host_foreign": b"GET /v1/health HTTP/1.1\r\nHost: evil.example\x00127.0.0.1\r\n"
                        b"Connection: close\r\n\r\n",
    "space_host": b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1 evil\r\nConnection: close\r\n\r\n",
    "foreign_host": b"GET /v1/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    "good_host": b"GET /v1/health HTTP/1.1\r\nHost: localhost:1234\r\nConnection: close\r\n\r\n",
    # A body framed two ways, then a smuggled request: must not be answered as a second request.
    "cl_te": b"POST /v1/prefetch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/stats HTTP/1.1\r\n"
             b"Host: 127.0.0.1\r\n\r\n",
    "two_cl": b"POST /v1/prefetch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
              b"Content-Length: 40\r\n\r\n{}GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "te_gzip": b"POST /v1/prefetch HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n"
               b"Connection: close\r\n\r\n",
    "pipelined": b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                 b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "huge_header": ("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n"
                    "Connection: close\r\n\r\n" % LONG).encode(),
    "many_headers": ("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n"
                     % "".join("X-H%d: v\r\n" % i for i in range(20000))).encode(),
    "huge_url": ("GET /v1/health?%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                 % LONG).encode(),
    "traversal_dots": b"GET /v1/../v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "traversal_encoded": b"GET /v1/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n",
    "traversal_zarr": b"GET /zarr/v2/..%2f..%2f..%2fetc%2fpasswd/.zarray HTTP/1.1\r\n"
                      b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "traversal_double_slash": b"GET //etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Connection: close\r\n\r\n",
    "chunked_huge_size": b"POST /v1/chunks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
}


def cmd_raw(hostport, name, extra):
    req = RAW[name] if name in RAW else None
    if name == "range_overflow":
        req = ("GET /v1/file?url=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Range: bytes=18446744073709551615-18446744073709551616\r\n"
               "Connection: close\r\n\r\n" % extra).encode()
    if name == "range_many":
        req = ("GET /v1/file?url=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=%s\r\n"
               "Connection: close\r\n\r\n" % (extra, ",".join("%d-%d" % (i, i)
                                                                for i in range(3000)))).encode()
    if name == "nul_in_url":
        req = ("GET /v1/file?url=%s%%00.evil HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Connection: close\r\n\r\n" % extra).encode()
    if req is None:
        raise SystemExit("unknown raw request " + name)
    s = connect(hostport, timeout=10)
    try:
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = read_all(s, limit=4 << 20)
    finally:
        s.close()
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]
    codes = []
    for part in data.split(b'"code":"')[1:]:
        codes.append(part.split(b'"', 1)[0].decode("latin-1"))
    return {"name": name, "statuses": statuses, "codes": codes,
            "leaked_passwd": b"root:" in data, "bytes": len(data)}


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    cmd, hostport = argv[1], argv[2]
    if cmd == "bodies":
        out = cmd_bodies(hostport, argv[3], int(argv[4]), argv[5], argv[6])
    elif cmd == "crowd":
        out = cmd_crowd(hostport, argv[3], int(argv[4]), float(argv[5]), argv[6])
    elif cmd == "raw":
        out = cmd_raw(hostport, argv[3], argv[4] if len(argv) > 4 else "")
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
