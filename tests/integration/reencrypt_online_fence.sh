#!/usr/bin/env bash
# A failed online reencryption step whose hotzone cannot be recovered (docs/reencrypt.md §10):
# the image's syncs fail with EIO from a random one on (strace's fault injection on the daemon,
# store I/O through the pread/pwrite loop), so the step fails after its hotzone was committed and
# its recovery fails too: the hotzone is fenced. Then:
#  - the hotzone's sectors fail with EIO through the FUSE file, the rest reads the pattern;
#  - luksSuspend, refresh and another reencrypt of the volume are refused, naming the fence and
#    what to do (a suspend/resume would rebuild the volume from its spec and serve the
#    half-converted hotzone with one key: wrong data instead of EIO);
#  - close, open (which recovers the hotzone from the header) and an online resume finish the
#    reencryption, and every byte reads back through cryptmap and cryptsetup's own decryption.
source "$(dirname "$0")/lib.sh"
DATA=$((4 << 20))
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 200
command -v strace > /dev/null || fail "strace is needed (apt-get install strace)"
export CRYPTMAP_IO_URING_FAIL_SETUP=1  # the daemon's store syncs are syscalls strace sees

ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")

fenced_at=
for try in $(seq 1 12); do
  new_image "$T/f.img"
  cm_open --key-file "$K" "$T/f.img" f
  pid=$(daemon_pid)
  [[ -n $pid ]] || fail "no daemon for $MNT"
  # Every sync from the Nth on fails: N lands in the first hotzones (each syncs several times).
  strace -qq -f -p "$pid" -o /dev/null -e trace=fsync,fdatasync \
    -e inject=fsync,fdatasync:error=EIO:when=$((6 + RANDOM % 16))+ &
  spid=$!
  sleep 1  # attached to every thread
  "${ONLINE[@]}" --hotzone-size 64k "$T/f.img" > "$T/run.out" 2>&1 && fail "the run succeeded with failing syncs"
  kill -INT "$spid"
  wait "$spid" 2> /dev/null || true
  fenced_at=$(sed -n 's/.*The hotzone at \([0-9]*\) could not be recovered.*/\1/p' "$T/run.out")
  [[ -n $fenced_at ]] && break
  sed "s/^/  (try $try) /" "$T/run.out"
  cm_close f
done
[[ -n $fenced_at ]] || { cat "$T/run.out"; fail "no try left the hotzone fenced"; }
note "try $try: the hotzone at $fenced_at is fenced"

# Its 64 KiB fail with EIO, the rest serves the pattern.
dd if="$MNT/f" of=/dev/null bs=4096 skip=$((fenced_at / 4096)) count=1 iflag=direct status=none 2> "$T/dd.err" \
  && fail "a read of the fenced hotzone succeeded"
grep -q "Input/output error" "$T/dd.err" || { cat "$T/dd.err"; fail "the fenced hotzone's read did not fail with EIO"; }
if ((fenced_at > 0)); then
  pattern_check "$MNT/f" 0 "$fenced_at" 7 || fail "data before the fenced hotzone differs"
fi
after=$((fenced_at + 65536))
pattern_check "$MNT/f" "$after" $((DATA - after)) 7 || fail "data after the fenced hotzone differs"

expect_exit 1 "fenced .*close f and open it again" -- cm luksSuspend f --mount-dir "$MNT"
expect_exit 1 "fenced .*close f and open it again" -- cm refresh f --mount-dir "$MNT" --key-file "$K"
expect_exit 1 "fenced .*close f and open it again" -- "${ONLINE[@]}" --resume-only "$T/f.img"
dd if="$MNT/f" of=/dev/null bs=4096 skip=$((fenced_at / 4096)) count=1 iflag=direct status=none 2> /dev/null \
  && fail "the fenced hotzone was served after the refusals"

cm_close f
cm_open --key-file "$K" "$T/f.img" f
pattern_check "$MNT/f" 0 "$DATA" 7 || fail "data differs after the reopen recovered the hotzone"
"${ONLINE[@]}" --resume-only "$T/f.img" > "$T/resume.out" 2>&1 || { cat "$T/resume.out"; fail "the online resume failed"; }
pattern_check "$MNT/f" 0 "$DATA" 7 || fail "data differs after the online resume"
cm_close f
not_in_reencryption "$T/f.img" "fence"
check_data "$T/f.img" "fence"
note "PASS"
