#!/usr/bin/env bash
# Checks that every document the code and the READMEs cite is in the repository.
#
# Fails (exit 1, one "file:line: problem" per finding) when a tracked source or Markdown file
#   1. mentions the reference folders outside the repository (shared/docs/..., shared/bench/...,
#      ../shared/..., /work/shared/...), anywhere in the file;
#   2. cites a path ending in .md, in a comment or in Markdown text, that is not a tracked file
#      when read from the repository root or from the citing file's folder;
#   3. cites "<path>.md §N" where that document has no heading numbered N ("## N." / "### N ").
# Ignored: bench/io/results/ (raw benchmark output), URLs (scheme://...), and the file names in
# ALLOWED below (files the code writes, not documents it cites).
#
# Comments are found with simple rules: // and /* */ in C/C++, # in shell/Python/CMake, and
# Python docstrings; Markdown files are read whole.
#
# Usage: bash .ci/check-doc-refs.sh   (from anywhere in the work tree; needs git and awk)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

ALLOWED="results.md"  # bench/io/run.sh writes OUT/results.md
SELF=".ci/check-doc-refs.sh"

tracked=$(mktemp)
trap 'rm -f "$tracked"' EXIT
git ls-files >"$tracked"

files=()
while IFS= read -r f; do
  case "$f" in
    bench/io/results/* | "$SELF") continue ;;
    *.md | *.h | *.hpp | *.c | *.cc | *.cpp | *.py | *.sh | *.cmake | CMakeLists.txt | */CMakeLists.txt | .ci/*)
      [[ -f "$f" ]] && files+=("$f") ;;
  esac
done <"$tracked"
((${#files[@]} > 0)) || { echo "check-doc-refs: no files to check"; exit 0; }

read -r -d '' prog <<'AWK' || true
function norm(p,    n, parts, out, i, k) {  # "a/./b/../c.md" -> "a/c.md"; "" if it leaves the repo
  n = split(p, parts, "/"); k = 0
  for (i = 1; i <= n; i++) {
    if (parts[i] == "" || parts[i] == ".") continue
    if (parts[i] == "..") { if (k == 0) return ""; k--; continue }
    out[++k] = parts[i]
  }
  p = ""
  for (i = 1; i <= k; i++) p = p (i > 1 ? "/" : "") out[i]
  return p
}
function dirof(p) { return (p ~ /\//) ? substr(p, 1, match(p, /\/[^\/]*$/) - 1) : "" }
function baseof(p) { sub(/.*\//, "", p); return p }
function has_section(doc, sec,    line, re) {
  if (!((doc SUBSEP sec) in secs)) {
    re = sec; gsub(/\./, "\\.", re)
    re = "^#+[ \t]+" re "([ .:)]|$)"
    secs[doc SUBSEP sec] = 0
    while ((getline line < doc) > 0) if (line ~ re) { secs[doc SUBSEP sec] = 1; break }
    close(doc)
  }
  return secs[doc SUBSEP sec]
}
function report(msg) { print FILENAME ":" FNR ": " msg; bad++ }
function check_text(text,    tok, rest, next_ch, a, b, target, sec) {
  gsub(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^] \t)>"'`]*/, " ", text)  # URLs
  while (match(text, /[A-Za-z0-9_.\/-]+\.md/)) {
    tok = substr(text, RSTART, RLENGTH)
    rest = substr(text, RSTART + RLENGTH)
    text = rest
    next_ch = substr(rest, 1, 1)
    if (next_ch ~ /[A-Za-z0-9_]/) continue        # foo.mdx, bar.md5: not a Markdown path
    if (baseof(tok) in allowed) continue
    if (tok ~ /^\//) { report(tok ": a path outside the repository"); continue }
    a = norm(tok); b = norm(dirof(FILENAME) "/" tok)
    if (a != "" && a in tracked) target = a
    else if (b != "" && b in tracked) target = b
    else { report(tok ": no such document in the repository"); continue }
    if (match(rest, /^[ \t]*§[0-9]+(\.[0-9]+)*/)) {
      sec = substr(rest, RSTART, RLENGTH); sub(/^[ \t]*§/, "", sec)
      if (!has_section(target, sec)) report(tok " §" sec ": " target " has no section " sec)
    }
  }
}
BEGIN {
  n = split(allowed_names, tmp, " "); for (i = 1; i <= n; i++) allowed[tmp[i]] = 1
  while ((getline line < tracked_list) > 0) tracked[line] = 1
  close(tracked_list)
}
FNR == 1 {
  mode = "hash"; in_block = 0; in_doc = 0
  if (FILENAME ~ /\.md$/) mode = "md"
  else if (FILENAME ~ /\.(h|hpp|c|cc|cpp)$/) mode = "c"
  else if (FILENAME ~ /\.py$/) mode = "py"
}
{
  line = $0
  if (line ~ /(^|[^A-Za-z0-9_])shared\/(docs|bench)([^A-Za-z0-9_]|$)/ ||
      line ~ /\.\.\/shared\// || line ~ /\/work\/shared/)
    report("cites the shared/ reference folder, which is not part of the repository")
  text = ""
  if (mode == "md") text = line
  else if (mode == "c") {
    if (in_block) {
      if (i = index(line, "*/")) { text = substr(line, 1, i); in_block = 0 } else text = line
    } else if (i = index(line, "//")) text = substr(line, i + 2)
    else if (i = index(line, "/*")) {
      text = substr(line, i + 2)
      if (!index(text, "*/")) in_block = 1
    }
  } else {
    if (mode == "py") {
      q = gsub(/"""/, "\"\"\"", line)
      if (in_doc || q > 0) text = line
      if (q % 2 == 1) in_doc = !in_doc
    }
    if (text == "" && match(line, /(^|[ \t])#/)) text = substr(line, RSTART)
  }
  if (text != "") check_text(text)
}
END { exit bad > 0 ? 1 : 0 }
AWK

if ! out=$(awk -v tracked_list="$tracked" -v allowed_names="$ALLOWED" "$prog" "${files[@]}"); then
  printf '%s\n' "$out"
  echo "check-doc-refs: $(printf '%s\n' "$out" | wc -l) citation(s) of documents that are not in the repository" >&2
  exit 1
fi
echo "check-doc-refs: ${#files[@]} files, every cited document is in the repository"
