#!/usr/bin/env bash
# Every cipher spec cryptsetup can process in userspace here (offline reencryption), formatted
# and encrypted by cryptsetup, opened through cryptmap's FUSE file: the plaintext must match.
# Also the reverse for each spec: cryptmap writes, cryptsetup decrypts. LUKS2 detached headers,
# alternating 512- and 4096-byte sectors.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "matrix")
MiB=$((1 << 20))
specs=(
  "aes-xts-plain64 256" "aes-xts-plain64 512" "aes-xts-plain 512" "aes-xts-plain64be 256"
  "aes-cbc-essiv:sha256 256" "aes-cbc-plain64 256" "aes-cbc-plain 128" "aes-cbc-benbi 256"
  "aes-ctr-plain64 256" "aes-cbc-eboiv 256" "aes-xts-essiv:sha256 512" "aes-cbc-null 256"
)
i=0
for entry in "${specs[@]}"; do
  read -r spec bits <<< "$entry"
  ss=$(( i % 2 == 0 ? 4096 : 512 )); i=$((i + 1))
  note "$spec, $bits-bit key, $ss-byte sectors"
  img=$T/m.img hdr=$T/m.hdr
  rm -f "$img" "$hdr"
  truncate -s $((4 * MiB)) "$img"
  pattern_write "$img" 0 $((4 * MiB)) 41
  cryptsetup reencrypt --encrypt --type luks2 --header "$hdr" --force-offline-reencrypt \
    --cipher "$spec" --key-size "$bits" --sector-size "$ss" "${CS_FAST_PBKDF2[@]}" \
    --batch-mode --key-file "$K" "$img" || fail "cryptsetup could not encrypt with $spec"
  cm_open "$img" m --header "$hdr" --key-file "$K"
  pattern_check "$MNT/m" 0 $((4 * MiB)) 41 || fail "$spec/$ss: cryptmap misreads cryptsetup's ciphertext"
  pattern_write "$MNT/m" 0 $((4 * MiB)) 42
  cm_close m
  cryptsetup reencrypt --decrypt --header "$hdr" --force-offline-reencrypt --batch-mode \
    --key-file "$K" "$img" || fail "cryptsetup could not decrypt $spec"
  pattern_check "$img" 0 $((4 * MiB)) 42 || fail "$spec/$ss: cryptsetup misreads cryptmap's ciphertext"
done
echo "PASS"
