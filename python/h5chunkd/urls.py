"""urls.py - the remote-file URL forms the package accepts.

A remote file is named by its http(s) URL, as the daemon wants it.  For
convenience the package also takes the URLs the daemon hands out or that
fsspec users write, and turns them back into the remote URL:
  h5chunkd::https://host/f.nwb          (fsspec's chained form)
  http://DAEMON/v1/file?url=ENCODED     (the byte-range mirror)
  http://DAEMON/zarr/v2/{id}/...        (the Zarr view; {id} is base64url)
The last two are recognised only when DAEMON is a loopback address or the
daemon the client talks to, so a remote server whose paths happen to look
like ours is never misread.
"""
import base64
import binascii
import ipaddress
import urllib.parse

MAX_URL_BYTES = 4096
CHAIN_PREFIXES = ("h5chunkd::", "h5chunkd://::")


def zarr_id(url):
    """The Zarr view's id of a remote URL: unpadded base64url."""
    return base64.urlsafe_b64encode(url.encode("utf-8")).rstrip(b"=").decode("ascii")


def _from_zarr_id(text):
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _is_loopback(host):
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _daemon_host(u, daemon_base):
    if u.hostname and _is_loopback(u.hostname):
        return True
    if daemon_base:
        d = urllib.parse.urlsplit(daemon_base)
        return (u.hostname, u.port) == (d.hostname, d.port)
    return False


def remote_url(url, daemon_base=None):
    """The remote file's URL for any accepted form; ValueError otherwise."""
    if not isinstance(url, str):
        raise TypeError("the URL must be a str, not %s" % type(url).__name__)
    for p in CHAIN_PREFIXES:
        if url.startswith(p):
            url = url[len(p):]
            break
    if len(url.encode("utf-8")) > MAX_URL_BYTES:
        raise ValueError("URL longer than %d bytes" % MAX_URL_BYTES)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("URL contains control characters")
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError("not an http:// or https:// URL: %r" % url[:200])
    if _daemon_host(u, daemon_base):
        if u.path == "/v1/file":
            q = urllib.parse.parse_qs(u.query)
            if len(q.get("url", [])) == 1:
                return remote_url(q["url"][0])
        if u.path.startswith("/zarr/v2/"):
            ident = u.path[len("/zarr/v2/"):].split("/", 1)[0]
            inner = _from_zarr_id(ident)
            if inner:
                return remote_url(inner)
    return url
