"""report.py - writes docs/benchmarks.md and its chart from a run's results.

Everything in the document comes from the results of one run (bench.py)
except bench/notes.md, the hand-written analysis of the published run,
which is included as it is.
"""
import datetime
import os

PEERS = ["h5chunkd", "mirror", "nginx", "seed", "fsspec", "ros3"]
WARM = ["h5chunkd", "mirror", "nginx"]
LABELS = {
    "h5chunkd": "h5chunkd batch API",
    "mirror": "h5py + fsspec on h5chunkd /v1/file",
    "nginx": "h5py + fsspec on nginx slice cache",
    "seed": "the seed's algorithm to origin",
    "fsspec": "h5py + fsspec to origin",
    "ros3": "h5py ROS3 to origin",
}
SHORT = {"h5chunkd": "h5chunkd", "mirror": "mirror", "nginx": "nginx slice", "seed": "seed",
         "fsspec": "fsspec", "ros3": "ROS3"}
COLORS = {"h5chunkd": "#1f77b4", "mirror": "#aec7e8", "nginx": "#2ca02c",
          "fsspec": "#ff7f0e", "ros3": "#d62728", "seed": "#9467bd", "ideal": "#7f7f7f"}
HERE = os.path.dirname(os.path.abspath(__file__))


def ms(x):
    if x is None:
        return "-"
    x *= 1000.0
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def cell_text(c):
    if not c:
        return "-"
    if not c.get("ok"):
        return "FAILED"
    if c["n"] == 1:
        return "%s (n=1)" % ms(c["median"])
    return "%s (%s-%s)" % (ms(c["median"]), ms(c["min"]), ms(c["max"]))


def ratio(a, b):
    """a / b as 'N.Nx'; '-' when either is missing."""
    if not a or not b or not a.get("ok") or not b.get("ok"):
        return "-"
    return "%.2fx" % (a["median"] / b["median"])


def ideal_s(res, wl):
    s = res["settings"]
    nbytes = res["manifest"]["workloads"][wl]["bytes"]
    return nbytes / (s["bw_mbs"] * 1e6) + s["rtt_ms"] / 1000.0


def target_s(res, wl):
    """Issue 12's yardstick: the workload's bytes over the bandwidth plus 3 round trips."""
    s = res["settings"]
    nbytes = res["manifest"]["workloads"][wl]["bytes"]
    return nbytes / (s["bw_mbs"] * 1e6) + 3 * s["rtt_ms"] / 1000.0


def whole_file_s(res, wl):
    """Moving the workload's whole file over the link: its bytes over the bandwidth + 1 RTT."""
    s = res["settings"]
    spec = res["manifest"]["workloads"][wl]
    return spec.get("file_bytes", 0) / (s["bw_mbs"] * 1e6) + s["rtt_ms"] / 1000.0


def issue12_rows(res):
    """(target, measured, verdict) rows for the targets of issue 12, cold cells only."""
    rows = []
    cold = res["cold"]

    def med(c):
        return c["median"] if c and c.get("ok") else None

    batch = [wl for wl in cold if wl != "listing" and med(cold[wl].get("h5chunkd"))]
    over = ["%s %.2fx" % (wl, med(cold[wl]["h5chunkd"]) / target_s(res, wl)) for wl in batch]
    worst = max((med(cold[wl]["h5chunkd"]) / target_s(res, wl) for wl in batch), default=None)
    rows.append(("cold batch <= 1.5x (bytes/bandwidth + 3 RTT)", ", ".join(over) or "-",
                 "met" if worst is not None and worst <= 1.5 else "**missed**"))
    vs = []
    ok = True
    for wl in batch:
        sd = med(cold[wl].get("seed"))
        if sd is None:
            continue
        r = sd / med(cold[wl]["h5chunkd"])
        vs.append("%s %.2fx" % (wl, r))
        ok = ok and r >= 1.3
    rows.append((">= 1.3x faster than the seed's algorithm", ", ".join(vs) or "not measured",
                 "met" if vs and ok else "**missed**"))
    m = med(cold.get("m-scattered", {}).get("h5chunkd"))
    if m:
        r = m / whole_file_s(res, "m-scattered")
        rows.append(("1 M-chunk scattered batch <= 2x moving the whole file",
                     "%.2fx (%s ms against %s ms)" % (r, ms(m), ms(whole_file_s(res, "m-scattered"))),
                     "met" if r <= 2 else "**missed**"))
    return rows


