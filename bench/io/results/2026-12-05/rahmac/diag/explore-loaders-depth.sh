cd /work/wt/rahmac
for cfg in 2:2 4:4 3:4 6:6 2:2 4:4; do
  t=${cfg%:*}; d=${cfg#*:}
  XRA_T=$t XRA_D=$d SIZE_MIB=1024 REPEATS=1 RUNTIME=5 SYSTEMS="cryptmap cryptmap-hmac" WORKLOADS="seqread" OUT=/tmp/rahmac-x-$t-$d-$RANDOM bash bench/io/run.sh build > /tmp/rahmac-x.out 2>&1
  echo "$cfg $(uptime | sed 's/.*average://') $(grep -h ',cryptmap' /tmp/rahmac-x-$t-$d-*/results.csv | tail -2 | cut -d, -f3,7,12 | tr '\n' ' ')" >> /tmp/rahmac-explore.txt
  grep -h 'read-ahead:' /tmp/rahmac-x-$t-$d-*/logs/cryptmap-hmac.log | tail -1 >> /tmp/rahmac-explore.txt
  rm -rf /tmp/rahmac-x-$t-$d-*
done
echo END >> /tmp/rahmac-explore.txt
