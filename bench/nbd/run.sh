#!/usr/bin/env bash
# cryptmap over an NBD store beside the same export with no crypto and a decrypting peer.
# Needs root, nbdkit, nbdfuse (libnbd-bin), fio, cryptsetup. Usage:
#   sudo [PROFILE=1] bench/nbd/run.sh BUILD_DIR [SECONDS_PER_RUN] [OUT_DIR]
# PROFILE=1 adds a `perf record` of cryptmap's daemon under one more read and write run each
# (profile-cryptmap-{read,write}.txt in OUT_DIR, which also gets the table as results.md).
# Server: nbdkit's file plugin over an image on tmpfs (/dev/shm), on a Unix socket. Rows:
#   ceiling   nbdfuse over the raw export (no crypto; the same libnbd client, 4 connections)
#   cryptmap  cryptmap open nbd+unix://… of a LUKS2 image (aes-xts-plain64, 4096-byte sectors)
#   peer      nbdkit's luks filter decrypting a LUKS1 image in the server, read through nbdfuse
# Workloads: fio O_DIRECT sequential write and read, 1 MiB blocks, 4 jobs (psync) on the mapped
# file. Prints MB/s per row and cryptmap's ratios, the CPU seconds of cryptmap's daemon and
# of the nbdkit serving it per run, and per row the CPU-s per GB moved of fio and of the serving
# processes (FUSE daemon + nbdkit; cpu.csv in OUT_DIR). A benchmark, never a test.
set -euo pipefail
BUILD=${1:?usage: run.sh BUILD_DIR [SECONDS]}
SECS=${2:-10}
OUT=${3:-}
CM=$(realpath "$BUILD/cli/cryptmap")
for t in nbdkit nbdfuse fio cryptsetup; do command -v $t > /dev/null || { echo "needs $t"; exit 1; }; done
W=$(mktemp -d /dev/shm/cryptmap-nbd-bench.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for m in "$W"/m-*; do mountpoint -q "$m" && fusermount3 -u "$m"; done
  "$CM" close --mount-dir "$W/cm" b 2> /dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null; done
  sleep 0.5
  rm -rf "$W"
}
trap cleanup EXIT
SIZE=$((1 << 30))
printf 'bench passphrase' > "$W/key"
serve() {  # serve NAME ARGS...: nbdkit on $W/NAME.sock
  local n=$1; shift
  nbdkit -f --exit-with-parent -U "$W/$n.sock" -P "$W/$n.pid" "$@" &
  PIDS+=($!)
  for _ in $(seq 1 200); do [[ -s "$W/$n.pid" ]] && return; sleep 0.05; done
  echo "nbdkit $* did not start"; exit 1
}
cpu_ticks() {  # cpu_ticks PID...: utime+stime of the processes and their threads, in ticks
  local sum=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] && sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $sum
}
# fio_mbps FILE rw|read|write [PID...] -> MB/s; appends "row,rw,MB/s,fio CPU-s,CPU-s of the
# PIDs (the serving processes: FUSE daemon and nbdkit),seconds,load" to $W/cpu.csv (row: $ROW)
fio_mbps() {
  local f=$1 rw=$2 t0 t1 mbps fcpu
  shift 2
  t0=$(cpu_ticks "$@")
  local TIMEFORMAT='%U %S'
  { time (cd "$W" && fio --name=b --filename="$f" --direct=1 --ioengine=psync --bs=1M --numjobs=4 \
    --size=192M --offset_increment=192M --rw="$rw" --time_based --runtime="$SECS" \
    --group_reporting --output-format=json > "$W/fio.json") ; } 2> "$W/fio.time"
  t1=$(cpu_ticks "$@")
  mbps=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(round((j["read"]["bw_bytes"]+j["write"]["bw_bytes"])/1e6))' "$W/fio.json")
  fcpu=$(tail -n 1 "$W/fio.time" | awk '{print $1 + $2}')
  echo "$ROW,$rw,$mbps,$fcpu,$(echo "scale=2; ($t1 - $t0) / $(getconf CLK_TCK)" | bc),$SECS,$(cut -d' ' -f1 /proc/loadavg)" >> "$W/cpu.csv"
  echo "$mbps"
}
declare -A R C

truncate -s $SIZE "$W/raw.img"
serve raw file "$W/raw.img"
mkdir -p "$W/m-raw"
nbdfuse -C 4 "$W/m-raw/nbd" "nbd+unix:///?socket=$W/raw.sock" &
PIDS+=($!)
NFPID=$!
for _ in $(seq 1 100); do [[ -e "$W/m-raw/nbd" ]] && break; sleep 0.05; done
ROW=ceiling
R[ceiling,write]=$(fio_mbps "$W/m-raw/nbd" write $NFPID "$(cat "$W/raw.pid")")
R[ceiling,read]=$(fio_mbps "$W/m-raw/nbd" read $NFPID "$(cat "$W/raw.pid")")
fusermount3 -u "$W/m-raw"

