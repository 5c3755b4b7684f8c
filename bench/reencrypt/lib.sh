# The set-up both reencryption benchmarks share (run.sh, datashift.sh). Source it after
# `set -euo pipefail` with BUILD (the build directory) and SCRATCH (a name for the scratch
# directory) set. It checks the tools, then sets
#   CM       the cryptmap binary of BUILD
#   W        a fresh directory on tmpfs (/dev/shm), removed at exit after the volume "r" of
#            $W/mnt is closed and the fio in FIO_PID (if any) is killed
#   $W/key   the passphrase file
#   FAST     the keyslot PBKDF options (PBKDF2 forced to 1000 iterations, on both sides)
# and defines median WORDS (the median of space-separated numbers).
CM=$(realpath "$BUILD/cli/cryptmap")
for t in cryptsetup fio python3; do command -v $t > /dev/null || { echo "needs $t"; exit 1; }; done
W=$(mktemp -d "/dev/shm/$SCRATCH.XXXXXX")
FIO_PID=
cleanup() {
  set +e
  [[ -n $FIO_PID ]] && kill "$FIO_PID" 2> /dev/null
  "$CM" close --mount-dir "$W/mnt" r 2> /dev/null
  rm -rf "$W"
}
trap cleanup EXIT
printf 'bench passphrase' > "$W/key"
FAST=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
median() { tr ' ' '\n' <<< "$1" | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
