#!/usr/bin/env bash
# Progress lines for long operations (`vault create`): shown on a terminal (script -qec gives
# the command a pty), silent when stderr is not a terminal and with --batch-mode, so scripts
# capture only what they asked for.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "progress passphrase")
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
create() { "$CRYPTMAP" vault create "$1" --size 40M --key-file "$K" --mount-dir "$MNT" "${FAST[@]}" "${@:2}"; }

note "not a terminal: no progress lines"
create "$T/quiet.img" > "$T/out" 2> "$T/err"
cryptsetup isLuks --type luks2 "$T/quiet.img" || fail "quiet create made no LUKS2 image"
grep -q '\[[0-9]/3\]' "$T/out" "$T/err" && fail "progress without a terminal: $(cat "$T/out" "$T/err")"
[[ ! -s "$T/err" ]] || fail "quiet create wrote to stderr: $(cat "$T/err")"

note "a terminal: one line per step, in order"
script -qec "$(printf '%q ' "$CRYPTMAP" vault create "$T/tty.img" --size 40M --key-file "$K" --mount-dir "$MNT" "${FAST[@]}")" /dev/null > "$T/tty.out"
cryptsetup isLuks --type luks2 "$T/tty.img" || fail "tty create made no LUKS2 image"
tr -d '\r' < "$T/tty.out" > "$T/tty.txt"
grep -n '^\[[0-9]/3\]' "$T/tty.txt" | cut -d: -f2 | cut -c1-5 | tr '\n' ' ' > "$T/steps"
[[ $(cat "$T/steps") == "[1/3] [2/3] [3/3] " ]] || fail "steps on a terminal: $(cat "$T/tty.txt")"
grep -q "^\[1/3\] Formatting $T/tty.img as LUKS2" "$T/tty.txt" || fail "step 1 text: $(cat "$T/tty.txt")"
grep -q "^Vault $T/tty.img created" "$T/tty.txt" || fail "no result line: $(cat "$T/tty.txt")"

note "a terminal with --batch-mode: quiet again"
script -qec "$(printf '%q ' "$CRYPTMAP" --batch-mode vault create "$T/batch.img" --size 40M --key-file "$K" --mount-dir "$MNT" "${FAST[@]}")" /dev/null > "$T/batch.out"
cryptsetup isLuks --type luks2 "$T/batch.img" || fail "batch create made no LUKS2 image"
grep -q '\[[0-9]/3\]' "$T/batch.out" && fail "progress with --batch-mode: $(cat "$T/batch.out")"
echo "PASS"
