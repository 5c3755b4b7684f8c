#!/usr/bin/env python3
"""Summarises bench/io/run.sh results.

  summarize.py results.csv [--out DIR] [--cache-mib N] [--host host.txt]

Medians (and min-max) per system and workload, cryptmap's ratios against the passthrough and
null ceilings and the best peer with the goals of issue #5 (>= 0.80 of passthrough, >= 4x the
best peer, peak RSS <= cache + 64 MiB), every system against the physical limit
min(raw, null) with the goals of issue #13 (>= 0.80 sequential, >= 0.70 random; random writes
may exceed it through write-back), LUKS2 --integrity systems against cryptmap's LUKS2 with the
goals of issue #12 (reads >= 0.70, no-journal writes >= 0.60, journaled writes >= 0.45), the
daemons' CPU and memory. Writes DIR/summary.csv,
DIR/results.md (also printed) and DIR/chart.svg (each workload normalised to the passthrough
ceiling; hand-written SVG, no plotting library needed).
"""
import argparse
import csv
import os
import statistics
import sys
from collections import defaultdict

PEERS = ("qsd-luks", "nbdkit-luks")
GOAL_CEILING = 0.80
GOAL_LIMIT_SEQ = 0.80
GOAL_LIMIT_RANDOM = 0.70
GOAL_PEER = 4.0
GOAL_BITLK_LUKS2 = 0.80
# issue #12: LUKS2 --integrity against cryptmap's LUKS2 without integrity, same storage, same run
INTEGRITY = ("cryptmap-hmac", "cryptmap-hmac-nj", "cryptmap-aead", "cryptmap-aead-nj")
GOAL_INTEGRITY_READ = 0.70
GOAL_INTEGRITY_WRITE_NJ = 0.60
GOAL_INTEGRITY_WRITE_J = 0.45
RSS_SLACK_MIB = 64
COLORS = {"raw": "#d9d9d9", "null": "#b0b0b0", "passthrough": "#606060", "passthrough-cached": "#9467bd",
          "cryptmap": "#1f77b4", "cryptmap-uring": "#17becf", "qsd-luks": "#ff7f0e", "nbdkit-luks": "#2ca02c",
          "cryptmap-bitlk": "#8c564b", "dislocker": "#e377c2", "cryptmap-hmac": "#bcbd22",
          "cryptmap-hmac-nj": "#dbdb8d", "cryptmap-aead": "#d62728", "cryptmap-aead-nj": "#ff9896"}


def metric(row):
    """The workload's figure of merit: MB/s for sequential, IOPS for random."""
    key = "mb_s" if row["workload"].startswith("seq") else "iops"
    return float(row[key]) if row[key] else None


def unit(workload):
    return "MB/s" if workload.startswith("seq") else "IOPS"


