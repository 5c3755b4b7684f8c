#!/usr/bin/env bash
# open of a LUKS2 image in reencryption (docs/reencrypt.md §9): an interrupted hotzone is
# recovered at open as cryptsetup recovers it at activation, then the volume is served through
# both crypt segments (new key before the boundary, old key after it), the reencryption paused.
#  1. cryptmap killed (kill -9) inside a checksum hotzone: open recovers; the pattern written
#     before reads back on both sides of the boundary; a new pattern written across it through
#     the FUSE file survives a reopen; cryptmap reencrypt --resume-only finishes;
#  2. the same with cryptsetup (journal, new cipher, key size and 512-byte sectors) killed, and
#     cryptsetup --resume-only finishing after cryptmap's open;
#  3. a wrong passphrase at open of an interrupted image changes nothing (no recovery).
# The result is checked through cryptmap open and by cryptsetup's own decryption (reencrypt_lib).
source "$(dirname "$0")/lib.sh"
DATA=$((2 << 20))  # 64 hotzones of 32 KiB: kills land inside one, the script stays short
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240

# interrupted IMAGE TOOL RESILIENCE [options...]: kills TOOL's reencryption of IMAGE inside a
# hotzone (retried until the header shows one flagged in-reencryption past the first hotzone).
interrupted() {
  local img=$1 tool=$2 res=$3 try; shift 3
  local -a run
  if [[ $tool == cryptsetup ]]; then
    run=(cryptsetup reencrypt --batch-mode --force-offline-reencrypt "${FAST[@]}" --key-file "$K" --resilience "$res" --hotzone-size 32k "$@")
  else
    run=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --resilience "$res" --hotzone-size 32k "$@")
  fi
  for try in $(seq 1 20); do
    new_image "$img"
    stop_at_sync KILL "${run[@]}" "$img"
    hot_state "$img" || continue
    local b; b=$(boundary "$img")
    ((b > 0 && b + 65536 <= DATA)) && return 0  # recovery must leave some old data after it
  done
  fail "$tool ($res) was never killed inside a hotzone after the first"
}

# served IMAGE WHAT: open recovers, both sides read the old pattern, a new one written across
# the boundary reads back after a reopen.
served() {
  local img=$1 what=$2 b
  b=$(boundary "$img")
  note "$what: killed with the hotzone at byte $b of $DATA"
  cm_open --key-file "$K" "$img" r || fail "$what: cryptmap cannot open the image in reencryption"
  paused_served "$img" r "$what: after open (recovery)"
  b=$PAUSED_AT
  cm status --json --mount-dir "$MNT" | python3 -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
assert v["reencryption"]["state"] == "paused" and v["reencryption"]["done_bytes"] == int(sys.argv[1]), v' "$b" \
    || fail "$what: status --json does not show the paused reencryption"
  pattern_check "$MNT/r" 0 "$b" 7 || fail "$what: data before the boundary differs"
  pattern_check "$MNT/r" "$b" $((DATA - b)) 7 || fail "$what: data after the boundary differs"
  pattern_write "$MNT/r" 0 "$DATA" 9
  cm_close r
  cm_open --key-file "$K" "$img" r
  pattern_check "$MNT/r" 0 "$DATA" 9 || fail "$what: data written across the boundary differs after a reopen"
  cm_close r
}

note "1. cryptmap killed inside a checksum hotzone, open, cryptmap resumes"
interrupted "$T/a.img" cryptmap checksum
cp "$T/a.img" "$T/c.img"
note "3. a wrong passphrase at open of an interrupted image changes nothing"
expect_failure 2 "No key available with this passphrase" -- cm open --mount-dir "$MNT" --key-file "$W" "$T/c.img" x
cmp -s "$T/c.img" "$T/a.img" || fail "3: a wrong passphrase changed the image"
served "$T/a.img" "1"
cm reencrypt --resume-only --batch-mode --key-file "$K" "$T/a.img" || fail "1: cryptmap cannot resume after open"
not_in_reencryption "$T/a.img" "1"
check_data "$T/a.img" "1" 9

note "2. cryptsetup killed inside a journal hotzone (new cipher, 512-byte sectors), open, cryptsetup resumes"
interrupted "$T/b.img" cryptsetup journal --cipher aes-cbc-essiv:sha256 --key-size 256 --sector-size 512
served "$T/b.img" "2"
cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" "$T/b.img" > /dev/null \
  || fail "2: cryptsetup cannot resume after cryptmap's open"
not_in_reencryption "$T/b.img" "2"
cryptsetup luksDump "$T/b.img" | grep -q "aes-cbc-essiv:sha256" || fail "2: cipher not changed"
check_data "$T/b.img" "2" 9
note "PASS"
