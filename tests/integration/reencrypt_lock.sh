#!/usr/bin/env bash
# cryptsetup's reencryption lock (/run/cryptsetup/LN_LUKS2-reencryption-<UUID>, docs/reencrypt.md
# §10) between cryptmap and cryptsetup 2.6.1:
#  1. a served image: cryptsetup reencrypt --force-offline-reencrypt refuses ("Reencryption
#     process is already running.", exit 5) instead of rewriting the data under the FUSE file;
#     so does cryptmap's offline reencrypt asked from another mount directory; the served data
#     is intact, and after close cryptmap finishes what cryptsetup's refused run initialized.
#  2. a cryptsetup reencrypt in progress (stopped with SIGSTOP at a data sync, outside its
#     metadata lock): cryptmap open and
#     cryptmap reencrypt refuse; once it finished, the image opens and reads the pattern.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 120
command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"

note "1. a served image is not reencrypted by another process"
new_image "$T/s.img"
cm_open --key-file "$K" "$T/s.img" s
expect_exit 5 "Reencryption process is already running" -- cryptsetup reencrypt --batch-mode \
  --force-offline-reencrypt "${FAST[@]}" --key-file "$K" "$T/s.img"
expect_exit 5 "Reencryption process is already running" -- "$CRYPTMAP" reencrypt --batch-mode \
  "${FAST[@]}" --key-file "$K" --mount-dir "$T/other-mnt" "$T/s.img"
pattern_check "$MNT/s" 0 "$DATA" 7 || fail "1: the served data changed"
cm_close s
# cryptsetup initialized the metadata before it asked for the lock (as 2.6.1 does); nothing of
# the data moved, and either tool finishes it.
if [[ $(reenc_state "$T/s.img") != done ]]; then
  cm reencrypt --resume-only --batch-mode --key-file "$K" "$T/s.img" || fail "1: cryptmap cannot finish"
fi
not_in_reencryption "$T/s.img" "1"
check_data "$T/s.img" "1"

note "2. a running cryptsetup reencrypt keeps cryptmap out"
new_image "$T/r.img"
strace -qq -f -o /dev/null -e trace=fdatasync -e inject=fdatasync:signal=STOP:when=2 \
  cryptsetup reencrypt --batch-mode --force-offline-reencrypt "${FAST[@]}" --key-file "$K" \
  --hotzone-size 64k "$T/r.img" > "$T/cs.out" 2>&1 &
spid=$!
# Stopped: its state stays t/T (a traced syscall's own stop is brief) for 5 checks in a row.
stopped=0
for _ in $(seq 1 1200); do  # up to 60 s: its PBKDF benchmark and first hotzone come first
  cs=$(pgrep -x -P "$spid" cryptsetup || true)
  if [[ -n $cs && $(awk '{print $3}' "/proc/$cs/stat" 2> /dev/null) == [tT] ]]; then
    stopped=$((stopped + 1))
    ((stopped < 5)) || break
  else
    stopped=0
  fi
  sleep 0.05
done
((stopped >= 5)) || fail "2: cryptsetup was not stopped inside its run"
expect_exit 5 "reencrypted or served in another process" -- "$CRYPTMAP" open --mount-dir "$MNT" \
  --key-file "$K" "$T/r.img" r
expect_exit 5 "Reencryption process is already running" -- "$CRYPTMAP" reencrypt --batch-mode \
  --resume-only --key-file "$K" "$T/r.img"
kill -CONT "$cs"
wait "$spid" || { cat "$T/cs.out"; fail "2: cryptsetup's run failed after SIGCONT"; }
not_in_reencryption "$T/r.img" "2"
check_data "$T/r.img" "2"
note "PASS"
