#!/usr/bin/env bash
# erase / luksErase against cryptsetup, LUKS1 and LUKS2: each erases a copy of the same image;
# the headers must then be byte-identical (LUKS2: both metadata copies, checksums and seqid;
# LUKS1: the phdr) and luksDump equal; every keyslot area is overwritten; neither tool can
# unlock any more ("No usable keyslot is available."); a LUKS2 token survives with its keyslot
# list emptied, as cryptsetup leaves it; a file that is not LUKS is refused and left alone.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "erase-zero")
K1=$(keyfile key1 "erase-one")
printf '%s' '{"type":"cryptmap-test","keyslots":["0"],"opaque":"x"}' > "$T/tok.json"

for type in luks1 luks2; do
  img=$T/$type.img
  truncate -s 20M "$img"
  cryptsetup luksFormat --batch-mode --type "$type" "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
  cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img" "$K1"
  [[ $type == luks2 ]] && cryptsetup token import --token-id 3 --json-file "$T/tok.json" "$img"
  cp "$img" "$T/cs.img"
  cp "$img" "$T/cm.img"
  cryptsetup erase --batch-mode "$T/cs.img"
  cm erase --batch-mode "$T/cm.img" || fail "$type: cryptmap erase failed"
  # What must be identical: LUKS2 both 16 KiB metadata copies, LUKS1 the 592-byte phdr.
  if [[ $type == luks2 ]]; then hdr=32768; else hdr=592; fi
  cmp -s -n "$hdr" "$T/cs.img" "$T/cm.img" || { cmp -l -n "$hdr" "$T/cs.img" "$T/cm.img" | head; fail "$type: the erased header differs from cryptsetup's"; }
  diff <(cryptsetup luksDump "$T/cs.img" | tail -n +2) <(cryptsetup luksDump "$T/cm.img" | tail -n +2) || fail "$type: luksDump differs"
  diff <(cryptsetup luksDump "$T/cs.img" | tail -n +2) <(cm luksDump "$T/cm.img" | tail -n +2) || fail "$type: cryptmap's luksDump differs"
  # Every 4 KiB block of the two former keyslot areas was overwritten.
  python3 - "$img" "$T/cm.img" "$type" <<'PY' || fail "$type: keyslot material left in place"
import sys
a, b, typ = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3]
# Two 512-bit keyslots of 4000 stripes: 258048 bytes each. LUKS1: slots 0 and 1 at 4096 and 4096+258048; LUKS2: the areas cryptsetup placed at 32 KiB up.
spans = [(4096, 4096 + 2 * 258048)] if typ == "luks1" else [(32768, 32768 + 2 * 258048)]
for s, e in spans:
    same = [o for o in range(s, e, 4096) if a[o:o + 4096] == b[o:o + 4096] and any(a[o:o + 4096])]
    if same:
        print(f"{len(same)} blocks unchanged, first at {same[0]}", file=sys.stderr)
        sys.exit(1)
PY
  expect_exit 1 "No usable keyslot is available." -- cryptsetup open --test-passphrase --key-file "$K" "$T/cm.img"
  set +e
  cm open --test-passphrase "$T/cm.img" --key-file "$K1" > "$T/out" 2>&1
  rc=$?
  set -e
  [[ $rc != 0 ]] || fail "$type: cryptmap still unlocks the erased image"
  if [[ $type == luks2 ]]; then
    [[ $(cryptsetup token export --token-id 3 "$T/cm.img") == '{"type":"cryptmap-test","keyslots":[],"opaque":"x"}' ]] ||
      fail "the token was not kept byte-intact with an empty keyslot list"
  fi
  cm luksErase --batch-mode "$T/cm.img" || fail "$type: erasing an erased header failed (cryptsetup succeeds)"
  note "$type: erase byte-identical to cryptsetup's"
done

head -c 1M /dev/zero > "$T/zero.img"
expect_exit 1 "Device .*zero.img is not a valid LUKS device." -- cm erase --batch-mode "$T/zero.img"
cmp -s "$T/zero.img" <(head -c 1M /dev/zero) || fail "erase wrote to a file that is not LUKS"
echo "PASS"
