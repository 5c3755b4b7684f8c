#!/usr/bin/env python3
"""Per run: read MB/s of the ceiling (nbdfuse) and cryptmap, their ratio, CPU-s per GB read
(fio, servers = FUSE daemon + nbdkit); means per build; and the profiled runs' hand-off counts."""
import os, re, statistics
here = os.path.dirname(os.path.abspath(__file__))
runs = ["before-1", "after-1", "after-2", "before-2", "before-p", "after-p",
        "before-3", "after-3", "after-4", "before-4"]
agg = {}
for run in runs:
    f = os.path.join(here, run + ".txt")
    if not os.path.exists(f):
        continue
    rows = {}
    for line in open(f):
        m = re.match(r"\| (ceiling|cryptmap|peer) \| (read|write) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            rows[(m[1], m[2])] = (int(m[3]), float(m[4]), float(m[5]), float(m[6]))
    if ("cryptmap", "read") not in rows:
        continue
    c, x = rows[("ceiling", "read")], rows[("cryptmap", "read")]
    print(f"{run:9} read: ceiling {c[0]:5} MB/s cryptmap {x[0]:5} MB/s ratio {x[0]/c[0]:.2f} | CPU-s/GB fio+servers: "
          f"ceiling {c[1]:.2f}+{c[2]:.2f} cryptmap {x[1]:.2f}+{x[2]:.2f} | load {x[3]}")
    b = run.split("-")[0]
    agg.setdefault(b, []).append((c, x))
for b, l in agg.items():
    cs = statistics.mean(c[1] + c[2] for c, _ in l)
    xs = statistics.mean(x[1] + x[2] for _, x in l)
    print(f"{b}: {len(l)} runs, mean CPU-s per GB read: ceiling {cs:.2f}, cryptmap {xs:.2f} "
          f"(servers {statistics.mean(x[2] for _, x in l):.2f}); CPU-bound ratio {cs/xs:.2f}; "
          f"median MB/s ratio {statistics.median(x[0]/c[0] for c, x in l):.2f}")
for p in ["before-p", "after-p"]:
    f = os.path.join(here, p, "profile-runs.txt")
    if os.path.exists(f):
        print(p, "|", " | ".join(l.strip() for l in open(f) if l.startswith("read")))
