#!/usr/bin/env bash
# LUKS2 --integrity in journal mode (the default; docs/integrity.md §5): kill -9 of the daemon
# during an fsync-per-write workload, reopen (the journal is replayed), every block whose fsync
# returned is intact and no block of the volume has a bad tag (a whole read gets no EIO). Then
# ext4 on a loop device over the FUSE file: after each crash, mount (ext4 journal replay) and
# e2fsck -fn clean, and again no bad tag anywhere.
source "$(dirname "$0")/lib.sh"
watchdog 540
K=$(keyfile key "integrity crash")
MiB=$((1 << 20))
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
img=$T/disk.img
truncate -s $((64 * MiB)) "$img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-xts-random --integrity hmac-sha256 "$img" "$K" \
  > /dev/null || fail "luksFormat"
blocks=$((40 * MiB / 4096))

# Every block of the opened volume reads without EIO (no block left with a bad tag).
all_tags_valid() {
  dd if="$MNT/d" of=/dev/null bs=1M status=none || fail "a block has a bad tag after $1"
}

for round in 1 2 3; do
  note "fsync workload on a journal-mode volume, crash $round"
  cm_open "$img" d --key-file "$K"
  python3 "$HERE/fsync_writer.py" run "$MNT/d" $blocks "$T/log" $round 2>/dev/null &
  wpid=$!
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
  all_tags_valid "crash $round"
  cm_close d
done

note "ext4 on a loop device over a journal-mode volume, crashes"
cm_open "$img" d --key-file "$K"
dev=$(losetup_attach "$MNT/d")
mkfs.ext4 -q -F "$dev"
losetup_detach "$dev"
cm_close d
mkdir -p "$T/fs"
for round in 1 2; do
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
  all_tags_valid "ext4 crash $round"
  dev=$(losetup_attach "$MNT/d")
  mount "$dev" "$T/fs"; umount "$T/fs"   # replays the ext4 journal
  e2fsck -fn "$dev" || fail "e2fsck not clean after crash $round and journal replay"
  losetup_detach "$dev"
  cm_close d
done
echo "PASS"
