#!/usr/bin/env bash
# Ceph RBD (label rbd): LUKS1 interop with librbd, the key verbs on an rbd: image, and a stalled
# OSD. Starts its own one-node cluster (ceph_cluster.sh; the monitor on free ports) and stops it
# by its pid files. Then:
#   1. an image formatted by librbd (`rbd encryption format ... luks1`, with few PBKDF2
#      iterations by rbd_fast_kdf_shim.c, RBD_FAST_KDF_SHIM) opens in cryptmap
#      read-write; what cryptmap writes reads back through librbd's own LUKS1 engine (python3-rbd
#      encryption_load) and what librbd writes through it reads back in cryptmap, byte for byte;
#   2. luksAddKey, open --test-passphrase, luksChangeKey, luksRemoveKey and luksKillSlot on the
#      rbd: image; librbd then loads it with the changed passphrase only;
#   3. the OSD stopped (SIGSTOP, by its pid file) under a served volume, CRYPTMAP_RBD_TIMEOUT=5:
#      a read fails with EIO, a write followed by fsync fails (the flush was not acknowledged),
#      each within librados's bound (the commands are run under `timeout`, a hang fails the test),
#      the daemon logs the timeout naming the image; close of a volume with an unflushed write
#      exits 1 saying the flush failed; with the OSD running again everything fsynced before
#      the stall reads back intact.
# Prints its time.
source "$(dirname "$0")/lib.sh"
source "$HERE/ceph_cluster.sh"
for tool in ceph-mon ceph-osd ceph rbd; do
  command -v "$tool" > /dev/null || { echo "SKIP: $tool not installed (ceph-mon ceph-osd ceph-common)"; exit 0; }
done
PY=/usr/bin/python3  # Debian's python3-rbd lives in the system interpreter
watchdog 400
MiB=$((1 << 20))
C=$T/ceph
# The OSD must never stay stopped: continue it before stopping the cluster.
trap 'osd_cont; ceph_cluster_stop "$C"; cleanup' EXIT
osd_cont() { [[ -f "$C/run/osd.0.pid" ]] && kill -CONT "$(cat "$C/run/osd.0.pid")" 2>/dev/null; true; }

t0=$(date +%s%N)
# step WHAT: a note with the seconds since the start (where the test spends its time).
step() { note "[$(( ($(date +%s%N) - t0) / 1000000000 )) s] $*"; }
ceph_cluster_start "$C" 1G || fail "one-node Ceph cluster (logs: $C/log)"
note "cluster ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
P=$(keyfile pass "rbd passphrase")
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)

# librbd_io IMAGE luks1|luks2 PASSFILE read|write OFFSET LENGTH FILE: through librbd's own LUKS
# engine, reads the plaintext into FILE or writes FILE's bytes.
librbd_io() {
  "$PY" - "$@" <<'PYEOF'
import rados, rbd, sys
image, fmt, passfile, op, off, length, path = sys.argv[1:8]
off, length = int(off), int(length)
kind = rbd.RBD_ENCRYPTION_FORMAT_LUKS1 if fmt == "luks1" else rbd.RBD_ENCRYPTION_FORMAT_LUKS2
with rados.Rados(conffile="") as cluster, cluster.open_ioctx("rbd") as io, rbd.Image(io, image) as img:
    img.encryption_load(kind, open(passfile, "rb").read())
    if op == "read":
        open(path, "wb").write(img.read(off, length))
    else:
        img.write(open(path, "rb").read(length), off)
        img.flush()
PYEOF
}

step "librbd formats (luks1), cryptmap reads and writes, librbd reads back, and the reverse"
rbd create --size 64M rbd/l1
# libcryptsetup (under librbd) would benchmark PBKDF2 and give the keyslot 2 s of CPU time, and
# the unlock below another 2 s: on the loaded 2-core machine 30-40 s of the test. The shim has
# librbd format with its own tests' settings instead (PBKDF2-SHA256, 1000 iterations; the rest
# of the header is librbd's as ever).
LD_PRELOAD=${RBD_FAST_KDF_SHIM:-} timeout 120 rbd encryption format rbd/l1 luks1 "$P" ||
  fail "rbd encryption format luks1"
