#!/usr/bin/env bash
# cryptmap vs an independent AES-XTS (python3-cryptography) using the volume key that
# `cryptsetup luksDump --dump-volume-key` reveals: what cryptmap writes decrypts sector by
# sector, and what the reference encrypts reads back through cryptmap. LUKS2 default cipher,
# 4096- and 512-byte sectors (IV counted in 512-byte units), argon2id keyslot.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "xts reference")
MiB=$((1 << 20))

volume_key() {  # volume_key IMG -> hex
  cryptsetup luksDump --dump-volume-key --batch-mode --key-file "$K" "$1" |
    awk '/MK dump:/{f=1; sub(/.*MK dump:/,"")} f{print} /^$/{f=0}' | tr -d ' \t\n:' | head -c 128
}

for ss in 4096 512; do
  img=$T/x$ss.img
  truncate -s $((24 * MiB)) "$img"
  cryptsetup luksFormat --type luks2 --sector-size "$ss" "${CS_FAST_ARGON[@]}" --batch-mode --key-file "$K" "$img"
  vk=$(volume_key "$img")
  [[ ${#vk} == 128 ]] || fail "could not read the 512-bit volume key from luksDump ($vk)"
  off=$((16 * MiB))

  note "sector $ss: cryptmap writes, reference decrypts"
  cm_open "$img" "x$ss" --key-file "$K"
  pattern_write "$MNT/x$ss" 0 $((8 * MiB)) 21
  cm_close "x$ss"
  python3 "$HERE/xts_ref.py" decrypt-check "$img" $off "$ss" "$vk" $((8 * MiB)) 21 ||
    fail "sector $ss: ciphertext written by cryptmap does not match the reference AES-XTS"

  note "sector $ss: reference encrypts, cryptmap reads"
  python3 "$HERE/xts_ref.py" encrypt "$img" $off "$ss" "$vk" $((8 * MiB)) 22
  cm_open "$img" "x$ss" --key-file "$K" --readonly
  pattern_check "$MNT/x$ss" 0 $((8 * MiB)) 22 || fail "sector $ss: cryptmap misreads reference ciphertext"
  cm_close "x$ss"
done
echo "PASS"
