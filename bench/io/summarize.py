#!/usr/bin/env python3
"""Summarises bench/io/run.sh results: medians per system and workload, cryptmap's ratios
against the passthrough ceiling and the best peer, peak daemon RSS; draws an SVG bar chart
(each workload normalised to the passthrough ceiling).

  summarize.py results.csv chart.svg
"""
import csv
import statistics
import sys
from collections import defaultdict

PEERS = ("qsd-luks", "nbdkit-luks")


def main() -> int:
    rows = list(csv.DictReader(open(sys.argv[1])))
    vals = defaultdict(list)
    units = {}
    rss = defaultdict(int)
    for r in rows:
        vals[(r["system"], r["workload"])].append(float(r["value"]))
        units[r["workload"]] = r["unit"]
        rss[r["system"]] = max(rss[r["system"]], int(r["rss_kib"] or 0))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    med = {k: statistics.median(v) for k, v in vals.items()}

    print("| system | " + " | ".join(f"{w} ({units[w]})" for w in workloads) + " | peak RSS MiB |")
    print("|---|" + "---:|" * (len(workloads) + 1))
    for s in systems:
        cells = [f"{med[(s, w)]:.0f}" if (s, w) in med else "-" for w in workloads]
        print(f"| {s} | " + " | ".join(cells) + f" | {rss[s] / 1024:.0f} |")
    if "cryptmap" in systems:
        print()
        print("| cryptmap ratio | " + " | ".join(workloads) + " |")
        print("|---|" + "---:|" * len(workloads))
        for ref in ("null", "passthrough"):
            if ref in systems:
                print(f"| vs {ref} | " + " | ".join(
                    f"{med[('cryptmap', w)] / med[(ref, w)]:.2f}" for w in workloads) + " |")
        peers = [p for p in PEERS if p in systems]
        if peers:
            print("| vs best peer | " + " | ".join(
                f"{med[('cryptmap', w)] / max(med[(p, w)] for p in peers):.2f}" for w in workloads) + " |")
    if len(sys.argv) > 2 and "passthrough" in systems:
        write_svg(sys.argv[2], systems, workloads, med)
    return 0


def write_svg(path, systems, workloads, med):
    colors = ["#888888", "#444444", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    bw, gap, h, top = 14, 24, 240, 30
    width = 60 + len(workloads) * (len(systems) * bw + gap) + 160
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 90}" font-family="sans-serif" font-size="11">',
           f'<text x="10" y="18" font-size="13">Throughput relative to the passthrough FUSE ceiling (1.0 = dashed line)</text>']
    ymax = max(med.get((s, w), 0) / med[("passthrough", w)] for s in systems for w in workloads)
    ymax = max(ymax, 1.0) * 1.1
    base = top + h
    y1 = base - h / ymax
    out.append(f'<line x1="50" y1="{y1:.1f}" x2="{width - 160}" y2="{y1:.1f}" stroke="#000" stroke-dasharray="4"/>')
    x = 60
    for w in workloads:
        for i, s in enumerate(systems):
            v = med.get((s, w), 0) / med[("passthrough", w)]
            bh = h * v / ymax
            out.append(f'<rect x="{x + i * bw}" y="{base - bh:.1f}" width="{bw - 2}" height="{bh:.1f}" fill="{colors[i % len(colors)]}"/>')
        out.append(f'<text x="{x}" y="{base + 15}">{w}</text>')
        x += len(systems) * bw + gap
    for i, s in enumerate(systems):
        out.append(f'<rect x="{width - 150}" y="{top + i * 16}" width="10" height="10" fill="{colors[i % len(colors)]}"/>')
        out.append(f'<text x="{width - 135}" y="{top + i * 16 + 9}">{s}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
