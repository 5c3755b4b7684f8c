#!/usr/bin/env bash
# Interrupted reencryptions handed between cryptmap and cryptsetup 2.6.1, for the resilience
# modes checksum and journal (docs/reencrypt.md §6): cryptsetup is killed (kill -9) inside a
# hotzone and cryptmap recovers and finishes; cryptmap is killed inside a hotzone and cryptsetup
# recovers (`repair`) and finishes. Each attempt kills the run at a random one of its syncs
# (stop_at_sync: a point of the hotzone protocol, whatever the machine's speed) and is retried
# until the kill lands inside a hotzone (a segment flagged in-reencryption); the data is then
# checked through cryptmap open and by cryptsetup's own decryption (reencrypt_lib.sh).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 300
for res in checksum journal; do
  note "3. $res: cryptsetup killed inside a hotzone, cryptmap recovers and resumes"
  caught=0
  for try in $(seq 1 15); do
    new_image "$T/c.img"
    stop_at_sync KILL cryptsetup reencrypt --batch-mode --force-offline-reencrypt "${FAST[@]}" \
      --key-file "$K" --resilience "$res" --hotzone-size 32k "$T/c.img"
    hot_state "$T/c.img" || continue  # killed between hotzones, or finished: try again
    caught=1
    cm reencrypt --resume-only --batch-mode --key-file "$K" "$T/c.img" || fail "3/$res: cryptmap cannot resume"
    not_in_reencryption "$T/c.img" "3/$res"
    check_data "$T/c.img" "3/$res (try $try)"
    break
  done
  [[ $caught == 1 ]] || fail "3/$res: never caught cryptsetup inside a hotzone"

  note "3. $res: cryptmap killed inside a hotzone, cryptsetup recovers and resumes"
  caught=0
  for try in $(seq 1 15); do
    new_image "$T/d.img"
    stop_at_sync KILL "$CRYPTMAP" reencrypt --batch-mode "${FAST[@]}" --key-file "$K" \
      --resilience "$res" --hotzone-size 32k "$T/d.img"
    hot_state "$T/d.img" || continue
    caught=1
    # cryptsetup recovers an interrupted hotzone in `repair` (its --resume-only refuses a crashed
    # header: "Device requires reencryption recovery. Run repair first.").
    cryptsetup repair --batch-mode --key-file "$K" "$T/d.img" > /dev/null \
      || fail "3/$res: cryptsetup cannot recover cryptmap's interrupted hotzone"
    hot_state "$T/d.img" && fail "3/$res: cryptsetup repair left the hotzone flagged"
    # A kill inside the last hotzone: repair's recovery finishes the reencryption itself.
    if cryptsetup luksDump --dump-json-metadata "$T/d.img" | grep -q '"online-reencrypt'; then
      cryptsetup reencrypt --resume-only --batch-mode --force-offline-reencrypt --key-file "$K" "$T/d.img" > /dev/null \
        || fail "3/$res: cryptsetup cannot resume cryptmap's interrupted run"
    fi
    not_in_reencryption "$T/d.img" "3/$res cm->cs"
    check_data "$T/d.img" "3/$res cm->cs (try $try)"
    break
  done
  [[ $caught == 1 ]] || fail "3/$res: never caught cryptmap inside a hotzone"
done

note "PASS"
