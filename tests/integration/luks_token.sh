#!/usr/bin/env bash
# token import|export|remove|add against cryptsetup 2.6.1 (docs/formats.md §2.7): each change is
# made by cryptsetup on one copy of a LUKS2 image and by cryptmap on another, and the two images
# must be byte-identical (the token JSON as json-c writes it, seqid, checksums); tokens written
# by either tool export byte-for-byte identically from both; cryptsetup's refusals with its exit
# codes and words, the image untouched; --token-only / --token-id on open and luksDump refused
# or passed over as documented (cryptmap has no token handlers).
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "token-zero")
K1=$(keyfile key1 "token-one")
img=$T/a.img
truncate -s 20M "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img" "$K1"

# Tokens as systemd-cryptenroll writes them (valid for systemd 252's cryptsetup plugins, which
# cryptsetup loads to validate them), and one of an unknown type with what json-c serializes
# with care: "/" (not escaped), UTF-8 and \u escapes, control characters, nesting, big and
# negative integers, empty containers, null.
cat > "$T/tpm2.json" <<'J'
{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"FQCPS06E1d3gJguquVbJ66XAn8upik5XzPsj+Ty7HSV/0BVKGp1v2/AYyIOn9pliEU1mWxjr2uj7d4nonywgCS1xFkK3JrBEAWJ8qfusMvXIUw+xkDzE2wIlhxeSGkiB","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"823412d1eacb67956220e532959f0104603057c88704863ca38e7cd188fda812","tpm2-pin":false}
J
cat > "$T/fido2.json" <<'J'
  {"type":"systemd-fido2","keyslots":["0"],"fido2-credential":"VdkaNWFoSzLfXlig2RlouTeYr0+SS7o4PhyYYl7AyDQ=","fido2-salt":"Y0ea1poJCyWCd+yPum+ZQZov+ySJgVEGV8lEzNEUjpc=","fido2-rp":"io.systemd.cryptsetup","fido2-clientPin-required":true,"fido2-up-required":true,"fido2-uv-required":false}

J
cat > "$T/odd.json" <<'J'
{"type":"x-test","keyslots":[],"path":"a/b\/c","u":"\u00e9t\u00e9 \ud83d\ude00","ctl":"\u0001\t\n\"\\","deep":{"a":[{"b":[[]]},{}],"n":null},"big":18446744073709551615,"neg":-42,"t":true}
J

# same ARGS...: cryptsetup ARGS on one copy, cryptmap ARGS on another; both must succeed and
# leave byte-identical images, and the image must have changed.
same() {
  cp "$img" "$T/cs.img"
  cp "$img" "$T/cm.img"
  cryptsetup "$@" "$T/cs.img" < "${STDIN:-/dev/null}" || fail "cryptsetup $* failed"
  cm "$@" "$T/cm.img" < "${STDIN:-/dev/null}" || fail "cryptmap $* failed"
  if ! cmp -s "$T/cs.img" "$T/cm.img"; then
    cmp -l "$T/cs.img" "$T/cm.img" | head -n 20
    diff <(cryptsetup luksDump --dump-json-metadata "$T/cs.img") \
         <(cryptsetup luksDump --dump-json-metadata "$T/cm.img") || true
    fail "$*: cryptmap's image differs from cryptsetup's"
  fi
  cmp -s "$T/cm.img" "$img" && fail "$* changed nothing"
  cp "$T/cm.img" "$img"
  note "$*: byte-identical to cryptsetup"
}
same token import --json-file "$T/tpm2.json"
STDIN=$T/fido2.json same token import --token-id 5       # stdin, whitespace around it
same token import --json-file "$T/odd.json" --key-slot 0  # import, then assign: two writes
same token import --json-file "$T/odd.json" --token-id 5 --token-replace
same token remove --token-id 1
# token add: the built-in luks2-keyring token; without --key-slot assigned to every keyslot
same token add --key-description "cryptsetup:vault key"
same token add --key-description 'cs:/é x' --key-slot 1 --token-id 9
same token add --key-description "cryptsetup:other" --token-id 9 --token-replace

note "export: both tools print the same bytes for every token, tokens from either tool"
for id in 0 1 5 9; do
  cryptsetup token export --token-id "$id" "$img" > "$T/cs.out"
  cm token export --token-id "$id" "$img" > "$T/cm.out"
  cmp "$T/cs.out" "$T/cm.out" || fail "token $id exports differently"
  cm token export --token-id "$id" --json-file "$T/cm.file" "$img"
  cmp "$T/cs.out" "$T/cm.file" || fail "token $id: --json-file differs from stdout"
done
cryptsetup token export --token-id 0 "$img" | cmp - <(tr -d '\n' < "$T/tpm2.json") ||
  fail "the systemd-tpm2 token is not byte-intact"
grep -q '"path":"a/b/c","u":"été 😀","ctl":"\\u0001\\t\\n\\"\\\\"' <(cm token export --token-id 5 "$img") ||
  fail "odd token not serialized as json-c does: $(cm token export --token-id 5 "$img")"
# a token cryptmap wrote, exported by cryptsetup, re-imported by cryptmap: a fixed point
cm token export --token-id 5 "$img" | cm token import --token-id 7 "$img"
cmp <(cryptsetup token export --token-id 5 "$img") <(cryptsetup token export --token-id 7 "$img") ||
  fail "export/import round trip changed the token"
cryptsetup open --test-passphrase --key-file "$K1" "$img" || fail "slot 1 no longer opens"
diff <(cryptsetup luksDump --disable-external-tokens "$img") <(cm luksDump "$img") ||
  fail "luksDump differs from cryptsetup's"

note "refusals: cryptsetup's exit codes and words, the image untouched"
sum=$(sha256sum < "$img")
both() {  # both EXIT REGEX ARGS...: cryptsetup and cryptmap fail alike; cryptmap says REGEX
  local want=$1 re=$2; shift 2
  cp "$img" "$T/csr.img"
  set +e; cryptsetup "$@" "$T/csr.img" < "${STDIN:-/dev/null}" > /dev/null 2>&1; local rc=$?; set -e
  [[ $rc == "$want" ]] || fail "cryptsetup $* exited $rc, expected $want (test assumption)"
  expect_exit "$want" "$re" -- cm "$@" "$img" < "${STDIN:-/dev/null}"
  [[ $(sha256sum < "$img") == "$sum" ]] || fail "a refused '$*' changed the image"
}
both 1 "^Token 0 in use.$" token import --json-file "$T/odd.json" --token-id 0
both 1 "^Token 3 is not in use.$" token remove --token-id 3
both 1 "^Token 32 is invalid.$" token remove --token-id 32
both 1 "^Keyslot 4 is not active.$" token import --json-file "$T/odd.json" --key-slot 4
both 1 "^Failed to get token 3 for export.$" token export --token-id 3
both 1 "^Action requires specific token. Use --token-id parameter.$" token remove
both 1 "^--key-description parameter is mandatory for token add action.$" token add
bad() {  # bad REGEX JSON: refused by both tools as an import
  printf '%s' "$2" > "$T/bad.json"
  STDIN=$T/bad.json both 1 "^Failed to import token from file: .*$1" token import
}
bad "one JSON object" '["not","an","object"]'
bad "one JSON object" '{"type":"x","keyslots":[]'
bad "non-empty string" '{"keyslots":[]}'
bad "non-empty string" '{"type":7,"keyslots":[]}'
bad "existing keyslots" '{"type":"x","keyslots":["9"]}'
bad "existing keyslots" '{"type":"x","keyslots":[0]}'
bad "existing keyslots" '{"type":"x"}'
bad "reserved for built-in" '{"type":"luks2-other","keyslots":[]}'
bad "key_description" '{"type":"luks2-keyring","keyslots":[]}'
both 1 "^Token 9 in use.$" token add --key-description "cryptsetup:x" --token-id 9
both 1 "^Failed to add luks2-keyring token 3.$" token add --key-description 'cs:"q"' --token-id 3
both 1 "^Failed to add luks2-keyring token -1.$" token add --key-description 'cs:\u'
both 1 "^Keyslot 4 is not active.$" token add --key-description "cryptsetup:x" --key-slot 4

note "the 32-token limit"
cp "$img" "$T/full.img"
for i in $(seq 0 31); do
  printf '{"type":"x","keyslots":[]}' | cm token import --token-id "$i" --token-replace "$T/full.img"
done
printf '{"type":"x","keyslots":[]}' > "$T/one.json"
set +e; cryptsetup token import --json-file "$T/one.json" "$T/full.img" 2>/dev/null; rc=$?; set -e
[[ $rc == 1 ]] || fail "cryptsetup accepted a 33rd token (rc $rc)"
expect_exit 1 "all 32 token ids are in use" -- cm token import --json-file "$T/one.json" "$T/full.img"

note "LUKS1 has no tokens"
l1=$T/l1.img
truncate -s 20M "$l1"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$l1"
expect_exit 1 "is not a valid LUKS2 device." -- cm token import --json-file "$T/one.json" "$l1"

note "--token-only refused, --token-id passed over for a passphrase"
expect_exit 1 "^No usable token is available.$" -- cm open --test-passphrase --token-only "$img"
grep -q "Token 0 (systemd-tpm2).*cryptmap has none" "$T/out" || fail "no reason given: $(cat "$T/out")"
expect_exit 1 "^No usable token is available.$" -- cm open --test-passphrase --token-only --token-type nope "$img"
grep -q "no token matching" "$T/out" || fail "no reason given: $(cat "$T/out")"
expect_exit 1 "^No usable token is available.$" -- cm luksDump -q --dump-volume-key --token-only "$img"
sum=$(sha256sum < "$img")
expect_exit 1 "^No usable token is available.$" -- cm luksAddKey --token-only "$img" "$K1"
[[ $(sha256sum < "$img") == "$sum" ]] || fail "a refused luksAddKey --token-only changed the image"
cm open --test-passphrase --token-id 5 --key-file "$K" "$img" 2> "$T/err" || fail "--token-id with a key file failed"
grep -q "Token 5 (x-test).*Asking for a passphrase instead" "$T/err" || fail "no note: $(cat "$T/err")"
cm open --test-passphrase --key-file "$K" "$img" 2> "$T/err"
[[ ! -s "$T/err" ]] || fail "open without token options talks about tokens: $(cat "$T/err")"
echo "PASS"
