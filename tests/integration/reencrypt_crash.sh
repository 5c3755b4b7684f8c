#!/usr/bin/env bash
# Crash safety of `cryptmap reencrypt` (docs/reencrypt.md §6): the run is killed at random
# moments, again and again (at least 20 kills while the image is in reencryption), each time
# resumed by the next `cryptmap reencrypt`, until it finishes; then every byte of the pattern
# written before must read back through cryptmap open and through cryptsetup's own decryption.
#   checksum, journal: kill -9 (some kills must land inside a hotzone, so recovery runs);
#   none: kill -9 is not survivable by design (no resilience data, the header is written only
#         when the run stops; cryptsetup's man page says the same), so 3 cycles use SIGTERM,
#         which must stop after the current hotzone with a resumable header.
source "$(dirname "$0")/lib.sh"
DATA=$((2 << 20))  # small: the runs must be slow enough per byte (4 KiB hotzones) yet short
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300
CYCLES=20

# run_state IMAGE: "reenc" (in reencryption), "done" (segment 0 has the new 256-bit key) or
# "fresh" (still the original 512-bit key, reencryption not initialized).
run_state() {
  cryptsetup luksDump --dump-json-metadata "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "requirements" in d["config"]:
    print("reenc")
    sys.exit(0)
dig = [v for v in d["digests"].values() if "0" in v["segments"]][0]
size = d["keyslots"][dig["keyslots"][0]]["key_size"]
print("done" if size == 32 else "fresh")'
}

for res in checksum journal none; do
  sig=KILL cycles=$CYCLES
  [[ $res == none ]] && sig=TERM cycles=3
  note "$res: kill -$sig at random moments, resume, until done"
  new_image "$T/x.img"
  kills=0 hot=0 runs=0 images=1
  while :; do
    runs=$((runs + 1))
    [[ $runs -le 200 ]] || fail "$res: not finished after 200 runs"
    "$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --resilience "$res" \
      --key-size 256 --hotzone-size 4k "$T/x.img" > /dev/null 2>&1 &
    pid=$!
    if [[ $kills -lt $cycles ]]; then
      exec_wait "$pid"
      # none is several times faster (no syncs, no resilience data): kill it sooner.
      if [[ $res == none ]]; then sleep "0.$((RANDOM % 3))$((RANDOM % 10))"; else sleep "0.$((RANDOM % 5))$((RANDOM % 10))"; fi
      kill -"$sig" "$pid" 2>/dev/null || true
    fi
    set +e
    wait "$pid" 2> /dev/null
    rc=$?
    set -e
    [[ $rc == 0 || $rc == 137 || $rc == 143 || $rc == 1 ]] || fail "$res: run $runs exited $rc"
    case $(run_state "$T/x.img") in
      fresh) continue ;;  # killed before the init committed: it starts over
      done)
        [[ $kills -ge $cycles ]] && break
        # Finished before enough interruptions: check this image, go on with a fresh copy.
        not_in_reencryption "$T/x.img" "$res (image $images)"
        cm_open --key-file "$K" "$T/x.img" chk
        pattern_check "$MNT/chk" 0 "$DATA" 7 || fail "$res: data differs (image $images)"
        cm_close chk
        images=$((images + 1))
        new_image "$T/x.img"
        continue ;;
    esac
    kills=$((kills + 1))
    hot_state "$T/x.img" && hot=$((hot + 1))
    # SIGTERM must never leave a hotzone half done.
    [[ $res == none ]] && hot_state "$T/x.img" && fail "none: SIGTERM left a hotzone flagged"
  done
  note "$res: $kills interruptions in reencryption ($hot inside a hotzone), $runs runs, $images images"
  [[ $kills -ge $cycles ]] || fail "$res: only $kills interruptions landed during the reencryption"
  [[ $res == none || $hot -ge 1 ]] || fail "$res: no kill landed inside a hotzone; recovery never ran"
  not_in_reencryption "$T/x.img" "$res"
  check_data "$T/x.img" "$res after $kills interruptions"
done
note "PASS"