step "formatted by librbd"
cm luksDump rbd:rbd/l1 > "$T/dump" || fail "luksDump rbd:rbd/l1"
grep -q "^Version:.*1" "$T/dump" || fail "not LUKS1: $(cat "$T/dump")"
grep -Eq "^[[:space:]]+Iterations:[[:space:]]+1000$" "$T/dump" ||
  note "librbd's keyslot has $(grep -m1 -E '^[[:space:]]+Iterations:' "$T/dump" | awk '{print $2}') iterations (RBD_FAST_KDF_SHIM '${RBD_FAST_KDF_SHIM:-}' not in effect): slow unlocks"
# cryptmap unlocks librbd's keyslot and rewrites it (same passphrase, same volume key, librbd's
# header and payload otherwise untouched); librbd loads the result below.
cm luksChangeKey "${FAST[@]}" --key-file "$P" rbd:rbd/l1 "$P" || fail "luksChangeKey on librbd's LUKS1 image"
step "keyslot rewritten"
cm_open rbd:rbd/l1 l1 --key-file "$P"
pattern_write "$MNT/l1" 0 $((6 * MiB)) 31
cm_close l1
step "written by cryptmap"
librbd_io l1 luks1 "$P" read 0 $((6 * MiB)) "$T/via-librbd"
pattern_check "$T/via-librbd" 0 $((6 * MiB)) 31 || fail "librbd (LUKS1) does not read what cryptmap wrote"
head -c $((3 * MiB)) /dev/urandom > "$T/librbd-data"
librbd_io l1 luks1 "$P" write $((5 * MiB)) $((3 * MiB)) "$T/librbd-data"
step "written by librbd"
cm_open rbd:rbd/l1 l1 --key-file "$P" --readonly
cmp <(dd if="$MNT/l1" bs=1M skip=5 count=3 status=none) "$T/librbd-data" ||
  fail "cryptmap does not read what librbd (LUKS1) wrote"
pattern_check "$MNT/l1" 0 $((5 * MiB)) 31 || fail "cryptmap's data before librbd's write changed"
cm_close l1

step "key verbs on an rbd: image"
P2=$(keyfile pass2 "second passphrase")
P3=$(keyfile pass3 "third passphrase")
rbd create --size 64M rbd/keys
cm luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$P" rbd:rbd/keys
cm luksAddKey "${FAST[@]}" --key-file "$P" rbd:rbd/keys "$P2" || fail "luksAddKey rbd:rbd/keys"
cm open --test-passphrase rbd:rbd/keys --key-file "$P2" || fail "--test-passphrase with the added key"
cm luksChangeKey "${FAST[@]}" --key-file "$P2" rbd:rbd/keys "$P3" || fail "luksChangeKey rbd:rbd/keys"
cm open --test-passphrase rbd:rbd/keys --key-file "$P3" || fail "--test-passphrase with the changed key"
expect_failure 2 "No key available" -- cm open --test-passphrase rbd:rbd/keys --key-file "$P2"
"$PY" - "$P3" "$P2" <<'PYEOF' || fail "librbd does not load the image with the changed key alone"
import rados, rbd, sys
with rados.Rados(conffile="") as cluster, cluster.open_ioctx("rbd") as io:
    with rbd.Image(io, "keys") as img:
        img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, open(sys.argv[1], "rb").read())
    with rbd.Image(io, "keys") as img:
        try:
            img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, open(sys.argv[2], "rb").read())
        except rbd.Error:
            raise SystemExit(0)
raise SystemExit("the replaced passphrase still loads")
PYEOF
cm luksRemoveKey rbd:rbd/keys "$P3" || fail "luksRemoveKey rbd:rbd/keys"
expect_failure 2 "No key available" -- cm open --test-passphrase rbd:rbd/keys --key-file "$P3"
cm luksAddKey "${FAST[@]}" --key-file "$P" --key-slot 5 rbd:rbd/keys "$P2"
cm luksKillSlot --batch-mode rbd:rbd/keys 5 || fail "luksKillSlot rbd:rbd/keys 5"
expect_failure 2 "No key available" -- cm open --test-passphrase rbd:rbd/keys --key-file "$P2"
cm open --test-passphrase rbd:rbd/keys --key-file "$P" || fail "the first key after the verbs"
cm luksDump rbd:rbd/keys | grep -Eq '^  0: luks2' || fail "slot 0 gone: $(cm luksDump rbd:rbd/keys)"

