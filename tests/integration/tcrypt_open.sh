#!/usr/bin/env bash
# TCRYPT end to end (docs/tcrypt.md): every TrueCrypt/VeraCrypt image of cryptsetup's test archive
# (tests/data/tcrypt) that cryptmap supports is opened with `cryptmap open --type tcrypt` through a
# real FUSE mount, and blkid must read the FAT serial the archive documents from the served file
# (DEAD-BABE, hidden volumes CAFE-BABE). Then: writes round-trip through close/reopen on XTS,
# cascade and LRW volumes; tcryptDump matches real cryptsetup's where cryptsetup 2.6.1 can dump
# here; --veracrypt-query-pim reads the PIM after the passphrase; a wrong passphrase fails with
# exit 2 and mounts nothing (the time of the whole trial is reported, not asserted);
# --tcrypt-protect-hidden refuses writes into the hidden volume; the TrueCrypt 1.x-4.x CBC images
# (cascades, Blowfish, CAST5, 3DES) equal the independent reader tcrypt_cbc_reference.py's
# decryption. Streebog (vc_1-stribog512-*) opens. A foreground daemon (open -f) has every thread,
# TBB's workers of its unlock included, marked as an I/O flusher (io_flusher_check).
source "$(dirname "$0")/lib.sh"
watchdog 720
command -v blkid >/dev/null || fail "blkid (util-linux) is needed"
tar -xJSf "$HERE/../data/tcrypt/tcrypt-images.tar.xz" -C "$T"
I=$T/tcrypt-images
A=aaaaaaaaaaaa
B=bbbbbbbbbbbb
PW72=aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffffffffffff

# args_for IMAGE: the open options and the passphrase the archive's README gives for IMAGE.
# The KDF is restricted with --hash (and --disable-veracrypt for TrueCrypt images) only to keep
# the test fast; every cipher chain is still tried.
args_for() {
  local n=$1 hash
  ARGS=()
  PASS=$A
  hash=$(cut -d- -f2 <<<"$n")
  ARGS+=(--hash "$hash")
  [[ $n == tc* ]] && ARGS+=(--disable-veracrypt)
  [[ $n == [tv]ck_* ]] && ARGS+=(--key-file "$I/keyfile1" --key-file "$I/keyfile2")
  [[ $n == vck_1_nopw* ]] && PASS=
  [[ $n == vck_1_pw72* ]] && PASS=$PW72
  if [[ $n == vcpim_* ]]; then
    PASS=cccccccccccccccccccc
    ARGS+=(--veracrypt-pim "$(cut -d_ -f3 <<<"${n%%-*}")")
  fi
  [[ $n == sys_* ]] && ARGS+=(--tcrypt-system)
  return 0
}

# open_with PASS IMAGE NAME [options...]: open with PASS on stdin.
open_with() {
  local pass=$1
  shift
  printf '%s\n' "$pass" | cm_open "$@"
}

serial_of() { blkid -p -o value -s UUID "$@" 2>/dev/null || true; }
declare -A seen  # every image opened; each one of the archive must be (the end checks)

# open_check IMAGE PASS WANT_SERIAL [options...]
open_check() {
  local img=$1 pass=$2 want=$3
  shift 3
  seen[$img]=1
  printf '%s\n' "$pass" | cm_open "$I/$img" "$VOL" --type tcrypt "$@" >"$T/out$VOL" 2>&1 ||
    { cat "$T/out$VOL"; fail "open $img failed"; }
  local got
  got=$(serial_of "$MNT/$VOL")
  cm_close "$VOL"
  [[ $got == "$want" ]] || fail "$img: FAT serial '$got', expected $want"
}

