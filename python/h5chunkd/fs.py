"""fs.py - the fsspec protocol "h5chunkd": a remote file through the daemon.

    fsspec.open("h5chunkd://::https://host/f.nwb")      -> the HDF5 bytes (h5py.File takes it)
    fsspec.get_mapper("h5chunkd://::https://host/f.nwb") -> the Zarr view, batched
    fsspec.filesystem("h5chunkd", fo="https://host/f.nwb")

fsspec passes the chained URL's inner part as `fo`.  The file system's
paths are the Zarr view's keys: "" is the file itself (open() gives a
DaemonFile), ".zmetadata", "acquisition/ElectricalSeries/data/.zarray" and
chunk keys name the view's objects; cat() of many chunk keys is one batch
request per dataset.  A chunk never written is FileNotFoundError (fsspec's
mappers make it a KeyError, zarr a fill value); every other failure raises
ChunkError, whatever on_error says, so it never turns into a fill value.

Registered under the "fsspec.specs" entry point (pyproject.toml) and by
`import h5chunkd`.  (fsspec takes a chained URL's first word for a protocol
only when it has no digits or says "://": write "h5chunkd://::https://...";
"h5chunkd::https://..." works once h5chunkd is imported, see __init__.py.)
"""
import io

from fsspec.spec import AbstractFileSystem

from .client import Client
from .zarrview import ZarrView


class H5chunkdFileSystem(AbstractFileSystem):
    protocol = "h5chunkd"
    root_marker = ""

    def __init__(self, fo=None, daemon=None, token=None, decode="auto", target_protocol=None,
                 target_options=None, **kwargs):
        super().__init__(**kwargs)
        if not fo:
            raise ValueError("h5chunkd: name the remote file, as h5chunkd://::https://host/f.nwb "
                             "or fsspec.filesystem('h5chunkd', fo='https://host/f.nwb')")
        self.client = Client(daemon, token)
        self.url = self.client.remote_url(fo)
        self.decode = decode
        self._view = None

    @property
    def view(self):
        if self._view is None:
            self._view = ZarrView(self.client, self.url, None, self.decode)
        return self._view

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("h5chunkd://"):
            path = path[len("h5chunkd://"):]
        if path == "h5chunkd":
            path = ""
        return path.strip("/")

    def unstrip_protocol(self, name):
        return "h5chunkd://" + name

    # ---------------------------------------------------------------- reading
    def _open(self, path, mode="rb", **kwargs):
        if mode != "rb":
            raise PermissionError("h5chunkd files are read-only")
        path = self._strip_protocol(path)
        if path == "":
            return self.client.open(self.url)
        return io.BytesIO(self.cat_file(path))

    def cat_file(self, path, start=None, end=None, **kwargs):
        path = self._strip_protocol(path)
        if path == "":
            with self.client.open(self.url) as f:
                f.seek(start or 0)
                data = f.read() if end is None else f.read(max(0, end - (start or 0)))
            return data
        data = self._get_keys([path])[path]
        if isinstance(data, BaseException):
            raise data
        return bytes(data)[start:end]

    def _get_keys(self, paths):
        """{path: bytes or FileNotFoundError}: metadata locally, chunks in batches."""
        v = self.view
        out = {}
        chunks = []
        for p in paths:
            if v.is_meta_key(p):
                try:
                    out[p] = v.meta_bytes(p)
                except KeyError:
                    out[p] = FileNotFoundError(p)
            elif v.array_of(p) is None:
                out[p] = FileNotFoundError(p)
            else:
                chunks.append(p)
        if chunks:
            got = v.fetch(chunks)
            for p in chunks:
                out[p] = got[p] if p in got else FileNotFoundError(p)
        return out

    def cat(self, path, recursive=False, on_error="raise", **kwargs):
        paths = path if isinstance(path, (list, tuple)) else [path]
        stripped = [self._strip_protocol(p) for p in paths]
        if isinstance(path, str) and stripped[0] == "":
            return self.cat_file("")
        got = self._get_keys([p for p in stripped if p != ""])
        out = {}
        for orig, p in zip(paths, stripped):
            v = got.get(p) if p != "" else self.cat_file("")
            if isinstance(v, BaseException):
                if on_error == "raise":
                    raise v
                if on_error == "omit":
                    continue
            out[orig] = v
        if isinstance(path, str):
            v = out.get(path)
            if v is None:
                raise FileNotFoundError(path)
            return v
        return out

    # ---------------------------------------------------------------- listing
    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path == "":
            with self.client.open(self.url) as f:
                size = f.size
            return {"name": "", "size": size, "type": "file"}
        v = self.view
        if v.is_meta_key(path):
            if path != ".zmetadata" and path not in v.meta:
                raise FileNotFoundError(path)
            return {"name": path, "size": len(v.meta_bytes(path)), "type": "file"}
        if path + "/.zgroup" in v.meta or path + "/.zarray" in v.meta:
            return {"name": path, "size": 0, "type": "directory"}
        if v.array_of(path) is not None:
            data = self._get_keys([path])[path]
            if isinstance(data, BaseException):
                raise data
            return {"name": path, "size": len(data), "type": "file"}
        raise FileNotFoundError(path)

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        v = self.view
        pre = path + "/" if path else ""
        names = v.listdir(path)
        if not names and path and path + "/.zarray" not in v.meta:
            raise FileNotFoundError(path)
        entries = []
        for n in names:
            full = pre + n
            if n in (".zarray", ".zgroup", ".zattrs"):
                entries.append({"name": full, "size": len(v.meta_bytes(full)), "type": "file"})
            else:
                entries.append({"name": full, "size": 0, "type": "directory"})
        if path == "":
            entries.insert(0, {"name": ".zmetadata", "size": len(v.meta_bytes(".zmetadata")),
                               "type": "file"})
        return entries if detail else [e["name"] for e in entries]
