#!/usr/bin/env bash
# Podman as a real client of `cryptmap docker-plugin`: Debian's podman 4.3 speaks the Docker
# volume-plugin protocol to the sockets named in containers.conf's [engine.volume_plugins].
# Podman runs with its own containers.conf and storage.conf in this test's scratch directory
# (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF: never the machine's configuration or storage).
# `podman volume create --driver cryptmap -o size=` makes a LUKS2 image (cryptsetup checks it),
# `volume inspect` shows the driver and options, `volume mount` mounts ext4 at the plugin's
# mountpoint, a file written there survives `volume unmount` + `mount`, `volume rm` removes the
# image. Then, where Podman can run a container (an image imported from busybox-static, no
# registry), a container writes and reads a file through the volume; where crun cannot set
# rlimits (EPERM, as in unprivileged containers), that part is skipped and the output says so.
source "$(dirname "$0")/lib.sh"
command -v podman > /dev/null || { echo "SKIP: podman not installed (.ci/install-deps.sh installs it)"; exit 77; }
[[ $(id -u) == 0 ]] || fail "needs root (loop devices, mount)"
K=$(keyfile key "podman passphrase")
SOCK=$T/plugin.sock
ROOT=$T/root
PLUGIN_PID=
mkdir -p "$T/podman/storage" "$T/podman/run" "$T/podman/tmp"
cat > "$T/podman/containers.conf" << EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/podman/events.log"
tmp_dir = "$T/podman/tmp"

[engine.volume_plugins]
cryptmap = "$SOCK"
EOF
cat > "$T/podman/storage.conf" << EOF
[storage]
driver = "vfs"
graphroot = "$T/podman/storage"
runroot = "$T/podman/run"
EOF
export CONTAINERS_CONF=$T/podman/containers.conf CONTAINERS_STORAGE_CONF=$T/podman/storage.conf
podman_cleanup() {
  set +e
  podman rm -a -f > /dev/null 2>&1
  podman volume rm -f v1 > /dev/null 2>&1
  if [[ -n "$PLUGIN_PID" ]]; then kill -TERM "$PLUGIN_PID" 2>/dev/null; wait "$PLUGIN_PID" 2>/dev/null; fi
  for m in "$ROOT"/mnt/*; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  losetup -j "$ROOT/mapper/v1" 2>/dev/null | cut -d: -f1 | xargs -r -n1 losetup -d
  mountpoint -q "$ROOT/mapper" 2>/dev/null && { "$CRYPTMAP" close v1 --mount-dir "$ROOT/mapper" --force; fusermount3 -u -z "$ROOT/mapper"; }
  podman rmi -f localhost/cryptmap-test-busybox > /dev/null 2>&1  # this test's storage only
  cleanup
}
trap podman_cleanup EXIT
note "$(podman --version), storage and config in $T/podman"

"$CRYPTMAP" docker-plugin --socket "$SOCK" --root "$ROOT" --key-file "$K" \
  --default-size 40M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 2> "$T/plugin.log" &
PLUGIN_PID=$!
for _ in $(seq 1 100); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
[[ -S "$SOCK" ]] || { cat "$T/plugin.log"; fail "plugin socket did not appear"; }

# inspect_field NAME FIELD -> one field of `podman volume inspect NAME`.
inspect_field() { podman volume inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][sys.argv[1]])' "$2"; }

note "podman volume create --driver cryptmap"
podman volume create --driver cryptmap -o size=48M v1 > "$T/out" 2>&1 || { cat "$T/out" "$T/plugin.log"; fail "volume create"; }
cryptsetup isLuks --type luks2 "$ROOT/volumes/v1.img" || fail "v1.img is not LUKS2"
[[ $(stat -c %s "$ROOT/volumes/v1.img") == $((48 << 20)) ]] || fail "v1.img is not 48M"
grep -q '/VolumeDriver.Create -> 200' "$T/plugin.log" || fail "the plugin logged no Create"
[[ $(inspect_field v1 Driver) == cryptmap ]] || fail "inspect: driver"
[[ $(inspect_field v1 Options) == "{'size': '48M'}" ]] || fail "inspect: options $(inspect_field v1 Options)"
podman volume ls --format '{{.Driver}} {{.Name}}' | grep -qx 'cryptmap v1' || fail "volume ls"
expect_exit 125 'invalid size' -- podman volume create --driver cryptmap -o size=1K v2
[[ ! -e "$ROOT/volumes/v2.img" ]] || fail "a refused create left an image"

note "podman volume mount / unmount"
podman volume mount v1 > /dev/null || fail "volume mount"
mp=$(inspect_field v1 Mountpoint)
[[ "$mp" == "$ROOT/mnt/v1" ]] || fail "Mountpoint is '$mp'"
findmnt -n -o FSTYPE "$mp" | grep -qx ext4 || fail "$mp is not ext4"
[[ $(inspect_field v1 MountCount) == 1 ]] || fail "MountCount after mount"
echo "through podman's mount" > "$mp/host.txt"
podman volume unmount v1 || fail "volume unmount"
mountpoint -q "$mp" && fail "$mp still mounted after unmount"
[[ -z $(ls "$ROOT/mapper") ]] || fail "the volume is still open after the last unmount"
podman volume mount v1 > /dev/null || fail "second volume mount"
[[ $(cat "$mp/host.txt") == "through podman's mount" ]] || fail "host.txt did not survive unmount + mount"
podman volume unmount v1 || fail "second volume unmount"
grep -qa "through podman's mount" "$ROOT/volumes/v1.img" && fail "the image holds the file in clear"

note "a container writes and reads through the volume"
mkdir -p "$T/rootfs/bin"
cp "$(command -v busybox)" "$T/rootfs/bin/busybox" 2>/dev/null || cp /bin/busybox "$T/rootfs/bin/busybox"
tar -C "$T/rootfs" -c . | podman import - localhost/cryptmap-test-busybox > /dev/null || fail "podman import"
set +e
podman run --rm --network none -v v1:/data localhost/cryptmap-test-busybox /bin/busybox sh -c \
  'cat /data/host.txt && echo "from the container" > /data/inside.txt && cat /data/inside.txt' > "$T/run.out" 2>&1
rc=$?
set -e
if ((rc != 0)) && grep -q 'setrlimit.*Operation not permitted' "$T/run.out"; then
  echo "SKIPPED (container part): crun cannot set rlimits here: $(grep -m1 setrlimit "$T/run.out"); create/inspect/mount/unmount/rm were checked"
  mountpoint -q "$mp" && fail "the failed run left $mp mounted"
else
  ((rc == 0)) || { cat "$T/run.out"; fail "podman run exited $rc"; }
  grep -qx "through podman's mount" "$T/run.out" || fail "the container did not read host.txt: $(cat "$T/run.out")"
  grep -qx "from the container" "$T/run.out" || fail "the container did not read back inside.txt"
  podman volume mount v1 > /dev/null
  [[ $(cat "$mp/inside.txt") == "from the container" ]] || fail "inside.txt is not in the volume"
  podman volume unmount v1
fi
[[ $(inspect_field v1 MountCount) == 0 ]] || fail "MountCount is not 0 after the container"

note "podman volume rm"
podman volume rm v1 > /dev/null || fail "volume rm"
[[ ! -e "$ROOT/volumes/v1.img" ]] || fail "volume rm left the image"
podman volume ls -q | grep -qx v1 && fail "v1 still listed"
grep -q '/VolumeDriver.Remove -> 200' "$T/plugin.log" || fail "the plugin logged no Remove"
echo "PASS apps_podman"
