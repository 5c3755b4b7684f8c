#!/usr/bin/env bash
# Online decryption and encryption under a detached header at data offset 0 (docs/reencrypt.md
# §10-§12): the device served through the header (`open --header`), one side of the boundary
# plaintext (linear), the other crypt.
#  3a. decryption: cryptsetup's --init-only, the daemon's run killed (-9) at a random sync,
#      reopened (recovery), resumed online to the end: the volume then served as a linear
#      mapping of the plaintext, `status` saying so, the header the one a finished decryption
#      leaves;
#  3b. decryption asked of the served volume (reencrypt --decrypt), killed, finished by
#      cryptsetup offline;
#  4a. encryption: cryptsetup's --init-only, the daemon's run (reencrypt --encrypt of the served
#      volume resumes it) killed, reopened, resumed online, decrypted by cryptsetup;
#  4b. cryptmap's --init-only, the online run killed, finished by cryptsetup offline.
# Data checked by the sha256 of the plaintext: the FUSE file, the plain device after a
# decryption (cryptsetup's own for an encryption).
source "$(dirname "$0")/lib.sh"
DATA=$((4 << 20))
NO_DEFAULT_BASE=1
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240
command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"
export CRYPTMAP_IO_URING_FAIL_SETUP=1  # the daemon's syncs are syscalls strace sees

ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")
detached_base
pattern_write "$T/ref" 0 "$DATA" 7
ref=$(sha256sum < "$T/ref" | cut -d' ' -f1)
sha_is() { [[ $(sha256sum < "$1" | cut -d' ' -f1) == "$ref" ]] || fail "$2: $1 does not read the plaintext"; }
cs_resume() {  # cs_resume NAME WHAT: cryptsetup recovers (repair) and finishes NAME offline
  if hot_state "$T/$1.hdr"; then
    cryptsetup repair --batch-mode --key-file "$K" --header "$T/$1.hdr" "$T/$1.img" > /dev/null \
      || fail "$2: cryptsetup repair cannot recover the daemon's interrupted hotzone"
  fi
  cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
    --header "$T/$1.hdr" "$T/$1.img" > /dev/null || fail "$2: cryptsetup cannot finish it"
}

note "3a. online decryption: cryptsetup --init-only, cryptmap online (killed, then resumed)"
detached d
cryptsetup reencrypt --decrypt --init-only --batch-mode --force-offline-reencrypt --key-file "$K" --header "$T/d.hdr" "$T/d.img"
cm_open --key-file "$K" --header "$T/d.hdr" "$T/d.img" d || fail "3a: open of a header in decryption failed"
sha_is "$MNT/d" "3a: before the run"
online_killed "3a" --resume-only --header "$T/d.hdr" --hotzone-size 16k "$T/d.img"
read -r st b < <(reenc_state "$T/d.hdr")
[[ $st == done ]] && fail "3a: the decryption finished before the kill"
cm_open --key-file "$K" --header "$T/d.hdr" "$T/d.img" d || fail "3a: open (recovery) failed"
sha_is "$MNT/d" "3a: after the kill ($st at $b)"
cm status --mount-dir "$MNT" d > "$T/status"
grep -q "reencryption: paused, .* of $DATA bytes under the new key (old: aes-xts-plain64" "$T/status" \
  || { cat "$T/status"; fail "3a: status does not show the paused decryption"; }
"${ONLINE[@]}" --resume-only --header "$T/d.hdr" "$T/d.img" > "$T/run.out" 2>&1 \
  || { cat "$T/run.out"; fail "3a: the online resume failed"; }
sha_is "$MNT/d" "3a: after the online decryption"
cm status --mount-dir "$MNT" d > "$T/status"
grep -q "type:    n/a" "$T/status" && grep -q "mapping: linear (decrypted)" "$T/status" \
  || { cat "$T/status"; fail "3a: status does not show the linear mapping a decryption leaves"; }
cm_close d
sha_is "$T/d.img" "3a: the device after the decryption"
cryptsetup luksDump --dump-json-metadata "$T/d.hdr" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert "requirements" not in d["config"] and d["keyslots"] == {}, d
assert d["segments"] == {"0": {"type": "linear", "offset": "0", "size": "dynamic"}}, d["segments"]' \
  || fail "3a: the header is not the one a finished decryption leaves"

note "3b. online decryption by cryptmap (killed), finished by cryptsetup offline"
detached e
cm_open --key-file "$K" --header "$T/e.hdr" "$T/e.img" e
online_killed "3b" --decrypt --header "$T/e.hdr" --hotzone-size 16k "$T/e.img"
cs_resume e "3b"
sha_is "$T/e.img" "3b: the device after cryptsetup finished"

note "4a. online encryption: cryptsetup --init-only, cryptmap online (killed, then resumed)"
cp "$T/ref" "$T/n.img"
cryptsetup reencrypt --encrypt --init-only --batch-mode --force-offline-reencrypt "${FAST[@]}" --key-file "$K" \
  --header "$T/n.hdr" "$T/n.img" > /dev/null
cm_open --key-file "$K" --header "$T/n.hdr" "$T/n.img" n || fail "4a: open of a header in encryption failed"
sha_is "$MNT/n" "4a: before the run"
online_killed "4a" --encrypt --header "$T/n.hdr" --hotzone-size 16k "$T/n.img"
read -r st b < <(reenc_state "$T/n.hdr")
[[ $st == done ]] && fail "4a: the encryption finished before the kill"
cm_open --key-file "$K" --header "$T/n.hdr" "$T/n.img" n || fail "4a: open (recovery) failed"
sha_is "$MNT/n" "4a: after the kill ($st at $b)"
"${ONLINE[@]}" --resume-only --header "$T/n.hdr" "$T/n.img" > "$T/run.out" 2>&1 \
  || { cat "$T/run.out"; fail "4a: the online resume failed"; }
sha_is "$MNT/n" "4a: after the online encryption"
cm status --mount-dir "$MNT" n > "$T/status"
grep -q "reencryption" "$T/status" && { cat "$T/status"; fail "4a: status still shows a reencryption"; }
cm_close n
not_in_reencryption "$T/n.hdr" "4a"
cmp -s "$T/n.img" "$T/ref" && fail "4a: the device is still plaintext"
cryptsetup reencrypt --decrypt --batch-mode --force-offline-reencrypt --key-file "$K" \
  --header "$T/n.hdr" "$T/n.img" > /dev/null || fail "4a: cryptsetup cannot decrypt the result"
sha_is "$T/n.img" "4a: cryptsetup's decryption"

note "4b. online encryption by cryptmap (killed), finished by cryptsetup offline"
cp "$T/ref" "$T/m.img"
cm reencrypt --encrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --header "$T/m.hdr" "$T/m.img"
cm_open --key-file "$K" --header "$T/m.hdr" "$T/m.img" m
online_killed "4b" --resume-only --header "$T/m.hdr" --hotzone-size 16k "$T/m.img"
cs_resume m "4b"
not_in_reencryption "$T/m.hdr" "4b"
cm_open --key-file "$K" --header "$T/m.hdr" "$T/m.img" m
sha_is "$MNT/m" "4b: cryptmap's open after cryptsetup finished"
cm_close m
note "PASS"
