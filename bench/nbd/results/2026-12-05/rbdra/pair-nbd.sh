#!/usr/bin/env bash
# Interleaved NBD runs of bench/nbd/run.sh: before (main 84ef923), after (rbdra as committed),
# and experiment labels on after's build: whole (the engine reads windows/streams as one read:
# CRYPTMAP_EXP_WHOLE_READS=1, one NBD request per window), spread (the NBD store cuts a large
# read over its connections and says it splits: CRYPTMAP_EXP_NBD_SPREAD=1).
# Usage: pair-nbd.sh OUT_DIR SECONDS ORDER...
set -uo pipefail
OUT=$1 SECS=$2; shift 2
REPO=/work/wt/rbdra
mkdir -p "$OUT"
n=0
for label in "$@"; do
  n=$((n + 1))
  case $label in
    before) B=/tmp/rbdra-before/build; ENVX=() ;;
    after) B=$REPO/build; ENVX=() ;;
    whole) B=$REPO/build; ENVX=(CRYPTMAP_EXP_WHOLE_READS=1) ;;
    spread) B=$REPO/build; ENVX=(CRYPTMAP_EXP_NBD_SPREAD=1) ;;
  esac
  d="$OUT/$n-$label"
  echo "$(date -u +%T) $label (load $(cut -d' ' -f1-3 /proc/loadavg))"
  env "${ENVX[@]}" bash "$REPO/bench/nbd/run.sh" "$B" "$SECS" "$d" > "$d.txt" 2>&1
  echo "  rc $?; $(grep "seq read" "$d.txt") $(grep "CPU-s" "$d.txt")"
done