truncate -s $SIZE "$W/luks2.img"
cryptsetup luksFormat --batch-mode --type luks2 --sector-size 4096 --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --key-file "$W/key" "$W/luks2.img"
serve luks2 file "$W/luks2.img"
"$CM" open --mount-dir "$W/cm" --key-file "$W/key" "nbd+unix:///?socket=$W/luks2.sock" b 2> /dev/null
DPID=$(pgrep -f -- "daemon --mount-dir $W/cm" | head -n 1)
SPID=$(cat "$W/luks2.pid")
ROW=cryptmap
for rw in write read; do  # with the CPU seconds of the daemon and of its nbdkit per run
  d0=$(cpu_ticks "$DPID") s0=$(cpu_ticks "$SPID")
  R[cryptmap,$rw]=$(fio_mbps "$W/cm/b" $rw "$DPID" "$SPID")
  d1=$(cpu_ticks "$DPID") s1=$(cpu_ticks "$SPID")
  C[$rw]="$(echo "scale=1; ($d1 - $d0) / $(getconf CLK_TCK)" | bc) / $(echo "scale=1; ($s1 - $s0) / $(getconf CLK_TCK)" | bc)"
done
if [[ -n "${PROFILE:-}" && -n "$OUT" ]] && command -v perf > /dev/null; then
  mkdir -p "$OUT"
  for rw in read write; do
    perf record -e cpu-clock -g -p "$DPID" -o "$W/perf-$rw.data" -- sleep "$SECS" > /dev/null 2>&1 &
    PP=$!
    # Hand-offs: the daemon's context switches and futex calls in the same run, per 1 MiB.
    perf stat -x, -e context-switches,syscalls:sys_enter_futex -p "$DPID" -o "$W/stat-$rw.csv" \
      -- sleep "$SECS" > /dev/null 2>&1 &
    SP=$!
    echo "profiled $rw: $(ROW=profiled fio_mbps "$W/cm/b" $rw "$DPID" "$SPID") MB/s" >> "$OUT/profile-runs.txt"
    wait $PP || true
    wait $SP || true
    mib=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(j["read"]["total_ios"]+j["write"]["total_ios"])' "$W/fio.json")
    awk -F, -v n="$mib" '/^[0-9]/ { printf "%s %s: %d, per 1 MiB request %.2f\n", rw, $3, $1, $1 / n }' \
      rw="$rw" "$W/stat-$rw.csv" >> "$OUT/profile-runs.txt"
    perf report -i "$W/perf-$rw.data" --no-children --sort dso,sym --stdio -g none 2> /dev/null |
      grep -v "^#" | grep -v "^$" | sed -n 1,40p > "$OUT/profile-cryptmap-$rw.txt"
    # Who calls the symbols above 3 % (libc has no frame pointers: its callers stay unknown).
    perf report -i "$W/perf-$rw.data" --no-children --sort sym --stdio -g caller,0.5,2 \
      --percent-limit 3 2> /dev/null | grep -v "^#" | grep -v "^$" | sed -n 1,200p \
      > "$OUT/profile-cryptmap-$rw-callers.txt"
  done
fi
"$CM" close --mount-dir "$W/cm" b

truncate -s $SIZE "$W/luks1.img"
cryptsetup luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 \
  --key-file "$W/key" "$W/luks1.img"
serve luks1 --filter=luks file "$W/luks1.img" passphrase=+"$W/key"
mkdir -p "$W/m-luks1"
nbdfuse -C 4 "$W/m-luks1/nbd" "nbd+unix:///?socket=$W/luks1.sock" &
PIDS+=($!)
NFPID=$!
for _ in $(seq 1 100); do [[ -e "$W/m-luks1/nbd" ]] && break; sleep 0.05; done
ROW=peer
R[peer,write]=$(fio_mbps "$W/m-luks1/nbd" write $NFPID "$(cat "$W/luks1.pid")")
R[peer,read]=$(fio_mbps "$W/m-luks1/nbd" read $NFPID "$(cat "$W/luks1.pid")")
fusermount3 -u "$W/m-luks1"

{
printf '| workload | ceiling (nbdfuse, no crypto) | cryptmap | peer (nbdkit luks + nbdfuse) | cryptmap/ceiling | cryptmap/peer |\n|---|---:|---:|---:|---:|---:|\n'
for w in write read; do
  printf '| seq %s 1M x4 | %s | %s | %s | %.2f | %.1f |\n' "$w" "${R[ceiling,$w]}" "${R[cryptmap,$w]}" \
    "${R[peer,$w]}" "$(echo "${R[cryptmap,$w]} / ${R[ceiling,$w]}" | bc -l)" \
    "$(echo "${R[cryptmap,$w]} / ${R[peer,$w]}" | bc -l)"
done
echo "(MB/s; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%FT%TZ))"
echo "cryptmap CPU-s per run (daemon / its nbdkit): write ${C[write]}, read ${C[read]}"
echo
echo "CPU-s per GB moved (fio = fio's user+sys; servers = the FUSE daemon and the nbdkit behind it):"
echo "| row | rw | MB/s | fio | servers | load |"
echo "|---|---|---:|---:|---:|---:|"
awk -F, '$1 != "profiled" { gb = $3 * $6 / 1000; printf "| %s | %s | %s | %.2f | %.2f | %s |\n", $1, $2, $3, $4 / gb, $5 / gb, $7 }' "$W/cpu.csv"
} | if [[ -n "$OUT" ]]; then mkdir -p "$OUT"; tee "$OUT/results.md"; else cat; fi
[[ -z "$OUT" ]] || { echo "row,rw,MB/s,fio_cpu_s,servers_cpu_s,seconds,load"; cat "$W/cpu.csv"; } > "$OUT/cpu.csv"
