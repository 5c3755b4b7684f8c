#!/usr/bin/env bash
# kill -9 of the daemon at random points of online reencryption runs (docs/reencrypt.md §10;
# journal, 4 KiB hotzones, at least 20 kills that land inside a run, issue #18): each time open
# recovers the interrupted hotzone and serves the pattern, the next online run resumes; after the
# last kill cryptsetup (repair, then reencrypt --resume-only) finishes what the daemon started;
# the pattern then reads back through cryptmap and through cryptsetup's decryption.
source "$(dirname "$0")/lib.sh"
DATA=$((4 << 20))
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 240

ONLINE=("$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT")
KILLS=20

note "kill -9 of the daemon during online runs, reopen (recovery), resume; cryptsetup finishes"
new_image "$T/k.img"
cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --key-size 256 \
  --resilience journal "$T/k.img"
pattern_write "$T/ref" 0 "$DATA" 7  # the plaintext, for a quick cmp after each recovery
# A kill that lands after the run ended does not count: the next cycle starts a new run (a new
# volume key), so $KILLS kills inside runs are made whatever this machine's speed.
kills=0 hot=0 cycle=0
while ((kills < KILLS)); do
  cycle=$((cycle + 1))
  ((cycle <= 4 * KILLS)) || fail "only $kills of $((4 * KILLS)) kills landed inside a run; make it slower"
  cm_open --key-file "$K" "$T/k.img" k || fail "cycle $cycle: open (recovery) failed"
  cmp -s "$MNT/k" "$T/ref" || fail "cycle $cycle: data differs after recovery"
  "${ONLINE[@]}" --resume-only --hotzone-size 4k "$T/k.img" > /dev/null 2>&1 &
  pid=$!
  sleep 0.3  # the CLI and the daemon's start (keys, the swap) take about that: some kills land there
  sleep "0.$((RANDOM % 6))$((RANDOM % 10))"
  crash_daemon
  wait "$pid" 2>/dev/null || true
  read -r st b < <(reenc_state "$T/k.img")
  if [[ $st == done ]]; then
    cm reencrypt --init-only --batch-mode "${FAST[@]}" --key-file "$K" --resilience journal \
      "$T/k.img" || fail "cycle $cycle: a new run cannot start"
    continue
  fi
  kills=$((kills + 1))
  [[ $st == hot ]] && hot=$((hot + 1))
done
note "$kills kills in $cycle cycles, $hot inside a hotzone, boundary $b of $DATA"
# cryptsetup recovers an interrupted hotzone in `repair` (its --resume-only refuses a crashed
# header: "Device requires reencryption recovery. Run repair first.").
if [[ $st == hot ]]; then
  cryptsetup repair --batch-mode --key-file "$K" "$T/k.img" > /dev/null \
    || fail "cryptsetup repair cannot recover the daemon's interrupted hotzone"
fi
cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" \
  "$T/k.img" > /dev/null || fail "cryptsetup cannot finish what the daemon started"
not_in_reencryption "$T/k.img" "kill"
check_data "$T/k.img" "kill"
note "PASS"
