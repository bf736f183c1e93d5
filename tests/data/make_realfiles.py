#!/usr/bin/python3
"""make_realfiles.py DIR - writes HDF5 files with software we did not write,
for tests/integration/test_realfiles.py, and prints a JSON manifest.

  names.h5     h5py: names with '#', '?', '%', spaces (MATLAB v7.3's #refs#),
               a hard link back to the root (a cycle) and a shared dataset.
  types.h5     h5py: bitfields, H5T_ARRAY datasets (chunked and contiguous),
               a compound with bitfield and array members, long double,
               contiguous variable-length strings.
  tables.h5    PyTables: a Table with a bool column; arrays compressed with
               blosc (each internal codec, shuffle and bitshuffle), lzo, bzip2.
  filters.h5   h5py: lzf (built into h5py), shuffle+gzip, lz4 through Debian's
               hdf5-filter-plugin; zstd, blosc and bitshuffle chunks made by
               numcodecs and Debian's bitshuffle module and written with
               write_direct_chunk; a dataset whose filter nobody has (32099).

The manifest maps "file:/path" to what the dataset must read as when h5py
cannot read it itself (no plugin): {"expect": "npy file"}.  Everything is
deterministic; the whole run takes a few seconds.
"""
import json
import os
import sys

import h5py
import numpy as np

OUT = sys.argv[1]
manifest = {"expected": {}, "notes": []}


def expect(fname, path, arr):
    npy = os.path.join(OUT, "expect-%d.npy" % len(manifest["expected"]))
    np.save(npy, arr)
    manifest["expected"]["%s:%s" % (fname, path)] = npy


def names_file():
    with h5py.File(os.path.join(OUT, "names.h5"), "w") as f:
        refs = f.create_group("#refs#")
        refs.create_dataset("a", data=np.arange(20, dtype="<i4").reshape(4, 5), chunks=(2, 5))
        refs.create_group("x y").create_dataset("b", data=np.linspace(0, 1, 7))
        for i, name in enumerate(["q?x", "50%", "pct%41", "sp ace", "hash#in", "brace{x}",
                                  "caf\u00e9", "plus+sign"]):
            f.create_dataset(name, data=np.arange(10, dtype="<i2") * (i + 1), chunks=(4,))
        loop = f.create_group("loop").create_group("b")
        loop["up"] = f  # a hard link to the root: a cycle
        f["twice"] = refs["a"]  # one dataset under two names


