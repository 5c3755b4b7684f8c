#!/usr/bin/env bash
# convert --type luks1|luks2 and luksConvertKey against cryptsetup 2.6.1 (docs/formats.md §2.8):
# the same image converted by cryptsetup and by cryptmap gives the same JSON metadata and the
# same bytes from the end of the LUKS2 metadata on (keyslot material, data); only salts and
# checksums of the binary headers differ. Converted back, both tools give byte-identical
# LUKS1 images, whose header is the original one. cryptsetup opens every keyslot of what
# cryptmap converted; cryptsetup's refusals, words and exit codes, the image untouched.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "convert-zero")
K3=$(keyfile key3 "convert-three")

# both_convert IMG TYPE: cryptsetup converts $T/cs.img, cryptmap $T/cm.img, both copies of IMG.
both_convert() {
  cp "$1" "$T/cs.img"
  cp "$1" "$T/cm.img"
  cryptsetup convert --batch-mode --type "$2" "$T/cs.img" || fail "cryptsetup convert to $2 failed"
  cm convert --batch-mode --type "$2" "$T/cm.img" || fail "cryptmap convert to $2 failed"
}

note "LUKS1 (slots 0 and 3) -> LUKS2"
l1=$T/l1.img
truncate -s 20M "$l1"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$l1"
cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" -S 3 "$l1" "$K3"
pattern_write "$l1" 2097152 1048576 7
both_convert "$l1" luks2
diff <(cryptsetup luksDump --dump-json-metadata "$T/cs.img") \
     <(cryptsetup luksDump --dump-json-metadata "$T/cm.img") || fail "the LUKS2 JSON differs"
diff <(cryptsetup luksDump "$T/cs.img") <(cryptsetup luksDump "$T/cm.img") || fail "luksDump differs"
cryptsetup luksDump "$T/cm.img" | grep -q "^Epoch:.*2$" || fail "seqid is not 2"
[[ $(cryptsetup luksUUID "$T/cm.img") == $(cryptsetup luksUUID "$l1") ]] || fail "UUID not kept"
cmp -i 32768 "$T/cs.img" "$T/cm.img" || fail "keyslot areas or data differ after 32 KiB"
cmp -i 2097152 "$T/cm.img" "$l1" || fail "the data area changed"
for k in "$K" "$K3"; do
  cryptsetup open --test-passphrase --key-file "$k" "$T/cm.img" || fail "cryptsetup cannot open $k"
  cm open --test-passphrase --key-file "$k" "$T/cm.img" || fail "cryptmap cannot open $k"
done
cp "$T/cm.img" "$T/l2from1.img"

note "and back to LUKS1: byte-identical, the original LUKS1 header"
both_convert "$T/l2from1.img" luks1
cmp "$T/cs.img" "$T/cm.img" || fail "LUKS1 images differ"
end=$(( $(cryptsetup luksDump "$l1" | awk '/Key material offset/ {o=$4} END {print o}') * 512 + 258048 ))
cmp -n "$end" "$T/cm.img" "$l1" || fail "the LUKS1 header did not come back"
cryptsetup open --test-passphrase --key-file "$K3" "$T/cm.img" || fail "slot 3 lost"

note "cryptsetup's LUKS2 (pbkdf2, 512-byte sectors, slots 0 and 5) -> LUKS1"
l2=$T/l2.img
truncate -s 20M "$l2"
cryptsetup luksFormat --batch-mode --type luks2 --sector-size 512 "${CS_FAST_PBKDF2[@]}" --label lab --key-file "$K" "$l2"
cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" -S 5 "$l2" "$K3"
both_convert "$l2" luks1
cmp "$T/cs.img" "$T/cm.img" || fail "LUKS1 images from LUKS2 differ"
cryptsetup open --test-passphrase --key-file "$K3" -S 5 "$T/cm.img" || fail "slot 5 lost"
diff <(cryptsetup luksDump "$T/cs.img" | tail -n +2) <(cm luksDump "$T/cm.img" | tail -n +2) || fail "cryptmap's luksDump differs"

note "luksConvertKey: a keyslot to argon2id and back to pbkdf2, same id"
img=$T/ck.img
cp "$l2" "$img"
cm luksConvertKey --key-file "$K3" --pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4 --pbkdf-parallel 1 "$img"
cryptsetup luksDump "$img" | awk '/^  5: luks2/,/Digest ID/' > "$T/slot5"
grep -q "PBKDF:.*argon2id" "$T/slot5" || { cat "$T/slot5"; fail "slot 5 is not argon2id"; }
grep -q "Memory:.*32768" "$T/slot5" && grep -q "Time cost:.*4" "$T/slot5" && grep -q "Threads:.*1" "$T/slot5" ||
  { cat "$T/slot5"; fail "argon2 costs not as asked"; }
