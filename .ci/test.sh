#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test: unit, FUSE, interop (real cryptsetup),
# end-to-end (loop devices, ext4, fio), fuzz replays; then the unit suites again under
# ASan+UBSan. A suite labelled "stress" would be left out (none is today: the memory-pressure test runs as e2e_memory_pressure). Needs root (loop devices, mounts). Exit status: 0 only if everything passed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
bash .ci/build.sh build -DCRYPTMAP_BUILD_TESTS=ON
ctest --test-dir build --output-on-failure -j2 --timeout 900 -LE stress
if [[ "${CRYPTMAP_SKIP_SANITIZERS:-0}" != 1 ]]; then
  echo "== ASan+UBSan: unit, fuse and fuzz-replay suites"
  bash .ci/build.sh build-asan -DCRYPTMAP_SANITIZE=address
  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp ctest --test-dir build-asan --output-on-failure -j2 -L 'unit|fuse|fuzz' --timeout 900
fi
