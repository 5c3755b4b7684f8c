#!/usr/bin/env bash
# `cryptmap vault` as a plain user meets it: create (LUKS2 + ext4 on the mapped file), open
# (user's cryptmap daemon + fuse2fs at DIR), files survive close/open, e2fsck is clean, a busy
# DIR refuses to close and keeps the vault whole, a wrong passphrase mounts nothing, --idle
# closes an unused vault and leaves a used one alone.
source "$(dirname "$0")/lib.sh"
U=cmvaultuser
CREATED_USER=0
FUSE_MODE=$(stat -c %a /dev/fuse)
apps_cleanup() {
  set +e
  if [[ -n "${D:-}" ]] && is_mnt "$D" 2>/dev/null; then umount -l "$D" 2>/dev/null; fi
  pkill -u "$U" -f -- "$T" 2>/dev/null
  sleep 0.3
  for m in "$T"/u/run/cryptmap; do is_mnt "$m" 2>/dev/null && umount -l "$m"; done
  chmod "$FUSE_MODE" /dev/fuse
  if [[ $CREATED_USER == 1 ]]; then   # the user is ours: end whatever it still runs, then remove it
    for _ in $(seq 1 20); do
      pkill -KILL -u "$U" 2>/dev/null
      userdel -r "$U" 2>/dev/null; id "$U" >/dev/null 2>&1 || break
      sleep 0.2
    done
  fi
  cleanup
}
trap apps_cleanup EXIT

if ! id "$U" >/dev/null 2>&1; then useradd -m "$U"; CREATED_USER=1; fi
chmod 0666 /dev/fuse   # what a stock Debian ships (the container here has 0600)
chmod 0755 "$T"
mkdir -p "$T/u/run" "$T/u/bin" "$T/u/dir"
cp "$CRYPTMAP" "$T/u/bin/cryptmap"
chown -R "$U:" "$T/u"
chmod 0700 "$T/u/run"
# FUSE mounts of another user refuse even root's stat(); ask the mount table instead.
is_mnt() { awk -v d="$1" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo; }
as_user() { runuser -u "$U" -- env XDG_RUNTIME_DIR="$T/u/run" HOME="/home/$U" "$@"; }
CM="$T/u/bin/cryptmap"
V=$T/u/vault.img
D=$T/u/dir
printf 'vault passphrase' > "$T/u/key"; chown "$U:" "$T/u/key"; chmod 600 "$T/u/key"
K=$T/u/key
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)

note "create as $U"
as_user "$CM" vault create "$V" --size 64M --key-file "$K" "${FAST[@]}"
[[ "$(stat -c %U "$V")" == "$U" ]] || fail "image not owned by $U"
cryptsetup isLuks --type luks2 "$V" || fail "vault image is not LUKS2 for cryptsetup"
set +e; as_user "$CM" vault create "$V" --size 64M --key-file "$K" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 5 ]] || fail "create over an existing file: exit $rc, expected 5: $(cat "$T/out")"
cryptsetup isLuks "$V" || fail "refused create damaged the existing image"

note "open, write files"
as_user "$CM" vault open "$V" "$D" --key-file "$K"
is_mnt "$D" || fail "$D is not a mount point after vault open"
[[ "$(as_user stat -c %U "$T/u/run/cryptmap")" == "$U" ]] || fail "mapper dir is not the user's"
as_user mkdir "$D/docs"
as_user sh -c "head -c 3000000 /dev/urandom > '$D/docs/blob' && echo hello > '$D/note.txt'"
sum=$(as_user sha256sum "$D/docs/blob" | cut -d' ' -f1)

note "a busy DIR refuses to close and keeps the vault open"
as_user sh -c "cd '$D' && exec sleep 60" &
busy=$!
sleep 0.5
set +e; as_user "$CM" vault close "$D" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 5 ]] || fail "close of a busy vault: exit $rc: $(cat "$T/out")"
grep -q "stays open" "$T/out" || fail "busy close message: $(cat "$T/out")"
is_mnt "$D" || fail "busy close unmounted $D"
as_user cat "$D/note.txt" | grep -q hello || fail "vault unusable after refused close"
pkill -u "$U" -x sleep; wait "$busy" 2>/dev/null || true
sleep 0.3

note "close, reopen: files survive"
as_user "$CM" vault close "$D"
is_mnt "$D" && fail "$D still mounted after close"
[[ -z "$(as_user ls -A "$T/u/run/cryptmap")" ]] || fail "volume still mapped after close: $(as_user ls "$T/u/run/cryptmap")"
pgrep -u "$U" -f "fuse2fs.*$D" >/dev/null && fail "fuse2fs still running after close"
as_user "$CM" vault open "$V" "$D" --key-file "$K"
[[ "$(as_user sha256sum "$D/docs/blob" | cut -d' ' -f1)" == "$sum" ]] || fail "blob changed across close/open"
[[ "$(as_user cat "$D/note.txt")" == hello ]] || fail "note.txt changed across close/open"
as_user "$CM" vault close "$D"

note "e2fsck -fn on the mapped file is clean"
as_user "$CM" open "$V" fsck --key-file "$K"
as_user e2fsck -fn "$T/u/run/cryptmap/fsck" > "$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck found errors"; }
as_user "$CM" close fsck

note "wrong passphrase mounts nothing"
printf 'wrong' > "$T/u/bad"; chown "$U:" "$T/u/bad"
set +e; as_user "$CM" vault open "$V" "$D" --key-file "$T/u/bad" > "$T/out" 2>&1; rc=$?; set -e
[[ $rc == 2 ]] || fail "wrong passphrase: exit $rc: $(cat "$T/out")"
is_mnt "$D" && fail "wrong passphrase mounted $D"
set +e; as_user "$CM" vault close "$D" > /dev/null 2>&1; rc=$?; set -e
[[ $rc == 4 ]] || fail "close of a vault that is not open: exit $rc, expected 4"

note "--idle closes an unused vault, not a used one"
as_user "$CM" vault open "$V" "$D" --key-file "$K" --idle 3s
for _ in $(seq 1 8); do as_user ls "$D/docs" > /dev/null; as_user stat "$D/note.txt" > /dev/null; sleep 1; done
is_mnt "$D" || fail "--idle 3s closed a vault used every second"
for _ in $(seq 1 40); do is_mnt "$D" || break; sleep 0.5; done
is_mnt "$D" && fail "--idle 3s did not close an unused vault within 20 s"
# After the unmount the watcher waits for fuse2fs to write the file system out and exit, then
# closes the volume: on a loaded machine (the other CTest lane) that takes seconds.
for _ in $(seq 1 60); do [[ -z "$(as_user ls -A "$T/u/run/cryptmap" 2>/dev/null)" ]] && break; sleep 0.5; done
[[ -z "$(as_user ls -A "$T/u/run/cryptmap" 2>/dev/null)" ]] || fail "idle close left the volume open after 30 s: $(as_user ls -A "$T/u/run/cryptmap" 2>&1)"
as_user "$CM" vault open "$V" "$D" --key-file "$K"
[[ "$(as_user sha256sum "$D/docs/blob" | cut -d' ' -f1)" == "$sum" ]] || fail "blob changed after idle close"
as_user "$CM" vault close "$D"
echo "PASS"
