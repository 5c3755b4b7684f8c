#!/usr/bin/env bash
# Task 5: the anonymous mappings of a daemon serving a 1 GiB LUKS2 image under fio.
set -euo pipefail
CM=${CM:-build/cli/cryptmap}
O=${1:?out dir}
mkdir -p "$O"
W=$(mktemp -d /tmp/fixups-smaps.XXXXXX)
MNT=$W/mnt
cleanup() { set +e; "$CM" close --mount-dir "$MNT" v 2>/dev/null; sleep 0.5; rm -rf "$W"; }
trap cleanup EXIT
printf 'smaps passphrase' > "$W/key"
truncate -s $((1024 + 16))M "$W/img"
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --sector-size 4096 --key-file "$W/key" "$W/img"
"$CM" open --mount-dir "$MNT" --key-file "$W/key" ${TRANSPORT:+--fuse-transport=$TRANSPORT} "$W/img" v
pid=$(pgrep -f -- "daemon --mount-dir $MNT" | head -n1)
echo "daemon $pid" > "$O/info.txt"
"$CM" status --mount-dir "$MNT" v >> "$O/info.txt"
fio --name=m --filename="$MNT/v" --direct=1 --ioengine=psync --rw=randrw --bs=4k,1M --numjobs=4 \
  --size=256M --offset_increment=256M --time_based --runtime=${RUNTIME:-20} --group_reporting \
  --output="$O/fio.txt" &
fpid=$!
sleep $(( ${RUNTIME:-20} / 2 ))
cat /proc/$pid/smaps > "$O/smaps.txt"
cat /proc/$pid/maps > "$O/maps.txt"
for t in /proc/$pid/task/*; do
  echo "$(basename $t) $(cat $t/comm) $(cat $t/syscall 2>/dev/null)"
done > "$O/threads.txt"
wait $fpid
uptime >> "$O/info.txt"
