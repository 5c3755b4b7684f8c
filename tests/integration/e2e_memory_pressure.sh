#!/usr/bin/env bash
# No deadlock under memory pressure: the daemon and the writer run in a memory-limited cgroup
# (v1 memory controller), ext4 on a loop device on the mapped file, and we write well past the
# limit. It must finish (bounded by a timeout, not a speed assertion) and e2fsck must be clean.
#
# Label "stress": not in the default CI run yet. It still hangs in about 2 of 3 runs at a 96 MiB
# limit: libfuse's per-worker receive buffers are first touched inside read(/dev/fuse), where
# the kernel copies a loop-device write into them, so that page fault charges the memory
# cgroup and reclaim waits on writeback only this daemon can finish. PR_SET_IO_FLUSHER would
# stop it but needs CAP_SYS_RESOURCE, which this machine lacks. The fix (our own session loop
# with preallocated, prefaulted receive buffers) is tracked on the I/O engine issue.
# Run it with: ctest -L stress
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "pressure")
MiB=$((1 << 20))
cg=/sys/fs/cgroup/memory
[[ -d $cg ]] || { echo "SKIP: no cgroup v1 memory controller"; exit 0; }
group=$cg/cryptmap-test-$$
mkdir "$group"
trap 'set +e; for p in $(cat "$group/cgroup.procs" 2>/dev/null); do echo "$p" > "$cg/cgroup.procs"; done; cleanup; rmdir "$group" 2>/dev/null' EXIT
echo $((96 * MiB)) > "$group/memory.limit_in_bytes"

img=$T/disk.img
truncate -s $((16 * MiB + 768 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
# Everything below runs inside the cgroup: the daemon inherits it from the CLI.
echo $$ > "$group/cgroup.procs"
cm_open "$img" m --key-file "$K"
dev=$(losetup_attach "$MNT/m")
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/fs"
mount "$dev" "$T/fs"; FSMNTS+=("$T/fs")
watchdog 240  # a deadlock fails the test instead of hanging the machine
note "writing 512 MiB through ext4 under a 96 MiB limit"
timeout 300 dd if=/dev/urandom of="$T/fs/big" bs=1M count=512 status=none || fail "write under memory pressure failed or hung"
timeout 120 sync || fail "sync hung under memory pressure"
sha=$(sha256sum "$T/fs/big" | awk '{print $1}')
umount "$T/fs"; FSMNTS=()
e2fsck -fn "$dev" || fail "e2fsck not clean"
losetup_detach "$dev"
cm_close m
echo $$ > "$cg/cgroup.procs"
cm_open "$img" m --key-file "$K"
dev=$(losetup_attach "$MNT/m")
mount -o ro "$dev" "$T/fs"; FSMNTS+=("$T/fs")
[[ "$(sha256sum "$T/fs/big" | awk '{print $1}')" == "$sha" ]] || fail "data changed"
echo "memory.failcnt=$(cat "$group/memory.failcnt") max_usage=$(cat "$group/memory.max_usage_in_bytes")"
echo "PASS"
