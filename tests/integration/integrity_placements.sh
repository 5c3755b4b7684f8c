#!/usr/bin/env bash
# LUKS2 --integrity, the seed property of issue #12 end to end (docs/integrity.md §0): one volume
# (the same volume key, the same dm-integrity area: superblock, journal, tags and data copied byte
# for byte) served (a) with its header inside the image at the default data offset, (b) with a
# detached header (--header) and its data at --offset 10 MiB of another, larger file, (c) inside
# a larger image at a data offset of 24 MiB with 4 MiB after it: every placement reads the same
# plaintext (the whole volume, written and wiped blocks alike) and has no block with a bad tag.
# Tags are bound to the volume-relative sector; a tag bound to the image offset would fail in
# (b) and (c) (the unit test IntegrityPlacement.TagsBoundToTheImageOffsetFail builds such a volume
# and shows it is refused).
source "$(dirname "$0")/lib.sh"
watchdog 240
K=$(keyfile key "integrity placements")
MiB=$((1 << 20))
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
AREA=$((24 * MiB))  # the dm-integrity area of (a): a 40 MiB image after its 16 MiB header
head -c 96 /dev/urandom > "$T/vk"  # aes-xts-random + hmac-sha256: 512 + 256 bits
FMT=(-q --type luks2 "${FAST[@]}" --cipher aes-xts-random --integrity hmac-sha256
     --volume-key-file "$T/vk")

# whole_sum FILE: sha256 of the whole mapped file (fails on EIO: a bad tag anywhere).
whole_sum() {
  dd if="$1" bs=1M status=none | sha256sum | cut -d' ' -f1
  [[ ${PIPESTATUS[0]} == 0 ]] || fail "a block of $1 has a bad tag"
}
# copy_area DST OFFSET_BYTES: (a)'s dm-integrity area into DST at OFFSET_BYTES.
copy_area() {
  dd if="$T/a.img" of="$1" bs=1M skip=16 seek=$(($2 / MiB)) count=$((AREA / MiB)) conv=notrunc \
    status=none || fail "copy the area into $1"
}

note "(a) header inside the image, data offset 16 MiB: format with a volume key, write, read"
truncate -s $((16 * MiB + AREA)) "$T/a.img"
cm luksFormat "${FMT[@]}" "$T/a.img" "$K" > /dev/null || fail "luksFormat (a)"
cm_open "$T/a.img" v --key-file "$K"
size_a=$(stat -c %s "$MNT/v")
head -c $((3 * MiB)) /dev/urandom > "$T/data"
dd if="$T/data" of="$MNT/v" bs=1M seek=1 conv=notrunc,fsync status=none || fail "write (a)"
# 5000 bytes at an odd offset: read-modify-write of two partial blocks.
head -c 5000 /dev/urandom | dd of="$MNT/v" bs=1 seek=$((7 * MiB + 777)) conv=notrunc,fsync \
  status=none || fail "partial write (a)"
cm_close v
cm_open "$T/a.img" v --key-file "$K"
sum_a=$(whole_sum "$MNT/v")
cmp -n $((3 * MiB)) -i $((1 * MiB)):0 "$MNT/v" "$T/data" || fail "(a) reads other data"
cm_close v

note "(b) detached header, the same area at --offset 10 MiB of a larger data file"
truncate -s $((10 * MiB + AREA + 2 * MiB)) "$T/b.img"
cm luksFormat "${FMT[@]}" --integrity-no-wipe --header "$T/b.hdr" --offset $((10 * MiB / 512)) \
  "$T/b.img" "$K" > /dev/null || fail "luksFormat (b)"
copy_area "$T/b.img" $((10 * MiB))
cm_open "$T/b.img" v --key-file "$K" --header "$T/b.hdr"
[[ $(stat -c %s "$MNT/v") == "$size_a" ]] || fail "(b) has another size than (a)"
[[ $(whole_sum "$MNT/v") == "$sum_a" ]] || fail "(b) reads other data than (a)"
cm_close v

note "(c) inside a larger image, the same area at data offset 24 MiB, 4 MiB after it"
truncate -s $((24 * MiB + AREA + 4 * MiB)) "$T/c.img"
cm luksFormat "${FMT[@]}" --integrity-no-wipe --offset $((24 * MiB / 512)) "$T/c.img" "$K" \
  > /dev/null || fail "luksFormat (c)"
copy_area "$T/c.img" $((24 * MiB))
cm_open "$T/c.img" v --key-file "$K"
[[ $(stat -c %s "$MNT/v") == "$size_a" ]] || fail "(c) has another size than (a)"
[[ $(whole_sum "$MNT/v") == "$sum_a" ]] || fail "(c) reads other data than (a)"
# A write in (c) moves back to (a): still bound to the volume-relative sector.
head -c $((64 * 1024)) /dev/urandom > "$T/data2"
dd if="$T/data2" of="$MNT/v" bs=64k seek=100 conv=notrunc,fsync status=none || fail "write (c)"
cm_close v
dd if="$T/c.img" of="$T/a.img" bs=1M skip=24 seek=16 count=$((AREA / MiB)) conv=notrunc \
  status=none
cm_open "$T/a.img" v --key-file "$K"
cmp -n $((64 * 1024)) -i $((100 * 64 * 1024)):0 "$MNT/v" "$T/data2" || fail "(c)'s write reads other data in (a)"
whole_sum "$MNT/v" > /dev/null
cm_close v
echo "PASS"
