#!/usr/bin/env bash
# LUKS2 --integrity under concurrent writers (docs/integrity.md §5): fio verify (4 jobs of
# 4 KiB random writes, crc32c) on a journal-mode volume (aes-xts-random + hmac-sha256,
# cryptsetup's default mode) and on a no-journal one (aes-gcm-random + aead), checked again
# after a close and reopen (the journal-mode reopen replays the journal); afterwards every
# block of each volume reads without EIO (no block left with a bad tag).
source "$(dirname "$0")/lib.sh"
watchdog 240
K=$(keyfile key "integrity fio verify")
MiB=$((1 << 20))
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)

# cipher integrity open-flags... (the mode is chosen at open, as cryptsetup's)
MODES=("aes-xts-random hmac-sha256" "aes-gcm-random aead --integrity-no-journal")
for m in "${MODES[@]}"; do
  read -r cipher integ flags <<< "$m"
  mode=journal; [[ -n $flags ]] && mode=no-journal
  note "$cipher + $integ, $mode mode: fio verify with 4 jobs, again after reopening"
  img=$T/$integ.img
  truncate -s $((48 * MiB)) "$img"
  # The default wipe: every block gets a valid tag, so a whole read below must succeed.
  cm luksFormat -q --type luks2 "${FAST[@]}" --cipher "$cipher" --integrity "$integ" "$img" "$K" \
    > /dev/null || fail "luksFormat $cipher $integ"
  # shellcheck disable=SC2086
  cm_open "$img" v --key-file "$K" $flags
  cm status --mount-dir "$MNT" --json v > "$T/st.json"
  python3 - "$T/st.json" "$mode" <<'PY' || fail "status --json: not served in $mode mode"
import json, sys
i = json.load(open(sys.argv[1]))["volumes"][0]["integrity"]
assert i["journal"] == (sys.argv[2] == "journal"), i
PY
  fio_verify_round "$MNT/v" $((4 * MiB))
  cm_close v
  # shellcheck disable=SC2086
  cm_open "$img" v --key-file "$K" $flags
  fio_verify_round "$MNT/v" $((4 * MiB)) check
  dd if="$MNT/v" of=/dev/null bs=1M status=none || fail "$mode: a block has a bad tag after fio"
  cm_close v
  rm -f "$img"
done
echo "PASS"
