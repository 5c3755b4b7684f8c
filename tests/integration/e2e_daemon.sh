#!/usr/bin/env bash
# The daemon as a user meets it: several volumes in one mount dir, status, read-only, block
# device semantics at the end of the volume, passphrase on stdin, duplicate names, close of one
# volume keeping the others, durability of fsynced writes across kill -9, SIGTERM = clean exit.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "daemon passphrase")
MiB=$((1 << 20))
for n in a b; do
  truncate -s $((24 * MiB)) "$T/$n.img"
  cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/$n.img"
done
truncate -s $((24 * MiB)) "$T/c.img"
cryptsetup luksFormat --batch-mode --type luks1 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/c.img"

note "passphrase from stdin (not a terminal), like cryptsetup"
printf 'daemon passphrase\n' | cm_open "$T/a.img" a
cm_open "$T/b.img" b --key-file "$K" --readonly
[[ -f "$MNT/a" && -f "$MNT/b" ]] || fail "both volumes should be files in $MNT"
[[ "$(stat -c %a "$MNT/a")" == 600 ]] || fail "mapped file mode is $(stat -c %a "$MNT/a"), expected 600"

note "duplicate name refused"
set +e; cm_open "$T/c.img" a --key-file "$K" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 5 ]] || { cat "$T/out"; fail "duplicate name: exit $rc, expected 5"; }
grep -q "already exists" "$T/out" || fail "duplicate name message: $(cat "$T/out")"

note "status"
cm status a --mount-dir "$MNT" > "$T/st"
grep -qi "LUKS2" "$T/st" || fail "status a does not say LUKS2: $(cat "$T/st")"
grep -q "aes-xts-plain64" "$T/st" || fail "status a does not give the cipher"
grep -q "$T/a.img" "$T/st" || fail "status a does not name the image"
cm status b --mount-dir "$MNT" | grep -qi "read.only" || fail "status b does not say read-only"

note "read-only volume refuses writes"
if dd if=/dev/zero of="$MNT/b" bs=4096 count=1 conv=notrunc status=none 2>/dev/null; then
  fail "write to a --readonly volume succeeded"
fi

note "end of volume: short read at the end, ENOSPC past it"
size=$(stat -c %s "$MNT/a")
[[ "$size" == $((8 * MiB)) ]] || fail "size $size"
n=$(dd if="$MNT/a" bs=4096 skip=$((size / 4096 - 1)) count=4 status=none | wc -c)
[[ "$n" == 4096 ]] || fail "read across the end returned $n bytes, expected 4096"
if dd if=/dev/zero of="$MNT/a" bs=4096 seek=$((size / 4096)) count=1 conv=notrunc status=none 2> "$T/err"; then
  fail "write past the end succeeded"
fi
grep -q "No space left" "$T/err" || fail "write past the end: $(cat "$T/err"), expected ENOSPC"

note "closing one volume keeps the other"
cm_close b
[[ ! -e "$MNT/b" ]] || fail "b still present after close"
pattern_write "$MNT/a" 0 $((2 * MiB)) 5
pattern_check "$MNT/a" 0 $((2 * MiB)) 5 || fail "a misbehaves after b was closed"

note "fsynced data survives kill -9 of the daemon"
pattern_write "$MNT/a" $((2 * MiB)) $((4 * MiB)) 6   # pattern_write fsyncs
crash_daemon
cm_open "$T/a.img" a --key-file "$K"
pattern_check "$MNT/a" 0 $((2 * MiB)) 5 || fail "fsynced data lost after kill -9 (first region)"
pattern_check "$MNT/a" $((2 * MiB)) $((4 * MiB)) 6 || fail "fsynced data lost after kill -9"

note "SIGTERM: flush, unmount, exit 0"
pid=$(daemon_pid)
kill -TERM "$pid"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "daemon did not exit on SIGTERM"
mountpoint -q "$MNT" && fail "mount dir still mounted after SIGTERM"
echo "PASS"
