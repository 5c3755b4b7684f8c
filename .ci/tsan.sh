#!/usr/bin/env bash
# ThreadSanitizer over the concurrent parts (docs/architecture.md §4): the sector cache, the
# crypto engines and their backlog protocol, the zone serializer, the volume engine (task graph,
# read-ahead, write-back), the stores (io_uring, NBD), segment maps, integrity volumes (journal
# daemon, write-back), online reencryption, and the FUSE daemon (real mounts). Builds only those
# test binaries (RelWithDebInfo, -fsanitize=thread) in BUILD_DIR and runs each one; any report
# fails the run (halt_on_error). Usage: .ci/tsan.sh [BUILD_DIR]   (default: build-tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-tsan}
# binary (path under BUILD_DIR/tests/unit), gtest filter, lock-order (deadlock) detection,
# FUSE transport of fs_fuse_test (dev: /dev/fuse; uring: FUSE over io_uring, the fixture sets
# the kernel's enable_uring for each test and restores it)
suites=(
  "cache/cache_test * 1"
  "crypto/crypto_test * 1"
  "volume/zone/zone_test * 1"
  "volume/engine/volume_engine_test * 1"
  "volume/store/volume_store_test * 1"
  "volume/store/volume_nbd_test * 1"
  "volume/volume_segment_map_test * 1"
  "volume/volume_integrity_test * 0"
  "volume/format/format_test Reencrypt* 1"
  "fs/fs_fuse_test * 1 dev"
  "fs/fs_fuse_test * 1 uring"
)
targets=()
for s in "${suites[@]}"; do
  bin=${s%% *}
  targets+=("${bin##*/}")
done
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRYPTMAP_WERROR=ON \
  -DCRYPTMAP_SANITIZE=thread -DCRYPTMAP_BUILD_TESTS=ON > /dev/null
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}"
# second_deadlock_stack: both stacks of a lock-order report. Lock-order detection is off for
# the integrity volume only: its write-back batch holds the volume lock and up to 64 tag-page
# stripes, past the detector's limit of 64 held locks (it aborts with a CHECK, not a report).
failed=()
for s in "${suites[@]}"; do
  read -r bin filter deadlocks transport <<< "$s"
  echo "== TSan: ${bin##*/} (${filter}${transport:+, $transport})"
  start=$SECONDS
  if ! TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 detect_deadlocks=$deadlocks" \
    CRYPTMAP_TEST_FUSE_TRANSPORT=${transport:-dev} \
    "$dir/tests/unit/$bin" --gtest_filter="$filter" --gtest_brief=1; then
    failed+=("${bin##*/}${transport:+ ($transport)}")
  fi
  echo "   $((SECONDS - start)) s"
done
((${#failed[@]} == 0)) || { echo "TSan: failed: ${failed[*]}" >&2; exit 1; }
