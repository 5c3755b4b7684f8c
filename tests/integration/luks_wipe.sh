#!/usr/bin/env bash
# luksFormat --wipe: the data area is overwritten with encrypted zeros (the volume reads back as
# zeros, the image holds no plaintext and none of the old bytes), cryptsetup still accepts the
# header; progress is drawn on a terminal and nothing is printed in a script.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "wipe")
MiB=$((1 << 20))
img=$T/w.img
truncate -s $((40 * MiB)) "$img"
pattern_write "$img" 0 $((40 * MiB)) 9   # old content everywhere

note "in a script: quiet"
cm luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --wipe "$img" "$K" > "$T/out" 2> "$T/err" || fail "luksFormat --wipe: $(cat "$T/err")"
[[ ! -s "$T/out" && ! -s "$T/err" ]] || fail "printed in a script: $(cat "$T/out" "$T/err")"
cryptsetup isLuks "$img" || fail "cryptsetup does not see a LUKS header"
cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "cryptsetup rejects the passphrase"
off=$(cryptsetup luksDump "$img" | awk '/offset:/ {print $2; exit}')
[[ -n "$off" ]] || fail "no data offset in luksDump"
python3 - "$img" "$off" <<'PY' || fail "the data area still holds old bytes or zeros"
import sys
data = open(sys.argv[1], "rb").read()[int(sys.argv[2]):]
assert b"cryptmap-pattern" not in data, "old pattern sectors survived"
assert data.count(0) < len(data) // 100, "long runs of zeros: not encrypted"
PY
cm_open "$img" w --key-file "$K"
cmp -n $(( $(stat -c %s "$MNT/w") )) "$MNT/w" /dev/zero || fail "the wiped volume does not read as zeros"
cm_close w

note "on a terminal: a progress line that reaches 100%"
pattern_write "$img" $((20 * MiB)) $((4 * MiB)) 10
echo YES | script -qec "'$CRYPTMAP' luksFormat --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --wipe '$img' '$K'" /dev/null > "$T/tty" \
  || fail "luksFormat --wipe on a terminal: $(cat "$T/tty")"
grep -q "Wiping $img: 100%" "$T/tty" || fail "no progress on a terminal: $(tr '\r' '\n' < "$T/tty" | tail -3)"
echo "PASS"
