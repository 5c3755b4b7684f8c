#!/usr/bin/env bash
# Ceph RBD (label rbd, heavy: a real one-node cluster). Starts a monitor and one memstore OSD on
# 127.0.0.1 (auth none, pool size 1) in the test's scratch dir with ceph_cluster.sh, and stops
# them by their pid files at the end. Then:
#   1. the BackingStore contract and the RBD store's own tests (volume_rbd_test) on that cluster;
#   2. an image formatted by librbd (`rbd encryption format ... luks2`) opens in cryptmap
#      read-write; what cryptmap wrote reads back through librbd's own LUKS engine (python3-rbd
#      encryption_load), byte for byte;
#   3. `cryptmap luksFormat rbd:...` (LUKS2 defaults: payload at 16 MiB, a multiple of the 4 MiB
#      object size) loads in librbd, and data librbd writes through its engine reads back in
#      cryptmap;
#   4. luksFormat aligns the payload to the image's object size (LUKS1 on 4 MiB objects at 4 MiB,
#      which librbd then loads; LUKS2 on 32 MiB objects at 32 MiB); a snapshot opens read-only
#      with the data of its time;
#   5. ext4 on a loop device over the RBD-backed volume, e2fsck clean after close/reopen;
#   6. --ceph-conf/--ceph-id (no $CEPH_CONF) for a one-shot verb and for a daemon started
#      without it (the CLI pins the client into the argument); a missing file is a clear error;
#   7. fio verify with 4 jobs through the FUSE file, again after close and reopen in a foreground
#      daemon (open -f); every thread of either daemon (librbd's and librados's too, those the
#      foreground one's unlock started included) is an I/O flusher;
#   8. the exclusive lock: while cryptmap serves an image read-write, a second cryptmap open
#      fails naming the image and the lock holder, and a plain librbd client's write is refused;
#   9. kill -9 of the daemon under fsync'ed writes, 3 rounds: every acknowledged block intact
#      (the reopen waits until the cluster expires the killed daemon's lock).
# Prints how long the cluster took to start.
source "$(dirname "$0")/lib.sh"
source "$HERE/ceph_cluster.sh"
for tool in ceph-mon ceph-osd ceph rbd; do
  command -v "$tool" > /dev/null || { echo "SKIP: $tool not installed (ceph-mon ceph-osd ceph-common)"; exit 77; }
done
: "${RBD_STORE_TEST:?RBD_STORE_TEST must name the volume_rbd_test binary}"
PY=/usr/bin/python3  # Debian's python3-rbd lives in the system interpreter
watchdog 600
MiB=$((1 << 20))
C=$T/ceph
trap 'ceph_cluster_stop "$C"; cleanup' EXIT

note "one-node cluster"
t0=$(date +%s%N)
ceph_cluster_start "$C" 1G || fail "one-node Ceph cluster (logs: $C/log)"
note "cluster ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"

note "RBD store contract and tests"
CRYPTMAP_TEST_RBD_POOL=rbd CRYPTMAP_TEST_RBD_OSD_PID=$(cat "$C/run/osd.0.pid") timeout 300 "$RBD_STORE_TEST" --gtest_brief=1 || fail "volume_rbd_test"

P=$(keyfile pass "rbd passphrase")

note "librbd formats (luks2), cryptmap reads and writes, librbd reads back"
rbd create --size 64M rbd/enc
timeout 120 rbd encryption format rbd/enc luks2 "$P"
cm luksDump rbd:rbd/enc | grep -q "^Version:.*2" || fail "luksDump rbd:rbd/enc"
cm_open rbd:rbd/enc enc --key-file "$P"
pattern_write "$MNT/enc" 0 $((8 * MiB)) 21
cm_close enc
librbd_read() {  # librbd_read IMAGE OFFSET LENGTH OUT: plaintext through librbd's own LUKS engine
  "$PY" - "$@" "$P" <<'PYEOF'
import rados, rbd, sys
image, off, length, out, passfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
with rados.Rados(conffile="") as cluster, cluster.open_ioctx("rbd") as io, rbd.Image(io, image) as img:
    img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, open(passfile, "rb").read())
    open(out, "wb").write(img.read(off, length))
PYEOF
}
librbd_read enc 0 $((8 * MiB)) "$T/via-librbd"
pattern_check "$T/via-librbd" 0 $((8 * MiB)) 21 || fail "librbd does not read what cryptmap wrote"

note "cryptmap formats (luks2), librbd loads it and writes, cryptmap reads back"
rbd create --size 64M rbd/fresh
cm luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file "$P" rbd:rbd/fresh || fail "luksFormat rbd:rbd/fresh"
"$PY" - "$P" <<'PYEOF' || fail "librbd cannot load or write the image cryptmap formatted"
import rados, rbd, sys
data = bytes((i * 7 + 3) & 0xff for i in range(1 << 20))
with rados.Rados(conffile="") as cluster, cluster.open_ioctx("rbd") as io, rbd.Image(io, "fresh") as img:
    img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, open(sys.argv[1], "rb").read())
    img.write(data, 1 << 20)
    img.flush()
