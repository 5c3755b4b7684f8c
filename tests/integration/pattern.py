#!/usr/bin/env python3
"""Deterministic test data: each 512-byte sector carries its index and the seed, the rest is
pseudo-random from (seed, index), so misplaced, stale or mis-decrypted sectors are detected.

  pattern.py write FILE OFFSET LENGTH SEED [--no-fsync]   write into FILE (not truncated) at
                                              OFFSET, then fsync (unless --no-fsync)
  pattern.py check FILE OFFSET LENGTH SEED [FILE_OFFSET]   FILE at FILE_OFFSET (default OFFSET)
                                              must hold the pattern of [OFFSET, OFFSET+LENGTH)
"""
import hashlib
import os
import sys


def sector(seed: int, index: int) -> bytes:
    head = b"cryptmap-pattern seed=%08d sector=%016d|" % (seed, index)
    out = bytearray(head)
    ctr = 0
    while len(out) < 512:
        out += hashlib.sha256(b"%d:%d:%d" % (seed, index, ctr)).digest()
        ctr += 1
    return bytes(out[:512])


def region(seed: int, offset: int, length: int) -> bytes:
    assert offset % 512 == 0 and length % 512 == 0, "pattern regions are 512-byte aligned"
    return b"".join(sector(seed, offset // 512 + i) for i in range(length // 512))


def main() -> int:
    cmd, path, offset, length, seed = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    if cmd == "write":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        chunk = 1 << 20
        pos = 0
        while pos < length:
            n = min(chunk, length - pos)
            os.pwrite(fd, region(seed, offset + pos, n), offset + pos)
            pos += n
        if "--no-fsync" not in sys.argv[6:]:
            os.fsync(fd)
        os.close(fd)
        return 0
    if cmd == "check":
        file_off = int(sys.argv[6]) if len(sys.argv) > 6 else offset
        with open(path, "rb") as f:
            f.seek(file_off)
            pos = 0
            chunk = 1 << 20
            while pos < length:
                n = min(chunk, length - pos)
                got = f.read(n)
                want = region(seed, offset + pos, n)
                if got != want:
                    for i in range(0, n, 512):
                        if got[i:i + 512] != want[i:i + 512]:
                            print(f"mismatch at pattern offset {offset + pos + i} "
                                  f"(file offset {file_off + pos + i}); got {got[i:i+48]!r}",
                                  file=sys.stderr)
                            return 1
                    print(f"short read at {file_off + pos}", file=sys.stderr)
                    return 1
                pos += n
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
