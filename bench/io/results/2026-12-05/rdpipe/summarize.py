#!/usr/bin/env python3
"""Medians per run of the interleaved pairs: MB/s or IOPS per system, cryptmap / min(raw, null),
cryptmap / passthrough, daemon CPU %; and the per-request counts of the profiled runs."""
import csv, glob, os, statistics, sys
here = os.path.dirname(os.path.abspath(__file__))
for run in ["before-1", "after-1", "after-2", "before-2", "before-3", "after-3", "after-4", "before-4", "before-5", "after-5", "after-6", "before-6"]:
    f = os.path.join(here, run, "results.csv")
    if not os.path.exists(f):
        continue
    rows = list(csv.DictReader(open(f)))
    for wl, key in [("seqread", "mb_s"), ("randread-j4", "iops")]:
        med = {}
        cpu = {}
        for s in ["raw", "null", "passthrough", "cryptmap"]:
            v = [float(r[key]) for r in rows if r["workload"] == wl and r["system"] == s and r[key]]
            c = [float(r["daemon_cpu_pct"]) for r in rows if r["workload"] == wl and r["system"] == s and r[key]]
            if v:
                med[s] = statistics.median(v)
                cpu[s] = statistics.median(c)
        if "cryptmap" not in med:
            continue
        lim = min(med.get("raw", 1e18), med.get("null", 1e18))
        print(f"{run:9} {wl:11} raw {med.get('raw',0):8.0f} null {med.get('null',0):8.0f} "
              f"pt {med.get('passthrough',0):8.0f} cm {med['cryptmap']:8.0f}  cm/limit {med['cryptmap']/lim:.2f} "
              f"cm/pt {med['cryptmap']/med.get('passthrough',1e18):.2f}  cm cpu% {cpu['cryptmap']:.0f}"
              f"  cm per daemon CPU-s {med['cryptmap'] / max(cpu['cryptmap'], 1) * 100:.0f}")
for st in sorted(glob.glob(os.path.join(here, "profile-*", "profile", "*.stat"))):
    print(os.path.relpath(st, here))
    print(open(st).read().rstrip())
