"""Writes the chunk-index test matrix with h5py (tests/unit/check_h5chunkindex.c).

usage: make_chunkindex_fixture.py DIR

DIR/default.h5 is written with h5py's defaults (version-1 B-trees); DIR/latest.h5
with libver='latest' (layout-4 indexes).  Each dataset is named
"<index>__<description>", <index> being the chunk index libhdf5 must have chosen:
btree1, single, implicit, farray, earray or btree2.  Every case has edge chunks;
"sparse" cases leave some chunks (and, for the large ones, whole index pages,
data blocks and super blocks) never written.
"""
import sys

import h5py
import numpy as np

RANKS = {
    1: ((1000,), (7,), "i4"),
    2: ((50, 37), (8, 5), "f8"),
    3: ((13, 11, 9), (4, 3, 5), "i2"),
    8: ((3, 4, 2, 3, 2, 3, 2, 5), (2, 3, 1, 2, 2, 2, 1, 3), "u1"),
}
FILTERS = {
    "none": {},
    "gzip": {"compression": "gzip"},
    "shufgzip": {"compression": "gzip", "shuffle": True},
}


def values(shape, dtype):
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.int64) * 7 % 251 + 1).astype(dtype).reshape(shape)


def chunk_grid(shape, chunks):
    return [-(-s // c) for s, c in zip(shape, chunks)]


def write_sparse(ds, data, chunks):
    """Writes every chunk whose row-major number is not 1 modulo 3."""
    grid = chunk_grid(data.shape, chunks)
    for n, pos in enumerate(np.ndindex(*grid)):
        if n % 3 == 1:
            continue
        sel = tuple(slice(p * c, min((p + 1) * c, s)) for p, c, s in zip(pos, chunks, data.shape))
        ds[sel] = data[sel]


def make(group, name, shape, chunks, dtype, filt, sparse, maxshape=None, dcpl=None):
    ds = group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, maxshape=maxshape,
                              fillvalue=0, dcpl=dcpl, **FILTERS[filt])
    data = values(shape, dtype)
    if sparse:
        write_sparse(ds, data, chunks)
    else:
        ds[...] = data


def matrix(f, index):
    for rank, (shape, chunks, dtype) in RANKS.items():
        for filt in FILTERS:
            for sparse in (False, True):
                desc = "r%d_%s_%s" % (rank, filt, "sparse" if sparse else "full")
                name = "%s__%s" % (index, desc)
                if index in ("btree1", "farray"):
                    make(f, name, shape, chunks, dtype, filt, sparse,
                         maxshape=shape if index == "farray" else None)
                elif index == "earray":
                    maxshape = (None,) + shape[1:]
                    make(f, name, shape, chunks, dtype, filt, sparse, maxshape=maxshape)
                elif index == "btree2" and rank > 1:
                    make(f, name, shape, chunks, dtype, filt, sparse,
                         maxshape=(None,) * rank)
                elif index == "single":
                    make(f, name, shape, shape, dtype, filt, sparse, maxshape=shape)
                elif index == "implicit" and filt == "none":
                    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                    make(f, name, shape, chunks, dtype, filt, sparse, maxshape=shape, dcpl=dcpl)


def extras(f):
    # Fixed maximum larger than the current extent: positions use the maximum grid.
    make(f, "farray__r2_maxbig_gzip", (50, 37), (8, 5), "i4", "gzip", True, maxshape=(60, 52))
    make(f, "earray__r2_maxbig", (50, 37), (8, 5), "i4", "none", True, maxshape=(None, 52))
    # Unlimited dimension in the middle: the array index moves it first.
    make(f, "earray__r3_unlim_middle", (13, 11, 9), (4, 3, 5), "i2", "gzip", True,
         maxshape=(13, None, 9))
    make(f, "btree2__r3_two_unlimited", (13, 11, 9), (4, 3, 5), "f4", "shufgzip", True,
         maxshape=(None, 11, None))
    # Paged fixed array (more than 1024 elements), whole pages never written.
    ds = f.create_dataset("farray__paged_sparse", shape=(5000,), dtype="i4", chunks=(1,),
                          maxshape=(5000,))
    ds[0:700] = np.arange(700)
    ds[2100:2160] = np.arange(60)
    ds[4990:5000] = np.arange(10)
    ds = f.create_dataset("farray__paged_gzip", shape=(3000, 3), dtype="f4", chunks=(1, 2),
                          maxshape=(3000, 3), compression="gzip")
    ds[1000:2500, :] = np.arange(4500, dtype="f4").reshape(1500, 3)
    # Extensible array with super blocks and paged data blocks.
    ds = f.create_dataset("earray__many_sparse", shape=(40000,), dtype="i2", chunks=(1,),
                          maxshape=(None,))
    ds[0:30] = np.arange(30)
    ds[5000:6000] = np.arange(1000)
    ds[20000:20100] = np.arange(100)
    ds[39990:40000] = np.arange(10)
    ds = f.create_dataset("earray__many_gzip", shape=(9000, 2), dtype="i4", chunks=(1, 2),
                          maxshape=(None, 2), compression="gzip")
    ds[3000:9000] = np.arange(12000).reshape(6000, 2)
    # Deep version-2 B-tree.
    ds = f.create_dataset("btree2__deep_sparse", shape=(300, 300), dtype="u1", chunks=(2, 2),
                          maxshape=(None, None), compression="gzip")
    ds[0:150, :] = values((150, 300), "u1")
    ds[200:210, 100:110] = 1
    ds = f.create_dataset("single__unwritten", shape=(4, 5), dtype="f4", chunks=(4, 5),
                          maxshape=(4, 5))
    ds = f.create_dataset("btree2__unwritten", shape=(4, 5), dtype="f4", chunks=(2, 2),
                          maxshape=(None, None))


def main():
    out = sys.argv[1]
    with h5py.File(out + "/default.h5", "w") as f:
        matrix(f, "btree1")
        ds = f.create_dataset("btree1__deep_sparse", shape=(300, 300), dtype="u1",
                              chunks=(2, 2), compression="gzip")
        ds[0:150, :] = values((150, 300), "u1")
        ds[200:210, 100:110] = 1
        f.create_dataset("btree1__unwritten", shape=(4, 5), dtype="f4", chunks=(2, 2))
        for i in range(40):  # attributes push the header into continuation blocks
            f["btree1__r2_gzip_sparse"].attrs["note%02d" % i] = "x" * (200 + i)
    with h5py.File(out + "/latest.h5", "w", libver="latest") as f:
        for index in ("single", "implicit", "farray", "earray", "btree2"):
            matrix(f, index)
        extras(f)
        # A few attributes added later do not fit the header's first chunk:
        # version-2 continuation blocks (OCHK); with creation order tracked,
        # message headers carry a creation index.
        for i in range(6):
            f["earray__r3_gzip_sparse"].attrs["note%02d" % i] = "y" * (150 + i)
        ds = f.create_dataset("btree2__tracked_order", shape=(20, 30), dtype="i4",
                              chunks=(6, 7), maxshape=(None, None), track_order=True,
                              track_times=True, compression="gzip")
        ds[3:15, 4:20] = 5
        for i in range(6):
            ds.attrs["note%02d" % i] = "z" * (150 + i)


if __name__ == "__main__":
    main()
