#!/usr/bin/env bash
# Encryption with a data shift (`reencrypt --encrypt --reduce-device-size`, docs/reencrypt.md
# §13, online: §10 item 10), the data phase: every run is `--init-only` then a timed
# `--resume-only`. Needs root (FUSE mounts), cryptsetup, fio. Usage:
#   sudo bench/reencrypt/datashift.sh BUILD_DIR [SIZE_MIB, default 256] [REDUCE, default 32M]
# A plain image of SIZE_MIB of random data plus REDUCE on tmpfs (/dev/shm); keyslot PBKDF2
# forced to 1000 iterations on both sides. Rows, each on a fresh copy, REPEATS times (default 2):
#   raw               dd read+write of the data (1 MiB blocks): the medium's ceiling
#   cryptsetup        cryptsetup 2.6.1 offline (--force-offline-reencrypt)
#   cryptmap          cryptmap offline
#   cryptmap-online   the image open in the daemon (open serves it in encryption), run by it
#   cryptmap-busy     the same with fio (4 jobs, 4 KiB O_DIRECT randrw) on the FUSE file
# Prints seconds and MiB/s per run and the median ratios to cryptsetup. A benchmark, never a test.
set -euo pipefail
BUILD=${1:?usage: datashift.sh BUILD_DIR [SIZE_MIB] [REDUCE]}
SIZE_MIB=${2:-256}
REDUCE=${3:-32M}
REPEATS=${REPEATS:-2}
SCRATCH=cryptmap-dshift-bench
source "$(dirname "$0")/lib.sh"
REDUCE_B=$(numfmt --from=iec "$REDUCE")
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/base.img"
truncate -s $(((SIZE_MIB << 20) + REDUCE_B)) "$W/base.img"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
init() {  # init TOOL: --init-only on a fresh copy $W/r.img
  cp "$W/base.img" "$W/r.img"
  if [[ $1 == cryptsetup ]]; then
    cryptsetup reencrypt --encrypt --reduce-device-size "$REDUCE" --init-only --batch-mode \
      --force-offline-reencrypt "${FAST[@]}" --key-file "$W/key" "$W/r.img" > /dev/null
  else
    "$CM" reencrypt --encrypt --reduce-device-size "$REDUCE" --init-only --batch-mode \
      "${FAST[@]}" --key-file "$W/key" "$W/r.img"
  fi
}
declare -A RES
row() {  # row NAME: one timed data phase, appended to RES[NAME]
  local t0 t1 name=$1
  case $name in
    raw)
      cp "$W/base.img" "$W/r.img"
      t0=$(now)
      dd if="$W/r.img" of="$W/r2.img" bs=1M count="$SIZE_MIB" status=none
      t1=$(now)
      rm -f "$W/r2.img"
      ;;
    cryptsetup)
      init cryptsetup
      t0=$(now)
      cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$W/key" \
        "$W/r.img" > /dev/null
      t1=$(now)
      ;;
    cryptmap)
      init cryptmap
      t0=$(now)
      "$CM" reencrypt --resume-only --batch-mode --key-file "$W/key" "$W/r.img"
      t1=$(now)
      ;;
    cryptmap-online | cryptmap-busy)
      init cryptmap
      mkdir -p "$W/mnt"
      "$CM" open --mount-dir "$W/mnt" --key-file "$W/key" "$W/r.img" r
      if [[ $name == cryptmap-busy ]]; then
        fio --name=b --filename="$W/mnt/r" --direct=1 --ioengine=psync --numjobs=4 --rw=randrw \
          --bs=4k --time_based --runtime=600 --size=$((SIZE_MIB / 2))M --group_reporting \
          --output="$W/fio.txt" > /dev/null 2>&1 &
        FIO_PID=$!
        sleep 1
      fi
      t0=$(now)
      "$CM" reencrypt --resume-only --batch-mode --key-file "$W/key" --mount-dir "$W/mnt" \
        "$W/r.img" > /dev/null
      t1=$(now)
      if [[ -n $FIO_PID ]]; then
        kill "$FIO_PID" 2> /dev/null || true
        wait "$FIO_PID" 2> /dev/null || true
        FIO_PID=
      fi
      "$CM" close --mount-dir "$W/mnt" r
      ;;
  esac
  local s
  s=$(secs "$t0" "$t1")
  RES[$name]+="$s "
  echo "$name: $s s ($(python3 -c "print(f'{$SIZE_MIB / $s:.0f}')") MiB/s)"
}
echo "# $(date -u +%F) $(git -C "$(dirname "$0")" rev-parse --short HEAD 2> /dev/null) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $SIZE_MIB MiB of data, --reduce-device-size $REDUCE, tmpfs, $REPEATS runs per row, interleaved"
for _ in $(seq 1 "$REPEATS"); do
  for r in raw cryptsetup cryptmap cryptmap-online cryptmap-busy; do row "$r"; done
done
cs=$(median "${RES[cryptsetup]}")
for r in raw cryptsetup cryptmap cryptmap-online cryptmap-busy; do
  m=$(median "${RES[$r]}")
  echo "median $r: $m s, $(python3 -c "print(f'{$cs / $m:.2f}')")x cryptsetup's rate"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
