#!/usr/bin/env bash
# LUKS2 --integrity (docs/integrity.md): cryptmap-made headers accepted by the real cryptsetup
# (luksDump, open --test-passphrase, the volume key size); the superblock + initial journal
# bytes of the worked example; open in direct mode (no journal) through FUSE for every
# composition; a flipped ciphertext byte, a flipped tag byte and two swapped blocks fail exactly
# their blocks with EIO, logged with the volume-relative sector; never-written blocks of a
# --integrity-no-wipe volume fail; discards refused; journal mode writes and replay on reopen;
# truncated image / damaged superblock refused; a detached header with --offset; ext4 over a
# loop device + e2fsck for one AEAD and one HMAC mode.
source "$(dirname "$0")/lib.sh"
watchdog 540
K=$(keyfile key "integrity passphrase")
MiB=$((1 << 20))
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
cmi() { "$CRYPTMAP" --log-target file "$@"; }
cmi_open() { cmi open --mount-dir "$MNT" "$@" && record_fuse_conn; }

note "the superblock and initial journal are byte for byte the documented ones"
img=$T/sb.img
truncate -s $((256 * MiB)) "$img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-xts-random --integrity hmac-sha256 \
  --integrity-no-wipe "$img" "$K" || fail "luksFormat --integrity"
