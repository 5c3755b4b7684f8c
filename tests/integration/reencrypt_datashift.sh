#!/usr/bin/env bash
# reencrypt --encrypt --reduce-device-size against cryptsetup 2.6.1 (offline), docs/reencrypt.md
# §13: a plain image gets its LUKS2 header inside it, the data shifted behind it (resilience
# datashift, direction backward, the data's first shift bytes moved to the image's end at init).
#  1. both tools' --init-only headers have one shape and area, and leave the same bytes behind
#     the header (the moved copy included); each tool finishes the other's; a whole cryptmap run;
#  2. kill -9 at a random sync of a run of each tool (each run syncs about 32 times: about 5 per
#     hotzone), finished by the other (and cryptmap's by cryptmap): no data lost; for each tool
#     a kill inside a hotzone (recovery from the unshifted source) is required;
#  3. bad input (a wrong passphrase, a size not a multiple of 512, too small for the header,
#     an image smaller than the shift, an image that is already LUKS, --header with a shift):
#     clear errors, the image unchanged (sha256);
#  4. cryptsetup 2.6's datashift decryption (--decrypt --header NEW-FILE of an image whose
#     header is inside it, requirement online-reencrypt-v3): its --init-only and a run of it
#     killed inside a hotzone are finished by cryptmap; the plaintext and the finished header as
#     cryptsetup's own run leaves them; a wrong passphrase changes nothing;
#  5. cryptmap's own datashift decryption: its --init-only header has cryptsetup's shape and
#     area and leaves the same image bytes, cryptsetup finishes it; a whole cryptmap run; bad
#     input (wrong passphrase, resilience none/datashift, journal too small for the moved part,
#     an existing non-LUKS HDR, a plain image) leaves the image unchanged and no header file.
# The data is checked against the pattern written into the plain image: through `cryptmap open`
# and by cryptsetup's own decryption (check_data).
source "$(dirname "$0")/lib.sh"
DATA=$((3 << 20))  # 3 MiB of data, a 1 MiB reduction: 512 KiB shift, 6 hotzones
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300
R=1M SHIFT=$((512 << 10))