cryptsetup luksDump "$img" | awk '/^  0: luks2/,/Digest ID/' | grep -q "PBKDF:.*pbkdf2" || fail "slot 0 changed"
cryptsetup open --test-passphrase --key-file "$K3" -S 5 "$img" || fail "cryptsetup cannot open converted slot 5"
cryptsetup open --test-passphrase --key-file "$K" -S 0 "$img" || fail "slot 0 no longer opens"
cm luksConvertKey --key-file "$K3" -S 5 --pbkdf pbkdf2 --pbkdf-force-iterations 1234 --hash sha512 "$img"
cryptsetup luksDump "$img" | awk '/^  5: luks2/,/Digest ID/' > "$T/slot5"
grep -q "Iterations:.*1234" "$T/slot5" && grep -q "Hash:.*sha512" "$T/slot5" || { cat "$T/slot5"; fail "pbkdf2 not as asked"; }
cryptsetup open --test-passphrase --key-file "$K3" -S 5 "$img" || fail "slot 5 does not open after pbkdf2"
sum=$(sha256sum < "$img")
expect_exit 2 "^No key available with this passphrase.$" -- cm luksConvertKey --key-file "$K3" -S 0 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$img"
expect_exit 1 "^Keyslot 2 is not active.$" -- cm luksConvertKey --key-file "$K3" -S 2 --pbkdf pbkdf2 "$img"
expect_exit 1 "is not a valid LUKS2 device.$" -- cm luksConvertKey --key-file "$K" --pbkdf pbkdf2 "$l1"
[[ $(sha256sum < "$img") == "$sum" ]] || fail "a refused luksConvertKey changed the image"

note "refusals: cryptsetup's words and exit codes, the image untouched"
refuse() {  # refuse IMG TYPE REGEX: both tools refuse; cryptmap says REGEX; IMG unchanged
  local sum
  sum=$(sha256sum < "$1")
  cp "$1" "$T/csr.img"
  set +e; cryptsetup convert --batch-mode --type "$2" "$T/csr.img" > /dev/null 2>&1; local rc=$?; set -e
  [[ $rc == 1 ]] || fail "cryptsetup convert --type $2 exited $rc (test assumption)"
  expect_exit 1 "$3" -- cm convert --batch-mode --type "$2" "$1"
  [[ $(sha256sum < "$1") == "$sum" ]] || fail "a refused convert changed $1"
}
mk() {  # mk NAME ARGS...: a LUKS2 image made by cryptsetup
  truncate -s 20M "$T/$1"
  cryptsetup luksFormat --batch-mode --type luks2 --key-file "$K" "${@:2}" "$T/$1"
  echo "$T/$1"
}
refuse "$l1" luks1 "^Device is already LUKS1 type.$"
refuse "$l2" luks2 "^Device is already LUKS2 type.$"
refuse "$l2" plain "^Invalid LUKS type, only luks1 and luks2 are supported.$"
refuse "$(mk s4k.img "${CS_FAST_PBKDF2[@]}")" luks1 "^Cannot convert to LUKS1 format - default segment encryption sector size is not 512 bytes.$"
refuse "$(mk slot9.img "${CS_FAST_PBKDF2[@]}" --sector-size 512 -S 9)" luks1 "^Cannot convert to LUKS1 format - slot 9 \(over maximum slots\) is still active.$"
refuse "$(mk argon.img "${CS_FAST_ARGON[@]}" --sector-size 512)" luks1 "^Cannot convert to LUKS1 format - keyslot 0 is not LUKS1 compatible.$"
tok=$(mk tok.img "${CS_FAST_PBKDF2[@]}" --sector-size 512)
printf '{"type":"x","keyslots":[]}' | cryptsetup token import "$tok"
refuse "$tok" luks1 "^Cannot convert to LUKS1 format - LUKS2 header contains 1 token\(s\).$"
# integrity: cryptsetup cannot format it here (no device-mapper), cryptmap can
integ=$T/integ.img
truncate -s 20M "$integ"
cm luksFormat --batch-mode --type luks2 --sector-size 512 --integrity hmac-sha256 --integrity-no-wipe "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$integ"
sum=$(sha256sum < "$integ")
expect_exit 1 "^Cannot convert to LUKS1 format - keyslot 0 is not LUKS1 compatible.$" -- cm convert -q --type luks1 "$integ"
[[ $(sha256sum < "$integ") == "$sum" ]] || fail "a refused convert changed the integrity image"
small=$T/small.img  # LUKS1 whose data starts right after its keyslots: no room to move them
truncate -s 4M "$small"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-size 256 --offset 2056 --key-file "$K" "$small"
refuse "$small" luks2 "^Unable to move keyslot area. Not enough space.$"
echo "PASS"
