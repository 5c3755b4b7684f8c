O=/tmp/q14/io
mkdir -p $O
common() { SIZE_MIB=1024 REPEATS=2 RUNTIME=5 SYSTEMS="raw null passthrough cryptmap cryptmap-hmac" WORKLOADS="seqwrite seqread randwrite-j4" "$@"; }
cd /work/main
for run in before-1 after-1; do
  case $run in before-*) B=/work/wt/before/build-rel ;; after-*) B=/work/main/build-rel ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/runs.txt
  OUT=$O/$run common bash bench/io/run.sh $B > $O/$run.log 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/runs.txt
done
echo done >> $O/runs.txt
