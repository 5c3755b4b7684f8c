#!/usr/bin/env bash
# Online reencryption (docs/reencrypt.md §10): `cryptmap reencrypt` of an image the daemon
# serves is run by the daemon, hotzone by hotzone, while the FUSE file stays in use.
#  1. fio verify (4 jobs, crc32c, O_DIRECT) round after round on the FUSE file during the whole
#     run; the header is then cryptsetup's plain LUKS2 under the new key (luksDump), fio's data
#     verifies again after a close and reopen, and cryptsetup's own decryption of the image
#     equals what the FUSE file reads.
#  2. SIGINT of the CLI stops the run at a hotzone boundary: a paused header, the volume still
#     served and `status` showing the boundary; an online --resume-only finishes it.
# kill -9 of the daemon during online runs: reencrypt_online_kill.sh; the run's own thread, close,
# shutdown and the metadata lock: reencrypt_online_control.sh; ext4: reencrypt_online_ext4.sh.
source "$(dirname "$0")/lib.sh"
DATA=$((8 << 20))  # fio's 4 regions of 2 MiB
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240

# "${ONLINE[@]}" [options...] IMAGE: reencrypt IMAGE served in $MNT (a command, not a function,
# so that `&` gives the CLI's pid for signals).
ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")

note "1. fio verify on the FUSE file during the whole online reencryption"
new_image "$T/f.img"
cm_open --key-file "$K" "$T/f.img" f
# 4 KiB hotzones: 2048 of them, so that fio's I/O lands between many of them.
fio_rounds_around "$MNT/f" 0 2M "1" -- "${ONLINE[@]}" --key-size 256 --hotzone-size 4k "$T/f.img"
cm status --mount-dir "$MNT" f > "$T/status"
grep -q "reencryption" "$T/status" && { cat "$T/status"; fail "1: status still shows a reencryption"; }
grep -q "cipher:  aes-xts-plain64" "$T/status" && grep -q "keysize: 256 bits" "$T/status" \
  || { cat "$T/status"; fail "1: status does not show the new key"; }
not_in_reencryption "$T/f.img" "1"
cryptsetup luksDump "$T/f.img" | grep -q "Cipher key:.*256 bits" || fail "1: luksDump does not show the new 256-bit key"
fio_verify_round "$MNT/f" 0 write 2M
sha_fuse=$(sha256sum < "$MNT/f" | cut -d' ' -f1)
cm_close f
cm_open --key-file "$K" "$T/f.img" f
fio_verify_round "$MNT/f" 0 check 2M
cm_close f
cs_decrypt "$T/f.img" "1"
[[ $(sha256sum < "$T/dec.img" | cut -d' ' -f1) == "$sha_fuse" ]] \
  || fail "1: cryptsetup's decryption of the image differs from what the FUSE file read"

note "2. SIGINT of the CLI stops the online run at a hotzone boundary; an online resume finishes"
new_image "$T/s.img"
cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --key-size 256 "$T/s.img"
cm_open --key-file "$K" "$T/s.img" s
"${ONLINE[@]}" --resume-only --hotzone-size 4k "$T/s.img" > "$T/int.out" 2>&1 &
pid=$!
# SIGINT once the first hotzone is done (the boundary moved, so the CLI has sent its request and
# installed its handler: before that a background job ignores SIGINT); repeated until it exits.
for _ in $(seq 1 400); do
  [[ $(NOLOCK=1 boundary "$T/s.img" 2> /dev/null) -gt 0 ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
while kill -INT "$pid" 2>/dev/null; do sleep 0.2; done
set +e
wait "$pid"
rc=$?
set -e
[[ $rc -eq 0 ]] && fail "2: the run finished before SIGINT; make it slower"
[[ $rc -eq 1 ]] || { cat "$T/int.out"; fail "2: exit $rc after SIGINT, expected 1"; }
grep -q "was interrupted" "$T/int.out" || { cat "$T/int.out"; fail "2: no 'interrupted' message"; }
paused_served "$T/s.img" s "2: after SIGINT"
pattern_check "$MNT/s" 0 "$DATA" 7 || fail "2: data differs after the interrupted run"
"${ONLINE[@]}" --resume-only --hotzone-size 1m "$T/s.img" > /dev/null \
  || fail "2: the online resume failed"
pattern_check "$MNT/s" 0 "$DATA" 7 || fail "2: data differs after the online resume"
cm_close s
not_in_reencryption "$T/s.img" "2"  # (cryptsetup's decryption is checked in 1 and 3)

note "PASS"
