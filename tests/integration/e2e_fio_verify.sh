#!/usr/bin/env bash
# Concurrency: fio with 4 jobs of random writes and mixed random reads/writes (small blocks, and
# blocks large enough to be written behind), crc32c verify,
# O_DIRECT, on the mapped file (each job on its own region, as fio verify requires); zero
# verify errors. Bounded in time.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "fio")
MiB=$((1 << 20))
img=$T/disk.img
truncate -s $((16 * MiB + 128 * MiB)) "$img"
cryptsetup luksFormat --batch-mode --type luks2 "${CS_FAST_PBKDF2[@]}" --key-file "$K" "$img"
cm_open "$img" f --key-file "$K"

cd "$T"  # fio writes verify state files into the working directory
common=(--filename="$MNT/f" --direct=1 --ioengine=psync --numjobs=4 --size=32M
        --offset_increment=32M --verify=crc32c --verify_fatal=1 --group_reporting --output-format=terse)
note "random writes, then verify (4 jobs)"
fio --name=w "${common[@]}" --rw=randwrite --bs=4k > "$T/fio1.txt" || fail "fio randwrite+verify failed: $(tail "$T/fio1.txt")"
note "mixed random read/write with verify backlog (4 jobs, bounded time)"
fio --name=rw "${common[@]}" --rw=randrw --bsrange=512-64k --verify_backlog=64 --time_based --runtime=15 \
  > "$T/fio2.txt" || fail "fio randrw+verify failed: $(tail "$T/fio2.txt")"
note "mixed random read/write of 64 KiB - 1 MiB blocks with verify backlog (4 jobs, bounded time)"
# Blocks of 128 KiB and more are written behind (volume/engine/README.md, "Write-behind"): the
# verify reads come right after the writes they check, while those may still be in flight.
fio --name=rwl "${common[@]}" --rw=randrw --bsrange=64k-1M --verify_backlog=16 --time_based \
  --runtime=10 > "$T/fio2l.txt" || fail "fio randrw 64k-1M+verify failed: $(tail "$T/fio2l.txt")"
note "sequential 1 MiB writes and verify"
fio --name=seq "${common[@]}" --rw=write --bs=1M > "$T/fio3.txt" || fail "fio seq verify failed"
cm_close f
echo "PASS"
