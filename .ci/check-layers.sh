#!/usr/bin/env bash
# Fails when an #include runs against the layering (docs/architecture.md "Layers"):
#   cli -> fs -> volume -> {crypto, cache} -> base
# 1. No file includes a header of a layer above its own, and crypto/ and cache/ do not include
#    each other.
# 2. No file includes another module's private headers (`<module>/internal/...` is for files
#    under <module>/ only; a module is any folder that has an internal/ folder).
# 3. fs/ sees volume/ only through its facade headers (volume/*.h), never engine/, format/,
#    store/ or zone/.
# examples/ may include any public header. Prints every violation as file:line and exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
rank() {
  case $1 in
    base) echo 0 ;; crypto|cache) echo 1 ;; volume) echo 2 ;; fs) echo 3 ;; cli) echo 4 ;;
    examples) echo 5 ;; *) echo -1 ;;
  esac
}
bad=0
while IFS=: read -r file line inc; do
  from=${file%%/*}
  to=${inc%%/*}
  rf=$(rank "$from"); rt=$(rank "$to")
  ((rt < 0)) && continue  # not one of ours (a system or third-party header)
  if ((rt > rf)) || { ((rt == rf)) && [[ $from != "$to" ]]; }; then
    echo "$file:$line: $from/ must not include $inc (layer $to/ is not below $from/)"; bad=1
  fi
  if [[ $inc == */internal/* ]]; then
    owner=${inc%%/internal/*}
    if [[ $file != "$owner"/* ]]; then
      echo "$file:$line: $inc is private to $owner/"; bad=1
    fi
  fi
  if [[ $from == fs && $to == volume && $inc == volume/*/* ]]; then
    echo "$file:$line: fs/ reaches into $inc; use volume/'s facade headers (volume/*.h)"; bad=1
  fi
done < <(git ls-files 'base/*' 'crypto/*' 'cache/*' 'volume/*' 'fs/*' 'cli/*' 'examples/*' |
           grep -E '\.(h|cpp)$' |
           xargs grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' |
           sed -E 's/^([^:]+):([0-9]+):.*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1:\2:\3/')
if ((bad)); then
  echo "check-layers: FAILED (see docs/architecture.md, Layers)"
  exit 1
fi
echo "check-layers: every include runs downward"
