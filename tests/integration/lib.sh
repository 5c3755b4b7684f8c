# Shared helpers for cryptmap's end-to-end tests. Source it; needs CRYPTMAP (path of the binary).
# Every test gets its own scratch dir and mount dir, and a cleanup trap that closes volumes,
# unmounts, detaches loop devices and kills leaked daemons (only those of this test).
set -euo pipefail
: "${CRYPTMAP:?CRYPTMAP must name the cryptmap binary}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d /tmp/cryptmap-test.XXXXXX)
MNT=$T/mapper
LOOPS=()
FSMNTS=()

# FUSE connections this test created (ids under /sys/fs/fuse/connections). A daemon that dies
# or deadlocks would leave requests waiting forever; aborting its connection at cleanup (or
# from a watchdog) fails those requests with ENOTCONN so a broken test cannot wedge the machine.
FUSE_CONNS=()
record_fuse_conn() {
  local c
  c=$(mountpoint -d "$MNT" 2>/dev/null | cut -d: -f2) || return 0
  [[ -n "$c" ]] && FUSE_CONNS+=("$c")
  return 0
}
# A connection id is the FUSE superblock's device minor: once our daemon is gone it can be
# reused by any other FUSE mount on the machine (a unit test's, another test's running beside
# this one). Abort an id only while it is mounted on our MNT or mounted nowhere (our lazily
# detached, hung mount), looking in every mount namespace: tests that run in a private one
# (unshare -m) cannot see each other's mounts in /proc/self/mountinfo.
abort_fuse_conns() {
  local c elsewhere
  for c in "${FUSE_CONNS[@]}"; do
    [[ -e /sys/fs/fuse/connections/$c/abort ]] || continue
    elsewhere=$({ cat /proc/[0-9]*/mountinfo 2>/dev/null || true; } |
      awk -v d="0:$c" -v m="$MNT" '$3 == d && $5 != m {f = $5} END {print f}')
    [[ -z "$elsewhere" ]] || continue
    echo 1 > "/sys/fs/fuse/connections/$c/abort"
  done
  return 0
}
# watchdog SECONDS: aborts this test's FUSE connections if the test is still running then.
watchdog() {
  # The sleep gets no stdout/stderr: an orphaned sleep holding CTest's output pipe would make
  # CTest wait the full period after the test has ended (cleanup kills only the subshell).
  ( sleep "$1" </dev/null >/dev/null 2>&1; echo "WATCHDOG: aborting FUSE connections after $1 s" >&2; abort_fuse_conns ) &
  WATCHDOG_PID=$!
}

# detach_our_loops: detaches every loop device whose backing file is under $T, except those
# over this test's FUSE files (under $MNT): these are only noted in FUSE_LOOPS, and cleanup
# detaches them after abort_fuse_conns (a detach waits for the device's in-flight I/O, which a
# hung daemon would never complete; once the mount is gone the device no longer shows the path).
# losetup_attach is called as dev=$(losetup_attach ...), a subshell, so LOOPS never sees those
# devices: they leaked whenever a test did not detach them itself (e2e_image_failure's
# outer.img on every run). Devices of other tests have other backing files and are left alone.
FUSE_LOOPS=()
detach_our_loops() {
  local dev back
  while read -r dev back; do
    [[ $back == "$T/"* ]] || continue
    if [[ $back == "$MNT/"* ]]; then FUSE_LOOPS+=("$dev"); else losetup -d "$dev" 2>/dev/null; fi
  done < <(losetup -nl -O NAME,BACK-FILE 2>/dev/null)
  return 0
}

