#!/usr/bin/env bash
# Online reencryption (docs/reencrypt.md §10): `cryptmap reencrypt` of an image the daemon
# serves is run by the daemon, hotzone by hotzone, while the FUSE file stays in use.
#  1. fio verify (4 jobs, crc32c, O_DIRECT) round after round on the FUSE file during the whole
#     run; the header is then cryptsetup's plain LUKS2 under the new key (luksDump), fio's data
#     verifies again after a close and reopen, and cryptsetup's own decryption of the image
#     equals what the FUSE file reads.
#  2. SIGINT of the CLI stops the run at a hotzone boundary: a paused header, the volume still
#     served and `status` showing the boundary; an online --resume-only finishes it.
#  3. kill -9 of the daemon at random points of online runs (journal, 4 KiB hotzones, at least
#     10 kills): each time open recovers and serves the pattern, the next online run resumes;
#     after the last kill cryptsetup (repair, then reencrypt --resume-only) finishes what the
#     daemon started;
#     the pattern then reads back through cryptmap and through cryptsetup's decryption.
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
# 4 KiB hotzones: 2048 of them, so the run outlasts several fio rounds on an idle machine too.
"${ONLINE[@]}" --key-size 256 --hotzone-size 4k "$T/f.img" > "$T/online.out" 2>&1 &
pid=$!
rounds=0
while kill -0 "$pid" 2>/dev/null; do
  fio_verify_round "$MNT/f" 0 write 2M
  rounds=$((rounds + 1))
done
wait "$pid" || { cat "$T/online.out"; fail "1: online reencryption failed"; }
((rounds >= 2)) || fail "1: only $rounds fio round(s) ran during the reencryption (too fast to test)"
note "1: $rounds fio verify rounds during the run"
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

note "3. kill -9 of the daemon during online runs, reopen (recovery), resume; cryptsetup finishes"
new_image "$T/k.img"
cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --key-size 256 \
  --resilience journal "$T/k.img"
pattern_write "$T/ref" 0 "$DATA" 7  # the plaintext, for a quick cmp after each recovery
# A kill that lands after the run ended does not count: the next cycle starts a new run (a new
# volume key), so 10 kills inside runs are made whatever this machine's speed.
kills=0 hot=0 cycle=0
while ((kills < 10)); do
  cycle=$((cycle + 1))
  ((cycle <= 40)) || fail "3: only $kills of 40 kills landed inside a run; make it slower"
  cm_open --key-file "$K" "$T/k.img" k || fail "3: cycle $cycle: open (recovery) failed"
  cmp -s "$MNT/k" "$T/ref" || fail "3: cycle $cycle: data differs after recovery"
  "${ONLINE[@]}" --resume-only --hotzone-size 4k "$T/k.img" > /dev/null 2>&1 &
  pid=$!
  sleep 0.6  # the CLI and the daemon's start (keys, the swap) take about that
  sleep "0.$((RANDOM % 6))$((RANDOM % 10))"
  crash_daemon
  wait "$pid" 2>/dev/null || true
  read -r st b < <(reenc_state "$T/k.img")
  if [[ $st == done ]]; then
    cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --resilience journal \
      "$T/k.img" || fail "3: cycle $cycle: a new run cannot start"
    continue
  fi
  kills=$((kills + 1))
  [[ $st == hot ]] && hot=$((hot + 1))
done
note "3: $kills kills in $cycle cycles, $hot inside a hotzone, boundary $b of $DATA"
# cryptsetup recovers an interrupted hotzone in `repair` (its --resume-only refuses a crashed
# header: "Device requires reencryption recovery. Run repair first.").
if [[ $st == hot ]]; then
  cryptsetup repair --batch-mode --key-file "$K" "$T/k.img" > /dev/null \
    || fail "3: cryptsetup repair cannot recover the daemon's interrupted hotzone"
fi
cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
  "$T/k.img" > /dev/null || fail "3: cryptsetup cannot finish what the daemon started"
not_in_reencryption "$T/k.img" "3"
check_data "$T/k.img" "3"
note "PASS"
