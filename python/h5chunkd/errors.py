"""errors.py - the exceptions h5chunkd raises.

Every error is an OSError (h5py, zarr and fsspec treat OSError as a failed
read and never as a missing key), carrying the daemon's HTTP status and its
stable error code (docs/api.md) when the daemon gave one.
"""

START_HINT = (
    "start one with `h5chunkd` (or `systemctl start h5chunkd`), "
    "or point H5CHUNKD_URL at the daemon (http://HOST:PORT or unix:/PATH)"
)


class H5chunkdError(Exception):
    """Base of every h5chunkd exception."""


class DaemonError(H5chunkdError, OSError):
    """The daemon answered with an error, or its answer broke the protocol.

    status: the HTTP status (None when the answer never came or was malformed);
    code: the daemon's error code (``"upstream_error"``, ``"not_found"``, ...) or None.
    """

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status = status
        self.code = code

    def __str__(self):
        return self.args[0] if self.args else ""


class DaemonNotRunning(DaemonError, ConnectionError):
    """No daemon answers at the address the client uses."""

    def __init__(self, address, reason):
        super().__init__("no h5chunkd daemon answers at %s (%s): %s" % (address, reason, START_HINT))
        self.address = address


class ChunkError(H5chunkdError):
    """A chunk could not be read: its frame carried an error status, or the
    batch request failed.  Deliberately not an OSError nor a KeyError: zarr
    turns both into fill values (zarr.storage.FSStore catches OSError), and
    a chunk that failed must never read as fill.

    path, key: the dataset and chunk; status, code: as in DaemonError.
    """

    def __init__(self, message, path=None, key=None, status=None, code=None):
        super().__init__(message)
        self.path, self.key, self.status, self.code = path, key, status, code


class FileChanged(DaemonError):
    """The remote file changed (new ETag) while it was open."""
