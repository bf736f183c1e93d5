"""zarrstore.py - h5chunkd.zarr_store(): a read-only zarr (v2) store over the
daemon whose getitems() makes one POST /v1/chunks per zarr read.

zarr 2.x calls store.getitems(keys) with every chunk key one selection
touches (zarr >= 2.12; "contexts" since 2.15); ZarrView.stream sends them as
one batch and hands zarr a Mapping that reads the frames as zarr looks the
keys up, so zarr copies (or decodes) a chunk while the next is still
arriving.  Metadata comes from the consolidated view, so
zarr.open_consolidated(store) and zarr.open(store) make no request beyond
the .zmetadata fetched when the store is made.
A chunk never written is missing (zarr uses the fill value); any other
failure raises ChunkError, which zarr passes on.
"""
from collections import ChainMap
from collections.abc import MutableMapping

from .errors import ChunkError
from .zarrview import DECODE_THREADS, ZarrView

try:
    import zarr
    from zarr.storage import BaseStore as _Base
except ImportError:  # zarr is optional: the store is still a Mapping
    zarr = None
    _Base = MutableMapping

if zarr is not None and int(zarr.__version__.split(".")[0]) >= 3:
    raise ImportError("h5chunkd.zarr_store supports zarr-python 2.x (found %s)" % zarr.__version__)


class ZarrStore(_Base):
    """A zarr v2 store of one remote file (or of the group or array at
    `path` inside it), served by h5chunkd.  Read-only."""

    _readable = True
    _writeable = False
    _erasable = False
    _listable = True
    _store_version = 2

    def __init__(self, client, url, path=None, decode="auto"):
        self.client = client
        self.url = url
        self.path = path
        # "auto": zlib and shuffle decoded by the daemon; other codecs, with a
        # second core, decoded in the store's threads while the frames arrive
        # rather than by zarr one chunk after the other (docs/python.md,
        # "Performance").
        self.view = ZarrView(client, url, path, decode, merge_small=True,
                             drop_empty_attrs=True, auto_local=DECODE_THREADS > 0)
        self.batches = 0  # batch requests sent by getitems (for tests)

    def __repr__(self):
        return "h5chunkd.ZarrStore(%r%s)" % (self.url, ", path=%r" % self.path if self.path
                                             else "")

    # ------------------------------------------------------------- reading
    def __getitem__(self, key):
        v = self.view
        if v.is_meta_key(key):
            return v.meta_bytes(key)
        got = v.fetch([key])
        if key not in got:
            raise KeyError(key)  # never written: zarr fills it
        return got[key]

    def getitems(self, keys, *, contexts=None, on_error="omit", **_kw):
        """Every key at once: metadata answered locally, chunks in one batch
        request per array.  Keys of chunks never written are left out.  The
        chunks of one array come as a Mapping filled while the answer
        arrives (ZarrView.stream): zarr decodes each chunk as it looks it up,
        while the daemon sends the next."""
        keys = list(keys)
        out = {}
        chunks = []
        for k in keys:
            if self.view.is_meta_key(k):
                try:
                    out[k] = self.view.meta_bytes(k)
                except KeyError:
                    if on_error == "raise":
                        raise
            elif self.view.array_of(k) is not None:
                chunks.append(k)
            # A key that names no array: zarr never asks for one; missing, as
            # in a dict.
        if not chunks:
            return out
        self.batches += 1
        got = self.view.stream(chunks)
        if not out:
            return got
        return ChainMap(out, got)

    def __contains__(self, key):
        v = self.view
        if v.is_meta_key(key):
            return key == ".zmetadata" or key in v.meta
        if v.array_of(key) is None:
            return False
        return key in v.fetch([key])

    def __iter__(self):
        yield ".zmetadata"
        yield from self.view.meta

    def keys(self):
        return list(iter(self))

    def __len__(self):
        return len(self.view.meta) + 1

    def listdir(self, path=""):
        return self.view.listdir(path or "")

    def getsize(self, path=None):
        return 0

    # ------------------------------------------------------------- writing
    def __setitem__(self, key, value):
        raise PermissionError("h5chunkd stores are read-only")

    def __delitem__(self, key):
        raise PermissionError("h5chunkd stores are read-only")

    def rmdir(self, path=None):
        raise PermissionError("h5chunkd stores are read-only")

    def close(self):
        pass


__all__ = ["ZarrStore", "ChunkError"]
