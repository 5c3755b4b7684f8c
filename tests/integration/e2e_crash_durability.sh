#!/usr/bin/env bash
# Durability: an fsync acknowledged by cryptmap survives kill -9 of the daemon. Repeatedly:
# open, run an fsync-per-write workload, kill -9 the daemon mid-stream, reopen, and check that
# every block whose fsync returned is intact. Then the same with ext4 journaling through a
# loop device: after each crash the journal replays and e2fsck -fn is clean. First, a write on a
# file opened O_DSYNC survives a kill -9 right after it returned, with no fsync. CTest runs it on
# both FUSE transports (CRYPTMAP_FUSE_TRANSPORT=dev|uring, lib.sh fuse_transport_setup).
source "$(dirname "$0")/lib.sh"
fuse_transport_setup
K=$(keyfile key "durability")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((64 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
blocks=$((48 * MiB / 4096))

note "a write on a file opened O_DSYNC is durable when it returns: no fsync, kill -9 at once"
cm_open "$img" d --key-file "$K" "${FT[@]}"
fuse_transport_expect d
head -c $((1 * MiB)) /dev/urandom > "$T/dsync.bin"
dd if="$T/dsync.bin" of="$MNT/d" bs=64K seek=160 oflag=direct,dsync conv=notrunc status=none
crash_daemon  # within the 5 s write-back age: only a durable write is in the image now
cm_open "$img" d --key-file "$K" "${FT[@]}"
cmp <(dd if="$MNT/d" bs=64K skip=160 count=16 iflag=direct status=none) "$T/dsync.bin" ||
  fail "an O_DSYNC write was lost by a kill -9 after it returned"
cm_close d

for round in 1 2 3 4 5; do
  note "raw fsync workload, crash $round"
  fsync_crash_round "$img" d $blocks $round --key-file "$K" "${FT[@]}"
  cm_close d
done

note "ext4 journaling workload through a loop device, crashes"
ext4_mkfs "$img" d --key-file "$K" "${FT[@]}"
for round in 1 2 3; do
  ext4_crash_round "$img" d $round --key-file "$K" "${FT[@]}"
  ext4_check_after_crash d $round
  cm_close d
done
echo "PASS"
