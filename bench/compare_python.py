#!/usr/bin/python3
"""compare_python.py - before/after table of the Python package's paths
(bench/run --sections python), pooled over several runs of each side.

  bench/compare_python.py BEFORE.json... -- AFTER.json...
  bench/compare_python.py RUN.json...          (one side: the paths compared)

Per workload, cell (cold, warmN) and path, every timed run of every file of
a side is pooled: the median with min-max and the number of runs.  The
comparison between paths is paired: bench.py runs the paths in turns (each
round runs every path once), and a path's paired ratio is the median, over
all rounds of all files, of its time over the batched store's (py-zarr) in
the same round; above 1, the store is faster.  On a shared, loaded machine
single runs swing by 2x and the load moves within a run, so the medians of
the paths can differ by more than the paths do; the paired ratios do not.
The last column says whether the store is the fastest path: no paired ratio
below 1 (files written before the bench ran paths in turns have no rounds:
then the medians decide, marked "(medians)").
"""
import json
import statistics
import sys

PEERS = ("py-zarr", "zarr-http", "py-h5py")
ORDER = ("slab", "scattered", "small", "frames", "listing")


def pool(paths):
    """{(wl, cell): {peer: {"times": [...], "ratios": [...]}}} over the files."""
    cells = {}
    for path in paths:
        with open(path) as fh:
            res = json.load(fh)
        for wl, peers in res.get("python", {}).items():
            for peer, byc in peers.items():
                for cell, c in byc.items():
                    p = cells.setdefault((wl, cell), {}).setdefault(
                        peer, {"times": [], "ratios": []})
                    if c.get("ok"):
                        p["times"].extend(c.get("times") or [])
                        p["ratios"].extend(c.get("paired_ratios") or [])
    return cells


def fmt(p):
    times = p.get("times") if p else None
    if not times:
        return "-"
    return "%.0f (%.0f-%.0f, n=%d)" % (statistics.median(times) * 1e3, min(times) * 1e3,
                                       max(times) * 1e3, len(times))


def fmt_ratio(p):
    ratios = p.get("ratios") if p else None
    if not ratios:
        return "-"
    return "%.2fx (n=%d)" % (statistics.median(ratios), len(ratios))


def fastest(peers):
    others = [peers.get(p) or {} for p in PEERS[1:]]
    if peers.get("py-zarr", {}).get("times") and all(o.get("ratios") for o in others
                                                      if o.get("times")):
        return "yes" if all(statistics.median(o["ratios"]) >= 1 for o in others
                            if o.get("ratios")) else "no"
    med = {p: statistics.median(v["times"]) for p, v in peers.items() if v.get("times")}
    if not med:
        return "-"
    return ("yes" if min(med, key=med.get) == "py-zarr" else "no") + " (medians)"


def table(sides, names):
    head = ["workload", "cell"]
    for name in names:
        sfx = " " + name if name else ""
        head += ["%s%s" % (p, sfx) for p in PEERS]
        head += ["%s / py-zarr%s" % (p, sfx) for p in PEERS[1:]]
    head.append("py-zarr fastest" + (", " + " / ".join(names) if len(names) > 1 else ""))
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    keys = sorted(set().union(*sides),
                  key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k))
    for key in keys:
        row = list(key)
        for side in sides:
            got = side.get(key, {})
            row += [fmt(got.get(p)) for p in PEERS]
            row += [fmt_ratio(got.get(p)) for p in PEERS[1:]]
        row.append(" / ".join(fastest(side.get(key, {})) for side in sides))
        print("| " + " | ".join(row) + " |")


def main(argv):
    if not argv or argv[0] == "--" or argv[-1] == "--":
        raise SystemExit(__doc__.split("\n\n")[1])
    if "--" not in argv:
        table([pool(argv)], [""])
        return
    cut = argv.index("--")
    table([pool(argv[:cut]), pool(argv[cut + 1:])], ["before", "after"])


if __name__ == "__main__":
    main(sys.argv[1:])
