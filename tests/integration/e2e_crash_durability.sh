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
  fsync_crash_round "$img" d $blocks $round --key-file "$K"
  cm_close d
done

note "ext4 journaling workload through a loop device, crashes"
ext4_mkfs "$img" d --key-file "$K"
for round in 1 2 3; do
  ext4_crash_round "$img" d $round --key-file "$K"
  ext4_check_after_crash d $round
  cm_close d
done
echo "PASS"
