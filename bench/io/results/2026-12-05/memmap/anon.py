import re, sys
d = sys.argv[1]
maps = []
cur = None
for line in open(f"{d}/smaps.txt"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        cur = dict(lo=int(m[1], 16), hi=int(m[2], 16), perm=m[3], path=m[4].strip(), f={})
        maps.append(cur)
        continue
    k, _, v = line.partition(":")
    v = v.strip()
    if v.endswith("kB"):
        cur["f"][k] = int(v.split()[0])
    else:
        cur["f"][k] = v
sps = {}
for line in open(f"{d}/threads.txt"):
    p = line.split()
    if len(p) < 2: continue
    tid, comm = p[0], p[1]
    if len(p) >= 4 and p[2] != "running":
        try:
            sps[tid] = (comm, int(p[-2], 16))
        except ValueError:
            pass
def owners(m):
    return [f"{t}:{c}" for t, (c, sp) in sps.items() if m["lo"] <= sp < m["hi"]]
anon = [m for m in maps if m["path"] in ("", "[heap]", "[stack]")]
print(f"{'range':>35} {'perm':5} {'size':>8} {'rss':>7} {'locked':>7} {'path':8} threads")
for i, m in enumerate(maps):
    if m not in anon: continue
    size = (m["hi"] - m["lo"]) // 1024
    o = owners(m)
    print(f"{m['lo']:016x}-{m['hi']:016x} {m['perm']:5} {size:>8} {m['f'].get('Rss',0):>7} {m['f'].get('Locked',0):>7} {m['path']:8} {','.join(o)[:80]}")
