#!/usr/bin/env bash
# NBD URI forms and non-LUKS images over NBD (docs/network-stores.md §1, §5):
#   1. nbd://127.0.0.1:PORT/EXPORT: nbdkit on TCP (loopback, a free port this test picked) serving
#      one named export only (exportname filter, strict); a LUKS2 image on it: luksDump, open,
#      data written through the FUSE file equal to the image opened as a local file after close;
#      status --json shows the store's durability semantics (the server's flush and FUA); a
#      wrong export name is an error naming the URI, nothing mounted;
#   2. TCRYPT and BITLK over nbd+unix:// (cryptsetup's test images, tests/data): tcryptDump and
#      bitlkDump print what they print for the local file, and `open --type tcrypt|bitlk` serves
#      the same plaintext (sha256 of the whole served file) as the local image.
source "$(dirname "$0")/lib.sh"
command -v nbdkit > /dev/null || { echo "SKIP: nbdkit not installed"; exit 0; }
watchdog 240
MiB=$((1 << 20))
NBDKITS=()
trap 'for p in "${NBDKITS[@]}"; do kill "$p" 2>/dev/null || true; done; cleanup' EXIT

# nbdkit_up PIDFILE ARGS...: starts nbdkit in the background and waits for its pid file (written
# once it accepts connections); returns 1 if it exited first (a port taken in between).
nbdkit_up() {
  local pidfile=$1 pid
  shift
  rm -f "$pidfile"
  nbdkit -f --exit-with-parent -P "$pidfile" "$@" 2> "$pidfile.err" &
  pid=$!
  NBDKITS+=("$pid")
  for _ in $(seq 1 200); do
    [[ -s "$pidfile" ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  fail "nbdkit $* did not start: $(cat "$pidfile.err")"
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

note "nbd://127.0.0.1:PORT/EXPORT (TCP, a named export)"
K=$(keyfile key "nbd tcp passphrase")
img=$T/tcp.img
truncate -s $((40 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
started=
for _ in 1 2 3 4 5; do
  port=$(free_port)
  if nbdkit_up "$T/tcp.pid" -i 127.0.0.1 -p "$port" --filter=exportname file "$img" \
    exportname=vol1 exportname-strict=true; then
    started=1
    break
  fi
done
[[ -n "$started" ]] || fail "nbdkit on a free TCP port: $(cat "$T/tcp.pid.err")"
uri="nbd://127.0.0.1:$port/vol1"
cm luksDump "$uri" | grep -q "^Version:.*2" || fail "luksDump $uri"
cm_open "$uri" tcp --key-file "$K"
cm status tcp --mount-dir "$MNT" | grep -qF "$uri" || fail "status does not name $uri"
# The store's durability semantics from the server's flags (nbdkit's file plugin: flush, FUA).
cm status tcp --json --mount-dir "$MNT" | python3 -c '
import json, sys
s = json.load(sys.stdin)["volumes"][0]["store"]
assert s == {"volatile_writes": True, "flush": True, "fua": True}, s' ||
  fail "status --json does not show the NBD store's durability semantics"
pattern_write "$MNT/tcp" 0 $((4 * MiB)) 61
cm_close tcp
cm_open "$img" local --key-file "$K"
pattern_check "$MNT/local" 0 $((4 * MiB)) 61 || fail "what was written over $uri is not in the image"
cm_close local
set +e
cm open --mount-dir "$MNT" "nbd://127.0.0.1:$port/other" other --key-file "$K" > "$T/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -qF "nbd://127.0.0.1:$port/other" "$T/out" && [[ ! -e "$MNT/other" ]] ||
  fail "an export the server does not have: exit $rc, '$(cat "$T/out")'"
note "refused as it should be (exit $rc): $(head -n 1 "$T/out")"

# serve NAME FILE: nbdkit's file plugin, read-only, on $T/NAME.sock; sets URI (not run in a
# subshell: nbdkit --exit-with-parent would exit with it).
serve() {
  nbdkit_up "$T/$1.pid" -U "$T/$1.sock" -r file "$2" || fail "nbdkit for $2: $(cat "$T/$1.pid.err")"
  URI="nbd+unix:///?socket=$T/$1.sock"
}

note "TCRYPT over NBD: tcryptDump and open --type tcrypt"
tar -xJSf "$HERE/../data/tcrypt/tcrypt-images.tar.xz" -C "$T"
tc=$T/tcrypt-images/tc_4-sha512-xts-aes
serve tc "$tc"
tc_uri=$URI
targs=(--hash sha512 --disable-veracrypt)
printf 'aaaaaaaaaaaa\n' | cm tcryptDump "${targs[@]}" "$tc" > "$T/tc.local"
printf 'aaaaaaaaaaaa\n' | cm tcryptDump "${targs[@]}" "$tc_uri" > "$T/tc.nbd" 2> "$T/err" ||
  fail "tcryptDump over NBD: $(cat "$T/err")"
# The same dump but for its first line, which names the device.
diff <(tail -n +2 "$T/tc.local") <(tail -n +2 "$T/tc.nbd") ||
  fail "tcryptDump over NBD differs from the local file's"
grep -qF "$tc_uri" "$T/tc.nbd" || fail "tcryptDump over NBD does not name the URI"
printf 'aaaaaaaaaaaa\n' | cm_open --type tcrypt --readonly "${targs[@]}" "$tc_uri" tcn > /dev/null
printf 'aaaaaaaaaaaa\n' | cm_open --type tcrypt --readonly "${targs[@]}" "$tc" tcl > /dev/null
[[ $(sha256sum < "$MNT/tcn") == $(sha256sum < "$MNT/tcl") ]] ||
  fail "the TCRYPT volume over NBD differs from the local image's"
[[ $(blkid -p -o value -s UUID "$MNT/tcn") == DEAD-BABE ]] || fail "no FAT DEAD-BABE over NBD"
cm_close tcn
cm_close tcl

note "BITLK over NBD: bitlkDump and open --type bitlk"
tar -xJSf "$HERE/../data/bitlk-images.tar.xz" -C "$T"
bl=$T/bitlk-images/bitlk-aes-xts-128.img
pw=$(awk '/^\[bitlk-aes-xts-128\]/ {s = 1; next} /^\[/ {s = 0}
  s && index($0, "PW=") == 1 {print substr($0, 4); exit}' "$T/bitlk-images/images.conf")
want=$(awk '/^\[bitlk-aes-xts-128\]/ {s = 1; next} /^\[/ {s = 0}
  s && index($0, "SHA256SUM=") == 1 {print substr($0, 11); exit}' "$T/bitlk-images/images.conf")
[[ -n "$pw" && -n "$want" ]] || fail "images.conf has no password or sha256 for bitlk-aes-xts-128"
printf '%s' "$pw" > "$T/bl.key"
serve bl "$bl"
bl_uri=$URI
cm bitlkDump "$bl" > "$T/bl.local"
cm bitlkDump "$bl_uri" > "$T/bl.nbd" 2> "$T/err" || fail "bitlkDump over NBD: $(cat "$T/err")"
diff <(tail -n +2 "$T/bl.local") <(tail -n +2 "$T/bl.nbd") ||
  fail "bitlkDump over NBD differs from the local file's"
grep -qF "$bl_uri" "$T/bl.nbd" || fail "bitlkDump over NBD does not name the URI"
cm_open --type bitlk --readonly --key-file "$T/bl.key" "$bl_uri" bln > /dev/null
got=$(sha256sum "$MNT/bln" | cut -d' ' -f1)
[[ "$got" == "$want" ]] || fail "the BITLK volume over NBD: sha256 $got, images.conf says $want"
cm_close bln

note "a TCRYPT/BITLK dump of an NBD URI with no server names the URI"
kill "${NBDKITS[-1]}"
wait "${NBDKITS[-1]}" 2>/dev/null || true
set +e
cm bitlkDump "$bl_uri" > "$T/out" 2>&1; rc=$?
set -e
[[ $rc != 0 ]] && grep -qF "$T/bl.sock" "$T/out" && ! grep -q "does not exist" "$T/out" ||
  fail "bitlkDump of a URI with no server: exit $rc, '$(cat "$T/out")'"
echo "PASS"
