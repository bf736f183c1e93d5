#!/usr/bin/python3
"""make_h5_testset.py - writes the HDF5 files the chunk endpoint tests read.

Usage: make_h5_testset.py OUTDIR

Everything is deterministic (fixed seeds, fixed creation order): two runs
give the same datasets with the same values (the files may still differ in
libhdf5's object timestamps).
Needs h5py and numpy (Debian's /usr/bin/python3 has both).

Files written into OUTDIR:
  testset.h5         libver "earliest" (v1 B-tree chunk index, what h5py makes
                     by default): 1-D..4-D datasets of every integer and float
                     type in both byte orders, fixed strings, filters gzip,
                     shuffle+gzip, fletcher32 and none, partial edge chunks,
                     chunks stored with a filter skipped (filter mask 1),
                     datasets with chunks never written (user fill values),
                     contiguous (one never written), compact and scalar
                     datasets, deep groups, attributes of every kind.
  testset_latest.h5  libver "latest": the other chunk indexes (fixed array,
                     extensible array, v2 B-tree, single chunk, implicit).
  big_contig.h5      int16 (9000, 1000) contiguous, 18 MB: two virtual chunks
                     of 8388 rows, the last one partial (612 rows).
  many_chunks.h5     int8 (110000,) in chunks of 1: more chunks than one
                     batch may ask for.
  small_chunks.h5    int16 (3000 * 1500,) in chunks of 1500 elements (3000
                     bytes), unfiltered, written in order so that chunks
                     1.. lie back to back; its fixed-array chunk index sits
                     in the file's first 32 KB and chunks 1400.. lie past
                     4 MiB (the daemon's default first read).
  btree_chunks.h5    the same with a v1 B-tree chunk index, whose nodes lie
                     scattered among the chunks (every ~60 chunks).
  overlap.h5         int16 (4096, 2048), chunks (128, 128), shuffle+gzip:
                     the dataset many clients read at once.
  not_hdf5.bin       256 KiB of random bytes.
A manifest.json lists the files and datasets.
"""
import json
import os
import sys

import h5py
import numpy as np

MIB = 1 << 20


def rng_for(name):
    # A seed per dataset: adding a dataset never changes the others' bytes.
    seed = sum((i + 1) * b for i, b in enumerate(name.encode())) % (2**32)
    return np.random.default_rng(seed)


