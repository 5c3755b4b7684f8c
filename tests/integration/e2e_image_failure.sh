#!/usr/bin/env bash
# A volume whose image fails (the disk under it is gone) reports EIO and never serves stale
# data as good. The image lives on an ext4 file system of its own (a loop device); after some
# I/O that file system is shut down (EXT4_IOC_SHUTDOWN through xfs_io: every later I/O on it
# fails with EIO, as when a disk disappears). Then: reads of data not held in cryptmap's cache
# fail with EIO, an fsync of new writes fails with EIO, close says the flush failed, and the
# daemon neither crashes nor hangs. Data that was read or written before the failure is never
# replaced by something else.
source "$(dirname "$0")/lib.sh"
command -v xfs_io > /dev/null || { echo "SKIP: xfs_io (xfsprogs) not installed"; exit 77; }
K=$(keyfile key "failure")
MiB=$((1 << 20))
truncate -s $((96 * MiB)) "$T/outer.img"
mkfs.ext4 -q -F "$T/outer.img"
outer=$(losetup_attach "$T/outer.img")
mkdir -p "$T/outer"
mount "$outer" "$T/outer"; FSMNTS+=("$T/outer")
img=$T/outer/disk.img
truncate -s $((48 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
cm_open "$img" f --key-file "$K" --log-target file
pattern_write "$MNT/f" 0 $((8 * MiB)) 5
pattern_check "$MNT/f" 0 $((8 * MiB)) 5 || fail "before the failure"

note "the image's file system fails (shutdown): all its I/O is EIO from now on"
xfs_io -x -c "shutdown" "$T/outer" || fail "xfs_io shutdown"

# Far from anything cached: must fail, never return zeros or old bytes as data.
set +e
out=$(dd if="$MNT/f" of=/dev/null bs=1M skip=30 count=4 iflag=direct 2>&1); rc=$?
set -e
[[ $rc != 0 && "$out" == *"Input/output error"* ]] || fail "read after the failure: rc=$rc: $out"

# New data cannot be made durable: fsync reports the failure.
set +e
out=$(python3 - "$MNT/f" <<'PY' 2>&1
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"x" * 65536, 20 << 20)
try:
    os.fsync(fd)
except OSError as e:
    print("fsync:", e.strerror); sys.exit(3)
print("fsync succeeded"); sys.exit(0)
PY
); rc=$?
set -e
[[ $rc == 3 && "$out" == *"Input/output error"* ]] || fail "write+fsync after the failure: rc=$rc: $out"

# Whatever still reads must be the data written before (the cache), never anything else.
set +e
python3 "$HERE/pattern.py" check "$MNT/f" 0 $((1 * MiB)) 5 2> "$T/check.err"; rc=$?
set -e
if [[ $rc != 0 ]]; then
  grep -q "Input/output error\|Errno 5" "$T/check.err" || fail "a read returned wrong data instead of EIO: $(tail -2 "$T/check.err")"
fi

note "the daemon is alive, status answers, close reports the failed flush"
cm status --mount-dir "$MNT" > /dev/null || fail "status after the failure"
set +e
out=$(cm_close f 2>&1); rc=$?
set -e
[[ $rc != 0 && "$out" == *"flush"* ]] || fail "close after the failure: rc=$rc: $out"
grep -q "Input/output error\|injected\|failed" "$MNT.log" || fail "the daemon logged nothing about the failure"
echo "PASS"
