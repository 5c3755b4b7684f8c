#!/usr/bin/env bash
# Ratios of each run's summary.csv to cryptmap (no integrity) in the same run, and MB (or k IO)
# per daemon CPU-second. Usage: ratios.sh DIR...   (DIR/summary.csv)
for d in "$@"; do
  awk -F, -v run="$(basename "$d")" '
    NR > 1 { v[$1","$2] = $4; c[$1","$2] = $14 }
    END {
      for (w in v) { split(w, p, ","); if (p[1] != "cryptmap") continue
        for (s in v) { split(s, q, ","); if (q[2] != p[2]) continue
          printf "%-9s %-12s %-14s %9.1f  ratio %.2f  daemon cpu %3d%%  per CPU-s %7.0f\n", run, p[2], q[1], v[s], v[s] / v[w], c[s], (c[s] > 0 ? v[s] * 100 / c[s] : 0) } } }' "$d/summary.csv" | sort -k2,2 -k3,3
done
