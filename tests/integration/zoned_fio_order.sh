#!/usr/bin/env bash
# Zoned volumes end to end (issue #6): a LUKS2 image made an emulated host-managed drive
# (header in conventional zones), opened through the real daemon and FUSE mount.
#  1. fio: 4 jobs, each streaming sequential writes (4k..128k blocks, libaio queue depth 16) into
#     its own 8 sequential zones, crc32c verify: zero rejected writes, every byte verified,
#     nothing in the daemon log about write pointers; the zones end full (user.cryptmap.zones).
#  1b. One stream at libaio queue depth 64 into one zone at a time (more writes in flight than the
#     kernel's default 12 background slots), verify: zero rejected writes; the mount's FUSE
#     connection has max_background 256 (a private mount of the fusectl file system).
#  2. Zone reset from the mapped file: fallocate --punch-hole on a whole zone resets it (then it
#     is written and verified again); part of a zone is EINVAL; a conventional zone without
#     --allow-discards is EOPNOTSUPP. After close + reopen the data verifies again, and
#     cryptsetup still reads the header.
#  3. The same fio workload on a fresh image opened with the hidden
#     --debug-unordered-zone-writes (ordering off on purpose): the drive rejects writes, so the
#     first run's result is not an accident of timing.
# Argument: the FUSE transport, `dev` (default) or `uring` (CTest zoned_fio_order_uring: sets
# the kernel's enable_uring to Y, restored at exit, under the RESOURCE_LOCK fuse_enable_uring and
# lib.sh's machine-wide enable_uring_hold).
# Over io_uring the kernel queues a writer's requests per CPU, served by different threads:
# the ordered runs must still see zero rejected writes, and step 3 must still see rejections.
source "$(dirname "$0")/lib.sh"
TRANSPORT=${1:-dev}
case $TRANSPORT in
  dev) ;;
  uring)
    # The machine-wide lock on the switch; cleanup restores the saved value (lib.sh).
    enable_uring_hold ||
      { echo "SKIP: no writable $URING_PARAM (kernel without FUSE over io_uring, or not root)"; exit 77; }
    echo Y > "$URING_PARAM"
    ;;
  *) fail "transport $TRANSPORT: dev or uring" ;;
