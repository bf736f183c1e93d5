#!/usr/bin/python3
"""compare_python.py - before/after table of the Python package's paths
(bench/run --sections python), pooled over several runs of each side.

  bench/compare_python.py BEFORE.json... -- AFTER.json...

Every timed run of a cell in every file of a side is pooled: the table gives
the median with min-max and the number of runs, per workload, cell (cold,
warmN) and path, and whether the batched store (py-zarr) has the lowest
median.  On a shared, loaded machine single runs swing by 2x; pooling
several runs made back to back (before, after, before, ...) is what makes
the comparison fair.
"""
import json
import statistics
import sys

PEERS = ("py-zarr", "zarr-http", "py-h5py")
ORDER = ("slab", "scattered", "small", "frames", "listing")


def pool(paths):
    cells = {}
    for path in paths:
        with open(path) as fh:
            res = json.load(fh)
        for wl, peers in res.get("python", {}).items():
            for peer, byc in peers.items():
                for cell, c in byc.items():
                    times = c.get("times") if c.get("ok") else None
                    cells.setdefault((wl, cell), {}).setdefault(peer, []).extend(times or [])
    return cells


def fmt(times):
    if not times:
        return "-"
    return "%.0f (%.0f-%.0f, n=%d)" % (statistics.median(times) * 1e3, min(times) * 1e3,
                                       max(times) * 1e3, len(times))


def fastest(peers):
    med = {p: statistics.median(t) for p, t in peers.items() if t}
    return "-" if not med else ("yes" if min(med, key=med.get) == "py-zarr" else "no")


def main(argv):
    if "--" not in argv or argv.index("--") == 0 or argv.index("--") == len(argv) - 1:
        raise SystemExit(__doc__.split("\n\n")[1])
    cut = argv.index("--")
    before, after = pool(argv[:cut]), pool(argv[cut + 1:])
    head = ["workload", "cell"] + ["%s before" % p for p in PEERS] + \
        ["%s after" % p for p in PEERS] + ["py-zarr fastest, before / after"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    keys = sorted(set(before) | set(after),
                  key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k))
    for key in keys:
        b, a = before.get(key, {}), after.get(key, {})
        row = list(key) + [fmt(b.get(p)) for p in PEERS] + [fmt(a.get(p)) for p in PEERS] + \
            ["%s / %s" % (fastest(b), fastest(a))]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
