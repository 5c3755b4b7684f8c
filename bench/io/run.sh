#!/usr/bin/env bash
# cryptmap's I/O benchmark: fio with O_DIRECT on, in the same run,
#   null         a null FUSE file (no crypto, no I/O): the ceiling of any FUSE design
#   passthrough  a FUSE file over the same image, no crypto: the ceiling of cryptmap's design
#   cryptmap     LUKS2, aes-xts-plain64, 512-bit key, 4096-byte sectors, over an image file
#   qsd-luks     qemu-storage-daemon's FUSE export over qemu's LUKS driver (LUKS1 image)
#   nbdkit-luks  nbdkit's luks filter through nbdfuse (LUKS1 image)
# Workloads: seq read/write 1 MiB (1 job), random read/write 4 KiB at numjobs 1 and 4.
# Prints a table of medians and the ratios against the passthrough ceiling and the best peer,
# writes results.csv and chart.svg to OUT (default /tmp/cryptmap-bench).
#
# Usage (root): bench/io/run.sh [BUILD_DIR]
# Env: SYSTEMS, WORKLOADS, RUNTIME (s, default 5), REPEATS (default 2), SIZE_MIB (default 1024),
#      CACHE_MIB (cryptmap --cache-size in MiB, default: cryptmap's default), OUT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
build=$(cd "$build" && pwd)
CM=$build/fs/cryptmap
CEIL=$build/bench/io/fuse_ceiling
OUT=${OUT:-/tmp/cryptmap-bench}
SYSTEMS=${SYSTEMS:-"null passthrough cryptmap qsd-luks nbdkit-luks"}
WORKLOADS=${WORKLOADS:-"seqread seqwrite randread-j1 randread-j4 randwrite-j1 randwrite-j4"}
RUNTIME=${RUNTIME:-5}
REPEATS=${REPEATS:-2}
SIZE_MIB=${SIZE_MIB:-1024}
[[ -x $CM && -x $CEIL ]] || { echo "build first: cmake --build $build (need fs/cryptmap and bench/io/fuse_ceiling)"; exit 2; }
for tool in fio cryptsetup; do command -v $tool >/dev/null || { echo "missing $tool"; exit 2; }; done
if [[ " $SYSTEMS " == *" qsd-luks "* ]] && ! command -v qemu-storage-daemon >/dev/null; then
  apt-get install -y -qq qemu-system-common >/dev/null
fi
if [[ " $SYSTEMS " == *" nbdkit-luks "* ]] && ! command -v nbdfuse >/dev/null; then
  apt-get install -y -qq nbdkit nbdfuse >/dev/null
fi

