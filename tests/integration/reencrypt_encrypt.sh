#!/usr/bin/env bash
# reencrypt --encrypt --header against cryptsetup 2.6.1 (offline), docs/reencrypt.md §12: a plain
# device encrypted in place under a new detached LUKS2 header (data offset 0, direction forward).
#  1. cryptmap --init-only writes cryptsetup's --init-only header (same JSON shape and area) and
#     leaves the data alone; each tool's --init-only is finished by the other, the finished
#     headers have one shape;
#  2. a run of one tool stopped inside a hotzone (kill -9, resilience checksum) and finished by
#     the other, both ways;
#  3. bad input: no --header, --header with --reduce-device-size, a header file that is already LUKS: clear
#     errors, nothing changed.
# The data is checked against the pattern written into the plain device: through `cryptmap open
# --header`, by `cryptsetup open --test-passphrase` and by cryptsetup's own decryption.
source "$(dirname "$0")/lib.sh"
DATA=$((1 << 20))  # small: 32 KiB hotzones, runs of about a second
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300

truncate -s "$DATA" "$T/base.img"
pattern_write "$T/base.img" 0 "$DATA" 7
fresh() { cp "$T/base.img" "$T/$1.img"; rm -f "$T/$1.hdr"; }  # fresh NAME: plain, no header
# encrypted NAME WHAT: a plain LUKS2 header (not in reencryption) whose volume reads the pattern.
encrypted() {
  not_in_reencryption "$T/$1.hdr" "$2"
  cryptsetup open --test-passphrase --key-file "$K" --header "$T/$1.hdr" "$T/$1.img" \
    || fail "$2: cryptsetup does not accept the passphrase"
  cmp -s "$T/$1.img" "$T/base.img" && fail "$2: the data is still plaintext"
  cm_open --key-file "$K" --header "$T/$1.hdr" "$T/$1.img" chk || fail "$2: cryptmap cannot open it"
  pattern_check "$MNT/chk" 0 "$DATA" 7 || fail "$2: data differs through cryptmap open"
  cm_close chk
  cp "$T/$1.img" "$T/dec.img"; cp "$T/$1.hdr" "$T/dec.hdr"
  cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --key-file "$K" \
    --header "$T/dec.hdr" "$T/dec.img" > /dev/null || fail "$2: cryptsetup cannot decrypt it"
  pattern_check "$T/dec.img" 0 "$DATA" 7 || fail "$2: data differs after cryptsetup's decryption"
}
run_cmd() { mode_run_cmd --encrypt "$@"; }  # run_cmd TOOL NAME [OPTIONS...]: an encryption run
resume() {  # resume TOOL NAME
  if [[ $1 == cs ]]; then
    cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
      --header "$T/$2.hdr" "$T/$2.img" > /dev/null
  else
    cm reencrypt --resume-only --batch-mode --key-file "$K" --header "$T/$2.hdr" "$T/$2.img"
  fi
}

note "1. --init-only of each tool, finished by the other"
fresh a; fresh acs
run_cmd cm a --init-only; "${RUN[@]}" || fail "1: cryptmap --encrypt --init-only failed"
run_cmd cs acs --init-only; "${RUN[@]}" > /dev/null
diff <(shape "$T/acs.hdr") <(shape "$T/a.hdr") || fail "1: cryptmap's --init-only header differs in shape from cryptsetup's"
area() { cryptsetup luksDump --dump-json-metadata "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([v["area"] for v in d["keyslots"].values() if v["type"] == "reencrypt"])'; }
[[ "$(area "$T/a.hdr")" == "$(area "$T/acs.hdr")" ]] || fail "1: reencrypt keyslot areas differ: $(area "$T/a.hdr") (cryptmap), $(area "$T/acs.hdr") (cryptsetup)"
cmp -s "$T/a.img" "$T/base.img" || fail "1: --init-only touched the data"
resume cs a || fail "1: cryptsetup cannot resume cryptmap's --init-only encryption"
encrypted a "1 (cryptmap init, cryptsetup run)"
resume cm acs || fail "1: cryptmap cannot resume cryptsetup's --init-only encryption"
encrypted acs "1 (cryptsetup init, cryptmap run)"
diff <(shape "$T/acs.hdr") <(shape "$T/a.hdr") || fail "1: the finished headers differ in shape"

note "2. kill -9 inside a hotzone, the other tool resumes"
for pair in "cs cm" "cm cs"; do
  read -r first second <<< "$pair"
  fresh i
  run_cmd "$first" i --init-only; "${RUN[@]}" > /dev/null || fail "2: $first --init-only failed"
  cp "$T/i.hdr" "$T/init.hdr"
  ms=$(run_ms resume "$first" i)
  caught=0
  for try in $(seq 1 20); do
    cp "$T/base.img" "$T/c.img"; cp "$T/init.hdr" "$T/c.hdr"
    if [[ $first == cs ]]; then
      stop_at_sync KILL cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt \
        --key-file "$K" --hotzone-size 32k --header "$T/c.hdr" "$T/c.img"
    else
      stop_at_sync KILL "$CRYPTMAP" reencrypt --resume-only --batch-mode --key-file "$K" \
        --hotzone-size 32k --header "$T/c.hdr" "$T/c.img"
    fi
    hot_state "$T/c.hdr" || continue
    caught=1
    if [[ $second == cs ]]; then
      cryptsetup repair --batch-mode --key-file "$K" --header "$T/c.hdr" "$T/c.img" > /dev/null \
        || fail "2: cryptsetup cannot recover cryptmap's interrupted hotzone"
      if cryptsetup luksDump --dump-json-metadata "$T/c.hdr" | grep -q '"online-reencrypt'; then
        resume cs c || fail "2: cryptsetup cannot resume cryptmap's encryption"
      fi
    else
      resume cm c || fail "2: cryptmap cannot resume cryptsetup's interrupted encryption"
    fi
    encrypted c "2 $first->$second (try $try)"
    break
  done
  [[ $caught == 1 ]] || fail "2: never caught $first inside a hotzone"
  note "2. $first (a run of $ms ms) killed, $second finished"
done

note "3. bad input changes nothing"
fresh f
expect_failure 1 "Encryption without detached header \(--header\) is not possible" -- \
  cm reencrypt --encrypt --batch-mode --key-file "$K" "$T/f.img"
expect_failure 1 "detached header with a data shift.*not implemented" -- \
  cm reencrypt --encrypt --reduce-device-size 32M --batch-mode --key-file "$K" --header "$T/f.hdr" "$T/f.img"
cp "$T/a.hdr" "$T/f.hdr"; cp "$T/f.hdr" "$T/f.hdr.orig"
expect_failure 1 "already holds a LUKS header" -- \
  cm reencrypt --encrypt --batch-mode --key-file "$K" --header "$T/f.hdr" "$T/f.img"
cmp -s "$T/f.img" "$T/base.img" || fail "3: a refused encryption changed the data"
cmp -s "$T/f.hdr" "$T/f.hdr.orig" || fail "3: a refused encryption changed the header"
note "PASS"
