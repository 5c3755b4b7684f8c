#!/usr/bin/env bash
# No deadlock under memory pressure (issue #5): the daemon and the writer share one memory
# cgroup (v1 memory controller), ext4 on a loop device on the mapped file, and the writer
# writes far past the limit. It must finish (bounded by a watchdog, not a speed assertion),
# the cgroup must really have hit its limit, e2fsck must be clean and the data must read back.
#
# The deadlock this guards against (seen as stack traces before the fix): a FUSE worker's
# receive buffer faulted in by the kernel inside read(/dev/fuse) while copying a loop-device
# write into it -> memcg charge -> reclaim waits on the writeback of pages only that very
# request can complete. The daemon now faults in and locks its receive buffers (and worker
# stacks) at mount (fs/README.md "Requests, replies and threads").
#
# The limit is the daemon's own footprint after open (sector cache, pools, buffers: ~110 MiB by
# default) plus HEADROOM MiB for the writer, ext4 and the page cache, so the test means the
# same whatever the daemon's defaults are. Knobs (environment): CRYPTMAP_PRESSURE_HEADROOM_MIB
# (default 32), CRYPTMAP_PRESSURE_WRITE_MIB (default 512), CRYPTMAP_PRESSURE_DIRECT_IO=on|off
# (losetup --direct-io, default off: the loop device's own page cache adds pressure),
# CRYPTMAP_FUSE_TRANSPORT=dev|uring (lib.sh fuse_transport_setup; CTest runs both, the uring run
# with 256 MiB written: the limit is hit long before that).
source "$(dirname "$0")/lib.sh"
fuse_transport_setup
K=$(keyfile key "pressure")
MiB=$((1 << 20))
headroom=${CRYPTMAP_PRESSURE_HEADROOM_MIB:-32}
write_mib=${CRYPTMAP_PRESSURE_WRITE_MIB:-512}
dio=${CRYPTMAP_PRESSURE_DIRECT_IO:-off}
cg=/sys/fs/cgroup/memory
[[ -w $cg/cgroup.procs ]] || { echo "SKIP: no writable cgroup v1 memory controller"; exit 77; }
group=$cg/cryptmap-test-$$
mkdir "$group"
leave_group() { for p in $(cat "$group/cgroup.procs" 2>/dev/null); do echo "$p" > "$cg/cgroup.procs" 2>/dev/null || true; done; }
# On failure, say what the daemon saw (its log goes away with the scratch dir).
on_exit() {
  local rc=$?
  set +e
  leave_group
  if (( rc != 0 )) && [[ -f "$MNT.log" ]]; then
    echo "---- daemon log (last 30 lines)" >&2; tail -n 30 "$MNT.log" >&2
  fi
  cleanup
  rmdir "$group" 2>/dev/null
}
trap on_exit EXIT

img=$T/disk.img
truncate -s $((16 * MiB + (write_mib + 256) * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
# Everything below runs inside the cgroup: the daemon inherits it from the CLI.
echo $$ > "$group/cgroup.procs"
cm_open "$img" m --key-file "$K" "${FT[@]}"
fuse_transport_expect m
# lib.sh's watchdog, but it leaves the cgroup first: it must never wait on the cgroup's reclaim.
# Started after cm_open so that it knows the FUSE connection. A deadlock then fails the test
# (connection aborted -> I/O errors) instead of hanging CI. Its sleep gets no stdout/stderr: an
# orphaned sleep holding CTest's output pipe made CTest wait the full 150 s after every run.
( echo "$BASHPID" > "$cg/cgroup.procs"; sleep 150 </dev/null >/dev/null 2>&1
  echo "WATCHDOG: aborting FUSE connections after 150 s" >&2; abort_fuse_conns ) &
WATCHDOG_PID=$!
daemon_bytes=$(cat "$group/memory.usage_in_bytes")
limit=$((daemon_bytes + headroom * MiB))
echo "$limit" > "$group/memory.limit_in_bytes"
note "daemon footprint $((daemon_bytes / MiB)) MiB; limit $((limit / MiB)) MiB (+${headroom} MiB headroom)"
dev=$(losetup_attach --direct-io="$dio" "$MNT/m")
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/fs"
mount "$dev" "$T/fs"; FSMNTS+=("$T/fs")
note "writing $write_mib MiB through ext4 (loop --direct-io=$dio)"
dd if=/dev/urandom of="$T/fs/big" bs=1M count="$write_mib" status=none || fail "write under memory pressure failed"
# syncfs of this file system only: a global sync would also wait on other tests' writeback.
sync -f "$T/fs/big" || fail "sync under memory pressure failed"
failcnt=$(cat "$group/memory.failcnt")
echo "memory.failcnt=$failcnt max_usage=$(($(cat "$group/memory.max_usage_in_bytes") / MiB)) MiB"
(( failcnt > 0 )) || fail "the cgroup never reached its limit: this run proved nothing"
sha=$(sha256sum "$T/fs/big" | awk '{print $1}')
umount "$T/fs"; FSMNTS=()
e2fsck -fn "$dev" || fail "e2fsck not clean"
losetup_detach "$dev"
cm_close m
leave_group
# Read back outside the cgroup, through a fresh daemon.
cm_open "$img" m --key-file "$K" "${FT[@]}"
fuse_transport_expect m
dev=$(losetup_attach "$MNT/m")
mount -o ro "$dev" "$T/fs"; FSMNTS+=("$T/fs")
[[ "$(sha256sum "$T/fs/big" | awk '{print $1}')" == "$sha" ]] || fail "data changed"
echo "PASS"
