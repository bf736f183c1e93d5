"""Writes seed inputs for tests/fuzz/fuzz_h5chunkindex.c.

usage: make_h5chunkindex_seeds.py DIR

One small h5py file per chunk index type (and filtered variants), each seed
being: the dataset's object header address (4 bytes, little-endian), one byte
of sizes (offsets | lengths << 4), then the whole file.
"""
import io
import struct
import sys

import h5py
import numpy as np


def seed(path, name, libver, shape, chunks, maxshape, dcpl=None, **kw):
    buf = io.BytesIO()
    with h5py.File(buf, "w", libver=libver) as f:
        ds = f.create_dataset("d", shape=shape, dtype="i2", chunks=chunks, maxshape=maxshape,
                              dcpl=dcpl, **kw)
        data = np.arange(int(np.prod(shape)), dtype="i2").reshape(shape)
        ds[tuple(slice(0, max(1, s // 2)) for s in shape)] = data[
            tuple(slice(0, max(1, s // 2)) for s in shape)]
        addr = h5py.h5o.get_info(ds.id).addr
    image = buf.getvalue()
    with open("%s/%s" % (path, name), "wb") as out:
        out.write(struct.pack("<IB", addr, 8 | 8 << 4) + image)


def main():
    out = sys.argv[1]
    seed(out, "btree1", "earliest", (40, 6), (3, 4), None)
    seed(out, "btree1_gzip", "earliest", (40,), (3,), None, compression="gzip")
    seed(out, "single", "latest", (5, 4), (5, 4), (5, 4))
    seed(out, "single_gzip", "latest", (5, 4), (5, 4), (5, 4), compression="gzip")
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    seed(out, "implicit", "latest", (9, 4), (2, 3), (9, 4), dcpl=dcpl)
    seed(out, "farray", "latest", (30, 4), (2, 3), (30, 4))
    seed(out, "farray_paged", "latest", (1100,), (1,), (1100,))
    seed(out, "earray", "latest", (30, 4), (2, 3), (None, 4), compression="gzip")
    seed(out, "earray_sblocks", "latest", (300,), (1,), (None,))
    seed(out, "btree2", "latest", (30, 4), (2, 3), (None, None))
    seed(out, "btree2_gzip", "latest", (30, 4), (2, 3), (None, None), compression="gzip",
         shuffle=True)


if __name__ == "__main__":
    main()
