#!/usr/bin/env bash
# Durability: an fsync acknowledged by cryptmap survives kill -9 of the daemon. Repeatedly:
# open, run an fsync-per-write workload, kill -9 the daemon mid-stream, reopen, and check that
# every block whose fsync returned is intact. Then the same with ext4 journaling through a
# loop device: after each crash the journal replays and e2fsck -fn is clean.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "durability")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((64 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
blocks=$((48 * MiB / 4096))


for round in 1 2 3 4 5; do
  note "raw fsync workload, crash $round"
  cm_open "$img" d --key-file "$K"
  python3 "$HERE/fsync_writer.py" run "$MNT/d" $blocks "$T/log" $round 2>/dev/null &
  wpid=$!
  # Crash at a random moment once this round has committed at least 20 more writes.
  want=$(( $( (cat "$T/log" 2>/dev/null || true) | wc -l) + 20 ))
  for _ in $(seq 1 600); do
    (( $( (cat "$T/log" 2>/dev/null || true) | wc -l) >= want )) && break
    kill -0 "$wpid" 2>/dev/null || fail "the writer died before the crash in round $round"
    sleep 0.1
  done
  sleep "0.$((RANDOM % 9 + 1))"
  crash_daemon
  wait "$wpid" 2>/dev/null || true
  cm_open "$img" d --key-file "$K"
  python3 "$HERE/fsync_writer.py" check "$MNT/d" $blocks "$T/log" || fail "fsynced blocks lost in round $round"
  cm_close d
done

note "ext4 journaling workload through a loop device, crashes"
cm_open "$img" d --key-file "$K"
dev=$(losetup_attach "$MNT/d")
mkfs.ext4 -q -F "$dev"
losetup_detach "$dev"
cm_close d
mkdir -p "$T/fs"
for round in 1 2 3; do
  cm_open "$img" d --key-file "$K"
  dev=$(losetup_attach "$MNT/d")
  mount "$dev" "$T/fs"; FSMNTS=("$T/fs")
  ( set +e; i=0; while :; do i=$((i + 1)); echo "entry $round $i" >> "$T/fs/journal.txt"; sync "$T/fs/journal.txt"
      head -c 8192 /dev/urandom > "$T/fs/f$((i % 50))"; done ) 2>/dev/null &
  wpid=$!
  sleep 2
  crash_daemon
  kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true
  umount "$T/fs" 2>/dev/null || umount -l "$T/fs" 2>/dev/null || true; FSMNTS=()
  losetup_detach "$dev" 2>/dev/null || true
  cm_open "$img" d --key-file "$K"
  dev=$(losetup_attach "$MNT/d")
  mount "$dev" "$T/fs"; umount "$T/fs"   # replays the journal
  e2fsck -fn "$dev" || fail "e2fsck not clean after crash $round and journal replay"
  losetup_detach "$dev"
  cm_close d
done
echo "PASS"
