#!/usr/bin/env bash
# FUSE over io_uring (fs/README.md "FUSE over io_uring", docs/fuse-io-uring.md): with the
# kernel's enable_uring=N the daemon serves through /dev/fuse, says why in its log, and
# --fuse-transport=uring is refused with what to do; with Y (set here, restored at exit) the
# default transport is io_uring (status says "uring"), fio verify (4 jobs, randrw, crc32c) and
# ext4 on a loop device + e2fsck pass through it, a forced close while fio writes ends the I/O
# with errors and the daemon exits with its mount gone; --fuse-transport=dev keeps /dev/fuse.
source "$(dirname "$0")/lib.sh"
P=$URING_PARAM
enable_uring_hold ||
  { echo "SKIP: no writable $P (kernel without FUSE over io_uring, or not root)"; exit 77; }
flock -n "$URING_LOCK" true && fail "enable_uring_hold returned without holding $URING_LOCK"
watchdog 240
MiB=$((1 << 20))
K=$(keyfile key "uring passphrase")
img=$T/disk.img
truncate -s $((16 * MiB + 160 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"

transport() {  # transport NAME -> the fuse_transport status --json reports
  cm status "$1" --json --mount-dir "$MNT" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["fuse_transport"])'
}

note "enable_uring=N: /dev/fuse, one log line says why; --fuse-transport=uring is refused"
echo N > "$P"
expect_failure 1 "io_uring.*enable_uring is N.*--fuse-transport=dev" -- \
  cm open "$img" f --key-file "$K" --mount-dir "$MNT" --fuse-transport=uring
cm_open "$img" f --key-file "$K" --log-target file
[[ $(transport f) == dev ]] || fail "enable_uring=N: transport $(transport f)"
grep -q "FUSE over io_uring not used: .*enable_uring is N" "$MNT.log" || fail "no fallback line: $(cat "$MNT.log")"
cm status f --mount-dir "$MNT" | grep -q "fuse transport: dev" || fail "status text lacks the transport"
cm_close f
for _ in $(seq 1 50); do [[ -z $(daemon_pid) ]] && break; sleep 0.1; done

note "enable_uring=Y: io_uring by default"
echo Y > "$P"
rm -f "$MNT.log"
cm_open "$img" f --key-file "$K" --log-target file
for _ in $(seq 1 50); do [[ $(transport f) == uring ]] && break; sleep 0.1; done
[[ $(transport f) == uring ]] || fail "enable_uring=Y: transport $(transport f); log: $(cat "$MNT.log")"
grep -q "FUSE over io_uring: .* ring entries on .* queues" "$MNT.log" || fail "no io_uring line: $(cat "$MNT.log")"

note "fio verify through io_uring (4 jobs, randrw, crc32c)"
cd "$T"
common=(--filename="$MNT/f" --direct=1 --ioengine=psync --numjobs=4 --size=32M
        --offset_increment=32M --verify=crc32c --verify_fatal=1 --group_reporting --output-format=terse)
fio --name=w "${common[@]}" --rw=randwrite --bs=4k --size=8M > "$T/fio1.txt" || fail "fio randwrite+verify: $(tail "$T/fio1.txt")"
fio --name=rw "${common[@]}" --rw=randrw --bsrange=512-256k --verify_backlog=64 --time_based --runtime=8 \
  > "$T/fio2.txt" || fail "fio randrw+verify: $(tail "$T/fio2.txt")"
fio --name=seq "${common[@]}" --rw=write --bs=1M > "$T/fio3.txt" || fail "fio 1 MiB write+verify: $(tail "$T/fio3.txt")"

note "ext4 on a loop device over the file, e2fsck clean"
dev=$(losetup_attach --direct-io=on "$MNT/f")
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/fs"
mount "$dev" "$T/fs"
FSMNTS+=("$T/fs")
dd if=/dev/urandom of="$T/fs/blob" bs=1M count=24 status=none
sum1=$(sha256sum < "$T/fs/blob")
cp -r /usr/share/doc/fio "$T/fs/tree" 2>/dev/null || cp -r /etc/ssl "$T/fs/tree"
umount "$T/fs"
e2fsck -fn "$dev" > "$T/fsck.txt" 2>&1 || fail "e2fsck after io_uring writes: $(cat "$T/fsck.txt")"
mount "$dev" "$T/fs"
[[ $(sha256sum < "$T/fs/blob") == "$sum1" ]] || fail "ext4 file changed across remount"
umount "$T/fs"
losetup_detach "$dev"
[[ $(transport f) == uring ]] || fail "transport changed during I/O"

note "forced close while fio writes: I/O ends, the daemon exits, the mount is gone"
pid=$(daemon_pid)
fio --name=bg --filename="$MNT/f" --direct=1 --ioengine=psync --numjobs=4 --rw=randwrite --bs=64k \
  --size=32M --offset_increment=32M --time_based --runtime=60 > "$T/fio4.txt" 2>&1 &
fiopid=$!
sleep 2
cm_close f --force
for _ in $(seq 1 100); do kill -0 "$fiopid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$fiopid" 2>/dev/null && fail "fio still running 10 s after the forced close"
wait "$fiopid" && fail "fio succeeded although its file was closed under it"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "daemon $pid still running after the last close"
mountpoint -q "$MNT" && fail "$MNT still mounted after the daemon exited"

note "--fuse-transport=dev with enable_uring=Y: /dev/fuse"
cm_open "$img" f --key-file "$K" --fuse-transport=dev
[[ $(transport f) == dev ]] || fail "--fuse-transport=dev: transport $(transport f)"
pattern_write "$MNT/f" 0 $((4 * MiB)) 7
pattern_check "$MNT/f" 0 $((4 * MiB)) 7 || fail "pattern through /dev/fuse"
cm_close f
echo "PASS"
