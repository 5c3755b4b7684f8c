#!/usr/bin/env bash
# IO_FLUSHER on the io_uring workers (docs/async-store-io.md §3, docs/architecture.md §4.1). The
# kernel's io-wq workers (iou-wrk-TID, threads of the daemon in /proc/PID/task) do the store I/O
# that cannot complete inline, for the daemon, so they must be marked like every other thread.
# fio writes into the unallocated part of a sparse image (O_DIRECT writes ext4 cannot do without
# blocking: io_uring hands them to io-wq) until io_flusher_check (lib.sh) has checked the
# daemon's threads with at least one iou-wrk among them, all marked: first with the store's rings
# under /dev/fuse, then again with FUSE over io_uring (its ring threads are checked as well;
# enable_uring Y for that part, restored after; exit 77 after the first part where the kernel has
# no writable switch). Where the kernel refuses PR_SET_IO_FLUSHER (this sandbox) the daemon runs
# with io_flusher_shim.c, whose stand-in the kernel copies to new threads the same way.
source "$(dirname "$0")/lib.sh"
watchdog 240
MiB=$((1 << 20))
K=$(keyfile key "io flusher passphrase")

# flusher_check_under_load TRANSPORT: a fresh sparse image, opened over TRANSPORT with the shim
# where needed; random 64 KiB writes (write-back, write-behind and their io_uring batches) run
# until a check saw an iou-wrk thread, for at most 30 s.
flusher_check_under_load() {
  local ft=$1 img=$T/disk-$1.img pid fiopid out seen=0 i
  truncate -s $((16 * MiB + 512 * MiB)) "$img"
  cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
  LD_PRELOAD=$(io_flusher_preload) cm_open "$img" f --key-file "$K" --fuse-transport="$ft"
  FT_NAME=$ft fuse_transport_expect f
  pid=$(daemon_pid)
  (cd "$T" && exec fio --name=sparse --filename="$MNT/f" --direct=1 --ioengine=psync --numjobs=4 \
    --size=128M --offset_increment=128M --rw=randwrite --bsrange=4k-256k --time_based \
    --runtime=30 --output-format=terse) > "$T/fio-$ft.txt" 2>&1 &
  fiopid=$!
  for i in $(seq 1 150); do
    out=$(io_flusher_check "$pid" "the daemon ($ft) under store load")
    if grep -q "iou-wrk" <<< "$out"; then seen=1; break; fi
    kill -0 "$fiopid" 2>/dev/null || break
    sleep 0.2
  done
  echo "$out"
  kill "$fiopid" 2>/dev/null || true
  wait "$fiopid" 2>/dev/null || true
  ((seen)) || fail "$ft: no iou-wrk thread in the daemon within 30 s of writes into unallocated space: the check covered no io-wq worker"
  note "$ft: the io-wq workers were covered (check $i)"
  cm_close f
  for _ in $(seq 1 50); do [[ -z $(daemon_pid) ]] && break; sleep 0.1; done
}

note "/dev/fuse, the store's io_uring batches"
flusher_check_under_load dev

CRYPTMAP_FUSE_TRANSPORT=uring fuse_transport_setup
note "FUSE over io_uring, the store's io_uring batches"
flusher_check_under_load uring
echo "PASS"