truncate -s $((DATA + 2 * SHIFT)) "$T/base.img"
pattern_write "$T/base.img" 0 "$DATA" 7
fresh() { cp --sparse=always "$T/base.img" "$T/$1.img"; }
sum() { sha256sum < "$1"; }
# run TOOL NAME [OPTIONS...]: an encryption with a data shift of $T/NAME.img by cryptsetup (cs)
# or cryptmap (cm); RUN is the command (an array, so stop_at_sync can run it).
run_cmd() {
  local tool=$1 name=$2
  shift 2
  if [[ $tool == cs ]]; then
    RUN=(cryptsetup reencrypt --encrypt --reduce-device-size "$R" --batch-mode
      --force-offline-reencrypt "${FAST[@]}" --key-file "$K" "$@" "$T/$name.img")
  else
    RUN=("$CRYPTMAP" reencrypt --encrypt --reduce-device-size "$R" --batch-mode "${FAST[@]}"
      --key-file "$K" "$@" "$T/$name.img")
  fi
}
resume() {  # resume TOOL NAME: --resume-only (cryptsetup first repairs a crashed hotzone)
  if [[ $1 == cs ]]; then
    if hot_state "$T/$2.img"; then
      cryptsetup repair --batch-mode --key-file "$K" "$T/$2.img" > /dev/null || return 1
    fi
    cryptsetup luksDump --dump-json-metadata "$T/$2.img" | grep -q '"online-reencrypt' || return 0
    cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
      "$T/$2.img" > /dev/null
  else
    cm reencrypt --resume-only --batch-mode --key-file "$K" "$T/$2.img"
  fi
}
area() { cryptsetup luksDump --dump-json-metadata "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([v["area"] for v in d["keyslots"].values() if v["type"] == "reencrypt"])'; }
done_ok() {  # done_ok NAME WHAT: finished, the data right through both tools
  not_in_reencryption "$T/$1.img" "$2"
  check_data "$T/$1.img" "$2"
}

note "1. --init-only of each tool, finished by the other; a whole run"
fresh a; fresh acs
run_cmd cm a --init-only; "${RUN[@]}" || fail "1: cryptmap --init-only failed"
run_cmd cs acs --init-only; "${RUN[@]}" > /dev/null
diff <(shape "$T/acs.img") <(shape "$T/a.img") || fail "1: cryptmap's --init-only header differs in shape from cryptsetup's"
[[ "$(area "$T/a.img")" == "$(area "$T/acs.img")" ]] || fail "1: reencrypt keyslot areas differ: $(area "$T/a.img") (cryptmap), $(area "$T/acs.img") (cryptsetup)"
cmp -s <(tail -c +$((SHIFT + 1)) "$T/a.img") <(tail -c +$((SHIFT + 1)) "$T/acs.img") \
  || fail "1: the bytes behind the header (data in place, moved copy) differ between the tools"
cmp -s <(tail -c "$SHIFT" "$T/a.img") <(head -c "$SHIFT" "$T/base.img") \
  || fail "1: the data's first $SHIFT bytes are not at the image's end after init"
resume cs a || fail "1: cryptsetup cannot resume cryptmap's --init-only encryption"
done_ok a "1 (cryptmap init, cryptsetup run)"
resume cm acs || fail "1: cryptmap cannot resume cryptsetup's --init-only encryption"
done_ok acs "1 (cryptsetup init, cryptmap run)"
diff <(shape "$T/acs.img") <(shape "$T/a.img") || fail "1: the finished headers differ in shape"
fresh w
run_cmd cm w; "${RUN[@]}" || fail "1: a whole cryptmap run failed"
done_ok w "1 (a whole cryptmap run)"

note "2. kill -9 at a random sync of a run, resumed"
# pair FIRST SECOND WANT: FIRST's run killed at a random sync (again, up to 8 times, until the
# header is WANT: hot, or any), SECOND finishes it.
for pair in "cs cm hot" "cm cs hot" "cm cm any"; do
  read -r first second want <<< "$pair"
  fresh i
  run_cmd "$first" i --init-only; "${RUN[@]}" > /dev/null || fail "2: $first --init-only failed"
  cp "$T/i.img" "$T/init.img"
  for try in $(seq 1 8); do
    cp "$T/init.img" "$T/c.img"
    if [[ $first == cs ]]; then
      STOP_WHEN=$((1 + RANDOM % 30)) stop_at_sync KILL cryptsetup reencrypt --resume-only \
        --batch-mode --force-offline-reencrypt --key-file "$K" "$T/c.img"
    else
      STOP_WHEN=$((1 + RANDOM % 30)) stop_at_sync KILL "$CRYPTMAP" reencrypt --resume-only \
        --batch-mode --key-file "$K" "$T/c.img"
    fi
    state=$(reenc_state "$T/c.img" | awk '{print $1}')
    [[ $want == any || $state == hot ]] && break
  done
  [[ $want == any || $state == hot ]] || fail "2: no kill of $first landed inside a hotzone in 8 tries"
  # A kill after the last sync of the run leaves it finished: nothing to resume.
  [[ $state == done ]] || resume "$second" c || fail "2: $second cannot resume $first's run killed ($state)"
  done_ok c "2 $first killed ($state), $second finished"
  note "2. $first killed ($state, try $try), $second finished"
done

note "3. bad input changes nothing"
fresh p
run_cmd cs p --init-only; "${RUN[@]}" > /dev/null
before=$(sum "$T/p.img")
expect_failure 2 "No key available with this passphrase" -- \
  cm reencrypt --resume-only --batch-mode --key-file "$W" "$T/p.img"
[[ $(sum "$T/p.img") == "$before" ]] || fail "3: a wrong passphrase changed the image"
fresh f
before=$(sum "$T/f.img")
bad() {  # bad REGEX REDUCE [OPTIONS...]: refused, image unchanged
  local re=$1 reduce=$2
  shift 2
  expect_failure 1 "$re" -- cm reencrypt --encrypt --reduce-device-size "$reduce" --batch-mode \
    "${FAST[@]}" --key-file "$K" "$@" "$T/f.img"
  [[ $(sum "$T/f.img") == "$before" ]] || fail "3: a refused --reduce-device-size $reduce $* changed the image"
}
bad "Reduce size must be multiple of 512 bytes sector" 1000
bad "No space for new keyslot" 64k
bad "Device is too small" $((DATA + 2 * SHIFT))
bad "less than or equal to half of --reduce-device-size" 1M --offset 2048
bad "detached header with a data shift.*not implemented" 1M --header "$T/f.hdr"
[[ -e $T/f.hdr ]] && fail "3: a refused run created the header file"
cp "$T/base.img" "$T/l.img"
cryptsetup luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$K" "$T/l.img"
before=$(sum "$T/l.img")
expect_failure 1 "is already LUKS device. Aborting operation" -- \
  cm reencrypt --encrypt --reduce-device-size 1M --batch-mode --key-file "$K" "$T/l.img"
[[ $(sum "$T/l.img") == "$before" ]] || fail "3: a refused encryption changed the LUKS image"
# The plain image served by the daemon (open --type plain): refused before anything is written.
before=$(sum "$T/f.img")
cm_open "$T/f.img" pl --type plain --cipher aes-xts-plain64 --key-size 256 --key-file "$K"
expect_exit 5 "online encryption with a data shift .*is not implemented yet" -- \
  cm reencrypt --encrypt --reduce-device-size 1M --batch-mode "${FAST[@]}" --key-file "$K" \
  --mount-dir "$MNT" "$T/f.img"
cm_close pl
[[ $(sum "$T/f.img") == "$before" ]] || fail "3: a refused encryption of a served image changed it"
note "4. cryptsetup 2.6's datashift decryption (--decrypt --header NEW-FILE), resumed by cryptmap"
# The finished image w (header inside, data offset = shift) is decrypted: the header goes to a
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
