#!/usr/bin/env bash
# Configures and builds one tree. Usage: .ci/build.sh BUILD_DIR [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1; shift
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRYPTMAP_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
