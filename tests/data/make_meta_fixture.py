#!/usr/bin/env python3
"""Writes the HDF5 files that tests/unit/check_h5meta.c describes, and what
h5py says about them.

Usage: make_meta_fixture.py OUTDIR

OUTDIR/meta.h5      datasets of every supported dtype, layouts, filters, fill
                    values, attributes of every kind, deep groups, links
OUTDIR/ext.h5       the target of meta.h5's external link
OUTDIR/big.h5       attributes at the size limits of lib/h5meta.c
OUTDIR/expected.json  h5py's view of every object of meta.h5 reachable by
                    hard links: {"objects": {path: {...}}}, in the shape
                    h5meta_describe gives it, computed independently here.

Run with a python3 that has h5py and numpy (configure's PYTHON_H5).
Everything is generated: no data is downloaded.
"""
import json
import math
import os
import sys

import h5py
import numpy as np

MAX_PATH_BYTES = 1024  # H5CD_MAX_PATH_BYTES
CONTIG_CHUNK_BYTES = 16 * 1024 * 1024  # api-v1: virtual chunk of a contiguous dataset
MAX_ATTR_BYTES = 16 * 1024 * 1024
MAX_ATTR_NODES = 1024 * 1024
MAX_ATTRS = 4096
SOFT_CHAIN = 17  # one more than H5META_MAX_SOFT_LINKS
INT64_MAX = 2**63 - 1
H5PY_FILTER_PARAMS = 16


def add_attrs(obj, f):
    """Attributes of each kind that h5meta must show."""
    a = obj.attrs
    a["int"] = np.int32(-42)
    a["int_be"] = np.array(7, dtype=">i8")
    a["uint64_max"] = np.uint64(2**64 - 1)
    a["float"] = np.float64(1.5)
    a["float32"] = np.float32(0.1)
    a["float16"] = np.float16(-2.5)
    a["nan"] = np.float64("nan")
    a["inf"] = np.float32("-inf")
    a["string"] = np.bytes_(b"fixed text")
    a["vlen_string"] = "vlen \u00e9t\u00e9"
    a["strings"] = np.array([b"a", b"bc", b""], dtype="S4")
    a["vlen_strings"] = np.array(["x", "yz"], dtype=h5py.string_dtype())
    a["array1d"] = np.arange(5, dtype="<i2")
    a["array2d"] = np.arange(6, dtype=">f4").reshape(2, 3) / 4
    a["empty_array"] = np.zeros((0,), dtype="i4")
    a["bool"] = np.bool_(True)
    a["bools"] = np.array([True, False, True])
    a["ref"] = f["deep/a/b/c/d/e/dset"].ref
    a["refs"] = np.array([f["ints"].ref, f["floats/f8_be"].ref], dtype=h5py.ref_dtype)
    a["empty"] = h5py.Empty("f8")
    a["compound"] = np.array((1, 2.0), dtype=[("a", "i4"), ("b", "f8")])
    # binary16 specials: infinities, NaN, smallest normal, a subnormal, largest finite.
    a["halfs"] = np.array([np.inf, -np.inf, np.nan, 2.0**-14, 2.0**-24 * 3, 65504, -0.0],
                          dtype=">f2")
    a.create("enum", data=np.int16(2), dtype=h5py.enum_dtype({"A": 0, "B": 2}, basetype="<i2"))
    a["opaque"] = np.void(b"\x01\x02")