PYEOF
cm_open rbd:rbd/fresh fresh --key-file "$P"
"$PY" - "$MNT/fresh" <<'PYEOF' || fail "cryptmap does not read what librbd wrote"
import sys
data = bytes((i * 7 + 3) & 0xff for i in range(1 << 20))
with open(sys.argv[1], "rb") as f:
    f.seek(1 << 20)
    assert f.read(1 << 20) == data
PYEOF
cm_close fresh

note "luksFormat aligns the payload to the image's object size (as cryptsetup to a device's topology)"
rbd create --size 64M rbd/l1                      # 4 MiB objects: LUKS1's default 2 MiB would not load
cm luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 --key-file "$P" rbd:rbd/l1
cm luksDump rbd:rbd/l1 | grep -Eq '^Payload offset:[[:space:]]+8192$' ||
  fail "LUKS1 on 4 MiB objects: $(cm luksDump rbd:rbd/l1 | grep 'Payload offset')"
"$PY" - "$P" <<'PYEOF' || fail "librbd cannot load the LUKS1 image cryptmap formatted"
import rados, rbd, sys
with rados.Rados(conffile="") as cluster, cluster.open_ioctx("rbd") as io, rbd.Image(io, "l1") as img:
    img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS1, open(sys.argv[1], "rb").read())
    img.write(b"x" * 4096, 0)
PYEOF
rbd create --size 96M --object-size 32M rbd/o32
cm luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$P" rbd:rbd/o32
cm luksDump rbd:rbd/o32 | grep -Eq '^[[:space:]]+offset: 33554432 \[bytes\]' ||
  fail "LUKS2 on 32 MiB objects: $(cm luksDump rbd:rbd/o32 | grep 'offset:')"

note "snapshot: read-only, data of its time"
rbd snap create rbd/enc@s1
cm_open rbd:rbd/enc enc --key-file "$P"
pattern_write "$MNT/enc" 0 $((1 * MiB)) 22
cm_close enc
cm_open rbd:rbd/enc@s1 snap --key-file "$P" --readonly
pattern_check "$MNT/snap" 0 $((8 * MiB)) 21 || fail "the snapshot does not hold the data of its time"
set +e
dd if=/dev/zero of="$MNT/snap" bs=4096 count=1 conv=notrunc status=none 2>/dev/null; rc=$?
set -e
[[ $rc != 0 ]] || fail "a write to the snapshot's volume succeeded"
cm_close snap

note "ext4 over RBD, e2fsck after close/reopen"
cm_open rbd:rbd/enc enc --key-file "$P"
dev=$(losetup_attach "$MNT/enc")
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/fs"
mount "$dev" "$T/fs"; FSMNTS+=("$T/fs")
dd if=/dev/urandom of="$T/fs/big" bs=1M count=8 status=none conv=fsync
sum=$(sha256sum "$T/fs/big" | awk '{print $1}')
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
cm_close enc
cm_open rbd:rbd/enc enc --key-file "$P"
dev=$(losetup_attach "$MNT/enc")
e2fsck -fn "$dev" || fail "e2fsck after close/reopen over RBD"
mount -o ro "$dev" "$T/fs"; FSMNTS+=("$T/fs")
[[ "$(sha256sum "$T/fs/big" | awk '{print $1}')" == "$sum" ]] || fail "file changed over RBD"
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
cm_close enc
note "--ceph-conf / --ceph-id instead of \$CEPH_CONF, for one-shot verbs and for a daemon started without it"
for _ in $(seq 1 100); do [[ -z "$(daemon_pid)" ]] && break; sleep 0.1; done
[[ -z "$(daemon_pid)" ]] || fail "the daemon did not exit after its last close"
env -u CEPH_CONF "$CRYPTMAP" luksDump rbd:rbd/enc --ceph-conf "$CEPH_CONF" | grep -q "^Version:.*2" ||
  fail "luksDump with --ceph-conf"
set +e
env -u CEPH_CONF "$CRYPTMAP" luksDump rbd:rbd/enc --ceph-conf "$T/no.conf" > "$T/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -q "rbd:rbd/enc" "$T/out" && grep -qi "configuration" "$T/out" ||
  fail "a missing --ceph-conf: exit $rc, '$(cat "$T/out")'"
# A daemon started without the variable (by a local image's open) serves the next open.
truncate -s 24M "$T/local.img"
cm luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$P" "$T/local.img"
env -u CEPH_CONF "$CRYPTMAP" open --mount-dir "$MNT" "$T/local.img" local --key-file "$P"
record_fuse_conn
! tr '\0' '\n' < "/proc/$(daemon_pid)/environ" | grep -q '^CEPH_CONF=' ||
  fail "the daemon has CEPH_CONF: the test would prove nothing"
