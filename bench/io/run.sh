#!/usr/bin/env bash
# cryptmap's I/O benchmark. In one run, fio with O_DIRECT (psync) on:
#   raw          the storage itself: a plain file of the same size on the same file system as the
#                images, no FUSE, no crypto -- with null, the physical limit: limit = min(raw, null)
#   null         fuse_ceiling null: a FUSE file served from RAM (no crypto, no I/O) -- the
#                ceiling of any FUSE design on this machine
#   passthrough  fuse_ceiling passthrough: a FUSE file over the same LUKS2 image, doing the
#                store I/O cryptmap does (O_DIRECT, private buffers) minus the crypto -- the
#                ceiling of cryptmap's design on this storage
#   cryptmap     cryptmap open -f: LUKS2, aes-xts-plain64, 512-bit key, 4096-byte sectors,
#                FUSE through /dev/fuse (--fuse-transport=dev)
#   cryptmap-uring  the same on a copy of the image, FUSE over io_uring (--fuse-transport=uring;
#                the script sets /sys/module/fuse/parameters/enable_uring to Y for the run and
#                restores it at exit, holding the machine-wide lock the tests take meanwhile)
#   qsd-luks     qemu-storage-daemon's FUSE export over qemu's luks driver (LUKS1 image)
#   nbdkit-luks  nbdkit's luks filter served through nbdfuse (LUKS1 image)
#   (optional) passthrough-cached: the passthrough over the host page cache, as the peers run
#   (optional, issue #15) cryptmap-bitlk: cryptmap open --type bitlk of cryptsetup's BitLocker test
#                image bitlk-aes-xts-128-4k (tests/data; AES-128-XTS, 4096-byte sectors, 100 MiB
#                volume: needs SIZE_MIB <= 96), filled with the payload through cryptmap first
#   (optional) dislocker: dislocker-fuse 0.7 (Debian dislocker) on a copy of that filled image,
#                the BitLocker peer; the summary adds cryptmap-bitlk / dislocker and / cryptmap
#   (optional, issue #12) authenticated LUKS2 (--integrity, docs/integrity.md), 4096-byte sectors,
#                made by cryptmap luksFormat (cryptsetup needs device-mapper for it), filled with
#                the payload through cryptmap; the summary adds each / cryptmap with the goals:
#     cryptmap-hmac       aes-xts-random + hmac-sha256, journal mode (cryptsetup's default)
#     cryptmap-hmac-nj    the same opened with --integrity-no-journal (a copy of the image)
#     cryptmap-aead       aes-gcm-random + aead, journal mode
#     cryptmap-aead-nj    the same opened with --integrity-no-journal (a copy of the image)
# Workloads: seqread / seqwrite 1 MiB (1 job), randread / randwrite 4 KiB, 1 and 4 jobs (QD1 each).
#
# All systems are mounted for the whole run; each workload is measured for every repeat in
# turn across the systems (A B C A B C ...), so machine drift hits them all alike. After every
# write workload the file is fsynced (untimed) so no system's write-back overlaps the next one.
# Before measuring, 1 MiB is written through every file and read back (and the LUKS systems
# must not have left it in the image as plaintext).
#
# Usage (root):  bench/io/run.sh [BUILD_DIR]          (default BUILD_DIR: <repo>/build)
#   Builds the two targets it needs (cryptmap, fuse_ceiling) in BUILD_DIR, configuring a
#   RelWithDebInfo build there first if BUILD_DIR does not exist. Installs nothing: a system
#   whose tools are missing is skipped with the Debian package to install (see bench/README.md).
# Env:
#   QUICK=1     validation run: 128 MiB images, RUNTIME=2, RAMP=1, REPEATS=1
#   SYSTEMS     default "raw null passthrough cryptmap qsd-luks nbdkit-luks"
#   WORKLOADS   default "seqread seqwrite randread-j1 randread-j4 randwrite-j1 randwrite-j4"
#   RUNTIME     measured seconds per fio run (default 8)     RAMP  unmeasured seconds (default 2)
#   REPEATS     default 3                                    SIZE_MIB  volume size (default 1024)
#   CACHE_MIB   cryptmap's cache size for the memory goal (default 64 = VolumeOptions default;
#               the CLI has no option to change it)
#   OUT         results directory (default /tmp/cryptmap-bench): results.csv (one row per fio
#               run), summary.csv, results.md, chart.svg, host.txt, logs/
#   PROFILE     systems to profile with perf (e.g. "cryptmap passthrough"): `perf record -e
#               cpu-clock -g` on their daemons during each measured window, reports in
#               OUT/profile/WORKLOAD-SYSTEM.txt. Sampling perturbs the numbers: use a separate run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${1:-$root/build}

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then d_size=128 d_runtime=2 d_ramp=1 d_repeats=1
else d_size=1024 d_runtime=8 d_ramp=2 d_repeats=3; fi
SYSTEMS=${SYSTEMS:-"raw null passthrough cryptmap qsd-luks nbdkit-luks"}
WORKLOADS=${WORKLOADS:-"seqread seqwrite randread-j1 randread-j4 randwrite-j1 randwrite-j4"}
RUNTIME=${RUNTIME:-$d_runtime}
RAMP=${RAMP:-$d_ramp}
REPEATS=${REPEATS:-$d_repeats}
SIZE_MIB=${SIZE_MIB:-$d_size}
CACHE_MIB=${CACHE_MIB:-64}
OUT=${OUT:-/tmp/cryptmap-bench}
MiB=$((1 << 20))

