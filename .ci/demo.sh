#!/usr/bin/env bash
# The built-in demo: installs dependencies, builds, makes a small LUKS2 image with cryptmap's
# own luksFormat, opens it through FUSE, shows the mapped file, writes and reads it back, closes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
bash .ci/build.sh build-demo -DCRYPTMAP_BUILD_TESTS=OFF >/dev/null
cm=$PWD/build-demo/cli/cryptmap
work=$(mktemp -d /tmp/cryptmap-demo.XXXXXX)
mnt=$work/mapper
trap '"$cm" close demo --mount-dir "$mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
set -x
printf 'demo passphrase' > "$work/key"
truncate -s 64M "$work/disk.img"
"$cm" luksFormat --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$work/disk.img" "$work/key"
"$cm" luksDump "$work/disk.img"
"$cm" open "$work/disk.img" demo --key-file "$work/key" --mount-dir "$mnt"
ls -l "$mnt"
"$cm" status demo --mount-dir "$mnt"
echo "hello from cryptmap" | dd of="$mnt/demo" bs=4096 conv=notrunc,sync status=none
head -c 20 "$mnt/demo"; echo
"$cm" close demo --mount-dir "$mnt"
set +x
echo "demo: the image holds ciphertext only:"
grep -c "hello from cryptmap" "$work/disk.img" || true