def types_file():
    with h5py.File(os.path.join(OUT, "types.h5"), "w") as f:
        space = h5py.h5s.create_simple((6,))
        for name, tid, data in [("bits8", h5py.h5t.STD_B8LE, np.array([1, 2, 255, 0, 7, 128],
                                                                       dtype="u1")),
                                ("bits16be", h5py.h5t.STD_B16BE,
                                 np.array([1, 2, 65535, 256, 0, 4660], dtype=">u2")),
                                ("bits32", h5py.h5t.STD_B32LE,
                                 np.arange(6, dtype="<u4") * 1000003)]:
            dset = h5py.h5d.create(f.id, name.encode(), tid, space)
            dset.write(h5py.h5s.ALL, h5py.h5s.ALL, data, mtype=tid)
        atype = h5py.h5t.array_create(h5py.h5t.IEEE_F32LE, (3,))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((4,))
        dset = h5py.h5d.create(f.id, b"arr_chunked", atype, space, dcpl=dcpl)
        dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(18, dtype="<f4").reshape(6, 3),
                   mtype=atype)
        itype = h5py.h5t.array_create(h5py.h5t.STD_I16BE, (2, 2))
        dset = h5py.h5d.create(f.id, b"arr_contig", itype, space)
        dset.write(h5py.h5s.ALL, h5py.h5s.ALL, (np.arange(24, dtype=">i2") - 5).reshape(6, 2, 2),
                   mtype=itype)
        # A compound with a bitfield member and an array member, not packed.
        ctype = h5py.h5t.create(h5py.h5t.COMPOUND, 32)
        ctype.insert(b"flag", 0, h5py.h5t.STD_B8LE)
        ctype.insert(b"id", 4, h5py.h5t.STD_I32LE)
        ctype.insert(b"pos", 8, h5py.h5t.array_create(h5py.h5t.IEEE_F64LE, (2,)))
        dset = h5py.h5d.create(f.id, b"compound", ctype, space, dcpl=dcpl)
        rec = np.zeros(6, dtype=np.dtype({"names": ["flag", "id", "pos"],
                                          "formats": ["u1", "<i4", ("<f8", (2,))],
                                          "offsets": [0, 4, 8], "itemsize": 32}))
        rec["flag"] = [1, 0, 1, 1, 0, 1]
        rec["id"] = [10, -20, 30, -40, 50, -60]
        rec["pos"] = np.arange(12).reshape(6, 2) * 0.25
        dset.write(h5py.h5s.ALL, h5py.h5s.ALL, rec, mtype=ctype)
        # Chunks never written, in types whose Zarr fill_value is null: zarr would
        # leave them uninitialised unless the daemon serves them filled.
        big = h5py.h5s.create_simple((12,))
        for name, tid, part in [(b"compound_sparse", ctype, rec[:4]),
                                (b"arr_sparse", atype, np.arange(12, dtype="<f4").reshape(4, 3))]:
            dset = h5py.h5d.create(f.id, name, tid, big, dcpl=dcpl)
            fspace = dset.get_space()
            fspace.select_hyperslab((0,), (4,))
            dset.write(h5py.h5s.create_simple((4,)), fspace, part, mtype=tid)
        f.create_dataset("longdouble", data=np.arange(4, dtype=np.longdouble) / 3)
        f.create_dataset("vlen_contig", data=["alpha", "", "gamma delta", "\u00e9t\u00e9"] * 5,
                         dtype=h5py.string_dtype())


def tables_file():
    import tables

    class Row(tables.IsDescription):
        flag = tables.BoolCol(pos=0)
        count = tables.Int32Col(pos=1)
        pos = tables.Float64Col(shape=(2,), pos=2)

    data = (np.arange(4000, dtype="<i4") % 97).reshape(400, 10)
    with tables.open_file(os.path.join(OUT, "tables.h5"), "w") as t:
        for name, filters in [("table_plain", None),
                              ("table_blosc", tables.Filters(5, complib="blosc"))]:
            tb = t.create_table("/", name, Row, filters=filters, chunkshape=(16,))
            r = tb.row
            for i in range(50):
                r["flag"] = i % 3 == 0
                r["count"] = i * 7 - 100
                r["pos"] = [i, -i / 4]
                r.append()
            tb.flush()
        for lib in ["blosc:blosclz", "blosc:lz4", "blosc:lz4hc", "blosc:zlib", "blosc:zstd",
                    "lzo", "bzip2"]:
            for shuffle, bitshuffle in [(True, False), (False, True)]:
                if bitshuffle and not lib.startswith("blosc"):
                    continue
                name = "arr_%s_%s" % (lib.replace(":", "_"), "bit" if bitshuffle else "shuf")
                filters = tables.Filters(complevel=5, complib=lib, shuffle=shuffle,
                                         bitshuffle=bitshuffle)
                t.create_carray("/", name, obj=data, filters=filters, chunkshape=(64, 10))


