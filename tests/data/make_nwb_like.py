#!/usr/bin/python3
"""make_nwb_like.py - writes an NWB-like HDF5 file that exercises every kind
of object, type, layout and filter the client tests (tests/integration/
test_clients.py, test_docs_curl.sh) read through the daemon.

Usage: make_nwb_like.py OUTDIR

Writes OUTDIR/session.nwb, OUTDIR/other.h5 (the target of session.nwb's
external link, so that following the link would show data) and
OUTDIR/manifest.json (what was written, what was skipped and why).
Deterministic: fixed seeds, fixed creation order, no object timestamps, so
two runs write byte-identical files with the same libhdf5.
Needs h5py and numpy (Debian's /usr/bin/python3 has both).  Filters that
this libhdf5 cannot write (the lz4 and bzip2 plugins, szip, n-bit) are left
out with a note on stdout and in the manifest.

Layout of session.nwb (what the docs' examples may rely on):
  /                                   attrs nwb_version, identifier, ...
  /acquisition/ElectricalSeries/data  int16 (20000, 32), chunks (2000, 32),
                                      shuffle+gzip; attrs conversion,
                                      resolution, unit, offset
  /acquisition/ElectricalSeries/timestamps   float64 (20000,), chunks (5000,), gzip
  /acquisition/ElectricalSeries/electrodes   int32 (32,); attr "table": object
                                      reference to /general/extracellular_ephys/electrodes
  /acquisition/raw_bytes              uint8 (4096,), chunks (1024,), gzip:
                                      random chunks stored with deflate skipped
  /acquisition/data_link              soft link to /acquisition/ElectricalSeries/data
  /acquisition/external_raw           external link to other.h5:/data (never followed)
  /general/experimenter               vlen str (2,);  /general/institution scalar vlen str
  /general/session_id                 |S16 scalar;    /general/compact_ids int16 (10,) compact
  /general/extracellular_ephys/electrodes/{id,x,y,z,location,group,filtering}
                                      location: vlen str (32,) chunked; group: object
                                      references to /general/extracellular_ephys/shank{0,1};
                                      filtering: |S8 (32,)
  /processing/ecephys/LFP/data        float32 (4000, 32), chunks (500, 32), lz4 (32004)
  /processing/ecephys/bz2_data        int32 (3000,), chunks (700,), bzip2 (307)
  /processing/ecephys/checksummed     int16 (1000, 8), chunks (300, 8), fletcher32+gzip
  /processing/ecephys/scaled_int      int32 (5000,), chunks (1024,), scale-offset (ints)
  /processing/ecephys/scaled_float    float32 (3000,), chunks (512,), scale-offset 3 digits
  /processing/ecephys/szip_data       int32 (4000,), chunks (1000,), szip
  /processing/ecephys/nbit_data       12-bit int32 (1000,), chunks (256,), n-bit
  /processing/ecephys/events          compound (50,) {id <i4, t <f8, label |S8,
                                      pos <f4 (3,)}, chunks (16,), gzip
  /units/spike_times                  float64 (120000,), chunks (10000,), gzip
  /units/spike_times_index            uint32 (10,); attr "target": reference to spike_times
  /units/id                           int64 (10,) contiguous
  /units/waveform_mean                >f8 (10, 40) contiguous (big-endian)
  /units/uint64_ids                   uint64 (12,), chunks (4,), fill 2^64-1, values
                                      above 2^63, chunks 1 and 2 never written
  /intervals/trials/{start_time,stop_time}  float64 (25,) contiguous
  /intervals/trials/correct           bool (5000,), chunks (1000,)
  /intervals/trials/tags              vlen str (25,) contiguous
  /stimulus/templates/movie           uint8 (21, 17, 16), chunks (5, 8, 8), gzip (edge chunks)
  /stimulus/presentation/contrast     float64 (10, 10) contiguous, NaN inside
  /analysis/sparse                    int32 (100, 100), chunks (10, 10), fill -7,
                                      only 10 chunks written
  /analysis/sparse_float              float64 (40,), chunks (10,), fill NaN, chunk 1 written
  /analysis/scalar                    float64 scalar;  /analysis/scalar_int int32 scalar
  /analysis/empty                     float64 (0,) contiguous
  /analysis/empty_chunked             int16 (0, 3), chunks (8, 3), maxshape (None, 3)
  /analysis/refs                      object references (4,) to datasets, one null
  /analysis/region_refs               region references (2,)   (no Zarr form)
  /analysis/ragged                    vlen int32 sequences (3,) (no Zarr form)
"""
import ctypes
import json
import os
import sys

