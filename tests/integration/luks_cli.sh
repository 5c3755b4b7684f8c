#!/usr/bin/env bash
# cryptmap's LUKS verbs against the real cryptsetup 2.6.1, in both directions: images cryptmap
# formats pass luksDump / open --test-passphrase / luksAddKey and dump the key we dumped;
# cryptmap's keyslot edits on cryptsetup images are honoured by cryptsetup; dumps are identical;
# piped passphrases stop at the first newline like cryptsetup's.
source "$(dirname "$0")/lib.sh"
K1=$(keyfile k1 "first passphrase")
K2=$(keyfile k2 "second passphrase")
K3=$(keyfile k3 "third passphrase")
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
MiB=$((1 << 20))

vk_of() {  # vk_of TOOL IMG KEY [args] -> the MK dump hex
  local tool=$1 img=$2 key=$3; shift 3
  "$tool" luksDump --dump-volume-key --batch-mode --key-file "$key" "$@" "$img" | sed -n '/^MK dump:/,$p' | tr -d ' \t\n' | sed 's/MKdump://'
}

for type in luks1 luks2; do
  note "$type: cryptmap luksFormat -> cryptsetup"
  img=$T/$type.img
  truncate -s $((20 * MiB)) "$img"
  cm luksFormat --batch-mode --type "$type" "${FAST[@]}" "$img" "$K1"
  cryptsetup luksDump "$img" > /dev/null || fail "$type: cryptsetup luksDump rejects our header"
  cryptsetup open --test-passphrase --key-file "$K1" "$img" || fail "$type: cryptsetup cannot unlock"
  cryptsetup open --test-passphrase --key-file "$K2" "$img" 2>/dev/null && fail "$type: wrong key accepted"
  [[ "$(vk_of cm "$img" "$K1")" == "$(vk_of cryptsetup "$img" "$K1")" ]] || fail "$type: volume keys differ"
  [[ -n "$(vk_of cm "$img" "$K1")" ]] || fail "$type: empty key dump"
  cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K1" "$img" "$K2" || fail "$type: luksAddKey"
  [[ "$(vk_of cm "$img" "$K2")" == "$(vk_of cryptsetup "$img" "$K1")" ]] || fail "$type: key added by cryptsetup"
  diff <(cm luksDump "$img") <(cryptsetup luksDump "$img") || fail "$type: luksDump differs"

  note "$type: cryptmap keyslot edits -> cryptsetup"
  cm luksAddKey "${FAST[@]}" --key-file "$K1" --key-slot 6 "$img" "$K3"
  cryptsetup open --test-passphrase --key-slot 6 --key-file "$K3" "$img" || fail "$type: our added key"
  cm luksRemoveKey "$img" "$K2"
  cryptsetup open --test-passphrase --key-file "$K2" "$img" 2>/dev/null && fail "$type: removed key still opens"
  cm luksChangeKey "${FAST[@]}" --key-file "$K3" "$img" "$K2"
  cryptsetup open --test-passphrase --key-file "$K2" "$img" || fail "$type: changed key"
  cryptsetup open --test-passphrase --key-file "$K3" "$img" 2>/dev/null && fail "$type: old key after change"
  cm luksKillSlot --batch-mode "$img" 0
  cryptsetup open --test-passphrase --key-file "$K1" "$img" 2>/dev/null && fail "$type: killed slot opens"
  cm isLuks --type "$type" "$img" || fail "$type: isLuks"
  cm luksUUID --batch-mode --uuid 01234567-89ab-4cde-8f01-23456789abcd "$img"
  [[ "$(cryptsetup luksUUID "$img")" == 01234567-89ab-4cde-8f01-23456789abcd ]] || fail "$type: uuid"

  note "$type: header backup and restore"
  cm luksHeaderBackup "$img" --header-backup-file "$T/$type.bak"
  cp "$img" "$T/$type.copy"
  dd if=/dev/zero of="$T/$type.copy" bs=4096 count=1 conv=notrunc status=none
  cm isLuks "$T/$type.copy" 2>/dev/null && [[ $type == luks1 ]] && fail "$type: wiped header still LUKS"
  cm luksHeaderRestore --batch-mode "$T/$type.copy" --header-backup-file "$T/$type.bak"
  cryptsetup open --test-passphrase --key-file "$K2" "$T/$type.copy" || fail "$type: restored header"
done

note "wrong passphrase: exit 2 and cryptsetup's message"
set +e
out=$(cm luksAddKey --key-file "$K1" "$T/luks2.img" "$K3" 2>&1); rc=$?
set -e
[[ $rc == 2 && "$out" == *"No key available with this passphrase."* ]] || fail "wrong passphrase: rc=$rc out=$out"

note "not a LUKS device: exit 1"
head -c $((1 * MiB)) /dev/urandom > "$T/random.img"
set +e
out=$(cm luksDump "$T/random.img" 2>&1); rc=$?
set -e
[[ $rc == 1 && "$out" == *"is not a valid LUKS device."* ]] || fail "random image: rc=$rc out=$out"

note "piped passphrase stops at the first newline (cryptsetup semantics)"
img=$T/pipe.img
truncate -s $((20 * MiB)) "$img"
printf 'piped secret\nignored tail' | cm luksFormat --batch-mode "${FAST[@]}" "$img"
printf 'piped secret' > "$T/pk"
cryptsetup open --test-passphrase --key-file "$T/pk" "$img" || fail "piped passphrase"

note "detached header"
truncate -s $((4 * MiB)) "$T/data.img"
cm luksFormat --batch-mode "${FAST[@]}" --header "$T/hdr.img" "$T/data.img" "$K1"
cryptsetup open --test-passphrase --header "$T/hdr.img" --key-file "$K1" "$T/data.img" || fail "detached header"
echo "PASS"
