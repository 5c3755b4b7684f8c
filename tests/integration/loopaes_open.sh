#!/usr/bin/env bash
# loop-AES end to end (issue #16, docs/loopaes.md) against loop-AES's own aespipe: images it makes
# from gpg-encrypted single-key, multi-key-v2 and multi-key-v3 key files open through the real
# FUSE mount with the same plaintext; data written through the mount decrypts in aespipe and
# reads back after a reopen. Also: the independent loopaes_reference.py (the source of the unit
# KATs) agrees with aespipe; --offset/--skip, --key-size, --hash, --key-file - (a gpg --decrypt
# pipe), loopaesOpen, --readonly, status --json; a wrong key file opens and reads other data (no
# key check, as in cryptsetup); malformed key files and options are refused with the reason.
# cryptsetup cannot map loop-AES here (no device-mapper), so aespipe is the interop partner.
source "$(dirname "$0")/lib.sh"
watchdog 120
command -v aespipe > /dev/null || fail "aespipe is not installed (.ci/install-deps.sh installs it)"
REF=(python3 "$HERE/loopaes_reference.py")
MiB=1048576
export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
PW=$T/gpg-passphrase
echo "a gpg passphrase of more than twenty characters" > "$PW"

# keys NAME COUNT: COUNT random key lines of 43 base64 characters, and NAME.gpg, encrypted with
# gpg as loop-AES keeps its key files.
keys() {
  python3 -c 'import base64, os, sys
sys.stdout.write("".join(base64.b64encode(os.urandom(43)).decode()[:43] + "\n"
                         for _ in range(int(sys.argv[1]))))' "$2" > "$T/$1"
  gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$PW" --no-symkey-cache \
    --symmetric -o "$T/$1.gpg" "$T/$1"
}
keys k1 1
keys k64 64
keys k65 65
keys other65 65
head -c $((MiB / 2)) /dev/urandom > "$T/plain"
head -c $((64 * 1024)) /dev/urandom > "$T/patch"

# partner enc|dec KEYFILE BITS IV_SECTOR IN OUT [HASH]: loop-AES's aespipe (its -O is the IV
# sector of the first input sector); with a HASH other than the default, the reference.
partner() {
  local op=$1 kf=$2 bits=$3 iv=$4 in=$5 out=$6 hash=${7:-}
  if [[ -n "$hash" ]]; then
    "${REF[@]}" "$op" "$T/$kf" "$in" "$out" --key-size "$bits" --hash "$hash" --iv-sector "$iv"
    return
  fi
  local d=()
  [[ $op == dec ]] && d=(-d)
  aespipe "${d[@]}" -e "aes$bits" -K "$T/$kf.gpg" -G "$GNUPGHOME" -P "$PW" -O "$iv" < "$in" > "$out"
}

# round_trip NAME KEYFILE BITS OFFSET IV_SECTOR HASH -- OPEN...: the partner encrypts the
# plaintext (first IV sector IV_SECTOR) behind OFFSET sectors of random bytes; OPEN maps it as
# NAME; the mapped file must be the plaintext; a write through the mount must decrypt in the
# partner (the offset area untouched) and read back after close and reopen.
round_trip() {
  local name=$1 kf=$2 bits=$3 off=$4 iv=$5 hash=$6
  shift 7
  partner enc "$kf" "$bits" "$iv" "$T/plain" "$T/$name.ct" "$hash"
  head -c $((off * 512)) /dev/urandom > "$T/$name.prefix"
  cat "$T/$name.prefix" "$T/$name.ct" > "$T/$name.img"
  "$@" >/dev/null
  cmp "$MNT/$name" "$T/plain" || fail "$name: plaintext differs from the partner's"
  dd if="$T/patch" of="$MNT/$name" bs=4096 seek=37 conv=notrunc,fsync status=none
  cm_close "$name"
  cmp <(head -c $((off * 512)) "$T/$name.img") "$T/$name.prefix" || fail "$name: offset area changed"
  tail -c +$((off * 512 + 1)) "$T/$name.img" > "$T/$name.ct2"
  partner dec "$kf" "$bits" "$iv" "$T/$name.ct2" "$T/$name.dec" "$hash"
  cp "$T/plain" "$T/$name.want"
  dd if="$T/patch" of="$T/$name.want" bs=4096 seek=37 conv=notrunc status=none
  cmp "$T/$name.dec" "$T/$name.want" || fail "$name: the partner does not decrypt what cryptmap wrote"
  "$@" >/dev/null
  cmp "$MNT/$name" "$T/$name.want" || fail "$name: the write did not read back after reopen"
  cm_close "$name"
}

note "the reference (source of the unit KATs) agrees with aespipe in every mode"
for kf in k1 k64 k65; do
  partner enc "$kf" 192 130 "$T/patch" "$T/a.ct"
  "${REF[@]}" enc "$T/$kf" "$T/patch" "$T/r.ct" --key-size 192 --iv-sector 130
  cmp "$T/a.ct" "$T/r.ct" || fail "$kf: loopaes_reference.py and aespipe differ"
