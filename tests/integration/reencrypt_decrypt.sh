#!/usr/bin/env bash
# reencrypt --decrypt against cryptsetup 2.6.1 (offline), docs/reencrypt.md §11: a detached
# LUKS2 header, data at offset 0, decrypted in place (direction backward), the data ending up as
# plaintext on the data device and the header left with one linear segment and no keyslots.
#  1. cryptmap --init-only writes cryptsetup's --init-only header (same JSON shape, same area),
#     cryptsetup --resume-only finishes it; the finished headers of both tools have one shape;
#  2. cryptsetup --init-only, cryptmap --resume-only finishes it (in part 1);
#  3. a run of one tool stopped inside it and finished by the other (checksum: kill -9 inside a
#     hotzone, both ways; journal: kill -9, cryptsetup then cryptmap; none: SIGTERM, the only
#     stop it survives, cryptmap then cryptsetup);
#  4. bad input: wrong passphrase, no --header, a header whose data is not at offset 0, a header
#     file that does not exist (cryptsetup's datashift decryption), a served device named with
#     another header: cryptsetup's errors, and header and data unchanged;
#  5. reencrypt --header (mode reencrypt under a detached header), decrypted by cryptsetup.
# The data is checked against the pattern written through `cryptmap open --header` before: it
# must be the plain data device itself afterwards.
source "$(dirname "$0")/lib.sh"
DATA=$((1 << 20))  # small: 32 KiB hotzones, runs of about a second
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300

detached_base  # $T/base.img under $T/base.hdr; `detached NAME` copies them
# decrypted NAME WHAT: the header is plain (one linear segment, no keyslots), the data plaintext.
decrypted() {
  cryptsetup luksDump --dump-json-metadata "$T/$1.hdr" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert "requirements" not in d["config"], d["config"]
assert d["keyslots"] == {} and d["digests"] == {}, (d["keyslots"], d["digests"])
assert d["segments"] == {"0": {"type": "linear", "offset": "0", "size": "dynamic"}}, d["segments"]' \
    || fail "$2: the header is not the one a finished decryption leaves"
  pattern_check "$T/$1.img" 0 "$DATA" 7 || fail "$2: the data device is not the plaintext"
}
cs_dec() { cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --key-file "$K" "$@" > /dev/null; }
cm_dec() { cm reencrypt --decrypt --batch-mode --key-file "$K" "$@"; }

