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
# reused by any other FUSE mount on the machine (a unit test's, another test run's). Abort an id
# only while it is mounted on our MNT or mounted nowhere (our lazily detached, hung mount).
abort_fuse_conns() {
  local c where
  for c in "${FUSE_CONNS[@]}"; do
    [[ -e /sys/fs/fuse/connections/$c/abort ]] || continue
    where=$(awk -v d="0:$c" '$3 == d {print $5}' /proc/self/mountinfo)
    [[ -z "$where" || "$where" == "$MNT" ]] || continue
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

cleanup() {
  set +e
  [[ -n "${WATCHDOG_PID:-}" ]] && kill "$WATCHDOG_PID" 2>/dev/null
  for m in "${FSMNTS[@]}"; do umount "$m" 2>/dev/null; done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  if mountpoint -q "$MNT" 2>/dev/null; then
    for f in "$MNT"/*; do [[ -e "$f" ]] && "$CRYPTMAP" close "$(basename "$f")" --mount-dir "$MNT" --force 2>/dev/null; done
    sleep 0.2
    mountpoint -q "$MNT" && fusermount3 -u -z "$MNT" 2>/dev/null
  fi
  pkill -f -- "$T" 2>/dev/null
  sleep 0.2
  abort_fuse_conns
  for m in "${FSMNTS[@]}"; do umount -l "$m" 2>/dev/null; done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  rm -rf "$T"
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