def smooth(shape, dtype, name):
    """Values that compress somewhat (so filters do real work) and fill the type."""
    rng = rng_for(name)
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) if len(shape) else 1
    base = np.cumsum(rng.integers(-3, 4, size=n)).astype(np.float64)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = max(info.min, -(2**40)), min(info.max, 2**40)
        vals = np.clip(base * (1 + (hi - lo) // 2**16) + rng.integers(0, 7, size=n), lo, hi)
        arr = vals.astype(dt.newbyteorder("="))
    elif dt.kind == "f":
        arr = (base / 7.0 + rng.standard_normal(n) * 1e-3).astype(dt.newbyteorder("="))
    elif dt.kind == "S":
        words = [b"alpha", b"beta", b"gamma", b"delta-epsilon", b"zeta", b""]
        arr = np.array([words[i % len(words)] + b"%d" % (i * 7) for i in range(n)], dtype=dt)
    else:
        raise ValueError(dtype)
    return arr.reshape(shape).astype(dt)


def add_attrs(obj, tag):
    obj.attrs["int_attr"] = np.int64(-42 - len(tag))
    obj.attrs["uint8_attr"] = np.uint8(200)
    obj.attrs["float_attr"] = np.float64(3.25)
    obj.attrs["float32_attr"] = np.float32(0.5)
    obj.attrs["str_attr"] = "hello " + tag  # variable-length UTF-8
    obj.attrs["bytes_attr"] = np.bytes_(b"fixed-" + tag.encode())  # fixed-length ASCII
    obj.attrs["int_array"] = np.arange(5, dtype="<i4") * 3
    obj.attrs["float_array"] = np.array([0.25, -1.5, 1e10], dtype="<f8")
    obj.attrs["int_matrix"] = np.arange(6, dtype=">i2").reshape(2, 3)


def chunked(grp, name, data, chunks, filters=(), **kw):
    opts = {}
    if "gzip" in filters:
        opts["compression"] = "gzip"
        opts["compression_opts"] = 4
    if "shuffle" in filters:
        opts["shuffle"] = True
    if "fletcher32" in filters:
        opts["fletcher32"] = True
    opts.update(kw)
    return grp.create_dataset(name, data=data, chunks=chunks, **opts)


def write_unfiltered(dset, offsets):
    """Rewrites the chunks at offsets as raw bytes with filter mask 1."""
    for off in offsets:
        sel = tuple(slice(o, min(o + c, n)) for o, c, n in zip(off, dset.chunks, dset.shape))
        block = np.zeros(dset.chunks, dtype=dset.dtype)
        block[tuple(slice(0, s.stop - s.start) for s in sel)] = dset[sel]
        dset.id.write_direct_chunk(off, block.tobytes(), filter_mask=1)


def make_compact(grp, name, data):
    data = np.asarray(data)
    tid = h5py.h5t.py_create(data.dtype, logical=True)
    space = h5py.h5s.create(h5py.h5s.SCALAR) if data.shape == () else h5py.h5s.create_simple(
        data.shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    dsid = h5py.h5d.create(grp.id, name.encode(), tid, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(data))
    return grp[name]


def write_testset(path):
    with h5py.File(path, "w", libver="earliest") as f:
        add_attrs(f, "root")
        ints = f.create_group("ints")
        add_attrs(ints, "ints")
        floats = f.create_group("floats")
        filt = ["none", "gzip", "shuffle+gzip", "fletcher32"]
        # (name, dtype, shape, chunks): every integer type in both byte orders.
        int_specs = [
            ("i1_1d", "|i1", (1000,), (64,)),
            ("u1_2d", "|u1", (100, 37), (16, 10)),
            ("i2le_3d", "<i2", (20, 30, 17), (7, 8, 5)),
            ("i2be_3d", ">i2", (20, 30, 17), (7, 8, 5)),
            ("u2le_2d", "<u2", (33, 65), (8, 16)),
            ("u2be_2d", ">u2", (33, 65), (8, 16)),
            ("i4le_4d", "<i4", (6, 7, 8, 9), (4, 3, 5, 2)),
            ("i4be_4d", ">i4", (6, 7, 8, 9), (4, 3, 5, 2)),
            ("u4le_1d", "<u4", (777,), (100,)),
            ("u4be_1d", ">u4", (777,), (100,)),
            ("i8le_2d", "<i8", (50, 50), (16, 16)),
            ("i8be_2d", ">i8", (50, 50), (16, 16)),
            ("u8le_3d", "<u8", (9, 10, 11), (4, 4, 4)),
            ("u8be_3d", ">u8", (9, 10, 11), (4, 4, 4)),
        ]
        for i, (name, dt, shape, ch) in enumerate(int_specs):
            fl = filt[i % len(filt)]
            d = chunked(ints, name, smooth(shape, dt, name), ch,
                        () if fl == "none" else tuple(fl.split("+")))
            d.attrs["filters"] = fl
        float_specs = [
            ("f4le_1d", "<f4", (500,), (128,), "gzip"),
            ("f4be_2d", ">f4", (40, 70), (16, 32), "shuffle+gzip"),
            ("f8le_3d", "<f8", (10, 11, 12), (5, 5, 5), "fletcher32"),
            ("f8be_4d", ">f8", (5, 6, 7, 8), (2, 3, 4, 5), "none"),
            ("f4le_fl32_gz", "<f4", (64, 64), (20, 20), "shuffle+gzip+fletcher32"),
        ]
        for name, dt, shape, ch, fl in float_specs:
            d = chunked(floats, name, smooth(shape, dt, name), ch,
                        () if fl == "none" else tuple(fl.split("+")))
            d.attrs["filters"] = fl
        # Chunks stored with a filter skipped (filter_mask 1: gzip not applied),
        # as libhdf5 does when an optional filter fails.
        d = chunked(f.create_group("filters"), "masked_gz", smooth((64,), "<i4", "masked"),
                    (8,), ("gzip",))
        write_unfiltered(d, [(8,), (24,), (56,)])

        strings = f.create_group("strings")
        chunked(strings, "s16_1d", smooth((50,), "S16", "s16_1d"), (8,), ("gzip",))
        chunked(strings, "s16_2d", smooth((9, 7), "S16", "s16_2d"), (4, 4))

        # Chunks never written: only the diagonal chunks get data.
        sparse = f.create_group("sparse")
        for name, fl, fill in (("diag_i4", (), -7), ("diag_f8_gz", ("gzip",), 2.5)):
            dt = "<i4" if name.endswith("i4") else "<f8"
            d = chunked(sparse, name, None, (16, 16), fl, shape=(64, 72), dtype=dt,
                        fillvalue=fill)
            vals = smooth((64, 72), dt, name)
            for k in range(4):
                d[k * 16:(k + 1) * 16, k * 16:(k + 1) * 16] = vals[k * 16:(k + 1) * 16,
                                                                  k * 16:(k + 1) * 16]
        sparse.create_dataset("never_written", shape=(40, 40), dtype="<i2", chunks=(10, 10),
                              fillvalue=11)

        contig = f.create_group("contig")
        contig.create_dataset("small_2d", data=smooth((50, 20), "<f8", "small_2d"))
        contig.create_dataset("be_1d", data=smooth((333,), ">i4", "be_1d"))
        contig.create_dataset("s16", data=smooth((12,), "S16", "contig_s16"))
        contig.create_dataset("never_written", shape=(10, 10), dtype="<i4", fillvalue=3)

        compact = f.create_group("compact")
        make_compact(compact, "c_i2_1d", smooth((10,), "<i2", "c_i2_1d"))
        make_compact(compact, "c_f4be_2d", smooth((3, 4), ">f4", "c_f4be_2d"))
        make_compact(compact, "c_s16", smooth((5,), "S16", "c_s16"))

        scalar = f.create_group("scalar")
        scalar.create_dataset("contig_i4", data=np.int32(-123456))
        scalar.create_dataset("contig_f8be", data=np.array(2.75, dtype=">f8"))
        scalar.create_dataset("contig_s16", data=np.array(b"scalar-string", dtype="S16"))
        make_compact(scalar, "compact_u2", np.array(65000, dtype="<u2"))

        deep = f.create_group("a/b/c/d/e")
        d = chunked(deep, "dset", smooth((10, 10), "<i2", "deep"), (5, 5), ("gzip",))
        add_attrs(d, "deep")
        add_attrs(f["a/b"], "ab")
        f["a/b"].create_group("empty_group")
    return path


def write_latest(path):
    with h5py.File(path, "w", libver="latest") as f:
        add_attrs(f, "latest")
        # Fixed array: fixed dims, filtered and not.
        chunked(f, "farray", smooth((100, 60), "<i4", "farray"), (16, 16))
        d = chunked(f, "farray_gz", smooth((100, 60), ">f8", "farray_gz"), (16, 16), ("gzip",))
        write_unfiltered(d, [(0, 16), (96, 48)])
        # Extensible array: one unlimited dim.
        chunked(f, "earray", smooth((90, 20), "<u2", "earray"), (8, 20), ("shuffle", "gzip"),
                maxshape=(None, 20))
        # v2 B-tree: more than one unlimited dim; some chunks never written.
        d = chunked(f, "btree2", None, (8, 8), ("gzip",), shape=(40, 40), dtype="<i8",
                    maxshape=(None, None), fillvalue=-1)
        vals = smooth((40, 40), "<i8", "btree2")
        d[:16, :] = vals[:16, :]
        d[32:, 24:] = vals[32:, 24:]
        write_unfiltered(d, [(8, 8)])
        # Single chunk index: chunk == shape.
        chunked(f, "single", smooth((30, 20), "<f4", "single"), (30, 20), ("fletcher32",))
        chunked(f, "single_plain", smooth((17,), ">i2", "single_plain"), (17,))
        # Implicit index: early allocation, no filters; unwritten chunks exist (fill bytes).
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((8, 8))
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_value(np.array(5, dtype="<i4"))
        space = h5py.h5s.create_simple((20, 30))
        h5py.h5d.create(f.id, b"implicit", h5py.h5t.STD_I32LE, space, dcpl=dcpl)
        f["implicit"][:8, :] = smooth((8, 30), "<i4", "implicit")


def write_big_contig(path):
    with h5py.File(path, "w") as f:
        rng = np.random.default_rng(9000)
        f.create_dataset("data", data=rng.integers(-30000, 30000, size=(9000, 1000),
                                                     dtype="<i2"))


def write_many_chunks(path):
    # Fixed-array index (libver latest): 110000 chunks in a file under 2 MB.
    with h5py.File(path, "w", libver="latest") as f:
        rng = np.random.default_rng(110000)
        f.create_dataset("data", data=rng.integers(-128, 128, size=(110000,), dtype="i1"),
                         chunks=(1,))


def write_small_chunks(path):
    # libver "latest": a fixed-array chunk index, written with the first chunk
    # (24 KB after it), so every other chunk follows the one before it.
    with h5py.File(path, "w", libver="latest") as f:
        n = 3000 * 1500
        vals = (np.arange(n, dtype=np.int64) * 7 % 65521 - 32000).astype("<i2")
        d = f.create_dataset("data", shape=(n,), dtype="<i2", chunks=(1500,))
        for start in range(0, n, 150000):
            d[start:start + 150000] = vals[start:start + 150000]


def write_btree_chunks(path):
    # The same data with h5py's default v1 B-tree: its nodes are written as the
    # tree grows, one every ~60 chunks, scattered through the file.
    with h5py.File(path, "w", libver="earliest") as f:
        n = 3000 * 1500
        vals = (np.arange(n, dtype=np.int64) * 7 % 65521 - 32000).astype("<i2")
        d = f.create_dataset("data", shape=(n,), dtype="<i2", chunks=(1500,))
        for start in range(0, n, 150000):
            d[start:start + 150000] = vals[start:start + 150000]


def write_overlap(path):
    with h5py.File(path, "w") as f:
        chunked(f, "data", smooth((4096, 2048), "<i2", "overlap"), (128, 128),
                ("shuffle", "gzip"))


def main():
    if len(sys.argv) != 2:
        print("usage: make_h5_testset.py OUTDIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    files = {
        "testset.h5": write_testset,
        "testset_latest.h5": write_latest,
        "big_contig.h5": write_big_contig,
        "many_chunks.h5": write_many_chunks,
        "small_chunks.h5": write_small_chunks,
        "btree_chunks.h5": write_btree_chunks,
        "overlap.h5": write_overlap,
    }
    for name, fn in files.items():
        tmp = os.path.join(out, name + ".part")
        fn(tmp)
        os.replace(tmp, os.path.join(out, name))
    rng = np.random.default_rng(404)
    with open(os.path.join(out, "not_hdf5.bin"), "wb") as fh:
        fh.write(rng.integers(0, 256, size=256 * 1024, dtype=np.uint8).tobytes())
    manifest = {}
    for name in files:
        with h5py.File(os.path.join(out, name), "r") as f:
            dsets = []
            f.visititems(lambda p, o: dsets.append("/" + p)
                         if isinstance(o, h5py.Dataset) else None)
            manifest[name] = sorted(dsets)
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
