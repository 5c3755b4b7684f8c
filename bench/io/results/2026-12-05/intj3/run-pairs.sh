#!/usr/bin/env bash
# intj3 before/after, interleaved: before = main 84ef923 (build in /work/wt/intj3-before/build),
# after = intj3 (build in /work/wt/intj3/build). Usage: bench.sh OUT_DIR
set -uo pipefail
O=$1; mkdir -p "$O"
common() { SIZE_MIB=1024 REPEATS=2 RUNTIME=3 SYSTEMS="cryptmap cryptmap-hmac cryptmap-aead" \
  WORKLOADS="seqwrite seqread randwrite-j1 randwrite-j4" "$@"; }
for i in 1 2; do
  (cd /work/wt/intj3-before && OUT=$O/before-$i common nice -n 0 bash bench/io/run.sh /work/wt/intj3-before/build) > "$O/before-$i.log" 2>&1
  (cd /work/wt/intj3 && OUT=$O/after-$i common nice -n 0 bash bench/io/run.sh /work/wt/intj3/build) > "$O/after-$i.log" 2>&1
done
echo done > "$O/done"