def fmt(v):
    return "-" if v is None else f"{v:,.0f}".replace(",", " ") if v >= 1000 else f"{v:.0f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--out", default=None)
    ap.add_argument("--cache-mib", type=int, default=64)
    ap.add_argument("--host", default=None)
    a = ap.parse_args()
    out = a.out or os.path.dirname(os.path.abspath(a.csv))

    rows = list(csv.DictReader(open(a.csv)))
    vals, rss, cpu, lat, p99, failed = (defaultdict(list) for _ in range(6))
    for r in rows:
        k = (r["system"], r["workload"])
        v = metric(r) if r["status"] == "ok" else None
        if v is None:
            failed[k].append(r["rep"])
            continue
        vals[k].append(v)
        rss[k].append(int(r["rss_peak_kib"] or 0))
        cpu[k].append(float(r["daemon_cpu_pct"] or 0))
        lat[k].append(float(r["lat_mean_us"] or 0))
        p99[k].append(float(r["clat_p99_us"] or 0))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    med = {k: statistics.median(v) for k, v in vals.items()}
    reps = max((len(v) for v in vals.values()), default=0)

    def m(s, w):
        return med.get((s, w))

    def ratio(s, ref, w):
        x, y = m(s, w), m(ref, w)
        return x / y if x is not None and y else None

    peers = [p for p in PEERS if p in systems]

    def phys_limit(w):
        """The physical limit of a workload: the storage without FUSE (raw) or FUSE without
        storage (null), whichever is lower; None unless both ran."""
        c = [m(s, w) for s in ("raw", "null")]
        return min(c) if None not in c and "raw" in systems and "null" in systems else None

    def vs_limit(s, w):
        x, y = m(s, w), phys_limit(w)
        return x / y if x is not None and y else None

    def limit_goal(w):
        return GOAL_LIMIT_SEQ if w.startswith("seq") else GOAL_LIMIT_RANDOM

    def latency_cell(s, w):
        """mean / p99 completion latency, µs, medians over repeats ("-" where fio gave none)."""
        mean, tail = lat.get((s, w)), [x for x in p99.get((s, w), []) if x > 0]
        if not mean and not tail:
            return "-"
        return (f"{statistics.median(mean):.0f}" if mean else "-") + " / " + \
            (f"{statistics.median(tail):.0f}" if tail else "-")

    def best_peer(w):
        c = [(m(p, w), p) for p in peers if m(p, w) is not None]
        return max(c) if c else (None, None)

    md = []
    if a.host and os.path.exists(a.host):
        md += ["```", open(a.host).read().rstrip(), "```", ""]
    md.append(f"Medians over {reps} repeat(s) (min-max in brackets); MB/s = 10^6 B/s; "
              "fio psync, O_DIRECT, 1 MiB sequential / 4 KiB random, QD1 per job.")
    md.append("")
    md.append("| system | " + " | ".join(f"{w} ({unit(w)})" for w in workloads) + " |")
    md.append("|---|" + "---:|" * len(workloads))
    for s in systems:
        cells = []
        for w in workloads:
            v = vals.get((s, w))
            cell = f"{fmt(m(s, w))} ({fmt(min(v))}-{fmt(max(v))})" if v and len(v) > 1 else fmt(m(s, w))
            if failed.get((s, w)):
                cell += f" [{len(failed[(s, w)])} failed]"
            cells.append(cell)
        md.append(f"| {s} | " + " | ".join(cells) + " |")

    summary = []
    if "cryptmap" in systems:
        md += ["", "cryptmap's median as a share of each reference's median (goal in brackets):", ""]
        md.append("| cryptmap vs | " + " | ".join(workloads) + " |")
        md.append("|---|" + "---:|" * len(workloads))

        def cell(x, goal):
            if x is None:
                return "-"
            return f"{x:.2f}" + ("" if goal is None else (" ✓" if x >= goal else " ✗"))

        for ref, goal in (("passthrough", GOAL_CEILING), ("null", None), ("passthrough-cached", None)):
            if ref in systems:
                label = f"{ref} (≥ {goal:.2f})" if goal else ref
                md.append(f"| {label} | " + " | ".join(cell(ratio("cryptmap", ref, w), goal) for w in workloads) + " |")
        if "cryptmap-uring" in systems:  # FUSE over io_uring on / off (cryptmap uses /dev/fuse)
            md.append("| cryptmap-uring / cryptmap (io_uring on / off) | " +
                      " | ".join(cell(ratio("cryptmap-uring", "cryptmap", w), None) for w in workloads) + " |")
        if peers:
            cells = []
            for w in workloads:
                v, p = best_peer(w)
                x = m("cryptmap", w) / v if v and m("cryptmap", w) is not None else None
                cells.append(f"{cell(x, GOAL_PEER)} ({p})" if p else "-")
            md.append(f"| best peer (≥ {GOAL_PEER:.0f}) | " + " | ".join(cells) + " |")

        limit = a.cache_mib + RSS_SLACK_MIB
        md += ["", f"cryptmap daemon: peak RSS sampled every 0.2 s under load (max over repeats; goal ≤ cache "
               f"{a.cache_mib} + {RSS_SLACK_MIB} = {limit} MiB), daemon CPU (% of one core, median), latency "
               "(mean / p99 completion, µs, median; every system's below):", ""]
        md.append("| | " + " | ".join(workloads) + " |")
        md.append("|---|" + "---:|" * len(workloads))
        for label, src, f in (("peak RSS MiB", rss, lambda v: f"{max(v) / 1024:.0f}" + (" ✓" if max(v) / 1024 <= limit else " ✗")),
                              ("daemon CPU %", cpu, lambda v: f"{statistics.median(v):.0f}"),
                              ("latency µs", lat, None)):
            cells = []
            for w in workloads:
                v = src.get(("cryptmap", w))
                if not v:
                    cells.append("-")
                elif f is None:
                    cells.append(latency_cell("cryptmap", w))
                else:
                    cells.append(f(v))
            md.append(f"| {label} | " + " | ".join(cells) + " |")

    if "cryptmap-bitlk" in systems:  # issue #15: BitLocker against dislocker and against LUKS2
        md += ["", "cryptmap on the BitLocker image (AES-128-XTS, 4096-byte sectors) against dislocker-fuse on "
               f"the same image and against cryptmap's LUKS2 in the same run (goals: ≥ {GOAL_PEER:.0f}x dislocker "
               f"sequentially, ≥ {GOAL_BITLK_LUKS2:.2f} of LUKS2):", ""]
        md.append("| cryptmap-bitlk vs | " + " | ".join(workloads) + " |")
        md.append("|---|" + "---:|" * len(workloads))
        for ref, goal in (("dislocker", GOAL_PEER), ("cryptmap", GOAL_BITLK_LUKS2)):
            if ref in systems:
                cells = []
                for w in workloads:
                    x = ratio("cryptmap-bitlk", ref, w)
                    g = goal if (ref != "dislocker" or w.startswith("seq")) else None
                    cells.append("-" if x is None else f"{x:.2f}" + ("" if g is None else (" ✓" if x >= g else " ✗")))
                md.append(f"| {ref} | " + " | ".join(cells) + " |")

    integ = [s for s in INTEGRITY if s in systems]
    if integ and "cryptmap" in systems:  # issue #12: authenticated LUKS2 against LUKS2 without
        def integrity_goal(s, w):
            if "read" in w:
                return GOAL_INTEGRITY_READ
            return GOAL_INTEGRITY_WRITE_NJ if s.endswith("-nj") else GOAL_INTEGRITY_WRITE_J

        md += ["", "LUKS2 --integrity (4096-byte sectors) against cryptmap's LUKS2 without integrity in the same "
               f"run (goals of issue #12: reads ≥ {GOAL_INTEGRITY_READ:.2f}, no-journal (-nj) writes ≥ "
               f"{GOAL_INTEGRITY_WRITE_NJ:.2f}, journaled writes ≥ {GOAL_INTEGRITY_WRITE_J:.2f}):", ""]
        md.append("| / cryptmap | " + " | ".join(workloads) + " |")
        md.append("|---|" + "---:|" * len(workloads))
        for s in integ:
            cells = []
            for w in workloads:
                x, g = ratio(s, "cryptmap", w), integrity_goal(s, w)
                cells.append("-" if x is None else f"{x:.2f}" + (" ✓" if x >= g else " ✗"))
            md.append(f"| {s} | " + " | ".join(cells) + " |")

    if any(phys_limit(w) for w in workloads):
        md += ["", "Every system against the limit = min(raw, null) of each workload (issue #13's goals for "
               f"cryptmap: ≥ {GOAL_LIMIT_SEQ:.2f} sequential, ≥ {GOAL_LIMIT_RANDOM:.2f} random; which of raw "
               "and null is the limit is named in the last row):", ""]
        md.append("| system | " + " | ".join(workloads) + " |")
        md.append("|---|" + "---:|" * len(workloads))
        for s in systems:
            if s in ("raw", "null"):
                continue
            cells = []
            for w in workloads:
                x = vs_limit(s, w)
                mark = "" if s != "cryptmap" or x is None else (" ✓" if x >= limit_goal(w) else " ✗")
                cells.append("-" if x is None else f"{x:.2f}{mark}")
            md.append(f"| {s} | " + " | ".join(cells) + " |")
        md.append("| limit | " + " | ".join(
            "-" if phys_limit(w) is None else f"{fmt(phys_limit(w))} {unit(w)} ({'raw' if m('raw', w) <= m('null', w) else 'null'})"
            for w in workloads) + " |")

    md += ["", "Work per daemon CPU-second (median figure / median daemon CPU; MB or IO per second of one core): "
           "less sensitive to a loaded machine than the wall-clock figures; kernel work done in fio's "
           "context (the FUSE copy, O_DIRECT submission) is not counted:", ""]
    md.append("| system | " + " | ".join(f"{w} ({'MB' if w.startswith('seq') else 'IO'}/CPU-s)" for w in workloads) + " |")
    md.append("|---|" + "---:|" * len(workloads))
    for s in systems:
        cells = []
        for w in workloads:
            c = statistics.median(cpu[(s, w)]) if cpu.get((s, w)) else 0
            cells.append(fmt(m(s, w) / (c / 100)) if c >= 1 and m(s, w) is not None else "-")
        md.append(f"| {s} | " + " | ".join(cells) + " |")

    md += ["", "Latency of every system and workload: mean / p99 completion, µs (medians over repeats; "
           "issue #13 asks for p99):", ""]
    md.append("| system | " + " | ".join(workloads) + " |")
    md.append("|---|" + "---:|" * len(workloads))
    for s in systems:
        md.append(f"| {s} | " + " | ".join(latency_cell(s, w) for w in workloads) + " |")

    md += ["", "All systems: peak RSS MiB (max over workloads) and daemon CPU % of one core (median per workload):", ""]
    md.append("| system | peak RSS MiB | " + " | ".join(f"CPU {w}" for w in workloads) + " |")
    md.append("|---|---:|" + "---:|" * len(workloads))
    for s in systems:
        peak = max((max(rss[(s, w)]) for w in workloads if rss.get((s, w))), default=0)
        md.append(f"| {s} | {peak / 1024:.0f} | " + " | ".join(
            f"{statistics.median(cpu[(s, w)]):.0f}" if cpu.get((s, w)) else "-" for w in workloads) + " |")

    for s in systems:
        for w in workloads:
            if (s, w) not in med:
                continue
            bp = best_peer(w)[0]
            summary.append({"system": s, "workload": w, "unit": unit(w), "median": f"{m(s, w):.1f}",
                            "min": f"{min(vals[(s, w)]):.1f}", "max": f"{max(vals[(s, w)]):.1f}", "n": len(vals[(s, w)]),
                            "vs_passthrough": f"{ratio(s, 'passthrough', w):.3f}" if ratio(s, "passthrough", w) else "",
                            "vs_best_peer": f"{m(s, w) / bp:.3f}" if bp else "",
                            "vs_limit": f"{vs_limit(s, w):.3f}" if vs_limit(s, w) else "",
                            "lat_mean_us": f"{statistics.median(lat[(s, w)]):.1f}",
                            "clat_p99_us": f"{statistics.median(p99[(s, w)]):.1f}",
                            "rss_peak_mib": f"{max(rss[(s, w)]) / 1024:.1f}",
                            "daemon_cpu_pct": f"{statistics.median(cpu[(s, w)]):.0f}"})
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        if summary:
            wr = csv.DictWriter(f, fieldnames=list(summary[0]))
            wr.writeheader()
            wr.writerows(summary)
    text = "\n".join(md) + "\n"
    open(os.path.join(out, "results.md"), "w").write(text)
    print(text)
    if "passthrough" in systems:
        write_svg(os.path.join(out, "chart.svg"), systems, workloads, med, reps)
    return 0