done

note "multi-key-v3 (65 keys), default 256-bit keys, --offset 8 (IV sectors from the image start)"
round_trip v3 k65 256 8 8 "" -- \
  cm_open --type loopaes --key-file "$T/k65" --offset 8 "$T/v3.img" v3
note "multi-key-v2 (64 keys), 192-bit keys, key file from stdin, no offset"
round_trip v2 k64 192 0 0 "" -- \
  bash -c 'cat "$1" | "$CRYPTMAP" open --mount-dir "$2" --type loopaes --key-size 192 --key-file - "$3" v2' \
  _ "$T/k64" "$MNT" "$T/v2.img"
note "single key, 128-bit, --offset 16 --skip 0, loopaesOpen"
round_trip single k1 128 16 0 "" -- \
  cm loopaesOpen --mount-dir "$MNT" --key-size 128 --offset 16 --skip 0 --key-file "$T/k1" \
  "$T/single.img" single
note "multi-key-v3 with 128-bit keys and --hash sha512 (cut to 16 bytes; partner: the reference)"
round_trip v3h k65 128 0 0 sha512 -- \
  cm_open --type loopaes --key-size 128 --hash sha512 --key-file "$T/k65" "$T/v3h.img" v3h

note "status --json, --readonly, a gpg --decrypt pipe"
gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$PW" --no-symkey-cache --armor \
  --symmetric -o "$T/k65.asc" "$T/k65"
gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$PW" --decrypt "$T/k65.gpg" |
  cm_open --type loopaes --readonly --offset 8 --key-file - "$T/v3.img" ro >/dev/null
cm status ro --json --mount-dir "$MNT" | grep -q '"type": *"LOOPAES"' || fail "status --json type"
cmp "$MNT/ro" "$T/v3.want" || fail "the gpg-piped key file reads other data"
if dd if="$T/patch" of="$MNT/ro" bs=4096 conv=notrunc status=none 2>/dev/null; then
  fail "--readonly accepted a write"
fi
cm_close ro
expect_failure 1 'GPG encrypted keyfile.*gpg --decrypt' -- \
  cm_open --type loopaes --key-file "$T/k65.asc" "$T/v3.img" bad
gpgconf --kill gpg-agent 2>/dev/null || true

note "a wrong key file opens (no key check, as cryptsetup) and reads other data"
cm_open --type loopaes --offset 8 --key-file "$T/other65" "$T/v3.img" wrong >/dev/null
if cmp -s "$MNT/wrong" "$T/v3.want"; then fail "another key file read the same plaintext"; fi
cm_close wrong

note "malformed key files and options are refused with the reason"
head -n 63 "$T/k65" > "$T/k63"
: > "$T/empty"
printf 'only-one-line-without-newline' > "$T/unterminated"
sed '5s/^./&&/' "$T/k64" > "$T/unequal"
head -c $((9 * MiB)) /dev/zero | tr '\0' 'k' > "$T/huge"
expect_failure 1 'Incompatible loop-AES keyfile detected.*63 keys; a key file holds 1, 64 or 65' -- \
  cm_open --type loopaes --key-file "$T/k63" "$T/v3.img" bad
expect_failure 1 'Incompatible loop-AES keyfile detected.*empty' -- \
  cm_open --type loopaes --key-file "$T/empty" "$T/v3.img" bad
expect_failure 1 'Incompatible loop-AES keyfile detected.*key 1 is not terminated' -- \
  cm_open --type loopaes --key-file "$T/unterminated" "$T/v3.img" bad
expect_failure 1 'Incompatible loop-AES keyfile detected.*key 5 has 44 characters, key 1 has 43' -- \
  cm_open --type loopaes --key-file "$T/unequal" "$T/v3.img" bad
expect_failure 1 'Maximum keyfile size exceeded' -- \
  cm_open --type loopaes --key-file "$T/huge" "$T/v3.img" bad
expect_failure 1 'Option --key-file is required' -- cm_open --type loopaes "$T/v3.img" bad </dev/null
expect_failure 1 'too small for --offset 4096 \(the image has 1032 sectors\)' -- \
  cm_open --type loopaes --offset 4096 --key-file "$T/k65" "$T/v3.img" bad
expect_failure 1 'loop-AES: --key-size: 512 bits; loop-AES keys are 128, 192 or 256 bits' -- \
  cm_open --type loopaes --key-size 512 --key-file "$T/k65" "$T/v3.img" bad
expect_failure 1 'loop-AES: --hash: sha1 gives 20 bytes, less than a 256-bit key' -- \
  cm_open --type loopaes --hash sha1 --key-file "$T/k65" "$T/v3.img" bad
expect_failure 1 'Option --sector-size is not supported for loop-AES' -- \
  cm_open --type loopaes --sector-size 4096 --key-file "$T/k65" "$T/v3.img" bad
note "OK"
