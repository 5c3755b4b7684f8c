import csv, sys, os, statistics
base = sys.argv[1]
runs = sys.argv[2:]
def load(run):
    d = {}
    p = os.path.join(base, run, 'summary.csv')
    if not os.path.exists(p): return None
    for r in csv.DictReader(open(p)):
        d[(r['system'], r['workload'])] = r
    return d
print("| run | workload | limit | passthrough | cryptmap | / limit | daemon CPU % | cryptmap-uring | / limit | daemon CPU % |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
agg = {}
for wl in ["seqwrite", "seqread", "randwrite-j4"]:
    for run in runs:
        d = load(run)
        if d is None: continue
        g = lambda s, k='median': float(d[(s, wl)][k]) if (s, wl) in d and d[(s, wl)][k] not in ('', None) else float('nan')
        lim = min(g('raw'), g('null'))
        cm, cu, pt = g('cryptmap'), g('cryptmap-uring'), g('passthrough')
        agg.setdefault((wl, run.split('-')[0]), []).append((cm / lim, cu / lim, cm, cu, g('cryptmap', 'daemon_cpu_pct'), g('cryptmap-uring', 'daemon_cpu_pct'), pt / lim))
        print(f"| {run} | {wl} | {lim:.0f} | {pt:.0f} ({pt/lim:.2f}) | {cm:.0f} | {cm/lim:.2f} | {g('cryptmap','daemon_cpu_pct'):.0f} | {cu:.0f} | {cu/lim:.2f} | {g('cryptmap-uring','daemon_cpu_pct'):.0f} |")
print()
for (wl, who), v in sorted(agg.items()):
    print(wl, who, "median cm/limit %.2f uring/limit %.2f cm %.0f uring %.0f cpu %.0f/%.0f passthrough/limit %.2f" % tuple(statistics.median(x[i] for x in v) for i in range(7)))
