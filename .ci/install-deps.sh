#!/usr/bin/env bash
# Installs every Debian 12 package cryptmap needs to build, test and benchmark. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format clang-tidy
  libfuse3-dev fuse3 libcrypto++-dev libssl-dev libtbb-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libargon2-dev libcli11-dev libgtest-dev libgmock-dev
  # asynchronous store I/O (issue 13): io_uring batches in PosixBackingStore
  liburing-dev
  # tests: real components
  cryptsetup-bin e2fsprogs fio python3 python3-cryptography util-linux kmod qemu-utils fuse2fs
  curl xz-utils openssl procps psmisc xfsprogs
  # luks_cli_rings counts the io_uring rings a CLI command sets up
  strace
  # NBD stores (issue 14): libnbd to build, nbdkit as the tests' server, nbdinfo/nbdfuse for bench
  libnbd-dev nbdkit libnbd-bin
  # Ceph RBD stores (issue 14): librbd to build; a one-node cluster and librbd's LUKS for tests
  librbd-dev librados-dev ceph-mon ceph-osd ceph-common python3-rbd
  # the volume plugin's real client (issue 17): podman 4.3, busybox-static for a local image
  podman busybox-static
  # the install tests (label package): man pages rendered and linted
  man-db groff-base
  # loop-AES (issue 16): loop-AES's own aespipe and gpg make and read the tests' images
  aespipe gnupg
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
