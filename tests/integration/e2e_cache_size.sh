#!/usr/bin/env bash
# open --cache-size: a bad size is refused before anything is mounted; the size reaches the
# daemon; with --cache-size 0 every write is in the image when it completes (no write-back
# cache): data written without fsync survives kill -9 of the daemon. With the default cache
# the same test would be allowed to lose it (only fsync is a durability point).
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "cache size")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((32 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"

note "a bad size is refused with what to give, nothing mounted"
for bad in 12X -1 M 4Q; do
  set +e; out=$(cm open "$img" c --mount-dir "$MNT" --key-file "$K" --cache-size "$bad" 2>&1); rc=$?; set -e
  [[ $rc == 1 ]] || fail "--cache-size '$bad': exit $rc, expected 1 ($out)"
  [[ "$out" == *"--cache-size"* ]] || fail "--cache-size '$bad': message does not name the option: $out"
  [[ ! -e "$MNT/c" ]] || fail "--cache-size '$bad' mounted a volume"
done

note "the size reaches the daemon (8M)"
cm_open "$img" c --key-file "$K" --cache-size 8M --log-target file
grep -q "opened $img .*cache 8192 KiB" "$MNT.log" || fail "daemon log: $(tail -3 "$MNT.log")"
cm_close c

note "--cache-size 0: a completed write is in the image without fsync (kill -9 after it)"
cm_open "$img" c --key-file "$K" --cache-size 0 --log-target file
grep -q "cache 0 KiB" "$MNT.log" || fail "cache 0 not in the daemon log"
pattern_write "$MNT/c" $((3 * MiB + 512)) $((5 * MiB)) 77 --no-fsync
crash_daemon
cm_open "$img" c --key-file "$K"
pattern_check "$MNT/c" $((3 * MiB + 512)) $((5 * MiB)) 77 || fail "write-through data lost by kill -9"
cm_close c
echo "PASS"
