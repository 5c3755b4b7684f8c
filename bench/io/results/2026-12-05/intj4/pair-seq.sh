#!/usr/bin/env bash
# pair.sh TAG: before (main 504eb18, /work/wt/intj4-base/build) then after (/work/wt/intj4/build)
set -u
TAG=${1:-p1}
R=/tmp/intj4/bench/$TAG; mkdir -p $R
for side in after before; do
  case $side in before) SRC=/work/wt/intj4-base ;; after) SRC=/work/wt/intj4 ;; esac
  echo "$(date -u +%T) $side start load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/runs.txt
  OUT=$R/$side SIZE_MIB=1024 REPEATS=3 RUNTIME=5 \
    SYSTEMS="cryptmap cryptmap-hmac cryptmap-aead" WORKLOADS="seqread seqwrite" \
    bash $SRC/bench/io/run.sh $SRC/build > $R/$side.log 2>&1
  echo "$(date -u +%T) $side end rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/runs.txt
done
