#!/usr/bin/env bash
# Interleaved before/after pairs on RBD: bench/rbd/run.sh with ROWS="librbd cryptmap"
# WORKLOADS="${WORKLOADS:-seqread seqwrite randread1m}", the build before (main 84ef923) and after (rbdra), in the order
# given by ORDER (labels: before, after, after-off = after's build with the engine told to ignore
# the store's property, CRYPTMAP_EXP_WHOLE_READS=0; after-w = windows as one read, streaming
# reads still in pieces, CRYPTMAP_EXP_WHOLE_READS=w).
# Usage: pair-rbd.sh OUT_DIR SECONDS ORDER...
set -uo pipefail
OUT=$1 SECS=$2; shift 2
REPO=/work/wt/rbdra
mkdir -p "$OUT"
n=0
for label in "$@"; do
  n=$((n + 1))
  case $label in
    before) B=/tmp/rbdra-before/build; ENVX=() ;;
    after) B=/tmp/rbdra/exp; ENVX=() ;;
    after-off) B=/tmp/rbdra/exp; ENVX=(CRYPTMAP_EXP_WHOLE_READS=0) ;;
    after-w) B=/tmp/rbdra/exp; ENVX=(CRYPTMAP_EXP_WHOLE_READS=w) ;;
    final) B=$REPO/build; ENVX=() ;;  # the committed build
  esac
  while ss -ltn 2>/dev/null | grep -qE '127.0.0.1:(3300|6789) '; do
    echo "$(date -u +%T) another Ceph monitor is up; waiting"; sleep 10
  done
  d="$OUT/$n-$label"
  echo "$(date -u +%T) $label -> $d (load $(cut -d' ' -f1-3 /proc/loadavg))"
  env "${ENVX[@]}" ROWS="librbd cryptmap" WORKLOADS="${WORKLOADS:-seqread seqwrite randread1m}" \
    nice -n 0 bash "$REPO/bench/rbd/run.sh" "$B" "$SECS" "$d" > "$d.txt" 2>&1
  echo "  rc $?; $(grep -E 'seqread|seqwrite|randread1m' "$d/results.csv" | tr '\n' ' ')"
done
