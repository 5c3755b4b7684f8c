# Interleaved RBD runs, main 504eb18 (before, its own build dir) against net5 (after).
# Usage: bash pair-rbd.sh OUT_DIR RUNS...   (ROWS, WORKLOADS, PROFILE pass through)
O=${1:?}; shift
mkdir -p "$O"
cd /work/wt/net5
for run in "$@"; do
  case $run in before*) B=/work/wt/net5-base/build-rel ;; after*) B=/work/wt/net5/build ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
  bash bench/rbd/run.sh "$B" 6 "$O/$run" > "$O/$run.txt" 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
done
