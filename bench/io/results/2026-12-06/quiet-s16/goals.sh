#!/usr/bin/env bash
# Session 16's quiet runs (lead). O=/tmp/q16 then; copied here. prewb = main 4b692ed, merge = 4b692ed + wbring (f8400e4, not merged).
O=/tmp/q16; cd /work/wt/merge
echo "$(date -u +%T) start goals load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
OUT=$O/goals SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw null passthrough cryptmap cryptmap-hmac cryptmap-hmac-nj cryptmap-aead cryptmap-aead-nj" WORKLOADS="seqread seqwrite randread-j4 randwrite-j4" bash bench/io/run.sh /work/wt/prewb/build > "$O/goals.log" 2>&1
echo "$(date -u +%T) end goals rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
