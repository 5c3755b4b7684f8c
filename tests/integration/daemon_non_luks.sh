#!/usr/bin/env bash
# Day-two verbs on volumes that are not LUKS, as cryptsetup 2.6.1 treats them:
# - luksSuspend refuses BitLocker, TCRYPT, FileVault 2 and plain volumes with "This operation is
#   supported only for LUKS device." (exit 1; lib/setup.c crypt_suspend), luksResume with
#   "NAME is not active LUKS device name or header is missing." (exit 1; src/cryptsetup.c
#   action_luksResume); the volume is neither suspended nor changed, its data still reads;
# - status prints the offset (and skipped sectors) cryptsetup reads from the dm table
#   (docs/formats.md §3.8): for BitLocker the smallest device offset of its crypt lines, worked
#   out here from cryptsetup's own bitlkDump (the volume header's offset and size); for a LUKS2
#   image in reencryption (cryptsetup reencrypt --init-only) the data offset of its segments
#   from cryptsetup's luksDump; for plain --offset/--skip those two.
source "$(dirname "$0")/lib.sh"
watchdog 200
MiB=$((1 << 20))
tar -xJSf "$HERE/../data/bitlk-images.tar.xz" -C "$T" bitlk-images/bitlk-aes-xts-128.img
tar -xJSf "$HERE/../data/fvault2-images.tar.xz" -C "$T"
tar -xJSf "$HERE/../data/tcrypt/tcrypt-images.tar.xz" -C "$T" tcrypt-images/vc_1-sha512-xts-aes
BITLK=$T/bitlk-images/bitlk-aes-xts-128.img
printf anaconda > "$T/bitlk.pw"
printf heslo123 > "$T/fvault2.pw"
plain=$T/plain.img
truncate -s 4M "$plain"

cm_open --type bitlk --readonly --key-file "$T/bitlk.pw" "$BITLK" bl
cm_open --type fvault2 --readonly --key-file "$T/fvault2.pw" "$T/fvault2-images/small" fv
printf 'aaaaaaaaaaaa\n' | cm_open --type tcrypt --hash sha512 --readonly "$T/tcrypt-images/vc_1-sha512-xts-aes" tc
printf 'plain-pass' | cm_open "$plain" pl --type plain --offset 8 --skip 24

for name in bl fv tc pl; do
  before=$(sha256sum < "$MNT/$name")
  expect_exit 1 "^This operation is supported only for LUKS device\.$" -- cm luksSuspend "$name" --mount-dir "$MNT"
  expect_exit 1 "^$name is not active LUKS device name or header is missing\.$" -- \
    cm luksResume "$name" --mount-dir "$MNT" --key-file "$T/bitlk.pw"
  cm status "$name" --mount-dir "$MNT" | grep -q "(suspended)" && fail "luksSuspend suspended $name"
  [[ $(sha256sum < "$MNT/$name") == "$before" ]] || fail "$name reads other data after the refusals"
  note "$name: luksSuspend and luksResume refused as cryptsetup refuses them"
done

# status_line NAME FIELD: the value of FIELD ("offset", "skipped") in cryptmap's status, or "".
status_line() { cm status "$1" --mount-dir "$MNT" | sed -n "s/^  $2: *\([0-9]*\) sectors\$/\1/p"; }

note "BitLocker: offset and skipped from the dm table cryptsetup would build"
cryptsetup bitlkDump "$BITLK" > "$T/bitlk.dump"
# The "Volume header" entry's Offset and Size, then the metadata areas' offsets.
read -r vh_off vh_size < <(awk '/Volume header/ { vh = 1; next }
  vh && /Offset:/ { o = $2 } vh && /Size:/ { print o, $2; exit }' "$T/bitlk.dump")
[[ -n "$vh_off" && -n "$vh_size" ]] || { cat "$T/bitlk.dump"; fail "no volume header in cryptsetup's bitlkDump"; }
grep -A1 "FVE metadata area" "$T/bitlk.dump" | grep -q "Offset: *$vh_size " &&
  fail "a metadata area starts at the volume header's size: the expected value below does not hold"
want=$(( (vh_off < vh_size ? vh_off : vh_size) / 512 ))
((want > 0)) || fail "BitLocker's first crypt line starts at 0: the check could not tell it from the old output"
[[ $(status_line bl offset) == "$want" ]] || fail "bl: status offset $(status_line bl offset), cryptsetup's would be $want: $(cm status bl --mount-dir "$MNT")"
[[ $(status_line bl skipped) == "$want" ]] || fail "bl: status skipped $(status_line bl skipped), cryptsetup's would be $want"
cm status --json --mount-dir "$MNT" | python3 -c '
import json, sys
v = {x["name"]: x for x in json.load(sys.stdin)["volumes"]}
assert v["bl"]["offset_sectors"] == int(sys.argv[1]), v["bl"]' "$want" || fail "status --json offset_sectors of bl"
note "bl: offset and skipped $want sectors (volume header at $vh_off, $vh_size bytes)"

note "plain: --offset and --skip"
[[ $(status_line pl offset) == 8 && $(status_line pl skipped) == 24 ]] || fail "pl: $(cm status pl --mount-dir "$MNT")"
cm_close bl
cm_close fv
cm_close tc
cm_close pl

note "LUKS2 in reencryption: the data offset, no skipped line"
K=$(keyfile key "reenc-pass")
img=$T/reenc.img
truncate -s $((24 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img" --offset 36864
cryptsetup reencrypt --batch-mode --init-only "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
want=$(cryptsetup luksDump --dump-json-metadata "$img" | python3 -c '
import json, sys
segs = json.load(sys.stdin)["segments"].values()
print(min(int(s["offset"]) for s in segs if s["type"] in ("crypt", "linear")
          and not any(f.startswith("backup-") for f in s.get("flags", []))) // 512)')
[[ "$want" == 36864 ]] || fail "cryptsetup's reencryption segments start at $want, not at the data offset 36864"
cm_open --key-file "$K" "$img" re
cm status re --mount-dir "$MNT" | grep -q "reencryption: paused" || fail "re is not served in reencryption: $(cm status re --mount-dir "$MNT")"
[[ $(status_line re offset) == "$want" ]] || fail "re: status offset $(status_line re offset), expected $want: $(cm status re --mount-dir "$MNT")"
[[ -z $(status_line re skipped) ]] || fail "re: a skipped line for a LUKS2 volume: $(cm status re --mount-dir "$MNT")"
cm_close re
echo "PASS"
