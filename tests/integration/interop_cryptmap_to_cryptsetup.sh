#!/usr/bin/env bash
# cryptmap -> cryptsetup: a pattern written through cryptmap's FUSE file on a detached-header
# volume decrypts with `cryptsetup reencrypt --decrypt` (cryptsetup's own userspace crypto), for
# 512- and 4096-byte sectors and for an unaligned write that forces read-modify-write.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "another passphrase")
MiB=$((1 << 20))

for ss in 512 4096; do
  note "detached header, sector size $ss"
  img=$T/d$ss.img hdr=$T/d$ss.hdr
  truncate -s $((16 * MiB)) "$img"
  cryptsetup luksFormat --type luks2 --header "$hdr" --sector-size "$ss" "${CS_FAST_PBKDF2[@]}" \
    --batch-mode --key-file "$K" "$img"
  cm_open "$img" "d$ss" --header "$hdr" --key-file "$K"
  pattern_write "$MNT/d$ss" 0 $((16 * MiB)) 11
  # An unaligned overwrite in the middle (RMW of partial sectors), with known content.
  printf 'UNALIGNED-WRITE-MARK' | dd of="$MNT/d$ss" bs=1 seek=$((5 * MiB + 1234)) conv=notrunc,fsync status=none
  cm_close "d$ss"
  cryptsetup reencrypt --decrypt --header "$hdr" --force-offline-reencrypt --batch-mode --key-file "$K" "$img"
  # Everything but the marked bytes is the pattern; the marked bytes are the marker.
  pattern_check "$img" 0 $((5 * MiB)) 11 || fail "sector size $ss: head differs after cryptsetup decrypt"
  pattern_check "$img" $((5 * MiB + 4096)) $((11 * MiB - 4096)) 11 || fail "sector size $ss: tail differs"
  got=$(dd if="$img" bs=1 skip=$((5 * MiB + 1234)) count=20 status=none)
  [[ "$got" == "UNALIGNED-WRITE-MARK" ]] || fail "sector size $ss: unaligned write lost ($got)"
  python3 - "$HERE" "$img" $((5 * MiB)) 1234 <<'PY' || fail "sector size $ss: bytes around the unaligned write changed"
import sys
sys.path.insert(0, sys.argv[1])
import pattern
img, base, mark = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
want = bytearray(pattern.region(11, base, 4096))
want[mark:mark + 20] = b"UNALIGNED-WRITE-MARK"
with open(img, "rb") as f:
    f.seek(base)
    sys.exit(0 if f.read(4096) == bytes(want) else 1)
PY
done
echo "PASS"
