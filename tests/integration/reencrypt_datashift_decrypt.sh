#!/usr/bin/env bash
# cryptsetup 2.6's decryption with a data shift (`reencrypt --decrypt --header NEW-FILE IMAGE` of
# an image whose LUKS2 header is inside it: the header exported to NEW-FILE, the data moved to
# the image's start, requirement online-reencrypt-v3), offline, against cryptsetup 2.6.1
# (docs/reencrypt.md §11.1). The image is one cryptmap encrypted with --reduce-device-size
# (reencrypt_datashift.sh, split from it to keep each script short).
#  4. cryptsetup's --init-only and a run of it killed inside a hotzone (a forward one, and the
#     moved part) are finished by cryptmap; the plaintext and the finished header as
#     cryptsetup's own run leaves them; a wrong passphrase changes nothing;
#  5. cryptmap's own datashift decryption: its --init-only header has cryptsetup's shape and
#     area and leaves the same image bytes, cryptsetup finishes it; a whole cryptmap run; bad
#     input (wrong passphrase, resilience none/datashift, journal too small for the moved part,
#     an existing non-LUKS HDR, a plain image) leaves the image unchanged and no header file.
# Online: reencrypt_online_datashift.sh.
source "$(dirname "$0")/lib.sh"
DATA=$((3 << 20))  # 3 MiB of data, a 1 MiB reduction: 512 KiB shift
NO_DEFAULT_BASE=1
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300
R=1M SHIFT=$((512 << 10))

