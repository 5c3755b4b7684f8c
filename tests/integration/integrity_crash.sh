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
  fsync_crash_round "$img" d $blocks $round --key-file "$K"
  all_tags_valid "crash $round"
  cm_close d
done

note "ext4 on a loop device over a journal-mode volume, crashes"
ext4_mkfs "$img" d --key-file "$K"
for round in 1 2; do
  ext4_crash_round "$img" d $round --key-file "$K"
  all_tags_valid "ext4 crash $round"
  ext4_check_after_crash d $round
  cm_close d
done
echo "PASS"
