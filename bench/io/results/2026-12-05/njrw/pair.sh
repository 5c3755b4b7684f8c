#!/usr/bin/env bash
# njrw's interleaved before/after runs (bench/README.md, njrw): after-1, before-1, before-2,
# after-2 with the same settings (after first: the TSan run of the tests overlapped the first). Usage: pair.sh BEFORE_BUILD AFTER_BUILD OUT_ROOT
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../../../.." && pwd)
before=$1 after=$2 out=$3
run() {
  echo "$(date -u +%T) $1 start, load $(cut -d' ' -f1-3 /proc/loadavg)"
  SIZE_MIB=1024 REPEATS=3 RUNTIME=5 \
    SYSTEMS="cryptmap cryptmap-hmac cryptmap-hmac-nj cryptmap-aead-nj" \
    WORKLOADS="seqwrite randwrite-j4" OUT="$out/$1" bash "$root/bench/io/run.sh" "$2" \
    > "$out/$1.log" 2>&1
  echo "$(date -u +%T) $1 end, load $(cut -d' ' -f1-3 /proc/loadavg)"
}
run after-1 "$after"
run before-1 "$before"
run before-2 "$before"
run after-2 "$after"
