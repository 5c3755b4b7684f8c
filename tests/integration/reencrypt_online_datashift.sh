#!/usr/bin/env bash
# Online reencryption with a data shift (docs/reencrypt.md §10, §11.1, §13): an image in
# encryption with --reduce-device-size (its header inside it, the data moving behind it) or in
# cryptsetup 2.6's decryption with a data shift (the header exported, the data moving to the
# image's start) is served by `open` through the header's segments where they are, and
# `reencrypt --resume-only` of the served image is run by the daemon, each side of the boundary
# read and written at its own place.
#  1. encryption: cryptsetup's --init-only, open (the data as before, status paused at 0), fio
#     verify on the FUSE file during the whole online run; then the header has the shape
#     cryptsetup's own offline run of the same encryption leaves, fio's data verifies after a
#     reopen, and cryptsetup's decryption of the image reads what the FUSE file read (sha256);
#  2. encryption: cryptmap's --init-only, the daemon killed (-9) at a random sync of online runs,
#     reopened (open recovers the hotzone from its unshifted source) until a kill landed inside
#     a hotzone, resumed online to the end by `--encrypt --reduce-device-size` (which resumes);
#     the pattern through cryptmap and through cryptsetup's decryption;
#  3. decryption: cryptsetup's --init-only (header exported), open --header, the daemon killed at
#     a random sync, reopened, resumed online: the plaintext (sha256) as cryptsetup's own offline
#     run leaves it, the FUSE file reading it throughout, status the linear mapping at the end;
#  4. what cannot start under the daemon is refused before anything is written, naming the
#     steps that work: --encrypt --reduce-device-size of a plain served image (exit 5, image
#     unchanged). (--decrypt --header NEW-FILE of a served LUKS2 image starts online:
#     reencrypt_online_datashift_start.sh.)
source "$(dirname "$0")/lib.sh"
DATA=$((16 << 20))  # 16 MiB of data, a 512 KiB reduction: a 256 KiB shift, 64 hotzones
NO_DEFAULT_BASE=1
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240
command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"
export CRYPTMAP_IO_URING_FAIL_SETUP=1  # the daemon's syncs are syscalls strace sees
# A 256-bit key: its keyslot fits the 224 KiB keyslots area a 256 KiB shift leaves.
R=512K SHIFT=$((256 << 10)) KS=(--key-size 256)
ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")

truncate -s $((DATA + 2 * SHIFT)) "$T/base.img"
pattern_write "$T/base.img" 0 "$DATA" 7
fresh() { cp --sparse=always "$T/base.img" "$T/$1.img"; }
sum() { sha256sum < "$1" | cut -d' ' -f1; }
plain=$(head -c "$DATA" "$T/base.img" | sum /dev/stdin)  # the pattern's sha256 (faster to check)
is_plain() { [[ $(sum "$1") == "$plain" ]] || fail "$2: $1 does not read the pattern"; }
enc_init() {  # enc_init cs|cm NAME: --init-only of an encryption with a data shift
  if [[ $1 == cs ]]; then
    cryptsetup reencrypt --encrypt --reduce-device-size "$R" --init-only --batch-mode \
      --force-offline-reencrypt "${FAST[@]}" "${KS[@]}" --key-file "$K" "$T/$2.img" > /dev/null
  else
    cm reencrypt --encrypt --reduce-device-size "$R" --init-only --batch-mode "${FAST[@]}" \
      "${KS[@]}" --key-file "$K" "$T/$2.img"
  fi
}

note "1. online encryption with a data shift, fio verify during the run"
fresh a
enc_init cs a || fail "1: cryptsetup --init-only failed"
cm_open --key-file "$K" "$T/a.img" a || fail "1: open of an image in encryption with a data shift failed"
[[ $(stat -c %s "$MNT/a") == "$DATA" ]] || fail "1: the served file is $(stat -c %s "$MNT/a") bytes, not $DATA"
is_plain "$MNT/a" "1: before the run"
cm status --mount-dir "$MNT" a > "$T/status"
grep -q "reencryption: paused, 0 of $DATA bytes under the new key (old: plaintext" "$T/status" \
  || { cat "$T/status"; fail "1: status does not show the paused encryption"; }
# (a datashift's hotzones are the shift, whatever --hotzone-size: the run is short)
fio_rounds_around "$MNT/a" 0 1M "1" -- "${ONLINE[@]}" --resume-only "$T/a.img"
cm status --mount-dir "$MNT" a > "$T/status"
grep -q "reencryption" "$T/status" && { cat "$T/status"; fail "1: status still shows a reencryption"; }
[[ $(stat -c %s "$MNT/a") == "$DATA" ]] || fail "1: the served file changed size during the run"
sha_fuse=$(sum "$MNT/a")
cm_close a
cm_open --key-file "$K" "$T/a.img" a
fio_verify_round "$MNT/a" 0 check 1M
cm_close a
not_in_reencryption "$T/a.img" "1"
fresh c
cryptsetup reencrypt --encrypt --reduce-device-size "$R" --batch-mode --force-offline-reencrypt \
  "${FAST[@]}" "${KS[@]}" --key-file "$K" "$T/c.img" > /dev/null
diff <(shape "$T/c.img") <(shape "$T/a.img") || fail "1: the header differs from cryptsetup's after the same encryption"
cs_decrypt "$T/a.img" "1"
[[ $(head -c "$DATA" "$T/dec.img" | sum /dev/stdin) == "$sha_fuse" ]] \
  || fail "1: cryptsetup's decryption of the image differs from what the FUSE file read"

