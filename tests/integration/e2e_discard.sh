#!/usr/bin/env bash
# Discards on conventional storage (cryptsetup semantics): without --allow-discards a punch-hole
# on the mapped file fails with EOPNOTSUPP and the image keeps every block; with it (and the
# warning cryptsetup's man page gives about leaking which blocks are unused) whole 512-byte
# sectors inside the range become holes in the image (SEEK_HOLE, du), partial sectors and
# everything outside keep their data, and cryptsetup still reads the header.
source "$(dirname "$0")/lib.sh"
watchdog 300
K=$(keyfile key "discard")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((16 * MiB + 32 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --sector-size 512 --key-file "$K" "$img"
off=$(cryptsetup luksDump "$img" | awk '/^Data segments:/ {s=1} s && /offset:/ {print $2; exit}')
[[ "$off" =~ ^[0-9]+$ ]] || fail "no data offset in luksDump"
cm_open "$img" d --key-file "$K"
pattern_write "$MNT/d" 0 $((32 * MiB)) 7
blocks() { stat -c %b "$img"; }

note "without --allow-discards: EOPNOTSUPP, nothing punched"
before=$(blocks)
fallocate --punch-hole --offset $MiB --length $((8 * MiB)) "$MNT/d" 2> "$T/err" && fail "punch-hole succeeded without --allow-discards"
grep -qi 'unsupported\|not supported' "$T/err" || fail "expected EOPNOTSUPP, got: $(cat "$T/err")"
[[ "$(blocks)" == "$before" ]] || fail "the image lost blocks although the discard was refused"
pattern_check "$MNT/d" 0 $((32 * MiB)) 7 || fail "data changed by a refused discard"
cm_close d

note "with --allow-discards: a warning, holes in the image, data outside the range intact"
cm_open "$img" d --key-file "$K" --allow-discards 2> "$T/open.err"
grep -q 'WARNING.*allow-discards' "$T/open.err" || fail "no warning about discards: $(cat "$T/open.err")"
lo=$((MiB + 100)); len=$((8 * MiB + 1000))
fallocate --punch-hole --offset $lo --length $len "$MNT/d" || fail "punch-hole failed with --allow-discards"
s0=$(( (lo + 511) / 512 * 512 )); s1=$(( (lo + len) / 512 * 512 ))
after=$(blocks)
(( after < before - (s1 - s0) / 512 + 64 )) || fail "image blocks $before -> $after: no hole of $(( (s1 - s0) / 512 )) sectors"
python3 - "$img" $((off + s0)) $((off + s1)) <<'PY' || fail "SEEK_HOLE finds no hole in the discarded range"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
lo, hi = int(sys.argv[2]), int(sys.argv[3])
h = os.lseek(fd, lo - 4096 if lo >= 4096 else 0, os.SEEK_HOLE)
sys.exit(0 if lo - 4096 <= h < hi else 1)
PY
# Whole sectors before and after (the partial head/tail sectors keep their bytes too).
pattern_check "$MNT/d" 0 $((s0 - 512)) 7 || fail "data before the discarded range changed"
pattern_check "$MNT/d" $s1 $((32 * MiB - s1)) 7 || fail "data after the discarded range changed"
python3 - "$MNT/d" $lo $s0 $((lo + len)) $s1 "$HERE" <<'PY' || fail "partial sectors at the edges changed"
import os, sys
sys.path.insert(0, sys.argv[6])
import pattern
path, lo, s0, end, s1 = sys.argv[1], *map(int, sys.argv[2:6])
fd = os.open(path, os.O_RDONLY)
head = os.pread(fd, lo - (s0 - 512), s0 - 512)
tail = os.pread(fd, end - s1, s1)
ok = head == pattern.region(7, s0 - 512, 512)[: lo - (s0 - 512)] and \
     tail == pattern.region(7, s1, 512)[: end - s1]
sys.exit(0 if ok else 1)
PY
cm_close d
cryptsetup luksDump "$img" > /dev/null || fail "cryptsetup cannot read the header after discards"
cryptsetup open --test-passphrase --key-file "$K" "$img" || fail "cryptsetup cannot unlock after discards"
echo "PASS"
