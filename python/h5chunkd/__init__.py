"""h5chunkd - read remote HDF5/NWB files through the local h5chunkd daemon.

    import h5chunkd, h5py, zarr
    url = "https://dandiarchive.s3.amazonaws.com/blobs/..."
    h5py.File(h5chunkd.open(url), "r")                        # h5py, pynwb, HDMF
    zarr.open_consolidated(h5chunkd.zarr_store(url))          # zarr, batched
    fsspec.open("h5chunkd://::" + url)                        # code taking fsspec URLs
    h5chunkd.Client().slice(url, "/acquisition/x/data", "0:1000")   # NumPy

The daemon is found through $H5CHUNKD_URL, the Unix socket
/run/h5chunkd/h5chunkd.sock, or 127.0.0.1:7661 (see Client).  When none
answers, DaemonNotRunning says how to start one.  Standard library only;
zarr, fsspec, h5py, numpy and tqdm are used when present.
"""
from .client import Client
from .errors import ChunkError, DaemonError, DaemonNotRunning, FileChanged, H5chunkdError

__version__ = "0.1.0"
__all__ = ["open", "zarr_store", "Client", "H5chunkdError", "DaemonError", "DaemonNotRunning",
           "ChunkError", "FileChanged", "__version__"]

_default_client = None


def default_client():
    """The Client that open() and zarr_store() use without daemon=."""
    global _default_client
    if _default_client is None:
        _default_client = Client()
    return _default_client


def _client(daemon, token):
    return Client(daemon, token) if (daemon or token) else default_client()


def open(url, daemon=None, token=None, block_size=None, cache_blocks=None):  # noqa: A001
    """A seekable read-only file object of a remote file, read through the
    daemon's cache: h5py.File(h5chunkd.open(url), "r") opens it."""
    c = _client(daemon, token)
    f = c.open(url, block_size=block_size, cache_blocks=cache_blocks)
    if c is not _default_client:
        f.owns_client = True  # its connections close with the file
    return f


def zarr_store(url, path=None, daemon=None, token=None, decode="auto"):
    """A read-only zarr v2 store of a remote HDF5 file (the daemon's Zarr
    view), or of the group or dataset at `path` in it; each zarr read is one
    batch request.  zarr.open_consolidated(h5chunkd.zarr_store(url))."""
    return _client(daemon, token).zarr_store(url, path=path, decode=decode)


def _register_fsspec():
    """Registers the "h5chunkd" protocol with fsspec when fsspec is installed
    (the entry point does it when the package is pip-installed)."""
    try:
        import fsspec
    except ImportError:
        return
    try:
        fsspec.register_implementation("h5chunkd", "h5chunkd.fs.H5chunkdFileSystem",
                                       clobber=True)
    except Exception:  # an fsspec too old to register by name: not worth failing an import
        return
    from . import _fsspec_chain
    _fsspec_chain.install()


_register_fsspec()
