"""transport.py - finding the daemon and talking HTTP/1.1 to it.

Owns: parsing daemon addresses (every form the daemon listens on:
http://HOST:PORT, https://HOST:PORT, HOST:PORT, [V6]:PORT, unix:/PATH),
discovering the daemon (H5CHUNKD_URL, the default Unix socket, then
127.0.0.1:7661), the bearer token (H5CHUNKD_TOKEN_FILE, then the per-user
token file), a small pool of keep-alive connections shared by threads, and
turning the daemon's JSON errors into DaemonError.  Standard library only.
"""
import http.client
import json
import os
import socket
import stat
import threading
import urllib.parse

from .errors import DaemonError, DaemonNotRunning

DEFAULT_TCP = "http://127.0.0.1:7661"
DEFAULT_UNIX = "/run/h5chunkd/h5chunkd.sock"  # h5chunkd.socket's ListenStream
DEFAULT_TIMEOUT = 300.0  # seconds of silence before a request is abandoned
MAX_TOKEN_BYTES = 1024
MAX_ERROR_BODY = 64 * 1024
MAX_IDLE_CONNECTIONS = 8
UNIX_MAX_PATH = 107


class Address:
    """Where the daemon is: an http(s) host:port or a Unix socket path."""

    def __init__(self, scheme, host=None, port=None, unix_path=None):
        self.scheme, self.host, self.port, self.unix_path = scheme, host, port, unix_path

    @property
    def base(self):
        """The http:// base URL (Unix sockets: the Host header's name)."""
        if self.unix_path is not None:
            return "http://localhost"
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (self.scheme, host, self.port)

    def __str__(self):
        if self.unix_path is not None:
            return "unix:" + self.unix_path
        return self.base

    def __repr__(self):
        return "Address(%r)" % str(self)


def parse_address(text):
    """A daemon address in any form the daemon listens on -> Address."""
    if not isinstance(text, str) or not text:
        raise ValueError("empty daemon address")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("daemon address %r contains spaces or control characters" % text)
    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):  # unix:///run/x.sock
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError("a unix: daemon address needs an absolute socket path: %r" % text)
        if len(path.encode()) > UNIX_MAX_PATH:
            raise ValueError("unix socket path longer than %d bytes" % UNIX_MAX_PATH)
        return Address("http", unix_path=path)
    scheme = "http"
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme not in ("http", "https"):
            raise ValueError("daemon address %r: only http://, https:// and unix: work" % text)
    rest = rest.rstrip("/")
    if any(c in rest for c in "?#@/"):
        raise ValueError("daemon address %r must be HOST:PORT only (no path, query or user)" % text)
    u = urllib.parse.urlsplit("%s://%s" % (scheme, rest))
    try:
        port = u.port
    except ValueError:
        raise ValueError("daemon address %r has a bad port" % text) from None
    if not u.hostname:
        raise ValueError("daemon address %r has no host" % text)
    if port is None:
        port = 7661 if scheme == "http" and "://" not in text else (443 if scheme == "https" else 80)
    return Address(scheme, host=u.hostname, port=port)


def _is_usable_socket(path):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and os.access(path, os.R_OK | os.W_OK)


def discover_address(explicit=None):
    """The daemon's address: explicit, else $H5CHUNKD_URL, else the default
    Unix socket when it exists and we may use it, else 127.0.0.1:7661."""
    if explicit:
        return explicit if isinstance(explicit, Address) else parse_address(explicit)
    env = os.environ.get("H5CHUNKD_URL")
    if env:
        try:
            return parse_address(env)
        except ValueError as e:
            raise ValueError("H5CHUNKD_URL: %s" % e) from None
    if _is_usable_socket(DEFAULT_UNIX):
        return Address("http", unix_path=DEFAULT_UNIX)
    return parse_address(DEFAULT_TCP)