esac
watchdog 500
transport() {  # the fuse_transport status --json reports for volume z
  cm status z --json --mount-dir "$MNT" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["fuse_transport"])'
}
# open_z IMAGE [flags]: opens IMAGE as z over $TRANSPORT and checks the mount serves through it
# (the registration finishes just after the mount is up: wait for it).
open_z() {
  local img=$1
  shift
  cm_open "$img" z --key-file "$K" --fuse-transport="$TRANSPORT" "$@"
  for _ in $(seq 1 50); do [[ $(transport) == "$TRANSPORT" ]] && break; sleep 0.1; done
  [[ $(transport) == "$TRANSPORT" ]] || fail "z is served through $(transport), not $TRANSPORT: $(tail -5 "$MNT.log")"
}
note "transport: $TRANSPORT"
K=$(keyfile key "zoned")
MiB=$((1 << 20))
zones_of() { python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.cryptmap.zones").decode(), end="")' "$1"; }
zone_cond() { zones_of "$1" | awk -v z="$2" '$1 == z { print $7 }'; }

make_zoned_image() {  # make_zoned_image PATH
  truncate -s $((16 * MiB + 64 * MiB)) "$1"
  cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$1"
  cm zone-create "$1" --zone-size $MiB --conventional-zones 8 2> "$T/err" &&
    fail "zone-create put the LUKS header into sequential zones"
  grep -q 'at least 16 --conventional-zones' "$T/err" || fail "zone-create: $(cat "$T/err")"
  [[ ! -e "$1.zones" ]] || fail "a refused zone-create left a sidecar"
  # 1 MiB zones; zones 0..15 hold the 16 MiB LUKS2 header, 16..19 are conventional data.
  cm zone-create "$1" --zone-size $MiB --conventional-zones 20 > /dev/null
  [[ -f "$1.zones" ]] || fail "zone-create left no sidecar"
}

cd "$T"  # fio keeps verify state files in the working directory
# 4 jobs, one stream each (libaio, queue depth 16) into its own 8 zones (volume bytes 4..36 MiB
# = image zones 20..51), block sizes 4k/16k/64k/128k: they divide the zone size, so no write
# crosses a zone boundary (a zoned drive refuses those; fio's zonemode=zbd needs a block device).
fio_zones() {  # extra arguments are global options
  fio "$@" --filename="$MNT/z" --direct=1 --ioengine=libaio --iodepth=16 --rw=write --size=8M \
    --verify=crc32c --verify_fatal=1 --output-format=terse \
    --name=j4k --bs=4k --offset=4M --name=j16k --bs=16k --offset=12M \
    --name=j64k --bs=64k --offset=20M --name=j128k --bs=128k --offset=28M
}

img=$T/zoned.img
make_zoned_image "$img"
open_z "$img"
zones_of "$MNT/z" > "$T/zones0.txt"
[[ "$(head -1 "$T/zones0.txt")" == 'zone_size 1048576 zones 64' ]] || fail "zone table header: $(head -1 "$T/zones0.txt")"
grep -q '^16 0 1048576 1048576 1048576 conventional ' "$T/zones0.txt" || fail "zone 16 should be conventional: $(sed -n 2p "$T/zones0.txt")"
grep -q '^20 4194304 1048576 1048576 4194304 ' "$T/zones0.txt" || fail "zone 20 should start empty at 4 MiB: $(sed -n 6p "$T/zones0.txt")"
cm status z --zones --mount-dir "$MNT" > "$T/status.txt"
grep -q '^20 4194304 ' "$T/status.txt" || fail "status --zones shows no zone table: $(cat "$T/status.txt")"

note "1. fio: 4 sequential streams, queue depth 16, each on its own 8 sequential zones, verify"
fio_zones > "$T/fio1.txt" 2>&1 || fail "fio on the zoned volume failed: $(tail -3 "$T/fio1.txt"; tail -5 "$MNT.log")"
grep -q 'write pointer' "$MNT.log" && fail "the daemon logged zone errors: $(grep 'write pointer' "$MNT.log" | head -3)"
for z in $(seq 20 51); do
  c=$(zone_cond "$MNT/z" "$z")
  [[ "$c" == full ]] || fail "zone $z is $c after being written whole"
done

note "1b. one stream at queue depth 64 into one zone at a time (64 writes in flight, the kernel's default max_background is 12), verify"
# A zoned mount asks the kernel for 256 background slots (fs/README.md "Zoned volumes: receive
# order"): the connection's own value, read from a private mount of the FUSE control file
# system (the same single instance /sys/fs/fuse/connections shows, mounted here only for the
# test and unmounted at its end), must be that.
mkdir -p "$T/fusectl"
if mount -t fusectl fusectl "$T/fusectl" 2> /dev/null; then
  FSMNTS+=("$T/fusectl")
  conn=$(mountpoint -d "$MNT" | cut -d: -f2)
  [[ -r "$T/fusectl/$conn/max_background" ]] || fail "no FUSE control files for connection $conn"
  mb=$(cat "$T/fusectl/$conn/max_background")
  ct=$(cat "$T/fusectl/$conn/congestion_threshold")
  [[ $mb == 256 && $ct == 192 ]] ||
    fail "the zoned mount's connection has max_background $mb, congestion_threshold $ct (want 256, 192)"
  note "connection $conn: max_background $mb, congestion_threshold $ct"
else
  note "the FUSE control file system cannot be mounted here: max_background not checked"
fi
# Volume bytes 41..47 MiB = zones 57..62: 256 writes of 4 KiB each, one zone after the other.
fio --name=deep --filename="$MNT/z" --direct=1 --ioengine=libaio --iodepth=64 --rw=write --bs=4k \
  --offset=41M --size=6M --verify=crc32c --verify_fatal=1 --output-format=terse > "$T/fio1b.txt" 2>&1 ||
  fail "fio at queue depth 64 into one zone failed: $(tail -3 "$T/fio1b.txt"; grep 'write pointer' "$MNT.log" | head -3)"
grep -q 'write pointer' "$MNT.log" && fail "the daemon logged zone errors at queue depth 64: $(grep 'write pointer' "$MNT.log" | head -3)"
for z in $(seq 57 62); do
  c=$(zone_cond "$MNT/z" "$z")
  [[ "$c" == full ]] || fail "zone $z is $c after being written whole at queue depth 64"
done

note "2. zone reset through fallocate --punch-hole (zone 56 = volume bytes 40..41 MiB)"
fio_again() {  # extra arguments are global options
  fio "$@" --name=again --filename="$MNT/z" --direct=1 --ioengine=libaio --iodepth=8 \
    --offset=40M --size=1M --rw=write --bs=64k --verify=crc32c --verify_fatal=1 --output-format=terse
}
fio_again --do_verify=0 > "$T/fio2.txt" 2>&1 || fail "writing zone 56 failed: $(tail -3 "$T/fio2.txt")"
[[ "$(zone_cond "$MNT/z" 56)" == full ]] || fail "zone 56 is $(zone_cond "$MNT/z" 56) after being written whole"
fallocate --punch-hole --offset $((40 * MiB + 4096)) --length 4096 "$MNT/z" 2> "$T/err" && fail "punching part of a zone succeeded"
grep -q 'Invalid argument' "$T/err" || fail "partial zone: expected EINVAL, got: $(cat "$T/err")"
[[ "$(zone_cond "$MNT/z" 56)" == full ]] || fail "a refused reset changed zone 56: $(zone_cond "$MNT/z" 56)"
fallocate --punch-hole --offset 0 --length $MiB "$MNT/z" 2> "$T/err" && fail "punching a conventional zone without --allow-discards succeeded"
grep -qi 'unsupported\|not supported' "$T/err" || fail "conventional zone: expected EOPNOTSUPP, got: $(cat "$T/err")"
fallocate --punch-hole --offset $((40 * MiB)) --length $MiB "$MNT/z" || fail "resetting zone 56 failed"
[[ "$(zone_cond "$MNT/z" 56)" == empty ]] || fail "zone 56 is $(zone_cond "$MNT/z" 56) after the reset"
fio_again > "$T/fio2.txt" 2>&1 || fail "rewriting the reset zone failed: $(tail -3 "$T/fio2.txt")"
cm_close z
cryptsetup luksDump "$img" > /dev/null || fail "cryptsetup cannot read the header of the zoned image"
open_z "$img"
[[ "$(zone_cond "$MNT/z" 56)" == full ]] || fail "zone 56 after reopen: $(zone_cond "$MNT/z" 56)"
fio_zones --verify_only=1 > "$T/fio3.txt" 2>&1 || fail "data did not verify after reopen: $(tail -3 "$T/fio3.txt")"
fio_again --verify_only=1 > "$T/fio3.txt" 2>&1 || fail "zone 56 did not verify after reopen: $(tail -3 "$T/fio3.txt")"
cm_close z

note "3. the same workload with ordering disabled on purpose: the drive must reject writes"
MNT=$T/unordered
img2=$T/unordered.img
make_zoned_image "$img2"
open_z "$img2" --debug-unordered-zone-writes
grep -q 'NOT ordered' "$MNT.log" || fail "the debug mode did not announce itself"
if fio_zones > "$T/fio4.txt" 2>&1; then
  fail "without ordering fio saw no rejected write: the ordered run above proves nothing"
fi
n=$(grep -c 'write pointer' "$MNT.log" || true)
(( n > 0 )) || fail "fio failed, but not because the drive rejected out-of-order writes: $(tail -3 "$T/fio4.txt")"
note "rejected out-of-order writes without ordering: $n logged"
cm_close z
echo "PASS"
