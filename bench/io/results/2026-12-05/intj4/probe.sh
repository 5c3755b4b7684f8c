#!/usr/bin/env bash
# probe.sh BUILD OUT [integ] : one 1 GiB LUKS2 --integrity image, seqwrite + seqread 5 s each,
# with perf record (daemon) and perf trace -s (syscall summary) during each.
set -euo pipefail
B=$1 OUT=$2 INTEG=${3:-hmac-sha256} CIPH=${4:-aes-xts-random}
CM=$B/cli/cryptmap
mkdir -p "$OUT"; W=$(mktemp -d /tmp/intj4-probe.XXXX)
trap 'kill $DPID 2>/dev/null; sleep 2; fusermount3 -u $W/m 2>/dev/null; rm -rf $W' EXIT
printf 'bench passphrase' > $W/pass
truncate -s $((1024*103/100+24))M $W/i.img
$CM luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher $CIPH --integrity $INTEG --sector-size 4096 --integrity-no-wipe $W/i.img $W/pass
mkdir -p $W/fill $W/m
$CM open $W/i.img fill --key-file $W/pass --mount-dir $W/fill --integrity-no-journal
head -c $((1024<<20)) /dev/zero | openssl enc -aes-128-ctr -nosalt -K 00112233445566778899aabbccddeeff -iv 0 2>/dev/null | dd of=$W/fill/fill bs=1M conv=notrunc,fsync status=none
$CM close --mount-dir $W/fill fill
$CM open $W/i.img bench --key-file $W/pass --mount-dir $W/m -f --fuse-transport=dev > $OUT/daemon.log 2>&1 &
DPID=$!
for i in $(seq 100); do [[ -e $W/m/bench ]] && break; sleep 0.1; done
for wl in write read; do
  fio --name=p --filename=$W/m/bench --rw=$wl --bs=1M --size=1G --ioengine=psync --direct=1 --time_based --runtime=5 --ramp_time=2 --output-format=json --output=$OUT/fio-$wl.json > /dev/null &
  F=$!
  sleep 2
  c0=$(awk '{print $14+$15}' /proc/$DPID/stat)
  perf record -q -e cpu-clock -g -p $DPID -o $OUT/perf-$wl.data -- sleep 4 >/dev/null 2>&1 &
  P=$!
  perf trace -s -p $DPID -e fdatasync,io_uring_enter,futex -o $OUT/trace-$wl.txt -- sleep 4 >/dev/null 2>&1 || true
  wait $P || true
  c1=$(awk '{print $14+$15}' /proc/$DPID/stat)
  wait $F
  echo "$wl: $(jq -r '.jobs[0].'$wl'.bw_bytes/1e6' $OUT/fio-$wl.json) MB/s, daemon CPU $(( (c1-c0) ))/4s ticks, load $(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/summary.txt
  sync -d $W/m/bench || true
  perf report -i $OUT/perf-$wl.data --stdio --no-children --sort sym -g none --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' > $OUT/perf-$wl.txt
  perf report -i $OUT/perf-$wl.data --stdio --no-children --sort comm,tid -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 > $OUT/perf-$wl-threads.txt
done
