"""zarrview.py - the daemon's Zarr v2 view of a remote file, read with the
batch API.  Shared by the zarr store (zarrstore.py) and the fsspec file
system (fs.py); needs neither zarr nor fsspec.

Metadata comes from the consolidated .zmetadata (one request, when the view
is made); every .zarray/.zgroup/.zattrs is then answered locally.  Chunks
are read with one POST /v1/chunks per dataset per call of fetch():

- a dataset whose .zarray names compression codecs (zlib, shuffle, blosc,
  zstd) is read raw, as stored, and zarr decodes it; a chunk whose optional
  filter was skipped when it was written (filter_mask) is re-encoded here
  (with numcodecs) so it still matches the codecs;
- any other dataset (no codecs, or only vlen-utf8) is read decoded, as the
  view serves it.
decode=True reads every dataset decoded by the daemon (libhdf5) and drops
the compression codecs from the metadata zarr sees.

A chunk the daemon says was never written (404 chunk_not_allocated) is
missing (zarr fills it); every other failure raises ChunkError.
"""
import json
import posixpath

from . import urls
from .errors import ChunkError, DaemonError

META_NAMES = (".zarray", ".zgroup", ".zattrs")
TEXT_CODECS = ("vlen-utf8",)  # what the view applies to values it serves decoded


def _codecs(zarray):
    chain = list(zarray.get("filters") or [])
    if zarray.get("compressor"):
        chain.append(zarray["compressor"])
    return chain


class ZarrView:
    """One remote file's Zarr view, rooted at `path` inside the file."""

    def __init__(self, client, url, path=None, decode="auto"):
        if decode not in ("auto", True, False):
            raise ValueError("decode must be 'auto', True or False")
        self.client, self.url = client, url
        self.root = (path or "").strip("/")
        self.force_decode = decode is True
        target = "/zarr/v2/%s/.zmetadata" % urls.zarr_id(url)
        doc = client.transport.get_json(target, "the Zarr view of %s" % url)
        md = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(md, dict):
            raise DaemonError("the Zarr view's .zmetadata has no metadata object")
        self.full_metadata = md
        self.meta = {}  # key relative to root -> JSON object
        prefix = self.root + "/" if self.root else ""
        for k, v in md.items():
            if prefix and not k.startswith(prefix):
                continue
            rel = k[len(prefix):]
            if rel.endswith(".zarray") and self.force_decode:
                v = self._decoded_form(v)
            self.meta[rel] = v
        if self.root and ".zarray" not in self.meta and ".zgroup" not in self.meta:
            raise DaemonError("no object %s with a Zarr form in %s" % (path, url), 404,
                              "not_found")
        self._raw_cache = {}

    @staticmethod
    def _decoded_form(zarray):
        z = dict(zarray)
        chain = _codecs(z)
        if chain and all(c.get("id") in TEXT_CODECS for c in chain):
            return z
        z["filters"] = [c for c in chain if c.get("id") in TEXT_CODECS] or None
        z["compressor"] = None
        return z

    # ---------------------------------------------------------------- metadata
    def is_meta_key(self, key):
        return key == ".zmetadata" or posixpath.basename(key) in META_NAMES

    def meta_bytes(self, key):
        """The bytes of a metadata key; KeyError when there is none."""
        if key == ".zmetadata":
            return json.dumps({"zarr_consolidated_format": 1, "metadata": self.meta}).encode()
        v = self.meta[key]
        return json.dumps(v).encode()

    def array_of(self, key):
        """(array dir relative to root, chunk key) of a chunk key, or None."""
        d, _, ck = key.rpartition("/")
        if not ck or (d + "/.zarray" if d else ".zarray") not in self.meta:
            return None
        return d, ck

    def listdir(self, path=""):
        p = path.strip("/")
        pre = p + "/" if p else ""
        out = set()
        for k in self.meta:
            if k.startswith(pre):
                out.add(k[len(pre):].split("/", 1)[0])
        return sorted(out)

    # ------------------------------------------------------------------ chunks
    def _h5path(self, d):
        parts = [x for x in (self.root, d) if x]
        return "/" + "/".join(parts)

    def _mode(self, d):
        """(decode?, codec chain) of the array in directory d."""
        z = self.meta[d + "/.zarray" if d else ".zarray"]
        chain = _codecs(z)
        if self.force_decode or not chain or all(c.get("id") in TEXT_CODECS for c in chain):
            return True, chain
        return False, chain

    def fetch(self, keys):
        """Chunk keys (relative to root) -> {key: bytes}; keys of chunks never
        written are left out; anything else that fails raises ChunkError.
        One batch request per array among the keys."""
        by_array = {}
        for k in keys:
            a = self.array_of(k)
            if a is None:
                raise KeyError(k)
            by_array.setdefault(a[0], []).append(a[1])
        out = {}
        for d, cks in by_array.items():
            decode, chain = self._mode(d)
            path = self._h5path(d)
            pre = d + "/" if d else ""
            try:
                for f in self.client.batch(self.url, path, cks, decode):
                    if f.status == 200:
                        data = f.payload
                        if f.filter_mask and not decode:
                            data = reencode(data, f.filter_mask, chain, path, f.key)
                        out[pre + f.key] = data
                    elif f.status == 404 and f.error == "chunk_not_allocated":
                        continue
                    else:
                        raise ChunkError("chunk %s of %s: HTTP %d %s"
                                         % (f.key, path, f.status, f.error or "error"),
                                         path, f.key, f.status, f.error)
            except DaemonError as e:
                raise ChunkError("reading chunks of %s failed: %s" % (path, e), path, None,
                                 e.status, e.code) from e
        return out


def reencode(data, mask, chain, path, key):
    """A stored chunk whose filters in `mask` were skipped, made to match the
    whole codec chain: undo the filters that were applied (last first), then
    apply every codec."""
    try:
        import numcodecs
    except ImportError:
        raise ChunkError("chunk %s of %s was stored with filters skipped (mask %d); "
                         "numcodecs is needed to re-encode it" % (key, path, mask),
                         path, key) from None
    if mask >> len(chain):
        raise ChunkError("chunk %s of %s: filter mask %d names filters the Zarr view does "
                         "not list" % (key, path, mask), path, key)
    codecs = [numcodecs.get_codec(dict(c)) for c in chain]
    buf = bytes(data)
    for i in reversed(range(len(codecs))):
        if not mask & (1 << i):
            buf = bytes(codecs[i].decode(buf))
    for c in codecs:
        buf = bytes(c.encode(buf))
    return buf
