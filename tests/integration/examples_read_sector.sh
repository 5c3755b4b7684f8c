#!/usr/bin/env bash
# The example programs (examples/) do what examples/README.md says: read_sector prints the
# plaintext cryptsetup encrypted (hexdump -C -v of the same bytes), fails clearly on bad input,
# and memory_volume writes, reads back and verifies a volume in memory.
source "$(dirname "$0")/lib.sh"
: "${READ_SECTOR:?READ_SECTOR must name the read_sector example}"
: "${MEMORY_VOLUME:?MEMORY_VOLUME must name the memory_volume example}"
K=$(keyfile key "correct horse battery staple")
W=$(keyfile wrong "not the passphrase")
MiB=$((1 << 20))

note "a LUKS2 image cryptsetup encrypted in place (known plaintext)"
truncate -s $((40 * MiB)) "$T/plain.img"
pattern_write "$T/plain.img" 0 $((40 * MiB)) 3
printf 'cryptmap example: sector three' | dd of="$T/plain.img" bs=1 seek=$((3 * 512)) conv=notrunc status=none
cp "$T/plain.img" "$T/luks.img"
cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M --force-offline-reencrypt \
  --sector-size 512 "${CS_FAST_PBKDF2[@]}" --batch-mode --key-file "$K" "$T/luks.img"
cmp -s -n $((4 * 512)) "$T/plain.img" "$T/luks.img" && fail "the image was not encrypted"

for s in 0 3 100; do
  "$READ_SECTOR" "$T/luks.img" "$K" "$s" > "$T/got" || fail "read_sector failed on sector $s"
  hexdump -C -v -s $((s * 512)) -n 512 "$T/plain.img" > "$T/want"
  diff "$T/want" "$T/got" > /dev/null || { diff "$T/want" "$T/got" | head; fail "sector $s differs from the plaintext"; }
done
grep -q '|cryptmap example|' "$T/got" && fail "sector 100 shows sector 3's text"
"$READ_SECTOR" "$T/luks.img" "$K" 3 | grep -q '|cryptmap example|' || fail "sector 3 lacks its text"
"$READ_SECTOR" "$T/luks.img" "$K" > "$T/got0"
cmp -s "$T/got0" <(hexdump -C -v -n 512 "$T/plain.img") || fail "SECTOR does not default to 0"

note "plain mode (--plain, cryptsetup 2.6 defaults, the key file as the raw key)"
head -c 32 /dev/urandom > "$T/plain.key"
truncate -s $((4 * MiB)) "$T/p.img"
# Plaintext written through `cryptmap open --type plain` with the same defaults, read back.
printf 'plain sector ok' > "$T/msg"
cm_open "$T/p.img" p --type plain --cipher aes-cbc-essiv:sha256 --key-size 256 --key-file "$T/plain.key"
dd if="$T/msg" of="$MNT/p" bs=512 seek=5 conv=notrunc,fsync status=none
cm_close p
"$READ_SECTOR" --plain "$T/p.img" "$T/plain.key" 5 | grep -q '|plain sector ok' || fail "--plain did not read the sector written through cryptmap"

note "bad input"
expect_failure 2 "No key available" -- "$READ_SECTOR" "$T/luks.img" "$W" 0
expect_failure 1 "not a LUKS|LUKS" -- "$READ_SECTOR" "$T/plain.img" "$K" 0
expect_failure 4 "nope.img" -- "$READ_SECTOR" "$T/nope.img" "$K" 0
expect_failure 1 "past the end" -- "$READ_SECTOR" "$T/luks.img" "$K" 99999999
expect_failure 1 "SECTOR must be a sector number" -- "$READ_SECTOR" "$T/luks.img" "$K" x3
expect_failure 1 "usage" -- "$READ_SECTOR" "$T/luks.img"
expect_failure 4 "key file" -- "$READ_SECTOR" "$T/luks.img" "$T/nokey" 0

note "memory_volume"
"$MEMORY_VOLUME" > "$T/mem.out" || { cat "$T/mem.out"; fail "memory_volume failed"; }
grep -q "read them back" "$T/mem.out" || fail "memory_volume did not read back"
grep -q "ciphertext.*OK" "$T/mem.out" || fail "memory_volume did not check the store"
echo "PASS"
