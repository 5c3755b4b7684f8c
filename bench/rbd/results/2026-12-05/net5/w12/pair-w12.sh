# The read-window question: net5 as committed (after) against the same build with 12 read-ahead
# windows instead of 8 (w12: engine.cpp's ro.windows = 12, a throw-away build, not committed).
# Usage: bash pair-w12.sh OUT_DIR RUNS...   (ROWS, WORKLOADS pass through)
O=${1:?}; shift
mkdir -p "$O"
cd /work/wt/net5
for run in "$@"; do
  case $run in w12*) B=/tmp/net5-w12 ;; after*) B=/work/wt/net5/build ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
  bash bench/rbd/run.sh "$B" 6 "$O/$run" > "$O/$run.txt" 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$O/runs.txt"
done
