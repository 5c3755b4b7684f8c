#!/usr/bin/env bash
# Installs dependencies, checks the layering, the documents and the formatting, builds, and runs
# every test: unit, FUSE, interop (real cryptsetup), end-to-end (loop devices, ext4, fio), fuzz
# replays, the examples; then checks every translation unit with clang's -Wthread-safety, runs the
# unit, FUSE and fuzz suites again under ASan+UBSan, and the concurrent suites under TSan
# (.ci/tsan.sh). A suite labelled "stress" would be left out (none is today). Needs root (loop
# devices, mounts). Exit status: 0 only if all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's wall time, printed at the end (also when a stage fails): CI's budget is 60 minutes.
stage_times=()
stage_name=""
stage_start=$SECONDS
stage() {
  if [[ -n "$stage_name" ]]; then
    stage_times+=("$(printf '%5d s  %s' $((SECONDS - stage_start)) "$stage_name")")
  fi
  stage_name=$1
  stage_start=$SECONDS
  [[ -z "$stage_name" ]] || echo "== $stage_name"
}
report_times() {
  stage ""
  echo "== stage times (total $SECONDS s)"
  printf '%s\n' "${stage_times[@]}"
}
trap report_times EXIT

stage "dependencies"
bash .ci/install-deps.sh

stage "static checks: layering, cited documents, formatting"
bash .ci/check-layers.sh
bash .ci/check-doc-refs.sh
bash .ci/check-format.sh

# The build users and packagers make (Release), with warnings as errors.
stage "build: Release"
BUILD_TYPE=Release bash .ci/build.sh build -DCRYPTMAP_BUILD_TESTS=ON
stage "tests: every label but rbd and sysctl"
ctest --test-dir build --output-on-failure -j2 --timeout 900 -LE 'stress|rbd|sysctl'
# Tests that flip a machine-wide sysctl every other test depends on (io_uring_disabled): alone.
stage "machine-wide sysctl tests (label sysctl), alone"
ctest --test-dir build --output-on-failure -L sysctl --timeout 900
# Ceph RBD runs a real one-node cluster (about a minute): its own stage, skippable.
if [[ "${CRYPTMAP_SKIP_RBD:-0}" != 1 ]]; then
  stage "Ceph RBD: one-node cluster (label rbd)"
  ctest --test-dir build --output-on-failure -L rbd --timeout 900
fi

if [[ "${CRYPTMAP_SKIP_SANITIZERS:-0}" != 1 ]]; then
  stage "clang -Wthread-safety: every translation unit (tests too) checked, -fsyntax-only"
  bash .ci/check-thread-safety.sh build-clang
  stage "build: ASan+UBSan"
  bash .ci/build.sh build-asan -DCRYPTMAP_SANITIZE=address
  stage "ASan+UBSan: unit, fuse and fuzz-replay suites"
  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp ctest --test-dir build-asan --output-on-failure -j2 -L 'unit|fuse|fuzz' --timeout 900
  stage "TSan: the concurrent suites (cache, crypto, zones, engine, stores, integrity, reencrypt, FUSE)"
  bash .ci/tsan.sh build-tsan
fi
