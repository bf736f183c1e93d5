#!/usr/bin/python3
"""make_damaged.py - writes damaged HDF5 files for tests/integration/test_damaged.py,
deterministically (fixed seeds), from a few valid files written at test time:

  base_v0.h5      h5py, default (oldest) format: many chunked datasets, groups
  latest.h5       the same after `h5repack -L` (latest format: dense groups in
                  fractal heaps and v2 B-trees, v4 chunk indexes)
  strings.h5      h5py: variable-length strings (global heaps), LZF, a compound
  tables.h5       PyTables: a table and arrays, zlib
  netcdf4.nc      ncgen -k nc4 (when netcdf-bin is installed)

and of each: truncations, random bit flips (1, 8 and 64 bytes), random
superblocks (the signature kept, the rest random), 20 flips in the first
64 KiB of latest.h5, 1-bit flips inside the global heap collections of
strings.h5, and crash_latest.h5: the first of a fixed sequence of seeds whose
20 flipped bytes in the first 64 KiB of latest.h5 make libhdf5 1.10.8 abort or
segfault in h5py (the H5G__dense_iterate crash of issue 9), so that the
isolation of libhdf5 can be tested.  The crash is verified by running h5py in a
child process; the seed found is written to OUTDIR/crash_seed.txt.

Writes OUTDIR/manifest.json: [{"file", "base", "kind"}], the valid files
under OUTDIR/base/.  Usage: make_damaged.py OUTDIR [--no-crasher]
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CRASH_SEEDS = range(1000, 1200)  # searched in order; about one in seven crashes
CRASH_PROBE = """import h5py, sys
f = h5py.File(sys.argv[1], "r")
list(f.keys())
f.visit(lambda name: None)
"""


def write_bases(bdir):
    import h5py
    os.makedirs(bdir, exist_ok=True)
    rng = np.random.default_rng(5)
    v0 = os.path.join(bdir, "base_v0.h5")
    with h5py.File(v0, "w") as f:
        for i in range(24):  # more than 8 links: a dense root group after -L
            f.create_dataset("d%02d" % i, data=np.arange(60 * (i + 1), dtype="<i4"),
                             chunks=(40,), compression="gzip")
        g = f.create_group("grp")
        for i in range(12):
            g.create_dataset("s%02d" % i, data=rng.standard_normal(16))
        g.create_dataset("m2d", data=np.arange(400, dtype="<f4").reshape(20, 20), chunks=(5, 5),
                         shuffle=True, compression="gzip")
    latest = os.path.join(bdir, "latest.h5")
    subprocess.run(["h5repack", "-L", v0, latest], check=True, timeout=120,
                   capture_output=True)
    with h5py.File(os.path.join(bdir, "strings.h5"), "w") as f:
        words = np.array(["word %d %s" % (i, "z" * (i % 11)) for i in range(400)], dtype=object)
        f.create_dataset("vlen", data=words, dtype=h5py.string_dtype())
        f.create_dataset("vlen_chunked", data=words, dtype=h5py.string_dtype(), chunks=(50,))
        f.create_dataset("lzf", data=np.arange(2000, dtype="<i8"), chunks=(250,),
                         compression="lzf")
        f.create_dataset("compound", data=np.array([(i, i * 0.5) for i in range(100)],
                                                   dtype=[("a", "<i4"), ("b", "<f8")]),
                         chunks=(25,))
    import tables
    with tables.open_file(os.path.join(bdir, "tables.h5"), "w") as h5:
        filters = tables.Filters(complevel=5, complib="zlib", shuffle=True)
        a = h5.create_carray("/", "carray", tables.Float64Atom(), shape=(300, 10),
                             filters=filters, chunkshape=(50, 10))
        a[:] = np.arange(3000.0).reshape(300, 10)
        t = h5.create_table("/", "table", {"x": tables.Int32Col(), "y": tables.Float32Col()},
                            filters=filters, chunkshape=(64,))
        t.append([(i, i / 2) for i in range(500)])
    if shutil.which("ncgen"):
        sys.path.insert(0, HERE)
        import make_corpus
        with tempfile.TemporaryDirectory() as work:
            cdl = os.path.join(work, "s.cdl")
            with open(cdl, "w") as fh:
                fh.write(make_corpus.CDL % ", ".join(str(i % 500) for i in range(4 * 6 * 8)))
            subprocess.run(["ncgen", "-k", "nc4", "-o", os.path.join(bdir, "netcdf4.nc"), cdl],
                           check=True, timeout=60, capture_output=True)
    return sorted(os.listdir(bdir))


def flip_bits(data, rng, count, lo=0, hi=None):
    b = bytearray(data)
    hi = len(b) if hi is None else min(hi, len(b))
    for _ in range(count):
        i = rng.randrange(lo, hi)
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def global_heap_ranges(data):
    """(start, end) of each global heap collection ("GCOL", 8-byte length at +8)."""
    out = []
    pos = data.find(b"GCOL")
    while pos >= 0 and len(out) < 16:
        size = int.from_bytes(data[pos + 8:pos + 16], "little")
        if 16 < size <= len(data) - pos:
            out.append((pos + 16, pos + size))
        pos = data.find(b"GCOL", pos + 4)
    return out


def crashes_h5py(path):
    try:
        r = subprocess.run([sys.executable, "-c", CRASH_PROBE, path], capture_output=True,
                           timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode < 0


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = args[0]
    bdir = os.path.join(out, "base")
    bases = write_bases(bdir)
    manifest = []

    def emit(name, base, kind, data):
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)
        manifest.append({"file": name, "base": base, "kind": kind})

    for base in bases:
        with open(os.path.join(bdir, base), "rb") as fh:
            data = fh.read()
        stem = os.path.splitext(base)[0]
        n = len(data)
        for frac in (0.02, 0.4):
            cut = max(64, int(n * frac))
            emit("%s.trunc%d.h5" % (stem, cut), base, "truncation", data[:cut])
        emit("%s.trunc-1.h5" % stem, base, "truncation", data[:n - 1])
        for seed, count in ((0, 1), (0, 8), (1, 8), (0, 64), (1, 64)):
            rng = random.Random("%s/%d/%d" % (base, seed, count))
            emit("%s.flip%d-s%d.h5" % (stem, count, seed), base, "flips",
                 flip_bits(data, rng, count))
        for seed in range(2):
            rng = random.Random("superblock/%s/%d" % (base, seed))
            b = bytearray(data)
            b[8:96] = rng.randbytes(88)
            emit("%s.superblock-s%d.h5" % (stem, seed), base, "superblock", bytes(b))
        if base == "latest.h5":
            for seed in range(8):
                rng = random.Random("latest64k/%d" % seed)
                emit("latest.flip20in64k-s%d.h5" % seed, base, "flips-64k",
                     flip_bits(data, rng, 20, 0, 65536))
        if base == "strings.h5":
            heaps = global_heap_ranges(data)
            for seed in range(4):
                if not heaps:
                    break
                rng = random.Random("gheap/%d" % seed)
                lo, hi = heaps[seed % len(heaps)]
                emit("strings.gheap1bit-s%d.h5" % seed, base, "global-heap",
                     flip_bits(data, rng, 1, lo, hi))
    if "--no-crasher" not in sys.argv:
        with open(os.path.join(bdir, "latest.h5"), "rb") as fh:
            data = fh.read()
        path = os.path.join(out, "crash_latest.h5")
        for seed in CRASH_SEEDS:
            with open(path, "wb") as fh:
                fh.write(flip_bits(data, random.Random("crash/%d" % seed), 20, 0, 65536))
            if crashes_h5py(path):
                manifest.append({"file": "crash_latest.h5", "base": "latest.h5",
                                 "kind": "crashes-libhdf5"})
                with open(os.path.join(out, "crash_seed.txt"), "w") as fh:
                    fh.write("%d\n" % seed)
                print("make_damaged: crash_latest.h5 (seed %d) crashes libhdf5 in h5py" % seed)
                break
        else:
            os.unlink(path)
            print("make_damaged: ERROR no seed of %s crashes h5py" % CRASH_SEEDS, file=sys.stderr)
            return 1
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    print("make_damaged: %d damaged files from %d bases" % (len(manifest), len(bases)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
