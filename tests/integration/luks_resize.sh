#!/usr/bin/env bash
# resize and refresh on an open volume, as a cryptsetup user runs them (docs/resize.md):
# - grow: ext4 on a loop device over the mapped file; the image grows with truncate;
#   `cryptmap resize` (the file's size changes at once), `losetup -c`, resize2fs, more
#   data than the old size held; shrink: resize2fs smaller first, then `cryptmap resize --size`;
#   e2fsck -fn clean after each step; every file intact after close and a fresh open; the LUKS2
#   header is not touched (its segment is dynamic), cryptsetup still opens the image;
# - LUKS1 grows the same way;
# - the refusals (cryptsetup's words where it has them): too small an image, --size with
#   --device-size, misaligned sizes, a read-only open, a suspended volume, integrity, inactive;
# - refresh --allow-discards: before it a punch-hole on the mapped file is refused and the image
#   keeps its blocks; after it (live, ext4 mounted on a loop device) fstrim punches the image;
#   status shows the flags; a wrong passphrase changes nothing; flags not given are dropped;
#   --persistent writes config.flags (cryptsetup's luksDump shows them), open applies them.
source "$(dirname "$0")/lib.sh"
watchdog 300
K=$(keyfile key "resize-one")
BAD=$(keyfile bad "not-this-one")
MiB=$((1 << 20))
size_of() { stat -c %s "$MNT/$1"; }
fsmnt=$T/fs
mkdir -p "$fsmnt"