def chart(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    wls = [w for w in res["manifest"]["workloads"] if w in res["cold"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.14
    ax = axes[0]
    for i, p in enumerate(PEERS):
        xs, ys, lo, hi = [], [], [], []
        for j, wl in enumerate(wls):
            c = res["cold"][wl].get(p)
            if c and c.get("ok"):
                xs.append(j + (i - 2.5) * width)
                ys.append(c["median"] * 1e3)
                lo.append((c["median"] - c["min"]) * 1e3)
                hi.append((c["max"] - c["median"]) * 1e3)
        ax.bar(xs, ys, width, yerr=[lo, hi], label=SHORT[p], color=COLORS[p], capsize=2)
    ax.bar([j + 3.5 * width - width for j in range(len(wls))],
           [ideal_s(res, wl) * 1e3 for wl in wls], width, label="ideal",
           color=COLORS["ideal"], hatch="//")
    ax.set_yscale("log")
    ax.set_xticks(range(len(wls)))
    ax.set_xticklabels(wls)
    ax.set_ylabel("ms (log scale), lower is better")
    ax.set_title("cold: one client, empty caches, %g ms RTT, %g MB/s"
                 % (res["settings"]["rtt_ms"], res["settings"]["bw_mbs"]))
    ax.legend(fontsize=8, ncol=3)
    ax.grid(axis="y", which="both", alpha=0.3)

    ax = axes[1]
    nmax = str(max(res["settings"]["clients"]))
    for i, p in enumerate(WARM):
        xs, ys = [], []
        for j, wl in enumerate(wls):
            c = res["warm"].get(wl, {}).get(p, {}).get(nmax)
            if c and c.get("ok"):
                xs.append(j + (i - 1) * 0.25)
                ys.append(c["median"] * 1e3)
        ax.bar(xs, ys, 0.25, label=SHORT[p], color=COLORS[p])
    ax.set_yscale("log")
    ax.set_xticks(range(len(wls)))
    ax.set_xticklabels(wls)
    ax.set_ylabel("ms until all clients are done (log scale)")
    ax.set_title("warm: %s concurrent clients, cached" % nmax)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def targets(res):
    """(target, measured, verdict) rows, from the numbers alone."""
    rows = issue12_rows(res)
    cold, warm = res["cold"], res["warm"]

    def med(c):
        return c["median"] if c and c.get("ok") else None

    def faster(wl, peer, factor, what):
        a, b = cold.get(wl, {}).get("h5chunkd"), cold.get(wl, {}).get(peer)
        if med(a) and med(b):
            r = b["median"] / a["median"]
            rows.append((what, "%.1fx" % r, "met" if r >= factor else "**missed**"))
        else:
            rows.append((what, "not measured", "**missed**"))

    faster("small", "ros3", 20, "cold, small chunks: >= 20x faster than ROS3")
    faster("scattered", "fsspec", 5, "cold, scattered chunks: >= 5x faster than fsspec")
    # The peers are the other tools; the mirror is h5chunkd too (its own targets below).
    slower = []
    for wl in cold:
        h = med(cold[wl].get("h5chunkd"))
        for p in PEERS[2:]:
            c = med(cold[wl].get(p))
            if h and c and c < h:
                slower.append("cold %s: %s %.2fx faster" % (wl, SHORT[p], h / c))
    for wl in warm:
        for n, hc in warm[wl].get("h5chunkd", {}).items():
            h = med(hc)
            for p in WARM[2:]:
                c = med(warm[wl].get(p, {}).get(n))
                if h and c and c < h:
                    slower.append("warm %s x%s: %s %.2fx faster" % (wl, n, SHORT[p], h / c))
    rows.append(("batch API never slower than a peer (nginx, fsspec, ROS3) on any workload",
                 "; ".join(slower) if slower else "never slower",
                 "met" if not slower else "**missed** (%d cells)" % len(slower)))
    worst = None
    for wl in cold:
        h = med(cold[wl].get("h5chunkd"))
        if h:
            r = h / ideal_s(res, wl)
            if worst is None or r > worst[0]:
                worst = (r, wl)
    if worst:
        over = ["%s %.2fx" % (wl, med(cold[wl]["h5chunkd"]) / ideal_s(res, wl))
                for wl in cold if med(cold[wl].get("h5chunkd"))]
        rows.append(("cold: within 1.5x of the ideal", ", ".join(over),
                     "met" if worst[0] <= 1.5 else "**missed** (worst: %s)" % worst[1]))
    w = res.get("wrk", {})
    b = w.get("batch_raw_big", {})
    if b and not b.get("error"):
        rows.append(("warm batch throughput >= 1 GB/s (loopback)",
                     "%.2f GB/s raw, %.2f GB/s decoded" % (
                         b["payload_gbs"], w.get("batch_decoded_big", {}).get("payload_gbs", 0)),
                     "met" if b["payload_gbs"] >= 1 else "**missed**"))
    cs = w.get("chunk_small", {})
    if cs and not cs.get("error"):
        cb = w.get("chunk_big", {})
        nr = w.get("nginx_range_small", {})
        rows.append(("p99 < 2 ms for a cached chunk, %d clients" % res["settings"]["wrk"]["conns"],
                     "3 KB chunk: p99 %.2f ms (nginx, same bytes: %s ms); 0.54 MB chunk: "
                     "p99 %.2f ms" % (cs.get("p99_ms", 0), fmtf(nr.get("p99_ms")),
                                      cb.get("p99_ms", 0) or 0),
                     "met" if cs.get("p99_ms", 99) < 2 else "**missed**"))
    worse = []
    for wl in warm:
        for n, mc in warm[wl].get("mirror", {}).items():
            nc = warm[wl].get("nginx", {}).get(n)
            if med(mc) and med(nc) and mc["median"] > nc["median"]:
                worse.append("%s x%s %.2fx" % (wl, n, mc["median"] / nc["median"]))
    rows.append(("warm mirror at least as fast as nginx's slice cache",
                 "slower in: " + ", ".join(worse) if worse else "never slower",
                 "met" if not worse else "**missed** (%d cells)" % len(worse)))
    hwm = res.get("daemon_hwm_kb")
    if hwm:
        rows.append(("daemon RSS < 200 MB through the whole run", "peak %.0f MB" % (hwm / 1024),
                     "met" if hwm / 1024 < 200 else "**missed**"))
    return rows


def write(res, doc):
    docdir = os.path.dirname(os.path.abspath(doc))
    png = os.path.splitext(os.path.basename(doc))[0] + ".png"
    chart(res, os.path.join(docdir, png))
    s, m = res["settings"], res["machine"]
    L = res["link"]
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("h5chunkd against the tools scientists use today to read remote HDF5, on the same "
      "workloads, in the same run, over the same emulated wide-area link. Every number below "
      "comes from one run of `bench/run` on the machine described here; the run writes this "
      "file (the hand-written notes at the end excepted). Every answer is checked: each run's "
      "values are compared with h5py's on the local file (a digest of the values), and a "
      "peer that answers wrongly is reported as FAILED, never timed.")
    w("")
    w("## How to run it")
    w("")
    w("After the README's setup (`scripts/install-deps` installs nginx, wrk, matplotlib and "
      "the Python packages):")
    w("")
    w("```sh")
    w("make bench                      # from a build dir: runs bench/run on ./daemon/h5chunkd")
    w("bench/run --daemon /path/to/h5chunkd            # the same, by hand")
    w("bench/run --quick --no-doc --rtt-ms 2 --clients 1,2   # the smoke run make check does")
    w("bench/run --help                                # RTT, bandwidth, repetitions, peers")
    w("```")
    w("")
    w("This run: `%s` (%.0f s in all)." % (s["command"], res.get("elapsed_s", 0)))
    w("")
    w("## Machine and software")
    w("")
    w("| | |")
    w("|---|---|")
    w("| CPU | %s, %s cores |" % (m.get("cpu", "?"), m.get("nproc", "?")))
    w("| memory | %s GB |" % m.get("mem_gb", "?"))
    w("| OS | Debian %s, Linux %s |" % (m.get("debian", "?"), m.get("kernel", "?")))
    w("| h5chunkd | %s (source %s) |" % (res.get("daemon_version", "?"), m.get("source", "?")))
    w("| peers | Python %s, h5py %s, libhdf5 %s, fsspec %s, NumPy %s, nginx %s |"
      % (m.get("python"), m.get("h5py"), m.get("hdf5"), m.get("fsspec"), m.get("numpy"),
         m.get("nginx")))
    if m.get("loadavg_start") is not None:
        w("| load average | %.2f at the start, %.2f at the end (1 min) |"
          % (m["loadavg_start"], m.get("loadavg_end", 0)))
    w("")
    w("Everything runs on this one machine, on loopback: the origin, the link, the daemon, "
      "nginx and every client share the %s cores, which also bounds the warm results with "
      "many clients." % m.get("nproc", "?"))
    w("")
    w("## The link")
    w("")
    w("There is no wide-area network here, so `bench/linkemu.py` plays one: a TCP proxy in "
      "front of the origin (nginx serving the files) that delays every byte by RTT/2 each "
      "way, holds a new connection's first bytes for one RTT (the TCP handshake), and sends "
      "all connections' bytes through one shared FIFO of the given bandwidth each way. "
      "Settings of this run: **RTT %g ms, bandwidth %g MB/s** (10^6 bytes). Not modelled: "
      "slow start, loss, jitter, which would only make the real link slower, most of all "
      "for clients that open many connections.%s"
      % (s["rtt_ms"], s["bw_mbs"],
         (" Each connection is also capped at **%g MB/s** (`--conn-bw-mbs`, as an object "
          "store caps one connection)." % s["conn_bw_mbs"]) if s.get("conn_bw_mbs") else ""))
    w("")
    w("Checked at the start of the run:")
    w("")
    w("| check | expected | measured |")
    w("|---|---|---|")
    w("| 1-byte range, new connection | ~2 RTT = %g ms | %.1f ms (median of %d) |"
      % (2 * s["rtt_ms"], L["new_conn_median_ms"], len(L["new_conn_ms"])))
    w("| 1-byte range, reused connection | ~1 RTT = %g ms | %.1f ms (median of %d) |"
      % (s["rtt_ms"], L["reused_median_ms"], len(L["reused_ms"])))
    w("| %.0f MB on one connection | ~%g MB/s | %.1f MB/s (%.2f s) |"
      % (L["big_bytes"] / 1e6, s["bw_mbs"], L["big_mbs"], L["big_s"]))
    w("| %.0f MB on four connections at once | ~%g MB/s in all | %.1f MB/s (%.2f s) |"
      % (L["big4_bytes"] / 1e6, s["bw_mbs"], L["big4_mbs"], L["big4_s"]))
    w("")
    w("## Peers")
    w("")
    w("- **h5chunkd batch API**: the daemon's natural fast path, values to values: "
      "`GET /v1/meta` for the dataset (dtype, chunk shape, fill value), then one "
      "`POST /v1/chunks` with every key and `\"decode\": true`; a workload whose answer is "
      "its chunks joined reads each frame into its place in the result with the package's "
      "frame reader (`h5chunkd.frames`; as libhdf5 decodes into the caller's array), the "
      "others make each frame a NumPy array; a never-written chunk (404 "
      "`chunk_not_allocated`) is the fill value. The listing "
      "workload reads the Zarr view's consolidated metadata (`/zarr/v2/{id}/.zmetadata`, one "
      "request) when the daemon serves it, else walks `/v1/meta` breadth-first with 8 "
      "connections (this run: %s). The daemon runs on its defaults (256 KiB blocks; metadata "
      "prefix and windows sized from the measured link, 4 MiB before it is measured; files "
      "that cross the link in 3 round trips fetched whole at open) with an empty cache at "
      "the start."
      % (", ".join(sorted({x for wl in res["cold"].get("listing", {}).values()
                            for x in wl.get("modes", [])})) or "n/a"))
    w("- **h5py + fsspec on h5chunkd /v1/file**: the daemon as a byte-range mirror, for "
      "tools that only take a URL.")
    w("- **h5py + fsspec on nginx slice cache**: nginx %s as a caching reverse proxy in front "
      "of the link, configured as nginx's documentation shows for ranges (`slice 1m`, "
      "`proxy_cache_key $uri$is_args$args$slice_range`), plus upstream keep-alive and "
      "`proxy_cache_lock`. The mirror's competitor." % m.get("nginx", ""))
    w("- **h5py + fsspec to origin**: fsspec's HTTP file (its defaults: 5 MiB read-ahead "
      "\"bytes\" cache) straight to the origin through the link.")
    w("- **the seed's algorithm to origin**: what the project's seed (LINDI PR #123) does, "
      "straight to the origin: h5py over a file object with a 128 KiB block cache finds "
      "each chunk (serial `get_chunk_info_by_coord` lookups), the chunks' byte ranges are "
      "coalesced (gap 256 KiB, at most 20 MiB per request) and fetched by 8 threads, and "
      "each chunk is decoded in Python (zlib, shuffle). It runs the chunk workloads only.")
    w("- **h5py ROS3 to origin**: libhdf5's read-only S3 driver on the plain HTTP URL.")
    w("- **ideal**: the workload's bytes over the bandwidth plus one round trip. The bytes "
      "are the stored (compressed) chunks the workload needs; for the listing, the distinct "
      "bytes libhdf5 reads from the local file to list it.")
    w("")
    w("Every run is a new client in a worker process that has already imported its "
      "modules and used each client once against the origin directly (so no run pays for "
      "imports or first-use set-up): a new connection, a new file handle, no metadata. "
      "**Cold**: a file name no cache has seen (a new hard link of the file for every run, "
      "so the daemon and nginx start empty for it), the peers in turns: each round runs every "
      "peer once, the order rotated by one peer per round, so load that changes during the "
      "run lands on every peer alike. **Warm**: the same URL after one "
      "untimed read that filled the caches and checked the values; N clients start at the "
      "same instant and the time is until the last one is done. The peers without a cache "
      "(fsspec, ROS3 to origin) have no warm state; their cold time is their time. Times "
      "are the median of up to %d runs per cell (%d for warm cells), min-max in parentheses; "
      "a cell stops repeating once it has spent %g s (slow cells therefore have fewer "
      "runs, shown as n=1). Ratios are peer / h5chunkd: above 1, h5chunkd is faster."
      % (s["reps"], s["warm_reps"], s["cell_budget_s"]))
    w("")
    w("## Results")
    w("")
    w("![cold and warm times per workload and peer](%s)" % png)
    w("")
    nmax = str(max(s["clients"]))
    for wl, spec in res["manifest"]["workloads"].items():
        if wl not in res["cold"]:
            continue
        cold = res["cold"][wl]
        warm = res["warm"].get(wl, {})
        h = cold.get("h5chunkd")
        ideal = ideal_s(res, wl)
        w("### %s" % spec["title"])
        w("")
        what = ("`%s` of `%s`" % (spec["path"], spec["file"]) if wl != "listing"
                else "every dataset of `%s` (%s)" % (spec["file"], spec["digest"].split(":")[1]
                                                      + " datasets"))
        w("Reads %s; %.2f MB to move; ideal %s ms; bytes/bandwidth + 3 RTT %s ms; the whole "
          "file (%.1f MB) over the link %s ms."
          % (what, spec["bytes"] / 1e6, ms(ideal), ms(target_s(res, wl)),
             spec.get("file_bytes", 0) / 1e6, ms(whole_file_s(res, wl))))
        w("")
        hdr = ["peer", "cold, ms", "peer / h5chunkd", "vs ideal", "upstream requests",
               "link MB"]
        for n in s["clients"]:
            hdr.append("warm x%d, ms" % n)
        hdr.append("warm x%s: peer / h5chunkd" % nmax)
        w("| " + " | ".join(hdr) + " |")
        w("|" + "---|" * len(hdr))
        hw = warm.get("h5chunkd", {}).get(nmax)
        for p in PEERS:
            c = cold.get(p)
            if c is None:
                continue
            row = [LABELS[p], cell_text(c), "1" if p == "h5chunkd" else ratio(c, h),
                   ("%.2fx" % (c["median"] / ideal)) if c.get("ok") else "-",
                   "%g" % c["origin_requests"], "%.2f" % (c["link_bytes"] / 1e6)]
            for n in s["clients"]:
                wc = warm.get(p, {}).get(str(n))
                row.append(cell_text(wc) if p in WARM else "(no cache)")
            row.append(("1" if p == "h5chunkd" else ratio(warm.get(p, {}).get(nmax), hw))
                       if p in WARM else "-")
            w("| " + " | ".join(row) + " |")
        row = ["ideal", ms(ideal), "%.2fx" % (ideal / h["median"]) if h and h.get("ok") else "-",
               "1", "1", "%.2f" % (spec["bytes"] / 1e6)] + ["-"] * (len(s["clients"]) + 1)
        w("| " + " | ".join(row) + " |")
        if h and h.get("ok"):
            w("")
            w("h5chunkd's own upstream requests per cold run: %g (the origin counts %g)."
              % (h["daemon_upstream"], h["origin_requests"]))
        w("")
    W = res.get("wrk", {})
    w("## Load: warm throughput and latency (wrk)")
    w("")
    if W.get("skipped"):
        w("Skipped: %s." % W["skipped"])
    else:
        ws = s["wrk"]
        w("`wrk -t%d -c%d -d%ds --latency` against the warm daemon (the same machine: wrk's "
          "threads share the cores with the daemon). The bodies were checked against the "
          "file's bytes first. GB/s counts payload bytes (10^9)."
          % (ws["threads"], ws["conns"], ws["secs"]))
        w("")
        w("| request | payload | req/s | GB/s | p50 ms | p90 ms | p99 ms | max ms |")
        w("|---|---|---|---|---|---|---|---|")
        names = {
            "chunk_small": "GET /v1/chunk, one cached 3 KB chunk",
            "nginx_range_small": "reference: nginx slice cache, the same 3 KB as a range",
            "mirror_range_small": "GET /v1/file, the same 3 KB as a range",
            "chunk_big": "GET /v1/chunk, one cached 0.54 MB chunk",
            "nginx_range_5m": "reference: nginx slice cache, a 5 MiB range",
            "mirror_range_5m": "GET /v1/file, the same 5 MiB range",
            "batch_raw_big": "POST /v1/chunks, 20 large chunks, raw",
            "batch_decoded_big": "POST /v1/chunks, 20 large chunks, decode",
            "batch_raw_small": "POST /v1/chunks, 1000 small chunks, raw",
        }
        for k, label in names.items():
            r = W.get(k)
            if not r:
                continue
            if r.get("error"):
                w("| %s | %.3f MB | %s | | | | | |" % (label, r["payload_bytes"] / 1e6,
                                                     r["error"][:80]))
                continue
            w("| %s | %.3f MB | %.0f | %.3f | %s | %s | %s | %s |"
              % (label, r["payload_bytes"] / 1e6, r.get("requests_per_s", 0), r["payload_gbs"],
                 fmtf(r.get("p50_ms")), fmtf(r.get("p90_ms")), fmtf(r.get("p99_ms")),
                 fmtf(r.get("max_ms"))))
    w("")
    for line in python_section(res):
        w(line)
    w("## Memory")
    w("")
    hwm = res.get("daemon_hwm_kb")
    if hwm:
        w("Peak RSS of the daemon (VmHWM, one process through the whole run): **%.0f MB**; "
          "RSS at the end %.0f MB. The peak after each phase:" % (hwm / 1024,
                                                                 res.get("daemon_rss_end_kb", 0)
                                                                 / 1024))
        w("")
        w("| after | VmHWM MB |")
        w("|---|---|")
        last = None
        for phase, kb in res.get("rss_kb", []):
            if kb != last:
                w("| %s | %.0f |" % (phase, kb / 1024))
                last = kb
    w("")
    st = res.get("daemon_stats", {})
    if st:
        w("Daemon counters at the end: %s upstream requests, %.0f MB from upstream, %.2f GB "
          "served, %s cache hits, %s misses, %s in-flight joins, %s libhdf5 lookups, %s index "
          "hits, %s errors." % (st.get("upstream_requests"), st.get("upstream_bytes", 0) / 1e6,
                                st.get("bytes_served", 0) / 1e9, st.get("cache_hits"),
                                st.get("cache_misses"), st.get("inflight_joins"),
                                st.get("h5_lookups"), st.get("index_hits"), st.get("errors")))
        w("")
    w("## Targets")
    w("")
    w("Measured by this run, not asserted by any test.")
    w("")
    w("| target | measured | |")
    w("|---|---|---|")
    for t, meas, verdict in targets(res):
        w("| %s | %s | %s |" % (t, meas, verdict))
    w("")
    if res.get("errors"):
        w("Failed cells:")
        w("")
        for e in res["errors"]:
            w("- %s" % e)
        w("")
    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes):
        with open(notes) as fh:
            w(fh.read().rstrip())
        w("")
    w("_Written by bench/report.py on %s._" % datetime.date.today().isoformat())
    tmp = doc + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(out) + "\n")
    os.replace(tmp, doc)


PY_PEERS = [("py-zarr", "zarr on `h5chunkd.zarr_store` (one batch per read)"),
            ("zarr-http", "zarr on the Zarr view over fsspec HTTP (`FSStore`)"),
            ("py-h5py", "h5py on `h5chunkd.open` (/v1/file, block read-ahead)")]


def paired_text(c):
    """A path's paired ratio to the batched store: the median over the rounds
    both ran of (path's time / store's time), with the number of rounds."""
    if not c or not c.get("ok") or c.get("paired_ratio") is None:
        return "-"
    return "%.2fx (n=%d)" % (c["paired_ratio"], len(c.get("paired_ratios", [])))


def python_section(res):
    """The Python package's paths side by side (bench.py run_python)."""
    P = res.get("python")
    if not P:
        return []
    out = ["## The Python package (python/h5chunkd)", "",
           "Three ways a Python process reads the same workloads through the same daemon, on "
           "the same link. Cold: a URL the daemon has never seen (the zarr paths include "
           "building the Zarr view's consolidated metadata). Warm: the same URL again, every "
           "chunk cached; x1 one client, xN that many at once. The paths run in turns: each "
           "round runs every path once (cold: each on a fresh URL), the order rotated by one "
           "path per round, so load that changes during the run lands on all of them. Times "
           "are medians in ms (min-max); the ratios are paired: a path's time over "
           "zarr_store's in the same round, the median over the rounds (n) both ran; above 1, "
           "the batched store is faster. `bench/run --sections python` runs only this part.",
           ""]
    levels = sorted({k for wl in P.values() for cells in wl.values() for k in cells
                     if k.startswith("warm")}, key=lambda k: int(k[4:]))
    hdr = ["workload", "path", "cold", "cold / zarr_store"]
    for k in levels:
        hdr += ["warm x%s" % k[4:], "/ zarr_store"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    beaten = []
    for wl, peers in P.items():
        for p, label in PY_PEERS:
            cells = peers.get(p, {})
            row = [wl, label]
            for k in ["cold"] + levels:
                c = cells.get(k)
                row.append(cell_text(c) if c else "-")
                if p == "py-zarr":
                    row.append("1" if c and c.get("ok") else "-")
                    continue
                row.append(paired_text(c))
                if c and c.get("ok") and c.get("paired_ratio") is not None and \
                        c["paired_ratio"] < 1:
                    beaten.append("%s %s: %s %.2fx" % (wl, k, p, c["paired_ratio"]))
            out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("The batched store the fastest Python path (no paired ratio below 1): %s."
               % ("yes" if not beaten else "**no**, in " + "; ".join(beaten)))
    out.append("")
    known = res.get("python_known_failures")
    if known:
        out.append("FAILED zarr-http cells returned wrong values: zarr's `FSStore` turns a chunk "
                   "request that fails into fill values, and with many clients at once some of "
                   "fsspec's many connections (up to 100 per client) are dropped by the daemon "
                   "(`max_connections`). `zarr_store` makes one request per read and raises on "
                   "any failed chunk. Cells: %s." % "; ".join(k.strip() for k in known))
        out.append("")
    return out


def fmtf(v):
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.0f" % v)
