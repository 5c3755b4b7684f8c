#!/usr/bin/env bash
# Where the integrity daemon's RSS goes: a 1 GiB hmac-sha256 journal-mode volume under fio
# seqwrite (1 MiB, 1 job, O_DIRECT); smaps at the RSS peak, grouped by mapping.
# Usage: mem.sh CRYPTMAP_BINARY OUT_DIR [WORKLOAD]
set -euo pipefail
CM=$1; OUT=$2; RW=${3:-write}
mkdir -p "$OUT"
W=$(mktemp -d /tmp/intj3-mem.XXXXXX)
cleanup() { [[ -n ${pid:-} ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
printf 'benchpass' >"$W/pass"
truncate -s $(((1024 * 103 / 100 + 24) << 20)) "$W/h.img"
"$CM" luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher aes-xts-random \
  --integrity hmac-sha256 --sector-size 4096 --integrity-no-wipe "$W/h.img" "$W/pass"
mkdir -p "$W/m"
if [[ $RW == read ]]; then   # valid tags first
  "$CM" open "$W/h.img" fill --key-file "$W/pass" --mount-dir "$W/m" --integrity-no-journal
  dd if=/dev/zero of="$W/m/fill" bs=1M count=1024 oflag=direct status=none
  "$CM" close --mount-dir "$W/m" fill
fi
"$CM" open "$W/h.img" bench --key-file "$W/pass" --mount-dir "$W/m" -f --fuse-transport=dev &
pid=$!
for i in $(seq 300); do [[ -e $W/m/bench ]] && break; sleep 0.1; done
fio --name=m --filename="$W/m/bench" --rw=$RW --bs=1M --size=1G --ioengine=psync --direct=1 \
  --time_based --runtime=8 --output-format=terse >"$OUT/fio-$RW.txt" 2>&1 &
fp=$!
peak=0
while kill -0 $fp 2>/dev/null; do
  r=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)
  if ((r > peak)); then peak=$r; cp /proc/$pid/smaps "$OUT/smaps-$RW.txt"; fi
  sleep 0.3
done
wait $fp || true
grep -E '^(VmHWM|VmRSS|VmLck)' /proc/$pid/status >"$OUT/status-$RW.txt"
echo "peak sampled VmRSS $peak kB" >>"$OUT/status-$RW.txt"
python3 "$(dirname "$0")/smaps.py" "$OUT/smaps-$RW.txt" >"$OUT/rss-by-mapping-$RW.txt" || true
cat "$OUT/status-$RW.txt"; head -12 "$OUT/rss-by-mapping-$RW.txt"
