#!/usr/bin/python3
"""test_chunkindex.py - the daemon's own chunk-index reader (lib/chunkwalk.c
over lib/h5chunkindex.c) on the hot path, against h5py on the same files.

Files: h5py-written, one per index kind and rank (version-1 B-tree, the
default; with libver='latest': fixed array, extensible array with one
unlimited dimension, version-2 B-tree with two, single chunk, implicit
(no filters, early allocation)), ranks 1-3, gzip+shuffle and no filter,
chunks never written; and the HDF5 files Debian ships with PyTables and
h5py.  All are served by nginx on loopback.

For every chunked dataset: /v1/meta first (the worker describes it), then
every chunk through POST /v1/chunks in two batches (a third of the keys:
a routed walk; the rest: more than half of the dataset, a full listing):
bytes and filter mask equal h5py's read_direct_chunk, never-written chunks
404 chunk_not_allocated.  /v1/stats must show that the lookups were the
daemon's (walk_lookups grew by the keys, worker_requests and h5_lookups did
not move) and that index_fallbacks stayed 0, for Debian's files too (old
PyTables files have data layout messages of versions 1 and 2).

Damaged copies (a B-tree node's signature, a child address, a fixed-array
data block's checksum, a leaf's key off its chunk boundary): every answer
is either the original chunk's bytes or a clear 422, which the reader gives
itself when the index breaks the format (libhdf5 answers the damaged key
with another chunk's bytes) or libhdf5 gives after a fallback
(index_fallbacks grows); the daemon lives.  About 20 s; exit status 0 pass, 1 fail, 77 skip (automake).
Environment: H5CHUNKD_BIN, NGINX_BIN, TESTS_SRCDIR, KEEP_TMP=1.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import h5peers  # noqa: E402

NAME = "test_chunkindex"
BUDGET_S = 80  # the whole test; past it the test fails
DEBIAN_PACKAGES = ("python-tables-data", "python3-h5py")


SUITE = h5peers.Suite(NAME)
log, fail, check = SUITE.log, SUITE.fail, SUITE.check


# ---------------------------------------------------------------- files

def early_dataset(f, name, shape, chunks, dtype, data):
    """A dataset with early allocation: libver='latest' gives it an implicit index."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    space = h5py.h5s.create_simple(shape)
    tid = h5py.h5t.py_create(np.dtype(dtype))
    h5py.h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl)
    f[name][...] = data


def sparse_fill(ds, rng):
    """Writes about two chunks in three: the rest are never written."""
    for idx in np.ndindex(*h5peers.chunk_grid(ds.shape, ds.chunks)):
        if rng.random() < 0.66:
            region = tuple(slice(i * c, min((i + 1) * c, s))
                           for i, c, s in zip(idx, ds.chunks, ds.shape))
            block = [r.stop - r.start for r in region]
            ds[region] = rng.integers(0, 1000, size=block).astype(ds.dtype)


CASES = [  # name, shape, chunks, maxshape
    ("r1", (1000,), (7,), None),
    ("r2", (60, 50), (7, 9), None),
    ("r3", (20, 18, 16), (6, 5, 4), None),
]


def write_file(path, libver, rng):
    """Ranks 1-3 x (gzip+shuffle, none) x (full, sparse) per index kind."""
    kw = {"libver": "latest"} if libver == "latest" else {}
    with h5py.File(path, "w", **kw) as f:
        for name, shape, chunks, _ in CASES:
            for filt in ("gzip", "none"):
                opts = {"compression": "gzip", "shuffle": True} if filt == "gzip" else {}
                for fill in ("full", "sparse"):
                    for kind, maxshape in kinds(libver, shape):
                        ds = f.create_dataset("%s_%s_%s_%s" % (kind, name, filt, fill), shape,
                                              "f4", chunks=chunks, maxshape=maxshape, **opts)
                        if fill == "full":
                            ds[...] = rng.random(shape).astype("f4")
                        else:
                            sparse_fill(ds, rng)
            if libver == "latest":
                f.create_dataset("single_%s" % name, data=rng.random(shape).astype("f4"),
                                 chunks=shape, compression="gzip")
                f.create_dataset("single_raw_%s" % name, data=rng.random(shape).astype("f4"),
                                 chunks=shape)
                early_dataset(f, "implicit_%s" % name, shape, chunks, "f4",
                              rng.random(shape).astype("f4"))


