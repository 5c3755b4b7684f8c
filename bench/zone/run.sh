#!/usr/bin/env bash
# Zoned volumes: write throughput into conventional vs sequential-write-required zones of one
# emulated zoned LUKS2 volume (aes-xts-plain64, 512-bit key, 4096-byte sectors), through the
# real daemon and FUSE mount, with fio (O_DIRECT, libaio). Conventional zones take the
# write-back path (parallel FUSE workers, sector cache; end_fsync makes the data durable inside
# the measurement); sequential zones take the ordered inline path (receipt serialised up to
# admission, one write per zone at a time, crypto parallel within a request). Prints MB/s per
# case and the ratio seq/conv. Not a test: numbers depend on the machine and its load.
#
# Usage (root): bench/zone/run.sh [BUILD_DIR]
# Env: REGION_MIB (per zone type, default 256), ZONE_MIB (default 4), REPEATS (default 3),
#      BS (default 128k: must divide the zone size), OUT (default /tmp/cryptmap-bench-zone).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
CM=$build/cli/cryptmap
[[ -x $CM ]] || { echo "build first: cmake --build $build --target cryptmap"; exit 2; }
for tool in fio cryptsetup python3; do command -v $tool >/dev/null || { echo "missing $tool"; exit 2; }; done
REGION_MIB=${REGION_MIB:-256}
ZONE_MIB=${ZONE_MIB:-4}
REPEATS=${REPEATS:-3}
BS=${BS:-128k}
OUT=${OUT:-/tmp/cryptmap-bench-zone}
MiB=$((1 << 20))
(( REGION_MIB % (4 * ZONE_MIB) == 0 )) || { echo "REGION_MIB must be a multiple of 4 * ZONE_MIB"; exit 2; }

W=$(mktemp -d /tmp/cryptmap-bench-zone.XXXXXX)
MNT=$W/mnt
cleanup() {
  set +e
  "$CM" close zb --mount-dir "$MNT" --force >/dev/null 2>&1
  fusermount3 -u -z "$MNT" 2>/dev/null
  pkill -f -- "$W" 2>/dev/null
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$OUT"
printf 'bench passphrase' > "$W/pass"
img=$W/zoned.img
hdr_zones=$(( (16 + ZONE_MIB - 1) / ZONE_MIB ))
conv_zones=$(( hdr_zones + REGION_MIB / ZONE_MIB ))
truncate -s $(( (hdr_zones * ZONE_MIB + 2 * REGION_MIB) * MiB )) "$img"
cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --offset $(( hdr_zones * ZONE_MIB * MiB / 512 )) \
  --key-file "$W/pass" "$img"
"$CM" zone-create "$img" --zone-size $(( ZONE_MIB * MiB )) --conventional-zones $conv_zones
"$CM" open "$img" zb --key-file "$W/pass" --mount-dir "$MNT"
# Volume bytes [0, REGION) are conventional, [REGION, 2 * REGION) sequential.
echo "== $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); zones of $ZONE_MIB MiB, $REGION_MIB MiB per type, bs $BS"

# run_fio OFFSET_MIB JOBS IODEPTH -> MB/s (write bandwidth of all jobs)
run_fio() {
  local per=$(( REGION_MIB / $2 ))
  fio --name=w --filename="$MNT/zb" --direct=1 --ioengine=libaio --iodepth="$3" --rw=write \
    --bs="$BS" --numjobs="$2" --offset=$(( $1 * MiB )) --offset_increment=$(( per * MiB )) \
    --size=$(( per * MiB )) --end_fsync=1 --group_reporting --output-format=json > "$W/fio.json"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.1f" % (j["jobs"][0]["write"]["bw_bytes"] / 1e6))' "$W/fio.json"
}
reset_seq() { fallocate --punch-hole --offset $(( REGION_MIB * MiB )) --length $(( REGION_MIB * MiB )) "$MNT/zb"; }
median() { python3 -c 'import statistics,sys; print("%.1f" % statistics.median(map(float, sys.argv[1:])))' "$@"; }

printf '%-14s %12s %12s %10s\n' case conv_MB/s seq_MB/s seq/conv | tee "$OUT/results.txt"
for c in "1 1" "1 16" "4 16"; do
  read -r jobs depth <<< "$c"
  conv=(); seq=()
  for ((r = 0; r < REPEATS; r++)); do
    conv+=("$(run_fio 0 "$jobs" "$depth")")
    reset_seq
    seq+=("$(run_fio "$REGION_MIB" "$jobs" "$depth")")
  done
  mc=$(median "${conv[@]}"); ms=$(median "${seq[@]}")
  ratio=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) / float(sys.argv[1])))' "$mc" "$ms")
  printf '%-14s %12s %12s %10s\n' "j${jobs}-qd${depth}" "$mc" "$ms" "$ratio" | tee -a "$OUT/results.txt"
done
grep -q 'write pointer' "$MNT.log" && echo "WARNING: the daemon logged rejected zone writes (see $MNT.log)"
echo "results in $OUT/results.txt"