step "a stalled OSD: EIO within librados's bound, fsync fails, close reports the unflushed write"
rbd create --size 64M rbd/f
cm luksFormat --batch-mode --type luks2 "${FAST[@]}" --key-file "$P" rbd:rbd/f
for _ in $(seq 1 100); do [[ -z "$(daemon_pid)" ]] && break; sleep 0.1; done
[[ -z "$(daemon_pid)" ]] || fail "the daemon did not exit after its last close"
# The daemon this open starts has the 5 s timeout (its environment), logging to $MNT.log.
CRYPTMAP_RBD_TIMEOUT=5 cm_open rbd:rbd/f f --key-file "$P" --log-target file
pattern_write "$MNT/f" 0 $((2 * MiB)) 41
sync "$MNT/f"
# Reopened (a new daemon, nothing cached), so the read below must go to the OSD: the range was
# written (librbd's object map answers reads of objects never written without the OSD).
cm_close f
old_daemon=$(daemon_pid || true)
for _ in $(seq 1 600); do [[ -z "$(daemon_pid)" ]] && break; sleep 0.1; done
[[ -z "$(daemon_pid)" ]] || fail "the daemon ($old_daemon) did not exit within 60 s of its last close"
CRYPTMAP_RBD_TIMEOUT=5 cm_open rbd:rbd/f f --key-file "$P" --log-target file
osd=$(cat "$C/run/osd.0.pid")
kill -STOP "$osd"
step "OSD $osd stopped"
# An O_DIRECT read of written sectors not read since the open fails with EIO.
set +e
timeout 60 dd if="$MNT/f" of=/dev/null bs=64K count=1 skip=16 iflag=direct status=none 2> "$T/read.err"; rc=$?
set -e
[[ $rc != 124 ]] || fail "a read hung with the OSD stopped (no EIO after 60 s)"
# (Seen once, at load 24 beside rbd_cluster, not again in nine runs: the read succeeded. What
# the failure prints is there to find out why: the daemons, the OSD's state, the daemon's log.)
[[ $rc != 0 ]] && grep -q "Input/output error" "$T/read.err" ||
  fail "a read with the OSD stopped: exit $rc, '$(cat "$T/read.err")'; daemon before the reopen" \
    "${old_daemon:-none}, now $(daemon_pid); OSD $osd: $(ps -o stat= -p "$osd"); daemon log:" \
    "$(tail -n 6 "$MNT.log")"
step "read: $(cat "$T/read.err")"
# A write and its fsync: the write may complete into librbd's cache, the fsync must not.
set +e
timeout 60 dd if=/dev/urandom of="$MNT/f" bs=4K count=1 seek=1000 oflag=direct conv=notrunc,fsync \
  status=none 2> "$T/write.err"; rc=$?
set -e
[[ $rc != 124 ]] || fail "write + fsync hung with the OSD stopped (no EIO after 60 s)"
[[ $rc != 0 ]] && grep -q "Input/output error" "$T/write.err" ||
  fail "write + fsync with the OSD stopped: exit $rc, '$(cat "$T/write.err")'"
step "write + fsync: $(cat "$T/write.err")"
grep -Eq "RBD rbd:rbd/f.*(timed out|not answered)" "$MNT.log" ||
  fail "the daemon logged no timeout naming the image: $(tail -n 8 "$MNT.log")"
grep -E "RBD rbd:rbd/f.*(timed out|not answered)" "$MNT.log" | head -n 2 | sed 's/^/   log: /' || true
# A write not fsynced, then close: the close's flush cannot be acknowledged.
dd if=/dev/urandom of="$MNT/f" bs=4K count=1 seek=1100 oflag=direct conv=notrunc status=none 2>/dev/null || true
set +e
timeout 120 "$CRYPTMAP" close --mount-dir "$MNT" f > "$T/close.out" 2>&1; rc=$?
set -e
[[ $rc != 124 ]] || fail "close hung with the OSD stopped"
[[ $rc == 1 ]] && grep -qi "flush" "$T/close.out" ||
  fail "close with an unflushed write and the OSD stopped: exit $rc, '$(cat "$T/close.out")'"
step "close: exit $rc, $(head -n 1 "$T/close.out")"
kill -CONT "$osd"
step "OSD running again"
[[ ! -e "$MNT/f" ]] || fail "the volume is still served after close"
# The daemon's store may still be closing (it keeps the image's exclusive lock until then).
export CRYPTMAP_RBD_LOCK_WAIT=60
cm_open rbd:rbd/f f --key-file "$P" --readonly
pattern_check "$MNT/f" 0 $((2 * MiB)) 41 || fail "data fsynced before the stall is not intact"
cm_close f

note "whole test $(( ($(date +%s%N) - t0) / 1000000 )) ms"
echo "PASS"
