#!/usr/bin/env bash
# Interleaved io bench runs: main ecc3dde (before, built in its own dir from `git archive main`)
# against rdpipe (after: d0f9994 for after-1/2, 69cf8f2 for after-3/4 and profile-after2).
# 1-2: seqread + randread-j4; 3-4: seqread only. profile-*: PROFILE=cryptmap, one repeat.
cd /work/wt/rdpipe
R=bench/io/results/2026-12-05/rdpipe
WL=${WL:-"seqread randread-j4"}
for run in "$@"; do   # e.g. before-1 after-1 after-2 before-2
  case $run in before*) B=/work/wt/rdpipe-before-build;; after*) B=/work/wt/rdpipe/build;; esac
  echo "$(date -u +%T) $run start load $(cut -d' ' -f1-3 /proc/loadavg)"
  SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw null passthrough cryptmap" WORKLOADS="$WL" \
    OUT=/work/wt/rdpipe/$R/$run bash bench/io/run.sh $B > /tmp/rdpipe-io-$run.log 2>&1
  echo "$(date -u +%T) $run end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