# cbc_chain IMAGE: cryptsetup's chain name (key order) of a TrueCrypt CBC image, whose file name
# has VeraCrypt's display order (docs/tcrypt.md §5): aes-blowfish-serpent -> serpent-blowfish_le-aes.
cbc_chain() {
  local n=${1%-hidden}
  n=${n##*-cbc-}
  tr '-' '\n' <<<"$n" | tac | paste -sd- | sed 's/blowfish/blowfish_le/'
}

# wiped IMAGE: the archive kept only the header and the TrueCrypt < 6 hidden-header slot (the
# last 1536 bytes) of this image; every data sector is zero (docs/tcrypt.md §5.1).
wiped() { [[ $(head -c -1536 "$I/$1" | tail -c +513 | tr -d '\0' | wc -c) == 0 ]]; }

# cbc_check IMAGE PASS WANT_SERIAL [--tcrypt-hidden]: a TrueCrypt 1.x-4.x CBC image, checked
# against the independent reader tcrypt_cbc_reference.py: the served volume must equal its
# decryption byte for byte and show the serial; a wiped image gets a real FAT volume encrypted
# into a copy by the reader first (FAT_PLAIN / FAT_PLAIN_HIDDEN), which cryptmap must serve.
cbc_check() {
  local n=$1 pass=$2 want=$3 hid=${4:-} img=$I/$1 chain hash got ref=$T/ref$VOL
  chain=$(cbc_chain "$n")
  hash=$(cut -d- -f2 <<<"$n")
  seen[$n]=1
  if wiped "$n"; then
    cp "$I/$n" "$T/transplant$VOL"
    img=$T/transplant$VOL
    python3 "$HERE/tcrypt_cbc_reference.py" enc "$img" "$pass" "$hash" "$chain" \
      "$([[ -n $hid ]] && echo "$FAT_PLAIN_HIDDEN" || echo "$FAT_PLAIN")" ${hid:+--hidden} ||
      fail "$n: the reference could not write into its data"
    wiped_count=$((wiped_count + 1))
  fi
  python3 "$HERE/tcrypt_cbc_reference.py" dec "$img" "$pass" "$hash" "$chain" "$ref" ${hid:+--hidden} ||
    fail "$n: the reference could not decrypt it"
  printf '%s\n' "$pass" | cm_open "$img" "$VOL" --type tcrypt "${ARGS[@]}" $hid >"$T/out$VOL" 2>&1 ||
    { cat "$T/out$VOL"; fail "open $n failed"; }
  cmp -s "$MNT/$VOL" "$ref" || { cm_close "$VOL"; fail "$n: served volume differs from the reference's decryption"; }
  got=$(serial_of "$MNT/$VOL")
  cm_close "$VOL"
  [[ $got == "$want" ]] || fail "$n: FAT serial '$got', expected $want"
}

note "every supported image shows its FAT serial through the FUSE mount"
# One volume stays open throughout, so the daemon and its mount are started once.
open_with "$A" "$I/tc_4-sha512-xts-aes" keep --type tcrypt --hash sha512 --disable-veracrypt --readonly
# The real FAT volumes the wiped CBC images get: the reference's decryption of two CBC images
# that kept their data.
FAT_PLAIN=$T/fat_plain
FAT_PLAIN_HIDDEN=$T/fat_plain_hidden
python3 "$HERE/tcrypt_cbc_reference.py" dec "$I/tc_1-sha1-cbc-aes" "$A" sha1 aes "$FAT_PLAIN"
python3 "$HERE/tcrypt_cbc_reference.py" dec "$I/tc_2-ripemd160-cbc-aes-hidden" "$B" ripemd160 aes \
  "$FAT_PLAIN_HIDDEN" --hidden
[[ $(serial_of "$FAT_PLAIN") == DEAD-BABE && $(serial_of "$FAT_PLAIN_HIDDEN") == CAFE-BABE ]] ||
  fail "the reference does not read the CBC images' FAT volumes"
# open_every WORKER: opens every other image of the archive (worker 0 the even ones, 1 the odd),
# as volume v$WORKER with its own scratch files; what it opened goes to $T/opened.WORKER.
# Two workers, so the KDF trials of one open run on the other core while the other waits on I/O.
open_every() {
  local w=$1 i=0 path n opened=0 wiped_count=0
  VOL=v$w
  for path in "$I"/tc_* "$I"/tck_* "$I"/vc_* "$I"/vck_* "$I"/vcpim_*; do
    (((i++ % 2) == w)) || continue
    n=$(basename "$path")
    args_for "$n"
    if [[ $n == *-cbc-* && $n != *-whirlpool-* ]]; then  # hashlib has no Whirlpool: serial only
      cbc_check "$n" "$PASS" DEAD-BABE
      opened=$((opened + 1))
      if [[ $n == *-hidden ]]; then
        cbc_check "$n" "$B" CAFE-BABE --tcrypt-hidden
        opened=$((opened + 1))
      fi
      continue
    fi
    open_check "$n" "$PASS" DEAD-BABE "${ARGS[@]}"
    opened=$((opened + 1))
    if [[ $n == *-hidden ]]; then
      open_check "$n" "$B" CAFE-BABE "${ARGS[@]}" --tcrypt-hidden
      opened=$((opened + 1))
    fi
  done
  echo "$opened $wiped_count ${!seen[*]}" > "$T/opened.$w"
}
start=$(date +%s)
open_every 0 &
w0=$!
open_every 1 &
w1=$!
wait "$w0" || fail "worker 0 of the archive's opens failed"
wait "$w1" || fail "worker 1 of the archive's opens failed"
VOL=v
opened=0 wiped_count=0
for w in 0 1; do
  read -r o wc names < "$T/opened.$w"
  opened=$((opened + o)) wiped_count=$((wiped_count + wc))
  for n in $names; do seen[$n]=1; done
done
note "$opened volumes opened in $(($(date +%s) - start)) s ($wiped_count wiped CBC ones refilled by the reference)"
((opened >= 96)) || fail "only $opened volumes opened"
# The Blowfish and cascade CBC images and the cascade's hidden volume (docs/tcrypt.md §5.1).
((wiped_count == 11)) || fail "$wiped_count wiped CBC images, the archive has 11"

note "system encryption, as cryptsetup maps an image file: the encrypted area from the header's offset"
open_check sys_vc_1_mbr_part-sha256-xts-aes "$A" DEAD-BABE --hash sha256 --tcrypt-system
open_check sys_vc_1_gpt_part-sha512-xts-aes "$A" DEAD-BABE --hash sha512 --tcrypt-system
# The whole drive encrypted from sector 63 (after the boot track): the partition at sector 2048
# lies (2048 - 63) sectors into the mapping (cryptsetup maps it at 0 only through the partition
# device /dev/loopNp1, which a FUSE daemon has not got).
n=sys_vc_1_mbr_full-sha256-xts-aes
seen[$n]=1
printf '%s\n' "$A" | cm_open "$I/$n" v --type tcrypt --hash sha256 --tcrypt-system >/dev/null
[[ $(stat -c %s "$MNT/v") == $(($(stat -c %s "$I/$n") - 63 * 512)) ]] || fail "$n: mapping size"
[[ $(serial_of -O $(((2048 - 63) * 512)) "$MNT/v") == DEAD-BABE ]] || fail "$n: no FAT at its partition"
cm_close v

note "--tcrypt-whole-disk: the whole disk with its partition table, the encrypted area in place"
# Each: image, hash, first partition sector, partition table, first encrypted sector.
for c in "sys_vc_1_mbr_full-sha256-xts-aes sha256 2048 dos 63" \
  "sys_vc_1_mbr_part-sha256-xts-aes sha256 2048 dos 2048" "sys_vc_1_gpt_part-sha512-xts-aes sha512 67584 gpt 67584"; do
  read -r n hash part pttype enc <<<"$c"
  printf '%s\n' "$A" | cm_open "$I/$n" v --type tcrypt --hash "$hash" --tcrypt-system --tcrypt-whole-disk \
    --readonly >/dev/null || fail "$n: open --tcrypt-whole-disk"
  [[ $(stat -c %s "$MNT/v") == $(stat -c %s "$I/$n") ]] || fail "$n: the whole disk is not served"
  [[ $(blkid -p -o value -s PTTYPE "$MNT/v") == "$pttype" ]] || fail "$n: no $pttype partition table"
  [[ $(partx -g -o START "$MNT/v" | tr -d ' ' | grep -cx "$part") == 1 ]] || fail "$n: no partition at $part"
  loop=$(losetup_attach -r -o $((part * 512)) --sizelimit $((32768 * 512)) "$MNT/v")
  [[ $(serial_of "$loop") == DEAD-BABE ]] || fail "$n: the partition at sector $part does not show DEAD-BABE"
  losetup_detach "$loop"
  cmp -s -n $((enc * 512)) "$MNT/v" "$I/$n" || fail "$n: the plain area before the encrypted one changed"
  if cmp -s -n $(((enc + 1) * 512)) "$MNT/v" "$I/$n"; then fail "$n: sector $enc is not decrypted"; fi
  cm_close v
done

note "--tcrypt-whole-disk writes: the encrypted area under the volume key, the rest as plain bytes"
n=sys_vc_1_gpt_part-sha512-xts-aes
cp --sparse=always "$I/$n" "$T/disk"
printf '%s\n' "$A" | cm_open "$T/disk" v --type tcrypt --hash sha512 --tcrypt-system --tcrypt-whole-disk >/dev/null
pattern_write "$MNT/v" $((67584 * 512 + 8192)) 8192 31     # inside the encrypted partition 3
pattern_write "$MNT/v" $((100352 * 512)) 4096 32           # partition 4, not encrypted
cm_close v
pattern_check "$T/disk" $((100352 * 512)) 4096 32 || fail "$n: a plain-area write did not reach the image as is"
if pattern_check "$T/disk" $((67584 * 512 + 8192)) 8192 31 2>/dev/null; then fail "$n: the partition was written in clear"; fi
printf '%s\n' "$A" | cm_open "$T/disk" v --type tcrypt --hash sha512 --tcrypt-system >/dev/null
pattern_check "$MNT/v" $((67584 * 512 + 8192)) 8192 31 8192 || fail "$n: the write into the partition did not come back through the partition mapping"
[[ $(serial_of "$MNT/v") == DEAD-BABE ]] || fail "$n: the partition's boot sector was damaged"
cm_close v

note "writes round-trip through close and reopen (XTS, 3-cascade, LRW cascade)"
for n in vc_1-sha512-xts-aes tc_5-sha512-xts-serpent-twofish-aes tc_2-ripemd160-lrw-serpent-twofish-aes; do
  args_for "$n"
  before=$(sha256sum <"$I/$n")
  printf '%s\n' "$PASS" | cm_open "$I/$n" v --type tcrypt "${ARGS[@]}" >/dev/null
  pattern_write "$MNT/v" 4096 8192 17
  cm_close v
  [[ $(sha256sum <"$I/$n") != "$before" ]] || fail "$n: the image did not change"
  printf '%s\n' "$PASS" | cm_open "$I/$n" v --type tcrypt "${ARGS[@]}" >/dev/null
  pattern_check "$MNT/v" 4096 8192 17 || fail "$n: written data did not come back"
  [[ $(serial_of "$MNT/v") == DEAD-BABE ]] || fail "$n: boot sector damaged by a write after it"
  if [[ $n != vc_1-* ]]; then  # a cascade: status names the whole chain, as cryptsetup's status
    want=$(printf '%s\n' "$PASS" | cm tcryptDump "${ARGS[@]}" "$I/$n" |
      awk -F'\t' '/^Cipher chain/ {c=$2} /^Cipher mode/ {m=$2} END {print c "-" m}')
    got=$(cm status v --mount-dir "$MNT" | awk '$1 == "cipher:" {print $2}')
    [[ $got == "$want" && $got == *twofish* ]] || fail "$n: status shows cipher '$got', tcryptDump '$want'"
  fi
  cm_close v
done

note "--tcrypt-protect-hidden: the outer volume refuses writes into the hidden one"
n=tc_5-sha512-xts-aes-hidden
TC=(--type tcrypt --hash sha512 --disable-veracrypt)
outer=$(printf '%s\n' "$A" | cm tcryptDump "${TC[@]:2}" "$I/$n" | awk '/MK offset/ {print $3}')
hidden=$(printf '%s\n' "$B" | cm tcryptDump "${TC[@]:2}" --tcrypt-hidden "$I/$n" | awk '/MK offset/ {print $3}')
guard=$((hidden - outer))
cp "$I/$n" "$T/unprotected"
printf '%s\n%s\n' "$A" "$B" | cm_open "$I/$n" v "${TC[@]}" --tcrypt-protect-hidden >/dev/null
dd if=/dev/urandom of="$MNT/v" bs=4096 seek=1 count=1 conv=notrunc status=none ||
  fail "a write before the hidden volume was refused"
if dd if=/dev/zero of="$MNT/v" bs=512 seek=$((guard / 512)) count=1 conv=notrunc status=none; then
  fail "a write into the hidden volume was accepted"
fi
if dd if=/dev/urandom of="$MNT/v" bs=4096 seek=1 count=1 conv=notrunc status=none; then
  fail "writes after the refused one were accepted"
fi
cm_close v
open_check "$n" "$B" CAFE-BABE "${TC[@]:2}" --tcrypt-hidden
note "... and without it, the same write destroys the hidden volume"
printf '%s\n' "$A" | cm_open "$T/unprotected" v "${TC[@]}" >/dev/null
dd if=/dev/zero of="$MNT/v" bs=512 seek=$((guard / 512)) count=1 conv=notrunc status=none
cm_close v
printf '%s\n' "$B" | cm_open "$T/unprotected" v "${TC[@]}" --tcrypt-hidden >/dev/null
[[ $(serial_of "$MNT/v") != CAFE-BABE ]] || fail "overwriting the hidden volume's first sector changed nothing"
cm_close v

note "--readonly refuses writes"
args_for vc_1-sha512-xts-aes
printf '%s\n' "$A" | cm_open "$I/vc_1-sha512-xts-aes" v --type tcrypt "${ARGS[@]}" --readonly >/dev/null
if dd if=/dev/zero of="$MNT/v" bs=512 count=1 conv=notrunc 2>/dev/null; then fail "write to a read-only volume"; fi
cm_close v
note "legacy CBC volumes are served read-only"
args_for tc_1-sha1-cbc-aes
printf '%s\n' "$A" | cm_open "$I/tc_1-sha1-cbc-aes" v --type tcrypt "${ARGS[@]}" 2>"$T/out" >/dev/null
grep -q "opened read-only" "$T/out" || fail "no read-only notice for a CBC volume"
if dd if=/dev/zero of="$MNT/v" bs=512 count=1 conv=notrunc 2>/dev/null; then fail "write to a CBC volume"; fi
cm_close v

note "--veracrypt-query-pim: the PIM is asked after the passphrase (next line of stdin), as cryptsetup"
n=vcpim_1_1234-sha256-xts-aes
printf '%s\n%s\n' cccccccccccccccccccc 1234 | cm tcryptDump --veracrypt-query-pim -h sha256 "$I/$n" >"$T/q.txt" \
  || fail "$n: tcryptDump --veracrypt-query-pim with PIM 1234"
grep -q "^Cipher chain:.*aes" "$T/q.txt" || fail "$n: no header from --veracrypt-query-pim"
for bad in 12x 0 4294967296 ""; do
  expect_exit 1 "Invalid PIM value" -- \
    sh -c "printf '%s\n%s\n' cccccccccccccccccccc '$bad' | '$CRYPTMAP' tcryptDump --veracrypt-query-pim '$I/$n'"
done
expect_exit 1 "mutually exclusive" -- cm tcryptDump --veracrypt-query-pim --veracrypt-pim 5 "$I/$n"
expect_exit 1 "only for VeraCrypt" -- cm tcryptDump --veracrypt-query-pim --disable-veracrypt "$I/$n"

note "tcryptDump equals cryptsetup's (header and volume key)"
for n in tc_4-sha512-xts-aes tc_5-sha512-xts-aes-hidden; do
  printf '%s' "$A" | cryptsetup tcryptDump -h sha512 -c aes "$I/$n" >"$T/cs.txt"
  printf '%s\n' "$A" | cm tcryptDump -h sha512 -c aes --disable-veracrypt "$I/$n" >"$T/cm.txt"
  diff "$T/cs.txt" "$T/cm.txt" || fail "$n: tcryptDump differs from cryptsetup's"
  printf '%s' "$A" | cryptsetup tcryptDump -h sha512 -c aes --dump-volume-key --batch-mode "$I/$n" >"$T/cs.txt"
  printf '%s\n' "$A" | cm tcryptDump -h sha512 -c aes --disable-veracrypt --dump-volume-key --batch-mode "$I/$n" >"$T/cm.txt"
  diff "$T/cs.txt" "$T/cm.txt" || fail "$n: tcryptDump --dump-volume-key differs from cryptsetup's"
  # As cryptsetup's yesDialog: no question when stdin is not a terminal, so no --batch-mode needed.
  printf '%s\n' "$A" | cm tcryptDump -h sha512 -c aes --disable-veracrypt --dump-volume-key "$I/$n" >"$T/cm2.txt"
  diff "$T/cs.txt" "$T/cm2.txt" || fail "$n: tcryptDump --dump-volume-key from a pipe asked a question"
done
printf '%s' "$B" | cryptsetup tcryptDump -h sha512 -c aes --tcrypt-hidden "$I/tc_5-sha512-xts-aes-hidden" >"$T/cs.txt"
printf '%s\n' "$B" | cm tcryptDump -h sha512 -c aes --tcrypt-hidden "$I/tc_5-sha512-xts-aes-hidden" >"$T/cm.txt"
diff "$T/cs.txt" "$T/cm.txt" || fail "hidden tcryptDump differs from cryptsetup's"

cm_close keep
note "tcryptDump of the CBC cascades and 64-bit ciphers: cryptsetup's chain, mode and key size"
TAB=$'\t'
for c in "tc_2-ripemd160-cbc-aes-blowfish-serpent serpent-blowfish_le-aes cbc-tcrypt 1216" \
  "tc_2-ripemd160-cbc-serpent-twofish-aes aes-twofish-serpent cbci-tcrypt 1024" \
  "tc_1-sha1-cbc-des3_ede des3_ede cbc-tcw 384"; do
  read -r n chain mode bits <<<"$c"
  args_for "$n"
  printf '%s\n' "$PASS" | cm tcryptDump "${ARGS[@]}" "$I/$n" >"$T/d.txt" || fail "$n: tcryptDump"
  grep -qx "Cipher chain:${TAB}$chain" "$T/d.txt" && grep -qx "Cipher mode:${TAB}$mode" "$T/d.txt" &&
    grep -qx "MK bits:       ${TAB}$bits" "$T/d.txt" || { cat "$T/d.txt"; fail "$n: tcryptDump"; }
done

note "a foreground daemon (open -f): the threads its TCRYPT unlock started are I/O flushers too"
# The unlock's KDF trial runs on TBB's workers, which live on in the process that then serves the
# volume (docs/architecture.md §4.1).
mountpoint -q "$MNT" && fail "a daemon still serves $MNT"
n=vc_1-sha512-xts-aes
args_for "$n"
printf '%s\n' "$PASS" | LD_PRELOAD=$(io_flusher_preload) "$CRYPTMAP" open -f --mount-dir "$MNT" \
  "$I/$n" v --type tcrypt "${ARGS[@]}" 2>"$T/fg.err" &
fg=$!
for _ in $(seq 1 600); do [[ -e "$MNT/v" ]] && break; kill -0 "$fg" 2>/dev/null || break; sleep 0.1; done
[[ -e "$MNT/v" ]] || fail "the foreground daemon does not serve $n: $(cat "$T/fg.err")"
record_fuse_conn
[[ $(serial_of "$MNT/v") == DEAD-BABE ]] || fail "$n: FAT serial through the foreground daemon"
io_flusher_check "$fg" "the foreground daemon (open -f) serving $n"
cm_close v
wait "$fg" || fail "the foreground daemon exited $?: $(cat "$T/fg.err")"

note "--tcrypt-whole-disk without --tcrypt-system is refused before the passphrase is asked"
expect_failure 1 "needs --tcrypt-system" -- \
  open_with "$A" "$I/sys_vc_1_mbr_part-sha256-xts-aes" v --type tcrypt --tcrypt-whole-disk

note "a wrong passphrase: exit 2, nothing mounted, the whole trial in bounded time"
start=$(date +%s%N)
expect_failure 2 "No device header detected with this passphrase.*vc_1-sha512-xts-aes" -- \
  open_with wrong "$I/vc_1-sha512-xts-aes" v --type tcrypt
ms=$((($(date +%s%N) - start) / 1000000))
note "cryptmap: full trial of a wrong passphrase took $ms ms on $(nproc) cores (not asserted)"
expect_failure 1 "Unknown device type" -- cm_open "$I/vc_1-sha512-xts-aes" v --type truecrypt
note "every image of the archive was opened"
for path in "$I"/*; do
  n=$(basename "$path")
  [[ $n == keyfile* || $n == README ]] && continue
  [[ -n ${seen[$n]:-} ]] || fail "image $n was not opened"
done
echo PASS
