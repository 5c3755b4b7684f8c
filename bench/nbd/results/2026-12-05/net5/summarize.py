# Summarises interleaved bench/nbd/run.sh runs: python3 summarize.py DIR... (each DIR holds the
# runs' subdirectories with cpu.csv). Prints per run the read/write ratios and per row the CPU-s
# per GB of fio and of the serving processes (FUSE daemon + nbdkit), and their sum.
import csv, os, sys

for d in sys.argv[1:]:
    for run in sorted(os.listdir(d)):
        f = os.path.join(d, run, "cpu.csv")
        if not os.path.exists(f):
            continue
        rows = {(r["row"], r["rw"]): r for r in csv.DictReader(open(f)) if r["row"] != "profiled"}
        out = [run]
        for rw in ("read", "write"):
            c, ce, p = (float(rows[(k, rw)]["MB/s"]) for k in ("cryptmap", "ceiling", "peer"))
            out.append(f"{rw} {c:.0f} MB/s {c / ce:.2f} of ceiling {ce:.0f}, {c / p:.1f}x peer {p:.0f}")
        print(" | ".join(out))
        for (row, rw), r in sorted(rows.items()):
            gb = float(r["MB/s"]) * float(r["seconds"]) / 1000
            fio, srv = float(r["fio_cpu_s"]) / gb, float(r["servers_cpu_s"]) / gb
            print(f"    {row:9s} {rw:5s} fio {fio:.2f}  servers {srv:.2f}  sum {fio + srv:.2f} CPU-s/GB"
                  f"  (load {r['load']})")

# cryptmap's daemon and its nbdkit separately (results.md: "write D / S, read D / S" per run)
import re
print("\ncryptmap read, CPU-s per GB: daemon / nbdkit")
for d in sys.argv[1:]:
    for run in sorted(os.listdir(d)):
        md, f = os.path.join(d, run, "results.md"), os.path.join(d, run, "cpu.csv")
        if not (os.path.exists(md) and os.path.exists(f)):
            continue
        m = re.search(r"read ([\d.]+) / ([\d.]+)", open(md).read())
        rows = {(r["row"], r["rw"]): r for r in csv.DictReader(open(f))}
        r = rows[("cryptmap", "read")]
        gb = float(r["MB/s"]) * float(r["seconds"]) / 1000
        print(f"    {run}: {float(m.group(1)) / gb:.2f} / {float(m.group(2)) / gb:.2f}")