def write_svg(path, systems, workloads, med, reps):
    """Grouped bars: each system's median / the passthrough median, per workload."""
    bw, gap, h, top, left = 20, 30, 260, 48, 52
    rel = {(s, w): med[(s, w)] / med[("passthrough", w)]
           for s in systems for w in workloads if (s, w) in med and med.get(("passthrough", w))}
    cap = 2.0  # taller bars (the null ceiling) are clipped and labelled
    ymax = min(max(list(rel.values()) + [1.0]), cap) * 1.08
    group = len(systems) * bw + gap
    plot_w = len(workloads) * group
    width = left + plot_w + 170
    base = top + h

    def y(v):
        return base - h * min(v, ymax) / ymax

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{base + 60}" '
         'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{base + 60}" fill="#fff"/>',
         '<text x="10" y="18" font-size="14">cryptmap I/O benchmark: throughput relative to the passthrough '
         'FUSE ceiling</text>',
         f'<text x="10" y="34" fill="#555">fio O_DIRECT psync; medians of {reps} repeat(s); dashed = 1.0 '
         f'(passthrough), dotted = {GOAL_CEILING:.2f} goal; bars above {cap:.0f} are clipped</text>']
    t = 0.0
    while t <= ymax + 1e-9:
        o.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + plot_w}" y2="{y(t):.1f}" stroke="#eee"/>')
        o.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.2f}</text>')
        t += 0.25 if ymax <= 1.6 else 0.5
    o.append(f'<line x1="{left}" y1="{y(1):.1f}" x2="{left + plot_w}" y2="{y(1):.1f}" stroke="#000" stroke-dasharray="5,3"/>')
    o.append(f'<line x1="{left}" y1="{y(GOAL_CEILING):.1f}" x2="{left + plot_w}" y2="{y(GOAL_CEILING):.1f}" '
             'stroke="#1f77b4" stroke-dasharray="1,3"/>')
    x = left + gap / 2
    for w in workloads:
        for i, s in enumerate(systems):
            v = rel.get((s, w))
            if v is None:
                continue
            bx = x + i * bw
            o.append(f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bw - 2}" height="{base - y(v):.1f}" '
                     f'fill="{COLORS.get(s, "#000")}"><title>{s} {w}: {med[(s, w)]:.0f} '
                     f'{unit(w)} = {v:.2f} x passthrough</title></rect>')
            o.append(f'<text x="{bx + (bw - 2) / 2:.1f}" y="{y(v) - 3:.1f}" font-size="8" text-anchor="middle">'
                     f'{v:.2f}</text>')
        o.append(f'<text x="{x + len(systems) * bw / 2:.1f}" y="{base + 16}" text-anchor="middle">{w}</text>')
        o.append(f'<text x="{x + len(systems) * bw / 2:.1f}" y="{base + 30}" text-anchor="middle" font-size="9" '
                 f'fill="#555">1.0 = {med[("passthrough", w)]:.0f} {unit(w)}</text>' if ("passthrough", w) in med else "")
        x += group
    o.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#000"/>')
    for i, s in enumerate(systems):
        ly = top + i * 18
        o.append(f'<rect x="{left + plot_w + 16}" y="{ly}" width="12" height="12" fill="{COLORS.get(s, "#000")}"/>')
        o.append(f'<text x="{left + plot_w + 34}" y="{ly + 10}">{s}</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    sys.exit(main())