log() { printf '%s %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

declare -A WL=(
  [seqread]="read 1M 1"          [seqwrite]="write 1M 1"
  [randread-j1]="randread 4k 1"  [randread-j4]="randread 4k 4"
  [randwrite-j1]="randwrite 4k 1" [randwrite-j4]="randwrite 4k 4"
)
declare -A NEEDS=(
  [raw]="" [null]="" [passthrough]="" [passthrough-cached]="" [cryptmap]="" [cryptmap-uring]=""
  [qsd-luks]="qemu-storage-daemon" [nbdkit-luks]="nbdkit nbdfuse"
  [cryptmap-bitlk]="xz" [dislocker]="xz dislocker-fuse"
  [cryptmap-hmac]="" [cryptmap-hmac-nj]="" [cryptmap-aead]="" [cryptmap-aead-nj]=""
)
# integrity systems (issue #12): SYSTEM -> "cipher integrity image open-flags"
declare -A INTEG=(
  [cryptmap-hmac]="aes-xts-random hmac-sha256 hmac.img"
  [cryptmap-hmac-nj]="aes-xts-random hmac-sha256 hmac-nj.img --integrity-no-journal"
  [cryptmap-aead]="aes-gcm-random aead aead.img"
  [cryptmap-aead-nj]="aes-gcm-random aead aead-nj.img --integrity-no-journal"
)
declare -A PKG=([qemu-storage-daemon]=qemu-system-common [nbdkit]=nbdkit [nbdfuse]=nbdfuse
  [fio]=fio [jq]=jq [cryptsetup]=cryptsetup-bin [fusermount3]=fuse3 [openssl]=openssl
  [python3]=python3 [cmake]=cmake [ninja]=ninja-build [xz]=xz-utils [dislocker-fuse]=dislocker)

# ------------------------------------------------------------------ preflight
[[ $(id -u) == 0 ]] || die "run as root (FUSE mounts of other daemons, O_DIRECT images)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
for c in fio jq cryptsetup fusermount3 openssl python3; do
  command -v "$c" >/dev/null || die "missing '$c': apt-get install ${PKG[$c]}"
done
PROFILE=${PROFILE:-}
[[ -z $PROFILE ]] || command -v perf >/dev/null || die "PROFILE needs perf: apt-get install linux-perf"
for wl in $WORKLOADS; do [[ -n ${WL[$wl]:-} ]] || die "unknown workload '$wl' (known: ${!WL[*]})"; done
RUN=()
for s in $SYSTEMS; do
  [[ -v NEEDS[$s] ]] || die "unknown system '$s' (known: ${!NEEDS[*]})"
  missing=
  for c in ${NEEDS[$s]}; do command -v "$c" >/dev/null || missing+=" ${PKG[$c]}"; done
  if [[ -n $missing ]]; then log "skipping $s: apt-get install$missing"; else RUN+=("$s"); fi
done
((${#RUN[@]})) || die "no system to run"

if [[ ! -d $BUILD ]]; then
  for c in cmake ninja; do command -v "$c" >/dev/null || die "missing $c: apt-get install ${PKG[$c]}"; done
  log "configuring $BUILD (RelWithDebInfo, no tests)"
  cmake -S "$root" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRYPTMAP_BUILD_TESTS=OFF >/dev/null
fi
log "building cryptmap and fuse_ceiling in $BUILD"
cmake --build "$BUILD" --target cryptmap fuse_ceiling >/dev/null || die "build failed (cmake --build $BUILD --target cryptmap fuse_ceiling)"
CM=$BUILD/cli/cryptmap
CEIL=$BUILD/bench/io/fuse_ceiling
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
sanitize=$(sed -n 's/^CRYPTMAP_SANITIZE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
[[ $build_type == Rel* && -z $sanitize ]] ||
  log "warning: $BUILD is a '$build_type' build${sanitize:+ with sanitizer $sanitize}: numbers will not be representative"

# ------------------------------------------------------- processes and cleanup
W=$(mktemp -d /tmp/cryptmap-bench-work.XXXXXX)
mkdir -p "$OUT/logs"
rm -f "$OUT"/logs/*
PIDS=()         # "pid:kind:system", kind = owner (unmounts itself on SIGTERM) | fuse | server
MOUNTS=()
FIO_PID=
declare -A TARGET SYSPIDS

alive() { kill -0 "$1" 2>/dev/null; }
mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
stop_pid() {    # SIGTERM, wait up to 15 s, then SIGKILL; reap
  local pid=$1 i
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then log "pid $pid ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
unmount() {
  mounted "$1" || return 0
  fusermount3 -u "$1" 2>/dev/null || { sleep 1; fusermount3 -u "$1" 2>/dev/null; } ||
    { log "lazy unmount of $1"; fusermount3 -uz "$1" 2>/dev/null || umount -l "$1" || true; }
}
teardown() {    # owners first (they unmount themselves), then the mounts left, then servers
  local e i m
  if [[ -n $FIO_PID ]]; then stop_pid "$FIO_PID"; FIO_PID=; fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    e=${PIDS[i]}; [[ $e == *:owner:* ]] && stop_pid "${e%%:*}"
  done
  for m in "${MOUNTS[@]}"; do unmount "$m"; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    e=${PIDS[i]}; [[ $e == *:owner:* ]] || stop_pid "${e%%:*}"
  done
  PIDS=(); MOUNTS=()
}
# uring_hold: enable_uring Y until exit, under the machine-wide flock that the tests in every
# worktree take around their changes of it (tests/integration/lib.sh, enable_uring_hold; the
# same lock file): no test flips it, or restores an old value, while this run's daemons start.
# The lock is held by a flock(1) coprocess that ends when this shell exits (after cleanup has
# restored the value); the daemons and fio do not inherit it.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
URING_LOCK=/run/cryptmap-enable_uring.lock
URING_SAVED=
uring_hold() {
  [[ -z $URING_SAVED ]] || return 0
  [[ -w $URING_PARAM ]] ||
    die "cryptmap-uring: no writable $URING_PARAM (a kernel without FUSE over io_uring)"
  local held=
  log "waiting for $URING_LOCK (enable_uring)"
  coproc URING_HOLDER { exec flock -o "$URING_LOCK" sh -c 'echo held; exec cat >/dev/null'; }
  read -r held <&"${URING_HOLDER[0]}" || true
  [[ $held == held ]] || die "could not take $URING_LOCK (flock)"
  URING_SAVED=$(cat "$URING_PARAM")
  echo Y > "$URING_PARAM"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  teardown
  [[ -n $URING_SAVED ]] && echo "$URING_SAVED" > "$URING_PARAM"
  for m in "$W"/*; do mounted "$m" && { log "still mounted: $m"; rc=1; }; done
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

start_bg() {    # start_bg KIND SYSTEM CMD...: run CMD in the background, log to logs/SYSTEM*.log
  local kind=$1 sys=$2; shift 2
  "$@" >>"$OUT/logs/$sys.log" 2>&1 &
  PIDS+=("$!:$kind:$sys")
  SYSPIDS[$sys]+="$! "
  LAST=$!
}
wait_ready() {  # wait_ready PID MOUNTPOINT FILE: up to 30 s, fail if PID dies
  local i
  for ((i = 0; i < 300; i++)); do
    mounted "$2" && [[ -e $3 ]] && return 0
    alive "$1" || die "pid $1 exited before $3 appeared (see $OUT/logs)"
    sleep 0.1
  done
  die "$3 did not appear within 30 s"
}

# ---------------------------------------------------------------------- images
printf 'bench passphrase' >"$W/pass"
chmod 600 "$W/pass"
fill_random() {  # fill_random FILE OFFSET_BYTES: pseudo-random payload, so reads touch storage
  head -c $((SIZE_MIB * MiB)) /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K 00112233445566778899aabbccddeeff -iv 0 2>/dev/null |
    dd of="$1" bs=1M seek=$(($2 / MiB)) conv=notrunc,fsync status=none
}
need_luks2=0 need_luks1=0 need_raw=0 need_bitlk=0
declare -A need_integ=()   # integrity image prefix (hmac, aead) -> 1
for s in "${RUN[@]}"; do
  case $s in
    raw) need_raw=1 ;; cryptmap-bitlk | dislocker) need_bitlk=1 ;;
    cryptmap-hmac* | cryptmap-aead*) t=${s#cryptmap-}; need_integ[${t%-nj}]=1 ;;
    passthrough* | cryptmap*) need_luks2=1 ;; qsd-luks | nbdkit-luks) need_luks1=1 ;;
  esac
done
if ((need_luks2)); then
  log "LUKS2 image: aes-xts-plain64, 512-bit key, 4096-byte sectors, ${SIZE_MIB} MiB payload"
  truncate -s $(((SIZE_MIB + 16) * MiB)) "$W/luks2.img"
  cryptsetup luksFormat --batch-mode --type luks2 --cipher aes-xts-plain64 --key-size 512 \
    --sector-size 4096 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$W/pass" "$W/luks2.img"
  L2OFF=$(cryptsetup luksDump "$W/luks2.img" | awk '/^Data segments:/ { d = 1 } d && /offset:/ { print $2; exit }')
  [[ $L2OFF =~ ^[0-9]+$ && $((L2OFF % MiB)) == 0 ]] || die "unexpected LUKS2 data offset '$L2OFF'"
  truncate -s $((L2OFF + SIZE_MIB * MiB)) "$W/luks2.img"
  fill_random "$W/luks2.img" "$L2OFF"
  dd if="$W/luks2.img" iflag=nocache count=0 status=none   # O_DIRECT users: start uncached
  if [[ " ${RUN[*]} " == *" cryptmap-uring "* ]]; then  # an image is opened by one daemon only
    cp --sparse=never "$W/luks2.img" "$W/luks2u.img"
    dd if="$W/luks2u.img" iflag=nocache count=0 status=none
  fi
fi
if ((need_raw)); then
  log "raw file: ${SIZE_MIB} MiB of the same payload, no header"
  truncate -s $((SIZE_MIB * MiB)) "$W/raw.img"
  fill_random "$W/raw.img" 0
  dd if="$W/raw.img" iflag=nocache count=0 status=none
fi
if ((need_luks1)); then
  log "LUKS1 image: aes-xts-plain64, 512-bit key, sha256, ${SIZE_MIB} MiB payload"
  truncate -s $(((SIZE_MIB + 2) * MiB)) "$W/luks1.img"
  cryptsetup luksFormat --batch-mode --type luks1 --cipher aes-xts-plain64 --key-size 512 --hash sha256 \
    --pbkdf-force-iterations 1000 --key-file "$W/pass" "$W/luks1.img"
  L1OFF=$(($(cryptsetup luksDump "$W/luks1.img" | awk '/^Payload offset:/ { print $3 }') * 512))
  [[ $((L1OFF % MiB)) == 0 ]] || die "unexpected LUKS1 payload offset $L1OFF"
  truncate -s $((L1OFF + SIZE_MIB * MiB)) "$W/luks1.img"
  fill_random "$W/luks1.img" "$L1OFF"
  cat "$W/luks1.img" >/dev/null   # the peers run over the host page cache (their default): warm it
fi
if ((need_bitlk)); then
  BITLK=bitlk-aes-xts-128-4k
  log "BitLocker image: cryptsetup's $BITLK (AES-128-XTS, 4096-byte sectors), ${SIZE_MIB} MiB payload written through cryptmap"
  ((SIZE_MIB <= 96)) || die "the BitLocker test volume holds 100 MiB: run with SIZE_MIB=96 or less"
  tar -xJSf "$root/tests/data/bitlk-images.tar.xz" -C "$W" "bitlk-images/$BITLK.img" "bitlk-images/images.conf"
  mv "$W/bitlk-images/$BITLK.img" "$W/bitlk.img"
  # the password images.conf records for the image (cryptsetup's rule: the whole key file)
  awk -v s="[$BITLK]" '$0 == s { f = 1; next } /^\[/ { f = 0 } f && sub(/^PW=/, "") { printf "%s", $0; exit }' \
    "$W/bitlk-images/images.conf" >"$W/bitlk.pass"
  [[ -s $W/bitlk.pass ]] || die "no PW for $BITLK in images.conf"
  mkdir -p "$W/fill"
  "$CM" open --type bitlk "$W/bitlk.img" fill --key-file "$W/bitlk.pass" --mount-dir "$W/fill" ||
    die "cryptmap open --type bitlk $W/bitlk.img failed"
  fill_random "$W/fill/fill" 0
  "$CM" close --mount-dir "$W/fill" fill || die "cryptmap close of the BitLocker fill failed"
  if [[ " ${RUN[*]} " == *" dislocker "* ]]; then cp --sparse=never "$W/bitlk.img" "$W/bitlk-d.img"; fi
  dd if="$W/bitlk.img" iflag=nocache count=0 status=none
fi

for t in "${!need_integ[@]}"; do
  read -r icipher iinteg _ <<<"${INTEG[cryptmap-$t]}"
  # The volume must hold SIZE_MIB: 16 MiB LUKS2 header, the journal (dev/128, at most 64 MiB),
  # tags (at most 48 B per 4 KiB block here, 1.2 %) and padding: 3 % + 24 MiB covers it.
  log "LUKS2 --integrity image: $icipher + $iinteg, 4096-byte sectors, ${SIZE_MIB} MiB payload written through cryptmap"
  truncate -s $(((SIZE_MIB * 103 / 100 + 24) * MiB)) "$W/$t.img"
  "$CM" luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher "$icipher" \
    --integrity "$iinteg" --sector-size 4096 --integrity-no-wipe "$W/$t.img" "$W/pass" ||
    die "cryptmap luksFormat --integrity $iinteg $W/$t.img failed"
  mkdir -p "$W/fill"   # every block the workloads touch gets a valid tag (no wipe: faster)
  "$CM" open "$W/$t.img" fill --key-file "$W/pass" --mount-dir "$W/fill" --integrity-no-journal ||
    die "cryptmap open of $W/$t.img for the fill failed"
  fill_random "$W/fill/fill" 0
  "$CM" close --mount-dir "$W/fill" fill || die "cryptmap close of the $t fill failed"
  if [[ " ${RUN[*]} " == *" cryptmap-$t-nj "* ]]; then cp --sparse=never "$W/$t.img" "$W/$t-nj.img"; fi
  dd if="$W/$t.img" iflag=nocache count=0 status=none
done

# --------------------------------------------------------------------- systems
start_system() {
  local s=$1 m=$W/$1
  case $s in
    raw)        # no process: fio opens the file itself (O_DIRECT, as for every system)
      TARGET[$s]=$W/raw.img SYSPIDS[$s]=
      return 0 ;;
    null)
      mkdir -p "$m"; start_bg owner "$s" "$CEIL" null "$SIZE_MIB" "$m"
      MOUNTS+=("$m"); TARGET[$s]=$m/vol ;;
    passthrough)
      mkdir -p "$m"; start_bg owner "$s" "$CEIL" passthrough "$W/luks2.img" "$L2OFF" "$m"
      MOUNTS+=("$m"); TARGET[$s]=$m/vol ;;
    passthrough-cached)
      mkdir -p "$m"; start_bg owner "$s" "$CEIL" passthrough --buffered "$W/luks2.img" "$L2OFF" "$m"
      MOUNTS+=("$m"); TARGET[$s]=$m/vol ;;
    cryptmap)   # -f: this process is the daemon (SIGTERM flushes, unmounts and exits)
      start_bg owner "$s" "$CM" open "$W/luks2.img" bench --key-file "$W/pass" --mount-dir "$m" -f \
        --fuse-transport=dev
      MOUNTS+=("$m"); TARGET[$s]=$m/bench ;;
    cryptmap-uring)
      uring_hold
      start_bg owner "$s" "$CM" open "$W/luks2u.img" bench --key-file "$W/pass" --mount-dir "$m" -f \
        --fuse-transport=uring
      MOUNTS+=("$m"); TARGET[$s]=$m/bench ;;
    cryptmap-bitlk)
      start_bg owner "$s" "$CM" open --type bitlk "$W/bitlk.img" bench --key-file "$W/bitlk.pass" \
        --mount-dir "$m" -f --fuse-transport=dev
      MOUNTS+=("$m"); TARGET[$s]=$m/bench ;;
    cryptmap-hmac* | cryptmap-aead*)
      local icipher iinteg iimg iflags
      read -r icipher iinteg iimg iflags <<<"${INTEG[$s]}"
      # shellcheck disable=SC2086
      start_bg owner "$s" "$CM" open "$W/$iimg" bench --key-file "$W/pass" --mount-dir "$m" -f \
        --fuse-transport=dev $iflags
      MOUNTS+=("$m"); TARGET[$s]=$m/bench ;;
    dislocker)  # FUSE's -f: the process stays in the foreground; SIGTERM unmounts and exits
      mkdir -p "$m"
      start_bg owner "$s" dislocker-fuse -V "$W/bitlk-d.img" -u"$(cat "$W/bitlk.pass")" -- -f "$m"
      MOUNTS+=("$m"); TARGET[$s]=$m/dislocker-file ;;
    qsd-luks)   # stopped by SIGTERM: qsd 7.2 spins if its export is unmounted under it
      m=$W/qsd.vol; : >"$m"
      start_bg owner "$s" qemu-storage-daemon --object "secret,id=sec0,file=$W/pass" \
        --blockdev "driver=file,node-name=prot,filename=$W/luks1.img" \
        --blockdev "driver=luks,node-name=disk,file=prot,key-secret=sec0" \
        --export "type=fuse,id=exp0,node-name=disk,mountpoint=$m,writable=on"
      MOUNTS+=("$m"); TARGET[$s]=$m ;;
    nbdkit-luks)
      start_bg server "$s" nbdkit -f -U "$W/nbd.sock" file "$W/luks1.img" --filter=luks "passphrase=+$W/pass"
      local i; for ((i = 0; i < 300; i++)); do [[ -S $W/nbd.sock ]] && break; alive "$LAST" || die "nbdkit exited"; sleep 0.1; done
      mkdir -p "$m"; start_bg fuse "$s" nbdfuse "$m/vol" --unix "$W/nbd.sock"
      MOUNTS+=("$m"); TARGET[$s]=$m/vol ;;
  esac
  wait_ready "$LAST" "${MOUNTS[-1]}" "${TARGET[$s]}"
  local size; size=$(stat -L -c %s "${TARGET[$s]}")
  ((size >= SIZE_MIB * MiB)) || die "$s: ${TARGET[$s]} has $size bytes, expected $((SIZE_MIB * MiB))"
}

verify() {      # 1 MiB through the file and back; LUKS images must not hold it as plaintext
  local s=$1 f=${TARGET[$1]} off=$((SIZE_MIB / 2)) img='' ioff=''
  head -c $MiB /dev/urandom >"$W/pattern"
  dd if="$W/pattern" of="$f" bs=1M seek=$off count=1 oflag=direct conv=notrunc,nocreat,fsync status=none ||
    die "$s: writing 1 MiB through $f failed"
  dd if="$f" of="$W/back" bs=1M skip=$off count=1 iflag=direct status=none || die "$s: reading $f failed"
  cmp -s "$W/pattern" "$W/back" || die "$s: data read back through $f differs from what was written"
  case $s in
    cryptmap) img=$W/luks2.img ioff=$L2OFF ;;
    cryptmap-uring) img=$W/luks2u.img ioff=$L2OFF ;;
    qsd-luks | nbdkit-luks) img=$W/luks1.img ioff=$L1OFF ;;
    cryptmap-bitlk) img=$W/bitlk.img ioff=0 ;;   # BitLocker keeps the data in place here
    dislocker) img=$W/bitlk-d.img ioff=0 ;;
    passthrough*) img=$W/luks2.img ioff=$L2OFF ;;
    cryptmap-hmac* | cryptmap-aead*)   # interleaved layout: none of 4 blocks of it anywhere
      read -r _ _ img _ <<<"${INTEG[$s]}"
      python3 - "$W/$img" "$W/pattern" <<'PY' || die "$s: the image holds written data as plaintext"
import mmap, sys
f = open(sys.argv[1], "rb"); mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
p = open(sys.argv[2], "rb").read()
sys.exit(1 if any(mm.find(p[i:i + 4096]) >= 0 for i in range(0, len(p), 256 << 10)) else 0)
PY
      img= ;;
  esac
  if [[ -n $img ]]; then
    dd if="$img" of="$W/raw" bs=1M skip=$((ioff / MiB + off)) count=1 iflag=direct status=none
    if [[ $s == passthrough* ]]; then
      cmp -s "$W/pattern" "$W/raw" || die "$s: the image does not hold what was written"
    else
      cmp -s "$W/pattern" "$W/raw" && die "$s: the image holds the written data as plaintext"
    fi
  fi
  log "verify $s: ok"
}

# ----------------------------------------------------------------- measurement
rss_kib() {     # rss_kib FIELD PIDS...: sum of VmRSS/VmHWM over PIDS
  local f=$1 p t=0 v; shift
  for p in "$@"; do v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null) || v=0; t=$((t + ${v:-0})); done
  echo "$t"
}
cpu_ticks() {   # utime+stime of PIDS (all threads)
  local p t=0 v
  for p in "$@"; do v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || v=0; t=$((t + ${v:-0})); done
  echo "$t"
}
busy_total() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
HZ=$(getconf CLK_TCK)
profile_report() {  # profile_report BASE: BASE.data -> BASE.txt (self time by DSO, by symbol; kernel chains)
  local d=$1.data r=(perf report -i "$1.data" --stdio --no-children)
  {
    echo "== $(basename "$1"): samples of the daemon's threads (cpu-clock), self time"
    "${r[@]}" --sort dso -g none --percent-limit 0.5 2>/dev/null | grep -v -e '^#' -e '^$'
    echo "== by symbol"
    "${r[@]}" --sort dso,sym -g none --percent-limit 0.4 2>/dev/null | grep -v -e '^#' -e '^$' | cut -c1-160
    echo "== call chains (user-space frames are unreliable: no frame pointers in the build)"
    "${r[@]}" --sort sym -G --percent-limit 3 2>/dev/null | grep -v -e '^#' -e '^$' | cut -c1-160 | head -300
  } >"$1.txt"
  [[ -s $d ]] || log "no samples in $d"
}

per_request_counts() {  # BASE JSON DIR: BASE.perfstat -> BASE.stat (counts per fio request)
  local ios
  ios=$(jq -r --arg d "$3" '.jobs[0][$d].total_ios' "$2" 2>/dev/null) || ios=0
  [[ -s $1.perfstat && ${ios:-0} -gt 0 ]] || return 0
  awk -F, -v n="$ios" '/^[0-9]/ { printf "%-40s %12.0f  per request %.2f\n", $3, $1, $1 / n }' \
    "$1.perfstat" >"$1.stat"
}

RESULTS=$OUT/results.csv
echo "workload,rep,system,rw,bs,numjobs,mb_s,iops,lat_mean_us,clat_p99_us,rss_peak_kib,daemon_cpu_pct,machine_busy_pct,status" >"$RESULTS"

measure() {     # measure SYSTEM WORKLOAD REP -> one row of results.csv
  local s=$1 wl=$2 rep=$3 rw bs nj dir json row status=ok peak=0 r c0 c1 b0 t0 b1 t1 w0 w1
  read -r rw bs nj <<<"${WL[$wl]}"
  if [[ $rw == *read ]]; then dir="read"; else dir="write"; fi
  json=$OUT/logs/fio-$wl-$rep-$s.json
  local pids
  read -r -a pids <<<"${SYSPIDS[$s]}"
  c0=$(cpu_ticks "${pids[@]}"); read -r b0 t0 < <(busy_total); w0=$(date +%s.%N)
  timeout -k 10 $((RAMP + RUNTIME + 60)) fio --name="$wl" --filename="${TARGET[$s]}" \
    --rw="$rw" --bs="$bs" --numjobs="$nj" --size=$((SIZE_MIB * MiB)) --group_reporting \
    --ioengine=psync --direct=1 --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
    --norandommap --randrepeat=0 --fallocate=none --allow_file_create=0 \
    --output-format=json --output="$json" >/dev/null 2>"$OUT/logs/fio-$wl-$rep-$s.err" &
  FIO_PID=$!
  local perf_pid= stat_pid=
  if [[ " $PROFILE " == *" $s "* ]]; then
    mkdir -p "$OUT/profile"
    perf record -q -e cpu-clock -g -p "$(IFS=,; echo "${pids[*]}")" -o "$OUT/profile/$wl-$s.data" \
      -D $((RAMP * 1000)) -- sleep $((RAMP + RUNTIME)) >/dev/null 2>&1 &
    perf_pid=$!
    # Hand-offs: the daemon's context switches and futex calls (wakes and waits) in the same
    # window, divided by fio's requests below (OUT/profile/WORKLOAD-SYSTEM.stat).
    perf stat -x, -e context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_io_uring_enter \
      -p "$(IFS=,; echo "${pids[*]}")" -o "$OUT/profile/$wl-$s.perfstat" \
      -D $((RAMP * 1000)) -- sleep $((RAMP + RUNTIME)) >/dev/null 2>&1 &
    stat_pid=$!
  fi
  while alive "$FIO_PID"; do
    r=$(rss_kib VmRSS "${pids[@]}"); ((r > peak)) && peak=$r
    sleep 0.2
  done
  wait "$FIO_PID" || status=fio-failed
  FIO_PID=
  if [[ -n $perf_pid ]]; then
    wait "$perf_pid" || log "perf record failed for $s $wl"
    profile_report "$OUT/profile/$wl-$s"
    wait "$stat_pid" || log "perf stat failed for $s $wl"
    per_request_counts "$OUT/profile/$wl-$s" "$json" "$dir"
  fi
  w1=$(date +%s.%N); read -r b1 t1 < <(busy_total); c1=$(cpu_ticks "${pids[@]}")
  if [[ $status == ok ]]; then
    row=$(jq -r --arg d "$dir" '.jobs[0][$d] | [ (.bw_bytes / 1e6 * 10 | round / 10), (.iops | round),
      (.lat_ns.mean / 1000 * 10 | round / 10), ((.clat_ns.percentile["99.000000"] // 0) / 1000 * 10 | round / 10) ] | @csv' \
      "$json") || status=parse-failed
  fi
  [[ $status == ok ]] || row=",,,"
  if [[ $dir == write && -e ${TARGET[$s]} ]]; then   # untimed: no write-back overlaps the next system
    sync -d "${TARGET[$s]}" || log "$s: fsync of ${TARGET[$s]} failed"
  fi
  echo "$wl,$rep,$s,$rw,$bs,$nj,$row,$peak,$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v a="$w0" -v b="$w1" \
    'BEGIN { printf "%.0f", (b > a ? 100 * d / hz / (b - a) : 0) }'),$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) \
    'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }'),$status" >>"$RESULTS"
  log "$(printf '%-13s %-12s rep %s: %s MB/s  %s IOPS  RSS %s MiB  %s' "$wl" "$s" "$rep" \
    "$(cut -d, -f1 <<<"$row")" "$(cut -d, -f2 <<<"$row")" $((peak / 1024)) "$status")"
}

# ------------------------------------------------------------------------ main
host() {
  echo "date:      $(date -u +%FT%TZ)"
  echo "host:      $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel:    $(uname -r); fuse max_pages_limit=$(cat /proc/sys/fs/fuse/max_pages_limit 2>/dev/null || echo '?')"
  echo "storage:   $(findmnt -no SOURCE,FSTYPE -T "$W")"
  echo "cryptmap:  $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') ($build_type${sanitize:+, $sanitize}), cache ${CACHE_MIB} MiB"
  echo "tools:     $(fio --version), $(cryptsetup --version | cut -d' ' -f1-2), $(qemu-storage-daemon --version 2>/dev/null | sed -n '1s/.*version /qsd /p'), $(nbdkit --version 2>/dev/null | head -1), $(nbdfuse --version 2>/dev/null | head -1)$(command -v dislocker-fuse >/dev/null && dislocker-fuse -h 2>&1 | sed -n '1s/.*\(v[0-9.]*\) .*/, dislocker \1/p')"
  echo "settings:  SYSTEMS=\"${RUN[*]}\" REPEATS=$REPEATS RUNTIME=$RUNTIME RAMP=$RAMP SIZE_MIB=$SIZE_MIB QUICK=$QUICK"
}
host | tee "$OUT/host.txt" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/host.txt" >&2

for s in "${RUN[@]}"; do start_system "$s"; done
for s in "${RUN[@]}"; do verify "$s"; done
for wl in $WORKLOADS; do
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for s in "${RUN[@]}"; do measure "$s" "$wl" "$rep"; done
  done
done
for s in "${RUN[@]}"; do
  [[ -n ${SYSPIDS[$s]} ]] || continue   # raw: no process of its own
  # shellcheck disable=SC2086
  echo "peak RSS over the run (VmHWM) $s: $(($(rss_kib VmHWM ${SYSPIDS[$s]}) / 1024)) MiB" | tee -a "$OUT/host.txt" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/host.txt" >&2
teardown
python3 "$here/summarize.py" "$RESULTS" --out "$OUT" --cache-mib "$CACHE_MIB" --host "$OUT/host.txt"
log "results: $OUT/results.md, $OUT/chart.svg, $RESULTS"
