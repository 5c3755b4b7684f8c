#!/usr/bin/env python3
"""njrw's pair table: per run, each system's median and its ratio to cryptmap in the same run,
and work per daemon CPU-second. Usage: summarize.py DIR... (each a bench/io/run.sh OUT)."""
import csv, os, sys

rows = []
for d in sys.argv[1:]:
    name = os.path.basename(d.rstrip('/'))
    with open(os.path.join(d, 'summary.csv')) as f:
        s = {(r['system'], r['workload']): r for r in csv.DictReader(f)}
    for wl in ('seqwrite', 'randwrite-j4'):
        base = float(s[('cryptmap', wl)]['median'])
        for sysn in ('cryptmap', 'cryptmap-hmac', 'cryptmap-hmac-nj', 'cryptmap-aead-nj'):
            r = s.get((sysn, wl))
            if not r:
                continue
            med = float(r['median'])
            cpu = float(r['daemon_cpu_pct'] or 0)
            per_cpu = med / (cpu / 100) if cpu else float('nan')
            rows.append((name, wl, sysn, med, med / base, per_cpu))
print('| run | workload | system | median | / cryptmap | per daemon CPU-s |')
print('|---|---|---|---:|---:|---:|')
for name, wl, sysn, med, ratio, per_cpu in rows:
    print(f'| {name} | {wl} | {sysn} | {med:,.0f} | {ratio:.2f} | {per_cpu:,.0f} |'.replace(',', ' '))
