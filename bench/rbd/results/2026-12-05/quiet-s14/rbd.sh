O=/tmp/q14/rbd
mkdir -p $O
cd /work/main
for run in before-1 after-1 after-2 before-2; do
  case $run in before-*) B=/work/wt/before/build-rel ;; after-*) B=/work/main/build-rel ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/runs.txt
  ROWS="librbd cryptmap" WORKLOADS="seqread randread1m seqwrite" bash bench/rbd/run.sh $B 6 $O/$run > $O/$run.log 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/runs.txt
done
echo done >> $O/runs.txt
