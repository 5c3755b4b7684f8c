#!/usr/bin/env bash
# rbd_faults.sh before (2d891df: librbd's default 2 s keyslot) and after (8b2f3fb: rbd_fast_kdf_shim), interleaved
B=/work/wt/fix16/build
for round in 1 2; do
  for v in before after; do
    echo "== round $round $v start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    s=$(date +%s%N)
    CRYPTMAP=$B/cli/cryptmap RBD_FAST_KDF_SHIM=$B/tests/integration/librbd_fast_kdf_shim.so \
      bash /tmp/fix16-$v/rbd_faults.sh > /tmp/fix16-pairs/$round-$v.log 2>&1
    rc=$?
    echo "== round $round $v rc=$rc wall $(( ($(date +%s%N) - s) / 1000000 )) ms load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
