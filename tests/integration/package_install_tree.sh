#!/usr/bin/env bash
# `cmake --install` of this build into a scratch DESTDIR with prefix /usr (as the .deb does):
# exactly the expected files; the systemd units name the installed program; cryptmap(8) renders
# with groff -ww and man without a warning; and, checked against CLI11's own --help output of
# the built program (a different code path from cli/manual.cpp), every verb and every flag it
# lists is documented in the man page and offered by the installed bash completion.
source "$(dirname "$0")/lib.sh"
: "${CRYPTMAP_BUILD_DIR:?CRYPTMAP_BUILD_DIR must name the build directory}"
D=$T/root

note "cmake --install --prefix /usr into $D"
DESTDIR=$D cmake --install "$CRYPTMAP_BUILD_DIR" --prefix /usr > "$T/install.log" \
  || { cat "$T/install.log"; fail "cmake --install failed"; }
expected="usr/bin/cryptmap
usr/lib/systemd/system/cryptmap.service
usr/lib/systemd/system/cryptmap@.service
usr/share/bash-completion/completions/cryptmap
usr/share/doc/cryptmap/README.md
usr/share/doc/cryptmap/copyright
usr/share/doc/cryptmap/examples/README.md
usr/share/doc/cryptmap/examples/cryptmaptab
usr/share/man/man8/cryptmap.8.gz"
got=$(cd "$D" && find . -type f -o -type l | sed 's|^\./||' | sort)
[[ "$got" == "$expected" ]] || fail "installed files differ:$(diff <(echo "$expected") <(echo "$got"))"
[[ -x "$D/usr/bin/cryptmap" ]] || fail "usr/bin/cryptmap is not executable"
cmp -s "$D/usr/share/doc/cryptmap/examples/cryptmaptab" "$HERE/../../examples/cryptmaptab" \
  || fail "the installed example table differs from examples/cryptmaptab"
grep -q 'CLI11' "$D/usr/share/doc/cryptmap/copyright" || fail "copyright lacks CLI11's terms"

note "systemd units name the installed program"
u=$D/usr/lib/systemd/system
grep -qx 'ExecStart=/usr/bin/cryptmap open --all' "$u/cryptmap.service" || fail "cryptmap.service ExecStart"
grep -qx 'ExecStop=/usr/bin/cryptmap tab-close' "$u/cryptmap.service" || fail "cryptmap.service ExecStop"
grep -qx 'ExecStart=/usr/bin/cryptmap tab-open %I' "$u/cryptmap@.service" || fail "cryptmap@.service ExecStart"
grep -qx 'Documentation=file:///usr/share/doc/cryptmap/README.md' "$u/cryptmap.service" || fail "Documentation="
! grep -n /usr/local "$u"/* || fail "a unit still names /usr/local"

note "cryptmap(8) renders without warnings"
gzip -t "$D/usr/share/man/man8/cryptmap.8.gz" || fail "cryptmap.8.gz is not gzip"
man8=$T/cryptmap.8
zcat "$D/usr/share/man/man8/cryptmap.8.gz" > "$man8"
groff -ww -z -man "$man8" 2> "$T/groff.err" || fail "groff failed: $(cat "$T/groff.err")"
[[ ! -s "$T/groff.err" ]] || fail "groff -ww warns: $(cat "$T/groff.err")"
MANWIDTH=100 man --warnings -l "$man8" > "$T/man.txt" 2> "$T/man.err" || fail "man -l failed: $(cat "$T/man.err")"
[[ ! -s "$T/man.err" ]] || fail "man --warnings -l warns: $(cat "$T/man.err")"
for s in NAME SYNOPSIS DESCRIPTION COMMANDS OPTIONS 'EXIT STATUS' FILES EXAMPLES 'SEE ALSO'; do
  grep -qx "$s" "$T/man.txt" || fail "the rendered page has no $s section"
done
note "the page renders to $(wc -l < "$T/man.txt") lines"

# complete WORDS... -> the candidates the installed completion offers for the last word.
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _cryptmap; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$D/usr/share/bash-completion/completions/cryptmap" "$@"
}
# verbs_of HELP_FILE -> one line per verb CLI11's help lists under "Subcommands:": the verb,
# then its aliases.
verbs_of() { awk '/^Subcommands:/ {on=1; next} on && /^  [A-Za-z]/ {sub(/^  /, ""); sub(/  .*/, ""); gsub(/,/, ""); print}' "$1"; }
# flags_of HELP_FILE -> the long flags of its "Options:" lines.
flags_of() { awk '/^Options:/ {on=1; next} /^[A-Z]/ {on=0} on && /^  -/ {sub(/^  /, ""); sub(/ .*/, ""); print}' "$1" | tr ',' '\n' | grep '^--' || true; }

# check VERB... : the verb's flags in the man page and the completion; then its sub-verbs.
checked_verbs=0 checked_flags=0
check() {
  local help; help=$(mktemp "$T/help.XXXXXX")
  "$D/usr/bin/cryptmap" "$@" --help > "$help"
  local words=("$@") f v
  if (($#)); then
    grep -qx "SS \"$*\"" <(sed 's/^\.//' "$man8") || fail "no man section for '$*'"
    checked_verbs=$((checked_verbs + 1))
  fi
  local offered names
  offered=$(complete_words cryptmap "${words[@]}" --)
  for f in $(flags_of "$help"); do
    [[ $f == --help ]] && continue
    grep -q -- "$(sed 's/-/\\\\-/g' <<< "$f")\\\\fR" "$man8" || fail "man page lacks $f (cryptmap $*)"
    grep -qx -- "$f" <<< "$offered" || fail "completion lacks $f after 'cryptmap $*'"
    checked_flags=$((checked_flags + 1))
  done
  offered=$(complete_words cryptmap "${words[@]}" "")
  while read -r -a names; do
    for v in "${names[@]}"; do
      grep -qx -- "$v" <<< "$offered" || fail "completion lacks verb '$v' after 'cryptmap $*'"
    done
    check "$@" "${names[0]}"
  done < <(verbs_of "$help")
}
note "every verb and flag of --help is in the man page and the completion"
check
((checked_verbs > 25 && checked_flags > 100)) || fail "only $checked_verbs verbs / $checked_flags flags checked: is --help parsed right?"
note "checked $checked_verbs verbs and $checked_flags flags"
echo "PASS package_install_tree"