def filters_file():
    import numcodecs

    data = (np.arange(3000, dtype="<u4") * 2654435761 % 1000).reshape(300, 10).astype("<u4")
    path = os.path.join(OUT, "filters.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("lzf", data=data, chunks=(64, 10), compression="lzf")
        f.create_dataset("lzf_shuffle", data=data, chunks=(64, 10), compression="lzf",
                         shuffle=True)
        f.create_dataset("gzip_shuffle", data=data, chunks=(64, 10), compression="gzip",
                         shuffle=True)
        try:
            f.create_dataset("lz4_plugin", data=data, chunks=(64, 10), compression=32004)
        except (ValueError, OSError) as e:
            manifest["notes"].append("lz4 plugin cannot write: %s" % e)

        def direct(name, fid, cd, encode, arr=data, chunks=(64, 10)):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk(chunks)
            dcpl.set_filter(fid, h5py.h5z.FLAG_OPTIONAL, cd)
            tid = h5py.h5t.py_create(arr.dtype)
            dset = h5py.h5d.create(f.id, name.encode(), tid,
                                   h5py.h5s.create_simple(arr.shape), dcpl=dcpl)
            for i in range(0, arr.shape[0], chunks[0]):
                block = np.zeros(chunks, dtype=arr.dtype)
                part = arr[i:i + chunks[0]]
                block[:part.shape[0]] = part
                dset.write_direct_chunk((i, 0), encode(np.ascontiguousarray(block)))
            expect("filters.h5", "/" + name, arr)

        direct("zstd", 32015, (3,), lambda b: numcodecs.Zstd(level=3).encode(b))
        direct("blosc_lz4_bitshuffle", 32001, (2, 2, 4, 2560, 5, 2, 1),
               lambda b: numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE).encode(b))
        direct("blosc_zstd_shuffle", 32001, (2, 2, 4, 2560, 5, 1, 5),
               lambda b: numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE).encode(b))
        direct("unknown_filter", 32099, (), lambda b: b.tobytes())
        if not h5py.h5z.filter_avail(32008):
            manifest["notes"].append("no bitshuffle HDF5 plugin (Debian package bitshuffle)")
            return
        # Written by bitshuffle's own HDF5 plugin (Debian's bitshuffle package);
        # cd_values (block size, compression) as its documentation says.
        odd = (np.arange(1003, dtype="<i8") * 7919 - 5000).reshape(1003, 1)
        f.create_dataset("bitshuffle_plain", data=data, chunks=(64, 10), compression=32008,
                         compression_opts=(0, 0))
        f.create_dataset("bitshuffle_tail", data=odd, chunks=(1003, 1), compression=32008,
                         compression_opts=(0, 0))
        f.create_dataset("bitshuffle_lz4", data=data, chunks=(64, 10), compression=32008,
                         compression_opts=(0, 2))
        f.create_dataset("bitshuffle_lz4_block", data=odd, chunks=(1003, 1), compression=32008,
                         compression_opts=(256, 2))
        import bitshuffle
        block = 1024  # elements per bitshuffle block, recorded in bytes in the header

        def bshuf_zstd(b):
            # The zstd variant (newer than Debian's bitshuffle) from its parts:
            # bitshuffle's own transpose of each block, numcodecs' zstd, the framing.
            flat = b.reshape(-1)
            out = [flat.nbytes.to_bytes(8, "big"), (block * flat.itemsize).to_bytes(4, "big")]
            done = 0
            while len(flat) - done >= 8:
                count = min(block, (len(flat) - done) // 8 * 8)
                part = bitshuffle.bitshuffle(flat[done:done + count], count).tobytes()
                z = numcodecs.Zstd(level=1).encode(part)
                out += [len(z).to_bytes(4, "big"), z]
                done += count
            out.append(flat[done:].tobytes())
            return b"".join(out)

        direct("bitshuffle_zstd", 32008, (block, 3, 1), bshuf_zstd)


def walk_files():
    """deep.h5: groups nested 80 levels (past the Zarr walk's bound).  empty_name.h5:
    a symbol-table group whose member name lost its first byte (an empty name)."""
    with h5py.File(os.path.join(OUT, "deep.h5"), "w") as f:
        f.create_group("/".join(["d"] * 80))
    path = os.path.join(OUT, "empty_name.h5")
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_group("g").create_dataset("Zqxmember", data=np.arange(3))
        f["g"].create_dataset("other", data=np.arange(4))
    with open(path, "rb") as fh:
        raw = bytearray(fh.read())
    at = raw.find(b"Zqxmember\0")
    if at < 0 or raw.find(b"Zqxmember\0", at + 1) >= 0:
        raise SystemExit("empty_name.h5: the member name is not stored once")
    raw[at] = 0
    with open(path, "wb") as fh:
        fh.write(raw)


def main():
    os.makedirs(OUT, exist_ok=True)
    walk_files()
    names_file()
    types_file()
    tables_file()
    filters_file()
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
