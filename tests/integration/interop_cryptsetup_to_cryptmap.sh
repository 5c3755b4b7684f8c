#!/usr/bin/env bash
# cryptsetup -> cryptmap: a known pattern is encrypted by cryptsetup itself (offline
# reencryption runs cryptsetup's own userspace crypto, no device-mapper needed), then read back
# as plaintext through cryptmap's FUSE file. Covers LUKS2 in-image header (512 and 4096-byte
# sectors, pbkdf2 and argon2id keyslots), a detached header, and LUKS1 (cryptsetup convert).
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "correct horse battery staple")
MiB=$((1 << 20))

encrypt_in_image() {  # encrypt_in_image IMG SECTOR_SIZE PBKDF_ARGS...
  local img=$1 ss=$2; shift 2
  truncate -s $((64 * MiB)) "$img"
  pattern_write "$img" 0 $((64 * MiB)) 7
  cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M --force-offline-reencrypt \
    --sector-size "$ss" "$@" --batch-mode --key-file "$K" "$img"
}

check_volume() {  # check_volume NAME EXPECTED_SIZE PATTERN_BYTES
  local name=$1 size=$2 bytes=$3
  [[ -f "$MNT/$name" ]] || fail "$MNT/$name is not a regular file"
  local got
  got=$(stat -c %s "$MNT/$name")
  [[ "$got" == "$size" ]] || fail "$name: size $got, expected $size"
  pattern_check "$MNT/$name" 0 "$bytes" 7 || fail "$name: plaintext differs from what cryptsetup encrypted"
}

note "LUKS2, in-image header, 512-byte sectors, pbkdf2"
encrypt_in_image "$T/l2-512.img" 512 "${CS_FAST_PBKDF2[@]}"
cm_open "$T/l2-512.img" l2s512 --key-file "$K"
check_volume l2s512 $((48 * MiB)) $((32 * MiB))

note "LUKS2, in-image header, 4096-byte sectors, argon2id"
encrypt_in_image "$T/l2-4k.img" 4096 "${CS_FAST_ARGON[@]}"
cm_open "$T/l2-4k.img" l2s4k --key-file "$K" --type luks2
check_volume l2s4k $((48 * MiB)) $((32 * MiB))

note "LUKS1 converted from LUKS2 by cryptsetup (data stays cryptsetup-encrypted)"
cp "$T/l2-512.img" "$T/l1.img"
cryptsetup convert --type luks1 --batch-mode "$T/l1.img"
cryptsetup isLuks --type luks1 "$T/l1.img" || fail "convert did not produce LUKS1"
cm_open "$T/l1.img" l1 --key-file "$K" --type luks1
check_volume l1 $((48 * MiB)) $((32 * MiB))

note "LUKS2 detached header, 4096-byte sectors"
truncate -s $((16 * MiB)) "$T/det.img"
pattern_write "$T/det.img" 0 $((16 * MiB)) 7
cryptsetup reencrypt --encrypt --type luks2 --header "$T/det.hdr" --force-offline-reencrypt \
  --sector-size 4096 "${CS_FAST_PBKDF2[@]}" --batch-mode --key-file "$K" "$T/det.img"
cm_open "$T/det.img" det --header "$T/det.hdr" --key-file "$K"
check_volume det $((16 * MiB)) $((16 * MiB))

note "all four volumes are served by one daemon at once"
cm status --mount-dir "$MNT" > "$T/status.txt"
for n in l2s512 l2s4k l1 det; do grep -q "$n" "$T/status.txt" || fail "status does not list $n"; done
for n in l2s512 l2s4k l1 det; do cm_close "$n"; done
sleep 0.5
mountpoint -q "$MNT" && fail "mount dir still mounted after the last close"
echo "PASS"
