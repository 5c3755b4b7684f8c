#!/usr/bin/env bash
# FileVault 2 (Core Storage) end to end (issue #15): cryptsetup's test image opened through the
# real FUSE mount; the sha256 of the whole logical volume must be the one cryptsetup's
# fvault2-compat-test expects; fvault2Dump (with and without the volume key) prints what
# cryptsetup prints; wrong password, damaged metadata and open without --type; a read-write
# round trip (data written through the mount reads back after reopening, metadata untouched) and
# fio verify with 4 jobs, checked again after a reopen.
source "$(dirname "$0")/lib.sh"
watchdog 300
tar -xJSf "$HERE/../data/fvault2-images.tar.xz" -C "$T"
IMG=$T/fvault2-images/small
WANT=2c662e36c0f7e2f5583e6a939bbcbdc660805692d0fccaa45ad4052beb3b8e18
printf heslo123 > "$T/pw"
printf wrong > "$T/wrong"

note "refusals first"
expect_failure 2 'No key available with this passphrase' -- \
  cm_open --type fvault2 --key-file "$T/wrong" "$IMG" bad
cp --sparse=always "$IMG" "$T/damaged"
printf 'XXXX' | dd of="$T/damaged" bs=1 seek=$((4096 + 300)) conv=notrunc status=none
expect_failure 1 'FVAULT2.*(CRC|checksum)' -- cm_open --type fvault2 --key-file "$T/pw" "$T/damaged" bad
expect_failure 1 'not a valid FVAULT2 device' -- cm_open --type fvault2 --key-file "$T/pw" "$T/pw" bad

note "fvault2Dump prints what cryptsetup prints"
diff <(cryptsetup fvault2Dump "$IMG") <(cm fvault2Dump "$IMG") || fail "fvault2Dump differs"
diff <(cryptsetup fvault2Dump --dump-volume-key -q --key-file "$T/pw" "$IMG") \
     <(cm fvault2Dump --dump-volume-key -q --key-file "$T/pw" "$IMG") \
  || fail "fvault2Dump --dump-volume-key differs"

note "the whole logical volume, read-only, with and without --type"
cm_open --type fvault2 --readonly --key-file "$T/pw" "$IMG" fv >/dev/null
got=$(sha256sum "$MNT/fv" | cut -d' ' -f1)
[[ "$got" == "$WANT" ]] || fail "sha256 $got, cryptsetup's test expects $WANT"
cm status fv --json --mount-dir "$MNT" | grep -q '"type": *"FVAULT2"' || fail "status --json type"
cm close fv --mount-dir "$MNT"
cm_open --readonly --key-file "$T/pw" "$IMG" auto >/dev/null
[[ "$(sha256sum "$MNT/auto" | cut -d' ' -f1)" == "$WANT" ]] || fail "auto-detected open differs"
cm close auto --mount-dir "$MNT"

note "read-write round trip"
cp --sparse=always "$IMG" "$T/rw"
head -c 1048576 /dev/urandom > "$T/pattern"
cm_open --type fvault2 --key-file "$T/pw" "$T/rw" rw >/dev/null
dd if="$T/pattern" of="$MNT/rw" bs=65536 seek=160 conv=notrunc,fsync status=none
cm close rw --mount-dir "$MNT"
diff <(cm fvault2Dump "$T/rw" | tail -n +2) <(cm fvault2Dump "$IMG" | tail -n +2) \
  || fail "metadata changed by a data write"
cm_open --type fvault2 --readonly --key-file "$T/pw" "$T/rw" rw >/dev/null
cmp <(dd if="$MNT/rw" bs=65536 skip=160 count=16 status=none) "$T/pattern" \
  || fail "data written through the mount did not read back"
cm close rw --mount-dir "$MNT"

note "fio verify (4 jobs), again after reopening"
cm_open --type fvault2 --key-file "$T/pw" "$T/rw" rw >/dev/null
fio_verify_round "$MNT/rw" $((32 << 20))
cm close rw --mount-dir "$MNT"
cm_open --type fvault2 --key-file "$T/pw" "$T/rw" rw >/dev/null
fio_verify_round "$MNT/rw" $((32 << 20)) check
cm close rw --mount-dir "$MNT"
diff <(cm fvault2Dump "$T/rw" | tail -n +2) <(cm fvault2Dump "$IMG" | tail -n +2) \
  || fail "metadata changed by the fio writes"
note "OK"
