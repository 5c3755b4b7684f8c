#!/usr/bin/env bash
# Session 16's quiet runs (lead). O=/tmp/q16 then; copied here. prewb = main 4b692ed, merge = 4b692ed + wbring (f8400e4, not merged).
O=/tmp/q16; cd /work/wt/merge; B=/work/wt/prewb/build
echo "$(date -u +%T) start seqread2 load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
OUT=$O/seqread2 SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw cryptmap cryptmap-hmac cryptmap-hmac-nj" WORKLOADS="seqread" bash bench/io/run.sh $B > "$O/seqread2.log" 2>&1
echo "$(date -u +%T) start nbd load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
mkdir -p $O/nbd; bash bench/nbd/run.sh $B 5 $O/nbd > "$O/nbd.log" 2>&1
echo "$(date -u +%T) start rbd load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
mkdir -p $O/rbd; WORKLOADS="seqwrite seqread" bash bench/rbd/run.sh $B 5 $O/rbd > "$O/rbd.log" 2>&1
echo "$(date -u +%T) end rbd rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
echo done2 >> "$O/runs.txt"
