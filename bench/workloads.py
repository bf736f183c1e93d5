"""workloads.py - the benchmark's files and workloads, and their reference answers.

Three NWB-like files are written with h5py (default file format, as pynwb
writes them: symbol-table groups, version-1 B-trees):

- ephys.nwb: /acquisition/ElectricalSeries/data, int16 (rows, 64) in gzip
  chunks of 8192 x 64 (1 MiB raw, about 0.54 MB stored: Gaussian noise);
  .../timestamps, float64, 3000 chunks of 384 values (3 KB, not filtered);
  plus a few NWB groups and attributes.
- ophys.nwb: /acquisition/TwoPhotonSeries/data, uint16 (frames, 512, 512),
  one gzip chunk per frame; every tenth frame is never written (the reader
  gets the fill value, 0).
- million.h5: /data, float32, 1,000,000 gzip chunks of 20 values (h5py
  defaults otherwise: a version-1 B-tree whose nodes lie between the
  chunks), about 94 MB: the shape of DANDI datasets with millions of chunks.
- many.nwb: hundreds of groups (/processing/module_XX/iface_YY) holding
  small chunked and contiguous datasets with attributes: a file whose
  metadata is spread over its whole length, as in a real NWB file.

The workloads (WORKLOADS below) are what one analysis process asks for;
`read_h5py` answers each from an open h5py.File (local, ROS3 or fsspec);
`digest` turns an answer into a digest that does not depend on byte order,
so every peer's answer is compared with h5py's on the local file.
"""
import hashlib
import json
import os
import random

import numpy as np

ES = "/acquisition/ElectricalSeries/data"
TS = "/acquisition/ElectricalSeries/timestamps"
TPS = "/acquisition/TwoPhotonSeries/data"

ES_CHUNK_ROWS = 8192
ES_COLS = 64
TS_CHUNK = 384
FRAME_SKIP = 10  # frames with index % FRAME_SKIP == 0 are never written

SCALES = {
    # full: the published numbers; quick: the harness's smoke run.
    "full": {"es_chunks": 80, "ts_chunks": 3000, "frames": 120, "frame_px": 512,
             "modules": 12, "ifaces": 16, "slab_first": 30, "m_chunks": 1000000,
             "m_keys": 10000},
    "quick": {"es_chunks": 40, "ts_chunks": 2000, "frames": 64, "frame_px": 256,
              "modules": 6, "ifaces": 10, "slab_first": 10, "m_chunks": 20000, "m_keys": 200},
}
M = "/data"
M_CHUNK = 20
# The million-chunk workloads: only the batch API runs them.  An h5py reader
# walks the B-tree serially, and Debian 12's libhdf5 (1.10.8) answers
# H5Dget_chunk_info_by_coord by scanning every chunk: 12 ms of CPU per key
# on the benchmark machine, so the seed's lookups alone take 2 minutes for
# 10,000 keys (measured with bench/workloads.py's file; see docs/benchmarks.md).
MILLION = ("m-scattered", "m-adjacent")
MILLION_PEERS = ("h5chunkd",)

WORKLOADS = ["slab", "scattered", "small", "frames", "listing", "m-scattered", "m-adjacent"]
TITLES = {
    "slab": "1. slab of 20 adjacent large chunks (gzip int16, ~0.54 MB stored each)",
    "scattered": "2. 20 chunks scattered across a dataset",
    "small": "3. 1000 adjacent small chunks (3 KB each)",
    "frames": "4. 30 image frames of a 3-D dataset, some never written",
    "listing": "5. open an NWB-like file with hundreds of groups, list every dataset's shape",
    "m-scattered": "6. every 100th chunk of a 1,000,000-chunk dataset (10,000 keys)",
    "m-adjacent": "7. 10,000 adjacent chunks of a 1,000,000-chunk dataset",
}


def _write_ephys(path, sc, rng):
    import h5py
    rows = sc["es_chunks"] * ES_CHUNK_ROWS
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        f.attrs["nwb_version"] = "2.6.0"
        g = f.create_group("general")
        g.create_dataset("session_description", data="h5chunkd benchmark")
        dev = g.create_group("devices/probe0")
        dev.attrs["description"] = "a 64-channel probe"
        es = f.create_group("acquisition/ElectricalSeries")
        es.attrs["neurodata_type"] = "ElectricalSeries"
        d = es.create_dataset("data", shape=(rows, ES_COLS), dtype="<i2",
                              chunks=(ES_CHUNK_ROWS, ES_COLS), compression="gzip",
                              compression_opts=4)
        d.attrs["conversion"] = 1.95e-7
        d.attrs["unit"] = "volts"
        for c in range(sc["es_chunks"]):
            block = rng.normal(0, 20, size=(ES_CHUNK_ROWS, ES_COLS)).astype("<i2")
            d[c * ES_CHUNK_ROWS:(c + 1) * ES_CHUNK_ROWS] = block
        n = sc["ts_chunks"] * TS_CHUNK
        t = es.create_dataset("timestamps", shape=(n,), dtype="<f8", chunks=(TS_CHUNK,))
        t[:] = np.arange(n, dtype="<f8") / 30000.0 + 12.5
        t.attrs["unit"] = "seconds"


