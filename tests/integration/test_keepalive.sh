#!/bin/bash
# test_keepalive.sh - keep-alive on /v1/file.  Raw sockets: HEAD, ranged
# GET and whole-file GET on one connection (sequential and pipelined), each
# answered within 5 s; the whole-file answer says Connection: close and
# ends the connection.  aiohttp (what fsspec uses): a GET whose body is
# left unread, then HEAD, then ranged GET, each within 5 s - the sequence
# fsspec.open runs on a URL with a '?', which stalled for the client's
# whole timeout under Debian 12's aiohttp 3.8 (aio-libs/aiohttp#10169)
# while whole-file answers kept their connection alive; then fsspec.open
# itself.  Cold and warm cache; a few seconds.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/www"
# Just over aiohttp's 128 KiB read high-water mark: the sizes that stalled.
for i in 0 1 2 3 4 5 6 7; do
    make_file "$T/www/f$i.bin" $((147176 + i * 2000)) "keepalive-$i"
done
make_file "$T/www/big.bin" $((3 * 1024 * 1024 + 7)) keepalive-big
start_nginx "$T/www"
start_daemon

cat >"$T/keepalive.py" <<'PY'
import asyncio, socket, sys, time, urllib.parse

port, origin, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
STEP_TIMEOUT = 5


def target(name):
    return "/v1/file?url=" + urllib.parse.quote(origin + "/" + name, safe="")


def request(method, name, rng=None):
    extra = "Range: bytes=%s\r\n" % rng if rng else ""
    return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: */*\r\n"
            "Accept-Encoding: gzip, deflate\r\n%s\r\n" % (method, target(name), port, extra)).encode()


class Conn:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        self.buf = b""

    def recv(self, what):
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            sys.exit("FAIL: no answer to %s within %d s" % (what, STEP_TIMEOUT))
        if not data:
            sys.exit("FAIL: connection closed during %s" % what)
        self.buf += data

    def response(self, method, what):
        while b"\r\n\r\n" not in self.buf:
            self.recv(what)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        length = 0 if method == "HEAD" else int(fields.get("content-length", "-1"))
        if length < 0:
            sys.exit("FAIL: %s: no Content-Length" % what)
        while len(self.buf) < length:
            self.recv(what)
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, fields, body


def expect(what, got, want):
    if got != want:
        sys.exit("FAIL: %s: got %r, want %r" % (what, got, want))


def check_sequence(name, pipelined):
    conn = Conn()
    data = open(root + "/" + name, "rb").read()
    steps = [("HEAD", None, 200, b""), ("GET", "10-99", 206, data[10:100]),
             ("GET", None, 200, data)]
    if pipelined:
        conn.sock.sendall(b"".join(request(m, name, r) for m, r, _, _ in steps))
    for method, rng, status, body in steps:
        what = "%s %s range=%s pipelined=%s" % (method, name, rng, pipelined)
        if not pipelined:
            conn.sock.sendall(request(method, name, rng))
        t0 = time.monotonic()
        st, fields, got = conn.response(method, what)
        expect(what + " status", st, status)
        expect(what + " body", got, body)
        expect(what + " Content-Length", int(fields["content-length"]),
               len(data) if method == "HEAD" else len(body))
        expect(what + " Connection", fields.get("connection", "").lower(),
               "close" if rng is None and method == "GET" else "")
        print("ok %s in %.3f s" % (what, time.monotonic() - t0))
    # The whole-file answer ended the connection.
    try:
        rest = conn.sock.recv(1)
    except socket.timeout:
        sys.exit("FAIL: %s: connection still open after a whole-file answer" % name)
    expect(name + " bytes after the whole-file answer", rest, b"")


for name in ("f0.bin", "big.bin"):
    for pipelined in (False, True):
        check_sequence(name, pipelined)


async def with_aiohttp():
    import aiohttp
    base = "http://127.0.0.1:%d" % port
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for rnd in range(3):
            for i in range(8):
                name = "f%d.bin" % i
                data = open(root + "/" + name, "rb").read()
                url = base + target(name)
                steps = (("GET", {}, 200, None),  # fsspec's exists(): body never read
                         ("HEAD", {"Accept-Encoding": "identity"}, 200, b""),
                         ("GET", {"Range": "bytes=0-%d" % (len(data) - 1)}, 206, data))
                for method, hdrs, status, body in steps:
                    what = "aiohttp round %d %s %s %s" % (rnd, method, name, hdrs)
                    try:
                        async with session.request(method, url, headers=hdrs) as r:
                            expect(what + " status", r.status, status)
                            if body is not None:
                                expect(what + " body", await r.read(), body)
                    except asyncio.TimeoutError:
                        sys.exit("FAIL: %s: no answer within %d s" % (what, STEP_TIMEOUT))
                print("ok", what)


def with_fsspec():
    import aiohttp, fsspec
    kw = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=STEP_TIMEOUT)}}
    for i in range(8):
        name = "f%d.bin" % i
        data = open(root + "/" + name, "rb").read()
        t0 = time.monotonic()
        # fsspec.open globs a URL with a '?': exists() first, then HEAD and ranges.
        with fsspec.open("http://127.0.0.1:%d%s" % (port, target(name)), "rb", **kw) as f:
            expect("fsspec " + name, f.read(), data)
        took = time.monotonic() - t0
        if took > STEP_TIMEOUT * 0.75:
            sys.exit("FAIL: fsspec %s took %.1f s: a request waited out its timeout" % (name, took))
        print("ok fsspec %s in %.3f s" % (name, took))


asyncio.run(with_aiohttp())
with_fsspec()
print("PASS")
PY

"$PYTHON_H5" -c "import aiohttp, fsspec" 2>/dev/null || skip "aiohttp or fsspec missing for $PYTHON_H5 (python3-aiohttp, python3-fsspec)"
for pass in cold warm; do
    log "$pass cache"
    "$PYTHON_H5" "$T/keepalive.py" "$DAEMON_PORT" "$ORIGIN_URL" "$T/www" >"$T/keepalive.$pass.out" 2>&1 ||
        fail "$pass: $(tail -n 5 "$T/keepalive.$pass.out")"
    assert_contains "$T/keepalive.$pass.out" PASS "$pass: every step answered"
done
grep -c '^ok' "$T/keepalive.warm.out" | sed "s/^/$TEST_NAME: steps answered per pass: /"
finish_test