note "2. online encryption killed (-9) at random syncs, reopened, resumed"
fresh k
enc_init cm k || fail "2: cryptmap --init-only failed"
# Two kills at least, until one landed inside a hotzone (open then recovers it from its source).
# A hotzone syncs 5 times here (hot header 2, data 1, post header 2); about half the kills leave
# the header naming a hotzone. A kill at the 8th to 23rd sync of a run uses at most 4-5 of the
# 64 hotzones (about 320 syncs), so 12 kills never reach the end; none inside a hotzone in 12
# is about 0.6^12.
kills=0 hot=0
for cycle in $(seq 1 12); do
  cm_open --key-file "$K" "$T/k.img" k || fail "2.$cycle: open (recovery) failed"
  is_plain "$MNT/k" "2.$cycle: after the reopen"
  KILL_WHEN=$((8 + RANDOM % 16)) online_killed "2.$cycle" --resume-only "$T/k.img"
  read -r st b < <(reenc_state "$T/k.img")
  [[ $st == done ]] && fail "2.$cycle: the run finished before the kill"
  kills=$((kills + 1))
  [[ $st == hot ]] && hot=$((hot + 1))
  ((kills >= 2 && hot >= 1)) && break
done
((hot >= 1)) || fail "2: no kill of the daemon landed inside a hotzone in $kills tries"
note "2: $kills kills, $hot inside a hotzone"
cm_open --key-file "$K" "$T/k.img" k || fail "2: open (recovery) failed"
is_plain "$MNT/k" "2: after the last reopen"
# --encrypt --reduce-device-size of the served image in encryption resumes it (as cryptsetup's).
"${ONLINE[@]}" --encrypt --reduce-device-size "$R" "$T/k.img" > "$T/run.out" 2>&1 \
  || { cat "$T/run.out"; fail "2: the online resume (--encrypt --reduce-device-size) failed"; }
is_plain "$MNT/k" "2: after the online resume"
cm_close k
not_in_reencryption "$T/k.img" "2"
check_data "$T/k.img" "2"

note "3. online decryption with a data shift: cryptsetup --init-only, killed, resumed online"
PLAIN=$((DATA + SHIFT))  # the decrypted volume: the image less the shift
cp "$T/k.img" "$T/ref.img"
rm -f "$T/ref.hdr"
cryptsetup reencrypt --decrypt --header "$T/ref.hdr" --batch-mode --force-offline-reencrypt \
  --key-file "$K" "$T/ref.img" > /dev/null || fail "3: cryptsetup's own datashift decryption failed"
ref=$(head -c "$PLAIN" "$T/ref.img" | sum /dev/stdin)
cp "$T/k.img" "$T/d.img"
rm -f "$T/d.hdr"
cryptsetup reencrypt --decrypt --header "$T/d.hdr" --init-only --batch-mode \
  --force-offline-reencrypt --key-file "$K" "$T/d.img" > /dev/null || fail "3: cryptsetup --init-only failed"
cm_open --key-file "$K" --header "$T/d.hdr" "$T/d.img" d || fail "3: open of a header in datashift decryption failed"
[[ $(stat -c %s "$MNT/d") == "$PLAIN" && $(sum "$MNT/d") == "$ref" ]] || fail "3: the served data differs before the run"
online_killed "3" --resume-only --header "$T/d.hdr" "$T/d.img"
read -r st b < <(reenc_state "$T/d.hdr")
[[ $st == done ]] && fail "3: the decryption finished before the kill"
cm_open --key-file "$K" --header "$T/d.hdr" "$T/d.img" d || fail "3: open (recovery) failed"
[[ $(sum "$MNT/d") == "$ref" ]] || fail "3: the served data differs after the kill ($st at $b)"
"${ONLINE[@]}" --resume-only --header "$T/d.hdr" "$T/d.img" > "$T/run.out" 2>&1 \
  || { cat "$T/run.out"; fail "3: the online resume failed"; }
[[ $(sum "$MNT/d") == "$ref" ]] || fail "3: the served data differs after the online decryption"
cm status --mount-dir "$MNT" d > "$T/status"
grep -q "mapping: linear (decrypted)" "$T/status" \
  || { cat "$T/status"; fail "3: status does not show the linear mapping a decryption leaves"; }
cm_close d
[[ $(head -c "$PLAIN" "$T/d.img" | sum /dev/stdin) == "$ref" ]] \
  || fail "3: the image's plaintext differs from cryptsetup's own decryption"
diff <(shape "$T/ref.hdr") <(shape "$T/d.hdr") || fail "3: the finished header differs in shape from cryptsetup's"
note "3: killed $st at $b, finished online"

note "4. what cannot start under the daemon is refused, nothing written"
fresh p
before=$(sum "$T/p.img")
cm_open "$T/p.img" pl --type plain --cipher aes-xts-plain64 --key-size 256 --key-file "$K"
expect_exit 5 "encryption with a data shift .*a device nothing uses.*--init-only.*--resume-only" -- \
  cm reencrypt --encrypt --reduce-device-size "$R" --batch-mode "${FAST[@]}" --key-file "$K" \
  --mount-dir "$MNT" "$T/p.img"
cm_close pl
[[ $(sum "$T/p.img") == "$before" ]] || fail "4: a refused encryption of a served image changed it"
note "PASS"
