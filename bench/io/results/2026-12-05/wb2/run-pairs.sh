#!/usr/bin/env bash
# wb2 before/after, interleaved (ABBA...): before = main 504eb18 (Release, an export of the commit
# in /work/wt/wb2-base, its own build dir), after = wb2 (Release, /work/wt/wb2/build). Both run by
# wb2's bench/io/run.sh (the script did not change). /dev/fuse only: nothing machine-wide is
# changed (enable_uring stays as it is). RUNS names the runs in order.
set -u
O=${O:-/tmp/wb2-bench}
mkdir -p "$O"
common() { SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw null passthrough cryptmap" WORKLOADS="seqwrite seqread randwrite-j4" "$@"; }
cd /work/wt/wb2
for run in ${RUNS:-before-1 after-1 after-2 before-2}; do
  case $run in before-*) B=/work/wt/wb2-base/build ;; *) B=/work/wt/wb2/build ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
  OUT=$O/$run common bash bench/io/run.sh "$B" > "$O/$run.log" 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
done
echo done >> "$O/runs.txt"
