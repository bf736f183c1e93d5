#!/usr/bin/python3
"""linkemu.py - a wide-area link in front of a local origin, for benchmarks.

A TCP proxy on loopback: every byte a client sends reaches the origin, and
every byte the origin answers reaches the client, as if they crossed one
shared long-distance link:

- latency: each direction delays every byte by RTT/2 (a delay line, so a
  request/response exchange costs one RTT, pipelined bytes are not delayed
  twice, and a long answer streams);
- connection set-up: a new connection carries nothing for one RTT (the
  TCP handshake: SYN, SYN/ACK before the first request can leave), so a
  request on a new connection costs two RTTs and on a reused one, one;
- bandwidth: each direction is one FIFO pipe of BW bytes/s shared by all
  connections (an aggregate cap, not a per-connection one).  A reader that
  has used its share waits before it reads more, so TCP flow control pushes
  back on the sender as on a real bottleneck.
- per-connection bandwidth (--conn-bw-mbs, off by default): each
  connection's answers also pass a pipe of its own of that rate, as an
  object store gives one connection 50-100 MB/s however fast the link.

Not modelled: TCP slow start, loss, jitter.  Those only make a real link
slower for every client, most of all for those that open many connections.

Usage:
  linkemu.py --listen-port 0 --origin 127.0.0.1:8080 --rtt-ms 40 --bw-mbs 100
             [--conn-bw-mbs 50] [--port-file F] [--control-port-file F]
The proxy's port is written to --port-file.  A connection to the control
port gets one JSON line of counters (connections, bytes each way) and is
closed.  SIGTERM/SIGINT stop it.
"""
import argparse
import asyncio
import json
import os
import signal
import sys

READ_SIZE = 256 * 1024  # bytes read per step; at 100 MB/s about 400 steps/s
EOF = None
BURST_BYTES = 256 * 1024
BURST_SECONDS = 0.002


class Pipe:
    """One direction of the shared link: a FIFO of `bw` bytes/s."""

    def __init__(self, bw):
        self.bw = float(bw)
        self.next_free = 0.0
        self.bytes = 0
        # A token bucket's depth: time lost to a late timer wake-up is made
        # up by letting this much through at once, or the cap would not be
        # reached.
        self.burst = max(BURST_BYTES, self.bw * BURST_SECONDS) / self.bw

    def reserve(self, loop, n):
        """Returns when the last of n bytes entered the far end of the pipe."""
        now = loop.time()
        start = max(now - self.burst, self.next_free)
        self.next_free = start + n / self.bw
        self.bytes += n
        return max(now, self.next_free)


class Link:
    def __init__(self, origin_host, origin_port, rtt, bw, conn_bw=0.0):
        self.origin = (origin_host, origin_port)
        self.rtt = rtt
        self.conn_bw = conn_bw
        self.up = Pipe(bw)  # client -> origin
        self.down = Pipe(bw)  # origin -> client
        self.connections = 0
        self.active = 0
        self.tasks = set()

    async def pump(self, reader, writer, pipe, delay_line_open, own=None):
        """Moves bytes one way: read, pay the bandwidth, deliver RTT/2 later."""
        loop = asyncio.get_running_loop()
        owd = self.rtt / 2.0
        queue = asyncio.Queue()

        async def deliver():
            while True:
                when, data = await queue.get()
                wait = when - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is EOF:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        out = asyncio.ensure_future(deliver())
        try:
            await delay_line_open
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    queue.put_nowait((loop.time() + owd, EOF))
                    break
                done = pipe.reserve(loop, len(data))
                if own is not None:  # this connection's cap, beside the link's
                    done = max(done, own.reserve(loop, len(data)))
                wait = done - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                queue.put_nowait((done + owd, data))
            await out
        except (ConnectionError, OSError):
            pass
        finally:
            if not out.done():
                out.cancel()

    async def handle(self, creader, cwriter):
        self.connections += 1
        self.active += 1
        owriter = None
        try:
            sock = cwriter.get_extra_info("socket")
            if sock is not None:
                import socket as _s
                sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
            # The handshake: nothing the client sent moves for one RTT.
            handshake = asyncio.ensure_future(asyncio.sleep(self.rtt))
            oreader, owriter = await asyncio.open_connection(*self.origin)
            osock = owriter.get_extra_info("socket")
            if osock is not None:
                import socket as _s
                osock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
            a = asyncio.ensure_future(self.pump(creader, owriter, self.up, handshake))
            own = Pipe(self.conn_bw) if self.conn_bw > 0 else None
            b = asyncio.ensure_future(self.pump(oreader, cwriter, self.down, handshake, own))
            await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)
            # One side closed: let the other finish (a server answers after
            # the client half-closes), bounded.
            await asyncio.wait([a, b], timeout=60)
            for t in (a, b):
                if not t.done():
                    t.cancel()
        except (ConnectionError, OSError):
            pass
        finally:
            self.active -= 1
            for w in (cwriter, owriter):
                if w is not None:
                    try:
                        w.close()
                    except Exception:
                        pass

    def stats(self):
        return {"connections": self.connections, "active": self.active,
                "bytes_up": self.up.bytes, "bytes_down": self.down.bytes,
                "rtt_ms": self.rtt * 1000.0, "bw_bytes_per_s": self.down.bw,
                "conn_bw_bytes_per_s": self.conn_bw}


async def serve(args):
    host, _, port = args.origin.rpartition(":")
    link = Link(host or "127.0.0.1", int(port), args.rtt_ms / 1000.0, args.bw_mbs * 1e6,
                args.conn_bw_mbs * 1e6)

    async def on_control(reader, writer):
        writer.write((json.dumps(link.stats()) + "\n").encode())
        try:
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(link.handle, "127.0.0.1", args.listen_port,
                                        backlog=1024)
    control = await asyncio.start_server(on_control, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cport = control.sockets[0].getsockname()[1]
    for path, value in ((args.port_file, port), (args.control_port_file, cport)):
        if path:
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write("%d\n" % value)
            os.replace(tmp, path)
    print("linkemu: 127.0.0.1:%d -> %s rtt %.1f ms bw %.1f MB/s control %d"
          % (port, args.origin, args.rtt_ms, args.bw_mbs, cport), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    control.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--origin", required=True, help="HOST:PORT of the origin")
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--bw-mbs", type=float, default=100.0, help="MB/s (10^6 bytes)")
    ap.add_argument("--conn-bw-mbs", type=float, default=0.0,
                    help="each connection's cap, MB/s; 0: only the shared cap")
    ap.add_argument("--port-file")
    ap.add_argument("--control-port-file")
    args = ap.parse_args()
    if args.rtt_ms < 0 or args.bw_mbs <= 0:
        ap.error("--rtt-ms must be >= 0 and --bw-mbs > 0")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
