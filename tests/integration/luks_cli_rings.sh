#!/usr/bin/env bash
# The CLI's one-shot verbs open their images without io_uring rings (volume::metadata_store_options,
# docs/async-store-io.md §5), the daemon's served volumes with them:
# - strace counts io_uring_setup calls of luksDump, isLuks, luksUUID, luksAddKey, config,
#   open --test-passphrase, fvault2Dump, and of an open handed to a running daemon (the CLI side
#   only): 0 each (16 per image opened before);
# - their results are unchanged: luksDump and luksUUID print what cryptsetup prints, cryptsetup
#   opens the keyslot luksAddKey made and sees the label config set, fvault2Dump prints what
#   cryptsetup prints;
# - the daemon serving the opened volume holds its 16 rings (io_uring fds in /proc/PID/fd), and
#   data written through it reads back.
source "$(dirname "$0")/lib.sh"
watchdog 200
command -v strace > /dev/null || fail "strace is needed"
K=$(keyfile key "rings-one")
K2=$(keyfile key2 "rings-two")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((16 * MiB + 8 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"

# rings NAME COMMAND...: runs COMMAND under strace (all threads and children); prints the number
# of io_uring_setup calls; the command's stdout goes to $T/NAME.out.
rings() {
  local name=$1
  shift
  strace -f -qq -e trace=io_uring_setup -e signal=none -o "$T/$name.trace" "$@" > "$T/$name.out" ||
    fail "'$*' failed under strace: $(cat "$T/$name.out")"
  grep -c 'io_uring_setup(' "$T/$name.trace" || true
}
no_rings() {
  local n
  n=$(rings "$@")
  [[ "$n" == 0 ]] || fail "cryptmap $3 set up $n io_uring rings (a one-shot CLI verb needs none)"
  note "cryptmap $3: no io_uring ring"
}

no_rings dump "$CRYPTMAP" luksDump "$img"
diff "$T/dump.out" <(cryptsetup luksDump "$img") || fail "luksDump differs from cryptsetup's"
no_rings isluks "$CRYPTMAP" isLuks "$img"
no_rings uuid "$CRYPTMAP" luksUUID "$img"
[[ $(cat "$T/uuid.out") == $(cryptsetup luksUUID "$img") ]] || fail "luksUUID differs from cryptsetup's"
no_rings addkey "$CRYPTMAP" luksAddKey --batch-mode "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img" "$K2"
cryptsetup open --test-passphrase --key-file "$K2" "$img" || fail "cryptsetup does not open the keyslot luksAddKey made"
no_rings config "$CRYPTMAP" config --label rings-label "$img"
cryptsetup luksDump "$img" | grep -Eq '^Label:[[:space:]]+rings-label$' || fail "cryptsetup does not see the label config set"
no_rings testpass "$CRYPTMAP" open --test-passphrase --key-file "$K2" "$img"

tar -xJSf "$HERE/../data/fvault2-images.tar.xz" -C "$T"
no_rings fvdump "$CRYPTMAP" fvault2Dump "$T/fvault2-images/small"
diff "$T/fvdump.out" <(cryptsetup fvault2Dump "$T/fvault2-images/small") || fail "fvault2Dump differs from cryptsetup's"

note "the daemon's volumes keep their rings"
cm_open "$img" first --key-file "$K"
pid=$(daemon_pid)
[[ -n "$pid" ]] || fail "no daemon for $MNT"
count_ring_fds() { find "/proc/$pid/fd" -lname 'anon_inode:\[io_uring\]' | wc -l; }
first=$(count_ring_fds)
((first >= 16)) || fail "the daemon serving one volume holds $first io_uring rings, expected 16 or more"
note "daemon with one volume: $first io_uring fds"
# A second open, handed to the running daemon: the CLI side sets up no ring, the daemon 16 more.
img2=$T/disk2.img
truncate -s $((16 * MiB + 8 * MiB)) "$img2"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img2"
no_rings open2 "$CRYPTMAP" open --mount-dir "$MNT" --key-file "$K" "$img2" second
second=$(count_ring_fds)
((second >= first + 16)) || fail "the second volume added $((second - first)) io_uring rings in the daemon, expected 16"
pattern_write "$MNT/first" 0 $((1 * MiB)) 5
pattern_check "$MNT/first" 0 $((1 * MiB)) 5
cm_close second
cm_close first
echo "PASS"
