#!/usr/bin/env bash
# A LUKS2 volume whose ciphertext lives on an NBD server: nbdkit (file plugin, multi-conn) serves
# an image that cryptsetup formatted; cryptmap opens it by URI, ext4 goes on a loop device over
# the mapped file, files survive close/reopen and e2fsck -fn is clean. Byte for byte: the same
# image opened as a local file gives the same plaintext, and `cryptmap luksFormat` of an NBD URI
# writes a header that cryptsetup accepts (luksDump, --test-passphrase), as does a key added with
# `luksAddKey` over NBD. Then the server is
# killed while the volume is open: reads fail with EIO at once, an fsync of new data fails with
# EIO, nothing hangs, and close says the data could not be flushed. A write on a file opened
# O_DSYNC is one FUA write on the server (no flush), a write and an fsync are a write and a flush
# (nbdkit's log filter). Every thread of the daemon
# serving the volume is an I/O flusher (io_flusher_check).
source "$(dirname "$0")/lib.sh"
command -v nbdkit > /dev/null || { echo "SKIP: nbdkit not installed"; exit 77; }
watchdog 300
K=$(keyfile key "nbd passphrase")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((96 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"

# nbdkit_start NAME ARGS...: serves on $T/NAME.sock; prints nothing, sets NBD_PID
nbdkit_start() {
  local name=$1; shift
  rm -f "$T/$name.sock" "$T/$name.pid"
  nbdkit -f --exit-with-parent -U "$T/$name.sock" -P "$T/$name.pid" "$@" &
  NBD_PID=$!
  # The pid file is written once nbdkit accepts connections (the socket exists before that).
  for _ in $(seq 1 200); do [[ -s "$T/$name.pid" ]] && return 0; sleep 0.05; done
  fail "nbdkit $* did not start"
}
# The log filter records every request (durable writes below).
nbdkit_start disk --filter=log file "$img" logfile="$T/requests.log"
uri="nbd+unix:///?socket=$T/disk.sock"
# requests_since LINE: the requests logged after line LINE, one a line ("Write fua=1", "Flush").
requests_since() {
  tail -n +$(($1 + 1)) "$T/requests.log" | grep -oE ' (Write|Flush) id=[0-9]+( offset=[^ ]+ count=[^ ]+ fua=[01])?' |
    sed -E 's/ id=[0-9]+//; s/ offset=[^ ]+ count=[^ ]+//; s/^ //'
}

note "luksDump and open by URI"
cm luksDump "$uri" | grep -q "^Version:.*2" || fail "luksDump over NBD"
LD_PRELOAD=$(io_flusher_preload) cm_open "$uri" data --key-file "$K"
size=$(stat -c %s "$MNT/data")
[[ "$size" == $((80 * MiB)) ]] || fail "mapped size $size, expected $((80 * MiB))"
cm status data --mount-dir "$MNT" | grep -qF "$uri" || { cm status data --mount-dir "$MNT"; fail "status does not name the URI"; }

note "a write on a file opened O_DSYNC reaches the server as one FUA write, no flush; fsync flushes"
n0=$(wc -l < "$T/requests.log")
dd if=/dev/urandom of="$MNT/data" bs=4096 count=1 seek=100 oflag=direct,dsync conv=notrunc status=none
got=$(requests_since "$n0" | tr '\n' ' ')
[[ "$got" == "Write fua=1 " ]] || fail "an O_DSYNC write reached the server as: '$got'"
n0=$(wc -l < "$T/requests.log")
dd if=/dev/urandom of="$MNT/data" bs=4096 count=1 seek=101 oflag=direct conv=notrunc,fsync status=none
got=$(requests_since "$n0" | tr '\n' ' ')
[[ "$got" == "Write fua=0 Flush " ]] || fail "a write and an fsync reached the server as: '$got'"

dev=$(losetup_attach "$MNT/data")
mkfs.ext4 -q -F "$dev"
mkdir -p "$T/fs"
mount "$dev" "$T/fs"; FSMNTS+=("$T/fs")
mkdir "$T/fs/dir"
for i in $(seq 1 10); do head -c $((i * 53 * 1024)) /dev/urandom > "$T/fs/dir/f$i"; done
(cd "$T/fs/dir" && sha256sum f* > "$T/sums")
dd if=/dev/urandom of="$T/fs/big" bs=1M count=24 status=none conv=fsync
io_flusher_check "$(daemon_pid)" "the daemon serving $uri"
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
sha256sum "$MNT/data" | awk '{print $1}' > "$T/plain.nbd"
cm_close data

note "reopen over NBD, e2fsck, files intact"
cm_open "$uri" data --key-file "$K"
dev=$(losetup_attach "$MNT/data")
e2fsck -fn "$dev" || fail "e2fsck found errors after close/reopen over NBD"
mount -o ro "$dev" "$T/fs"; FSMNTS+=("$T/fs")
(cd "$T/fs/dir" && sha256sum -c --quiet "$T/sums") || fail "file contents changed"
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
cm_close data

note "the same ciphertext as a local file decrypts to the same plaintext"
kill "$NBD_PID"; wait "$NBD_PID" 2>/dev/null || true
cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "cryptsetup rejects the passphrase"
cm_open "$img" local --key-file "$K"
[[ "$(sha256sum "$MNT/local" | awk '{print $1}')" == "$(cat "$T/plain.nbd")" ]] \
  || fail "plaintext over NBD differs from the plaintext of the local image"
cm_close local

note "luksFormat over NBD: cryptsetup reads the header cryptmap wrote"
img2=$T/fresh.img
truncate -s $((40 * MiB)) "$img2"
nbdkit_start fresh file "$img2"
uri2="nbd+unix:///?socket=$T/fresh.sock"
cm luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file "$K" "$uri2" || fail "luksFormat over NBD"
cryptsetup luksDump "$img2" | grep -q "^Version:.*2" || fail "cryptsetup luksDump of the NBD-formatted image"
cryptsetup open --test-passphrase --key-file "$K" "$img2" || fail "cryptsetup rejects cryptmap's keyslot"
K2=$(keyfile key2 "second nbd passphrase")
cm luksAddKey --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$K" "$uri2" "$K2" \
  || fail "luksAddKey over NBD"
cryptsetup open --test-passphrase --key-file "$K2" "$img2" || fail "cryptsetup rejects the key added over NBD"
cm_open "$uri2" fresh --key-file "$K"
pattern_write "$MNT/fresh" 0 $((4 * MiB)) 11
pattern_check "$MNT/fresh" 0 $((4 * MiB)) 11 || fail "pattern over NBD"
cm_close fresh
kill "$NBD_PID"; wait "$NBD_PID" 2>/dev/null || true
cm_open "$img2" fresh --key-file "$K"
pattern_check "$MNT/fresh" 0 $((4 * MiB)) 11 || fail "pattern written over NBD, read from the file"
cm_close fresh

note "the server is killed while the volume is open: EIO, no hang"
nbdkit_start disk file "$img"
CRYPTMAP_NBD_TIMEOUT=5 cm_open "$uri" data --key-file "$K" --log-target file
kill -9 "$NBD_PID"; wait "$NBD_PID" 2>/dev/null || true
start=$SECONDS
set +e
out=$(dd if="$MNT/data" of=/dev/null bs=1M skip=40 count=4 iflag=direct 2>&1); rc=$?
set -e
[[ $rc != 0 && "$out" == *"Input/output error"* ]] || fail "read with the server gone: rc=$rc: $out"
(( SECONDS - start < 20 )) || fail "the failed read took $((SECONDS - start)) s"
# A write cannot be made durable any more: fsync must fail, never report success.
set +e
out=$(python3 - "$MNT/data" <<'PY' 2>&1
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"y" * 65536, 8 << 20)
try:
    os.fsync(fd)
    print("fsync succeeded")
except OSError as e:
    print("fsync failed:", e.strerror)
PY
); set -e
[[ "$out" == *"fsync failed: Input/output error"* ]] || fail "fsync with the server gone: $out"
(( SECONDS - start < 40 )) || fail "the failed fsync took $((SECONDS - start)) s"
# close says the data could not be flushed, and still unmounts.
set +e
cm_close data --force > "$T/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -q "flushing it failed" "$T/out" || { cat "$T/out"; fail "close did not report the failed flush (rc=$rc)"; }
for _ in $(seq 1 50); do mountpoint -q "$MNT" || break; sleep 0.1; done
mountpoint -q "$MNT" && fail "mount left behind"
grep -q "NBD .*connection .* lost" "$MNT.log" || fail "the daemon logged nothing about the lost server"
echo "PASS"