# enable_uring_hold: for the rest of the test, holds the machine-wide lock on the kernel's FUSE
# over io_uring switch (URING_PARAM), then saves its value; cleanup restores it while the lock is
# still held (the lock goes when the test's process exits). Returns 1 (nothing held) where the
# kernel has no such switch or it is not writable. CTest's RESOURCE_LOCK fuse_enable_uring
# serializes only the tests of one ctest run; this lock (flock on URING_LOCK, also taken by
# fs_fuse_test's uring.* fixture and bench/io/run.sh) serializes every worktree's tests and
# benches on the machine, so none restores a value another has just set. The lock is held by a
# flock(1) coprocess (-o: its command does not keep the lock's fd) that lives until this shell's
# end of its pipe closes: the daemons, fio and sleeps a test starts do not inherit the lock.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
URING_LOCK=/run/cryptmap-enable_uring.lock
URING_SAVED=
enable_uring_hold() {
  [[ -w $URING_PARAM ]] || return 1
  local held=
  coproc URING_HOLDER { exec flock -o "$URING_LOCK" sh -c 'echo held; exec cat >/dev/null'; }
  read -r held <&"${URING_HOLDER[0]}" || true
  [[ $held == held ]] || fail "could not take $URING_LOCK (flock)"
  URING_SAVED=$(cat "$URING_PARAM")
}

