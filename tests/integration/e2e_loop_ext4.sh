#!/usr/bin/env bash
# The everyday path: losetup on the mapped file, mkfs.ext4, files written, unmounted, volume
# closed and reopened, files intact, e2fsck -fn clean. Image made by cryptsetup luksFormat
# with its defaults except for a fast argon2id cost (4096-byte sectors for a file). CTest runs it on
# both FUSE transports (CRYPTMAP_FUSE_TRANSPORT=dev|uring, lib.sh fuse_transport_setup).
source "$(dirname "$0")/lib.sh"
fuse_transport_setup
K=$(keyfile key "loop device passphrase")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((256 * MiB)) "$img"
cryptsetup luksFormat --batch-mode "${CS_FAST_ARGON[@]}" --key-file "$K" "$img"

cm_open "$img" data --key-file "$K" "${FT[@]}"
fuse_transport_expect data
size=$(stat -c %s "$MNT/data")
[[ "$size" == $((240 * MiB)) ]] || fail "mapped size $size, expected $((240 * MiB))"

dev=$(losetup_attach "$MNT/data")
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/fs"
mount "$dev" "$T/fs"; FSMNTS+=("$T/fs")
mkdir "$T/fs/dir"
for i in $(seq 1 20); do head -c $((i * 37 * 1024)) /dev/urandom > "$T/fs/dir/f$i"; done
(cd "$T/fs/dir" && sha256sum f* > "$T/sums")
dd if=/dev/urandom of="$T/fs/big" bs=1M count=64 status=none conv=fsync
sha256sum "$T/fs/big" | awk '{print $1}' > "$T/bigsum"
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
cm_close data

note "reopen, fsck, verify"
cm_open "$img" data --key-file "$K" "${FT[@]}"
fuse_transport_expect data
dev=$(losetup_attach "$MNT/data")
e2fsck -fn "$dev" || fail "e2fsck found errors after close/reopen"
mount -o ro "$dev" "$T/fs"; FSMNTS+=("$T/fs")
(cd "$T/fs/dir" && sha256sum -c --quiet "$T/sums") || fail "file contents changed"
[[ "$(sha256sum "$T/fs/big" | awk '{print $1}')" == "$(cat "$T/bigsum")" ]] || fail "big file changed"
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
cm_close data
echo "PASS"