img=$T/disk.img
truncate -s $((16 * MiB + 64 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
header_sum() { head -c $((16 * MiB)) "$img" | sha256sum; }
hsum=$(header_sum)
cm_open "$img" r --key-file "$K"
[[ $(size_of r) == $((64 * MiB)) ]] || fail "opened at $(size_of r) bytes, expected 64 MiB"

note "refusals on the open volume, which keeps its size"
expect_exit 1 "Device .* is too small" -- cm resize r --mount-dir "$MNT" --size $((65 * MiB / 512))
expect_exit 1 "Options --device-size and --size cannot be combined" -- cm resize r --mount-dir "$MNT" --size 8 --device-size 4096
expect_exit 1 "Device size must be multiple of 512 bytes sector" -- cm resize r --mount-dir "$MNT" --device-size 1000
expect_exit 1 "Device size is not aligned to requested sector size" -- cm resize r --mount-dir "$MNT" --size 7
expect_exit 4 "Device nope is not active" -- cm resize nope --mount-dir "$MNT"
[[ $(size_of r) == $((64 * MiB)) ]] || fail "a refused resize changed the size"

note "ext4 on a loop device over the mapped file"
loop=$(losetup_attach --direct-io=on "$MNT/r")
mkfs.ext4 -q -b 4096 -E nodiscard "$loop"
mount "$loop" "$fsmnt"
FSMNTS+=("$fsmnt")
head -c $((40 * MiB)) /dev/urandom > "$fsmnt/a"
sync
sum_a=$(sha256sum < "$fsmnt/a")

note "grow: truncate the image, resize, losetup -c, resize2fs"
truncate -s $((16 * MiB + 160 * MiB)) "$img"
[[ $(size_of r) == $((64 * MiB)) ]] || fail "the size changed before resize"
cm resize r --mount-dir "$MNT"
[[ $(size_of r) == $((160 * MiB)) ]] || fail "after resize the file has $(size_of r) bytes, expected 160 MiB"
cm status r --mount-dir "$MNT" | grep -q "size:    $((160 * MiB / 512)) sectors" || fail "status: $(cm status r --mount-dir "$MNT")"
losetup -c "$loop"
[[ $(blockdev --getsize64 "$loop") == $((160 * MiB)) ]] || fail "losetup -c: the loop device has $(blockdev --getsize64 "$loop") bytes"
# resize2fs on the mounted ext4 needs CAP_SYS_RESOURCE, which containers often lack: the file
# system grows unmounted, on the loop device the volume kept serving.
umount "$fsmnt"
e2fsck -fy "$loop" > /dev/null 2>&1 || true  # resize2fs wants a fresh check
resize2fs "$loop" > "$T/resize2fs.out" 2>&1 || { cat "$T/resize2fs.out"; fail "resize2fs (grow) failed"; }
mount "$loop" "$fsmnt"
[[ $(df -B1 --output=size "$fsmnt" | tail -n 1) -gt $((120 * MiB)) ]] || fail "ext4 did not grow: $(df -h "$fsmnt")"
head -c $((60 * MiB)) /dev/urandom > "$fsmnt/b"  # 100 MiB of files: more than 64 MiB held
sync
sum_b=$(sha256sum < "$fsmnt/b")
umount "$fsmnt"
e2fsck -fn "$loop" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck after the grow"; }

note "shrink: resize2fs to 128 MiB first, then resize --size"
e2fsck -fy "$loop" > /dev/null 2>&1 || true  # resize2fs wants a fresh check before shrinking
resize2fs "$loop" 128M > "$T/resize2fs.out" 2>&1 || { cat "$T/resize2fs.out"; fail "resize2fs to 128M failed"; }
cm resize r --mount-dir "$MNT" --size $((128 * MiB / 512))
[[ $(size_of r) == $((128 * MiB)) ]] || fail "after the shrink the file has $(size_of r) bytes"
losetup -c "$loop"
[[ $(blockdev --getsize64 "$loop") == $((128 * MiB)) ]] || fail "losetup -c after the shrink: $(blockdev --getsize64 "$loop") bytes"
e2fsck -fn "$loop" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck after the shrink"; }
dd if="$MNT/r" of=/dev/null bs=4096 skip=$((128 * MiB / 4096)) count=1 status=none iflag=direct
[[ $(dd if="$MNT/r" bs=4096 skip=$((128 * MiB / 4096)) count=1 iflag=direct status=none | wc -c) == 0 ]] || fail "a read at the new end returned data"
cm resize r --mount-dir "$MNT" --device-size $((128 * MiB))  # the same size again: accepted

note "read-only and suspended volumes are refused"
cm luksSuspend r --mount-dir "$MNT"
expect_exit 1 "suspended.*luksResume r" -- cm resize r --mount-dir "$MNT"
expect_exit 1 "suspended.*luksResume r" -- cm refresh r --mount-dir "$MNT" --key-file "$K"
# --token-only: cryptmap has no token handlers, so nothing unlocks and it stays suspended.
expect_exit 1 "No usable token is available" -- cm luksResume r --mount-dir "$MNT" --token-only
cm status r --mount-dir "$MNT" | grep -q "(suspended)" || fail "luksResume --token-only resumed the volume"
cm luksResume r --mount-dir "$MNT" --key-file "$K"
losetup_detach "$loop"
cm_close r
[[ $(header_sum) == "$hsum" ]] || fail "resize changed the LUKS2 header (its segment is dynamic)"
cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "cryptsetup cannot unlock the image after the resizes"

cm_open "$img" ro --key-file "$K" --readonly
expect_exit 1 "open read-only" -- cm resize ro --mount-dir "$MNT" --size 8
note "close and open again: every file intact, e2fsck clean"
loop=$(losetup_attach -r "$MNT/ro")
e2fsck -fn "$loop" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck after reopen"; }
mount -o ro "$loop" "$fsmnt"
[[ $(sha256sum < "$fsmnt/a") == "$sum_a" ]] || fail "file a changed"
[[ $(sha256sum < "$fsmnt/b") == "$sum_b" ]] || fail "file b (written after the grow) changed"
umount "$fsmnt"
losetup_detach "$loop"
cm_close ro

note "LUKS1 grows the same way"
img1=$T/luks1.img
truncate -s $((2 * MiB + 8 * MiB)) "$img1"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img1"
cm_open "$img1" one --key-file "$K"
before=$(size_of one)
pattern_write "$MNT/one" 0 "$before" 5
truncate -s +4M "$img1"
cm resize one --mount-dir "$MNT"
[[ $(size_of one) == $((before + 4 * MiB)) ]] || fail "LUKS1 resize: $(size_of one) bytes"
pattern_write "$MNT/one" "$before" $((4 * MiB)) 6
cm_close one
cm_open "$img1" one --key-file "$K"
pattern_check "$MNT/one" 0 "$before" 5 || fail "LUKS1: data before the old end changed"
pattern_check "$MNT/one" "$before" $((4 * MiB)) 6 || fail "LUKS1: data written after the grow lost"
cm_close one

note "integrity volumes are refused"
imgi=$T/integrity.img
truncate -s $((64 * MiB)) "$imgi"
cm luksFormat -q --type luks2 "${CS_FAST_PBKDF2[@]}" --integrity hmac-sha256 --integrity-no-wipe "$imgi" "$K"
cm_open "$imgi" i --key-file "$K"
expect_exit 1 "Resize of LUKS2 device with integrity protection is not supported" -- cm resize i --mount-dir "$MNT"
cm_close i

note "refresh --allow-discards: punch-hole refused before, fstrim punches the image after"
imgd=$T/discard.img
truncate -s $((16 * MiB + 64 * MiB)) "$imgd"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$imgd"
cm_open "$imgd" d --key-file "$K"
loop=$(losetup_attach --direct-io=on "$MNT/d")
mkfs.ext4 -q -b 4096 -E nodiscard "$loop"
mount "$loop" "$fsmnt"
head -c $((32 * MiB)) /dev/urandom > "$fsmnt/junk"
head -c $((8 * MiB)) /dev/urandom > "$fsmnt/keep"
sync
sum_keep=$(sha256sum < "$fsmnt/keep")
rm "$fsmnt/junk"
sync
blocks() { stat -c %b "$imgd"; }
before=$(blocks)
fallocate --punch-hole --offset $MiB --length $MiB "$MNT/d" 2> "$T/err" && fail "punch-hole succeeded before refresh --allow-discards"
grep -qi 'unsupported\|not supported' "$T/err" || fail "expected EOPNOTSUPP, got: $(cat "$T/err")"
[[ $(blocks) == "$before" ]] || fail "the image lost blocks before refresh"
expect_exit 2 "No key available with this passphrase" -- cm refresh d --mount-dir "$MNT" --allow-discards --key-file "$BAD"
expect_exit 1 "No usable token is available" -- cm refresh d --mount-dir "$MNT" --allow-discards --token-only
cm status d --mount-dir "$MNT" | grep -q "flags:" && fail "a failed refresh changed the flags: $(cm status d --mount-dir "$MNT")"
cm refresh d --mount-dir "$MNT" --allow-discards --key-file "$K"
cm status d --mount-dir "$MNT" | grep -q "flags:   discards" || fail "status after refresh: $(cm status d --mount-dir "$MNT")"
cm status --json --mount-dir "$MNT" | grep -q '"allow-discards"' || fail "status --json lacks allow-discards"
fstrim "$fsmnt" || fail "fstrim failed after refresh --allow-discards"
after=$(blocks)
(( after < before - 24 * MiB / 512 )) || fail "fstrim punched too little: image blocks $before -> $after"
note "image blocks $before -> $after after fstrim"
[[ $(sha256sum < "$fsmnt/keep") == "$sum_keep" ]] || fail "a kept file changed across refresh and fstrim"
cm refresh d --mount-dir "$MNT" --perf-no_read_workqueue --key-file "$K"
st=$(cm status d --mount-dir "$MNT")
grep -q "flags:   no_read_workqueue" <<< "$st" || fail "status after the second refresh: $st"
grep -q "discards" <<< "$st" && fail "a flag not given stayed on: $st"
echo 3 > /proc/sys/vm/drop_caches
[[ $(sha256sum < "$fsmnt/keep") == "$sum_keep" ]] || fail "a kept file changed after the second refresh"
umount "$fsmnt"
e2fsck -fn "$loop" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck after refresh and fstrim"; }
losetup_detach "$loop"

note "refresh --persistent stores the flags as cryptsetup does; open applies them"
cryptsetup luksDump "$imgd" | grep -q "^Flags:.*(no flags)" || fail "the header had flags before --persistent"
cm refresh d --mount-dir "$MNT" --allow-discards --perf-no_write_workqueue --persistent --key-file "$K"
cryptsetup luksDump "$imgd" > "$T/dump"
grep -Eq "^Flags:[[:space:]]+allow-discards no-write-workqueue $" "$T/dump" || { grep Flags "$T/dump"; fail "cryptsetup luksDump does not show the persistent flags"; }
cm_close d
cm_open "$imgd" d --key-file "$K"
cm status d --mount-dir "$MNT" | grep -q "flags:   discards no_write_workqueue" || fail "open did not apply the persistent flags: $(cm status d --mount-dir "$MNT")"
cm refresh d --mount-dir "$MNT" --persistent --key-file "$K"
cryptsetup luksDump "$imgd" | grep -q "^Flags:.*(no flags)" || fail "refresh --persistent without flags did not clear them"
cm_close d
cm_open "$img1" one --key-file "$K"
expect_exit 1 "not a valid LUKS2 device" -- cm refresh one --mount-dir "$MNT" --persistent --key-file "$K"
cm_close one
note "ok"