mkdir -p "$OUT"
W=$(mktemp -d /tmp/cryptmap-bench-work.XXXXXX)
MNT=$W/mnt
mkdir -p "$MNT"
PIDS=()
cleanup() {
  set +e
  "$CM" close bench --mount-dir "$MNT" --force >/dev/null 2>&1
  fusermount3 -u -z "$MNT" 2>/dev/null
  fusermount3 -u -z "$W/qsd.vol" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  pkill -f -- "$W" 2>/dev/null
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT
printf 'bench passphrase' > "$W/pass"
MiB=$((1 << 20))

echo "== images (${SIZE_MIB} MiB payload, filled with random data)"
truncate -s $(((SIZE_MIB + 16) * MiB)) "$W/luks2.img"
cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$W/pass" "$W/luks2.img"
dd if=/dev/urandom of="$W/luks2.img" bs=1M seek=16 count="$SIZE_MIB" conv=notrunc status=none
truncate -s $(((SIZE_MIB + 2) * MiB)) "$W/luks1.img"
cryptsetup luksFormat --batch-mode --type luks1 --cipher aes-xts-plain64 --key-size 512 --hash sha256 \
  --pbkdf-force-iterations 1000 --key-file "$W/pass" "$W/luks1.img"
l1off=$(($(cryptsetup luksDump "$W/luks1.img" | awk '/Payload offset/{print $3}') * 512))
dd if=/dev/urandom of="$W/luks1.img" bs=1M seek=$((l1off / MiB)) count="$SIZE_MIB" conv=notrunc status=none
sync

wait_file() { for _ in $(seq 1 100); do [[ -e $1 ]] && return 0; sleep 0.1; done; echo "timeout waiting for $1"; return 1; }
start_system() {  # sets TARGET (file fio uses) and DPIDS (daemon pids for RSS)
  case $1 in
    null)        "$CEIL" null "$SIZE_MIB" "$MNT" & PIDS+=($!); TARGET=$MNT/vol ;;
    passthrough) "$CEIL" passthrough "$W/luks2.img" $((16 * MiB)) "$MNT" & PIDS+=($!); TARGET=$MNT/vol ;;
    cryptmap)    "$CM" open "$W/luks2.img" bench --key-file "$W/pass" --mount-dir "$MNT" \
                   ${CACHE_MIB:+--cache-size ${CACHE_MIB}M}; TARGET=$MNT/bench ;;
    qsd-luks)    : > "$W/qsd.vol"
                 qemu-storage-daemon --object "secret,id=sec0,file=$W/pass" \
                   --blockdev "driver=file,node-name=prot,filename=$W/luks1.img" \
                   --blockdev "driver=luks,node-name=disk,file=prot,key-secret=sec0" \
                   --export "type=fuse,id=exp0,node-name=disk,mountpoint=$W/qsd.vol,writable=on" &
                 PIDS+=($!); sleep 1; TARGET=$W/qsd.vol ;;
    nbdkit-luks) nbdkit -f -U "$W/nbd.sock" file "$W/luks1.img" --filter=luks "passphrase=+$W/pass" & PIDS+=($!)
                 wait_file "$W/nbd.sock"
                 nbdfuse "$MNT/vol" --unix "$W/nbd.sock" & PIDS+=($!); TARGET=$MNT/vol ;;
  esac
  wait_file "$TARGET"
}
stop_system() {
  case $1 in
    cryptmap) "$CM" close bench --mount-dir "$MNT" ;;
    qsd-luks) for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5 ;;
    *)        fusermount3 -u "$MNT" 2>/dev/null || true; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5 ;;
  esac
  PIDS=()
}
daemon_rss_kib() {  # the largest RSS among processes with the work dir on their command line
  ps -eo rss=,args= | grep -F -- "$W" | grep -v grep | awk 'BEGIN{m=0} {if ($1>m) m=$1} END{print m}'
}
fio_args() {
  case $1 in
    seqread)      echo "--rw=read --bs=1M --numjobs=1" ;;
    seqwrite)     echo "--rw=write --bs=1M --numjobs=1" ;;
    randread-j1)  echo "--rw=randread --bs=4k --numjobs=1" ;;
    randread-j4)  echo "--rw=randread --bs=4k --numjobs=4" ;;
    randwrite-j1) echo "--rw=randwrite --bs=4k --numjobs=1" ;;
    randwrite-j4) echo "--rw=randwrite --bs=4k --numjobs=4" ;;
  esac
}

csv=$OUT/results.csv
echo "rep,system,workload,value,unit,rss_kib" > "$csv"
for rep in $(seq 1 "$REPEATS"); do
  for sys in $SYSTEMS; do
    start_system "$sys"
    for wl in $WORKLOADS; do
      # shellcheck disable=SC2046
      fio --name=b --filename="$TARGET" --direct=1 --ioengine=psync --time_based --ramp_time=1 \
        --runtime="$RUNTIME" --size=$((SIZE_MIB * MiB)) --group_reporting --output-format=json \
        $(fio_args "$wl") > "$W/fio.json" &
      fpid=$!
      sleep $((RUNTIME / 2 + 1))
      rss=$(daemon_rss_kib)
      wait $fpid
      python3 - "$W/fio.json" "$rep" "$sys" "$wl" "$rss" >> "$csv" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
rep, sysname, wl, rss = sys.argv[2:6]
if wl.startswith("seq"):
    side = j["read"] if "read" in wl else j["write"]
    print(f"{rep},{sysname},{wl},{side['bw_bytes'] / 1e6:.1f},MB/s,{rss}")
else:
    side = j["read"] if "read" in wl else j["write"]
    print(f"{rep},{sysname},{wl},{side['iops']:.0f},IOPS,{rss}")
PY
      echo "rep $rep  $sys  $wl  $(tail -n 1 "$csv" | cut -d, -f4,5)"
    done
    stop_system "$sys"
  done
done
python3 "$here/summarize.py" "$csv" "$OUT/chart.svg"
