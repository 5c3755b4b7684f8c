#!/usr/bin/env bash
# Session 16's quiet runs (lead). O=/tmp/q16 then; copied here. prewb = main 4b692ed, merge = 4b692ed + wbring (f8400e4, not merged).
O=/tmp/q16; cd /work/wt/merge; B=/work/wt/prewb/build
echo "$(date -u +%T) start nbd2 load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
mkdir -p $O/nbd2; bash bench/nbd/run.sh $B 5 $O/nbd2 > "$O/nbd2.log" 2>&1
echo "$(date -u +%T) start rbd2 load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
mkdir -p $O/rbd2; WORKLOADS="seqwrite seqread" bash bench/rbd/run.sh $B 5 $O/rbd2 > "$O/rbd2.log" 2>&1
echo "$(date -u +%T) start seqwrite3 load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
OUT=$O/seqwrite3 SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw cryptmap" WORKLOADS="seqwrite" bash bench/io/run.sh $B > "$O/seqwrite3.log" 2>&1
echo "$(date -u +%T) end rep load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
echo done3 >> "$O/runs.txt"
