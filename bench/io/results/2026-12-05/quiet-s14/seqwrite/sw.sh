O=/tmp/q14/sw
mkdir -p $O
cd /work/main
for run in before-1 after-1 before-2 after-2; do
  case $run in before-*) B=/work/wt/before/build-rel ;; after-*) B=/work/main/build-rel ;; esac
  echo "$(date -u +%T) start $run load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/runs.txt
  OUT=$O/$run SIZE_MIB=1024 REPEATS=3 RUNTIME=5 SYSTEMS="raw passthrough cryptmap" WORKLOADS="seqwrite" bash bench/io/run.sh $B > $O/$run.log 2>&1
  echo "$(date -u +%T) end $run rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $O/runs.txt
done
OUT=$O/profile-after PROFILE="cryptmap" SIZE_MIB=1024 REPEATS=1 RUNTIME=5 SYSTEMS="cryptmap" WORKLOADS="seqwrite" bash bench/io/run.sh /work/main/build-rel > $O/profile-after.log 2>&1
echo done >> $O/runs.txt
