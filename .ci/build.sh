#!/usr/bin/env bash
# Configures and builds one tree with warnings as errors (CI's rule; a user's build keeps
# warnings as warnings). Usage: [BUILD_TYPE=Release] .ci/build.sh BUILD_DIR [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1; shift
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" -DCRYPTMAP_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
