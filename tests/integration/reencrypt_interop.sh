#!/usr/bin/env bash
# reencrypt against cryptsetup 2.6.1 (offline, --force-offline-reencrypt), docs/reencrypt.md:
#  1. cryptmap --init-only writes a header cryptsetup's luksDump accepts, shaped like
#     cryptsetup's own --init-only header, and cryptsetup --resume-only completes it;
#  2. cryptsetup --init-only, cryptmap --resume-only completes it;
#  4. a whole cryptmap reencrypt per resilience mode, key size and sector size changed;
#  5. bad input: wrong passphrase (exit 2), an image open in the daemon (exit 5), not enough
#     keyslots area (exit 1), --encrypt and --decrypt without --header refused: the image is
#     unchanged.
# (3, interrupted runs handed between the tools: reencrypt_recovery.sh.)
# Data is checked with a pattern written before: read through `cryptmap open` (FUSE), and
# independently by `cryptsetup reencrypt --decrypt` of the data area (reencrypt_lib.sh).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300
note "1. cryptmap --init-only, cryptsetup --resume-only"
new_image "$T/a.img"
cp --sparse=always "$T/a.img" "$T/a-cs.img"
cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" "$T/a.img" || fail "cryptmap --init-only failed"
cryptsetup reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" "$T/a-cs.img" > /dev/null
cryptsetup luksDump "$T/a.img" > "$T/dump" || fail "cryptsetup luksDump refuses cryptmap's header"
grep -q "online-reencrypt-v2" "$T/dump" || fail "requirement missing in luksDump"
diff <(shape "$T/a-cs.img") <(shape "$T/a.img") || fail "cryptmap's --init-only header differs in shape from cryptsetup's"
# Served as it is (all of it still under the old key, docs/reencrypt.md §9); nothing written.
cm_open --key-file "$K" "$T/a.img" x || fail "1: cryptmap cannot open its --init-only image"
pattern_check "$MNT/x" 0 "$DATA" 7 || fail "1: data differs through open after --init-only"
cm_close x
cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" "$T/a.img" > /dev/null \
  || fail "cryptsetup cannot resume cryptmap's --init-only"
not_in_reencryption "$T/a.img" "1"
check_data "$T/a.img" "1"

note "2. cryptsetup --init-only (cipher, key size, sector size), cryptmap --resume-only"
new_image "$T/b.img"
cryptsetup reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" \
  --cipher aes-cbc-essiv:sha256 --key-size 256 --sector-size 512 "$T/b.img" > /dev/null
cm reencrypt --resume-only --batch-mode --key-file "$K" "$T/b.img" || fail "cryptmap cannot resume cryptsetup's --init-only"
not_in_reencryption "$T/b.img" "2"
cryptsetup luksDump "$T/b.img" | grep -q "aes-cbc-essiv:sha256" || fail "2: cipher not changed"
check_data "$T/b.img" "2"

for res in checksum journal none; do
  note "4. cryptmap reencrypt --resilience $res (512-bit -> 256-bit key, 4096 -> 512 byte sectors)"
  new_image "$T/e.img"
  cm reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --resilience "$res" \
    --key-size 256 --sector-size 512 "$T/e.img" || fail "4/$res: reencrypt failed"
  not_in_reencryption "$T/e.img" "4/$res"
  cryptsetup luksDump "$T/e.img" | grep -q "Key:        256 bits" || fail "4/$res: key size not changed"
  check_data "$T/e.img" "4/$res"
done

note "5. bad input changes nothing"
new_image "$T/f.img"
cp "$T/f.img" "$T/f.orig"
expect_failure 2 "No key available with this passphrase" -- cm reencrypt --batch-mode --key-file "$W" "$T/f.img"
cmp -s "$T/f.img" "$T/f.orig" || fail "5: a wrong passphrase changed the image"
expect_failure 1 "not in reencryption" -- cm reencrypt --resume-only --batch-mode --key-file "$K" "$T/f.img"
expect_failure 1 "Encryption without detached header" -- cm reencrypt --encrypt --batch-mode --key-file "$K" "$T/f.img"
# cryptsetup 2.6.1 decrypts in place only under a detached header (reencrypt_decrypt.sh).
expect_failure 1 "LUKS2 decryption requires --header option" -- cm reencrypt --decrypt --batch-mode --key-file "$K" "$T/f.img"
cmp -s "$T/f.img" "$T/f.orig" || fail "5: a refused reencrypt changed the image"
cm_open --key-file "$K" "$T/f.img" busy
# Online is the default for a served image (reencrypt_online.sh); offline is refused under it.
expect_exit 5 "open in cryptmap's daemon.*Close it first" -- cm reencrypt --force-offline-reencrypt --mount-dir "$MNT" --batch-mode --key-file "$K" "$T/f.img"
cm_close busy
cmp -s "$T/f.img" "$T/f.orig" || fail "5: a refused offline reencrypt of an open image changed it"
# A keyslots area with room for one keyslot only: no room for the new volume key's keyslot.
rm -f "$T/g.img"; truncate -s 16M "$T/g.img"
cryptsetup luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$K" --luks2-keyslots-size 256k "$T/g.img"
cp "$T/g.img" "$T/g.orig"
expect_failure 1 "Not enough space in header keyslot area" -- cm reencrypt --batch-mode --key-file "$K" "$T/g.img"
cmp -s "$T/g.img" "$T/g.orig" || fail "5: a failed init changed the image"
note "PASS"
