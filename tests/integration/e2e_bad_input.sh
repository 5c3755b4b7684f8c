#!/usr/bin/env bash
# Bad input gets a clear error, a non-zero exit, and nothing is mounted or changed:
# wrong passphrase, a non-LUKS file, a truncated image, a missing image, a damaged header.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "the right one")
W=$(keyfile wrong "the wrong one")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((32 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
sum_before=$(sha256sum "$img")

note "wrong passphrase"
expect_failure 2 "No key available with this passphrase" -- cm_open "$img" v --key-file "$W"
note "wrong passphrase for a named keyslot"
expect_failure 2 "No key available" -- cm_open "$img" v --key-file "$W" --key-slot 0
note "not a LUKS file"
head -c $((4 * MiB)) /dev/urandom > "$T/random.img"
expect_failure 1 "not a valid LUKS device" -- cm_open "$T/random.img" v --key-file "$K"
note "missing image"
expect_failure 4 "does not exist|No such file" -- cm_open "$T/nope.img" v --key-file "$K"
note "truncated image (header only)"
head -c 8192 "$img" > "$T/trunc.img"
expect_failure 1 "LUKS|header|truncated|short" -- cm_open "$T/trunc.img" v --key-file "$K"
note "both header copies damaged"
cp "$img" "$T/bad.img"
printf 'XXXXXXXX' | dd of="$T/bad.img" bs=1 seek=200 conv=notrunc status=none
printf 'XXXXXXXX' | dd of="$T/bad.img" bs=1 seek=$((16384 + 200)) conv=notrunc status=none
expect_failure 1 "LUKS|checksum|header" -- cm_open "$T/bad.img" v --key-file "$K"

[[ "$(sha256sum "$img")" == "$sum_before" ]] || fail "a failed open changed the image"
note "the right passphrase still works afterwards"
cm_open "$img" v --key-file "$K"
note "a resize past the image and a refresh with a wrong passphrase refuse; the volume still serves"
expect_exit 1 "Device .* is too small" -- cm resize v --size $((64 * MiB / 512)) --mount-dir "$MNT"
expect_exit 2 "No key available with this passphrase" -- cm refresh v --allow-discards --key-file "$W" --mount-dir "$MNT"
[[ -e "$MNT/v" ]] || fail "a refused resize or refresh closed the volume"
cm_close v
echo "PASS"