got=$(python3 -c 'import hashlib, sys
f = open(sys.argv[1], "rb"); f.seek(16 << 20); print(hashlib.sha256(f.read(2031616)).hexdigest())' "$img")
[[ $got == 0a14de687fe6b3090450085a9778d3d77b2cd1abd2e51f7933009a4bdc219360 ]] \
  || fail "superblock + journal sha256 $got"
rm -f "$img"

# mode: cipher integrity cli-integrity vk-bits tag-bytes
MODES=("aes-xts-random hmac(sha256) hmac-sha256 768 48"
       "aes-xts-plain64 hmac(sha512) hmac-sha512 1024 64"
       "aes-gcm-random aead aead 256 28"
       "chacha20-random poly1305 poly1305 256 28")
for m in "${MODES[@]}"; do
  read -r cipher integ cli vkbits tag <<< "$m"
  note "$cipher + $integ: format, cryptsetup accepts the header, open, write, read, tamper"
  img=$T/$cli.img
  truncate -s $((40 * MiB)) "$img"
  cm luksFormat -q --type luks2 "${FAST[@]}" --cipher "$cipher" --integrity "$cli" \
    --integrity-no-journal "$img" "$K" || fail "luksFormat $cipher $cli"
  cryptsetup luksDump "$img" > "$T/dump" || fail "cryptsetup luksDump rejects the header"
  grep -q "cipher: $cipher" "$T/dump" || fail "luksDump: cipher"
  grep -qF "integrity: $integ" "$T/dump" || fail "luksDump: integrity"
  grep -q "Flags:.*no-journal" "$T/dump" && fail "luksFormat stored a no-journal flag (cryptsetup 2.6.1 does not)"
  cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "cryptsetup rejects the key"
  cryptsetup luksDump --dump-volume-key -q --key-file "$K" "$img" | grep -Eq "(MK|Volume key) bits:\s*$vkbits" \
    || fail "volume key is not $vkbits bits"
  cm luksDump "$img" | grep -qF "integrity: $integ" || fail "cryptmap luksDump: integrity"

  cmi_open "$img" v --key-file "$K" --integrity-no-journal
  cm status --mount-dir "$MNT" --json v > "$T/st.json"
  python3 - "$T/st.json" "$integ" "$tag" <<'PY' || fail "status --json integrity fields"
import json, sys
v = json.load(open(sys.argv[1]))["volumes"][0]
i = v["integrity"]
assert i["type"] == sys.argv[2] and i["tag_size"] == int(sys.argv[3]), i
assert i["journal"] is False and i["discards"] is False, i
PY
  size=$(stat -c %s "$MNT/v")
  # Wiped at format: every block reads as zeros.
  cmp -n "$size" "$MNT/v" /dev/zero || fail "the wiped volume does not read as zeros"
  pattern_write "$MNT/v" 0 $((4 * MiB)) 5
  head -c 12345 /dev/urandom > "$T/u"   # unaligned, across the end of interleave area 0
  dd if="$T/u" of="$MNT/v" bs=12345 seek=$((16 * MiB - 6000)) oflag=seek_bytes conv=notrunc \
    status=none || fail "unaligned write"
  fallocate -p -o 0 -l 1M "$MNT/v" 2> "$T/err" && fail "punch-hole (discard) was accepted"
  cm_close v
  cmi_open "$img" v --key-file "$K"
  pattern_check "$MNT/v" 0 $((4 * MiB)) 5 || fail "data changed across close/open"
  cmp <(dd if="$MNT/v" bs=12345 skip=$((16 * MiB - 6000)) count=1 iflag=skip_bytes status=none) \
    "$T/u" || fail "unaligned data changed"
  cm_close v

  # Tamper with the image: block 3's ciphertext, block 9's tag, blocks 20 and 30 swapped.
  python3 - "$img" "$tag" <<'PY' || fail "tampering"
import struct, sys
img, T = sys.argv[1], int(sys.argv[2])
f = open(img, "r+b")
start = 16 << 20
f.seek(start); sb = f.read(64)
assert sb[:8] == b"integrt\0"
js = struct.unpack_from("<I", sb, 12)[0]; l2spb = sb[28]; spb = 1 << l2spb
entry = (8 + 8 * spb + T + 7) // 8 * 8
ss = (8 * (504 // entry)) * spb + 8
initial = 8 + js * ss
mr = ((T << (15 - l2spb)) + 4095) // 4096 * 4096 // 512
def data(k): return (start // 512 + initial + mr + k * spb) * 512
def tag(k): return (start // 512 + initial) * 512 + k * T
def flip(at):
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 1]))
flip(data(3) + 77)
flip(tag(9) + 1)
f.seek(data(20)); d20 = f.read(4096); f.seek(tag(20)); t20 = f.read(T)
f.seek(data(30)); d30 = f.read(4096); f.seek(tag(30)); t30 = f.read(T)
f.seek(data(20)); f.write(d30); f.seek(tag(20)); f.write(t30)
f.seek(data(30)); f.write(d20); f.seek(tag(30)); f.write(t20)
PY
  rm -f "$MNT.log"
  cmi_open "$img" v --key-file "$K"
  bad=()
  for k in $(seq 0 63); do
    dd if="$MNT/v" of=/dev/null bs=4096 skip="$k" count=1 status=none 2> "$T/dd" || {
      grep -q "Input/output error" "$T/dd" || fail "block $k: not EIO: $(cat "$T/dd")"
      bad+=("$k")
    }
  done
  [[ "${bad[*]}" == "3 9 20 30" ]] || fail "failing blocks: '${bad[*]}', expected '3 9 20 30'"
  sleep 0.3
  for s in 24 72 160 240; do   # volume-relative 512-byte sectors of blocks 3, 9, 20, 30
    grep -q "INTEGRITY AEAD ERROR, sector $s\b" "$MNT.log" || fail "no log line for sector $s: $(cat "$MNT.log")"
  done
  cm_close v
  rm -f "$img"
done

note "512-byte sectors: format, open, unaligned write, read back after reopen"
img=$T/s512.img
truncate -s $((40 * MiB)) "$img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-xts-random --integrity hmac-sha256 \
  --integrity-no-journal --sector-size 512 "$img" "$K"
cryptsetup luksDump "$img" | grep -q "sector: 512 \[bytes\]" || fail "not a 512-byte sector volume"
cmi_open "$img" s --key-file "$K"
head -c 70001 /dev/urandom > "$T/u512"
dd if="$T/u512" of="$MNT/s" bs=70001 seek=1234567 oflag=seek_bytes conv=notrunc status=none
cm_close s
cmi_open "$img" s --key-file "$K"
cmp <(dd if="$MNT/s" bs=70001 skip=1234567 count=1 iflag=skip_bytes status=none) "$T/u512" \
  || fail "512-byte sector volume changed"
cm_close s
rm -f "$img"

note "the default wipe draws progress on a terminal, and nothing in a script"
img=$T/tty.img
truncate -s $((40 * MiB)) "$img"
echo YES | script -qec "'$CRYPTMAP' luksFormat --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher aes-gcm-random --integrity aead --integrity-no-journal '$img' '$K'" /dev/null > "$T/tty" \
  || fail "luksFormat --integrity on a terminal: $(cat "$T/tty")"
grep -q "Wiping $img: 100%" "$T/tty" || fail "no wipe progress on a terminal: $(tr '\r' '\n' < "$T/tty" | tail -3)"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-gcm-random --integrity aead \
  --integrity-no-journal "$img" "$K" > "$T/out" 2>&1 || fail "luksFormat: $(cat "$T/out")"
[[ ! -s "$T/out" ]] || fail "printed in a script: $(cat "$T/out")"
rm -f "$img"

note "--integrity-no-wipe: never-written blocks fail with EIO, written ones read back"
img=$T/nowipe.img
truncate -s $((40 * MiB)) "$img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-gcm-random --integrity aead \
  --integrity-no-journal --integrity-no-wipe "$img" "$K"
cmi_open "$img" v --key-file "$K"
dd if="$MNT/v" of=/dev/null bs=4096 count=1 status=none 2> /dev/null && fail "never-written block read"
dd if=/dev/urandom of="$T/blk" bs=8192 count=1 status=none
dd if="$T/blk" of="$MNT/v" bs=8192 seek=10 count=1 conv=notrunc status=none || fail "whole-block write"
cmp <(dd if="$MNT/v" bs=8192 skip=10 count=1 status=none) "$T/blk" || fail "written blocks differ"
dd if="$T/blk" of="$MNT/v" bs=100 seek=1 count=1 conv=notrunc status=none 2> /dev/null \
  && fail "partial write into a never-written block succeeded (no verified old contents)"
cm_close v
rm -f "$img"

note "journal mode (the cryptsetup default): journaled writes, replay on reopen"
img=$T/journal.img
truncate -s $((40 * MiB)) "$img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-xts-random --integrity hmac-sha256 "$img" "$K"
cryptsetup luksDump "$img" | grep -q "Flags:.*no-journal" && fail "journal volume carries no-journal"
cmi_open "$img" j --key-file "$K"
cmp -n $(stat -c %s "$MNT/j") "$MNT/j" /dev/zero || fail "journal mode: not zeros"
dd if=/dev/urandom of="$T/jblk" bs=4096 count=300 status=none
dd if="$T/jblk" of="$MNT/j" bs=4096 seek=7 conv=notrunc,fsync status=none || fail "journal-mode write"
cmp <(dd if="$MNT/j" bs=4096 skip=7 count=300 status=none) "$T/jblk" || fail "journal mode: read back differs"
cm_close j
cmi_open "$img" j --key-file "$K"
grep -q "dm-integrity journal replayed" "$MNT.log" || fail "reopen did not replay the journal"
cmp <(dd if="$MNT/j" bs=4096 skip=7 count=300 status=none) "$T/jblk" || fail "journal mode: differs after reopen"
cm_close j
cmi_open "$img" j --key-file "$K" --integrity-no-journal
cmp <(dd if="$MNT/j" bs=4096 skip=7 count=300 status=none) "$T/jblk" \
  || fail "journal-mode data differs when opened with --integrity-no-journal"
cm_close j
rm -f "$img"

note "a truncated image and a damaged superblock fail to open with clear errors"
img=$T/cut.img
truncate -s $((40 * MiB)) "$img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-gcm-random --integrity aead \
  --integrity-no-journal --integrity-no-wipe "$img" "$K"
truncate -s $((30 * MiB)) "$img"
expect_failure 1 "provided_data_sectors.*holds only" -- cm open --mount-dir "$MNT" --key-file "$K" "$img" c
printf 'x' | dd of="$img" bs=1 seek=$((16 * MiB + 8)) conv=notrunc status=none
expect_failure 1 "superblock: version.*unknown version" -- cm open --mount-dir "$MNT" --key-file "$K" "$img" c
rm -f "$img"

note "detached header, data at --offset in another file"
truncate -s $((40 * MiB)) "$T/data.img"
cm luksFormat -q --type luks2 "${FAST[@]}" --cipher aes-xts-random --integrity hmac-sha256 \
  --integrity-no-journal --header "$T/hdr.img" --offset 8192 "$T/data.img" "$K"
cryptsetup open --test-passphrase --key-file "$K" --header "$T/hdr.img" "$T/data.img" \
  || fail "cryptsetup rejects the detached header"
python3 -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(8192 * 512)
assert f.read(8) == b"integrt\0"' "$T/data.img" || fail "no superblock at the data offset of the data file"
cmi_open "$T/data.img" d --key-file "$K" --header "$T/hdr.img"
pattern_write "$MNT/d" 12288 $((2 * MiB)) 8
cm_close d
cmi_open "$T/data.img" d --key-file "$K" --header "$T/hdr.img"
pattern_check "$MNT/d" 12288 $((2 * MiB)) 8 || fail "detached-header volume changed"
cm_close d
rm -f "$T/data.img" "$T/hdr.img"

for m in "aes-gcm-random aead" "aes-xts-random hmac-sha256"; do
  read -r cipher cli <<< "$m"
  note "ext4 on a loop device over $cipher + $cli, e2fsck clean"
  img=$T/fs.img
  truncate -s $((128 * MiB)) "$img"
  cm luksFormat -q --type luks2 "${FAST[@]}" --cipher "$cipher" --integrity "$cli" \
    --integrity-no-journal "$img" "$K"
  cmi_open "$img" fs --key-file "$K"
  dev=$(losetup_attach "$MNT/fs")
  mkfs.ext4 -q -F "$dev"
  mkdir -p "$T/m"
  mount "$dev" "$T/m"; FSMNTS+=("$T/m")
  for i in $(seq 1 10); do head -c $((i * 53 * 1024)) /dev/urandom > "$T/m/f$i"; done
  dd if=/dev/urandom of="$T/m/big" bs=1M count=24 status=none conv=fsync
  (cd "$T/m" && sha256sum f* big > "$T/sums")
  umount "$T/m"; FSMNTS=()
  losetup_detach "$dev"
  cm_close fs
  cmi_open "$img" fs --key-file "$K"
  dev=$(losetup_attach "$MNT/fs")
  e2fsck -fn "$dev" || fail "e2fsck found errors ($cipher)"
  mount -o ro "$dev" "$T/m"; FSMNTS+=("$T/m")
  (cd "$T/m" && sha256sum -c --quiet "$T/sums") || fail "file contents changed ($cipher)"
  umount "$T/m"; FSMNTS=()
  losetup_detach "$dev"
  cm_close fs
  rm -f "$img"
done
echo "PASS"
