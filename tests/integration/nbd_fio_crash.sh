#!/usr/bin/env bash
# A LUKS2 volume on an NBD server under load and crashes: fio with 4 jobs and crc32c verify
# through the FUSE file (random writes, then mixed random reads and writes of 512 B-64 KiB),
# then kill -9 of cryptmap's daemon in the middle of an fsync-per-write workload, three times:
# after each reopen over NBD every block whose fsync returned is intact (the server kept running;
# what it acknowledged to a flush is what counts). Server: nbdkit's file plugin (multi-conn) on a
# Unix socket, started and stopped here.
source "$(dirname "$0")/lib.sh"
command -v nbdkit > /dev/null || { echo "SKIP: nbdkit not installed"; exit 77; }
watchdog 400
K=$(keyfile key "nbd fio")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((16 * MiB + 128 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
nbdkit -f --exit-with-parent -U "$T/nbd.sock" -P "$T/nbd.pid" file "$img" &
for _ in $(seq 1 200); do [[ -s "$T/nbd.pid" ]] && break; sleep 0.05; done
[[ -s "$T/nbd.pid" ]] || fail "nbdkit did not start"
uri="nbd+unix:///?socket=$T/nbd.sock"

cm_open "$uri" f --key-file "$K"
cd "$T"  # fio writes verify state files into the working directory
common=(--filename="$MNT/f" --direct=1 --ioengine=psync --numjobs=4 --size=12M
        --offset_increment=32M --verify=crc32c --verify_fatal=1 --group_reporting --output-format=terse)
note "fio: random writes, then verify (4 jobs)"
fio --name=w "${common[@]}" --rw=randwrite --bs=4k > "$T/fio1.txt" || fail "fio randwrite+verify over NBD: $(tail "$T/fio1.txt")"
note "fio: mixed random reads and writes 512 B-64 KiB with verify backlog (4 jobs, 5 s)"
fio --name=rw "${common[@]}" --rw=randrw --bsrange=512-64k --verify_backlog=64 --time_based --runtime=5 \
  > "$T/fio2.txt" || fail "fio randrw+verify over NBD: $(tail "$T/fio2.txt")"
cm_close f

blocks=$((32 * MiB / 4096))
for round in 1 2 3; do
  note "fsync workload over NBD, kill -9 of the daemon, round $round"
  fsync_crash_round "$uri" d $blocks $round --key-file "$K"
  cm_close d
done
echo "PASS"
