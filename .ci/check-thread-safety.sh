#!/usr/bin/env bash
# clang's -Wthread-safety checks the GUARDED_BY/REQUIRES annotations (base/thread_annotations.h).
# The analysis runs in clang's semantic pass, so every translation unit (the tests' too) is
# checked with -fsyntax-only from the compile commands of a clang configuration: no code is
# generated or linked, which keeps this stage a fraction of a full clang build.
# Usage: .ci/check-thread-safety.sh [BUILD_DIR]   (default build-clang). Exit 1 on any warning.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-clang}
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCRYPTMAP_WERROR=ON \
  -DCRYPTMAP_BUILD_TESTS=ON >/dev/null
python3 - "$dir/compile_commands.json" <<'EOF'
import json, os, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

entries = json.load(open(sys.argv[1]))

def check(e):
    args = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
    out, i = [], 0
    while i < len(args):
        if args[i] == "-o":          # no object file: syntax and semantic analysis only
            i += 2
            continue
        if args[i] == "-c":
            i += 1
            continue
        out.append(args[i])
        i += 1
    out.insert(1, "-fsyntax-only")
    r = subprocess.run(out, cwd=e["directory"], capture_output=True, text=True)
    return e["file"], r.returncode, r.stderr

failed = 0
with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for path, rc, err in pool.map(check, entries):
        if rc != 0 or err.strip():
            failed += 1
            sys.stderr.write(f"== {path}\n{err}")
print(f"thread-safety: {len(entries)} translation units checked, {failed} with diagnostics")
sys.exit(1 if failed else 0)
EOF
