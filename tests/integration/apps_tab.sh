#!/usr/bin/env bash
# `cryptmap tab-open` / `tab-close` with a crypttab-syntax table: all entries but noauto ones,
# readonly and key files honoured, already-open entries skipped, a named noauto entry opened,
# nofail failures tolerated, crypttab's performance flags applied, a TrueCrypt entry opened with
# its passphrase file (TrueCrypt headers only unless tcrypt-veracrypt), a broken table opens
# nothing and names the line.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "tab passphrase")
MiB=$((1 << 20))
for n in a b c; do
  truncate -s $((24 * MiB)) "$T/$n.img"
  cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/$n.img"
done
cat > "$T/tab" <<TAB
# name  image      keyfile  options
a       $T/a.img   $K       luks
b       $T/b.img   $K       luks,readonly   # read-only
c       $T/c.img   $K       luks,noauto
gone    $T/none.img $K      luks,nofail
TAB
tab() { "$CRYPTMAP" "$@" --tab "$T/tab" --mount-dir "$MNT"; }

note "tab-open opens every entry without noauto; nofail failures do not fail the run"
tab tab-open > "$T/out" 2>&1 || { cat "$T/out"; fail "tab-open failed"; }
record_fuse_conn
[[ -f "$MNT/a" && -f "$MNT/b" ]] || fail "a and b should be open: $(ls "$MNT")"
[[ ! -e "$MNT/c" ]] || fail "noauto entry c was opened"
grep -q "gone: opening .* failed .*nofail" "$T/out" || fail "nofail failure not reported: $(cat "$T/out")"
cm status b --mount-dir "$MNT" | grep -qi "read.only" || fail "b is not read-only"
pattern_write "$MNT/a" 0 $((1 * MiB)) 7

note "again: already-open entries are skipped"
tab tab-open > "$T/out" 2>&1 || { cat "$T/out"; fail "second tab-open failed"; }
grep -q "a: already open" "$T/out" || fail "second tab-open: $(cat "$T/out")"

note "a named noauto entry opens"
tab tab-open c > /dev/null
[[ -f "$MNT/c" ]] || fail "tab-open c did not open c"
set +e; tab tab-open nosuch > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 4 ]] || fail "unknown name: exit $rc: $(cat "$T/out")"

note "tab-close closes them all"
tab tab-close
for n in a b c; do [[ ! -e "$MNT/$n" ]] || fail "$n still open after tab-close"; done
tab tab-open a > /dev/null
record_fuse_conn
pattern_check "$MNT/a" 0 $((1 * MiB)) 7 || fail "data of a lost across tab-close/tab-open"
tab tab-close a

note "crypttab's performance flags and a TrueCrypt entry (passphrase file, TrueCrypt headers only)"
tar -xJf "$HERE/../data/tcrypt/tcrypt-images.tar.xz" -C "$T" tcrypt-images/tc_4-sha512-xts-aes
printf 'aaaaaaaaaaaa\n' > "$T/tc.pw"
cat > "$T/tab" <<TAB
a   $T/a.img                            $K        luks,same-cpu-crypt,no-write-workqueue
tc  $T/tcrypt-images/tc_4-sha512-xts-aes $T/tc.pw  tcrypt,read-only
TAB
tab tab-open > "$T/out" 2>&1 || { cat "$T/out"; fail "tab-open of the flags/tcrypt table failed"; }
cm status a --mount-dir "$MNT" | grep -q "^  flags:   same_cpu_crypt no_write_workqueue" ||
  fail "a: crypttab flags not applied: $(cm status a --mount-dir "$MNT")"
cm status tc --mount-dir "$MNT" | grep -q "type:.*TCRYPT" || fail "tc: $(cm status tc --mount-dir "$MNT")"
[[ $(blkid -p -o value -s UUID "$MNT/tc") == DEAD-BABE ]] || fail "tc: the TrueCrypt volume's FAT serial is not DEAD-BABE"
tab tab-close
printf 'tc %s %s tcrypt-veracrypt,veracrypt-pim=3\n' "$T/tcrypt-images/tc_4-sha512-xts-aes" "$T/tc.pw" > "$T/tab"
set +e; tab tab-open > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 2 ]] || fail "a TrueCrypt volume tried as VeraCrypt with a PIM: exit $rc: $(cat "$T/out")"
[[ ! -e "$MNT/tc" ]] || fail "tc opened with a wrong PIM"

note "a broken table opens nothing and names the line"
printf 'a %s %s luks\nb %s %s luks,frobnicate\n' "$T/a.img" "$K" "$T/b.img" "$K" > "$T/tab"
set +e; tab tab-open > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] || fail "broken table: exit $rc"
grep -q "line 2: unsupported option 'frobnicate'" "$T/out" || fail "broken table message: $(cat "$T/out")"
[[ ! -e "$MNT/a" ]] || fail "broken table still opened a"
echo "PASS"
