#!/usr/bin/env bash
# `open` of an image cut before its LUKS data segment (a truncated copy, or a detached header
# given the wrong image) fails with a clear message and exit 1, before any passphrase is asked,
# and mounts nothing. --test-passphrase still checks the key alone, as cryptsetup does.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "the right one")
MiB=$((1 << 20))

note "in-image header, image cut at the data offset"
truncate -s $((32 * MiB)) "$T/full.img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/full.img"
head -c $((16 * MiB)) "$T/full.img" > "$T/cut.img"
expect_failure 1 "Device $T/cut.img is too small for the LUKS data segment.*Give the image" \
  -- cm_open "$T/cut.img" v --key-file "$K"
grep -q "Enter passphrase" "$T/out" && fail "a passphrase was asked for before the size check"

note "LUKS1, image cut inside the data segment's first sector"
truncate -s $((8 * MiB)) "$T/l1.img"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/l1.img"
off=$(cryptsetup luksDump "$T/l1.img" | awk '/Payload offset/ {print $3 * 512}')
head -c "$off" "$T/l1.img" > "$T/l1cut.img"
expect_failure 1 "too small for the LUKS data segment" -- cm_open "$T/l1cut.img" v --key-file "$K" --type luks1

note "detached header given a data image smaller than its segment"
truncate -s $((8 * MiB)) "$T/det.img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" \
  --header "$T/det.hdr" --offset 16384 "$T/det.img"
expect_failure 1 "Device $T/det.img is too small" -- cm_open "$T/det.img" v --header "$T/det.hdr" --key-file "$K"

note "--test-passphrase checks the key alone"
cm open --test-passphrase "$T/cut.img" --key-file "$K" || fail "--test-passphrase refused a cut image"
expect_failure 2 "No key available" -- cm open --test-passphrase "$T/cut.img" --key-file "$T/out"

note "the whole image still opens"
cm_open "$T/full.img" v --key-file "$K"
[[ $(stat -c %s "$MNT/v") == $((16 * MiB)) ]] || fail "the whole image has the wrong size"
cm_close v
echo "PASS"
