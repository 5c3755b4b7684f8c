#!/usr/bin/env bash
# Both io_uring setups failing at once (docs/async-store-io.md §4, docs/fuse-io-uring.md): the
# store's rings refused (CRYPTMAP_IO_URING_FAIL_SETUP=1) and FUSE over io_uring off
# (enable_uring=N, set here when the kernel has it, restored at exit). The open succeeds, the
# daemon's log has exactly one line for each fallback and no error, status says "dev", and the
# volume works: fio verify (4 jobs, random 4 KiB; one job of 1 MiB pieces, the batched streaming
# and write-back paths) through the fallbacks, and the data reads back after a reopen with the
# store's rings. Then, where the kernel has the switch: enable_uring=Y but the FUSE rings cannot
# be set up (CRYPTMAP_TEST_FUSE_URING_FAIL_SETUP=1: io_uring_setup fails with EPERM, as it does
# under /proc/sys/kernel/io_uring_disabled=2): `auto` serves through /dev/fuse with exactly one
# log line and no error, status --json says "dev"; `uring` is refused with the whole reason
# (and no hint about /dev/fuse after it).
source "$(dirname "$0")/lib.sh"
P=$URING_PARAM
OLD=""
if enable_uring_hold; then
  OLD=$URING_SAVED
  echo N > "$P"
fi
watchdog 120
MiB=$((1 << 20))
K=$(keyfile key "fallback passphrase")
img=$T/disk.img
truncate -s $((16 * MiB + 64 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"

count() { grep -c -- "$1" "$MNT.log" || true; }

note "both io_uring setups fail: the open succeeds with one log line each"
CRYPTMAP_IO_URING_FAIL_SETUP=1 cm_open "$img" f --key-file "$K" --log-target file
[[ $(count "io_uring unavailable (.*CRYPTMAP_IO_URING_FAIL_SETUP=1.*); store I/O runs one request at a time") == 1 ]] ||
  fail "want exactly one store fallback line; log: $(cat "$MNT.log")"
if [[ -n $OLD ]]; then
  [[ $(count "FUSE over io_uring not used: .*enable_uring is N") == 1 ]] ||
    fail "want exactly one FUSE transport fallback line; log: $(cat "$MNT.log")"
  cm status f --mount-dir "$MNT" | grep -q "fuse transport: dev" || fail "status does not say dev"
fi
[[ $(count "io_uring") == $([[ -n $OLD ]] && echo 2 || echo 1) ]] ||
  fail "more io_uring lines than the fallbacks: $(grep io_uring "$MNT.log")"
grep -qi "\[error\]\|\[critical\]" "$MNT.log" && fail "an error in the log: $(cat "$MNT.log")"

note "fio verify through the fallbacks"
fio_verify_round "$MNT/f" 0 write 8M
(cd "$T" && fio --name=seq --filename="$MNT/f" --direct=1 --ioengine=psync --offset=$((32 * MiB)) \
  --size=$((32 * MiB)) --rw=write --bs=1M --verify=crc32c --verify_fatal=1 --output-format=terse) \
  > "$T/fio-seq.txt" 2>&1 || fail "fio 1 MiB write+verify: $(tail -3 "$T/fio-seq.txt")"
cm_close f

note "reopened with the store's rings: what the fallback wrote reads back"
rm -f "$MNT.log"
cm_open "$img" f --key-file "$K" --log-target file
[[ $(count "io_uring unavailable") == 0 ]] || fail "rings refused without the variable: $(cat "$MNT.log")"
fio_verify_round "$MNT/f" 0 check 8M
cm_close f

if [[ -n $OLD ]]; then
  note "enable_uring=Y, the FUSE rings cannot be set up: /dev/fuse, one log line, no error"
  echo Y > "$P"
  rm -f "$MNT.log"
  CRYPTMAP_TEST_FUSE_URING_FAIL_SETUP=1 cm_open "$img" f --key-file "$K" --log-target file
  why="setting up io_uring failed: io_uring_setup (Operation not permitted)"  # grep's basic regex
  [[ $(count "FUSE over io_uring not used: $why; serving through /dev/fuse") == 1 ]] ||
    fail "want one FUSE fallback line naming the setup failure; log: $(cat "$MNT.log")"
  [[ $(count "io_uring") == 1 ]] || fail "more io_uring lines than the fallback: $(grep io_uring "$MNT.log")"
  grep -qi "\[error\]\|\[critical\]" "$MNT.log" && fail "an error in the log: $(cat "$MNT.log")"
  json=$(cm status f --json --mount-dir "$MNT" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["fuse_transport"])')
  [[ $json == dev ]] || fail "status --json says '$json' after the fallback"
  fio_verify_round "$MNT/f" 0 check 8M
  cm_close f
  for _ in $(seq 1 50); do [[ -z $(daemon_pid) ]] && break; sleep 0.1; done
  note "--fuse-transport=uring when the rings cannot be set up: refused, the reason whole"
  expect_failure 1 "io_uring_setup \(Operation not permitted\); use --fuse-transport=dev \(or auto\)\.$" -- \
    env CRYPTMAP_TEST_FUSE_URING_FAIL_SETUP=1 "$CRYPTMAP" open "$img" f --key-file "$K" \
    --mount-dir "$MNT" --fuse-transport=uring
fi
echo "PASS"