(cd "$C" && env -u CEPH_CONF "$CRYPTMAP" open --mount-dir "$MNT" rbd:rbd/enc enc --key-file "$P" \
  --ceph-conf ceph.conf --ceph-id admin) || fail "open with a relative --ceph-conf, served by a daemon without \$CEPH_CONF"
cm status enc --mount-dir "$MNT" | grep -q "rbd:rbd/enc:conf=$C/ceph.conf:id=admin" ||
  fail "status does not show the pinned client: $(cm status enc --mount-dir "$MNT")"
# The served (pinned) argument is still found as the image the user names: an offline
# reencryption of it is refused, not run under the daemon.
set +e
"$CRYPTMAP" reencrypt --batch-mode --force-offline-reencrypt --key-file "$P" --mount-dir "$MNT" rbd:rbd/enc > "$T/out" 2>&1; rc=$?
set -e
[[ $rc == 5 ]] && grep -q "is open in cryptmap's daemon" "$T/out" ||
  fail "reencrypt of the served, pinned rbd:rbd/enc: exit $rc, '$(cat "$T/out")'"
[[ $(blkid -p -o value -s TYPE "$MNT/enc") == ext4 ]] ||
  fail "the ext4 made over RBD does not show through a daemon without \$CEPH_CONF"
cm_close enc
cm_close local

note "fio verify (4 jobs) through the FUSE file over RBD, again after close and reopen (open -f)"
LD_PRELOAD=$(io_flusher_preload) cm_open rbd:rbd/enc enc --key-file "$P"
fio_verify_round "$MNT/enc" $((16 * MiB)) write 4M
io_flusher_check "$(daemon_pid)" "the daemon serving rbd:rbd/enc"
cm_close enc
# A foreground daemon (open -f) unlocks the image in the process that then serves it: librbd's
# and librados's threads of that unlock, and whatever else it starts, must be marked too.
LD_PRELOAD=$(io_flusher_preload) "$CRYPTMAP" open -f --mount-dir "$MNT" rbd:rbd/enc enc \
  --key-file "$P" 2> "$T/fg.err" &
fg=$!
for _ in $(seq 1 600); do [[ -e "$MNT/enc" ]] && break; kill -0 "$fg" 2>/dev/null || break; sleep 0.1; done
[[ -e "$MNT/enc" ]] || fail "the foreground daemon does not serve rbd:rbd/enc: $(cat "$T/fg.err")"
record_fuse_conn
fio_verify_round "$MNT/enc" $((16 * MiB)) check 4M
io_flusher_check "$fg" "the foreground daemon (open -f) serving rbd:rbd/enc"
cm_close enc
wait "$fg" || fail "the foreground daemon exited $?: $(cat "$T/fg.err")"

note "exclusive lock: a second writer (another daemon, a plain librbd client) cannot write underneath"
cm_open rbd:rbd/enc enc --key-file "$P"
set +e
"$CRYPTMAP" open --mount-dir "$T/second" rbd:rbd/enc enc2 --key-file "$P" > "$T/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -q "rbd:rbd/enc" "$T/out" && grep -q "exclusive lock" "$T/out" &&
  grep -Eq "held by client\.[0-9]+ at 127\.0\.0\.1" "$T/out" ||
  fail "a second read-write open of rbd:rbd/enc: exit $rc, '$(cat "$T/out")'"
note "refused as it should be (exit $rc): $(cat "$T/out")"
mountpoint -q "$T/second" && fusermount3 -u "$T/second"
"$PY" - <<'PYEOF' || fail "a plain librbd client wrote rbd/enc underneath cryptmap"
import rados, rbd
with rados.Rados(conffile="") as cluster, cluster.open_ioctx("rbd") as io, rbd.Image(io, "enc") as img:
    try:
        img.write(b"x" * 4096, 32 << 20)  # in the payload: a write that went through fails the test
    except rbd.ReadOnlyImage:
        raise SystemExit(0)
raise SystemExit("the write went through")
PYEOF
cm_close enc

note "kill -9 of the daemon under fsync'ed writes over RBD: nothing acknowledged is lost"
# The killed daemon keeps the image's exclusive lock until the cluster expires its watch (10 s
# in this cluster): the reopen waits for it.
export CRYPTMAP_RBD_LOCK_WAIT=60
rbd create --size 64M rbd/crash
cm luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file "$P" rbd:rbd/crash
for round in 1 2 3; do
  fsync_crash_round rbd:rbd/crash c 2048 $round --key-file "$P"
  cm_close c
done

note "whole test $(( ($(date +%s%N) - t0) / 1000000 )) ms"
echo "PASS"
