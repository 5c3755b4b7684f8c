#!/usr/bin/env bash
# Online reencryption (docs/reencrypt.md §10) under an ext4 file system: a loop device over the
# FUSE file, ext4 mounted on it, files written, synced and read back (checksums) during the whole
# run; after it the header is plain LUKS2 under the new key, every file still reads back, and
# e2fsck -fn is clean, before and after a close and reopen of the volume.
source "$(dirname "$0")/lib.sh"
DATA=$((32 << 20))
source "$(dirname "$0")/reencrypt_lib.sh"
watchdog 180

new_image "$T/e.img"
ext4_mkfs "$T/e.img" e --key-file "$K"
cm_open --key-file "$K" "$T/e.img" e
dev=$(losetup_attach "$MNT/e")
mkdir -p "$T/fs"
mount "$dev" "$T/fs"; FSMNTS=("$T/fs")

# The writer: file after file (64-256 KiB of random data), synced, its sha256 recorded; every
# fifth file an earlier one is read back (dropping the page cache for it first) and checked.
cat > "$T/writer.sh" <<'EOF'
set -e
fs=$1 log=$2 i=0
while [[ ! -e "$fs/../stop" ]]; do
  i=$((i + 1))
  head -c $(( (64 + RANDOM % 193) * 1024 )) /dev/urandom > "$fs/f$((i % 40))"
  sync "$fs/f$((i % 40))"
  echo "$((i % 40)) $(sha256sum < "$fs/f$((i % 40))" | cut -d' ' -f1)" >> "$log"
  if ((i % 5 == 0)); then
    j=$((RANDOM % 40))
    want=$(awk -v j="$j" '$1 == j {h = $2} END {print h}' "$log")
    [[ -z "$want" ]] && continue
    dd if="$fs/f$j" iflag=nocache count=0 status=none 2>/dev/null || true
    [[ $(sha256sum < "$fs/f$j" | cut -d' ' -f1) == "$want" ]] || { echo "f$j differs"; exit 1; }
  fi
done
echo "$i files"
EOF
rm -f "$T/stop" "$T/files.log"
bash "$T/writer.sh" "$T/fs" "$T/files.log" > "$T/writer.out" 2>&1 &
wpid=$!
sleep 1
note "online reencryption (64 KiB hotzones) while ext4 is written and read"
cm reencrypt --batch-mode "${FAST[@]}" --key-file "$K" --mount-dir "$MNT" --key-size 256 \
  --hotzone-size 64k "$T/e.img" > "$T/run.out" 2>&1 || { cat "$T/run.out"; fail "the online reencryption failed"; }
kill -0 "$wpid" 2>/dev/null || { cat "$T/writer.out"; fail "the writer stopped during the run"; }
sleep 1
touch "$T/stop"
wait "$wpid" || { cat "$T/writer.out"; fail "the writer failed"; }
note "writer: $(cat "$T/writer.out")"
not_in_reencryption "$T/e.img" "ext4"
cryptsetup luksDump "$T/e.img" | grep -q "Cipher key:.*256 bits" || fail "luksDump does not show the new 256-bit key"

# verify_files: the last recorded checksum of every file matches what the file system reads.
verify_files() {
  python3 - "$T/fs" "$T/files.log" "$1" <<'PY'
import hashlib, sys
fs, log, what = sys.argv[1:]
last = {}
for line in open(log):
    n, h = line.split()
    last[n] = h
for n, h in last.items():
    got = hashlib.sha256(open(f"{fs}/f{n}", "rb").read()).hexdigest()
    assert got == h, f"{what}: f{n} differs"
print(f"{len(last)} files verified ({what})")
PY
}
verify_files "after the run" || fail "files differ after the run"
umount "$T/fs"; FSMNTS=()
e2fsck -fn "$dev" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck -fn not clean after the run"; }
losetup_detach "$dev"
cm_close e
cm_open --key-file "$K" "$T/e.img" e
dev=$(losetup_attach "$MNT/e")
e2fsck -fn "$dev" > "$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "e2fsck -fn not clean after reopen"; }
mount "$dev" "$T/fs"; FSMNTS=("$T/fs")
verify_files "after close and reopen" || fail "files differ after close and reopen"
umount "$T/fs"; FSMNTS=()
losetup_detach "$dev"
cm_close e
note "PASS"