note "1. cryptmap --init-only, cryptsetup --resume-only"
detached a; detached acs
cm_dec --init-only --header "$T/a.hdr" "$T/a.img" || fail "1: cryptmap --decrypt --init-only failed"
cs_dec --init-only --header "$T/acs.hdr" "$T/acs.img"
diff <(shape "$T/acs.hdr") <(shape "$T/a.hdr") || fail "1: cryptmap's --init-only header differs in shape from cryptsetup's"
# The area too (offset and size: the largest gap of the keyslots area).
area() { cryptsetup luksDump --dump-json-metadata "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([v["area"] for v in d["keyslots"].values() if v["type"] == "reencrypt"])'; }
[[ "$(area "$T/a.hdr")" == "$(area "$T/acs.hdr")" ]] || fail "1: reencrypt keyslot areas differ: $(area "$T/a.hdr") (cryptmap), $(area "$T/acs.hdr") (cryptsetup)"
cmp -s "$T/a.img" "$T/base.img" || fail "1: --init-only touched the data"
cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" --header "$T/a.hdr" "$T/a.img" > /dev/null \
  || fail "1: cryptsetup cannot resume cryptmap's --init-only decryption"
decrypted a "1"
cm_dec --header "$T/acs.hdr" --resume-only "$T/acs.img" || fail "1: cryptmap cannot resume cryptsetup's --init-only"
decrypted acs "1 (cryptmap)"
diff <(shape "$T/acs.hdr") <(shape "$T/a.hdr") || fail "1: the finished headers differ in shape"

run_cmd() { mode_run_cmd --decrypt "$@"; }  # run_cmd TOOL NAME [OPTIONS...]: a decryption run
# stopped_inside NAME RES: the run was caught where RES can be resumed from (a hotzone flagged
# for checksum/journal; a paused header for none).
stopped_inside() {
  local st; st=$(reenc_state "$T/$1.hdr")
  if [[ $2 == none ]]; then [[ $st == paused* ]]; else [[ $st == hot* ]]; fi
}
# A tool initializes (--init-only) and its --resume-only run (32 KiB hotzones) is stopped at a
# random one of its syncs (stop_at_sync) until the stop lands inside it; then the other tool
# finishes. Both ways for
# checksum (the default), one way each for journal and none (CI time).
for res in checksum journal none; do
  sig=KILL pairs=("cs cm" "cm cs")
  [[ $res == journal ]] && pairs=("cs cm")
  [[ $res == none ]] && sig=TERM pairs=("cm cs")
  for pair in "${pairs[@]}"; do
    read -r first second <<< "$pair"
    detached i
    run_cmd "$first" i --init-only --resilience "$res"
    "${RUN[@]}" > /dev/null || fail "3/$res: $first --init-only failed"
    cp "$T/i.hdr" "$T/init.hdr"
    run_cmd "$first" i --resume-only --hotzone-size 32k
    ms=$(run_ms "${RUN[@]}")
    decrypted i "3/$res: a whole $first run"
    note "3. $res: $first's run takes $ms ms; kill -$sig of it, $second resumes"
    caught=0
    for try in $(seq 1 20); do
      cp --sparse=always "$T/base.img" "$T/c.img"
      cp "$T/init.hdr" "$T/c.hdr"
      run_cmd "$first" c --resume-only --hotzone-size 32k
      if [[ $res == none ]]; then STOP_AT=pwrite64,pwritev2 stop_at_sync "$sig" "${RUN[@]}"
      else stop_at_sync "$sig" "${RUN[@]}"; fi
      stopped_inside c "$res" || continue
      caught=1
      if [[ $second == cm ]]; then
        cm reencrypt --resume-only --batch-mode --key-file "$K" --header "$T/c.hdr" "$T/c.img" \
          || fail "3/$res: cryptmap cannot resume cryptsetup's interrupted decryption"
      else
        # cryptsetup recovers an interrupted hotzone in `repair`, then resumes.
        if [[ $res != none ]]; then
          cryptsetup repair --batch-mode --key-file "$K" --header "$T/c.hdr" "$T/c.img" > /dev/null \
            || fail "3/$res: cryptsetup cannot recover cryptmap's interrupted hotzone"
        fi
        if cryptsetup luksDump --dump-json-metadata "$T/c.hdr" | grep -q '"online-reencrypt'; then
          cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
            --header "$T/c.hdr" "$T/c.img" > /dev/null || fail "3/$res: cryptsetup cannot resume cryptmap's run"
        fi
      fi
      decrypted c "3/$res $first->$second (try $try)"
      break
    done
    [[ $caught == 1 ]] || fail "3/$res: never caught $first inside a run"
  done
done

note "4. bad input changes nothing"
detached f
sha() { sha256sum "$T/f.img" "$T/f.hdr" "$@" | awk '{print $1}'; }
before=$(sha)
expect_failure 2 "No key available with this passphrase" -- cm reencrypt --decrypt --batch-mode --key-file "$W" --header "$T/f.hdr" "$T/f.img"
# cryptsetup's own answers to the same requests, then cryptmap's.
new_image "$T/in.img"  # the header inside, data at 16 MiB
cp "$T/in.img" "$T/in.orig"
set +e; cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --key-file "$K" "$T/in.img" > "$T/cs.out" 2>&1; cs_rc=$?; set -e
grep -q "LUKS2 decryption requires --header option." "$T/cs.out" || { cat "$T/cs.out"; fail "4: cryptsetup says something else"; }
expect_failure "$cs_rc" "LUKS2 decryption requires --header option." -- cm reencrypt --decrypt --batch-mode --key-file "$K" "$T/in.img"
# A detached copy of that header: data offset 16 MiB, not 0.
cryptsetup luksHeaderBackup --header-backup-file "$T/in.hdr" "$T/in.img"
expect_failure 1 "supported with detached header device only \(with data offset set to 0\)" -- \
  cm reencrypt --decrypt --batch-mode --key-file "$K" --header "$T/in.hdr" "$T/in.img"
cryptsetup luksDump "$T/in.hdr" | grep -q "online-reencrypt" && fail "4: a refused decryption changed the header"
expect_failure 1 "datashift decryption\) is not implemented" -- cm reencrypt --decrypt --batch-mode --key-file "$K" --header "$T/new.hdr" "$T/in.img"
[[ -e $T/new.hdr ]] && fail "4: a refused datashift decryption created the header file"
cmp -s "$T/in.img" "$T/in.orig" || fail "4: a refused decryption changed the image"
# Served through its header, the device is decrypted online (reencrypt_online_header.sh) with
# that header only: another one is refused before anything is written.
cm_open --key-file "$K" --header "$T/f.hdr" "$T/f.img" busy
cp "$T/f.hdr" "$T/other.hdr"
expect_exit 1 "open in cryptmap's daemon .* with the header .*f.hdr; reencrypt it with --header" -- cm reencrypt --decrypt --mount-dir "$MNT" --batch-mode --key-file "$K" --header "$T/other.hdr" "$T/f.img"
cm_close busy
cmp -s "$T/other.hdr" "$T/f.hdr" || fail "4: a refused decryption changed the other header"
[[ $(sha) == "$before" ]] || fail "4: a refused decryption changed the header or the data"
note "5. --header without --decrypt: cryptmap reencrypts under a detached header, cryptsetup decrypts"
detached r
cm reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --header "$T/r.hdr" --key-size 256 "$T/r.img" \
  || fail "5: reencrypt --header failed"
cryptsetup luksDump "$T/r.hdr" | grep -q "Key:        256 bits" || fail "5: key size not changed"
cs_dec --header "$T/r.hdr" "$T/r.img" || fail "5: cryptsetup cannot decrypt cryptmap's reencryption"
decrypted r "5"
note "PASS"
