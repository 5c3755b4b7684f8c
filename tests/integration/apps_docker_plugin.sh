#!/usr/bin/env bash
# `cryptmap docker-plugin` over real HTTP on its unix socket (curl --unix-socket), as Docker
# calls it: Activate, Capabilities, Create (LUKS2 + ext4), Mount (loop device + ext4 mount),
# reference-counted Unmount, Path/Get/List, Remove; data written at the Mountpoint survives
# Unmount + Mount; malformed requests get 400 with an Err; errors are {"Err": "..."}.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "docker passphrase")
SOCK=$T/plugin.sock
ROOT=$T/root
PLUGIN_PID=
apps_cleanup() {
  set +e
  if [[ -n "$PLUGIN_PID" ]]; then kill -TERM "$PLUGIN_PID" 2>/dev/null; wait "$PLUGIN_PID" 2>/dev/null; fi
  for m in "$ROOT"/mnt/*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  losetup -j "$ROOT/mapper/v1" 2>/dev/null | cut -d: -f1 | xargs -r -n1 losetup -d
  mountpoint -q "$ROOT/mapper" 2>/dev/null && { "$CRYPTMAP" close v1 --mount-dir "$ROOT/mapper" --force; fusermount3 -u -z "$ROOT/mapper"; }
  cleanup
}
trap apps_cleanup EXIT

"$CRYPTMAP" docker-plugin --socket "$SOCK" --root "$ROOT" --key-file "$K" \
  --default-size 40M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 2> "$T/plugin.log" &
PLUGIN_PID=$!
for _ in $(seq 1 100); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
[[ -S "$SOCK" ]] || { cat "$T/plugin.log"; fail "plugin socket did not appear"; }

# call ENDPOINT JSON -> prints "STATUS BODY"
call() {
  curl -sS --unix-socket "$SOCK" -o "$T/body" -w '%{http_code}' \
    -H 'Content-Type: application/vnd.docker.plugins.v1+json' -X POST --data-binary "$2" \
    "http://plugin/$1" > "$T/code"
  echo "$(cat "$T/code") $(cat "$T/body")"
}
jq_() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$@"; }
expect_ok() {  # expect_ok ENDPOINT JSON -> prints body
  local r; r=$(call "$1" "$2")
  [[ "${r%% *}" == 200 ]] || fail "$1 $2: $r"
  [[ "$(jq_ "${r#* }" 'd.get("Err","")')" == "" ]] || fail "$1 $2: Err in $r"
  echo "${r#* }"
}

note "handshake"
b=$(expect_ok Plugin.Activate '{}')
[[ "$(jq_ "$b" 'd["Implements"]')" == "['VolumeDriver']" ]] || fail "Activate: $b"
grep -qi 'application/vnd.docker.plugins.v1+json' <(curl -sS -i --unix-socket "$SOCK" -X POST http://plugin/Plugin.Activate) \
  || fail "Content-Type is not the plugin type"
b=$(expect_ok VolumeDriver.Capabilities '{}')
[[ "$(jq_ "$b" 'd["Capabilities"]["Scope"]')" == local ]] || fail "Capabilities: $b"

note "create"
expect_ok VolumeDriver.Create '{"Name":"v1","Opts":{"size":"64M"}}' > /dev/null
cryptsetup isLuks --type luks2 "$ROOT/volumes/v1.img" || fail "v1.img is not LUKS2"
[[ $(stat -c %s "$ROOT/volumes/v1.img") == $((64 << 20)) ]] || fail "v1.img size"
expect_ok VolumeDriver.Create '{"Name":"v0","Opts":null}' > /dev/null   # Go's nil map: defaults
[[ $(stat -c %s "$ROOT/volumes/v0.img") == $((40 << 20)) ]] || fail "v0.img does not have --default-size"
b=$(expect_ok VolumeDriver.List '{}')
[[ "$(jq_ "$b" 'sorted(v["Name"] for v in d["Volumes"])')" == "['v0', 'v1']" ]] || fail "List: $b"
expect_ok VolumeDriver.Remove '{"Name":"v0"}' > /dev/null

note "errors are {\"Err\": ...}"
r=$(call VolumeDriver.Create '{"Name":"../x"}'); [[ "${r%% *}" == 400 && "$r" == *'"Err":"invalid volume name'* ]] || fail "bad name: $r"
r=$(call VolumeDriver.Create '{"Name":"v2","Opts":{"size":"1K"}}'); [[ "$r" == *'"Err":"invalid size'* ]] || fail "small size: $r"
r=$(call VolumeDriver.Create '{"Name":"v2","Opts":{"colour":"red"}}'); [[ "$r" == *"unknown option"* ]] || fail "bad opt: $r"
r=$(call VolumeDriver.Mount '{"Name":"nope","ID":"a"}'); [[ "${r%% *}" == 404 && "$r" == *"no such volume"* ]] || fail "mount missing: $r"
r=$(call VolumeDriver.Create '{"Name":'); [[ "${r%% *}" == 400 && "$r" == *"not valid JSON"* ]] || fail "bad json: $r"
r=$(call VolumeDriver.Frobnicate '{}'); [[ "${r%% *}" == 404 ]] || fail "unknown endpoint: $r"
r=$(printf 'POST /Plugin.Activate HTTP/1.1\nHost: x\n\n' | python3 -c '
import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
print(s.recv(4096).decode().split("\r\n")[0])' "$SOCK")
[[ "$r" == "HTTP/1.1 400 Bad Request" ]] || fail "bare-LF request: $r"
r=$(curl -sS --unix-socket "$SOCK" -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' -X POST --data '{}' http://plugin/VolumeDriver.List)
[[ "$r" == 501 ]] || fail "chunked request: $r"
[[ ! -e "$ROOT/volumes/v2.img" ]] || fail "failed creates left an image"

note "mount, write, reference-counted unmount"
b=$(expect_ok VolumeDriver.Mount '{"Name":"v1","ID":"c1"}')
mp=$(jq_ "$b" 'd["Mountpoint"]')
[[ "$mp" == "$ROOT/mnt/v1" ]] || fail "Mountpoint: $b"
mountpoint -q "$mp" || fail "$mp is not mounted"
findmnt -n -o FSTYPE "$mp" | grep -qx ext4 || fail "$mp is not ext4"
head -c 5000000 /dev/urandom > "$T/blob"
cp "$T/blob" "$mp/blob"; sync
b=$(expect_ok VolumeDriver.Mount '{"Name":"v1","ID":"c2"}')
[[ "$(jq_ "$b" 'd["Mountpoint"]')" == "$mp" ]] || fail "second Mount: $b"
r=$(call VolumeDriver.Remove '{"Name":"v1"}'); [[ "$r" == *"is mounted"* ]] || fail "Remove of a mounted volume: $r"
b=$(expect_ok VolumeDriver.Path '{"Name":"v1"}'); [[ "$(jq_ "$b" 'd["Mountpoint"]')" == "$mp" ]] || fail "Path: $b"
b=$(expect_ok VolumeDriver.Get '{"Name":"v1"}'); [[ "$(jq_ "$b" 'd["Volume"]["Mountpoint"]')" == "$mp" ]] || fail "Get: $b"
expect_ok VolumeDriver.Unmount '{"Name":"v1","ID":"c1"}' > /dev/null
mountpoint -q "$mp" || fail "unmount of one of two IDs unmounted the volume"
r=$(call VolumeDriver.Unmount '{"Name":"v1","ID":"c1"}'); [[ "$r" == *"not mounted for ID"* ]] || fail "double Unmount: $r"
expect_ok VolumeDriver.Unmount '{"Name":"v1","ID":"c2"}' > /dev/null
mountpoint -q "$mp" && fail "last Unmount left $mp mounted"
[[ ! -e "$ROOT/mapper/v1" ]] || fail "last Unmount left the volume open"
b=$(expect_ok VolumeDriver.Path '{"Name":"v1"}'); [[ "$(jq_ "$b" 'd["Mountpoint"]')" == "" ]] || fail "Path after unmount: $b"

note "data survives Unmount + Mount"
b=$(expect_ok VolumeDriver.Mount '{"Name":"v1","ID":"c3"}')
cmp "$T/blob" "$mp/blob" || fail "data changed across Unmount + Mount"
expect_ok VolumeDriver.Unmount '{"Name":"v1","ID":"c3"}' > /dev/null

note "remove"
expect_ok VolumeDriver.Remove '{"Name":"v1"}' > /dev/null
[[ ! -e "$ROOT/volumes/v1.img" ]] || fail "Remove left the image"
b=$(expect_ok VolumeDriver.List '{}'); [[ "$(jq_ "$b" 'd["Volumes"]')" == "[]" ]] || fail "List after Remove: $b"

note "SIGTERM stops the plugin and removes its socket"
kill -TERM "$PLUGIN_PID"; rc=0; wait "$PLUGIN_PID" || rc=$?; PLUGIN_PID=
[[ $rc == 0 ]] || fail "plugin exit $rc"
[[ ! -e "$SOCK" ]] || fail "socket left behind"
echo "PASS"
