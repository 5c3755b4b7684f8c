#!/usr/bin/env bash
# Reencryption rate (issue #18's goal: >= 2x `cryptsetup reencrypt --force-offline-reencrypt`
# with the volume in use). Needs root (FUSE mounts), cryptsetup, fio. Usage:
#   sudo bench/reencrypt/run.sh BUILD_DIR [SIZE_MIB, default 1024] [RESILIENCE, default checksum]
# One LUKS2 image (aes-xts-plain64, 512-bit key) on tmpfs (/dev/shm), re-keyed to a new 256-bit
# key. Every run is `--init-only` then a timed `--resume-only`, so the rates compare the data
# phase (the init's PBKDF work is reported apart); keyslot PBKDF2 forced to 1000 iterations on
# both sides. Rows, each on a fresh copy of the same image, REPEATS times (default 2):
#   raw               dd read+write of the data area (1 MiB blocks, no crypto): the medium's ceiling
#   cryptsetup        cryptsetup 2.6.1 offline (--force-offline-reencrypt)
#   cryptmap          cryptmap offline
#   cryptmap-online   the image open in the daemon, run by the daemon, the volume idle
#   cryptmap-inuse    the same with fio (4 jobs, 4 KiB O_DIRECT randrw, 50/50) on the FUSE file
#                     throughout, each job held to INUSE_IOPS (default 1000) I/Os per second: a
#                     volume in steady use
#   cryptmap-busy     the same with fio unthrottled: as many I/Os as the two cores allow, so the
#                     reencryption and the user's I/O share the CPU (the worst case);
#                     fio's IOPS during the inuse and busy runs are printed too
# Prints MiB/s per row (median) and the ratios to cryptsetup and to raw. A benchmark, never a test.
set -euo pipefail
BUILD=${1:?usage: run.sh BUILD_DIR [SIZE_MIB] [RESILIENCE]}
SIZE_MIB=${2:-1024}
RES=${3:-checksum}
REPEATS=${REPEATS:-2}
INUSE_IOPS=${INUSE_IOPS:-1000}
SCRATCH=cryptmap-reenc-bench
source "$(dirname "$0")/lib.sh"
truncate -s $(((SIZE_MIB + 16) << 20)) "$W/base.img"
cryptsetup luksFormat --batch-mode --type luks2 --key-size 512 "${FAST[@]}" --key-file "$W/key" "$W/base.img"
OFF=$(cryptsetup luksDump --dump-json-metadata "$W/base.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["segments"]["0"]["offset"])')
# Allocate every data block (tmpfs reads holes faster than pages).
dd if=/dev/zero of="$W/base.img" bs=1M seek=$((OFF >> 20)) count="$SIZE_MIB" conv=notrunc status=none

ms_of() { local t0; t0=$(date +%s%N); "$@"; echo $((($(date +%s%N) - t0) / 1000000)); }
init_cmd() {  # init_cmd TOOL IMAGE
  if [[ $1 == cryptsetup ]]; then
    cryptsetup reencrypt --init-only --batch-mode --force-offline-reencrypt "${FAST[@]}" --key-file "$W/key" \
      --key-size 256 --resilience "$RES" "$2" > /dev/null 2>&1
  else
    "$CM" reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$W/key" --key-size 256 --resilience "$RES" "$2"
  fi
}
declare -A MS INIT IOPS
add() { MS[$1]="${MS[$1]:-} $2"; }

for rep in $(seq 1 "$REPEATS"); do
  cp "$W/base.img" "$W/r.img"
  add raw "$(ms_of dd if="$W/base.img" of="$W/r.img" bs=1M skip=$((OFF >> 20)) seek=$((OFF >> 20)) \
    count="$SIZE_MIB" conv=notrunc status=none)"

  cp "$W/base.img" "$W/r.img"
  INIT[cryptsetup]="${INIT[cryptsetup]:-} $(ms_of init_cmd cryptsetup "$W/r.img")"
  add cryptsetup "$(ms_of cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt \
    --key-file "$W/key" --resilience "$RES" "$W/r.img")"

  cp "$W/base.img" "$W/r.img"
  INIT[cryptmap]="${INIT[cryptmap]:-} $(ms_of init_cmd cryptmap "$W/r.img")"
  add cryptmap "$(ms_of "$CM" reencrypt --resume-only --batch-mode --key-file "$W/key" --resilience "$RES" "$W/r.img")"

  for row in cryptmap-online cryptmap-inuse cryptmap-busy; do
    cp "$W/base.img" "$W/r.img"
    init_cmd cryptmap "$W/r.img"
    "$CM" open --mount-dir "$W/mnt" --key-file "$W/key" "$W/r.img" r
    if [[ $row != cryptmap-online ]]; then
      rate=()
      [[ $row == cryptmap-inuse ]] && rate=(--rate_iops="$INUSE_IOPS")
      fio --name=busy --filename="$W/mnt/r" --direct=1 --ioengine=psync --bs=4k --numjobs=4 \
        --rw=randrw --size=$((SIZE_MIB / 4))M --offset_increment=$((SIZE_MIB / 4))M --time_based \
        "${rate[@]}" --runtime=600 --group_reporting --output-format=json --output="$W/fio.json" &
      FIO_PID=$!
      sleep 1
    fi
    add $row "$(ms_of "$CM" reencrypt --resume-only --batch-mode --key-file "$W/key" --resilience "$RES" \
      --mount-dir "$W/mnt" "$W/r.img")"
    if [[ -n $FIO_PID ]]; then
      kill -INT "$FIO_PID"
      wait "$FIO_PID" || true
      FIO_PID=
      IOPS[$row]="${IOPS[$row]:-} $(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); j=json.loads(t[t.index("{"):])["jobs"][0]; print(round(j["read"]["iops"]+j["write"]["iops"]))' "$W/fio.json")"
    fi
    "$CM" close --mount-dir "$W/mnt" r
  done
done

rate() { python3 -c "print(round($SIZE_MIB / ($1 / 1000), 1))"; }
cs=$(median "${MS[cryptsetup]}")
raw=$(median "${MS[raw]}")
echo "reencryption of $SIZE_MIB MiB, resilience $RES, $REPEATS runs each (medians), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "init (--init-only, ms): cryptsetup$(median "${INIT[cryptsetup]}" | sed 's/^/ /'), cryptmap$(median "${INIT[cryptmap]}" | sed 's/^/ /')"
printf '| row | ms (each run) | MiB/s | / cryptsetup | / raw |\n|---|---|---:|---:|---:|\n'
for row in raw cryptsetup cryptmap cryptmap-online cryptmap-inuse cryptmap-busy; do
  m=$(median "${MS[$row]}")
  printf '| %s |%s | %s | %.2f | %.2f |\n' "$row" "${MS[$row]}" "$(rate "$m")" \
    "$(echo "$cs / $m" | bc -l)" "$(echo "$raw / $m" | bc -l)"
done
echo "fio 4k randrw x4 IOPS during the inuse runs (at most $((4 * INUSE_IOPS))):${IOPS[cryptmap-inuse]:-}"
echo "fio 4k randrw x4 IOPS during the busy runs (unthrottled):${IOPS[cryptmap-busy]:-}"