def _write_ophys(path, sc, rng):
    import h5py
    px = sc["frame_px"]
    yy, xx = np.mgrid[0:px, 0:px]
    base = 1000 + 200 * np.sin(yy / 20.0) * np.cos(xx / 30.0)
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        g = f.create_group("acquisition/TwoPhotonSeries")
        g.attrs["neurodata_type"] = "TwoPhotonSeries"
        d = g.create_dataset("data", shape=(sc["frames"], px, px), dtype="<u2",
                             chunks=(1, px, px), compression="gzip", compression_opts=4,
                             fillvalue=0)
        for i in range(sc["frames"]):
            if i % FRAME_SKIP == 0:
                continue
            d[i] = (base + i + rng.normal(0, 30, size=(px, px))).astype("<u2")
        g.create_dataset("timestamps", data=np.arange(sc["frames"]) / 30.0)


def _write_many(path, sc, rng):
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["neurodata_type"] = "NWBFile"
        f.create_group("general/subject").attrs["species"] = "Mus musculus"
        tr = f.create_group("intervals/trials")
        for col in ("start_time", "stop_time", "correct", "stimulus"):
            tr.create_dataset(col, data=rng.random(500))
        for m in range(sc["modules"]):
            mod = f.create_group("processing/module_%02d" % m)
            mod.attrs["description"] = "processing module %d" % m
            for i in range(sc["ifaces"]):
                g = mod.create_group("iface_%02d" % i)
                g.attrs["neurodata_type"] = "SpatialSeries"
                g.attrs["comments"] = "interface %d of module %d" % (i, m)
                d = g.create_dataset("data", data=rng.random((2000, 4)).astype("<f4"),
                                     chunks=(500, 4), compression="gzip")
                d.attrs["unit"] = "meters"
                g.create_dataset("timestamps", data=np.arange(2000 + i) / 100.0)
                if i % 3 == 0:
                    g.create_dataset("reference_frame", data="origin at the arena's corner")


def _write_million(path, sc, rng):
    import h5py
    n = sc["m_chunks"] * M_CHUNK
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", shape=(n,), dtype="<f4", chunks=(M_CHUNK,),
                             compression="gzip")
        step = 1000000  # 50,000 chunks per write: bounded memory
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            d[lo:hi] = rng.random(hi - lo, dtype=np.float32)


def generate(root, scale="full", seed=20240611):
    """Writes the three files under root; returns the manifest (a dict)."""
    sc = SCALES[scale]
    os.makedirs(root, exist_ok=True)
    for name, fn in (("ephys.nwb", _write_ephys), ("ophys.nwb", _write_ophys),
                     ("many.nwb", _write_many), ("million.h5", _write_million)):
        # A file written by an earlier run with the same scale and seed is kept
        # (bench/run --workdir DIR reuses DIR/origin): the million-chunk file takes minutes.
        stamp = os.path.join(root, name + ".made")
        made = "%s %d\n" % (scale, seed)
        if os.path.exists(os.path.join(root, name)) and os.path.exists(stamp):
            with open(stamp) as fh:
                if fh.read() == made:
                    continue
        tmp = os.path.join(root, name + ".part")
        rng = np.random.default_rng([seed, len(name)])
        fn(tmp, sc, rng)
        os.replace(tmp, os.path.join(root, name))
        with open(stamp, "w") as fh:
            fh.write(made)
    return manifest(root, scale)


