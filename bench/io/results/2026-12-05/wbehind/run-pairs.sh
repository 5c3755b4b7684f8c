#!/usr/bin/env bash
# wbehind before/after, interleaved ABBA: before = main 84ef923 (Release, /work/wt/wbehind-before/build-rel),
# after = wbehind (Release, /work/wt/wbehind/build). Both run by wbehind's bench/io/run.sh.
O=/tmp/wbehind-bench
prev=$(cat /sys/module/fuse/parameters/enable_uring)
echo "enable_uring was $prev" > $O/uring.txt
echo Y > /sys/module/fuse/parameters/enable_uring
common() { SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw null passthrough cryptmap cryptmap-uring" WORKLOADS="seqwrite seqread randwrite-j4" "$@"; }
cd /work/wt/wbehind
for run in ${RUNS:-before-1 after-1 after-2 before-2}; do
  case $run in before-*) B=/work/wt/wbehind-before/build-rel ;; after-*) B=/work/wt/wbehind/build ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg) enable_uring $(cat /sys/module/fuse/parameters/enable_uring)" >> $O/runs.txt
  OUT=$O/$run common nice -n 0 bash bench/io/run.sh $B > $O/$run.log 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg) enable_uring $(cat /sys/module/fuse/parameters/enable_uring)" >> $O/runs.txt
done
echo $prev > /sys/module/fuse/parameters/enable_uring
echo done >> $O/runs.txt
