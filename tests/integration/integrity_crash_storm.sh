#!/usr/bin/env bash
# LUKS2 --integrity: kill -9 of the daemon during a write storm (docs/integrity.md §5), in
# journal mode (aes-xts-random + hmac-sha256, cryptsetup's default mode) and in no-journal mode
# (aes-gcm-random + aead). Before the storm fio verify writes a region with 4 jobs, then it is
# fsynced. The storm: fio with 4 jobs of 4 KiB random writes over a second region plus 4 fsync
# writers (fsync_writer.py, one block range each, logging every block only after its fsync
# returned), all at once; at a random moment after every writer has fsynced some blocks the
# daemon is killed. Reopen (the journal is replayed): fio --verify_only of the fsynced region,
# every logged block at least as new as logged, and the whole volume reads without EIO (no
# block with a bad tag: torn in-place writes of the killed storm included). Two crashes in
# journal mode (the second after a replay), one in no-journal mode.
source "$(dirname "$0")/lib.sh"
watchdog 240
K=$(keyfile key "integrity crash storm")
MiB=$((1 << 20))
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
WRITERS=4
RANGE=256  # blocks per fsync writer (1 MiB)

# storm_round IMG NAME ROUND [open flags...]: the storm, the crash, the reopen and the checks.
storm_round() {
  local img=$1 name=$2 round=$3 fpid i w want
  shift 3
  local pids=()
  cm_open "$img" "$name" "$@"
  # Region [0, 8 MiB): written with verify headers and fsynced before the storm.
  if [[ $round == 1 ]]; then
    fio_verify_round "$MNT/$name" 0 write 2M
    python3 -c 'import os, sys; os.fsync(os.open(sys.argv[1], os.O_RDWR))' "$MNT/$name" ||
      fail "fsync of the fio region"
  fi
  # The storm: fio over [8, 16 MiB) (its own verify pass never runs: it is killed), the fsync
  # writers over [16, 20 MiB).
  (cd "$T" && exec fio --name=storm --filename="$MNT/$name" --direct=1 --ioengine=psync \
    --numjobs=4 --size=2M --offset=8M --offset_increment=2M --rw=randwrite --bs=4k \
    --time_based --runtime=60 --randseed="$round" --output-format=terse) > "$T/storm.txt" 2>&1 &
  fpid=$!
  for ((i = 0; i < WRITERS; i++)); do
    python3 "$HERE/fsync_writer.py" run "$MNT/$name" $RANGE "$T/log$i" $round \
      $((4096 + i * RANGE)) 2>/dev/null &
    pids+=($!)
  done
  # Crash once every writer has logged 10 more fsynced blocks (and fio has been writing), at a
  # random moment after that.
  for ((i = 0; i < WRITERS; i++)); do
    want=$(( $( (cat "$T/log$i" 2>/dev/null || true) | wc -l) + 10 ))
    for _ in $(seq 1 600); do
      (( $( (cat "$T/log$i" 2>/dev/null || true) | wc -l) >= want )) && break
      kill -0 "${pids[$i]}" 2>/dev/null || fail "fsync writer $i died before the crash (round $round)"
      sleep 0.1
    done
  done
  kill -0 "$fpid" 2>/dev/null || fail "fio stopped before the crash (round $round): $(tail -3 "$T/storm.txt")"
  sleep "0.$((RANDOM % 9 + 1))"
  crash_daemon
  for w in "${pids[@]}" "$fpid"; do wait "$w" 2>/dev/null || true; done
  cm_open "$img" "$name" "$@"
  fio_verify_round "$MNT/$name" 0 check 2M
  for ((i = 0; i < WRITERS; i++)); do
    python3 "$HERE/fsync_writer.py" check "$MNT/$name" $RANGE "$T/log$i" > "$T/check.txt" 2>&1 ||
      fail "round $round, writer $i: fsynced blocks lost: $(tail -3 "$T/check.txt")"
  done
  dd if="$MNT/$name" of=/dev/null bs=1M status=none ||
    fail "round $round: a block has a bad tag after the crash"
  note "round $round: $(cat "$T"/log* | wc -l) fsynced blocks logged, all intact; no bad tag"
  cm_close "$name"
}

MODES=("aes-xts-random hmac-sha256" "aes-gcm-random aead --integrity-no-journal")
for m in "${MODES[@]}"; do
  read -r cipher integ flags <<< "$m"
  mode=journal; [[ -n $flags ]] && mode=no-journal
  img=$T/$integ.img
  rm -f "$T"/log*
  truncate -s $((40 * MiB)) "$img"  # 16 MiB LUKS2 header: a ~23 MiB volume
  # The default wipe: every block gets a valid tag, so the whole read must succeed.
  cm luksFormat -q --type luks2 "${FAST[@]}" --cipher "$cipher" --integrity "$integ" "$img" "$K" \
    > /dev/null || fail "luksFormat $cipher $integ"
  rounds=2; [[ $mode == no-journal ]] && rounds=1  # journal mode: a crash after a replay too
  for ((round = 1; round <= rounds; round++)); do
    note "$cipher + $integ, $mode mode: write storm (fio 4 jobs + $WRITERS fsync writers), kill -9, round $round"
    # shellcheck disable=SC2086
    storm_round "$img" v $round --key-file "$K" $flags
  done
  rm -f "$img"
done
echo "PASS"
