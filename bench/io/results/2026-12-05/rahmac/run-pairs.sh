#!/usr/bin/env bash
# Interleaved before/after pairs (bench/README.md, rahmac): before = main ecc3dde (Release, an
# export of the commit built in its own directory), after = rahmac (Release, its build dir).
# Usage: [WORKLOADS=...] run-pairs.sh BEFORE_BUILD AFTER_BUILD OUTDIR
set -euo pipefail
before=$1 after=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../../.." && pwd)
for run in before-1 after-1 after-2 before-2; do
  b=$before; [[ $run == after* ]] && b=$after
  echo "$run $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/runs.txt"
  SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="cryptmap cryptmap-hmac cryptmap-aead" \
    WORKLOADS="${WORKLOADS:-seqread randread-j4}" OUT="$out/$run" bash "$root/bench/io/run.sh" "$b" \
    >"$out/$run.out" 2>&1 || echo "$run failed" >>"$out/runs.txt"
  echo "$run done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/runs.txt"
done
