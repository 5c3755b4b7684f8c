#!/usr/bin/env bash
# intj3: random journaled writes only, before then after then before (REPEATS=3 each).
set -uo pipefail
O=$1; mkdir -p "$O"
common() { SIZE_MIB=1024 REPEATS=3 RUNTIME=3 SYSTEMS="cryptmap cryptmap-hmac cryptmap-aead" \
  WORKLOADS="randwrite-j1 randwrite-j4" "$@"; }
(cd /work/wt/intj3-before && OUT=$O/rand-before-1 common bash bench/io/run.sh /work/wt/intj3-before/build) > "$O/rand-before-1.log" 2>&1
(cd /work/wt/intj3 && OUT=$O/rand-after-1 common bash bench/io/run.sh /work/wt/intj3/build) > "$O/rand-after-1.log" 2>&1
echo done > "$O/rand-done"
