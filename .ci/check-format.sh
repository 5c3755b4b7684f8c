#!/usr/bin/env bash
# Fails when a tracked C++ file differs from what clang-format (style: .clang-format) makes of
# it, and names each such file. Fix with: git ls-files '*.h' '*.cpp' | xargs clang-format -i
set -uo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.h' '*.cpp')
if ((${#bad[@]})); then
  printf 'not clang-formatted: %s\n' "${bad[@]}"
  echo "check-format: FAILED (${#bad[@]} files; run: git ls-files '*.h' '*.cpp' | xargs clang-format -i)"
  exit 1
fi
echo "check-format: every C++ file is clang-formatted"
