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
#     clear errors, the image unchanged (sha256).
# SECTIONS (default "1 3") picks the sections: reencrypt_datashift_kill.sh runs section 2 as a
# CTest test of its own. The datashift decryption (sections 4 and 5):
# reencrypt_datashift_decrypt.sh; both online: reencrypt_online_datashift.sh. Split so that each
# script stays well under a minute on a loaded machine.
# The data is checked against the pattern written into the plain image: through `cryptmap open`
# and by cryptsetup's own decryption (check_data).
source "$(dirname "$0")/lib.sh"
SECTIONS=${SECTIONS:-1 3}
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
DATA=$((3 << 20))  # 3 MiB of data, a 1 MiB reduction: 512 KiB shift, 6 hotzones
NO_DEFAULT_BASE=1  # its own plain base image below
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

if section 1; then
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

fi
if section 2; then
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

fi
if section 3; then
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
fi
note "PASS"
