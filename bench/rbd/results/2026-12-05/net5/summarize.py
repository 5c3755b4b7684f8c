# Summarises interleaved bench/rbd/run.sh runs: python3 summarize.py DIR (the runs'
# subdirectories with results.csv). CPU-s per GB of fio, the row's daemon and the OSD, each run
# and as means (cryptmap per build: before/after; the other rows over every run). A run's GB
# are its MB/s times (seconds + 1 s ramp), which the CPU figures cover too.
import csv, os, sys

acc = {}
d = sys.argv[1]
for run in sorted(os.listdir(d)):
    f = os.path.join(d, run, "results.csv")
    if not os.path.exists(f) or run == "after-full":
        continue
    for r in csv.DictReader(open(f)):
        if r["row"].endswith("-profiled"):
            continue
        gb = float(r["MB/s"]) * (int(r["seconds"]) + 1) / 1000
        v = [float(r[k]) / gb for k in ("fio_cpu_s", "daemon_cpu_s", "osd_cpu_s")]
        print(f"{run:9s} {r['row']:9s} {r['workload']:9s} {float(r['MB/s']):6.0f} MB/s  "
              + " / ".join(f"{x:.2f}" for x in v) + f" = {sum(v):.2f}  (load {r['load']})")
        group = run.split("-")[0] if r["row"] == "cryptmap" else "all"
        acc.setdefault((r["row"], r["workload"], group), []).append(v)
print()
for k, vs in sorted(acc.items()):
    m = [sum(x[i] for x in vs) / len(vs) for i in range(3)]
    print(f"{' '.join(k):28s} ({len(vs)}) " + " / ".join(f"{x:.2f}" for x in m) + f" = {sum(m):.2f}")