truncate -s $((DATA + 2 * SHIFT)) "$T/base.img"
pattern_write "$T/base.img" 0 "$DATA" 7
sum() { sha256sum < "$1"; }
area() { cryptsetup luksDump --dump-json-metadata "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([v["area"] for v in d["keyslots"].values() if v["type"] == "reencrypt"])'; }
# w.img: the plain image encrypted with its header inside (data offset = shift = 512 KiB).
cp --sparse=always "$T/base.img" "$T/w.img"
cm reencrypt --encrypt --reduce-device-size "$R" --batch-mode "${FAST[@]}" --key-file "$K" \
  "$T/w.img" || fail "setup: cryptmap's encryption with a data shift failed"

note "4. cryptsetup 2.6's datashift decryption (--decrypt --header NEW-FILE), resumed by cryptmap"
# The encrypted image w (header inside, data offset = shift) is decrypted: the header goes to a
# new file, the plaintext to the image's start (docs/reencrypt.md §11). Reference: cryptsetup's
# own whole run; the plaintext is the image's first size - shift bytes (the rest is wiped).
PLAIN=$((DATA + SHIFT))
dec_init() {  # dec_init NAME: $T/NAME.img (a copy of w), cryptsetup --init-only into NAME.hdr
  cp "$T/w.img" "$T/$1.img"
  rm -f "$T/$1.hdr"
  cryptsetup reencrypt --decrypt --header "$T/$1.hdr" --batch-mode --force-offline-reencrypt \
    --key-file "$K" --init-only "$T/$1.img" > /dev/null || fail "4: cryptsetup --init-only failed"
}
dec_ok() {  # dec_ok NAME WHAT: finished, the plaintext as cryptsetup's own run left it
  cryptsetup luksDump --dump-json-metadata "$T/$1.hdr" | grep -q online-reencrypt \
    && fail "$2: the header is still in reencryption"
  diff <(shape "$T/ref.hdr") <(shape "$T/$1.hdr") || fail "$2: the finished header differs in shape from cryptsetup's"
  [[ $(head -c "$PLAIN" "$T/$1.img" | sha256sum) == "$(head -c "$PLAIN" "$T/ref.img" | sha256sum)" ]] \
    || fail "$2: the plaintext differs from cryptsetup's own decryption"
  pattern_check "$T/$1.img" 0 "$DATA" 7 || fail "$2: the plaintext is not the pattern"
}
cp "$T/w.img" "$T/ref.img"
rm -f "$T/ref.hdr"
cryptsetup reencrypt --decrypt --header "$T/ref.hdr" --batch-mode --force-offline-reencrypt \
  --key-file "$K" "$T/ref.img" > /dev/null || fail "4: cryptsetup's own datashift decryption failed"
pattern_check "$T/ref.img" 0 "$DATA" 7 || fail "4: cryptsetup's decryption is not the pattern"
dec_init d
cm reencrypt --resume-only --batch-mode --key-file "$K" --header "$T/d.hdr" "$T/d.img" \
  || fail "4: cryptmap cannot resume cryptsetup's --init-only datashift decryption"
dec_ok d "4 (cryptsetup init, cryptmap run)"
# cryptsetup killed at a random sync inside a hotzone, cryptmap finishes: WHERE "forward" (a
# hotzone moving the data down, recovered from its source) or "moved" (the moved first part at
# offset 0, recovered from the checksums). cryptsetup 2.6.1 syncs 5 times a hotzone here (the
# 3rd: the data, after the hot header), 6 forward hotzones, then the moved part (27th, 28th: after
# its hot header); the loop checks where each kill landed.
dec_init k
cp "$T/k.img" "$T/kinit.img"; cp "$T/k.hdr" "$T/kinit.hdr"
for where in forward moved; do
  hotat=none
  for try in $(seq 1 8); do
    cp "$T/kinit.img" "$T/k.img"; cp "$T/kinit.hdr" "$T/k.hdr"
    if [[ $where == forward ]]; then n=$((3 + 5 * (RANDOM % 5))); else n=$((27 + RANDOM % 2)); fi
    STOP_WHEN=$n stop_at_sync KILL cryptsetup reencrypt --resume-only --batch-mode \
      --force-offline-reencrypt --key-file "$K" --header "$T/k.hdr" "$T/k.img"
    read -r state at < <(reenc_state "$T/k.hdr")
    [[ $state == hot ]] || continue
    [[ $where == moved && $at == 0 || $where == forward && $at -gt 0 ]] && { hotat=$at; break; }
  done
  [[ $hotat != none ]] || fail "4: no kill of cryptsetup landed inside a $where hotzone in 8 tries"
  cm reencrypt --resume-only --batch-mode --key-file "$K" --header "$T/k.hdr" "$T/k.img" \
    || fail "4: cryptmap cannot resume cryptsetup's datashift decryption killed in the $where hotzone at $hotat"
  dec_ok k "4 (cryptsetup killed in the $where hotzone at $hotat, cryptmap finished)"
  note "4. cryptsetup killed in the $where hotzone at $hotat (sync $n, try $try), cryptmap finished"
done
# A wrong passphrase changes nothing.
dec_init p
before=$(sum "$T/p.img") hbefore=$(sum "$T/p.hdr")
expect_failure 2 "No key available with this passphrase" -- \
  cm reencrypt --resume-only --batch-mode --key-file "$W" --header "$T/p.hdr" "$T/p.img"
[[ $(sum "$T/p.img") == "$before" && $(sum "$T/p.hdr") == "$hbefore" ]] \
  || fail "4: a refused resume of the datashift decryption changed the image or header"
note "5. cryptmap's own datashift decryption: as cryptsetup's, resumed by it; bad input"
cp "$T/w.img" "$T/e.img"; rm -f "$T/e.hdr"
cm reencrypt --decrypt --header "$T/e.hdr" --batch-mode "${FAST[@]}" --key-file "$K" \
  --init-only "$T/e.img" || fail "5: cryptmap --init-only of the datashift decryption failed"
dec_init ecs
diff <(shape "$T/ecs.hdr") <(shape "$T/e.hdr") || fail "5: cryptmap's --init-only header differs in shape from cryptsetup's"
[[ "$(area "$T/e.hdr")" == "$(area "$T/ecs.hdr")" ]] || fail "5: reencrypt keyslot areas differ: $(area "$T/e.hdr") (cryptmap), $(area "$T/ecs.hdr") (cryptsetup)"
cmp -s "$T/e.img" "$T/ecs.img" || fail "5: the image after cryptmap's --init-only differs from cryptsetup's"
cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
  --header "$T/e.hdr" "$T/e.img" > /dev/null || fail "5: cryptsetup cannot resume cryptmap's --init-only"
dec_ok e "5 (cryptmap init, cryptsetup run)"
cp "$T/w.img" "$T/ew.img"; rm -f "$T/ew.hdr"
cm reencrypt --decrypt --header "$T/ew.hdr" --batch-mode "${FAST[@]}" --key-file "$K" "$T/ew.img" \
  || fail "5: a whole cryptmap datashift decryption failed"
dec_ok ew "5 (a whole cryptmap run)"
# Bad input: refused, the image unchanged, no header file left behind.
cp "$T/w.img" "$T/b.img"
before=$(sum "$T/b.img")
bad_dec() {  # bad_dec EXIT REGEX [OPTIONS...]
  local code=$1 re=$2
  shift 2
  rm -f "$T/b.hdr"
  expect_failure "$code" "$re" -- cm reencrypt --decrypt --header "$T/b.hdr" --batch-mode \
    "${FAST[@]}" "$@" "$T/b.img"
  [[ $(sum "$T/b.img") == "$before" ]] || fail "5: a refused datashift decryption ($*) changed the image"
  [[ -e $T/b.hdr ]] && fail "5: a refused datashift decryption ($*) created the header file"
  return 0
}
bad_dec 2 "No key available with this passphrase" --key-file "$W"
bad_dec 1 "Requested --resilience option cannot be applied" --key-file "$K" --resilience none
bad_dec 1 "Requested --resilience option cannot be applied" --key-file "$K" --resilience datashift
bad_dec 1 "Moved segment too large" --key-file "$K" --resilience journal
# An existing file as HDR is read as the header (a detached decryption): not LUKS, refused.
truncate -s 1M "$T/x.hdr"
expect_failure 1 "not a valid LUKS device|LUKS" -- cm reencrypt --decrypt --header "$T/x.hdr" \
  --batch-mode --key-file "$K" "$T/b.img"
[[ $(sum "$T/b.img") == "$before" ]] || fail "5: a refused decryption with an existing HDR changed the image"
# A header not at the image's start (plain data): nothing to export, refused.
cp "$T/base.img" "$T/n.img"
nbefore=$(sum "$T/n.img")
rm -f "$T/n.hdr"
expect_failure 1 "LUKS" -- cm reencrypt --decrypt --header "$T/n.hdr" --batch-mode --key-file "$K" "$T/n.img"
[[ $(sum "$T/n.img") == "$nbefore" && ! -e $T/n.hdr ]] || fail "5: a refused decryption of a plain image changed it or created the header"
note "PASS"
