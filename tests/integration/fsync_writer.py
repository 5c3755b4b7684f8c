#!/usr/bin/env python3
"""Durability workload: rewrites random 4 KiB blocks of FILE with (generation, block) stamps,
fsyncs after each write, and appends "block generation" to LOG only after fsync returned.
Runs until killed; run SEED numbers increase from run to run so generations stay monotonic
across runs sharing one LOG.  `check` verifies that every logged (block, generation) is on disk with a
generation >= the logged one (a later, unsynced write may legitimately be newer).

  fsync_writer.py run FILE BLOCKS LOG SEED [FIRST]   (blocks FIRST .. FIRST+BLOCKS-1; default 0)
  fsync_writer.py check FILE BLOCKS LOG
"""
import os
import random
import struct
import sys

BS = 4096
MAGIC = b"cryptmap-durable"


def block_bytes(block: int, gen: int) -> bytes:
    head = MAGIC + struct.pack("<QQ", block, gen)
    return (head * (BS // len(head) + 1))[:BS]


def run(path: str, blocks: int, log: str, seed: int, first: int = 0) -> None:
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDWR)
    with open(log, "a", buffering=1) as lf:
        gen = seed * 1_000_000_000  # generations grow across runs (seeds 1, 2, ...)
        while True:
            gen += 1
            b = first + rng.randrange(blocks)
            os.pwrite(fd, block_bytes(b, gen), b * BS)
            os.fsync(fd)
            lf.write(f"{b} {gen}\n")
            lf.flush()
            os.fsync(lf.fileno())


def check(path: str, blocks: int, log: str) -> int:
    committed = {}
    with open(log) as lf:
        for line in lf:
            parts = line.split()
            if len(parts) != 2:
                continue  # a torn last line of the log itself
            b, g = int(parts[0]), int(parts[1])
            committed[b] = max(committed.get(b, 0), g)
    bad = 0
    with open(path, "rb") as f:
        for b, g in committed.items():
            f.seek(b * BS)
            data = f.read(BS)
            if not data.startswith(MAGIC):
                print(f"block {b}: no stamp (committed generation {g})", file=sys.stderr)
                bad += 1
                continue
            blk, gen = struct.unpack("<QQ", data[len(MAGIC):len(MAGIC) + 16])
            if blk != b or gen < g or data != block_bytes(blk, gen):
                print(f"block {b}: found ({blk},{gen}), committed generation {g}", file=sys.stderr)
                bad += 1
    print(f"checked {len(committed)} committed blocks, {bad} bad")
    return 1 if bad or not committed else 0


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]),
            int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    elif sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
