#!/usr/bin/env bash
# `cryptmap open --all` over a crypttab-syntax table: every entry without noauto, readonly and
# read-only, keyfile-offset/keyfile-size, plain and luks, discard; a failing entry does not stop
# the others and is named at the end with a non-zero exit; options that belong in the table are
# refused on the command line; `close --all` closes everything the mount directory serves.
source "$(dirname "$0")/lib.sh"
MiB=$((1 << 20))
K=$(keyfile key "tab passphrase")
# The same passphrase inside a longer file: 16 bytes before it, junk after it.
printf '0123456789abcdef%sJUNKJUNK' "tab passphrase" > "$T/padded"
W=$(keyfile wrong "not the passphrase")
for n in a b c e f; do
  truncate -s $((24 * MiB)) "$T/$n.img"
  cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$T/$n.img"
done
truncate -s $((8 * MiB)) "$T/p.img"
cat > "$T/tab" <<TAB
# name  image      keyfile    options
a       $T/a.img   $T/padded  luks,keyfile-offset=16,keyfile-size=14
b       $T/b.img   $K         luks,read-only
c       $T/c.img   $K         luks,noauto
e       $T/e.img   $W         luks
p       $T/p.img   $K         plain,cipher=aes-xts-plain64,size=256,offset=2048
f       $T/f.img   $K         readonly,discard
TAB
all() { "$CRYPTMAP" "$@" --tab "$T/tab" --mount-dir "$MNT"; }

note "open --all: opens every entry without noauto, continues past the failing one"
set +e; all open --all > "$T/out" 2>&1; rc=$?; set -e
record_fuse_conn
cat "$T/out"
[[ $rc == 2 ]] || fail "open --all with one wrong key file: exit $rc, want 2 (bad passphrase)"
grep -q "^e: opening $T/e.img failed (exit 2)" "$T/out" || fail "failing entry not named"
grep -q "Could not open: e\." "$T/out" || fail "no summary naming the failed entry"
for n in a b p f; do [[ -f "$MNT/$n" ]] || fail "$n not open: $(ls "$MNT")"; done
[[ ! -e "$MNT/c" && ! -e "$MNT/e" ]] || fail "noauto or failing entry is open: $(ls "$MNT")"

note "the table's options reached each volume"
cm status --json --mount-dir "$MNT" > "$T/st.json"
python3 - "$T/st.json" "$T" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
v = {x["name"]: x for x in st["volumes"]}
assert sorted(v) == ["a", "b", "f", "p"], sorted(v)
assert v["a"]["readonly"] is False and v["b"]["readonly"] is True and v["f"]["readonly"] is True
assert v["p"]["type"] == "PLAIN" and v["p"]["cipher"] == "aes-xts-plain64", v["p"]
assert v["p"]["offset_sectors"] == 2048 and v["p"]["size_sectors"] == 8 * 2048 - 2048, v["p"]
assert v["a"]["type"] == "LUKS2", v["a"]
PY
python3 -c 'import json,sys; v={x["name"]:x for x in json.load(open(sys.argv[1]))["volumes"]}; assert "allow-discards" in v["f"]["flags"], v["f"]' "$T/st.json" \
  || fail "discard did not become --allow-discards"
pattern_write "$MNT/a" 0 $((1 * MiB)) 3
if dd if=/dev/zero of="$MNT/b" bs=4096 count=1 conv=notrunc status=none 2>/dev/null; then
  fail "read-only entry b accepted a write"
fi

note "again: open entries are skipped, the failing one fails again"
set +e; all open --all > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 2 ]] || fail "second open --all: exit $rc"
grep -q "^a: already open" "$T/out" || fail "second open --all did not skip a: $(cat "$T/out")"

note "per-volume options with --all are refused (they belong in the table)"
set +e; all open --all --readonly > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] && grep -q -- "--readonly cannot be combined" "$T/out" || fail "open --all --readonly: exit $rc: $(cat "$T/out")"
set +e; "$CRYPTMAP" open --mount-dir "$MNT" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "requires device and mapped name" "$T/out" || fail "open without IMAGE: exit $rc: $(cat "$T/out")"

note "close --all closes every volume; the daemon exits"
set +e; cm close x --all --mount-dir "$MNT" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] || fail "close NAME --all: exit $rc"
exec 3< "$MNT/b"
set +e; cm close --all --mount-dir "$MNT" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 5 ]] || fail "close --all with b in use: exit $rc, want 5: $(cat "$T/out")"
grep -q "could not close b" "$T/out" || fail "close --all did not name b: $(cat "$T/out")"
for n in a p f; do [[ ! -e "$MNT/$n" ]] || fail "$n still open after close --all"; done
exec 3<&-
cm close --all --mount-dir "$MNT"
mountpoint -q "$MNT" && fail "the daemon still serves $MNT after close --all"
cm close --all --mount-dir "$MNT" || fail "close --all with nothing open must succeed"

note "data written before close --all is there after the next open --all"
sed -i '/^e /d' "$T/tab"
all open --all > /dev/null
record_fuse_conn
pattern_check "$MNT/a" 0 $((1 * MiB)) 3 || fail "data of a lost across close --all/open --all"
cm close --all --mount-dir "$MNT"
echo "PASS"
