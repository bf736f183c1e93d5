#!/usr/bin/python3
"""compare.py - before/after tables of the cold cells of two bench runs.

  bench/compare.py BEFORE.json AFTER.json [--label-before main --label-after branch]

Prints Markdown: per workload, h5chunkd's cold median before and after with
its upstream requests and link bytes, the seed's algorithm (from the after
run), and issue 12's yardsticks: bytes/bandwidth + 3 RTT and the whole file
over the link.  Both runs must have used the same link settings.
"""
import argparse
import json

import report


def cell(c):
    if not c or not c.get("ok"):
        return None
    return c


def fmt(c):
    if c is None:
        return "-", "-", "-"
    return report.ms(c["median"]), "%g" % c["origin_requests"], "%.2f" % (c["link_bytes"] / 1e6)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--label-before", default="before")
    ap.add_argument("--label-after", default="after")
    a = ap.parse_args()
    b, r = json.load(open(a.before)), json.load(open(a.after))
    sb, sa = b["settings"], r["settings"]
    for k in ("rtt_ms", "bw_mbs", "conn_bw_mbs"):
        if sb.get(k) != sa.get(k):
            raise SystemExit("compare: the runs differ in %s: %s vs %s" % (k, sb.get(k), sa.get(k)))
    print("| workload | MB wanted | h5chunkd %s, ms | reqs | link MB | h5chunkd %s, ms | reqs "
          "| link MB | seed, ms | reqs | link MB | bytes/bw + 3 RTT, ms | after / (bytes/bw + 3 RTT) "
          "| seed / after | whole file, ms |" % (a.label_before, a.label_after))
    print("|" + "---|" * 15)
    for wl, spec in r["manifest"]["workloads"].items():
        if wl not in r["cold"]:
            continue
        hb = cell(b["cold"].get(wl, {}).get("h5chunkd"))
        ha = cell(r["cold"][wl].get("h5chunkd"))
        sd = cell(r["cold"][wl].get("seed"))
        t3 = report.target_s(r, wl)
        row = [wl, "%.2f" % (spec["bytes"] / 1e6)]
        row += fmt(hb) + fmt(ha) + fmt(sd)
        row.append(report.ms(t3))
        row.append("%.2fx" % (ha["median"] / t3) if ha else "-")
        row.append("%.2fx" % (sd["median"] / ha["median"]) if ha and sd else "-")
        row.append(report.ms(report.whole_file_s(r, wl)))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
