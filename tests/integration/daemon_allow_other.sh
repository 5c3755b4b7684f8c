#!/usr/bin/env bash
# Who may reach a mapped file. As a plain user: files are the user's, mode 0600, and without
# --allow-other no other user (not even root) gets in. --allow-other mounts with FUSE
# allow_other and gives the file mode 0660: members of the owner's group may read and write,
# everybody else is refused by the mode. A non-root user needs user_allow_other in
# /etc/fuse.conf (the error says so); the test provides it in a private mount namespace.
if [[ -z "${CRYPTMAP_AO_NS:-}" ]]; then
  exec env CRYPTMAP_AO_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
OWN=cmaoowner
MEM=cmaomember
OUT=nobody
CREATED=()
FUSE_MODE=$(stat -c %a /dev/fuse)
is_mnt() { awk -v d="$1" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo; }
ao_cleanup() {
  set +e
  pkill -u "$OWN" -f -- "$T" 2>/dev/null
  sleep 0.3
  is_mnt "$T/o/shared/cryptmap" && umount -l "$T/o/shared/cryptmap"
  chmod "$FUSE_MODE" /dev/fuse
  for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do   # the member first: it is in the owner's group
    u=${CREATED[i]}
    for _ in $(seq 1 20); do
      pkill -KILL -u "$u" 2>/dev/null
      userdel -r "$u" 2>/dev/null; id "$u" >/dev/null 2>&1 || break
      sleep 0.2
    done
    getent group "$u" >/dev/null && groupdel "$u" 2>/dev/null
  done
  cleanup
}
trap ao_cleanup EXIT
for u in "$OWN" "$MEM"; do
  if ! id "$u" >/dev/null 2>&1; then useradd -m "$u"; CREATED+=("$u"); fi
done
usermod -a -G "$(id -gn "$OWN")" "$MEM"
chmod 0666 /dev/fuse   # what a stock Debian ships (the container here has 0600)
chmod 0755 "$T"
mkdir -p "$T/o/run" "$T/o/bin" "$T/o/shared"
cp "$CRYPTMAP" "$T/o/bin/cryptmap"
printf 'ao passphrase' > "$T/o/key"
truncate -s $((24 << 20)) "$T/o/a.img" "$T/o/b.img"
for n in a b; do
  cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$T/o/key" "$T/o/$n.img"
done
chown -R "$OWN:" "$T/o"
chmod 0700 "$T/o/run" "$T/o/key"
chmod 0755 "$T/o"
# Other users must be able to reach the mount directory: $XDG_RUNTIME_DIR is 0700, so sharing
# needs a --mount-dir under a directory they can traverse (README says so).
M=$T/o/shared/cryptmap
as() { local u=$1; shift; runuser -u "$u" -- env XDG_RUNTIME_DIR="$T/o/run" HOME=/ "$@"; }
own() { as "$OWN" "$T/o/bin/cryptmap" "$@" --mount-dir "$M"; }
can_read() { as "$1" dd if="$2" of=/dev/null bs=4096 count=1 status=none 2>/dev/null; }
can_write() { as "$1" dd if=/dev/zero of="$2" bs=4096 count=1 conv=notrunc status=none 2>/dev/null; }

note "non-root --allow-other without user_allow_other: refused, says what to do"
grep -q '^[[:space:]]*user_allow_other' /etc/fuse.conf && fail "test expects a fuse.conf without user_allow_other"
set +e; own open "$T/o/a.img" a --key-file "$T/o/key" --allow-other > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] || fail "exit $rc: $(cat "$T/out")"
grep -q "user_allow_other.*/etc/fuse.conf" "$T/out" || fail "message: $(cat "$T/out")"
is_mnt "$M" && fail "mounted although refused"

note "default: the owner's file, mode 0600; nobody else gets in, not even root"
own open "$T/o/a.img" a --key-file "$T/o/key"
[[ $(as "$OWN" stat -c '%U %a' "$M/a") == "$OWN 600" ]] || fail "owner/mode: $(as "$OWN" stat -c '%U %a' "$M/a")"
can_read "$OWN" "$M/a" || fail "owner cannot read"
can_read "$MEM" "$M/a" && fail "group member reads without --allow-other"
dd if="$M/a" of=/dev/null bs=4096 count=1 status=none 2>/dev/null && fail "root reads without --allow-other"

note "a daemon without allow_other refuses an --allow-other volume (before anything is served)"
printf 'user_allow_other\n' > "$T/fuse.conf"
mount --bind "$T/fuse.conf" /etc/fuse.conf
# No key file and an empty stdin: refused before any passphrase is read (else exit 2).
set +e; own open "$T/o/b.img" b --allow-other < /dev/null > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "started without --allow-other" "$T/out" || fail "mismatch: exit $rc: $(cat "$T/out")"
as "$OWN" test ! -e "$M/b" || fail "b is served although refused"
own close a

note "--allow-other: mode 0660, the owner's group reads and writes, others are refused by the mode"
own open "$T/o/a.img" a --key-file "$T/o/key" --allow-other
[[ $(stat -c '%U %G %a' "$M/a") == "$OWN $(id -gn "$OWN") 660" ]] || fail "owner/group/mode: $(stat -c '%U %G %a' "$M/a")"
python3 "$HERE/pattern.py" write "$M/a" 0 65536 11   # root: allowed in (root passes the mode)
can_read "$MEM" "$M/a" || fail "group member cannot read with --allow-other"
can_write "$MEM" "$M/a" || fail "group member cannot write with --allow-other"
as "$MEM" python3 "$HERE/pattern.py" check "$M/a" 4096 61440 11 || fail "member reads wrong data"
can_read "$OUT" "$M/a" && fail "$OUT (not in the group) reads a 0660 file"
own status a --json | python3 -c 'import json,sys; v=json.load(sys.stdin)["volumes"][0]; assert v["file_mode"]=="0660" and "allow-other" in v["flags"], v' \
  || fail "status --json does not show allow-other"

note "a second volume without --allow-other in the same daemon stays private (0600)"
own open "$T/o/b.img" b --key-file "$T/o/key"
[[ $(stat -c '%a' "$M/b") == 600 ]] || fail "b mode $(stat -c '%a' "$M/b")"
can_read "$MEM" "$M/b" && fail "group member reads the private volume b"
own close --all
is_mnt "$M" && fail "still mounted after close --all"
echo "PASS"
