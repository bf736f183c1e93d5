#!/usr/bin/python3
"""make_corpus.py - builds the real-files corpus of tests/integration/test_corpus.py
into a directory, from what other software wrote (nothing is downloaded):

  debian/   HDF5 files shipped by Debian packages: PyTables' test files
            (python-tables-data), h5py's, SciPy's MATLAB v7.3 and anndata's
            test files, bitshuffle's regression file when present;
  examples/ libhdf5-doc's C examples compiled with h5cc and run;
  tables/   PyTables tables and arrays with each compressor it has (zlib, blosc
            and its inner codecs, lzo, bzip2), with a bool column (a bitfield
            member in HDF5);
  repack/   h5repack of an h5py file with each filter (GZIP, SHUF, FLET, SZIP,
            NBIT, SOFF), layouts (CONTI, COMPA, CHUNK) and -L (latest format);
  netcdf/   netCDF-4 from ncgen, h5netcdf;
  hdmf/     an HDMF DynamicTable;
  anndata/  an .h5ad with gzip and with lzf;
  h5py/     h5py-written cases the issue names: vlen strings (contiguous and
            chunked), LZF, names with '#', '?', '%' and spaces, a hard-link
            cycle, H5T_ARRAY, long double, references, empty datasets.

Deterministic: fixed seeds, no clock in the data.  Prints one line per source
and "ERROR ..." for a source that could not be built (a missing Debian package
is an error: scripts/install-deps installs them all); exits 1 if any failed.
Usage: make_corpus.py OUTDIR
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ERRORS = []

# Debian packages whose shipped files join the corpus, and what to take.
DEBIAN_SOURCES = [
    ("python-tables-data", ("*.h5", "*.mat")),
    ("python3-h5py", ("*.h5",)),
    ("python3-scipy", ("testhdf5_*.mat",)),
    ("python3-anndata", ("*.h5ad",)),
]
OPTIONAL_DEBIAN = [("python3-bitshuffle", ("*.h5",))]


def note(msg):
    print("make_corpus: %s" % msg, flush=True)


def error(msg):
    ERRORS.append(msg)
    print("make_corpus: ERROR %s" % msg, flush=True)


def package_files(pkg):
    r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None
    return [p for p in r.stdout.split("\n") if p and os.path.isfile(p)]


def from_debian(out):
    d = os.path.join(out, "debian")
    os.makedirs(d, exist_ok=True)
    n = 0
    for pkg, patterns in DEBIAN_SOURCES + OPTIONAL_DEBIAN:
        files = package_files(pkg)
        if files is None:
            if (pkg, patterns) in DEBIAN_SOURCES:
                error("Debian package %s is not installed (scripts/install-deps)" % pkg)
            continue
        import fnmatch
        for p in sorted(files):
            if not any(fnmatch.fnmatch(os.path.basename(p), pat) for pat in patterns):
                continue
            with open(p, "rb") as fh:
                head = fh.read(1024)
            if b"\x89HDF\r\n\x1a\n" not in head and not p.endswith(".mat"):
                continue
            if p.endswith(".mat") and not head.startswith(b"MATLAB 7.3"):
                continue  # MATLAB v5 files are not HDF5
            name = "%s__%s" % (pkg, "_".join(p.strip("/").split("/")[-3:]))
            shutil.copyfile(p, os.path.join(d, name))
            n += 1
    note("debian: %d files" % n)


def from_hdf5_examples(out):
    src = "/usr/share/doc/libhdf5-doc/examples"
    d = os.path.join(out, "examples")
    os.makedirs(d, exist_ok=True)
    if not os.path.isdir(src):
        error("libhdf5-doc examples missing (%s)" % src)
        return
    h5cc = shutil.which("h5cc")
    if h5cc is None:
        error("h5cc missing (hdf5-helpers)")
        return
    with tempfile.TemporaryDirectory() as work:
        # h5_rdwt and h5_crtatt modify dset.h5 written by h5_crtdat: keep that order.
        order = ["h5_crtdat.c", "h5_rdwt.c", "h5_crtatt.c", "h5_crtgrp.c", "h5_crtgrpar.c",
                 "h5_crtgrpd.c", "h5_cmprss.c", "h5_write.c", "h5_interm_group.c"]
        built = 0
        for c in order:
            path = os.path.join(src, c)
            if not os.path.exists(path):
                continue
            exe = os.path.join(work, c[:-2])
            r = subprocess.run([h5cc, "-o", exe, path], cwd=work, capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                error("h5cc %s: %s" % (c, r.stderr[-300:]))
                continue
            r = subprocess.run([exe], cwd=work, capture_output=True, timeout=60)
            if r.returncode != 0:
                error("%s exited %d" % (c, r.returncode))
                continue
            built += 1
        n = 0
        for f in sorted(glob.glob(os.path.join(work, "*.h5"))):
            shutil.copyfile(f, os.path.join(d, "libhdf5-doc__" + os.path.basename(f)))
            n += 1
    note("examples: %d programs, %d files" % (built, n))


def from_pytables(out):
    try:
        import tables
    except ImportError:
        error("python3-tables missing")
        return
    d = os.path.join(out, "tables")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(9)

    class Row(tables.IsDescription):
        id = tables.Int32Col(pos=0)
        flag = tables.BoolCol(pos=1)
        value = tables.Float64Col(pos=2)
        name = tables.StringCol(8, pos=3)
        pos = tables.Float32Col(shape=(3,), pos=4)

    libs = ["zlib", "lzo", "bzip2", "blosc", "blosc:blosclz", "blosc:lz4", "blosc:lz4hc",
            "blosc:zlib", "blosc:zstd"]
    n = 0
    for lib in libs:
        if tables.which_lib_version(lib) is None:
            error("PyTables has no %s" % lib)
            continue
        fname = os.path.join(d, "pytables_%s.h5" % lib.replace(":", "-"))
        filters = tables.Filters(complevel=5, complib=lib, shuffle=True)
        with tables.open_file(fname, "w") as h5:
            t = h5.create_table("/", "table", Row, filters=filters, chunkshape=(256,))
            r = t.row
            for i in range(3000):
                r["id"] = i
                r["flag"] = bool(i % 3)
                r["value"] = i * 0.5
                r["name"] = ("n%d" % i).encode()
                r["pos"] = (i, -i, 0.25)
                r.append()
            t.flush()
            a = h5.create_carray("/", "carray", tables.Float32Atom(), shape=(500, 40),
                                 filters=filters, chunkshape=(64, 16))
            a[:] = rng.standard_normal((500, 40)).astype("f4")
            e = h5.create_earray("/", "earray", tables.Int16Atom(), shape=(0, 8),
                                 filters=filters, chunkshape=(100, 8))
            e.append(np.arange(8 * 777, dtype="i2").reshape(777, 8))
            h5.create_array("/", "plain", np.arange(100, dtype=">i8"))
            h5.create_vlarray("/", "vlarray", tables.Int32Atom(), filters=filters).append([1, 2, 3])
        n += 1
    note("tables: %d files" % n)


def base_h5py_file(path):
    import h5py
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f.create_dataset("i4", data=np.arange(200 * 30, dtype="<i4").reshape(200, 30),
                         chunks=(50, 10))
        f.create_dataset("f8", data=rng.standard_normal((300, 7)), chunks=(64, 7))
        f.create_dataset("u2", data=rng.integers(0, 1000, 5000).astype("<u2"), chunks=(512,))
        f.create_dataset("i1_3d", data=rng.integers(-100, 100, (20, 30, 40)).astype("i1"),
                         chunks=(5, 10, 20))
        f.create_dataset("f4be", data=np.linspace(0, 1, 1000, dtype=">f4"), chunks=(100,))
        g = f.create_group("grp")
        g.create_dataset("small", data=np.arange(10, dtype="<i8"))
        g.create_dataset("sparse", shape=(100, 100), dtype="<i4", chunks=(10, 10), fillvalue=-1)
        g["sparse"][0:10, 0:10] = 5
    return path


def from_h5repack(out):
    h5repack = shutil.which("h5repack")
    if h5repack is None:
        error("h5repack missing (hdf5-tools)")
        return
    d = os.path.join(out, "repack")
    os.makedirs(d, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        base = base_h5py_file(os.path.join(work, "base.h5"))
        variants = [
            ("gzip6", ["-f", "GZIP=6"]), ("shuf", ["-f", "SHUF"]), ("flet", ["-f", "FLET"]),
            ("shuf_gzip", ["-f", "SHUF", "-f", "GZIP=1"]), ("szip", ["-f", "SZIP=8,NN"]),
            ("nbit", ["-f", "NBIT"]), ("soff", ["-f", "SOFF=0,IN"]),
            ("conti", ["-l", "CONTI"]), ("compa", ["-l", "COMPA"]),
            ("chunk", ["-l", "CHUNK=16x4"]), ("latest", ["-L"]),
            ("latest_gzip", ["-L", "-f", "GZIP=9"]),
        ]
        n = 0
        for name, args in variants:
            dst = os.path.join(d, "repack_%s.h5" % name)
            r = subprocess.run([h5repack] + args + [base, dst], capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                # COMPA of datasets over 64 KiB, SZIP of some types: h5repack refuses; fine.
                note("h5repack %s refused: %s" % (" ".join(args), r.stderr.strip()[-200:]))
                if os.path.exists(dst):
                    os.unlink(dst)
                continue
            n += 1
        shutil.copyfile(base, os.path.join(d, "repack_base.h5"))
    note("repack: %d files" % (n + 1))


CDL = """netcdf sample {
dimensions:
    time = UNLIMITED ;
    lat = 6 ;
    lon = 8 ;
    nchar = 5 ;
variables:
    double time(time) ;
        time:units = "days since 2000-01-01" ;
    float lat(lat) ;
    float lon(lon) ;
    short temp(time, lat, lon) ;
        temp:_FillValue = -999s ;
        temp:scale_factor = 0.01 ;
        temp:_Storage = "chunked" ;
        temp:_ChunkSizes = 2, 3, 4 ;
        temp:_DeflateLevel = 4 ;
        temp:_Shuffle = "true" ;
    int64 big(lat) ;
    string label(lat) ;
    char code(lat, nchar) ;
data:
    time = 0, 1, 2, 3 ;
    lat = -50, -30, -10, 10, 30, 50 ;
    lon = 0, 45, 90, 135, 180, 225, 270, 315 ;
    temp = %s ;
    big = 1, 2, 3, 4, 5, 9000000000000 ;
    label = "a", "bb", "ccc", "", "e e", "f#f" ;
    code = "abcde", "fghij", "k", "", "lmnop", "q" ;
}
"""


def from_netcdf(out):
    d = os.path.join(out, "netcdf")
    os.makedirs(d, exist_ok=True)
    ncgen = shutil.which("ncgen")
    n = 0
    if ncgen is None:
        error("ncgen missing (netcdf-bin)")
    else:
        with tempfile.TemporaryDirectory() as work:
            cdl = os.path.join(work, "sample.cdl")
            values = ", ".join(str((i * 37) % 2000 - 1000) for i in range(4 * 6 * 8))
            with open(cdl, "w") as fh:
                fh.write(CDL % values)
            for kind in ("nc4", "nc7"):
                dst = os.path.join(d, "ncgen_%s.nc" % kind)
                r = subprocess.run([ncgen, "-k", kind, "-o", dst, cdl], capture_output=True,
                                   text=True, timeout=60)
                if r.returncode != 0:
                    if kind == "nc4":
                        error("ncgen: %s" % r.stderr[-300:])
                    continue
                n += 1
    try:
        import h5netcdf
        with h5netcdf.File(os.path.join(d, "h5netcdf.nc"), "w") as f:
            f.dimensions = {"x": 50, "y": 20}
            v = f.create_variable("data", ("x", "y"), float, chunks=(10, 20),
                                  compression="gzip")
            v[:] = np.arange(1000.0).reshape(50, 20)
            v.attrs["units"] = "m"
            g = f.create_group("sub")
            g.dimensions = {"z": 7}
            g.create_variable("z", ("z",), "i4", data=np.arange(7, dtype="i4"))
        n += 1
    except Exception as e:  # noqa: BLE001 - any failure of the writer is reported
        error("h5netcdf: %r" % e)
    note("netcdf: %d files" % n)


def from_hdmf(out):
    d = os.path.join(out, "hdmf")
    os.makedirs(d, exist_ok=True)
    try:
        from hdmf.common import DynamicTable, VectorData, get_manager
        from hdmf.backends.hdf5 import HDF5IO
        cols = [VectorData(name="x", description="x", data=list(range(50))),
                VectorData(name="label", description="labels",
                           data=["row %d" % i for i in range(50)])]
        table = DynamicTable(name="table", description="a table", columns=cols)
        table.add_column(name="ragged", description="ragged", index=True,
                         data=[list(range(i % 4)) for i in range(50)])
        with HDF5IO(os.path.join(d, "hdmf_dynamictable.h5"), manager=get_manager(),
                    mode="w") as io:
            io.write(table)
        note("hdmf: 1 file")
    except Exception as e:  # noqa: BLE001
        error("hdmf: %r" % e)


def from_anndata(out):
    d = os.path.join(out, "anndata")
    os.makedirs(d, exist_ok=True)
    try:
        import warnings
        import anndata
        import pandas as pd
        rng = np.random.default_rng(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs = pd.DataFrame({"cell": ["c%d" % i for i in range(80)],
                                "group": pd.Categorical(["a", "b"] * 40)},
                               index=["c%d" % i for i in range(80)])
            ad = anndata.AnnData(X=rng.standard_normal((80, 30)).astype("f4"), obs=obs)
            for comp in ("gzip", "lzf"):
                ad.write_h5ad(os.path.join(d, "anndata_%s.h5ad" % comp), compression=comp)
        note("anndata: 2 files")
    except Exception as e:  # noqa: BLE001
        error("anndata: %r" % e)


def from_h5py(out):
    import h5py
    d = os.path.join(out, "h5py")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(11)
    with h5py.File(os.path.join(d, "h5py_cases.h5"), "w") as f:
        s = h5py.string_dtype()
        words = np.array(["w%d-%s" % (i, "x" * (i % 7)) for i in range(300)], dtype=object)
        f.create_dataset("vlen_contig", data=words, dtype=s)
        f.create_dataset("vlen_chunked", data=words, dtype=s, chunks=(64,))
        f.create_dataset("lzf", data=rng.integers(0, 50, (400, 25)).astype("<i4"),
                         chunks=(100, 25), compression="lzf")
        f.create_dataset("lzf_shuffle", data=np.arange(3000, dtype="<f8"), chunks=(500,),
                         compression="lzf", shuffle=True)
        f.create_dataset("#refs#/a", data=np.arange(12, dtype="<i4"), chunks=(4,))
        f.create_dataset("odd names/with space", data=np.arange(6, dtype="<u1"))
        f.create_dataset("odd names/q?mark", data=np.arange(6, dtype="<u1"))
        f.create_dataset("odd names/pct%41", data=np.arange(6, dtype="<u1"))
        f.create_dataset("subarray", data=np.zeros(20, dtype=[("a", "<i4"), ("b", "<f4", (3,))]),
                         chunks=(5,))
        f["subarray"][:] = [(i, (i, i + 0.5, -i)) for i in range(20)]
        # A dataset whose element type is H5T_ARRAY (NumPy subarray dtype).
        at = f.create_dataset("array_type", shape=(20,), dtype=np.dtype(("<i2", (3,))))
        at.id.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(60, dtype="<i2").reshape(20, 3),
                    mtype=at.id.get_type())
        f.create_dataset("longdouble", data=np.arange(10, dtype=np.longdouble))
        f.create_dataset("f2", data=np.linspace(-2, 2, 33, dtype="<f2"), chunks=(8,))
        f.create_dataset("bool", data=np.arange(40) % 3 == 0, chunks=(16,))
        f.create_dataset("empty", shape=(0,), dtype="<f8", chunks=(10,), maxshape=(None,))
        f.create_dataset("scalar", data=np.float64(3.25))
        f.create_dataset("scalar_str", data="hello", dtype=s)
        f.create_dataset("fixed_str", data=np.array([b"abc", b"de", b"\xff\xfe"], dtype="S4"))
        f.create_dataset("u8_big", data=np.array([0, 2**63 + 5, 2**64 - 1], dtype="<u8"))
        f.create_dataset("nan_inf", data=np.array([np.nan, np.inf, -np.inf, 1.5], dtype="<f8"))
        f.create_dataset("refs", data=[f["lzf"].ref, f["scalar"].ref, f["#refs#/a"].ref],
                         dtype=h5py.ref_dtype)
        e = h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 7}, basetype="u1")
        f.create_dataset("enum", data=np.array([0, 1, 7, 1], dtype="u1"), dtype=e)
        f.create_dataset("vlen_int", data=np.array([np.arange(i) for i in range(1, 5)],
                                                   dtype=object), dtype=h5py.vlen_dtype("i4"))
        f.create_dataset("big_chunks", data=rng.standard_normal((2000, 64)).astype("f4"),
                         chunks=(16, 64), compression="gzip")
        f.attrs["note"] = "written by make_corpus.py"
    # A valid file whose hard links form a cycle: /a/b/up -> /.
    with h5py.File(os.path.join(d, "h5py_cycle.h5"), "w") as f:
        b = f.create_group("a/b")
        b.create_dataset("x", data=np.arange(5, dtype="<i4"))
        b["up"] = f["/"]
    note("h5py: 2 files")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for step in (from_debian, from_hdf5_examples, from_pytables, from_h5repack, from_netcdf,
                 from_hdmf, from_anndata, from_h5py):
        try:
            step(out)
        except Exception as e:  # noqa: BLE001 - report every source, then fail
            error("%s: %r" % (step.__name__, e))
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
