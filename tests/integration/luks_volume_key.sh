#!/usr/bin/env bash
# open --volume-key-file (cryptsetup 2.6.1's rules): LUKS1 and LUKS2 images made by cryptsetup
# open with the volume key cryptsetup dumps (luksDump --dump-volume-key --volume-key-file), no
# passphrase, and serve the data written with a passphrase; --test-passphrase takes it too; a
# wrong key is "Volume key does not match the volume." (exit 2), a short file "Cannot read N
# bytes from keyfile F." (exit 1), plain mode refuses the option (cryptsetup 2.6.1 ignores it
# there and asks for a passphrase); nothing stays mounted after a refusal.
source "$(dirname "$0")/lib.sh"
watchdog 120
K=$(keyfile key "volume-key-pass")
for type in luks1 luks2; do
  img=$T/$type.img
  truncate -s 24M "$img"
  cryptsetup luksFormat --batch-mode --type "$type" "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
  cryptsetup luksDump --batch-mode --dump-volume-key --key-file "$K" --volume-key-file "$T/$type.vk" "$img" > /dev/null
  cm_open "$img" data --key-file "$K"
  pattern_write "$MNT/data" 0 4194304 11
  cm_close data
  cm_open "$img" data --volume-key-file "$T/$type.vk" < /dev/null || fail "$type: open with the volume key failed"
  pattern_check "$MNT/data" 0 4194304 11 || fail "$type: data read with the volume key differs"
  cm_close data
  cm open --test-passphrase --volume-key-file "$T/$type.vk" "$img" < /dev/null || fail "$type: --test-passphrase with the volume key failed"
  cp "$T/$type.vk" "$T/bad.vk"
  chmod u+w "$T/bad.vk"
  printf '\x01' | dd of="$T/bad.vk" bs=1 seek=7 conv=notrunc status=none
  cmp -s "$T/bad.vk" "$T/$type.vk" && fail "the damaged key is the key"
  expect_failure 2 "^Volume key does not match the volume.$" -- cm_open "$img" data --volume-key-file "$T/bad.vk"
  head -c 32 "$T/$type.vk" > "$T/short.vk"
  expect_failure 1 "^Cannot read 64 bytes from keyfile $T/short.vk" -- cm_open "$img" data --volume-key-file "$T/short.vk"
  note "$type: volume key file opens, wrong and short keys refused"
done
expect_failure 1 "opens LUKS devices only" -- cm_open --type plain --cipher aes-xts-plain64 --key-size 512 --hash sha256 "$T/luks2.img" p --volume-key-file "$T/luks2.vk"
echo "PASS"
