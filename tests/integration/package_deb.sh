#!/usr/bin/env bash
# The .deb on this machine, end to end: cpack makes it from this build tree (what `ninja
# package` runs after building); its control fields carry the dependencies dpkg-shlibdeps found
# and no maintainer scripts; `dpkg -i` installs it; the installed /usr/bin/cryptmap makes a LUKS2
# image (cryptsetup checks it), opens it, data written through the mapped file reads back after
# close and reopen, and the image holds none of it in clear; `man cryptmap` and the bash
# completion work; `dpkg -r` and then `dpkg --purge` leave nothing of what `dpkg -L` listed. The
# machine's state is restored on any exit (a package this test installed is purged). Needs root.
source "$(dirname "$0")/lib.sh"
: "${CRYPTMAP_BUILD_DIR:?CRYPTMAP_BUILD_DIR must name the build directory}"
[[ $(id -u) == 0 ]] || fail "needs root (dpkg -i)"
if dpkg-query -W -f '${Status}' cryptmap 2>/dev/null | grep -q 'installed'; then
  echo "SKIP: a cryptmap package is already installed here; this test installs and purges its own and will not replace it (dpkg --purge cryptmap first)"
  exit 77
fi
BUILD_CRYPTMAP=$CRYPTMAP
INSTALLED=0
# dpkg waits for nobody: retry while another apt/dpkg holds its lock.
dpkg_() {
  local i
  for i in $(seq 1 60); do
    if dpkg "$@" > "$T/dpkg.out" 2>&1; then return 0; fi
    grep -qi 'lock' "$T/dpkg.out" || { cat "$T/dpkg.out"; return 1; }
    sleep 2
  done
  cat "$T/dpkg.out"; return 1
}
deb_cleanup() {
  set +e
  [[ -d "$T" ]] && cleanup_volumes_with "$CRYPTMAP"
  if ((INSTALLED)); then dpkg_ --purge cryptmap || echo "WARNING: dpkg --purge cryptmap failed" >&2; fi
  CRYPTMAP=$BUILD_CRYPTMAP
  cleanup
}
cleanup_volumes_with() {
  mountpoint -q "$MNT" 2>/dev/null || return 0
  local f
  for f in "$MNT"/*; do [[ -e "$f" ]] && "$1" close "$(basename "$f")" --mount-dir "$MNT" --force; done
}
trap deb_cleanup EXIT

note "cpack -G DEB"
start=$SECONDS
cpack -G DEB -B "$T/pkg" --config "$CRYPTMAP_BUILD_DIR/CPackConfig.cmake" > "$T/cpack.log" 2>&1 \
  || { cat "$T/cpack.log"; fail "cpack failed"; }
debs=("$T"/pkg/cryptmap_*.deb)
[[ ${#debs[@]} == 1 && -f ${debs[0]} ]] || fail "cpack made no single cryptmap_*.deb: $(ls "$T/pkg")"
deb=${debs[0]}
note "$(basename "$deb"): $(stat -c %s "$deb") bytes in $((SECONDS - start)) s"

note "control fields"
dpkg-deb -f "$deb" > "$T/control"
cat "$T/control"
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == cryptmap ]] || fail "Package"
[[ $(field Architecture) == "$(dpkg --print-architecture)" ]] || fail "Architecture"
[[ -n $(field Maintainer) && -n $(field Description) ]] || fail "Maintainer/Description"
depends=$(field Depends)
for lib in libfuse3-3 libc6 libstdc++6 libssl3 libtbb12 fuse3; do
  [[ ", $depends," == *", $lib "* || ", $depends," == *", $lib,"* ]] || fail "Depends lacks $lib: $depends"
done
dpkg-deb -e "$deb" "$T/control.d"
for s in preinst postinst prerm postrm conffiles; do
  [[ ! -e "$T/control.d/$s" ]] || fail "unexpected $s in the package"
done

# Every path the package ships, and whether it was there before (shared directories were).
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^/\?$' > "$T/paths"
: > "$T/preexisting"
while read -r p; do
  if [[ -e "$p" || -L "$p" ]]; then
    [[ -d "$p" && ! -L "$p" ]] || fail "$p is on this machine but no package owns it: refusing to overwrite it"
    echo "$p" >> "$T/preexisting"
  fi
done < "$T/paths"

note "dpkg -i"
INSTALLED=1
dpkg_ -i "$deb" || fail "dpkg -i failed"
dpkg-query -W -f '${Status}' cryptmap | grep -qx 'install ok installed' || fail "not installed after dpkg -i"
dpkg -L cryptmap | sort > "$T/listed"
CRYPTMAP=$(command -v cryptmap)
[[ "$CRYPTMAP" == /usr/bin/cryptmap ]] || fail "cryptmap on PATH is $CRYPTMAP, not /usr/bin/cryptmap"

note "the installed program end to end"
K=$(keyfile key "deb passphrase")
truncate -s 48M "$T/disk.img"
cm luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" "$T/disk.img" "$K"
cryptsetup isLuks --type luks2 "$T/disk.img" || fail "cryptsetup: not LUKS2"
cryptsetup luksDump "$T/disk.img" | grep -q 'PBKDF:.*pbkdf2' || fail "cryptsetup luksDump: no pbkdf2 keyslot"
cryptsetup open --test-passphrase --key-file "$K" "$T/disk.img" || fail "cryptsetup does not accept the passphrase"
cm_open "$T/disk.img" v --key-file "$K"
exe=$(readlink "/proc/$(daemon_pid)/exe")
[[ "$exe" == /usr/bin/cryptmap ]] || fail "the daemon runs $exe, not the installed program"
payload=$(stat -c %s "$MNT/v")
((payload > 0 && payload <= 48 << 20)) || fail "mapped file size $payload"
pattern_write "$MNT/v" 0 $((8 << 20)) 17
cm_close v
cm_open "$T/disk.img" v --key-file "$K" --readonly
pattern_check "$MNT/v" 0 $((8 << 20)) 17 || fail "data did not read back after close and reopen"
[[ $(cm status v --mount-dir "$MNT") == *"$T/disk.img"* ]] || fail "status does not name the image"
cm_close v
grep -qa "cryptmap-pattern seed=00000017" "$T/disk.img" \
  && fail "the image holds the data in clear"

note "man cryptmap, bash completion"
[[ $(man -w cryptmap) == /usr/share/man/man8/cryptmap.8* ]] || fail "man -w: $(man -w cryptmap)"
MANWIDTH=100 man -P cat cryptmap > "$T/man.txt" 2> "$T/man.err" || fail "man cryptmap: $(cat "$T/man.err")"
grep -q 'luksFormat' "$T/man.txt" || fail "man cryptmap does not show luksFormat"
[[ ! -s "$T/man.err" ]] || fail "man cryptmap warns: $(cat "$T/man.err")"
c=$(bash -c 'source /usr/share/bash-completion/completions/cryptmap; COMP_WORDS=(cryptmap luksF); COMP_CWORD=1; _cryptmap; echo "${COMPREPLY[*]}"')
[[ "$c" == luksFormat ]] || fail "completion of 'cryptmap luksF': '$c'"

# nothing_left WHEN: no path of `dpkg -L` is left except the directories that were there before.
nothing_left() {
  local p left=0
  while read -r p; do
    [[ -z "$p" || "$p" == /. ]] && continue
    if grep -qxF "$p" "$T/preexisting"; then
      [[ -d "$p" ]] || fail "$p (there before) is gone after $1"
    elif [[ -e "$p" || -L "$p" ]]; then
      echo "left behind after $1: $p" >&2; left=$((left + 1))
    fi
  done < "$T/listed"
  ((left == 0)) || fail "$left paths of the package are left behind after $1"
}
if command -v systemd-analyze > /dev/null; then
  note "systemd-analyze verify the installed units"
  systemd-analyze verify --man=no /usr/lib/systemd/system/cryptmap.service \
    /usr/lib/systemd/system/cryptmap@home.service > "$T/verify.out" 2>&1 \
    || fail "systemd-analyze verify: $(cat "$T/verify.out")"
  [[ ! -s "$T/verify.out" ]] || fail "systemd-analyze verify warns: $(cat "$T/verify.out")"
fi

note "dpkg -r, then dpkg --purge: nothing left behind"
# No conffiles, so removing already takes every file; purging then drops dpkg's record.
dpkg_ -r cryptmap || fail "dpkg -r failed"
CRYPTMAP=$BUILD_CRYPTMAP
nothing_left "dpkg -r"
dpkg_ --purge cryptmap || fail "dpkg --purge failed"
INSTALLED=0
dpkg-query -W -f '${Status}' cryptmap 2>/dev/null | grep -q 'installed' && fail "still installed after --purge"
nothing_left "dpkg --purge"
[[ ! -e /usr/bin/cryptmap ]] || fail "/usr/bin/cryptmap is left"
note "$(wc -l < "$T/listed") paths listed by dpkg -L, none left; $(wc -l < "$T/preexisting") shared directories kept"
echo "PASS package_deb"