def make_ext(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("target", data=np.arange(4, dtype="<i4"))


def make_meta(path):
    with h5py.File(path, "w") as f:
        ints = f.create_group("ints")
        ints.create_dataset("i1", data=np.arange(-5, 5, dtype="i1"))
        ints.create_dataset("u1", data=np.arange(10, dtype="u1"))
        for size in (2, 4, 8):
            for kind in "iu":
                for order, tag in (("<", "le"), (">", "be")):
                    dt = np.dtype(f"{order}{kind}{size}")
                    ints.create_dataset(f"{kind}{size}_{tag}", data=np.arange(10).astype(dt))
        floats = f.create_group("floats")
        for size in (2, 4, 8):
            for order, tag in (("<", "le"), (">", "be")):
                floats.create_dataset(f"f{size}_{tag}", data=np.linspace(0, 1, 7).astype(f"{order}f{size}"))

        f.create_dataset("strings/s16", data=np.array([b"hello", b"world"], dtype="S16"))
        f.create_dataset("strings/vlen", data=np.array(["a", "bcd"], dtype=h5py.string_dtype()))
        f.create_dataset("misc/bool", data=np.array([True, False]))
        f.create_dataset("misc/compound", data=np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))
        f.create_dataset("misc/enum", data=np.arange(3, dtype="<i2"),
                         dtype=h5py.enum_dtype({"A": 0, "B": 1, "C": 2}, basetype="<i2"))
        f.create_dataset("misc/opaque", data=np.zeros(2, dtype="V8"))
        f.create_dataset("misc/refs", shape=(2,), dtype=h5py.ref_dtype)
        f.create_dataset("misc/vlen_ints", shape=(2,), dtype=h5py.vlen_dtype(np.dtype("i4")))
        f["misc/named_type"] = np.dtype("<i4")

        data = np.arange(200, dtype="<i4").reshape(20, 10)
        f.create_dataset("chunked/gzip", data=data, chunks=(10, 5), compression="gzip",
                         compression_opts=4)
        f.create_dataset("chunked/shuffle_gzip", data=data, chunks=(5, 10), shuffle=True,
                         compression="gzip")
        f.create_dataset("chunked/fletcher32", data=data, chunks=(20, 10), fletcher32=True)
        f.create_dataset("chunked/lzf", data=data, chunks=(4, 4), compression="lzf")
        f.create_dataset("chunked/scaleoffset", data=data, chunks=(20, 10), scaleoffset=0)

        lay = f.create_group("layout")
        lay.create_dataset("contiguous", data=np.arange(1000, dtype="<i2"))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        lay.create_dataset("compact", data=np.arange(12, dtype="<u2").reshape(3, 4), dcpl=dcpl)
        lay.create_dataset("scalar", data=np.float64(3.25))
        lay.create_dataset("empty", data=h5py.Empty("<i4"))
        # Contiguous virtual chunks at the 16 MiB boundary (no data written, the file stays small).
        lay.create_dataset("rows_16m", shape=(5, CONTIG_CHUNK_BYTES), dtype="u1")
        lay.create_dataset("rows_16m_plus", shape=(5, CONTIG_CHUNK_BYTES + 1), dtype="u1")
        lay.create_dataset("rows_8m", shape=(5, CONTIG_CHUNK_BYTES // 2), dtype="u1")
        lay.create_dataset("rows_8m_plus", shape=(5, CONTIG_CHUNK_BYTES // 2 + 1), dtype="u1")
        lay.create_dataset("rows_3d", shape=(5000, 100, 10), dtype="<f8")
        lay.create_dataset("few_rows", shape=(3, 10), dtype="<f8")
        lay.create_dataset("zero_rows", shape=(0, 10), dtype="<f8")
        lay.create_dataset("zero_cols", shape=(10, 0), dtype="<f8")
        layout = h5py.VirtualLayout(shape=(4,), dtype="<i4")
        layout[:] = h5py.VirtualSource("ext.h5", "target", shape=(4,))
        lay.create_virtual_dataset("virtual", layout)

        fill = f.create_group("fill")
        fill.create_dataset("user", shape=(4,), dtype="<i4", fillvalue=-7)
        fill.create_dataset("default", shape=(4,), dtype="<i4")
        fill.create_dataset("nan", shape=(4,), dtype=">f8", fillvalue=np.nan)
        fill.create_dataset("neg_inf", shape=(4,), dtype="<f4", fillvalue=-np.inf)
        fill.create_dataset("half", shape=(4,), dtype="<f2", fillvalue=0.5)
        fill.create_dataset("u8max", shape=(4,), dtype=">u8", fillvalue=2**64 - 1)
        fill.create_dataset("i8min", shape=(4,), dtype="<i8", fillvalue=-(2**63))
        fill.create_dataset("string", shape=(4,), dtype="S8", fillvalue=b"ab")
        fill.create_dataset("bool", shape=(4,), dtype="?", fillvalue=True)

        d = f.create_dataset("deep/a/b/c/d/e/dset", data=np.arange(3, dtype="<i8"))
        add_attrs(d, f)
        add_attrs(f, f)
        add_attrs(f["deep/a/b"], f)
        f["deep/a/rel"] = h5py.SoftLink("b/c")

        links = f.create_group("links")
        links["soft"] = h5py.SoftLink("/deep/a/b/c/d/e/dset")
        links["soft_group"] = h5py.SoftLink("/deep/a")
        links["ext"] = h5py.ExternalLink("ext.h5", "/target")
        links["soft_to_ext"] = h5py.SoftLink("/links/ext")
        links["dangling"] = h5py.SoftLink("/no/such/thing")
        links["loop1"] = h5py.SoftLink("/links/loop2")
        links["loop2"] = h5py.SoftLink("/links/loop1")
        chain = f.create_group("chain")
        chain.create_dataset("target", data=np.arange(2, dtype="u1"))
        chain["s1"] = h5py.SoftLink("/chain/target")
        for i in range(2, SOFT_CHAIN + 1):
            chain[f"s{i}"] = h5py.SoftLink(f"s{i - 1}")

        # An object whose path is exactly MAX_PATH_BYTES long.
        prefix = "/long/"
        f.create_dataset(prefix + "x" * (MAX_PATH_BYTES - len(prefix)), data=np.zeros(1, "u1"))


def make_big(path):
    """Attributes at the limits (dense attribute storage needs the latest format)."""
    with h5py.File(path, "w", libver="latest") as f:
        g = f.create_group("limits")
        side = int(math.isqrt(MAX_ATTR_BYTES))  # 4096 strings of 4096 bytes = 16 MiB
        g.attrs["bytes_n"] = np.full(side, b"x" * side, dtype=f"S{side}")
        g.attrs["bytes_n1"] = np.full(side, b"x" * (side + 1), dtype=f"S{side + 1}")
        g.attrs["nodes_n"] = np.ones(MAX_ATTR_NODES - 1, dtype="u1")  # plus its array: N nodes
        g.attrs["nodes_n1"] = np.ones(MAX_ATTR_NODES, dtype="u1")
        b = f.create_group("budget")  # 4 x 16 MiB fill the 64 MiB budget, then 1 byte more
        for i in range(4):
            b.attrs[f"a{i}"] = np.full(side, b"y" * side, dtype=f"S{side}")
        b.attrs["a4"] = np.uint8(1)
        n = f.create_group("count_n")
        for i in range(MAX_ATTRS):
            n.attrs[f"a{i:05d}"] = np.uint8(i % 256)
        n1 = f.create_group("count_n1")
        for i in range(MAX_ATTRS + 1):
            n1.attrs[f"a{i:05d}"] = np.uint8(i % 256)


def jsonable(v, f):
    """h5py's value as h5meta spells it; None where h5meta gives null."""
    if isinstance(v, h5py.Empty):
        return None
    if isinstance(v, h5py.Reference):
        return f[v].name if v else None
    if isinstance(v, np.ndarray):
        if v.dtype.names is not None or v.dtype.kind == "V":
            return None
        if v.ndim == 0:
            return jsonable(v[()], f)
        return [jsonable(x, f) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return v if v <= INT64_MAX else str(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, (bytes, np.bytes_)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(v, str):
        return v
    return None


LAYOUTS = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous",
           h5py.h5d.CHUNKED: "chunked", h5py.h5d.VIRTUAL: "virtual"}
CLASSES = {h5py.h5t.COMPOUND: "compound", h5py.h5t.REFERENCE: "reference",
           h5py.h5t.ARRAY: "array", h5py.h5t.VLEN: "vlen", h5py.h5t.BITFIELD: "bitfield",
           h5py.h5t.TIME: "time"}


def h5type(tid):
    """None for dtypes with a NumPy spelling, else what h5meta calls the type."""
    cls = tid.get_class()
    if cls == h5py.h5t.STRING:
        return "vlen string" if tid.is_variable_str() else None
    if cls in (h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.ENUM, h5py.h5t.OPAQUE):
        return None
    if cls == h5py.h5t.BITFIELD and tid.get_precision() == 8 * tid.get_size():
        return None  # read as unsigned integers, as h5py reads them
    return CLASSES.get(cls, "unknown")


def structured(dt):
    """A compound dtype in Zarr's list spelling, fields in offset order (as h5meta gives it)."""
    fields = sorted(dt.fields.items(), key=lambda kv: kv[1][1])
    out = []
    for name, (fdt, _offset) in fields:
        if fdt.subdtype is not None:
            base, shape = fdt.subdtype
            out.append([name, base.str, list(shape)])
        elif fdt.fields is not None:
            out.append([name, structured(fdt)])
        else:
            out.append([name, fdt.str])
    return out


def contiguous_chunks(shape, itemsize):
    if len(shape) == 0:
        return []
    row = itemsize * math.prod(shape[1:])
    rows = 1 if row == 0 else CONTIG_CHUNK_BYTES // row
    return [max(1, min(rows, shape[0]))] + list(shape[1:])


def describe_dataset(name, d, f):
    dcpl = d.id.get_create_plist()
    layout = LAYOUTS[dcpl.get_layout()]
    htype = h5type(d.id.get_type())
    shape = None if d.shape is None else list(d.shape)
    if shape is None or layout == "virtual":
        chunks = None
    elif layout == "chunked":
        chunks = list(d.chunks)
    elif layout == "compact" or not shape:
        chunks = shape
    else:
        chunks = contiguous_chunks(shape, d.id.get_type().get_size())
    filters = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, fname = dcpl.get_filter(i)
        entry = {"id": code, "name": fname.decode(), "params": list(values)}
        if len(values) > H5PY_FILTER_PARAMS:
            # h5py 3.7 reads at most 16 parameters and pads with whatever follows.
            entry["params"] = list(values[:H5PY_FILTER_PARAMS])
            entry["params_truncated_by_h5py"] = True
        filters.append(entry)
    out = {"path": name, "kind": "dataset", "shape": shape, "chunks": chunks,
           "dtype": (structured(d.dtype) if htype == "compound" else None) if htype
           else d.dtype.str, "layout": layout, "filters": filters,
           "fill_value": None if htype or d.dtype.kind == "V" else jsonable(d.fillvalue, f),
           "attrs": {k: jsonable(d.attrs[k], f) for k in d.attrs},
           "object_id": "%x" % h5py.h5o.get_info(d.id).addr}
    if htype == "array" and d.dtype.subdtype is not None:
        base, sub = d.dtype.subdtype  # NumPy's (base, shape) subarray dtype
        out["dtype"] = [structured(base) if base.fields else base.str, list(sub)]
    if htype and out["dtype"] is None:
        out["h5type"] = htype
    return out


def describe_group(name, g, f):
    return {"path": name, "kind": "group", "members": sorted(g.keys()),
            "attrs": {k: jsonable(g.attrs[k], f) for k in g.attrs},
            "object_id": "%x" % h5py.h5o.get_info(g.id).addr}


def expected(path):
    objects = {}
    with h5py.File(path, "r") as f:
        objects["/"] = describe_group("/", f, f)

        def visit(name, obj):
            full = "/" + name
            if isinstance(obj, h5py.Dataset):
                objects[full] = describe_dataset(full, obj, f)
            elif isinstance(obj, h5py.Group):
                objects[full] = describe_group(full, obj, f)

        f.visititems(visit)
    return {"objects": objects}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_meta_fixture.py OUTDIR")
    out = sys.argv[1]
    make_ext(os.path.join(out, "ext.h5"))
    make_meta(os.path.join(out, "meta.h5"))
    make_big(os.path.join(out, "big.h5"))
    with open(os.path.join(out, "expected.json"), "w") as fp:
        json.dump(expected(os.path.join(out, "meta.h5")), fp, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
