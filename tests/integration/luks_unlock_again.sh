#!/usr/bin/env bash
# luksResume and refresh unlock the open volume's header again (cli/ unlock_again) and must refuse
# when that header no longer describes the volume, although the passphrase opens it:
# - refresh of an open volume after another image's LUKS2 header (same passphrase) was written
#   over the image's own: exit 1, "no longer describes the open volume", the image not written;
# - luksResume of a suspended volume after the image was luksFormatted anew (same passphrase):
#   exit 1, "no longer describes the suspended volume", still suspended, the image not written;
# - with the original header restored both work, and the volume kept its old key throughout:
#   data written through the mount before and after the refusals reads back after close and a
#   fresh open with the original header (a volume re-keyed by the swapped header would have
#   written garbage there).
source "$(dirname "$0")/lib.sh"
watchdog 200
K=$(keyfile key "again-one")
MiB=$((1 << 20))
img=$T/a.img
other=$T/b.img
truncate -s $((16 * MiB + 8 * MiB)) "$img" "$other"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$other"
cryptsetup luksHeaderBackup --batch-mode "$img" --header-backup-file "$T/a.hdr"
cryptsetup luksHeaderBackup --batch-mode "$other" --header-backup-file "$T/b.hdr"
restore_header() { cryptsetup luksHeaderRestore --batch-mode "$img" --header-backup-file "$T/a.hdr"; }

cm_open "$img" v --key-file "$K"
pattern_write "$MNT/v" 0 $((1 * MiB)) 11

note "refresh after another image's header was written over the image's"
dd if="$T/b.hdr" of="$img" bs=1M conv=notrunc,fsync status=none
cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "the swapped-in header does not open with the passphrase: the check below would test nothing"
sum=$(sha256sum < "$img")
expect_exit 1 "The LUKS header of $img no longer describes the open volume v \(UUID .*, was .*\)\. Nothing was changed\." -- \
  cm refresh v --mount-dir "$MNT" --key-file "$K" --allow-discards
[[ $(sha256sum < "$img") == "$sum" ]] || fail "the refused refresh wrote to the image"
cm status v --mount-dir "$MNT" | grep -q "discards" && fail "the refused refresh applied --allow-discards: $(cm status v --mount-dir "$MNT")"
pattern_write "$MNT/v" $((2 * MiB)) $((1 * MiB)) 12
pattern_check "$MNT/v" 0 $((1 * MiB)) 11

note "luksResume after the image was luksFormatted anew while suspended"
restore_header
cm luksSuspend v --mount-dir "$MNT"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
sum=$(sha256sum < "$img")
expect_exit 1 "The LUKS header of $img no longer describes the suspended volume v \(UUID .*, was .*\)\. Restore its header \(luksHeaderRestore\), then resume\." -- \
  cm luksResume v --mount-dir "$MNT" --key-file "$K"
[[ $(sha256sum < "$img") == "$sum" ]] || fail "the refused luksResume wrote to the image"
cm status v --mount-dir "$MNT" | grep -q "(suspended)" || fail "the refused luksResume resumed the volume: $(cm status v --mount-dir "$MNT")"

note "the original header back: luksResume and refresh work, the old key was kept"
restore_header
cm luksResume v --mount-dir "$MNT" --key-file "$K"
cm refresh v --mount-dir "$MNT" --key-file "$K" --allow-discards
cm status v --mount-dir "$MNT" | grep -q "discards" || fail "refresh with the original header did not apply --allow-discards"
pattern_write "$MNT/v" $((4 * MiB)) $((1 * MiB)) 13
cm_close v
cm_open "$img" v --key-file "$K" --readonly
pattern_check "$MNT/v" 0 $((1 * MiB)) 11
pattern_check "$MNT/v" $((2 * MiB)) $((1 * MiB)) 12
pattern_check "$MNT/v" $((4 * MiB)) $((1 * MiB)) 13
cm_close v
echo "PASS"
