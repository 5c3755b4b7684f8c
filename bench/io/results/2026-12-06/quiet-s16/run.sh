#!/usr/bin/env bash
# Session 16's quiet runs (lead). O=/tmp/q16 then; copied here. prewb = main 4b692ed, merge = 4b692ed + wbring (f8400e4, not merged).
set -u
O=/tmp/q16
cd /work/wt/merge
for run in pre-1 wb-1 wb-2 pre-2; do
  case $run in pre-*) B=/work/wt/prewb/build ;; *) B=/work/wt/merge/build ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
  OUT=$O/$run SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw cryptmap" WORKLOADS="seqwrite seqread" bash bench/io/run.sh "$B" > "$O/$run.log" 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
done
run=goals; B=/work/wt/merge/build
echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
OUT=$O/$run SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw null passthrough cryptmap cryptmap-hmac cryptmap-hmac-nj cryptmap-aead cryptmap-aead-nj" WORKLOADS="seqread seqwrite randread-j4 randwrite-j4" bash bench/io/run.sh "$B" > "$O/$run.log" 2>&1
echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
echo done >> "$O/runs.txt"