def read_token_file(path):
    """The token in path: one line, no blanks or control characters."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_TOKEN_BYTES + 2)
    tok = data[:-1] if data.endswith(b"\n") else data
    if len(tok) > MAX_TOKEN_BYTES:
        raise ValueError("token file %s is longer than %d bytes" % (path, MAX_TOKEN_BYTES))
    if not tok:
        raise ValueError("token file %s is empty" % path)
    if any(b <= 0x20 or b >= 0x7F for b in tok):
        raise ValueError("token file %s must hold one token on one line" % path)
    return tok.decode("ascii")


def user_token_file():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "h5chunkd", "token")


def discover_token(explicit=None):
    """The bearer token: explicit, else the file named by
    $H5CHUNKD_TOKEN_FILE, else ~/.config/h5chunkd/token when it exists;
    None when there is none (reading data needs no token by default)."""
    if explicit:
        return explicit
    path = os.environ.get("H5CHUNKD_TOKEN_FILE")
    if path:
        return read_token_file(path)
    path = user_token_file()
    if os.path.exists(path):
        return read_token_file(path)
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


def error_from_body(status, body, what):
    """A DaemonError from an error answer: the daemon's JSON code and message."""
    code, message = None, None
    try:
        err = json.loads(body)["error"]
        code, message = str(err.get("code")), str(err.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if message is None:
        text = body[:200].decode("utf-8", "replace").strip()
        message = "HTTP %d%s" % (status, (": " + text) if text else "")
    msg = "%s: %s (%s, HTTP %d)" % (what, message, code, status) if code else "%s: %s" % (
        what, message)
    return DaemonError(msg, status, code)


class Transport:
    """Keep-alive HTTP/1.1 connections to one daemon, shared by threads."""

    def __init__(self, address=None, token=None, timeout=DEFAULT_TIMEOUT):
        self.address = discover_address(address)
        self.token = discover_token(token)
        self.timeout = timeout
        self._idle = []
        self._lock = threading.Lock()

    def _new_connection(self):
        a = self.address
        if a.unix_path is not None:
            return _UnixConnection(a.unix_path, self.timeout)
        if a.scheme == "https":
            return http.client.HTTPSConnection(a.host, a.port, timeout=self.timeout)
        return http.client.HTTPConnection(a.host, a.port, timeout=self.timeout)

    def _take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def give_back(self, conn):
        """Returns a connection whose last answer was read to its end."""
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def headers(self, extra=None):
        h = {}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if extra:
            h.update(extra)
        return h

    def open(self, method, target, body=None, headers=None):
        """Sends one request; returns (connection, response) with the body
        unread.  The caller reads the body, then calls give_back(conn) (or
        conn.close() when it stopped early).  A reused connection that the
        daemon closed while idle is retried once on a new one (every request
        we send is safe to repeat: none changes data)."""
        hdrs = self.headers(headers)
        for attempt in (0, 1):
            conn, reused = self._take()
            try:
                conn.request(method, target, body=body, headers=hdrs)
                return conn, conn.getresponse()
            except (ConnectionRefusedError, FileNotFoundError) as e:
                conn.close()
                raise DaemonNotRunning(str(self.address), e.strerror or str(e)) from None
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError, ConnectionAbortedError) as e:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise DaemonError("connection to the daemon at %s lost: %s"
                                  % (self.address, e)) from None
            except socket.timeout:
                conn.close()
                raise DaemonError("the daemon at %s did not answer within %g s"
                                  % (self.address, self.timeout)) from None
            except OSError as e:
                conn.close()
                if isinstance(e, DaemonError):
                    raise
                if not reused and isinstance(e, (socket.gaierror, ConnectionError)):
                    raise DaemonNotRunning(str(self.address), str(e)) from None
                raise DaemonError("request to the daemon at %s failed: %s"
                                  % (self.address, e)) from None
        raise AssertionError("unreachable")

    def request(self, method, target, body=None, headers=None, ok=(200,), what=None):
        """One whole request: (response, body bytes); errors raised."""
        conn, resp = self.open(method, target, body, headers)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise DaemonError("reading the answer to %s %s failed: %s" % (method, target, e)) \
                from None
        if resp.will_close:
            conn.close()
        else:
            self.give_back(conn)
        if resp.status not in ok:
            raise error_from_body(resp.status, data[:MAX_ERROR_BODY], what or target.split("?")[0])
        return resp, data

    def get_json(self, target, what=None):
        _resp, data = self.request("GET", target, what=what)
        try:
            return json.loads(data)
        except ValueError:
            raise DaemonError("%s: the daemon's answer is not JSON" % (what or target)) from None

    def post_json(self, target, obj, ok=(200,), what=None):
        body = json.dumps(obj).encode()
        _resp, data = self.request("POST", target, body,
                                   {"Content-Type": "application/json"}, ok, what)
        try:
            return json.loads(data)
        except ValueError:
            raise DaemonError("%s: the daemon's answer is not JSON" % (what or target)) from None
