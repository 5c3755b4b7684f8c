#!/usr/bin/env bash
# config (LUKS2 label, subsystem, keyslot priority) against cryptsetup: each change is made by
# cryptsetup on one copy of an image and by cryptmap on another, and the two images must be
# byte-identical (binary headers, JSON, checksums, seqid); luksDump agrees; the passphrases
# still open; cryptsetup's refusals and messages; a refused change leaves the image as it was.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "config-zero")
K1=$(keyfile key1 "config-one")
img=$T/a.img
truncate -s 20M "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img" "$K1"

# same ARGS...: cryptsetup config ARGS on one copy, cryptmap config ARGS on another.
same() {
  cp "$img" "$T/cs.img"
  cp "$img" "$T/cm.img"
  cryptsetup config "$@" "$T/cs.img" || fail "cryptsetup config $* failed"
  cm config "$@" "$T/cm.img" || fail "cryptmap config $* failed"
  if ! cmp -s "$T/cs.img" "$T/cm.img"; then
    cmp -l "$T/cs.img" "$T/cm.img" | head -n 20
    fail "config $*: cryptmap's image differs from cryptsetup's"
  fi
  cmp -s "$T/cm.img" "$img" && fail "config $* changed nothing"
  cp "$T/cm.img" "$img"
  note "config $*: byte-identical to cryptsetup"
}
same --label hello --subsystem sub
same --label only                 # the subsystem is cleared, as cryptsetup does
same --subsystem s2               # and the label
same --priority prefer --key-slot 1
same --priority ignore --key-slot 0
same --priority normal --key-slot 0
same --priority prefer --key-slot 0 --label both --subsystem ""

diff <(cryptsetup luksDump "$img") <(cm luksDump "$img") || fail "luksDump differs from cryptsetup's"
cryptsetup luksDump "$img" | grep -q "^Label:.*both" || fail "cryptsetup does not see the label"
cryptsetup luksDump "$img" | grep -q "Priority:.*preferred" || fail "cryptsetup does not see the priority"
cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "slot 0 no longer opens"
cryptsetup open --test-passphrase --key-file "$K1" "$img" || fail "slot 1 no longer opens"
cm open --test-passphrase "$img" --key-file "$K1" || fail "cryptmap cannot open slot 1"

note "refusals leave the image alone"
sum=$(sha256sum < "$img")
expect_exit 1 "^Option --priority, --label or --subsystem is missing.$" -- cm config "$img"
expect_exit 1 "^Keyslot specification is required.$" -- cm config "$img" --priority prefer
expect_exit 1 "can be only ignore/normal/prefer" -- cm config "$img" --priority high --key-slot 0
expect_exit 1 "Keyslot 5 is not active" -- cm config "$img" --priority prefer --key-slot 5
expect_exit 1 "^Label or subsystem too long: at most 47 bytes.$" -- cm config "$img" --label "$(printf 'x%.0s' $(seq 1 48))"
[[ $(sha256sum < "$img") == "$sum" ]] || fail "a refused config changed the image"
l1=$T/l1.img
truncate -s 20M "$l1"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$l1"
sum1=$(sha256sum < "$l1")
expect_exit 1 "Device .*l1.img is not a valid LUKS2 device." -- cm config "$l1" --label x
[[ $(sha256sum < "$l1") == "$sum1" ]] || fail "config changed a LUKS1 image"
echo "PASS"