cleanup() {
  set +e
  [[ -n "${WATCHDOG_PID:-}" ]] && kill "$WATCHDOG_PID" 2>/dev/null
  for m in "${FSMNTS[@]}"; do umount "$m" 2>/dev/null; done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  detach_our_loops
  if mountpoint -q "$MNT" 2>/dev/null; then
    for f in "$MNT"/*; do [[ -e "$f" ]] && "$CRYPTMAP" close "$(basename "$f")" --mount-dir "$MNT" --force 2>/dev/null; done
    sleep 0.2
    mountpoint -q "$MNT" && fusermount3 -u -z "$MNT" 2>/dev/null
  fi
  pkill -f -- "$T" 2>/dev/null
  sleep 0.2
  abort_fuse_conns
  for m in "${FSMNTS[@]}"; do umount -l "$m" 2>/dev/null; done
  for l in "${LOOPS[@]}" "${FUSE_LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  rm -rf "$T"
  [[ -n $URING_SAVED ]] && echo "$URING_SAVED" > "$URING_PARAM"
  return 0
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }

# expect_failure EXIT_CODE MESSAGE_REGEX -- command...: the command must exit with EXIT_CODE,
# say MESSAGE_REGEX (stdout+stderr, kept in $T/out) and leave nothing mounted on $MNT.
expect_failure() {
  local want=$1 re=$2; shift 3
  set +e
  "$@" > "$T/out" 2>&1
  local rc=$?
  set -e
  [[ $rc == "$want" ]] || { cat "$T/out"; fail "'$*' exited $rc, expected $want"; }
  grep -Eq -- "$re" "$T/out" || { cat "$T/out"; fail "'$*' did not say /$re/"; }
  mountpoint -q "$MNT" && fail "'$*' left $MNT mounted"
  return 0
}

# expect_exit EXIT_CODE MESSAGE_REGEX -- command...: like expect_failure, for a command that
# must fail while volumes stay served (nothing is said about $MNT).
expect_exit() {
  local want=$1 re=$2; shift 3
  set +e
  "$@" > "$T/out" 2>&1
  local rc=$?
  set -e
  [[ $rc == "$want" ]] || { cat "$T/out"; fail "'$*' exited $rc, expected $want"; }
  grep -Eq -- "$re" "$T/out" || { cat "$T/out"; fail "'$*' did not say /$re/"; }
  return 0
}

cm() { "$CRYPTMAP" "$@"; }
cm_open() { "$CRYPTMAP" open --mount-dir "$MNT" "$@" && record_fuse_conn; }
cm_close() { "$CRYPTMAP" close --mount-dir "$MNT" "$@"; }
# The daemon serving $MNT (empty when none runs).
daemon_pid() { pgrep -f -- "daemon --mount-dir $MNT" | head -n 1; }
# exec_wait PID: waits (up to 1 s) until the background job PID has exec'd its program. Send
# SIGTERM/SIGINT to a job only after this: until its exec the job is a fork of this script,
# where bash handles those signals to run the script's EXIT trap, i.e. cleanup, rm -rf "$T"
# (reencrypt_crash lost its image that way when its random sleep before the signal was 0).
exec_wait() {
  local self
  self=$(readlink "/proc/$$/exe")
  for _ in $(seq 1 100); do
    [[ $(readlink "/proc/$1/exe" 2>/dev/null) == "$self" ]] || return 0
    sleep 0.01
  done
}
# A crash: kill -9 the daemon serving $MNT, wait until it is gone, drop its dead mount.
crash_daemon() {
  local pid
  pid=$(daemon_pid)
  [[ -n "$pid" ]] || fail "no daemon process found for $MNT"
  kill -9 "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
}

# Fast cryptsetup costs so tests stay quick (never use these for real volumes).
CS_FAST_PBKDF2=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
CS_FAST_ARGON=(--pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4)

keyfile() {  # keyfile NAME CONTENT
  printf '%s' "$2" > "$T/$1"
  echo "$T/$1"
}

# pattern.py wrappers: deterministic data by seed; check compares a region.
pattern_write() { python3 "$HERE/pattern.py" write "$@"; }
pattern_check() { python3 "$HERE/pattern.py" check "$@"; }
# fio_verify_round FILE OFFSET_BYTES [check|write [REGION]]: 4 jobs of 4 KiB random writes with
# crc32c verify, O_DIRECT, each job in its own REGION (default 4M) from OFFSET (fixed seeds). With
# "check", only reads and verifies what an earlier round wrote there (after a close and reopen).
fio_verify_round() {
  local f=$1 off=$2 mode=${3:-write} region=${4:-4M}
  local args=(--name=v --filename="$f" --direct=1 --ioengine=psync --numjobs=4 --size="$region"
              --offset="$off" --offset_increment="$region" --rw=randwrite --bs=4k --randseed=4242
              --verify=crc32c --verify_fatal=1 --group_reporting --output-format=terse)
  [[ $mode == check ]] && args+=(--verify_only)
  (cd "$T" && fio "${args[@]}") > "$T/fio-verify.txt" 2>&1 ||
    fail "fio verify ($mode) on $f at $off: $(tail -3 "$T/fio-verify.txt")"
}

# fio_rounds_around FILE OFF REGION WHAT -- COMMAND...: fio verify rounds (write mode) on FILE
# back to back from before COMMAND starts until after it ends, so that the whole of COMMAND runs
# under fio's I/O however fast the machine is (counting rounds inside COMMAND's run made the test
# depend on the machine's speed). COMMAND's output goes to $T/online.out; fails WHAT, printing
# it, when COMMAND fails, and fails when a fio round fails.
fio_rounds_around() {
  local f=$1 off=$2 region=$3 what=$4
  shift 5
  rm -f "$T/fio.stop" "$T/fio.rounds"
  (
    r=0
    while [[ ! -e $T/fio.stop ]]; do
      fio_verify_round "$f" "$off" write "$region"
      r=$((r + 1))
      echo "$r" > "$T/fio.rounds"
    done
  ) &
  local fpid=$! rc=0
  while [[ ! -e $T/fio.rounds ]] && kill -0 "$fpid" 2>/dev/null; do sleep 0.1; done
  [[ -e $T/fio.rounds ]] || { wait "$fpid"; fail "$what: the first fio verify round failed"; }
  "$@" > "$T/online.out" 2>&1 || rc=$?
  touch "$T/fio.stop"
  wait "$fpid" || fail "$what: fio verify failed during the run"
  ((rc == 0)) || { cat "$T/online.out"; fail "$what: the run failed (exit $rc)"; }
  note "$what: $(cat "$T/fio.rounds") fio verify rounds, the run inside them"
}

# PR_SET_IO_FLUSHER on the daemon's threads (docs/architecture.md §4.1). The flag
# (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE) is copied to every thread a marked thread creates, so
# the threads libraries start (librbd's, librados's) are marked when their creator is.
# io_flusher_check PID WHAT: every thread of process PID has PF_MEMALLOC_NOIO (0x00080000 in
# /proc/PID/task/TID/stat's 9th field); fails naming the unmarked threads. Where the kernel
# refuses the flag (no CAP_SYS_RESOURCE, as in containers) a daemon started with
# LD_PRELOAD=$(io_flusher_preload) carries io_flusher_shim.c's stand-in instead, an inherited
# nice value of 7 (field 19), which is checked the same way; without either, a note says so.
io_flusher_kernel() {
  python3 -c 'import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(57, 1, 0, 0, 0) != 0)'
}
io_flusher_preload() {  # the shim's path where it is needed and built, else nothing
  io_flusher_kernel || [[ ! -f "${IO_FLUSHER_SHIM:-}" ]] || echo "$IO_FLUSHER_SHIM"
}
io_flusher_check() {
  local pid=$1 what=$2 stat tid rest f n=0 bad=() names=() shim=0 how="PR_SET_IO_FLUSHER (PF_MEMALLOC_NOIO)"
  if [[ -n "${IO_FLUSHER_SHIM:-}" ]] && grep -qF "$IO_FLUSHER_SHIM" "/proc/$pid/maps"; then
    shim=1 how="io_flusher_shim's stand-in (nice 7; the kernel refuses PR_SET_IO_FLUSHER here)"
  elif ! io_flusher_kernel; then
    note "the kernel refuses PR_SET_IO_FLUSHER here and $what has no shim: its threads not checked"
    return 0
  fi
  for stat in /proc/"$pid"/task/*/stat; do
    tid=${stat%/stat}; tid=${tid##*/}
    rest=$(cat "$stat" 2>/dev/null) || continue  # the thread ended meanwhile
    read -r -a f <<< "${rest##*) }"  # f[0] is field 3 (state): flags f[6], nice f[16]
    n=$((n + 1)); names+=("$(cat "/proc/$pid/task/$tid/comm" 2>/dev/null)")
    if (( shim )); then (( f[16] == 7 )) && continue
    else (( f[6] & 0x00080000 )) && continue; fi
    bad+=("$tid:$(cat "/proc/$pid/task/$tid/comm" 2>/dev/null)")
  done
  (( n > 0 )) || fail "io_flusher_check: no threads of process '$pid' ($what)"
  (( ${#bad[@]} == 0 )) || fail "$what: ${#bad[@]} of $n threads not marked by $how: ${bad[*]}"
  note "$what: all $n threads marked by $how: $(printf '%s\n' "${names[@]}" | sort | uniq -c | awk '{c = $1; sub(/^ *[0-9]+ /, ""); printf "%s%s x%s", (NR > 1 ? ", " : ""), $0, c}')"
}

# The FUSE transport of a script's run (fs/README.md "FUSE over io_uring"): CTest runs the
# durability, memory-pressure and ext4 scripts twice, with CRYPTMAP_FUSE_TRANSPORT=dev (the
# default) and =uring. fuse_transport_setup sets FT (the `open` flags: --fuse-transport=dev|uring,
# so a run never depends on what enable_uring happens to be) and FT_NAME (what `status` must
# say). For uring it holds the machine-wide lock on the kernel's switch and saves it
# (enable_uring_hold; CTest adds RESOURCE_LOCK fuse_enable_uring), sets it to Y, and exits 77
# (CTest's skip) when the switch is missing or not writable; cleanup restores it. Call it once,
# before anything is opened.
FT=()
FT_NAME=dev
fuse_transport_setup() {
  FT_NAME=${CRYPTMAP_FUSE_TRANSPORT:-dev}
  case $FT_NAME in
    dev) FT=(--fuse-transport=dev); return 0 ;;
    uring) FT=(--fuse-transport=uring) ;;
    *) fail "CRYPTMAP_FUSE_TRANSPORT=$FT_NAME: want dev or uring" ;;
  esac
  # The machine-wide lock on the switch; cleanup restores the saved value (enable_uring_hold).
  enable_uring_hold ||
    { echo "SKIP: FUSE over io_uring: no writable $URING_PARAM (kernel before 6.14, or not root)"; exit 77; }
  echo Y > "$URING_PARAM"
  note "FUSE transport: io_uring (enable_uring Y for this run, was $URING_SAVED)"
}
# fuse_transport_expect NAME: the daemon serving $MNT uses the transport FT_NAME names.
fuse_transport_expect() {
  local got
  got=$("$CRYPTMAP" status "$1" --json --mount-dir "$MNT" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["fuse_transport"])')
  [[ $got == "$FT_NAME" ]] || fail "$1 is served through '$got', this run is for '$FT_NAME'"
}

losetup_attach() {  # losetup_attach FILE -> prints the loop device
  local dev
  dev=$(losetup -f --show "$@")
  LOOPS+=("$dev")
  echo "$dev"
}
losetup_detach() {
  losetup -d "$1"
  local keep=()
  for l in "${LOOPS[@]}"; do [[ "$l" != "$1" ]] && keep+=("$l"); done
  LOOPS=("${keep[@]}")
}

# Crash tests (kill -9 of the daemon under a durable workload, then reopen). Each function opens
# IMAGE as the mapped file NAME with the extra `open` flags given, and leaves it open after the
# reopen so the caller can check more before cm_close NAME.
#
# fsync_crash_round IMAGE NAME BLOCKS ROUND [open flags...]: fsync_writer.py writes 4 KiB blocks
# with an fsync after each; once this round has logged 20 more acknowledged writes, at a random
# moment, kill -9; reopen; every block whose fsync returned must read back intact.
fsync_crash_round() {
  local img=$1 name=$2 blocks=$3 round=$4 wpid want
  shift 4
  cm_open "$img" "$name" "$@"
  python3 "$HERE/fsync_writer.py" run "$MNT/$name" "$blocks" "$T/log" "$round" 2>/dev/null &
  wpid=$!
  want=$(( $( (cat "$T/log" 2>/dev/null || true) | wc -l) + 20 ))
  for _ in $(seq 1 600); do
    (( $( (cat "$T/log" 2>/dev/null || true) | wc -l) >= want )) && break
    kill -0 "$wpid" 2>/dev/null || fail "the writer died before the crash in round $round"
    sleep 0.1
  done
  sleep "0.$((RANDOM % 9 + 1))"
  crash_daemon
  wait "$wpid" 2>/dev/null || true
  cm_open "$img" "$name" "$@"
  python3 "$HERE/fsync_writer.py" check "$MNT/$name" "$blocks" "$T/log" \
    || fail "fsynced blocks lost in round $round"
}

# ext4_mkfs IMAGE NAME [open flags...]: an ext4 file system on the whole mapped file (closed after).
ext4_mkfs() {
  local img=$1 name=$2 dev
  shift 2
  cm_open "$img" "$name" "$@"
  dev=$(losetup_attach "$MNT/$name")
  mkfs.ext4 -q -F "$dev"
  losetup_detach "$dev"
  cm_close "$name"
}

# ext4_crash_round IMAGE NAME ROUND [open flags...]: mount the ext4 through a loop device, append
# to a journal file with a sync after each line and rewrite small files, kill -9 the daemon after
# 2 s, drop the dead mount and loop device, reopen. Then call ext4_check_after_crash NAME ROUND.
ext4_crash_round() {
  local img=$1 name=$2 round=$3 dev wpid
  shift 3
  mkdir -p "$T/fs"
  cm_open "$img" "$name" "$@"
  dev=$(losetup_attach "$MNT/$name")
  mount "$dev" "$T/fs"; FSMNTS=("$T/fs")
  ( set +e; i=0; while :; do i=$((i + 1)); echo "entry $round $i" >> "$T/fs/journal.txt"; sync "$T/fs/journal.txt"
      head -c 8192 /dev/urandom > "$T/fs/f$((i % 50))"; done ) 2>/dev/null &
  wpid=$!
  sleep 2
  crash_daemon
  kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true
  umount "$T/fs" 2>/dev/null || umount -l "$T/fs" 2>/dev/null || true; FSMNTS=()
  losetup_detach "$dev" 2>/dev/null || true
  cm_open "$img" "$name" "$@"
}

# ext4_check_after_crash NAME ROUND: mount and unmount (replays the ext4 journal), e2fsck -fn clean.
ext4_check_after_crash() {
  local dev
  dev=$(losetup_attach "$MNT/$1")
  mount "$dev" "$T/fs"; umount "$T/fs"
  e2fsck -fn "$dev" || fail "e2fsck not clean after crash $2 and journal replay"
  losetup_detach "$dev"
}
