#!/usr/bin/env bash
# The daemon's memory stays within issue #13's goal, RSS <= cache + 64 MiB, on both FUSE
# transports: after a fio run of 1 MiB sequential reads and writes and 4 KiB random writes and
# reads with 4 jobs (every buffer, ring entry, read-ahead window and the whole cache touched),
# the daemon's peak resident set (VmHWM) must be at most the cache size given to `open` plus
# 64 MiB. Two cache sizes (16 and 64 MiB), so a fixed cost that grows past the margin fails
# whatever the cache. io_uring only when the kernel has enable_uring (set here, restored).
# The same for an authenticated LUKS2 volume in journal mode (hmac-sha256, docs/integrity.md
# §5 "The memory budget": request slots, journal batches and in-place tag pages on top of the
# cache), on /dev/fuse. Where the memory goes: bench/README.md ("Daemon memory"). The ring
# entries' buffers of FUSE over io_uring are locked (fs/README.md): right after open, the daemon
# over io_uring locks 16 ring entries (1 MiB + a page each) and only 2 /dev/fuse receive buffers
# where the /dev/fuse daemon locks 16 receive buffers, so its VmLck is about 2 MiB larger; with the
# entries unlocked it would be 14 MiB smaller. At least 1 MiB more is asked.
source "$(dirname "$0")/lib.sh"
P=$URING_PARAM
OLD=
enable_uring_hold && OLD=$URING_SAVED
watchdog 300
MiB=$((1 << 20))
K=$(keyfile key "rss passphrase")
img=$T/disk.img
truncate -s $((16 * MiB + 192 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --sector-size 4096 \
  --key-file "$K" "$img"
# Authenticated: 192 MiB of data plus header, journal and tags (no wipe: fio writes every block
# before it reads it).
iimg=$T/integrity.img
truncate -s $(((192 * 103 / 100 + 24) * MiB)) "$iimg"
cm luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --cipher aes-xts-random --integrity hmac-sha256 --sector-size 4096 --integrity-no-wipe \
  "$iimg" "$K" > /dev/null || fail "luksFormat --integrity hmac-sha256"

fio_load() {  # fio_load FILE: the workloads of bench/io, by size (no timing involved)
  local f=$1
  local common=(--filename="$f" --direct=1 --ioengine=psync --output-format=terse)
  (cd "$T" &&
    fio --name=sw "${common[@]}" --rw=write --bs=1M --size=192M &&
    fio --name=sr "${common[@]}" --rw=read --bs=1M --size=192M &&
    fio --name=rw "${common[@]}" --rw=randwrite --bs=4k --size=192M --numjobs=4 --io_size=8M \
      --randseed=7 &&
    fio --name=rr "${common[@]}" --rw=randread --bs=4k --size=192M --numjobs=4 --io_size=8M \
      --randseed=8) > "$T/fio.txt" 2>&1 || fail "fio on $f: $(tail -3 "$T/fio.txt")"
}

check_rss() {  # check_rss TRANSPORT CACHE_MIB [IMAGE]
  local transport=$1 cache=$2 image=${3:-$img} pid hwm rss bound
  cm_open "$image" r --key-file "$K" --fuse-transport="$transport" --cache-size "${cache}M"
  pid=$(daemon_pid)
  [[ -n "$pid" ]] || fail "no daemon for $MNT"
  [[ $image != "$img" ]] || LOCKED[$transport-$cache]=$(awk '/^VmLck:/ {print $2}' "/proc/$pid/status")
  fio_load "$MNT/r"
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  bound=$(( (cache + 64) * 1024 ))
  note "$(basename "$image") $transport, cache ${cache} MiB: VmHWM $((hwm / 1024)) MiB, VmRSS $((rss / 1024)) MiB (bound $((bound / 1024)) MiB)"
  if (( hwm > bound )); then
    grep -E '^(VmRSS|VmHWM|VmLck|RssAnon|RssFile)' "/proc/$pid/status" >&2
    fail "$(basename "$image") $transport: the daemon's peak RSS $((hwm / 1024)) MiB exceeds cache + 64 MiB = $((bound / 1024)) MiB"
  fi
  cm_close r
  for _ in $(seq 1 50); do [[ -z $(daemon_pid) ]] && break; sleep 0.1; done
}

declare -A LOCKED  # VmLck KiB right after open, by TRANSPORT-CACHE
for cache in 64 16; do
  check_rss dev "$cache"
  check_rss dev "$cache" "$iimg"
  if [[ -n "$OLD" ]]; then
    echo Y > "$P"
    check_rss uring "$cache"
    echo N > "$P"
    more=$((LOCKED[uring-$cache] - LOCKED[dev-$cache]))
    note "cache ${cache} MiB: VmLck $((LOCKED[dev-$cache] / 1024)) MiB over /dev/fuse, $((LOCKED[uring-$cache] / 1024)) MiB over io_uring"
    ((more >= 1024)) ||
      fail "cache ${cache} MiB: the io_uring daemon locks $((more / 1024)) MiB more than the /dev/fuse one, not about 2: its ring entries' 16 MiB of buffers are not locked"
  fi
done
echo "PASS"