def kinds(libver, shape):
    if libver != "latest":
        return [("btree1", None)]
    out = [("farray", None), ("earray", (None,) + shape[1:])]
    if len(shape) >= 2:
        out.append(("btree2", (None, None) + shape[2:]))
    return out


def debian_files(dest):
    """Copies the HDF5 files Debian's packages ship; [] when none is installed."""
    out = []
    for pkg in DEBIAN_PACKAGES:
        r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, timeout=60)
        for p in r.stdout.split("\n") if r.returncode == 0 else []:
            if p.endswith(".h5") and os.path.isfile(p):
                rel = os.path.join("debian", pkg, os.path.basename(p))
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copyfile(p, os.path.join(dest, rel))
                out.append(rel)
    return sorted(out)


# ---------------------------------------------------------------- h5py's answers

def chunked_datasets(local):
    """Paths of the chunked datasets h5py can open, and a reason per skipped one."""
    paths = []
    try:
        with h5py.File(local, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.chunks is not None and obj.shape:
                    paths.append("/" + name)
            f.visititems(visit)
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return paths


def expected(local, path):
    """{key: (filter_mask, bytes) or None for a chunk never written}."""
    out = {}
    with h5py.File(local, "r") as f:
        ds = f[path]
        for key in h5peers.all_keys(ds.shape, ds.chunks):
            off = tuple(int(i) * c for i, c in zip(key.split("."), ds.chunks))
            info = ds.id.get_chunk_info_by_coord(off)
            if info.byte_offset is None or info.size == 0:
                out[key] = None
            else:
                mask, data = ds.id.read_direct_chunk(off)
                out[key] = (mask, bytes(data))
    return out


# ---------------------------------------------------------------- the daemon

def stats(d):
    st, _, body = d.get("/v1/stats")
    if st != 200:
        raise h5peers.Fatal("/v1/stats answered %d" % st)
    return json.loads(body)


def fetch(d, url, path, keys):
    """(status, {key: (head, payload)} or the error body)."""
    st, _, body = d.post_chunks({"url": url, "path": path, "keys": keys})
    if st != 200:
        return st, body
    return st, h5peers.parse_frames(body)


def compare(where, want, frames, keys):
    bad = 0
    for k in keys:
        head, payload = frames.get(k, ({}, b""))
        if want[k] is None:
            ok = head.get("status") == 404 and head.get("error") == "chunk_not_allocated"
        else:
            ok = (head.get("status") == 200 and payload == want[k][1] and
                  head.get("filter_mask") == want[k][0])
        if not ok and bad < 3:
            fail("%s key %s: got %s, want %s" % (where, k, head,
                                                  "unwritten" if want[k] is None else
                                                  "%d bytes mask %d" % (len(want[k][1]),
                                                                        want[k][0])))
        bad += not ok
    return bad == 0


def check_dataset(d, url, local, path, strict):
    """Every chunk of one dataset, located by the daemon's reader; True when
    the daemon served it.  strict=False: a clear refusal of the dataset
    (a type or filter the daemon does not serve) is not a failure."""
    where = "%s:%s" % (os.path.basename(local), path)
    st, _, body = d.get("/v1/meta", url=url, path=path)
    if st != 200:
        check(not strict and h5peers.error_code(body) in h5peers.CLEAR_REFUSALS,
              "%s: /v1/meta %d %s" % (where, st, body[:200]))
        return False
    want = expected(local, path)
    keys = list(want)
    before = stats(d)
    for batch in (keys[::3], [k for i, k in enumerate(keys) if i % 3]):
        if not batch:
            continue
        st, frames = fetch(d, url, path, batch)
        if st != 200:
            check(not strict and h5peers.error_code(frames) in h5peers.CLEAR_REFUSALS,
                  "%s: POST /v1/chunks %d %s" % (where, st, frames[:200]))
            return False
        compare(where, want, frames, batch)
    after = stats(d)
    grew = {n: after.get(n, 0) - before.get(n, 0) for n in ("walk_lookups", "index_fallbacks",
                                              "worker_requests", "h5_lookups")}
    if grew["index_fallbacks"] == 0:
        check(grew["walk_lookups"] == len(keys) and grew["worker_requests"] == 0 and
              grew["h5_lookups"] == 0,
              "%s: lookups not made by the daemon's reader: %s for %d keys"
              % (where, grew, len(keys)))
    else:
        fail("%s: index_fallbacks grew by %d (%s)"
             % (where, grew["index_fallbacks"], d.last_fallback()))
    return True


# ---------------------------------------------------------------- damage

def find_all(data, sig):
    at, out = 0, []
    while True:
        at = data.find(sig, at)
        if at < 0:
            return out
        out.append(at)
        at += 1


def node_holding(data, starts, addresses, window):
    """The first node (by position) among `starts` holding one of `addresses`."""
    packed = [struct.pack("<Q", a) for a in addresses]
    for t in starts:
        node = data[t:t + window]
        if any(p in node for p in packed):
            return t
    return None


def damaged_copies(root, src_rel, path):
    """(name, relpath) of copies of src_rel with one node of path's version-1
    B-tree (rank 1: 24-byte node header, 24-byte keys) damaged."""
    with open(os.path.join(root, src_rel), "rb") as fh:
        data = fh.read()
    with h5py.File(os.path.join(root, src_rel), "r") as f:
        ds = f[path]
        offsets = [ds.id.get_chunk_info(i).byte_offset for i in range(ds.id.get_num_chunks())]
    out = []

    def put(name, at, flip_len=1):
        b = bytearray(data)
        for i in range(flip_len):
            b[at + i] ^= 0xFF
        rel = "damaged_%s.h5" % name
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(bytes(b))
        out.append((name, rel))

    # Chunk B-tree nodes are type 1 (group nodes are type 0); byte 5 is the level.
    nodes = [t for t in find_all(data, b"TREE") if data[t + 4] == 1]
    window = 24 + 65 * 24 + 64 * 8
    leaves = [t for t in nodes if data[t + 5] == 0 and node_holding(data, [t], offsets, window)]
    root_node = node_holding(data, [t for t in nodes if data[t + 5] == 1], leaves, window)
    check(len(leaves) >= 2 and root_node is not None,
          "%s: %d leaves and no root in the file" % (path, len(leaves)))
    if len(leaves) >= 2 and root_node is not None:
        put("leaf_signature", leaves[0])
        # The first key's chunk offset of a later leaf, moved off its chunk
        # boundary (still below the chunk it bounds).
        put("leaf_key", leaves[1] + 24 + 8)
        put("child_address", root_node + 24 + 24 + 5, 3)
    return out


def damaged_latest(root, src_rel):
    with open(os.path.join(root, src_rel), "rb") as fh:
        data = fh.read()
    out = []
    blocks = find_all(data, b"FADB")
    if blocks:
        b = bytearray(data)
        b[blocks[0] + 40] ^= 0x55  # an element: the block's checksum no longer matches
        with open(os.path.join(root, "damaged_fadb.h5"), "wb") as fh:
            fh.write(bytes(b))
        out.append(("fadb_checksum", "damaged_fadb.h5"))
    return out


def check_damaged(d, nginx, root, original, path, name, rel):
    """Each answer is the original bytes or a clear 422; the daemon lives."""
    want = expected(os.path.join(root, original), path)
    keys = list(want)
    before = stats(d)
    st, frames = fetch(d, nginx.url(rel), path, keys)
    where = "damaged %s %s" % (name, path)
    if st != 200:
        check(st == 422 and h5peers.error_code(frames) in h5peers.CLEAR_REFUSALS,
              "%s: %d %s" % (where, st, frames[:200]))
    else:
        wrong = 0
        for k in keys:
            head, payload = frames.get(k, ({}, b""))
            if head.get("status") == 200:
                wrong += want[k] is None or payload != want[k][1]
            elif head.get("status") == 404:
                wrong += want[k] is not None
            else:
                check(head.get("status") == 422, "%s key %s: %s" % (where, k, head))
        check(wrong == 0, "%s: %d chunks answered with wrong bytes" % (where, wrong))
    after = stats(d)
    # Refused at once (the reader proved the index damaged), or handed to libhdf5.
    refused = st == 422 and b"chunk index is damaged" in frames
    check(refused or after.get("index_fallbacks", 0) > before.get("index_fallbacks", 0),
          "%s: neither refused as damaged nor handed to libhdf5 (index_fallbacks %d)"
          % (where, after.get("index_fallbacks", 0)))
    check(d.healthy(), "%s: the daemon is not healthy afterwards" % where)
    log("%s: %s, fallbacks +%d" % (where, "status %d" % st,
                                   after.get("index_fallbacks", 0) - before.get("index_fallbacks", 0)))


# ---------------------------------------------------------------- main

class Daemon(h5peers.Daemon):
    def last_fallback(self):
        try:
            with open(self.logpath, errors="replace") as fh:
                lines = [ln for ln in fh if "instead" in ln]
            return lines[-1].strip()[-200:] if lines else "no log line"
        except OSError:
            return "no log"


def run(tmp):
    binary = os.environ.get("H5CHUNKD_BIN") or "h5chunkd"
    nginx_bin = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    rng = np.random.default_rng(12)
    write_file(os.path.join(root, "btree1.h5"), "earliest", rng)
    write_file(os.path.join(root, "latest.h5"), "latest", rng)
    debian = debian_files(root)
    log("%d Debian files" % len(debian))
    nginx = h5peers.Nginx(nginx_bin, root, os.path.join(tmp, "nginx"))
    nginx.start()
    d = Daemon(binary, os.path.join(tmp, "cache"), os.path.join(tmp, "daemon.log"))
    d.start()
    started = time.monotonic()
    served = 0
    for rel in ("btree1.h5", "latest.h5"):
        for path in chunked_datasets(os.path.join(root, rel)):
            served += check_dataset(d, nginx.url(rel), os.path.join(root, rel), path, True)
    log("h5py files: %d datasets (%.1f s)" % (served, time.monotonic() - started))
    check(served >= 40, "only %d h5py datasets served" % served)
    real = 0
    for rel in debian:
        for path in chunked_datasets(os.path.join(root, rel)):
            if time.monotonic() - started > BUDGET_S * 0.6:
                fail("out of time in the Debian files")
                break
            real += check_dataset(d, nginx.url(rel), os.path.join(root, rel), path, False)
    log("Debian files: %d chunked datasets served" % real)
    check(real >= 20, "only %d chunked datasets of Debian's files served" % real)
    for name, rel in damaged_copies(root, "btree1.h5", "/btree1_r1_none_full"):
        check_damaged(d, nginx, root, "btree1.h5", "/btree1_r1_none_full", name, rel)
    for name, rel in damaged_latest(root, "latest.h5"):
        check_damaged(d, nginx, root, "latest.h5", "/farray_r1_gzip_full", name, rel)
    check(time.monotonic() - started < BUDGET_S, "took more than %d s" % BUDGET_S)
    # Every walk returned the node bytes it counted against the memory budget.
    check(stats(d).get("memory_used_bytes") == 0,
          "memory_used_bytes %s with no request under way" % stats(d).get("memory_used_bytes"))
    SUITE.daemon_clean(d)


def main():
    return SUITE.main(run)


if __name__ == "__main__":
    sys.exit(main())
