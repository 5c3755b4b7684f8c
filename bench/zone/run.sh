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
#      BS (default 128k: must divide the zone size), OUT (default /tmp/cryptmap-bench-zone),
#      TRANSPORTS (default "auto"; e.g. "dev uring": each is a daemon of its own with that
#      --fuse-transport, the cases interleaved per repeat. uring needs enable_uring=Y already:
#      this script does not change it).
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
TRANSPORTS=${TRANSPORTS:-auto}
# Volume bytes [0, REGION) are conventional, [REGION, 2 * REGION) sequential.
echo "== $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); zones of $ZONE_MIB MiB, $REGION_MIB MiB per type, bs $BS; transports: $TRANSPORTS"

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
open_with() {  # open_with TRANSPORT: a daemon of its own for the image, with that transport
  "$CM" open "$img" zb --key-file "$W/pass" --mount-dir "$MNT" --fuse-transport="$1"
  local got=""
  for _ in $(seq 1 50); do
    got=$("$CM" status zb --json --mount-dir "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["fuse_transport"])')
    [[ $1 == auto || $got == "$1" ]] && break
    sleep 0.1
  done
  echo "$got"
}

printf '%-8s %-14s %12s %12s %10s\n' transport case conv_MB/s seq_MB/s seq/conv | tee "$OUT/results.txt"
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg); MB/s of each repeat" > "$OUT/raw.txt"
for c in "1 1" "1 16" "4 16"; do
  read -r jobs depth <<< "$c"
  declare -A conv=() seq=() served=()
  for ((r = 0; r < REPEATS; r++)); do
    for t in $TRANSPORTS; do
      served[$t]=$(open_with "$t")
      conv[$t]+=" $(run_fio 0 "$jobs" "$depth")"
      reset_seq
      seq[$t]+=" $(run_fio "$REGION_MIB" "$jobs" "$depth")"
      reset_seq
      grep -q 'write pointer' "$MNT.log" && echo "WARNING: the daemon logged rejected zone writes (see $MNT.log)"
      "$CM" close zb --mount-dir "$MNT"
    done
  done
  for t in $TRANSPORTS; do
    echo "${served[$t]} j${jobs}-qd${depth} conv:${conv[$t]} seq:${seq[$t]}" >> "$OUT/raw.txt"
    # shellcheck disable=SC2086
    mc=$(median ${conv[$t]}); ms=$(median ${seq[$t]})
    ratio=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) / float(sys.argv[1])))' "$mc" "$ms")
    printf '%-8s %-14s %12s %12s %10s\n' "${served[$t]}" "j${jobs}-qd${depth}" "$mc" "$ms" "$ratio" | tee -a "$OUT/results.txt"
  done
  unset conv seq served
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/results.txt"
echo "results in $OUT/results.txt"