import h5py
import numpy as np

NOTES = []  # parts left out, and why


def note(msg):
    NOTES.append(msg)
    print("make_nwb_like: NOTE: %s" % msg, flush=True)


def group(parent, name):
    """A group without object timestamps (byte-identical files)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    gid = h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl)
    return h5py.Group(gid)


def dset(parent, name, **kw):
    kw.setdefault("track_times", False)
    return parent.create_dataset(name, **kw)


def nwb(obj, neurodata_type, description, namespace="core"):
    obj.attrs["neurodata_type"] = neurodata_type
    obj.attrs["namespace"] = namespace
    obj.attrs["description"] = description
    obj.attrs["object_id"] = "%08x-0000-4000-8000-%012x" % (
        sum(map(ord, obj.name)) * 7919 % 2**32, len(obj.name))


def filter_available(fid):
    try:
        return bool(h5py.h5z.filter_avail(fid))
    except Exception:
        return False


def try_filtered(parent, name, data, chunks, what, **kw):
    """A dataset written through a filter that may be missing; None if it is."""
    try:
        d = dset(parent, name, data=data, chunks=chunks, **kw)
        d.file.flush()
        back = d[...]
        if not np.array_equal(back, data):
            raise ValueError("read back differs")
        return d
    except Exception as e:  # noqa: BLE001 - any failure means: leave the part out
        if name in parent:
            del parent[name]
        note("%s left out: h5py could not write it (%s)" % (what, e))
        return None


def nbit_dataset(parent, name, data):
    """n-bit needs H5Pset_nbit, which h5py does not wrap: call libhdf5 itself."""
    try:
        lib = ctypes.CDLL(None)
        fn = getattr(lib, "H5Pset_nbit", None)
        if fn is None:
            for cand in ("libhdf5_serial.so", "libhdf5.so"):
                try:
                    fn = ctypes.CDLL(cand).H5Pset_nbit
                    break
                except (OSError, AttributeError):
                    continue
        if fn is None:
            raise OSError("no H5Pset_nbit in the loaded libhdf5")
        fn.argtypes = [ctypes.c_int64]
        fn.restype = ctypes.c_int
        tid = h5py.h5t.STD_I32LE.copy()
        tid.set_precision(12)
        tid.set_offset(0)
        space = h5py.h5s.create_simple(data.shape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((256,))
        dcpl.set_obj_track_times(False)
        if fn(dcpl.id) < 0:
            raise OSError("H5Pset_nbit failed")
        d = h5py.Dataset(h5py.h5d.create(parent.id, name.encode(), tid, space, dcpl=dcpl))
        d[...] = data
        if not np.array_equal(d[...], data):
            raise ValueError("read back differs")
        return d
    except Exception as e:  # noqa: BLE001
        if name in parent:
            del parent[name]
        note("n-bit dataset left out: %s" % e)
        return None


def compact_dataset(parent, name, data):
    space = h5py.h5s.create_simple(data.shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    dcpl.set_obj_track_times(False)
    tid = h5py.h5t.py_create(data.dtype)
    d = h5py.Dataset(h5py.h5d.create(parent.id, name.encode(), tid, space, dcpl=dcpl))
    d[...] = data
    return d


def write_other(path):
    with h5py.File(path, "w") as f:
        dset(f, "data", data=np.full((64,), 12345, dtype="i4"))
        f.attrs["note"] = "target of session.nwb's external link: must never be read"


def write_session(path):
    rng = np.random.default_rng(20240601)
    f = h5py.File(path, "w", libver="earliest")
    root = f
    root.attrs["nwb_version"] = "2.6.0"
    root.attrs["namespace"] = "core"
    root.attrs["neurodata_type"] = "NWBFile"
    root.attrs["identifier"] = "h5chunkd-test-session"
    root.attrs["session_description"] = "synthetic NWB-like file for client tests \u00b5V"
    root.attrs["session_start_time"] = "2024-06-01T12:00:00+00:00"
    root.attrs["file_create_date"] = np.array(["2024-06-01T12:00:00+00:00"],
                                              dtype=h5py.string_dtype())
    root.attrs["nan_attr"] = np.float64("nan")
    root.attrs["inf_attr"] = np.float64("inf")
    root.attrs["int_array"] = np.arange(5, dtype="i8") - 2
    root.attrs["float_array"] = np.array([0.5, np.nan, -1.25], dtype="f8")
    root.attrs["matrix"] = np.arange(6, dtype="i4").reshape(2, 3)
    root.attrs["flag"] = np.bool_(True)
    root.attrs["fixed_str"] = np.bytes_(b"fixed8!!")
    root.attrs["uint_big"] = np.uint64(2**63 + 5)
    root.attrs["empty_attr"] = h5py.Empty("f4")

    # -- /general
    general = group(root, "general")
    nwb(general, "LabMetaData", "session metadata")
    dset(general, "experimenter", data=np.array(["Doe, Jane", "Roe, Richard \u00e9"],
                                                dtype=h5py.string_dtype()))
    dset(general, "institution", data="Example Institute", dtype=h5py.string_dtype())
    dset(general, "session_id", data=np.bytes_(b"sess-0042"), dtype="S16")
    compact_dataset(general, "compact_ids", np.arange(10, dtype="<i2") * 3 - 7)
    devices = group(general, "devices")
    probe = group(devices, "probe0")
    nwb(probe, "Device", "a 32-channel probe")
    probe.attrs["manufacturer"] = "Example"
    ecephys_meta = group(general, "extracellular_ephys")
    shanks = []
    for i in range(2):
        s = group(ecephys_meta, "shank%d" % i)
        nwb(s, "ElectrodeGroup", "shank %d" % i)
        s.attrs["location"] = "CA1" if i == 0 else "CA3"
        s.attrs["device"] = probe.ref  # reference attribute
        shanks.append(s)
    el = group(ecephys_meta, "electrodes")
    nwb(el, "DynamicTable", "electrodes table")
    el.attrs["colnames"] = np.array(["x", "y", "z", "location", "group", "filtering"],
                                    dtype=h5py.string_dtype())
    dset(el, "id", data=np.arange(32, dtype="i8"))
    for axis, scale in (("x", 1.0), ("y", 20.0), ("z", -3.5)):
        col = dset(el, axis, data=(np.arange(32) * scale).astype("f8"))
        nwb(col, "VectorData", "electrode %s position (um)" % axis, namespace="hdmf-common")
    loc = dset(el, "location", data=np.array(["CA1" if i < 16 else "CA3 stratum \u03b1"
                                              for i in range(32)], dtype=object),
               dtype=h5py.string_dtype(), chunks=(10,))
    nwb(loc, "VectorData", "brain area", namespace="hdmf-common")
    grp = dset(el, "group", shape=(32,), dtype=h5py.ref_dtype)
    grp[...] = np.array([shanks[i // 16].ref for i in range(32)], dtype=h5py.ref_dtype)
    nwb(grp, "VectorData", "electrode group", namespace="hdmf-common")
    dset(el, "filtering", data=np.array([b"none", b"hp300Hz"] * 16, dtype="S8"))

    # -- /acquisition
    acq = group(root, "acquisition")
    es = group(acq, "ElectricalSeries")
    nwb(es, "ElectricalSeries", "raw voltage")
    es.attrs["comments"] = "no comments"
    t = np.arange(20000)[:, None]
    ch = np.arange(32)[None, :]
    signal = (800 * np.sin(t / (50.0 + ch)) + rng.normal(0, 40, (20000, 32))).astype("i2")
    signal[0, 0], signal[1, 0] = -32768, 32767
    data = dset(es, "data", data=signal, chunks=(2000, 32), compression="gzip",
                compression_opts=4, shuffle=True)
    data.attrs["conversion"] = np.float32(1.9e-7)
    data.attrs["resolution"] = np.float64(-1.0)
    data.attrs["offset"] = np.float64(0.0)
    data.attrs["unit"] = "volts"
    ts = dset(es, "timestamps", data=1000.0 + np.arange(20000) / 30000.0, chunks=(5000,),
              compression="gzip")
    ts.attrs["interval"] = np.int32(1)
    ts.attrs["unit"] = "seconds"
    elr = dset(es, "electrodes", data=np.arange(32, dtype="i4"))
    nwb(elr, "DynamicTableRegion", "electrodes of this series", namespace="hdmf-common")
    elr.attrs["table"] = el.ref
    raw = np.zeros(4096, dtype="u1")
    raw[:2048] = rng.integers(0, 256, 2048, dtype="u1")  # incompressible: deflate skipped
    dset(acq, "raw_bytes", data=raw, chunks=(1024,), compression="gzip")
    acq["data_link"] = h5py.SoftLink("/acquisition/ElectricalSeries/data")
    acq["external_raw"] = h5py.ExternalLink("other.h5", "/data")

    # -- /processing/ecephys: every filter
    proc = group(root, "processing")
    ecephys = group(proc, "ecephys")
    nwb(ecephys, "ProcessingModule", "filtered data")
    lfp = group(ecephys, "LFP")
    nwb(lfp, "LFP", "low-pass filtered")
    lfp_data = (signal[:4000].astype("f4") * np.float32(0.25))
    if filter_available(32004):
        d = try_filtered(lfp, "data", lfp_data, (500, 32), "lz4 (32004) dataset",
                         compression=32004)
        if d is not None:
            d.attrs["filter"] = "lz4"
    else:
        note("lz4 dataset left out: HDF5 filter 32004 (hdf5-filter-plugin) not available")
    if filter_available(307):
        try_filtered(ecephys, "bz2_data", (np.arange(3000) % 97 * 1000 - 5).astype("i4"),
                     (700,), "bzip2 (307) dataset", compression=307)
    else:
        note("bzip2 dataset left out: HDF5 filter 307 not available")
    dset(ecephys, "checksummed", data=signal[:1000, :8], chunks=(300, 8), fletcher32=True,
         compression="gzip")
    dset(ecephys, "scaled_int", data=(np.arange(5000) % 300 + 1000).astype("i4"),
         chunks=(1024,), scaleoffset=0)
    dset(ecephys, "scaled_float", data=(np.arange(3000) / 7.0 - 100).astype("f4"),
         chunks=(512,), scaleoffset=3)
    if filter_available(h5py.h5z.FILTER_SZIP):
        try_filtered(ecephys, "szip_data", (np.arange(4000) // 3).astype("i4"), (1000,),
                     "szip dataset", compression="szip")
    else:
        note("szip dataset left out: szip not available")
    nbit_dataset(ecephys, "nbit_data", (np.arange(1000) * 3 % 4096 - 2048).astype("i4"))
    ev_type = np.dtype([("id", "<i4"), ("t", "<f8"), ("label", "S8"), ("pos", "<f4", (3,))])
    ev = np.zeros(50, dtype=ev_type)
    ev["id"] = np.arange(50) * 2 - 10
    ev["t"] = np.arange(50) * 0.125
    ev["label"] = [b"stim%d" % (i % 4) for i in range(50)]
    ev["pos"] = np.arange(150, dtype="f4").reshape(50, 3) / 4
    evd = dset(ecephys, "events", data=ev, chunks=(16,), compression="gzip")
    nwb(evd, "EventsTable", "compound events table", namespace="ndx-events")

    # -- /units
    units = group(root, "units")
    nwb(units, "Units", "sorted units")
    units.attrs["colnames"] = np.array(["spike_times", "waveform_mean"],
                                       dtype=h5py.string_dtype())
    st = dset(units, "spike_times", data=np.sort(rng.uniform(0, 600, 120000)),
              chunks=(10000,), compression="gzip")
    nwb(st, "VectorData", "spike times", namespace="hdmf-common")
    sti = dset(units, "spike_times_index", data=(np.arange(1, 11) * 12000).astype("u4"))
    nwb(sti, "VectorIndex", "index", namespace="hdmf-common")
    sti.attrs["target"] = st.ref
    dset(units, "id", data=np.arange(10, dtype="i8"))
    dset(units, "waveform_mean", data=rng.normal(0, 1, (10, 40)).astype(">f8"))
    ids = dset(units, "uint64_ids", shape=(12,), dtype="<u8", chunks=(4,), fillvalue=2**64 - 1)
    ids[:4] = np.array([0, 1, 2**63 + 5, 2**64 - 2], dtype="<u8")

    # -- /intervals/trials
    intervals = group(root, "intervals")
    trials = group(intervals, "trials")
    nwb(trials, "TimeIntervals", "trials")
    trials.attrs["colnames"] = np.array(["start_time", "stop_time", "correct", "tags"],
                                        dtype=h5py.string_dtype())
    dset(trials, "start_time", data=np.arange(25) * 10.0)
    dset(trials, "stop_time", data=np.arange(25) * 10.0 + 7.5)
    dset(trials, "correct", data=(np.arange(5000) % 3 == 0), chunks=(1000,))
    dset(trials, "tags", data=np.array(["go" if i % 2 else "no-go \u2713" for i in range(25)],
                                       dtype=object), dtype=h5py.string_dtype())

    # -- /stimulus
    stim = group(root, "stimulus")
    templates = group(stim, "templates")
    movie = (np.arange(21 * 17 * 16) % 251).astype("u1").reshape(21, 17, 16)
    mv = dset(templates, "movie", data=movie, chunks=(5, 8, 8), compression="gzip")
    nwb(mv, "OpticalSeries", "a small movie")
    mv.attrs["field_of_view"] = np.array([0.1, 0.2], dtype="f4")
    pres = group(stim, "presentation")
    contrast = np.linspace(0, 1, 100).reshape(10, 10)
    contrast[3, 4] = np.nan
    contrast[7, 7] = -np.inf
    dset(pres, "contrast", data=contrast)

    # -- /analysis: fill values, scalars, empty, references, unsupported types
    an = group(root, "analysis")
    sparse = dset(an, "sparse", shape=(100, 100), dtype="i4", chunks=(10, 10), fillvalue=-7)
    for k in range(10):
        i, j = (k * 3) % 10, (k * 7) % 10
        sparse[i * 10:(i + 1) * 10, j * 10:(j + 1) * 10] = np.arange(100).reshape(10, 10) + k
    sf = dset(an, "sparse_float", shape=(40,), dtype="f8", chunks=(10,), fillvalue=np.nan)
    sf[10:20] = np.arange(10) / 4.0
    dset(an, "scalar", data=np.float64(2.718281828459045))
    dset(an, "scalar_int", data=np.int32(-123456))
    dset(an, "empty", shape=(0,), dtype="f8")
    dset(an, "empty_chunked", shape=(0, 3), maxshape=(None, 3), dtype="i2", chunks=(8, 3))
    refs = dset(an, "refs", shape=(4,), dtype=h5py.ref_dtype)
    refs[0] = data.ref
    refs[1] = ts.ref
    refs[2] = st.ref  # refs[3] stays a null reference
    rr = dset(an, "region_refs", shape=(2,), dtype=h5py.regionref_dtype)
    rr[0] = ts.regionref[0:10]
    rr[1] = ts.regionref[100:110]
    rag = dset(an, "ragged", shape=(3,), dtype=h5py.vlen_dtype(np.dtype("i4")))
    rag[0] = np.arange(3, dtype="i4")
    rag[1] = np.arange(0, dtype="i4")
    rag[2] = np.arange(5, dtype="i4") * -1
    an.attrs["refs_attr"] = np.array([data.ref, ts.ref], dtype=h5py.ref_dtype)
    f.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write_other(os.path.join(out, "other.h5"))
    write_session(os.path.join(out, "session.nwb"))
    manifest = {"files": ["session.nwb", "other.h5"], "notes": NOTES,
                "hdf5_version": h5py.version.hdf5_version}
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    print("make_nwb_like: wrote %s/session.nwb (%d bytes)%s"
          % (out, os.path.getsize(os.path.join(out, "session.nwb")),
             ", %d parts left out" % len(NOTES) if NOTES else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
