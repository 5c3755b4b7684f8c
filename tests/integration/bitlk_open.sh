#!/usr/bin/env bash
# BitLocker end to end (issue #15): every image of cryptsetup's BITLK test archive opened through
# the real FUSE mount; the sha256 of the whole served file must equal images.conf's (recorded by
# cryptsetup from real dm-crypt activations). Every other unlock method images.conf lists
# (recovery passwords, .BEK startup keys, clear key) must give the same volume key, and one
# recovery password and one startup key open through the mount too. Then refusals (wrong password,
# encrypt-on-write, partially encrypted, no valid metadata copy, truncated image), bitlkDump
# against cryptsetup's own, a write/reopen round trip (writes into metadata ranges dropped), and
# fio verify with 4 jobs on an XTS and a CBC+Elephant volume, checked again after a reopen.
source "$(dirname "$0")/lib.sh"
watchdog 500
DATA=$HERE/../data
tar -xJSf "$DATA/bitlk-images.tar.xz" -C "$T"
IMG=$T/bitlk-images
CONF=$IMG/images.conf

# conf IMAGE KEY: the value of KEY in IMAGE's section of images.conf.
conf() {
  awk -v sec="[$1]" -v key="$2" '
    /^\[/ { in_sec = ($0 == sec) }
    in_sec && index($0, key "=") == 1 { print substr($0, length(key) + 2); exit }' "$CONF"
}

# opened_sha IMAGE NAME KEYFILE: open read-only with the key file ("" = no key), hash, close.
opened_sha() {
  local img=$1 name=$2 key=$3 args=()
  [[ -n "$key" ]] && args=(--key-file "$key")
  cm_open --type bitlk --readonly "${args[@]}" "$IMG/$img.img" "$name" >/dev/null
  sha256sum "$MNT/$name" | cut -d' ' -f1
  cm close "$name" --mount-dir "$MNT"
}

checked=0
check() {  # check IMAGE METHOD KEYFILE: open through FUSE, whole-volume sha256 vs images.conf
  local img=$1 method=$2 key=$3 want got
  want=$(conf "$img" SHA256SUM)
  got=$(opened_sha "$img" "v$checked" "$key")
  [[ "$got" == "$want" ]] || fail "$img ($method): sha256 $got, images.conf says $want"
  note "$img ($method): sha256 matches"
  checked=$((checked + 1))
}
# same_key IMAGE METHOD KEYFILE: the other unlock methods of an image already hashed must give
# the same volume key (bitlkDump --dump-volume-key; the data path is then the one just checked).
keyed=0
same_key() {
  local img=$1 method=$2 key=$3 got
  got=$(cm bitlkDump --dump-volume-key -q --key-file "$key" "$IMG/$img.img" | grep -A3 'MK dump')
  [[ "$got" == "$(cat "$T/vk.$img")" ]] || fail "$img ($method): another volume key"
  note "$img ($method): same volume key"
  keyed=$((keyed + 1))
}
# unlock_method IMAGE METHOD KEYFILE: the first method of an image is hashed through the mount
# (and its volume key kept), the others compared by key.
unlock_method() {
  local img=$1 method=$2 key=$3 args=()
  if [[ ! -e "$T/vk.$img" ]]; then
    check "$img" "$method" "$key"
    [[ -n "$key" ]] && args=(--key-file "$key")
    cm bitlkDump --dump-volume-key -q "${args[@]}" "$IMG/$img.img" | grep -A3 'MK dump' > "$T/vk.$img"
  else
    same_key "$img" "$method" "$key"
  fi
}

note "refusals first (nothing may be mounted after them)"
printf 'wrong-password' > "$T/wrong"
expect_failure 2 'No key available with this passphrase' -- \
  cm_open --type bitlk --key-file "$T/wrong" "$IMG/bitlk-aes-xts-128.img" bad
expect_failure 1 "Encrypt on write" -- \
  cm_open --type bitlk --key-file "$T/wrong" "$IMG/bitlk-aes-xts-128-eow.img" bad
expect_failure 1 "partially|Encrypt on write" -- \
  cm_open --type bitlk --key-file "$T/wrong" "$IMG/bitlk-partially-encrypted-aes-cbc-128.img" bad
expect_failure 2 'No key available' -- \
  cm_open --type bitlk --key-file "$IMG/4381F759-C4F8-4DE0-BB61-FC33A831BDA5.BEK" \
  "$IMG/bitlk-aes-xts-128.img" bad
# Every metadata copy damaged: a clear error naming the metadata.
cp --sparse=always "$IMG/bitlk-aes-xts-128.img" "$T/damaged.img"
for off in 35213312 46256128 57909248; do
  printf 'XXXX' | dd of="$T/damaged.img" bs=1 seek=$((off + 200)) conv=notrunc status=none
done
printf anaconda > "$T/pw"
expect_failure 1 'BITLK metadata.*(CRC|checksum)' -- \
  cm_open --type bitlk --key-file "$T/pw" "$T/damaged.img" bad
# Cut before the last metadata copy: refused, nothing served.
cp --sparse=always "$IMG/bitlk-aes-xts-128.img" "$T/cut.img"
truncate -s 50000000 "$T/cut.img"
expect_failure 1 'BITLK' -- cm_open --type bitlk --key-file "$T/pw" "$T/cut.img" bad
expect_failure 1 'not a valid BITLK device' -- \
  cm_open --type bitlk --key-file "$T/pw" "$T/wrong" bad

note "every image, every unlock method"
for sec in $(grep -o '^\[[^]]*\]' "$CONF" | tr -d '[]'); do
  [[ -n "$(conf "$sec" SHA256SUM)" ]] || continue
  pw=$(conf "$sec" PW)
  if [[ -n "$pw" ]]; then printf '%s' "$pw" > "$T/pw.$sec"; unlock_method "$sec" password "$T/pw.$sec"; fi
  for rk in RP RP2; do
    rp=$(conf "$sec" $rk)
    if [[ -n "$rp" ]]; then printf '%s' "$rp" > "$T/$rk.$sec"; unlock_method "$sec" "$rk" "$T/$rk.$sec"; fi
  done
  sk=$(conf "$sec" SK_VMK_GUID)
  if [[ -n "$sk" ]]; then
    bek=$(ls "$IMG" | grep -i "^$sk.BEK$")
    unlock_method "$sec" "startup key $bek" "$IMG/$bek"
  fi
  [[ -n "$(conf "$sec" CLEARKEY_VMK_GUID)" ]] && unlock_method "$sec" "clear key" ""
done
(( checked >= 17 && keyed >= 18 )) || fail "only $checked images hashed, $keyed keys compared"
# A recovery password and a startup key also open through the mount, end to end.
check bitlk-aes-xts-128-two-recovery "RP2 through the mount" "$T/RP2.bitlk-aes-xts-128-two-recovery"
check bitlk-aes-xts-128-startup-key-win11 "BEK through the mount" \
  "$IMG/AA80A52B-9B66-47AE-B097-33F536FFBB07.BEK"

note "open without --type detects BitLocker; status --json says BITLK"
printf anaconda > "$T/pw"
cm_open --readonly --key-file "$T/pw" "$IMG/bitlk-aes-xts-128.img" auto >/dev/null
cm status auto --json --mount-dir "$MNT" | grep -q '"type": *"BITLK"' || fail "status --json type"
cm close auto --mount-dir "$MNT"

note "bitlkDump prints what cryptsetup prints"
for img in bitlk-aes-xts-128 bitlk-togo-aes-cbc-128 bitlk-aes-xts-128-startup-key \
           bitlk-aes-cbc-elephant-256 bitlk-aes-xts-128-4k; do
  diff <(cryptsetup bitlkDump "$IMG/$img.img") <(cm bitlkDump "$IMG/$img.img") \
    || fail "bitlkDump $img differs from cryptsetup's"
  diff <(cryptsetup bitlkDump --dump-volume-key -q --key-file "$T/pw" "$IMG/$img.img" 2>&1 || true) \
       <(cm bitlkDump --dump-volume-key -q --key-file "$T/pw" "$IMG/$img.img" 2>&1 || true) \
    || fail "bitlkDump --dump-volume-key $img differs from cryptsetup's"
done

note "read-write: data round trip, metadata ranges read zeros and ignore writes"
cp --sparse=always "$IMG/bitlk-aes-cbc-elephant-128.img" "$T/rw.img"
before=$(sha256sum "$T/rw.img" | cut -d' ' -f1)
cm_open --type bitlk --key-file "$T/pw" "$T/rw.img" rw >/dev/null
head -c 1048576 /dev/urandom > "$T/pattern"
dd if="$T/pattern" of="$MNT/rw" bs=65536 seek=$((80 * 16)) conv=notrunc,fsync status=none
# The first FVE metadata area (a zero segment in the served file) at 35213312 on this image?
fve=$(cm bitlkDump "$T/rw.img" | awk '/FVE metadata area/ {getline; print $2; exit}')
dd if="$T/pattern" of="$MNT/rw" bs=4096 count=1 seek=$((fve / 4096)) conv=notrunc,fsync status=none
cm close rw --mount-dir "$MNT"
cm bitlkDump "$T/rw.img" > /dev/null || fail "metadata damaged by a write"
[[ "$(sha256sum "$T/rw.img" | cut -d' ' -f1)" != "$before" ]] || fail "nothing was written"
cm_open --type bitlk --readonly --key-file "$T/pw" "$T/rw.img" rw >/dev/null
cmp <(dd if="$MNT/rw" bs=65536 skip=$((80 * 16)) count=16 status=none) "$T/pattern" \
  || fail "data written through the mount did not read back after reopening"
cmp <(dd if="$MNT/rw" bs=4096 skip=$((fve / 4096)) count=1 status=none) <(head -c 4096 /dev/zero) \
  || fail "a metadata range did not read zeros after a write to it"
cm close rw --mount-dir "$MNT"
note "fio verify (4 jobs) on XTS and CBC+Elephant volumes, again after reopening"
for img in bitlk-aes-xts-128 bitlk-aes-cbc-elephant-128; do
  cp --sparse=always "$IMG/$img.img" "$T/fio.img"
  first=$(cm bitlkDump "$T/fio.img" | awk '/FVE metadata area/ {getline; print $2; exit}')
  (( first >= (1 + 16) * 1048576 )) || fail "$img: metadata at $first, inside the fio regions"
  cm_open --type bitlk --key-file "$T/pw" "$T/fio.img" fio >/dev/null
  fio_verify_round "$MNT/fio" 1048576
  cm close fio --mount-dir "$MNT"
  cm_open --type bitlk --key-file "$T/pw" "$T/fio.img" fio >/dev/null
  fio_verify_round "$MNT/fio" 1048576 check
  cm close fio --mount-dir "$MNT"
done
note "OK: $checked opens matched images.conf, $keyed other unlock methods gave the same key"
