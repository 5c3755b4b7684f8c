# Interleaved NBD runs, main ecc3dde (before, its own build dir) against rdpipe (after).
# Usage: bash pair-nbd.sh OUT_DIR RUNS...   (RUNS: before-1 after-1 ..., PROFILE passes through)
O=${1:?}; shift
mkdir -p "$O"
cd /work/wt/rdpipe
for run in "$@"; do
  case $run in before*) B=/work/wt/rdpipe-before-build ;; after*) B=/work/wt/rdpipe/build ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
  bash bench/nbd/run.sh "$B" 5 "$O/$run" > "$O/$run.txt" 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
done