def workload_specs(scale):
    """What each workload reads: file, dataset, and chunk selection."""
    sc = SCALES[scale]
    first = sc["slab_first"]
    # One chunk in each twentieth of the dataset, at a random place in it,
    # never next to the previous pick: 20 separate reads.
    stride = sc["es_chunks"] // 20
    rnd = random.Random(7)
    pick = [i * stride + rnd.randrange(max(1, stride - 1)) for i in range(20)]
    frames = list(range(50, 110, 2)) if sc["frames"] >= 110 else list(range(2, 62, 2))
    return {
        "slab": {"file": "ephys.nwb", "path": ES, "chunks": list(range(first, first + 20))},
        "scattered": {"file": "ephys.nwb", "path": ES, "chunks": pick},
        "small": {"file": "ephys.nwb", "path": TS,
                  "chunks": list(range(sc["ts_chunks"] // 3, sc["ts_chunks"] // 3 + 1000))},
        "frames": {"file": "ophys.nwb", "path": TPS, "chunks": frames},
        "listing": {"file": "many.nwb", "path": "/", "chunks": []},
        "m-scattered": {"file": "million.h5", "path": M,
                        "chunks": list(range(0, sc["m_chunks"], 100))[:sc["m_keys"]]},
        "m-adjacent": {"file": "million.h5", "path": M,
                       "chunks": list(range(sc["m_chunks"] // 2,
                                            sc["m_chunks"] // 2 + sc["m_keys"]))},
    }


def read_h5py(f, wl, spec):
    """One workload's answer read through h5py from the open file f."""
    if wl == "slab":
        c = spec["chunks"]
        return f[spec["path"]][c[0] * ES_CHUNK_ROWS:(c[-1] + 1) * ES_CHUNK_ROWS, :]
    if wl == "scattered":
        d = f[spec["path"]]
        return [d[c * ES_CHUNK_ROWS:(c + 1) * ES_CHUNK_ROWS, :] for c in spec["chunks"]]
    if wl == "small":
        c = spec["chunks"]
        return f[spec["path"]][c[0] * TS_CHUNK:(c[-1] + 1) * TS_CHUNK]
    if wl == "frames":
        c = spec["chunks"]
        step = c[1] - c[0]
        return f[spec["path"]][c[0]:c[-1] + 1:step]
    if wl == "m-scattered":
        d = f[spec["path"]]
        return [d[c * M_CHUNK:(c + 1) * M_CHUNK] for c in spec["chunks"]]
    if wl == "m-adjacent":
        c = spec["chunks"]
        return f[spec["path"]][c[0] * M_CHUNK:(c[-1] + 1) * M_CHUNK]
    if wl == "listing":
        return list_shapes(f)
    if wl == "attrs":  # the clients' first use (clients.prime)
        return dict(f.attrs)
    raise ValueError(wl)


def list_shapes(f):
    import h5py
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out["/" + name] = list(obj.shape)

    f.visititems(visit)
    return out


def _canon(a):
    a = np.asarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not np.little_endian):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def digest(result):
    h = hashlib.sha1()
    if isinstance(result, dict):
        h.update(json.dumps({k: list(v) for k, v in result.items()}, sort_keys=True).encode())
        return "dict:%d:%s" % (len(result), h.hexdigest())
    arrays = result if isinstance(result, list) else [result]
    for a in arrays:
        a = np.ascontiguousarray(_canon(a))
        h.update(("%s%s" % (a.dtype.str.replace("=", "<"), a.shape)).encode())
        h.update(memoryview(a).cast("B"))
    return "arr:%d:%s" % (len(arrays), h.hexdigest())


class _CountingFile:
    """A local file that records which byte ranges libhdf5 reads."""

    def __init__(self, path):
        self.fh = open(path, "rb")
        self.ranges = []

    def read(self, n=-1):
        pos = self.fh.tell()
        data = self.fh.read(n)
        self.ranges.append((pos, pos + len(data)))
        return data

    def readinto(self, b):
        pos = self.fh.tell()
        n = self.fh.readinto(b)
        self.ranges.append((pos, pos + n))
        return n

    def seek(self, *a):
        return self.fh.seek(*a)

    def tell(self):
        return self.fh.tell()

    def close(self):
        self.fh.close()

    def distinct_bytes(self):
        total, end = 0, -1
        for a, b in sorted(self.ranges):
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
        return total


def workload_bytes(root, wl, spec):
    """The bytes the workload needs from the file: the stored (filtered)
    chunks it reads, or for the listing the distinct bytes libhdf5 reads to
    open the file and list it.  The ideal time moves just these bytes."""
    import h5py
    path = os.path.join(root, spec["file"])
    if wl == "listing":
        cf = _CountingFile(path)
        with h5py.File(cf, "r") as f:
            list_shapes(f)
        cf.close()
        return cf.distinct_bytes()
    total = 0
    with h5py.File(path, "r") as f:
        d = f[spec["path"]]
        if wl in MILLION:  # read_direct_chunk finds a chunk in O(log n), get_chunk_info in O(n)
            for c in spec["chunks"]:
                total += len(d.id.read_direct_chunk((c * d.chunks[0],))[1])
            return total
        for c in spec["chunks"]:
            coord = (c * d.chunks[0],) + (0,) * (d.ndim - 1)
            info = d.id.get_chunk_info_by_coord(coord)
            if info.byte_offset is not None and info.size:
                total += info.size
    return total


def manifest(root, scale):
    """Specs, reference digests (h5py on the local file) and workload bytes."""
    import h5py
    specs = workload_specs(scale)
    out = {"scale": scale, "workloads": {}}
    for wl in WORKLOADS:
        spec = dict(specs[wl])
        with h5py.File(os.path.join(root, spec["file"]), "r") as f:
            spec["digest"] = digest(read_h5py(f, wl, spec))
        spec["bytes"] = workload_bytes(root, wl, spec)
        spec["file_bytes"] = os.path.getsize(os.path.join(root, spec["file"]))
        spec["title"] = TITLES[wl]
        out["workloads"][wl] = spec
    return out
