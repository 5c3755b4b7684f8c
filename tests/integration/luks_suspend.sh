#!/usr/bin/env bash
# luksSuspend / luksResume as a cryptsetup user runs them, under a running fio verify:
# - while suspended, I/O on the mapped file waits (fio, a read and a write stay blocked; none
#   fails) and the daemon's memory holds no piece of the volume key (scanned through
#   /proc/PID/mem; the same scan finds the key while the volume is open, so it can fail);
# - a wrong passphrase leaves it suspended (exit 2); any keyslot resumes it; the held requests
#   then complete, fio verifies every block, and the held write is in the image after close
#   (re-read by a fresh open, fio --verify_only);
# - cryptsetup's refusals: already suspended, not suspended, not active, plain mode;
# - the header is untouched (cryptsetup open --test-passphrase), a suspended volume closes.
source "$(dirname "$0")/lib.sh"
watchdog 300
K=$(keyfile key "suspend-one")
K2=$(keyfile key2 "suspend-two")
BAD=$(keyfile bad "not-this-one")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((16 * MiB + 48 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
cryptsetup luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img" "$K2"
vk=$(cryptsetup luksDump --dump-volume-key --batch-mode --key-file "$K" "$img" |
  sed -n '/^MK dump:/,/^[^[:space:]]/p' | sed -e 's/^MK dump://' |
  grep -E '^[[:space:]]*([0-9a-f]{2}[[:space:]]*)+$' | tr -d ' \t\n')
[[ ${#vk} == 128 ]] || fail "could not read the volume key from cryptsetup luksDump (${#vk} hex digits)"
sum_before=$(sha256sum < "$img")

note "plain mode is refused, as by cryptsetup"
plain=$T/plain.img
truncate -s 4M "$plain"
printf 'plain-pass' | cm_open "$plain" p --type plain
expect_exit 1 "supported only for LUKS device" -- cm luksSuspend p --mount-dir "$MNT"
expect_exit 4 "Device nope is not active" -- cm luksSuspend nope --mount-dir "$MNT"
expect_exit 4 "Device nope is not active" -- cm luksResume nope --mount-dir "$MNT" --key-file "$K"

cm_open "$img" s --key-file "$K" --cache-size 8M
cm_close p
pid=$(daemon_pid)
[[ -n "$pid" ]] || fail "no daemon for $MNT"
scan() { python3 "$HERE/scan_memory.py" "$pid" "$vk"; }
open_hits=$(scan)
(( open_hits > 0 )) || fail "the memory scan does not find the key of an open volume ($open_hits): it could not show its absence"
note "key pieces in the daemon while open: $open_hits"
expect_exit 1 "Volume s is not suspended" -- cm luksResume s --mount-dir "$MNT" --key-file "$K"

cd "$T"  # fio keeps its verify state in the working directory
fio_args=(--name=s --filename="$MNT/s" --direct=1 --ioengine=psync --rw=randwrite --bs=4k
          --size=16M --verify=crc32c --verify_fatal=1 --rate=,4m --output-format=terse)
fio "${fio_args[@]}" > "$T/fio.txt" 2>&1 &
fio_pid=$!
sleep 1.5
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the suspend: $(cat "$T/fio.txt")"
note "luksSuspend under fio"
t0=$(date +%s%N)
cm luksSuspend s --mount-dir "$MNT"
note "luksSuspend took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
cm status s --mount-dir "$MNT" | grep -q "mode:    read/write (suspended)" || fail "status does not say suspended: $(cm status s --mount-dir "$MNT")"
cm status --json --mount-dir "$MNT" | grep -q '"suspended": true' || fail "status --json does not say suspended"
suspended_hits=$(scan)
[[ "$suspended_hits" == 0 ]] || fail "$suspended_hits pieces of the volume key are still in the daemon's memory while suspended"
note "key pieces in the daemon while suspended: 0"

head -c 4096 /dev/urandom > "$T/w.bin"
dd if="$T/w.bin" of="$MNT/s" bs=4096 seek=$((40 * 256)) oflag=direct conv=notrunc status=none &
w_pid=$!
dd if="$MNT/s" of="$T/r.bin" bs=4096 count=1 skip=$((20 * 256)) iflag=direct status=none &
r_pid=$!
fio_out=$(stat -c %s "$T/fio.txt")
sleep 2
kill -0 "$w_pid" 2>/dev/null || fail "a write completed on the suspended volume"
kill -0 "$r_pid" 2>/dev/null || fail "a read completed on the suspended volume"
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended while the volume was suspended: $(cat "$T/fio.txt")"
[[ $(stat -c %s "$T/fio.txt") == "$fio_out" ]] || fail "fio reported something while suspended: $(cat "$T/fio.txt")"
ls -l "$MNT/s" > /dev/null || fail "the mapped file's metadata is not answered while suspended"

expect_exit 1 "Volume s is already suspended" -- cm luksSuspend s --mount-dir "$MNT"
expect_exit 2 "No key available with this passphrase" -- cm luksResume s --mount-dir "$MNT" --key-file "$BAD"
cm status s --mount-dir "$MNT" | grep -q "(suspended)" || fail "a wrong passphrase resumed the volume"
kill -0 "$w_pid" 2>/dev/null || fail "a wrong passphrase let the held write run"
[[ $(scan) == 0 ]] || fail "a wrong passphrase left key material in the daemon"

note "luksResume with the second keyslot's passphrase"
cm luksResume s --mount-dir "$MNT" --key-file "$K2"
wait "$w_pid" || fail "the held write failed after resume"
wait "$r_pid" || fail "the held read failed after resume"
[[ $(stat -c %s "$T/r.bin") == 4096 ]] || fail "the held read returned $(stat -c %s "$T/r.bin") bytes"
wait "$fio_pid" || fail "fio (randwrite + crc32c verify) failed across suspend/resume: $(cat "$T/fio.txt")"
cm status s --mount-dir "$MNT" | grep -q "(suspended)" && fail "status still says suspended after resume"
(( $(scan) > 0 )) || fail "the resumed volume holds no key (the scan is broken?)"

note "everything reached the image"
cm_close s
cryptsetup open --test-passphrase --key-file "$K2" "$img" || fail "cryptsetup no longer opens the header"
cryptsetup luksDump "$img" | grep -q "^Keyslots:" || fail "cryptsetup luksDump fails on the image"
cm_open "$img" s --key-file "$K"
fio "${fio_args[@]}" --verify_only > "$T/fio_verify.txt" 2>&1 || fail "fio --verify_only after reopen: $(cat "$T/fio_verify.txt")"
dd if="$MNT/s" of="$T/w.back" bs=4096 count=1 skip=$((40 * 256)) iflag=direct status=none
cmp -s "$T/w.bin" "$T/w.back" || fail "the write held during suspend is not in the image"
[[ $(sha256sum < "$img") != "$sum_before" ]] || fail "the image did not change at all"

note "a suspended volume closes, and the daemon exits with it"
cm luksSuspend s --mount-dir "$MNT"
cm_close s
for _ in $(seq 1 50); do mountpoint -q "$MNT" || break; sleep 0.1; done
mountpoint -q "$MNT" && fail "$MNT still mounted after closing the suspended volume"
# The mount goes before the process: give it the time it takes to finish exiting.
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the daemon $pid did not exit within 10 s of the unmount"
echo "PASS"
