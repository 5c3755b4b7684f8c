#!/usr/bin/env bash
# cryptmap over a Ceph RBD store beside the same store with no crypto and a decrypting peer.
# Needs root, Debian's ceph-mon ceph-osd ceph-common, fio (with its rbd engine), cryptsetup-bin;
# optional row: qemu-storage-daemon (qemu-system-common) with qemu's rbd block driver
# (qemu-block-extra). Usage:
#   sudo bench/rbd/run.sh BUILD_DIR [SECONDS_PER_RUN] [OUT_DIR]
# Cluster: tests/integration/ceph_cluster.sh's one-node cluster (one monitor, one memstore OSD on
# 127.0.0.1, in RAM; the monitor on free ports or CRYPTMAP_CEPH_MON_PORT/_V1, so it runs beside
# another worktree's cluster), one 512 MiB image per row. Rows:
#   librbd     fio --ioengine=rbd on a raw image: librbd with no FUSE and no crypto (the ceiling;
#              rbd-fuse 16.2 is no ceiling here: it fails concurrent opens of one image, ENOENT
#              for some of fio's 4 jobs)
#   cryptmap   cryptmap open rbd:rbd/cm, LUKS2 made by cryptmap luksFormat (aes-xts-plain64,
#              4096-byte sectors), fio on the FUSE file
#   qsdraw     qemu-storage-daemon's FUSE export over qemu's rbd driver on a raw image, no
#              encryption: the FUSE ceiling (the same FUSE hop as cryptmap's, no crypto), as
#              nbdfuse is for NBD
#   qsd        the same export over an image with encrypt.format=luks2 (librbd's own LUKS
#              engine decrypts; image made by `rbd encryption format`): the peer
# Workloads on each row's file: fio O_DIRECT, psync (QD1 per job), 4 jobs each on its own quarter:
# sequential write and read of 1 MiB blocks, random write and read of 4 KiB blocks. Every image
# is filled first (untimed). Also the CPU seconds of the row's daemon and of the OSD per run.
# ROWS (default "librbd qsdraw cryptmap qsd") and WORKLOADS (default the four above; randread1m, random
# 1 MiB reads, is extra: streaming reads that read-ahead cannot serve) pick what runs.
# Prints a Markdown table; raw fio JSON, the table and the host's load go to OUT_DIR.
# A benchmark, never a test.
set -euo pipefail
BUILD=${1:?usage: run.sh BUILD_DIR [SECONDS] [OUT_DIR]}
SECS=${2:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
CM=$(realpath "$BUILD/cli/cryptmap")
for t in fio cryptsetup rbd; do command -v $t > /dev/null || { echo "needs $t"; exit 1; }; done
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*rbd' || { echo "fio has no rbd engine"; exit 1; }
source "$HERE/../../tests/integration/ceph_cluster.sh"
W=$(mktemp -d /dev/shm/cryptmap-rbd-bench.XXXXXX)
OUT=${3:-$W/out}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  set +e
  "$CM" close --mount-dir "$W/cm" b 2> /dev/null
  for m in "$W"/m-*; do mountpoint -q "$m" && fusermount3 -u "$m"; done
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null; done
  sleep 1
  ceph_cluster_stop "$W/ceph"
  [[ "$OUT" == "$W"/* ]] && echo "results were in $OUT (removed; pass OUT_DIR to keep them)"
  rm -rf "$W"
}
trap cleanup EXIT
SIZE_MIB=512
JOB_MIB=$((SIZE_MIB / 4))
printf 'bench passphrase' > "$W/key"
ceph_cluster_start "$W/ceph" 3G
OSD=$(cat "$W/ceph/run/osd.0.pid")

cpu_ticks() {  # cpu_ticks PID...: utime+stime of the processes and their threads, in ticks
  local sum=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $sum
}
# run ROW WORKLOAD DAEMON_PID FIO_ARGS...: one timed fio run; appends a CSV line to $OUT/results.csv
run() {
  local row=$1 wl=$2 dpid=$3 rw bs
  shift 3
  case $wl in
    seqwrite) rw=write bs=1M ;; seqread) rw=read bs=1M ;;
    randwrite) rw=randwrite bs=4k ;; randread) rw=randread bs=4k ;;
    randread1m) rw=randread bs=1M ;;
  esac
  local d0 o0 d1 o1
  d0=$(cpu_ticks $dpid) o0=$(cpu_ticks "$OSD")
  local TIMEFORMAT='%U %S'
  { time fio --name=b "$@" --bs=$bs --numjobs=4 --size=${JOB_MIB}M --offset_increment=${JOB_MIB}M \
    --rw=$rw --time_based --runtime="$SECS" --ramp_time=1 --group_reporting \
    --output-format=json > "$OUT/$row-$wl.json" ; } 2> "$W/fio.time"
  d1=$(cpu_ticks $dpid) o1=$(cpu_ticks "$OSD")
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$OUT/$row-$wl.json" "$row" "$wl" "$(( d1 - d0 ))" "$(( o1 - o0 ))" "$hz" "$SECS" \
    "$(tail -n 1 "$W/fio.time" | awk '{print $1 + $2}')" >> "$OUT/results.csv" <<'PY'
import json, sys
f, row, wl, dt, ot, hz, secs, fio_cpu = sys.argv[1:]
j = json.load(open(f))["jobs"][0]
bw = (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 1e6
iops = j["read"]["iops"] + j["write"]["iops"]
load = open("/proc/loadavg").read().split()[0]
print(f"{row},{wl},{bw:.0f},{iops:.0f},{int(dt)/int(hz):.1f},{int(ot)/int(hz):.1f},{secs},{load},"
      f"{float(fio_cpu):.1f}")
PY
}
# fill FIO_ARGS...: writes every job's quarter once (untimed), so reads find data everywhere
fill() {
  fio --name=fill "$@" --bs=1M --numjobs=4 --size=${JOB_MIB}M --offset_increment=${JOB_MIB}M \
    --rw=write --output-format=terse > /dev/null
}
WORKLOADS=${WORKLOADS:-"seqwrite seqread randwrite randread"}
echo "row,workload,MB/s,IOPS,daemon_cpu_s,osd_cpu_s,seconds,load,fio_cpu_s" > "$OUT/results.csv"

# librbd: fio's rbd engine, one librbd client per job. The image has no exclusive-lock feature:
# four clients writing one image with it would pass the lock back and forth on every write.
ROWS=" ${ROWS:-librbd qsdraw cryptmap qsd} "
if [[ $ROWS == *" librbd "* ]]; then
  rbd create --size ${SIZE_MIB}M --image-feature layering rbd/raw
  LIBRBD=(--ioengine=rbd --clientname=admin --pool=rbd --rbdname=raw --iodepth=1)
  fill "${LIBRBD[@]}"
  for wl in $WORKLOADS; do run librbd $wl "" "${LIBRBD[@]}"; done
  # each row's image goes when it is done: the memstore OSD keeps them in RAM
  rbd rm --no-progress rbd/raw > /dev/null 2>&1 || true
fi

# cryptmap over rbd:rbd/cm
if [[ $ROWS == *" cryptmap "* ]]; then
  rbd create --size $((SIZE_MIB + 16))M rbd/cm
  "$CM" luksFormat --batch-mode --type luks2 --sector-size 4096 --pbkdf pbkdf2 \
    --pbkdf-force-iterations 1000 --key-file "$W/key" rbd:rbd/cm
  "$CM" open --mount-dir "$W/cm" --key-file "$W/key" rbd:rbd/cm b 2> "$OUT/cryptmap-open.log"
  DPID=$(pgrep -f -- "daemon --mount-dir $W/cm" | head -n 1)
  F=(--filename="$W/cm/b" --direct=1 --ioengine=psync)
  fill "${F[@]}"
  for wl in $WORKLOADS; do run cryptmap $wl "$DPID" "${F[@]}"; done
  if [[ -n "${PROFILE:-}" ]] && command -v perf > /dev/null; then
    for wl in seqread seqwrite; do
      perf record -e cpu-clock -g -p "$DPID" -o "$W/perf-$wl.data" -- sleep "$SECS" > /dev/null 2>&1 &
      PP=$!
      run cryptmap-profiled $wl "$DPID" "${F[@]}"
      wait $PP || true
      perf report -i "$W/perf-$wl.data" --no-children --sort dso,sym --stdio -g none 2> /dev/null |
        grep -v "^#" | grep -v "^$" | sed -n 1,40p > "$OUT/profile-cryptmap-$wl.txt"
      # Who calls the symbols above 3 % (libc has no frame pointers: its callers stay unknown).
      perf report -i "$W/perf-$wl.data" --no-children --sort sym --stdio -g caller,0.5,2 \
        --percent-limit 3 2> /dev/null | grep -v "^#" | grep -v "^$" | sed -n 1,200p \
        > "$OUT/profile-cryptmap-$wl-callers.txt"
    done
  fi
  "$CM" close --mount-dir "$W/cm" b
  rbd rm --no-progress rbd/cm > /dev/null 2>&1 || true
fi

# qsd_row ROW IMAGE [BLOCKDEV_OPTS]: qemu-storage-daemon's FUSE export over qemu's rbd driver
# on rbd/IMAGE, fio through it
qsd_row() {
  local row=$1 image=$2 extra=${3:-} qpid
  : > "$W/m-$row"
  qemu-storage-daemon --object "secret,id=sec0,file=$W/key" \
    --blockdev "driver=rbd,node-name=disk,pool=rbd,image=$image,conf=$CEPH_CONF$extra" \
    --export "type=fuse,id=exp0,node-name=disk,mountpoint=$W/m-$row,writable=on" \
    2> "$OUT/$row.log" &
  qpid=$!
  PIDS+=($qpid)
  for _ in $(seq 1 600); do
    (( $(stat -c %s "$W/m-$row") > 0 )) && break
    kill -0 $qpid 2> /dev/null || { cat "$OUT/$row.log"; exit 1; }
    sleep 0.1
  done
  F=(--filename="$W/m-$row" --direct=1 --ioengine=psync)
  fill "${F[@]}"
  for wl in $WORKLOADS; do run $row $wl $qpid "${F[@]}"; done
  kill $qpid  # qsd 7.2 is stopped by SIGTERM (it spins if its export is unmounted under it)
  wait $qpid 2> /dev/null || true
  rbd rm --no-progress rbd/$image > /dev/null 2>&1 || true
}
HAVE_QSD=
command -v qemu-storage-daemon > /dev/null && ls /usr/lib/*/qemu/block-rbd.so > /dev/null 2>&1 &&
  HAVE_QSD=1
for row in qsdraw qsd; do
  [[ $ROWS == *" $row "* ]] || continue
  if [[ -z $HAVE_QSD ]]; then
    echo "qemu-storage-daemon or qemu's rbd driver (qemu-block-extra) missing: no $row row" |
      tee -a "$OUT/notes.txt"
  elif [[ $row == qsdraw ]]; then
    # qsdraw: the same FUSE export over a raw image, no encryption (the FUSE ceiling)
    rbd create --size ${SIZE_MIB}M rbd/qraw
    qsd_row qsdraw qraw
  else
    # qsd: librbd's LUKS2 engine decrypts (encrypt.format=luks2): the peer
    rbd create --size $((SIZE_MIB + 16))M rbd/peer  # librbd puts the LUKS2 payload at 16 MiB
    timeout 300 rbd encryption format rbd/peer luks2 "$W/key"
    qsd_row qsd peer ",encrypt.format=luks2,encrypt.key-secret=sec0"
  fi
done

{
  echo "$(nproc) CPUs, load before/after: see results.csv; $(date -u +%FT%TZ)"
  echo "cryptmap $(git -C "$HERE" rev-parse --short HEAD 2> /dev/null), $(fio --version)," \
    "$(rbd --version | cut -d' ' -f1-3), $(qemu-storage-daemon --version 2> /dev/null | head -1)"
} > "$OUT/host.txt"
python3 - "$OUT/results.csv" "$SECS" <<'PY' | tee "$OUT/results.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
val = {(r["row"], r["workload"]): r for r in rows}
systems = [s for s in ("librbd", "qsdraw", "cryptmap", "qsd") if any(k[0] == s for k in val)]
peers = [p for p in ("librbd", "qsdraw", "qsd") if p in systems]
wls = [("seqwrite", "MB/s"), ("seqread", "MB/s"), ("randwrite", "IOPS"), ("randread", "IOPS"),
       ("randread1m", "MB/s")]
def v(s, w, unit):
    return float(val[(s, w)][unit]) if (s, w) in val else None
print("| workload | " + " | ".join(systems) + " | "
      + " | ".join(f"cryptmap/{p}" for p in peers) + " |")
print("|---|" + "---:|" * (len(systems) + len(peers)))
wls = [(w, u) for w, u in wls if any((s, w) in val for s in systems)]
for w, unit in wls:
    cells = [f"{v(s, w, unit):.0f}" if (s, w) in val else "-" for s in systems]
    c = v("cryptmap", w, unit)
    ratios = []
    for s in peers:
        b = v(s, w, unit)
        ratios.append(f"{c / b:.2f}" if b and c is not None else "-")
    print(f"| {w} ({unit}, 4 jobs) | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
print()
print("| CPU-s per run (daemon / OSD) | " + " | ".join(systems) + " |")  # daemon: none for librbd
print("|---|" + "---:|" * len(systems))
for w, unit in wls:
    print(f"| {w} | " + " | ".join(
        f"{val[(s, w)]['daemon_cpu_s']} / {val[(s, w)]['osd_cpu_s']}" if (s, w) in val else "-"
        for s in systems) + " |")
print()
print("| CPU-s per GB moved (fio / daemon / OSD) | " + " | ".join(systems) + " |")
print("|---|" + "---:|" * len(systems))
for w, unit in wls:
    if unit != "MB/s":
        continue
    def per_gb(r):
        # fio's figure covers the timed run and its 1 s ramp, the daemon's and the OSD's too
        gb = float(r["MB/s"]) * (int(r["seconds"]) + 1) / 1000
        return " / ".join(f"{float(r[k]) / gb:.2f}" for k in ("fio_cpu_s", "daemon_cpu_s", "osd_cpu_s"))
    print(f"| {w} | " + " | ".join(per_gb(val[(s, w)]) if (s, w) in val else "-" for s in systems) + " |")
print(f"\n({sys.argv[2]} s per run + 1 s ramp; load average at the end of each run: "
      + ", ".join(sorted({r['load'] for r in rows})) + ")")
PY
