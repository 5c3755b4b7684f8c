# Table of the interleaved runs: python3 summarize.py DIR RUN... (each RUN a bench/io/run.sh OUT).
import csv, sys, os, statistics
base, runs = sys.argv[1], sys.argv[2:]
def load(run):
    p = os.path.join(base, run, 'summary.csv')
    if not os.path.exists(p): return None
    return {(r['system'], r['workload']): r for r in csv.DictReader(open(p))}
print("| run | workload | limit | passthrough (/ limit) | cryptmap (min-max) | / limit | daemon CPU % | per daemon CPU-s | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
agg = {}
for wl in ["seqwrite", "seqread", "randwrite-j4"]:
    for run in runs:
        d = load(run)
        if d is None: continue
        g = lambda s, k='median': float(d[(s, wl)][k]) if (s, wl) in d and d[(s, wl)][k] not in ('', None) else float('nan')
        lim = min(g('raw'), g('null'))
        cm, pt, cpu = g('cryptmap'), g('passthrough'), g('cryptmap', 'daemon_cpu_pct')
        per = cm / (cpu / 100) if cpu > 0 else float('nan')
        agg.setdefault((wl, run.split('-')[0]), []).append((cm / lim, cm, cpu, per, pt / lim, g('cryptmap', 'rss_peak_mib')))
        print(f"| {run} | {wl} | {lim:.0f} | {pt:.0f} ({pt/lim:.2f}) | {cm:.0f} ({g('cryptmap','min'):.0f}-{g('cryptmap','max'):.0f}) | {cm/lim:.2f} | {cpu:.0f} | {per:.0f} | {g('cryptmap','rss_peak_mib'):.0f} |")
print()
for (wl, who), v in sorted(agg.items()):
    print(wl, who, "medians over runs: cm/limit %.2f cm %.0f cpu %.0f per-cpu-s %.0f passthrough/limit %.2f rss %.0f" % tuple(statistics.median(x[i] for x in v) for i in range(6)))
